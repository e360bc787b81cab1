"""fit(): determinism, the theory identities at convergence, dumps, Ctrl-C, data sets."""

from __future__ import annotations

import os
import signal

import h5py
import numpy as np
import pytest

from ncinspect.errors import InvalidDataError, MissingArrayError, UsageError
from ncinspect.train import TrainConfig, fit, forward, from_file, gaussian, load_dataset, mnist1d
from ncinspect.train import loop as loop_module
from ncinspect.train.model import init_params


def _tiny_data(noise=0.2):
    rng = np.random.default_rng(0)
    return gaussian(rng, n_classes=3, n_per_class=8, n_test_per_class=2, input_dim=6, noise=noise)


def _tiny_config(**kw):
    base = dict(depth=3, width=16, epochs=4, batch_size=5, save_every=2, lr=0.05)
    return TrainConfig(**{**base, **kw})


def _sq_norms(params):
    return np.array([float(np.sum(W.astype(np.float64) ** 2)) for W in params])


# -- determinism -------------------------------------------------------------------------


def test_same_seed_same_bytes_different_seed_different_weights():
    cfg = TrainConfig(
        n_per_class=10, n_test_per_class=5, input_dim=8, depth=3, width=32, epochs=5, batch_size=16
    )
    a, b = fit(cfg), fit(cfg)
    assert [W.tobytes() for W in a.params] == [W.tobytes() for W in b.params]
    c = fit(TrainConfig(**{**cfg.to_dict(), "seed": 1}))
    assert a.params[0].tobytes() != c.params[0].tobytes()


# -- theory identities (spec/theory.md) ---------------------------------------------------


def test_converged_full_batch_run_is_balanced_and_stationary():
    """lambda > 0: equal squared Frobenius norms and lambda W_L = kappa sum_i r_i h_i^T."""
    data = _tiny_data()
    wd = 1e-2
    cfg = TrainConfig(
        depth=3,
        width=16,
        weight_decay=wd,
        lr=1.0,
        momentum=0.9,
        batch_size=0,
        epochs=2000,
        schedule="constant",
        save_every=10**6,
    )
    hist = fit(cfg, data)
    assert hist.records[-1]["train_accuracy"] == 1.0
    norms = _sq_norms(hist.params)
    assert (norms.max() - norms.min()) / norms.max() < 1e-3, norms
    out, acts = forward(hist.params, data.X)
    R = np.eye(3)[data.y] - out  # residuals r_i, (N, C)
    lhs = wd * hist.params[-1]
    rhs = hist.kappa * R.T @ acts[-1]  # kappa sum_i r_i h_i^T
    assert np.linalg.norm(lhs - rhs) / np.linalg.norm(lhs) < 1e-3
    assert hist.kappa == pytest.approx(1 / (24 * 3))
    assert hist.Lambda == pytest.approx(wd * 3)


def test_without_weight_decay_norm_differences_are_conserved():
    """lambda = 0, small-step GD: ||W_l+1||^2 - ||W_l||^2 barely moves while the norms do."""
    data = _tiny_data()
    cfg = TrainConfig(
        depth=3,
        width=16,
        weight_decay=0.0,
        lr=0.02,
        momentum=0.0,
        batch_size=0,
        epochs=5000,
        schedule="constant",
        save_every=10**6,
    )
    before = _sq_norms(init_params([6, 16, 16, 3], np.random.default_rng([cfg.seed, 1])))
    hist = fit(cfg, data)
    after = _sq_norms(hist.params)
    moved = np.abs(after - before).max()
    drift = np.abs(np.diff(after) - np.diff(before)).max()
    assert moved > 1.0  # the weights really changed
    assert drift < 0.02 * moved, (drift, moved)
    assert hist.records[-1]["loss"] < 0.01 * hist.records[0]["loss"]


# -- dumps -----------------------------------------------------------------------------------


