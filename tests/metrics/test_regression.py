"""Regression snapshots: nrc1-nrc3 known answers, invariances, streaming, reference, CLI."""

from __future__ import annotations

import json

import dask.array as da
import h5py
import numpy as np
import pytest

from ncinspect.analysis.api import analyze_file
from ncinspect.analysis.regression import analyze_regression
from ncinspect.cli import main
from ncinspect.engines.dask import DaskEngine
from ncinspect.io.writer import DumpWriter
from ncinspect.metrics.regression import REGRESSION_KEYS, nrc3

from ..reference import _sqrtm_psd, reference_nrc, reference_nrc3_objective


def _data(N=120, d=9, t=3, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, 5))
    mix = rng.standard_normal((5, t))
    y = np.tanh(x @ mix) + 0.1 * rng.standard_normal((N, t))
    w = rng.standard_normal((t, d))
    h = y @ w + noise * rng.standard_normal((N, d)) + 0.3
    return h, y, w


def _close(a, b, rtol=1e-9, atol=1e-14):
    assert a is not None and b is not None
    assert abs(a - b) <= atol + rtol * abs(b), (a, b)


# ---------------------------------------------------------------------------------------
# known answers
# ---------------------------------------------------------------------------------------
def test_features_in_row_space_of_w_give_zero_nrc1_nrc2():
    rng = np.random.default_rng(1)
    t, d, N = 3, 12, 200
    w = rng.standard_normal((t, d))
    h = rng.standard_normal((N, t)) @ w  # every row in the row space of W (a t-dim subspace)
    y = rng.standard_normal((N, t))
    m = analyze_regression(h, y, weights=w).metrics
    assert m["nrc1"] < 1e-25 and m["nrc2"] < 1e-25
    # one direction off the subspace: both become clearly positive
    h2 = h + 0.1 * np.outer(rng.standard_normal(N), np.linalg.svd(w)[2][-1])
    m2 = analyze_regression(h2, y, weights=w).metrics
    assert m2["nrc1"] > 1e-4 and m2["nrc2"] > 1e-4


def _targets_and_root(seed=3, N=500, t=4):
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((N, t)) @ rng.standard_normal((t, t))
    yc = y - y.mean(axis=0)
    return y, _sqrtm_psd(yc.T @ yc / N)


def _w_with_gram(gram, d, seed=0):
    """W (t, d) with W W^T = gram (gram PSD)."""
    q = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, gram.shape[0])))[0]
    return _sqrtm_psd(gram) @ q.T


def test_nrc3_zero_when_ww_proportional_to_sigma_root():
    y, root = _targets_and_root()
    w = 2.5 * _w_with_gram(root, d=10)
    v, gamma, why = nrc3(w, np.cov(y.T, bias=True))
    assert why is None and v < 1e-24 and gamma == 0.0
    h = np.random.default_rng(0).standard_normal((len(y), 10))
    assert analyze_regression(h, y, weights=w).metrics["nrc3"] < 1e-24


def test_nrc3_zero_at_an_interior_gamma_and_finds_it():
    y, root = _targets_and_root(seed=5)
    sig = np.cov(y.T, bias=True)
    s_min = np.sqrt(np.linalg.eigvalsh(sig).min())
    s = 0.6 * s_min
    w = _w_with_gram(root - s * np.eye(root.shape[0]), d=8)
    v, gamma, _ = nrc3(w, sig)
    assert v < 1e-20
    _close(gamma, s * s, rtol=1e-8)


def test_nrc3_is_the_minimum_over_the_interval():
    y, _ = _targets_and_root(seed=8)
    w = np.random.default_rng(9).standard_normal((4, 7))
    sig = np.cov(y.T, bias=True)
    v, gamma, _ = nrc3(w, sig)
    lam_min = np.linalg.eigvalsh(sig).min()
    grid = np.linspace(0, lam_min, 4001)
    vals = [reference_nrc3_objective(w, y, g) for g in grid]
    assert v <= np.nanmin(vals) + 1e-12
    _close(v, reference_nrc3_objective(w, y, gamma), rtol=1e-12)


