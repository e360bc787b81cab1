"""Hostile round four, class 7 (integer settings bounded) in the library API: the CLI bounds
``--bootstrap`` (2-10,000), ``--seed`` and ``--chunk-rows``, but ``analyze`` and
``analyze_file`` took ``bootstrap=10**9`` (a run that does not end), ``chunk_rows=2.5`` or
``memory_limit="1GB"`` (a TypeError or ValueError from deep inside) and ``chunk_rows=0``
or ``-1`` (accepted). Each is now a UsageError naming the setting, before any work."""

from __future__ import annotations

import h5py
import pytest

import ncinspect
from ncinspect.errors import UsageError

from ..helpers import make_data

BAD = [
    ({"bootstrap": 10**9}, "at most 10000 replicates"),
    ({"bootstrap": 10_001}, "at most 10000 replicates"),
    ({"bootstrap": 2, "seed": 2**64}, "seed must be an integer in"),
    ({"bootstrap": 2, "seed": -1}, "seed must be an integer in"),
    ({"chunk_rows": 0}, "chunk_rows must be an integer >= 1"),
    ({"chunk_rows": -1}, "chunk_rows must be an integer >= 1"),
    ({"chunk_rows": 2.5}, "chunk_rows must be an integer >= 1"),
    ({"chunk_rows": True}, "chunk_rows must be an integer >= 1"),
    ({"memory_limit": "1GB"}, "memory_limit must be an integer >= 1"),
    ({"memory_limit": 1.5e9}, "memory_limit must be an integer >= 1"),
    ({"memory_limit": 0}, "memory_limit must be an integer >= 1"),
]


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path_factory.mktemp("d") / "d.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, m
    return str(path)


@pytest.mark.parametrize("kw,words", BAD)
def test_analyze_refuses_out_of_range_settings(kw, words):
    h, y, m = make_data(C=3, d=5, n=10)
    with pytest.raises(UsageError, match=words):
        ncinspect.analyze(h, y, weights=m, **kw)


@pytest.mark.parametrize("kw,words", BAD)
def test_analyze_file_refuses_out_of_range_settings(dump, kw, words):
    with pytest.raises(UsageError, match=words):
        ncinspect.analyze_file(dump, **kw)


def test_settings_at_their_bounds_still_run(dump):
    h, y, m = make_data(C=3, d=5, n=10)
    ref = ncinspect.analyze(h, y, weights=m)
    got = ncinspect.analyze(h, y, weights=m, chunk_rows=1, memory_limit=2**40)
    assert got.metrics["nc1"] == pytest.approx(ref.metrics["nc1"], rel=1e-12)
    rep = ncinspect.analyze_file(dump, bootstrap=2, seed=2**63 - 1, chunk_rows=2**64)
    assert rep.snapshots[0].metrics["nc1"] == pytest.approx(ref.metrics["nc1"], rel=1e-12)


@pytest.mark.parametrize("kw,words", [b for b in BAD if "bootstrap" not in b[0]])
def test_theory_file_and_run_check_refuse_out_of_range_settings(dump, kw, words):
    from ncinspect.check import parse_threshold, run_check
    from ncinspect.theory import theory_file

    with pytest.raises(UsageError, match=words):
        theory_file(dump, **kw)
    with pytest.raises(UsageError, match=words):
        run_check(dump, [parse_threshold("max", "nc1=5")], **kw)