def test_dump_layout_and_metadata(tmp_path):
    path = tmp_path / "run.h5"
    cfg = _tiny_config(depth=4, features_dtype="float32", compression="gzip", weight_decay=1e-3)
    data = _tiny_data()
    hist = fit(cfg, data, dump=path)
    assert hist.saved_epochs == [0, 2, 4]
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["labels"][()], data.y)
        np.testing.assert_array_equal(f["test/labels"][()], data.y_test)
        assert f.attrs["weight_decay"] == 1e-3 and f.attrs["n_samples"] == 24
        for split, prefix, n in (("train", "", 24), ("test", "test/", 6)):
            for epoch in (0, 2, 4):
                g = f[f"{prefix}epoch_{epoch:04d}"]
                assert g.attrs["split"] == split and g.attrs["epoch"] == epoch
                for key in (
                    "weight_decay",
                    "kappa",
                    "n_samples",
                    "Lambda",
                    "learning_rate",
                    "momentum",
                    "batch_size",
                    "depth",
                    "widths",
                    "init_scale",
                    "seed",
                    "dataset",
                    "loss",
                    "train_accuracy",
                    "test_accuracy",
                ):
                    assert key in g.attrs, key
                assert g.attrs["Lambda"] == pytest.approx(
                    g.attrs["weight_decay"] / (g.attrs["kappa"] * g.attrs["n_samples"])
                )
                assert g["features"].shape == (n, 16) and g["features"].dtype == np.float32
                assert g["outputs"].shape == (n, 3)
                assert sorted(g["params"]) == ["W1", "W2", "W3", "W4"]
                np.testing.assert_array_equal(g["weights"][()], g["params/W4"][()])
                for k in (1, 2):
                    assert g[f"layer_{k}"].attrs["layer"] == f"layer_{k}"
                    assert g[f"layer_{k}/features"].shape == (n, 16)
                assert "layer_3" not in g  # the penultimate layer is the snapshot itself
        last = f["epoch_0004"]
        params = [last[f"params/W{i}"][()] for i in range(1, 5)]
        for W, P in zip(params, hist.params, strict=True):
            np.testing.assert_array_equal(W, P)
        out, acts = forward(params, data.X)
        np.testing.assert_allclose(last["outputs"][()], out, rtol=1e-12)
        np.testing.assert_allclose(last["features"][()], acts[-1].astype(np.float32))
        np.testing.assert_allclose(last["layer_1/features"][()], acts[1].astype(np.float32))
        assert last.attrs["loss"] == pytest.approx(hist.records[-1]["loss"])


def test_ctrl_c_leaves_the_snapshots_so_far(tmp_path):
    path = tmp_path / "run.h5"

    def stop(rec):
        if rec["epoch"] == 3:
            raise KeyboardInterrupt

    hist = fit(_tiny_config(epochs=10), _tiny_data(), dump=path, callback=stop)
    assert hist.interrupted and hist.saved_epochs == [0, 2]
    with h5py.File(path, "r") as f:
        assert sorted(k for k in f if k.startswith("epoch_")) == ["epoch_0000", "epoch_0002"]
        assert f["epoch_0002/outputs"].shape == (24, 3) and "test/epoch_0002/weights" in f


