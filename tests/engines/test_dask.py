"""The Dask engine gives the local engine's numbers (to 1e-12 relative) on arrays and files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import dask.array as da  # an extra CI installs: missing, the tests fail
import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import UsageError

from ..helpers import make_data


def _assert_same(got: dict, want: dict, rel: float = 1e-12) -> None:
    assert set(got) == set(want)
    for key, value in want.items():
        if isinstance(value, float):
            assert got[key] == pytest.approx(value, rel=rel, abs=0), key
        else:
            assert got[key] == value, key


@pytest.fixture(scope="module")
def data():
    h, y, m = make_data(C=5, d=24, n=400, offset=3.0, imbalanced=True)
    rng = np.random.default_rng(7)
    w = m + 0.2 * rng.standard_normal(m.shape)
    return h.astype(np.float32), y, w, rng.standard_normal(5)


def test_core_import_does_not_import_dask():
    code = (
        "import sys, ncinspect, ncinspect.analysis, ncinspect.cli.report, ncinspect.engines;"
        "bad = [m for m in ('dask', 'distributed', 'zarr') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_dask_array_equals_local(data):
    h, y, w, b = data
    local = ncinspect.analyze(h, y, weights=w, bias=b, per_class=True)
    feats = da.from_array(h, chunks=(333, 10))  # row chunks of any size, columns split too
    got = ncinspect.analyze(feats, da.from_array(y, chunks=100), weights=w, bias=b, per_class=True)
    _assert_same(got.metrics, local.metrics)
    for a, c in zip(got.per_class, local.per_class, strict=True):
        _assert_same(a, c)
    np.testing.assert_allclose(got.arrays.means, local.arrays.means, rtol=1e-13)


def test_dask_outputs_and_center_samples(data):
    h, y, w, b = data
    outs = h.astype(np.float64) @ w.T * 0.01
    local = ncinspect.analyze(h, y, outputs=outs, center="samples")
    got = ncinspect.analyze(
        da.from_array(h, chunks=(97, -1)),
        y,
        center="samples",
        outputs=da.from_array(outs, chunks=(50, 2)),
    )
    _assert_same(got.metrics, local.metrics)
    assert got.metrics["sqi_eps1"] is not None


def test_dask_reruns_are_identical(data):
    h, y, w, b = data
    feats = da.from_array(h, chunks=(61, -1))
    one = ncinspect.analyze(feats, y, weights=w).metrics
    assert ncinspect.analyze(feats, y, weights=w).metrics == one  # fixed merge tree


def test_dask_nonfinite_rows_are_reported(data):
    h, y, w, b = data
    bad = h.copy()
    bad[250, 3] = np.nan
    with pytest.raises(ncinspect.NCInspectError, match="first at row 250"):
        ncinspect.analyze(da.from_array(bad, chunks=(100, -1)), y)


def test_zarr_store(data, tmp_path):
    import zarr

    h, y, w, b = data
    store = zarr.open_array(
        str(tmp_path / "h.zarr"), mode="w", shape=h.shape, chunks=(128, h.shape[1]), dtype=h.dtype
    )
    store[:] = h
    got = ncinspect.analyze(da.from_zarr(str(tmp_path / "h.zarr")), y, weights=w, bias=b)
    _assert_same(got.metrics, ncinspect.analyze(h, y, weights=w, bias=b).metrics)


def test_engine_needs_the_extra(monkeypatch):
    from ncinspect.engines import get_engine

    monkeypatch.setitem(sys.modules, "dask", None)
    with pytest.raises(UsageError, match=r"ncinspect\[dask\]"):
        get_engine("dask")
    with pytest.raises(UsageError, match="--engine dask"):
        get_engine("local", scheduler="tcp://127.0.0.1:1")


# ------------------------------------------------------------------------------------------
# a real cluster: two worker processes on this machine
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster():
    import distributed

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as lc:
        yield lc


@pytest.fixture(scope="module")
def dump(tmp_path_factory, data):
    h, y, w, b = data
    path = tmp_path_factory.mktemp("dask") / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for ep in (1, 2):
            g = f.create_group(f"epoch_{ep}")
            g.create_dataset("features", data=h * ep, chunks=(64, h.shape[1]))
            g["weights"], g["bias"] = w, b
    return path


@pytest.mark.slow
def test_cli_dask_engine_on_cluster_equals_local(cluster, dump, tmp_path):
    local, remote = tmp_path / "local.json", tmp_path / "dask.json"
    assert (
        main(["report", str(dump), "--json", str(local), "--per-class", "--chunk-rows", "100"]) == 0
    )
    assert (
        main(
            [
                "report",
                str(dump),
                "--json",
                str(remote),
                "--per-class",
                "--chunk-rows",
                "100",
                "--engine",
                "dask",
                "--scheduler",
                cluster.scheduler_address,
            ]
        )
        == 0
    )
    want, got = json.loads(local.read_text()), json.loads(remote.read_text())
    assert len(got["snapshots"]) == 2
    for g, w in zip(got["snapshots"], want["snapshots"], strict=True):
        _assert_same(g["metrics"], w["metrics"])
        for a, c in zip(g["per_class"], w["per_class"], strict=True):
            _assert_same(a, c)


@pytest.mark.slow
def test_analyze_on_cluster_client(cluster, data):
    import distributed

    from ncinspect.engines.dask import DaskEngine

    h, y, w, b = data
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        engine = DaskEngine(scheduler=client)
        got = ncinspect.analyze(da.from_array(h, chunks=(50, -1)), y, weights=w, engine=engine)
        assert engine.client() is client
    _assert_same(got.metrics, ncinspect.analyze(h, y, weights=w).metrics)


# ------------------------------------------------------------------------------------------
# HDF5 files read by the tasks: absolute paths, no handle left open, readable errors
# ------------------------------------------------------------------------------------------
def _write_dump(path, data, scale: float = 1.0) -> None:
    h, y, w, b = data
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=h * scale, chunks=(64, h.shape[1]))
        f["labels"], f["weights"], f["bias"] = y, w, b


def test_dask_engine_leaves_no_file_open(data, tmp_path):
    from ncinspect.engines.dask import DaskEngine

    path = tmp_path / "open.h5"
    _write_dump(path, data)
    first = ncinspect.analyze_file(path, engine=DaskEngine(), chunk_rows=100)
    _write_dump(path, data, scale=2.0)  # "unable to truncate a file which is already open"
    again = ncinspect.analyze_file(path, engine=DaskEngine(), chunk_rows=100)
    assert again[0].metrics["nc1"] == pytest.approx(first[0].metrics["nc1"])
    np.testing.assert_allclose(again[0].arrays.means, 2 * first[0].arrays.means, rtol=1e-6)


def test_dask_read_failure_is_unreadable_file_error(data, tmp_path, monkeypatch, capsys):
    import ncinspect.engines.dask as engine_mod

    _write_dump(tmp_path / "bad.h5", data)
    monkeypatch.chdir(tmp_path)

    def fail(path, name, key):
        raise OSError(f"Unable to synchronously open file (name = '{path}')\nerrno = 5")

    monkeypatch.setattr(engine_mod, "_read_h5", fail)
    assert main(["report", "bad.h5", "--engine", "dask", "--json", "-"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(tmp_path / "bad.h5") + ":/features: cannot read rows 0:" in err


def test_h5_rows_path_is_absolute_and_missing_file_is_named(tmp_path, monkeypatch):
    from ncinspect.engines.dask import _H5Rows

    monkeypatch.chdir(tmp_path)
    rows = _H5Rows("gone.h5", "/features", (10, 3), np.float32)
    assert rows.path == str(tmp_path / "gone.h5")
    with pytest.raises(
        ncinspect.errors.UnreadableFileError,
        match=r"gone\.h5:/features: "
        r"cannot read rows 2:5 .*FileNotFoundError",
    ):
        rows[2:5, :]


@pytest.mark.slow
def test_cluster_workers_in_another_cwd_read_relative_paths(cluster, data, tmp_path, monkeypatch):
    import distributed

    from ncinspect.engines.dask import DaskEngine, _H5Rows

    path = tmp_path / "rel.h5"
    _write_dump(path, data)
    monkeypatch.chdir(tmp_path)
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as client:
        assert str(tmp_path) not in set(client.run(os.getcwd).values())  # workers elsewhere
        want = ncinspect.analyze_file("rel.h5", chunk_rows=100)
        got = ncinspect.analyze_file("rel.h5", chunk_rows=100, engine=DaskEngine(client))
        _assert_same(got[0].metrics, want[0].metrics)
        _write_dump(path, data, scale=2.0)  # no worker keeps the file open (or locked)
        # a file a worker cannot read: the client gets the engine's error, naming the file
        gone = da.from_array(
            _H5Rows("gone.h5", "/features", (10, 3), np.float32),
            chunks=(5, 3),
            asarray=True,
            lock=False,
        )
        with pytest.raises(ncinspect.errors.UnreadableFileError, match=str(tmp_path / "gone.h5")):
            client.compute(gone.sum(), sync=True)


# ------------------------------------------------------------------------------------------
# theory: the sums of the identities ride pass 2 on the Dask engine too
# ------------------------------------------------------------------------------------------
def _assert_close_tree(got, want, rel: float = 1e-12, where: str = "") -> None:
    """Every number of ``got`` equals ``want``'s to ``rel`` (same structure, same strings)."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for key in want:
            _assert_close_tree(got[key], want[key], rel, f"{where}/{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _assert_close_tree(a, b, rel, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert got == pytest.approx(want, rel=rel, abs=0), where
    else:
        assert got == want, where


@pytest.fixture(scope="module")
def theory_dump(tmp_path_factory):
    from ncinspect.io.writer import DumpWriter

    rng = np.random.default_rng(3)
    C, d, k, n = 4, 6, 5, 300
    y = rng.integers(0, C, n)
    means = 3.0 * rng.standard_normal((C, d))
    h = means[y] + 0.5 * rng.standard_normal((n, d))
    w1, w2 = rng.standard_normal((d, k)), 0.1 * rng.standard_normal((C, d))
    path = tmp_path_factory.mktemp("dask_theory") / "theory.h5"
    with DumpWriter(path, "w") as wr:
        wr.set_meta(weight_decay=1e-3, kappa=1.0 / n, n_samples=n, loss="square")
        for epoch, scale in ((1, 0.5), (2, 1.0)):
            snap = wr.snapshot(f"/epoch_{epoch}", epoch=epoch)
            snap.write_params([w1 * scale, w2 * scale])
            outs = h @ (w2 * scale).T + 0.01 * rng.standard_normal((n, C))
            snap.append(features=h, labels=y, outputs=outs)
    return path


def test_theory_dask_engine_equals_local(theory_dump, tmp_path):
    from ncinspect.engines.dask import DaskEngine
    from ncinspect.theory import theory_file

    local, _ = theory_file(theory_dump, chunk_rows=70)
    with DaskEngine() as engine:
        remote, _ = theory_file(theory_dump, chunk_rows=70, engine=engine)
    assert len(remote) == 2 and all(s.theory is not None for s in remote)
    computed = [ln for ln in local[1].theory.lines if ln.status == "ok"]
    assert any(ln.key == "stationarity_last_layer" for ln in computed)  # the sums took part
    _assert_close_tree(remote.to_dict(), local.to_dict())


def test_cli_theory_engine_dask_equals_local(tmp_path, monkeypatch):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    monkeypatch.chdir(root)
    local, remote = tmp_path / "local.json", tmp_path / "dask.json"
    args = ["theory", "sample_data/trained_wd.h5", "--snapshot", "epoch_6000", "--json"]
    assert main([*args, str(local), "--chunk-rows", "128"]) == 0
    assert main([*args, str(remote), "--chunk-rows", "128", "--engine", "dask"]) == 0
    want, got = json.loads(local.read_text()), json.loads(remote.read_text())
    assert want["snapshots"][0]["theory"]["lines"]
    _assert_close_tree(got, want)


def test_threads_size_dasks_local_scheduler():
    import threading

    import dask

    from ncinspect.engines import get_engine

    def ident(_):
        return threading.get_ident()

    tasks = [dask.delayed(ident)(i) for i in range(64)]
    one = get_engine("dask", threads=1)
    assert one.threads == 1
    assert len(set(one.compute(tasks))) == 1  # one worker thread ran every task
    assert get_engine("dask", threads=2).threads == 2


def test_cli_dask_threads_equals_local(dump, tmp_path):
    local, remote = tmp_path / "local.json", tmp_path / "dask.json"
    common = ["report", str(dump), "--per-class", "--chunk-rows", "100", "--json"]
    assert main([*common, str(local), "--threads", "1"]) == 0
    assert main([*common, str(remote), "--engine", "dask", "--threads", "2"]) == 0
    want, got = json.loads(local.read_text()), json.loads(remote.read_text())
    for g, w in zip(got["snapshots"], want["snapshots"], strict=True):
        _assert_same(g["metrics"], w["metrics"])


def test_threads_with_a_distributed_scheduler_is_refused(dump, capsys):
    args = ["report", str(dump), "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1"]
    assert main([*args, "--threads", "2", "--json", "-"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_threads_with_an_active_distributed_client_is_refused():
    import distributed

    from ncinspect.engines import get_engine

    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ):
        with pytest.raises(UsageError, match="threads"):
            get_engine("dask", threads=2)
    assert get_engine("dask", threads=2).threads == 2  # no client any more
