"""results/jsontext.dumps writes what json.dumps(sort_keys=True, indent=2, allow_nan=False)
writes: random nested plain data, real reports, and the library's own errors for what it
leaves to it (NaN, non-text keys, unknown types, cycles)."""

from __future__ import annotations

import enum
import json
import math
import random

import numpy as np
import pytest

from ncinspect.analysis.api import analyze
from ncinspect.results.jsontext import dumps
from ncinspect.results.report import Report

from ..helpers import make_data


def _ref(value):
    return json.dumps(value, sort_keys=True, indent=2, allow_nan=False)


def _random(rng: random.Random, depth: int = 0):
    leaves = [
        None,
        True,
        False,
        0,
        -7,
        2**70,
        1.5,
        -0.0,
        1e-310,
        1e300,
        math.pi,
        "",
        "plain",
        'quote " back \\ slash',
        "ctl \x00\x1f\x7f tab\t nl\n",
        "é 日本 \U0001f600 \ud800",
        np.float64(0.1),
        np.float64(-3.25e-8),
    ]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(leaves)
    if rng.random() < 0.5:
        items = [_random(rng, depth + 1) for _ in range(rng.randint(0, 4))]
        return tuple(items) if rng.random() < 0.2 else items
    keys = ["a", "b", "Z", "", "key with space", "é", "10", "9", "_x"]
    return {k: _random(rng, depth + 1) for k in rng.sample(keys, rng.randint(0, 5))}


def test_random_plain_data_is_written_as_json_dumps_writes_it():
    rng = random.Random(0)
    for _ in range(2000):
        value = _random(rng)
        assert dumps(value) == _ref(value)


def test_a_report_is_written_as_json_dumps_writes_it():
    results = []
    for e in range(3):
        h, y, m = make_data(C=4, d=8, n=20, seed=e)
        res = analyze(h, y, weights=m, per_class=True)
        res.name, res.epoch, res.meta = f"/epoch_{e}", e, {"lr": 0.1, "tags": ["a", 1]}
        results.append(res)
    data = Report("run.h5", results).to_dict()
    assert dumps(data) == _ref(data)


class _Level(enum.IntEnum):
    LOW = 1


@pytest.mark.parametrize(
    "value",
    [
        {"x": float("nan")},
        {"x": float("-inf")},
        [float("inf")],
        {1: "a"},
        {None: 1, "b": 2},
        {"x": object()},
        {"x": {1, 2}},
        {"x": b"bytes"},
    ],
)
def test_what_it_leaves_to_the_library_gets_the_library_text_or_error(value):
    try:
        want = _ref(value)
    except (ValueError, TypeError) as exc:
        with pytest.raises(type(exc)) as ours:
            dumps(value)
        assert str(ours.value) == str(exc)
    else:
        assert dumps(value) == want  # e.g. number and None keys, converted by the library


def test_int_subclasses_and_cycles():
    assert dumps({"level": _Level.LOW}) == _ref({"level": _Level.LOW})
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(loop)