def test_nrc3_isotropic_targets_and_one_target():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((3, 6))
    v, _, why = nrc3(w, 4.0 * np.eye(3))  # B vanishes at gamma = lambda_min: the rest counts
    a = w @ w.T
    a /= np.linalg.norm(a)
    _close(v, float(np.linalg.norm(a - np.eye(3) / np.sqrt(3)) ** 2), rtol=1e-12)
    assert nrc3(w[:1], np.array([[2.0]]))[0] < 1e-30  # t = 1: both sides are 1


# ---------------------------------------------------------------------------------------
# direct reference, streaming, invariances
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "N,d,t,noise,dtype",
    [(120, 9, 3, 0.05, np.float64), (80, 5, 1, 0.3, np.float32), (60, 4, 4, 0.2, np.float64)],
)
def test_matches_direct_reference(N, d, t, noise, dtype):
    h, y, w = _data(N, d, t, noise)
    h = h.astype(dtype)
    got = analyze_regression(h, y, weights=w).metrics
    ref = reference_nrc(h, y, w)
    assert set(got) == set(REGRESSION_KEYS)
    for key in REGRESSION_KEYS:
        _close(got[key], ref[key], rtol=1e-9, atol=1e-13)


def test_strong_collapse_keeps_relative_digits():
    _, y, w = _data()
    h = y @ w + 1e-7 * np.random.default_rng(3).standard_normal((len(y), w.shape[1]))
    got = analyze_regression(h, y, weights=w).metrics
    ref = reference_nrc(h, y, w)
    assert 0 < got["nrc2"] < 1e-12
    _close(got["nrc1"], ref["nrc1"], rtol=1e-6)
    _close(got["nrc2"], ref["nrc2"], rtol=1e-6)


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_streaming_equals_one_chunk(rows):
    h, y, w = _data()
    one = analyze_regression(h, y, weights=w, chunk_rows=len(h)).metrics
    many = analyze_regression(h, y, weights=w, chunk_rows=rows).metrics
    for key in REGRESSION_KEYS:
        _close(many[key], one[key], rtol=1e-10)


def test_invariances():
    h, y, w = _data(seed=4)
    rng = np.random.default_rng(4)
    base = analyze_regression(h, y, weights=w).metrics
    perm = rng.permutation(len(h))
    q = np.linalg.qr(rng.standard_normal((h.shape[1], h.shape[1])))[0]
    variants = {
        "order": analyze_regression(h[perm], y[perm], weights=w),
        "global scale": analyze_regression(h * 37.0, y, weights=w),
        "rotation": analyze_regression(h @ q, y, weights=w @ q),
        "w scale": analyze_regression(h, y, weights=7.0 * w),
        "target scale+shift": analyze_regression(h, 3.0 * y + 5.0, weights=w),
    }
    for name, res in variants.items():
        for key in REGRESSION_KEYS:
            _close(res.metrics[key], base[key], rtol=1e-8, atol=1e-13), name
    # scaling each row changes the principal directions of the features (nrc1), not the
    # normalised rows that nrc2 and nrc3 look at
    rows = analyze_regression(h * rng.uniform(0.1, 10, (len(h), 1)), y, weights=w).metrics
    for key in ("nrc2", "nrc3"):
        _close(rows[key], base[key], rtol=1e-8, atol=1e-13)


