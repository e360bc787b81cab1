"""``engine.run(passes, sources, rows)``: any list of passes in one walk over the rows.

Each chunk is read once and fed to every pass; the statistics do not depend on the thread
count (bit for bit) nor, beyond round-off, on the chunking or the engine. The regression
and OOD passes get the same threads, prefetch and Dask as the classification passes.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.engines import local as local_mod
from ncinspect.engines.local import LocalEngine, row_chunks
from ncinspect.engines.passes import (
    ChunkFn,
    FeatureSumRows,
    FirstRows,
    RegressionFirstRows,
    ScoreRows,
)
from ncinspect.io.sources import MemorySource
from ncinspect.io.writer import DumpWriter
from ncinspect.metrics.ood import FeatureSum
from ncinspect.metrics.ood_scores import OODScorer
from ncinspect.stats.passes import block_rows

N, D, C, T = 4000, 300, 7, 3


class Counting(MemorySource):
    """An in-memory source that counts the rows spans read."""

    def __init__(self, array, where):
        super().__init__(array, where)
        self.reads: Counter = Counter()

    def read(self, start=0, stop=None):
        self.reads[(start, stop)] += 1
        return super().read(start, stop)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    h = rng.standard_normal((C, D))[y] + 0.5 * rng.standard_normal((N, D)) + 2.0
    targets = h[:, :T] @ rng.standard_normal((T, T)) + 0.1 * rng.standard_normal((N, T))
    w = rng.standard_normal((C, D))
    scorer = OODScorer(h.mean(axis=0), np.linalg.qr(rng.standard_normal((D, C - 1)))[0].T, w)
    return h.astype(np.float32), y, targets, scorer


def _passes(scorer):
    return [FirstRows(C, D), FeatureSumRows(D), RegressionFirstRows(D, T), ScoreRows(scorer, D)]


def _fields(stat) -> dict:
    if hasattr(stat, "values") and isinstance(stat.values, dict):  # RowScores
        return {k: np.concatenate(v) for k, v in stat.values.items()}
    return {k: np.asarray(v) for k, v in vars(stat).items() if v is not None}


def _run(engine, h, y, targets, scorer, rows, src=None):
    src = src or MemorySource(h, "features")
    arrays = {"codes": y, "targets": targets}
    return engine.run(_passes(scorer), {"features": src}, rows, row_arrays=arrays)


def test_several_blocks_per_chunk():
    # so that the pool has blocks to share in every pass of the list
    assert 700 > 2 * 32 and N > 2 * block_rows(D, T) and N > 2 * block_rows(D, 0)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_pass_list_reads_each_chunk_once(threads):
    h, y, targets, scorer = _data()
    src = Counting(h, "features")
    got = _run(LocalEngine(threads=threads), h, y, targets, scorer, 700, src)
    assert src.reads == Counter(dict.fromkeys(row_chunks(N, 700), 1))  # one read per chunk
    assert len(got) == 4
    # every pass as it would be alone: the same bits (a walk only shares the reads)
    for p, stat in zip(_passes(scorer), got, strict=True):
        (alone,) = LocalEngine(threads=1).run(
            [p],
            {"features": MemorySource(h, "f")},
            700,
            row_arrays={"codes": y, "targets": targets},
        )
        a, b = _fields(stat), _fields(alone)
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{type(stat).__name__}.{k}")


def test_thread_count_changes_no_bit_and_chunks_only_round_off():
    h, y, targets, scorer = _data(1)
    one = _run(LocalEngine(threads=1), h, y, targets, scorer, 700)
    two = _run(LocalEngine(threads=2), h, y, targets, scorer, 700)
    whole = _run(LocalEngine(threads=2), h, y, targets, scorer, N)
    for s1, s2, s3 in zip(one, two, whole, strict=True):
        a, b, c = _fields(s1), _fields(s2), _fields(s3)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
            np.testing.assert_allclose(a[k], c[k], rtol=1e-12, atol=1e-9, err_msg=k)


def test_known_answers():
    h, y, targets, scorer = _data(2)
    first, total, reg, scores = _run(LocalEngine(threads=2), h, y, targets, scorer, 700)
    x = h.astype(np.float64)
    np.testing.assert_array_equal(first.counts, np.bincount(y, minlength=C))
    assert isinstance(total, FeatureSum) and total.count == N
    np.testing.assert_allclose(total.total, x.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(reg.feat_mean, x.mean(axis=0), rtol=1e-12)
    xc = x - x.mean(axis=0)
    np.testing.assert_allclose(reg.feat_scatter, xc.T @ xc, rtol=1e-10, atol=1e-8)
    tc = targets - targets.mean(axis=0)
    np.testing.assert_allclose(reg.tgt_scatter, tc.T @ tc, rtol=1e-10)
    direct, _ = scorer.scores(x)
    for name, values in direct.items():
        np.testing.assert_allclose(scores.array(name), values, rtol=1e-12, err_msg=name)


def test_dask_engine_runs_the_same_list():
    from ncinspect.engines.dask import DaskEngine

    h, y, targets, scorer = _data(3)
    local = _run(LocalEngine(threads=2), h, y, targets, scorer, 700)
    with DaskEngine() as engine:
        remote = _run(engine, h, y, targets, scorer, 700)
        again = _run(engine, h, y, targets, scorer, 700)
        # the generic chunk function (reduce_rows) is a pass too
        src = MemorySource(h, "features")
        fsum = engine.reduce_rows(_sum_chunk, [src], 700)
    for s1, s2, s3 in zip(local, remote, again, strict=True):
        a, b, c = _fields(s1), _fields(s2), _fields(s3)
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-12, atol=1e-9, err_msg=k)
            np.testing.assert_array_equal(b[k], c[k])  # a rerun: the same tree
    np.testing.assert_allclose(fsum.total, local[1].total, rtol=1e-12)


def _sum_chunk(row0, h):
    return FeatureSum.of_chunk(row0, h)


def test_chunk_function_pass_and_no_rows():
    h = np.arange(12.0).reshape(6, 2)
    (out,) = LocalEngine().run([ChunkFn(_sum_chunk, ["x"])], {"x": MemorySource(h, "x")}, 4)
    np.testing.assert_array_equal(out.total, h.sum(axis=0))
    empty = MemorySource(np.zeros((0, 2)), "x")
    (nothing,) = LocalEngine().run([FeatureSumRows(2, "x")], {"x": empty}, 4)
    assert nothing.count == 0 and nothing.total.tolist() == [0.0, 0.0]


# ------------------------------------------------------------------------------------------
# regression and OOD reports: threads, chunks and Dask
# ------------------------------------------------------------------------------------------
def _regression_dump(path, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((T, D))
    targets = rng.standard_normal((N, T))
    with DumpWriter(path, "w") as wr:
        for ep, k in ((1, 1.0), (5, 0.1)):
            h = targets @ w + k * rng.standard_normal((N, D))
            s = wr.snapshot(f"epoch_{ep:04d}", epoch=ep, split="train", task="regression")
            s.append(features=h.astype(np.float32), targets=targets)
            s.write(weights=w)
    return str(path)


def _ood_dump(path, seed=0):
    h, y, _, _ = _data(seed)
    rng = np.random.default_rng(seed + 1)
    w = rng.standard_normal((C, D))
    ood = (rng.standard_normal((3000, D)) + 1.0).astype(np.float32)
    with DumpWriter(path, "w") as wr:
        for split, rows in (("train", slice(0, 3000)), ("test", slice(3000, N))):
            s = wr.snapshot(f"{split}/epoch_1", epoch=1, split=split)
            s.append(features=h[rows], labels=y[rows])
            s.write(weights=w)
        s = wr.snapshot("ood_svhn/epoch_1", epoch=1, split="ood_svhn")
        s.append(features=ood)
    return str(path)


def _report(path, out, *args) -> str:
    assert main(["report", path, "--json", str(out), "-q", *args]) == 0
    return out.read_text()


def _numbers(text: str) -> dict:
    data = json.loads(text)
    return {
        (s["name"], k): v
        for s in data["snapshots"]
        for k, v in s["metrics"].items()
        if isinstance(v, float)
    }


def _close(a: dict, b: dict, rtol=1e-10):
    assert a.keys() == b.keys()
    for key, value in a.items():
        assert b[key] == pytest.approx(value, rel=rtol, abs=1e-12), key


@pytest.mark.parametrize("kind", ["regression", "ood"])
def test_reports_threads_chunks_and_dask(tmp_path, kind):
    make = _regression_dump if kind == "regression" else _ood_dump
    path = make(tmp_path / f"{kind}.h5")
    one = _report(path, tmp_path / "t1.json", "--threads", "1")
    two = _report(path, tmp_path / "t2.json", "--threads", "2")
    assert one == two  # byte-identical for any thread count
    keys = (
        ["nrc1", "nrc2"] if kind == "regression" else ["ood_auroc_ncspan", "nc5_ood_orthogonality"]
    )
    for key in keys:
        assert f'"{key}": null' not in one and f'"{key}"' in one
    chunked = _report(path, tmp_path / "c.json", "--threads", "2", "--chunk-rows", "700")
    _close(_numbers(one), _numbers(chunked))
    remote = _report(path, tmp_path / "d.json", "--engine", "dask", "--chunk-rows", "700")
    _close(_numbers(one), _numbers(remote))


@pytest.mark.parametrize("pattern", [None, "/test*", "/ood*"])
def test_id_rows_are_read_twice_and_ood_rows_once(tmp_path, monkeypatch, pattern):
    """Pass 1 and pass 2 read the scored ID rows (their OOD scores ride pass 2); an OOD
    set is read once (its sum and its rows' scores in one walk); progress says so."""
    path = _ood_dump(tmp_path / "o.h5")
    plain = {r.name: r.metrics for r in ncinspect.analyze_file(path, chunk_rows=500)}
    reads: Counter = Counter()
    inner = local_mod.ChunkReader.read

    def counted(self, a, b):
        reads[(self.source.where, a, b)] += 1
        return inner(self, a, b)

    class Progress:
        done, expected = 0, None

        def expect(self, rows, nbytes):
            self.expected = rows

        def __call__(self, n):
            self.done += n

    monkeypatch.setattr(local_mod.ChunkReader, "read", counted)
    bar = Progress()
    results = ncinspect.analyze_file(path, chunk_rows=500, snapshot=pattern, progress=bar)
    assert bar.expected == bar.done > 0
    for r in results:
        assert r.metrics == plain[r.name]
    if pattern != "/ood*":
        test = [r for r in results if r.split == "test"][0]
        assert test.metrics["ood_auroc_ncspan"] is not None
        ids = [s for s in reads if "test/epoch_1/features" in s[0]]
        assert len(ids) == 2 and all(reads[s] == 2 for s in ids), reads
    oods = [s for s in reads if "ood_svhn/epoch_1/features" in s[0]]
    assert len(oods) == 6 and all(reads[s] == 1 for s in oods), reads


def test_analyze_reads_id_rows_twice_and_ood_rows_once(monkeypatch):
    """analyze(ood_features=...): the ID rows' scores ride pass 2; an OOD set's sum and
    its rows' scores share one walk."""
    h, y, _, _ = _data(4)
    w = np.random.default_rng(4).standard_normal((C, D))
    ood = np.random.default_rng(5).standard_normal((900, D)) + 1.0
    plain = ncinspect.analyze(h, y, weights=w, ood_features={"svhn": ood}, chunk_rows=500)
    reads: Counter = Counter()
    inner = local_mod.ChunkReader.read

    def counted(self, a, b):
        reads[(self.source.where, a, b)] += 1
        return inner(self, a, b)

    monkeypatch.setattr(local_mod.ChunkReader, "read", counted)
    res = ncinspect.analyze(h, y, weights=w, ood_features={"svhn": ood}, chunk_rows=500)
    assert res.metrics == plain.metrics and res.metrics["ood_auroc_nci"] is not None
    ids = {s: k for s, k in reads.items() if s[0] == "features"}
    oods = {s: k for s, k in reads.items() if "svhn" in s[0]}
    assert len(ids) == len(list(row_chunks(N, 500))) and set(ids.values()) == {2}
    assert len(oods) == 2 and set(oods.values()) == {1}, reads


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["regression", "ood"])
def test_reports_on_a_distributed_cluster(tmp_path, kind):
    """The pass objects travel to worker processes (pickled) and give the local numbers."""
    import distributed

    path = (_regression_dump if kind == "regression" else _ood_dump)(tmp_path / f"{kind}.h5")
    local = _report(path, tmp_path / "l.json", "--chunk-rows", "700")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as lc:
        args = ["--engine", "dask", "--scheduler", lc.scheduler_address, "--chunk-rows", "700"]
        remote = _report(path, tmp_path / "r.json", *args)
    _close(_numbers(local), _numbers(remote))
