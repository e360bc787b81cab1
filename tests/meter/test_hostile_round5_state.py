"""Hostile round five: a Meter state from somewhere else (a checkpoint, another process).

``Meter.load_state_dict`` takes a mapping of numbers, strings and arrays (never a pickle),
and :func:`ncinspect.meter.state.unpack` takes bytes. Fed a damaged or hostile state they
raised numpy's ``ValueError`` ("truth value of an array is ambiguous") or ``TypeError`` for
an array where a number belongs, cast float counts holding NaN or 2.5 into made-up
integers (a RuntimeWarning, then metrics over invented counts), broadcast a pass-2 state of
another rank into an exit-4 ``ValueError`` at ``compute()``, and ``unpack`` hit a
``RecursionError`` on deeply nested JSON and an ``OverflowError`` on a huge shape. Now every
such state is an :class:`~ncinspect.errors.InvalidDataError` naming the field, and a refused
state leaves the meter as it was.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import ncinspect
from ncinspect.errors import InvalidDataError, NCInspectError
from ncinspect.meter.state import pack, unpack

from ..helpers import make_data

VALUES = [
    None,
    -1,
    0,
    2**64 + 5,
    float("nan"),
    "x",
    [1, 2],
    {"a": 1},
    np.zeros(0),
    np.zeros((3, 4, 5)),
    np.full(3, np.nan),
    np.full(3, 2.5),
    np.array(["a"]),
    np.zeros(3, dtype=np.int8),
    True,
    1e308,
    np.float64(1.5),
    np.array(2.0),
]


def _states():
    h, y, m = make_data(C=3, d=4, n=10)
    meter = ncinspect.Meter(m)
    meter.update(h, y)
    one = meter.state_dict()
    meter.next_pass()
    meter.update(h, y)
    return (h, y, m), one, meter.state_dict(), meter.compute().metrics["nc1"]


def test_every_field_of_a_state_replaced_by_a_hostile_value():
    (h, y, m), one, two, nc1 = _states()
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no cast that makes a count up
        for state in (one, two):
            for key in state:
                for value in VALUES:
                    hostile = {**state, key: value}
                    target = ncinspect.Meter(m)
                    target.update(h, y)
                    target.next_pass()
                    target.update(h, y)
                    try:
                        target.load_state_dict(hostile)
                    except NCInspectError:
                        # refused: the meter is as it was
                        assert target.compute().metrics["nc1"] == nc1
                    else:
                        try:
                            if target.pass_number == 1:
                                target.update(h, y)
                                target.next_pass()
                                target.update(h, y)
                            target.compute()
                        except NCInspectError:
                            pass
                    checked += 1
    assert checked > 900


@pytest.mark.parametrize("field", ["first.counts", "second.ncc_correct", "first.n_rows"])
def test_counts_that_are_not_integers_are_refused(field):
    (h, y, m), one, two, _ = _states()
    value = np.asarray(two[field], dtype=np.float64) + 0.5
    with pytest.raises(InvalidDataError, match=f"{field.split('.')[1]!r} holds values that are"):
        ncinspect.Meter(m).load_state_dict({**two, field: value})
    # whole numbers in floats (JSON gives floats) still load
    whole = np.asarray(two[field], dtype=np.float64)
    assert ncinspect.Meter(m).load_state_dict({**two, field: whole}).pass_number == 2


def test_a_pass_2_state_of_another_rank_is_refused():
    (h, y, m), one, two, nc1 = _states()
    hostile = {**two, "second.proj_sq": np.zeros(3)}
    with pytest.raises(InvalidDataError, match="rank"):
        ncinspect.Meter(m).load_state_dict(hostile)


def _packed(header) -> bytes:
    head = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return b"NCMETER1" + len(head).to_bytes(8, "little") + head + bytes(16)


@pytest.mark.parametrize(
    "header",
    [
        b"[" * 100_000,
        [{"k": "a", "dtype": "<f8", "shape": [10**30], "at": 0}],
        [{"k": "a", "dtype": "<f8", "shape": [-1], "at": 0}],
        [{"k": "a", "dtype": "<f8", "shape": [1], "at": -8}],
        [{"k": "a", "dtype": "|O", "shape": [1], "at": 0}],
        [{"k": "a", "dtype": "<U2", "shape": [1], "at": 0}],
        [{"k": "a", "dtype": "<f8", "shape": [True], "at": 0}],
        [{"k": "a", "dtype": "<f8", "shape": [3], "at": 0}],
        {"k": "a"},
        [1, 2],
    ],
)
def test_unpack_refuses_damaged_bytes(header):
    with pytest.raises(InvalidDataError, match="meter state"):
        unpack(_packed(header))


def test_pack_and_unpack_round_trip():
    (h, y, m), one, two, nc1 = _states()
    back = unpack(pack(two))
    meter = ncinspect.Meter(m).load_state_dict(back)
    assert meter.compute().metrics["nc1"] == nc1
