"""Threads change the time, never a bit of the output."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.engines.local import LocalEngine
from ncinspect.engines.threads import Workers, available_cores, resolve_threads
from ncinspect.stats.passes import block_rows, first_rows


def _dump(path, n, d, C, *, outputs=False, seed=0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((C, d))
    y = rng.integers(0, C, n)
    h = (means[y] + 0.8 * rng.standard_normal((n, d)) + 3.0).astype(np.float32)
    w = means + 0.2 * rng.standard_normal((C, d))
    with ncinspect.DumpWriter(str(path), "w") as wr:
        wr.write("labels", y)
        snap = wr.snapshot("/")
        snap.append(features=h)
        arrays = {"weights": w, "bias": 0.1 * rng.standard_normal(C)}
        if outputs:
            arrays["outputs"] = h @ w.T.astype(np.float32)
        snap.write(**arrays)
    return str(path)


@pytest.mark.parametrize(
    "n,d,C,outputs,extra",
    [
        (5000, 300, 10, False, []),  # dense pass 1, projection from the scores
        (5000, 300, 120, True, ["--per-class"]),  # sparse pass 1, float32 classifier
        (3000, 30, 80, False, ["--chunk-rows", "700"]),  # C > d: float32 NCC, several chunks
    ],
)
def test_json_byte_identical_for_1_2_4_threads(tmp_path, n, d, C, outputs, extra):
    # several blocks per chunk in both passes, so the pool has work to share
    assert n > 2 * block_rows(d, C) or "--chunk-rows" in extra
    assert n > first_rows(d, C) or "--chunk-rows" in extra
    path = _dump(tmp_path / "run.h5", n, d, C, outputs=outputs)
    texts = []
    for threads in (1, 2, 4):
        out = tmp_path / f"t{threads}.json"
        args = ["report", path, "--json", str(out), "-q", "--threads", str(threads), *extra]
        assert main(args) == 0
        texts.append(out.read_text())
    assert texts[0] == texts[1] == texts[2]
    assert '"nc1": null' not in texts[0]


def test_library_default_equals_one_thread():
    rng = np.random.default_rng(1)
    h = rng.standard_normal((4000, 200)) + 5
    y = rng.integers(0, 12, 4000)
    w = rng.standard_normal((12, 200))
    one = ncinspect.analyze(h, y, weights=w, engine=LocalEngine(threads=1))
    default = ncinspect.analyze(h, y, weights=w)
    assert one.metrics == default.metrics


def test_threads_option_refuses_zero(tmp_path, capsys):
    path = _dump(tmp_path / "run.h5", 100, 5, 3)
    assert main(["report", path, "--threads", "0"]) == 2


def test_workers_cap_blas_and_restore():
    from threadpoolctl import threadpool_info

    before = [i["num_threads"] for i in threadpool_info()]
    with Workers(2) as w:
        assert all(i["num_threads"] == 1 for i in threadpool_info())
        assert w.map(lambda x: x * x, range(50)) == [x * x for x in range(50)]
        got = list(w.prefetch(lambda a, b: (a, b), [(0, 2), (2, 4), (4, 5)]))
        assert got == [(0, 2, (0, 2)), (2, 4, (2, 4)), (4, 5, (4, 5))]
    assert [i["num_threads"] for i in threadpool_info()] == before


def test_default_threads_follow_the_affinity():
    assert resolve_threads(None) == available_cores() == len(os.sched_getaffinity(0))
    assert resolve_threads(3) == 3
    with pytest.raises(ValueError):
        resolve_threads(0)


def test_theory_json_byte_identical_for_1_2_4_threads(tmp_path):
    """The theory sums run in the blocks of pass 2 on the pool: no bit depends on it."""
    n, d, C = 5000, 300, 10
    assert n > 4 * block_rows(d, C)  # several blocks per chunk
    dump = _dump(tmp_path / "run.h5", n, d, C)
    texts = []
    for threads in (1, 2, 4):
        out = tmp_path / f"t{threads}.json"
        assert main(["theory", dump, "--json", str(out), "--threads", str(threads)]) == 0
        texts.append(out.read_text())
    assert texts[0] == texts[1] == texts[2]
    lines = {ln["key"]: ln for ln in json.loads(texts[0])["snapshots"][0]["theory"]["lines"]}
    for key in ("loss_floor", "residual_asymmetry"):  # computed from the ridden sums
        assert lines[key]["status"] == "ok" and lines[key]["measured"] is not None


def test_blas_caps_nest_only_the_outermost_restores():
    """A cap inside a cap (a run's cap around each step's own) leaves the limit in place
    when the inner one closes; the outermost puts back what was there."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from ncinspect.blas import one_blas_thread

    def threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    with threadpool_limits(limits=2, user_api="blas"):
        before = threads()
        assert before and all(n == 2 for n in before)
        with one_blas_thread():
            with one_blas_thread():
                assert all(n == 1 for n in threads())
            assert all(n == 1 for n in threads())  # the inner exit kept the outer cap
            with Workers(2):  # the engines' cap nests the same way
                assert all(n == 1 for n in threads())
            assert all(n == 1 for n in threads())
        assert threads() == before