def test_ctrl_c_during_a_snapshot_finishes_that_snapshot(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    real = loop_module.write_split

    def interrupted_write(writer, prefix, *args):
        if prefix == "epoch_0002":
            os.kill(os.getpid(), signal.SIGINT)  # arrives while the snapshot is being written
        return real(writer, prefix, *args)

    monkeypatch.setattr(loop_module, "write_split", interrupted_write)
    hist = fit(_tiny_config(epochs=10), _tiny_data(), dump=path)
    assert hist.interrupted and hist.saved_epochs == [0, 2]
    with h5py.File(path, "r") as f:
        for g in ("epoch_0002", "test/epoch_0002"):
            assert {"features", "outputs", "weights", "params", "layer_1"} <= set(f[g])
        assert "epoch_0004" not in f


def test_divergence_is_reported():
    with pytest.raises(UsageError, match="diverged"):
        fit(_tiny_config(lr=1e3, epochs=50, save_every=100), _tiny_data())


def test_float32_training():
    hist = fit(_tiny_config(dtype="float32", epochs=3), _tiny_data())
    assert all(W.dtype == np.float32 for W in hist.params)
    assert np.isfinite(hist.records[-1]["loss"])


def test_history_records():
    hist = fit(_tiny_config(epochs=4, batch_size=0, momentum=0.0), _tiny_data())
    assert [r["epoch"] for r in hist.records] == [0, 1, 2, 3, 4]
    assert hist.records[0]["learning_rate"] == 0.05
    assert "test_accuracy" in hist.records[2] and "test_accuracy" not in hist.records[1]
    assert hist.epoch_seconds > 0
    assert not hist.interrupted


@pytest.mark.parametrize(
    "bad",
    [
        {"depth": 1},
        {"lr": 0},
        {"dtype": "float16"},
        {"schedule": "linear"},
        {"batch_size": -1},
        {"momentum": 1.0},
        {"weight_decay": -1},
        {"save_every": 0},
    ],
)
def test_invalid_config(bad):
    with pytest.raises(UsageError):
        fit(TrainConfig(**bad), _tiny_data())


# -- data ------------------------------------------------------------------------------------


def test_gaussian_is_balanced_standardised_and_seeded():
    cfg = TrainConfig(n_classes=4, n_per_class=30, n_test_per_class=10, input_dim=5)
    data = load_dataset(cfg)
    assert data.X.shape == (120, 5) and data.X_test.shape == (40, 5)
    assert np.bincount(data.y).tolist() == [30] * 4 and data.n_classes == 4
    np.testing.assert_allclose(data.X.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(data.X.std(0), 1, rtol=1e-12)
    assert load_dataset(cfg).X.tobytes() == data.X.tobytes()


def test_from_file_npz_with_string_labels_and_held_out_split(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 4))
    y = np.array(["cat", "dog"] * 25)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    data = from_file(tmp_path / "d.npz", rng)
    assert data.X.shape == (40, 4) and data.X_test.shape == (10, 4)
    assert data.class_names == ["cat", "dog"] and set(data.y.tolist()) == {0, 1}
    hist = fit(_tiny_config(dataset=str(tmp_path / "d.npz"), epochs=1), dump=tmp_path / "r.h5")
    assert hist.records[-1]["train_accuracy"] >= 0
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert list(f.attrs["class_names"]) in (["cat", "dog"], [b"cat", b"dog"])


def test_from_file_hdf5_with_test_split(tmp_path):
    rng = np.random.default_rng(1)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["X"] = rng.standard_normal((30, 3))
        f["y"] = np.arange(30) % 3
        f["X_test"] = rng.standard_normal((9, 3))
        f["y_test"] = np.arange(9) % 3
    data = from_file(tmp_path / "d.h5", rng)
    assert data.X.shape == (30, 3) and data.X_test.shape == (9, 3) and data.n_classes == 3


def test_from_file_errors(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "noy.npz", X=np.zeros((4, 2)))
    with pytest.raises(MissingArrayError, match="'y'"):
        from_file(tmp_path / "noy.npz", rng)
    np.savez(tmp_path / "one.npz", X=np.zeros((4, 2)), y=np.zeros(4))
    with pytest.raises(InvalidDataError, match="class"):
        from_file(tmp_path / "one.npz", rng)


def test_mnist1d_generator_offline():
    import mnist1d as _package  # noqa: F401  (an extra CI installs: missing, the test fails)

    data = mnist1d(seed=3, n_samples=200)
    assert data.X.shape == (160, 40) and data.X_test.shape == (40, 40)
    assert data.name == "mnist1d" and data.y.max() <= 9


# -- bad data files, split metadata, config finiteness ---------------------------------------


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_from_file_bad_files_raise_input_errors_naming_file_and_array(tmp_path):
    """Every broken data file is an NCInspectError with exit code 3 and a one-line message."""
    from ncinspect.errors import ShapeMismatchError, UnreadableFileError

    rng = np.random.default_rng(0)
    X, y = np.zeros((6, 3)), np.arange(6) % 2
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK\x03\x04" + b"garbage" * 10)
    group_x = tmp_path / "group.h5"
    with h5py.File(group_x, "w") as f:
        f.create_group("X")
        f["y"] = y
    cases = [
        (corrupt, UnreadableFileError, "not a readable NPZ"),
        (tmp_path, UnreadableFileError, "directory"),
        (group_x, InvalidDataError, "'X' is an HDF5 group"),
        (
            _write_npz(tmp_path / "cols.npz", X=X, y=y, X_test=np.zeros((4, 2)), y_test=y[:4]),
            ShapeMismatchError,
            "X_test has 2 features per row, X has 3",
        ),
        (
            _write_npz(tmp_path / "xt.npz", X=X, y=y, X_test=np.zeros((4, 3))),
            MissingArrayError,
            "no 'y_test'",
        ),
        (
            _write_npz(tmp_path / "yt.npz", X=X, y=y, y_test=y[:4]),
            MissingArrayError,
            "no 'X_test'",
        ),
        (
            _write_npz(tmp_path / "ytshape.npz", X=X, y=y, X_test=np.zeros((4, 3)), y_test=y[:3]),
            ShapeMismatchError,
            "y_test has shape (3,), expected (4,)",
        ),
        (_write_npz(tmp_path / "y2d.npz", X=X, y=y[:, None]), ShapeMismatchError, "y has shape"),
        (_write_npz(tmp_path / "x1d.npz", X=np.zeros(6), y=y), ShapeMismatchError, "X has shape"),
        (_write_npz(tmp_path / "frac.npz", X=X, y=y / 2), InvalidDataError, "fractional"),
    ]
    for path, error, text in cases:
        with pytest.raises(error) as info:
            from_file(path, rng)
        message = str(info.value)
        assert info.value.exit_code == 3, path
        assert text in message and str(path) in message and "\n" not in message, message


def test_from_file_never_unpickles(tmp_path):
    from ncinspect.errors import UnreadableFileError, UnsupportedDtypeError

    path = tmp_path / "objects.npz"
    np.savez(path, X=np.array([{"a": 1}] * 4, dtype=object), y=np.arange(4) % 2)
    with pytest.raises(UnsupportedDtypeError, match="objects.npz: array 'X' has dtype object"):
        from_file(path, np.random.default_rng(0))
    # "PK" and then not a zip archive: np.load would try to unpickle it
    (tmp_path / "pk.npz").write_bytes(b"PK\x00" + b"x" * 40)
    with pytest.raises(UnreadableFileError, match="corrupt or truncated zip"):
        from_file(tmp_path / "pk.npz", np.random.default_rng(0))


def test_from_file_flattens_rows_and_accepts_whole_float_labels(tmp_path):
    rng = np.random.default_rng(0)
    path = _write_npz(
        tmp_path / "img.npz",
        X=rng.standard_normal((8, 2, 3)),
        y=np.arange(8.0) % 2,
        X_test=rng.standard_normal((4, 2, 3)),
        y_test=np.arange(4.0) % 2,
    )
    data = from_file(path, rng)
    assert data.X.shape == (8, 6) and data.X_test.shape == (4, 6) and data.n_classes == 2


def test_test_snapshots_carry_their_own_losses_and_prefixed_training_values(tmp_path):
    path = tmp_path / "run.h5"
    data = _tiny_data()
    hist = fit(_tiny_config(weight_decay=1e-3), data, dump=path)
    params = hist.params
    kappa, n, n_test = hist.kappa, data.X.shape[0], data.X_test.shape[0]
    train = loop_module.evaluate(params, data.X, data.y, kappa=kappa, weight_decay=1e-3)
    test = loop_module.evaluate(
        params, data.X_test, data.y_test, kappa=kappa * n / n_test, weight_decay=1e-3
    )
    with h5py.File(path, "r") as f:
        tr, te = f["epoch_0004"].attrs, f["test/epoch_0004"].attrs
        for key in ("loss", "data_loss", "mse"):
            assert tr[key] == pytest.approx(train[key])  # train snapshots: unchanged keys
            assert te[key] == pytest.approx(test[key])  # test snapshots: the test split's own
            for attrs in (tr, te):
                assert attrs[f"train_{key}"] == pytest.approx(train[key])
                assert attrs[f"test_{key}"] == pytest.approx(test[key])
        assert te["mse"] != pytest.approx(tr["mse"])
        assert te["test_accuracy"] == tr["test_accuracy"] == pytest.approx(test["accuracy"])
    # the theory still reads its constants and the training snapshot's loss keys
    from ncinspect.theory import theory_file

    report, _ = theory_file(str(path), snapshot="/epoch_0004")
    assert report[0].theory.constants["weight_decay"] == 1e-3


def test_batch_size_metadata_is_the_batch_used(tmp_path):
    data = _tiny_data()  # N = 24
    for requested, used, full in ((5, 5, False), (100, 24, True), (0, 24, True)):
        path = tmp_path / f"b{requested}.h5"
        fit(_tiny_config(batch_size=requested, epochs=1), data, dump=path)
        with h5py.File(path, "r") as f:
            assert f.attrs["batch_size"] == used and f.attrs["full_batch"] == full
            assert f["epoch_0001"].attrs["batch_size"] == used


def test_no_test_split_records_none_and_writes_no_test_group(tmp_path):
    from ncinspect.dump import open_dump

    rng = np.random.default_rng(0)
    data = gaussian(rng, n_classes=3, n_per_class=8, n_test_per_class=0, input_dim=6)
    path = tmp_path / "run.h5"
    hist = fit(_tiny_config(), data, dump=path)
    assert hist.last("test_accuracy") is None and hist.records[-1]["test_accuracy"] is None
    with h5py.File(path, "r") as f:
        assert "test" not in f
    with open_dump(path) as dump:
        snap = next(s for s in dump.snapshots if s.name == "/epoch_0004")
        # the writer leaves None out, so readers get None from .get(), never a fake 0.0
        assert snap.meta.get("test_accuracy") is None and snap.meta.get("test_mse") is None
        assert snap.meta["train_accuracy"] is not None


def test_zero_epochs_has_no_epoch_time():
    hist = fit(_tiny_config(epochs=0), _tiny_data())
    assert [r["epoch"] for r in hist.records] == [0] and np.isnan(hist.epoch_seconds)


@pytest.mark.parametrize(
    "field", ["lr", "weight_decay", "init_scale", "separation", "noise", "momentum"]
)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_invalid_config_not_finite(field, value):
    with pytest.raises(UsageError, match=f"finite.*{field}="):
        TrainConfig(**{field: value}).validate()