def test_nrc1_takes_the_principal_directions_of_the_centred_features():
    """spec/metrics.md: P_pca projects on the top t principal directions of the centred
    features h_i (0.2 took those of the normalised h^_i, which differ here)."""
    # rows (3, 1) and (-1, 1): centred, (+-2, 0), so P_pca = e1 e1^T and the residual of
    # h^ = h/||h|| is its squared second coordinate: 1/10 and 1/2, mean 0.3
    h = np.array([[3.0, 1.0], [-1.0, 1.0]] * 3)
    y = np.arange(6.0)[:, None]
    got = analyze_regression(h, y).metrics["nrc1"]
    _close(got, 0.3, rtol=1e-12)
    hn = h / np.linalg.norm(h, axis=1, keepdims=True)
    hc = hn - hn.mean(axis=0)
    u = np.linalg.eigh(hc.T @ hc)[1][:, -1]  # the normalised variant's direction
    normalised = float(np.mean(np.sum((hn - np.outer(hn @ u, u)) ** 2, axis=1)))
    assert abs(normalised - 0.3) > 0.02


def test_dask_equals_local():
    h, y, w = _data()
    local = analyze_regression(h, y, weights=w).metrics
    dk = analyze_regression(da.from_array(h, chunks=(25, -1)), y, weights=w).metrics
    for key in REGRESSION_KEYS:
        _close(dk[key], local[key], rtol=1e-10)


# ---------------------------------------------------------------------------------------
# undefined values
# ---------------------------------------------------------------------------------------
def test_undefined_values_are_null_with_reasons():
    h, y, w = _data()
    res = analyze_regression(h, y)
    assert res.metrics["nrc1"] is not None
    assert res.metrics["nrc2"] is None and res.metrics["nrc3"] is None
    assert any("nrc2, nrc3: null (no last-layer weights" in x for x in res.warnings)
    h0 = h.copy()
    h0[5] = 0.0
    res = analyze_regression(h0, y, weights=w)
    assert res.metrics["nrc1"] is None and res.metrics["nrc2"] is None
    assert res.metrics["nrc3"] is not None
    assert any("zero" in x and "row 5" in x for x in res.warnings)
    res = analyze_regression(h, np.ones_like(y), weights=w)
    assert res.metrics["nrc3"] is None and any("constant" in x for x in res.warnings)


# ---------------------------------------------------------------------------------------
# dumps and the CLI
# ---------------------------------------------------------------------------------------
@pytest.fixture
def reg_file(tmp_path):
    h, y, w = _data()
    path = tmp_path / "reg.h5"
    with DumpWriter(path, "w") as wr:
        for ep, k in ((1, 1.0), (5, 0.1)):
            s = wr.snapshot(f"epoch_{ep:04d}", epoch=ep, split="train", task="regression")
            s.append(features=y @ w + k * _data(seed=ep)[0], targets=y)
            s.write(weights=w)
    return path, h, y, w


def test_detection_without_metadata(tmp_path):
    h, y, w = _data()
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["targets"], f["weights"] = h, y, w
    res = analyze_file(path).snapshots[0]
    assert res.task == "regression"
    _close(res.metrics["nrc2"], reference_nrc(h, y, w)["nrc2"])
    onehot = tmp_path / "onehot.h5"
    with h5py.File(onehot, "w") as f:
        f["features"] = h
        f["targets"] = np.eye(3)[np.arange(len(h)) % 3].astype(np.float32)
    res = analyze_file(onehot).snapshots[0]
    assert res.task == "classification" and res.n_classes == 3


def test_cli_report_json_and_check(reg_file, tmp_path, capsys):
    path, h, y, w = reg_file
    assert main(["report", str(path), "--snapshot", "/epoch_0005"]) == 0
    out = capsys.readouterr().out
    assert "nrc1" in out and "nrc3" in out and "nc1 " not in out and "t=3" in out
    js = tmp_path / "r.json"
    assert main(["report", str(path), "--json", str(js)]) == 0
    snaps = json.loads(js.read_text())["snapshots"]
    assert all(set(s["metrics"]) == set(REGRESSION_KEYS) for s in snaps)
    assert all(s["task"] == "regression" for s in snaps)
    with h5py.File(path) as f:
        h5 = f["epoch_0005/features"][()]
    _close(snaps[1]["metrics"]["nrc1"], reference_nrc(h5, y, w)["nrc1"])
    main(["report", str(path)])  # the compact table has the nrc columns
    assert "nrc2" in capsys.readouterr().out
    value = snaps[1]["metrics"]["nrc1"]
    assert main(["check", str(path), "--max", f"nrc1={value * 2}"]) == 0
    assert main(["check", str(path), "--max", f"nrc1={value / 2}"]) == 1
    assert main(["check", str(path), "--decreasing", "nrc2"]) == 0
    capsys.readouterr()


def test_bad_weights_shape_exits_3(tmp_path, capsys):
    h, y, w = _data()
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["targets"], f["weights"] = h, y, w[:, :-1]
    assert main(["report", str(path)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "weights" in err[0] and "(t, d)" in err[0]


def test_dask_engine_on_a_file(reg_file):
    path = reg_file[0]
    local = analyze_file(path).snapshots
    with DaskEngine() as eng:
        dk = analyze_file(path, engine=eng, chunk_rows=30).snapshots
    for a, b in zip(local, dk, strict=True):
        for key in REGRESSION_KEYS:
            _close(b.metrics[key], a.metrics[key], rtol=1e-10)


# ---------------------------------------------------------------------------------------
# the trainer and the sample dump
# ---------------------------------------------------------------------------------------
def test_trainer_regression_dump(tmp_path):
    from ncinspect.errors import UsageError
    from ncinspect.train import TrainConfig, fit

    cfg = TrainConfig(
        task="regression",
        n_targets=2,
        depth=3,
        width=16,
        epochs=40,
        save_every=20,
        n_per_class=10,
        n_test_per_class=3,
        lr=0.05,
        weight_decay=1e-2,
    )
    out = tmp_path / "r.h5"
    hist = fit(cfg, dump=out)
    assert hist.saved_epochs == [0, 20, 40] and hist.records[-1]["mse"] > 0
    with h5py.File(out) as f:
        assert f.attrs["task"] == "regression" and f["targets"].shape == (100, 2)
        assert f["epoch_0040/weights"].shape == (2, 16) and f["test/targets"].shape == (30, 2)
        h, y, w = f["epoch_0040/features"][()], f["targets"][()], f["epoch_0040/weights"][()]
    res = {r.name: r for r in analyze_file(out)}
    assert all(r.task == "regression" for r in res.values())
    for key in REGRESSION_KEYS:
        _close(res["/epoch_0040"].metrics[key], reference_nrc(h, y, w)[key], rtol=1e-8)
    assert hist.records[-1]["nrc1"] == pytest.approx(res["/epoch_0040"].metrics["nrc1"])
    with pytest.raises(UsageError, match="task"):
        TrainConfig(task="ranking").validate()
    with pytest.raises(UsageError, match="n_targets"):
        TrainConfig(task="regression", n_targets=0).validate()


def test_cli_train_regression(tmp_path, capsys):
    out = tmp_path / "c.h5"
    args = ["train", "-o", str(out), "--task", "regression", "--n-targets", "2", "--depth", "2"]
    args += ["--width", "8", "--epochs", "5", "--save-every", "5", "--n-per-class", "5", "-q"]
    assert main(args) == 0
    assert "nrc1" in capsys.readouterr().err
    assert main(["report", str(out), "--snapshot", "/epoch_0005"]) == 0
    assert "nrc2" in capsys.readouterr().out


def test_sample_dump_shows_regression_collapse():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "sample_data" / "regression.h5"
    assert path.stat().st_size < 1_000_000
    train = [r for r in analyze_file(path) if r.split == "train" and r.layer is None]
    assert [r.epoch for r in train] == sorted(r.epoch for r in train) and len(train) >= 3
    first, last = train[0].metrics, train[-1].metrics
    assert last["nrc1"] < 0.05 * first["nrc1"] and last["nrc2"] < 0.05 * first["nrc2"]
    assert all(last[k] is not None for k in REGRESSION_KEYS)
