"""Option and configuration validation: bad values are one line with the allowed range, and
nothing a user can pass is an internal error (exit 4) or a hang. Files only under tmp_path."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import warnings

import h5py
import numpy as np
import pytest

from ncinspect.cli import main

from ..helpers import SMALL_TRAIN, file_digest, make_data, two_epoch_run


@pytest.fixture
def run_file(tmp_path):
    return two_epoch_run(tmp_path / "run.h5")


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err and "Traceback" not in err, err
    return err


def _usage(capsys) -> str:
    """click's usage error: exit 2, the message on its last line."""
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    return err


# --------------------------------------------------------------------------------------
# check: configuration files
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("latin1.toml", b"[check]\nmax = { nc1 = 1 }\n# caf\xe9\n", "UTF-8"),
        ("deep.toml", b"[check]\nx = " + b"[" * 2000 + b"]" * 2000 + b"\n", "nested"),
        ("digits.toml", b"[check]\nmax = { nc1 = " + b"1" * 100_001 + b" }\n", "digits"),
        ("broken.toml", b"[check\n", "invalid TOML"),
    ],
)
def test_unreadable_config_exits_3_naming_it(run_file, tmp_path, capsys, name, content, needle):
    config = tmp_path / name
    config.write_bytes(content)
    assert main(["check", str(run_file), "--config", str(config)]) == 3
    err = _one_line(capsys)
    assert str(config) in err and needle in err


def test_config_fifo_is_refused_without_hanging(run_file, tmp_path, capsys):
    fifo = tmp_path / "rules.toml"
    os.mkfifo(fifo)
    box = {}

    def run():
        box["code"] = main(["check", str(run_file), "--config", str(fifo)])

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # it blocked in open(): release it, then fail
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        worker.join(timeout=10)
        pytest.fail("check --config FIFO blocked")
    assert box["code"] == 3
    err = _one_line(capsys)
    assert str(fifo) in err and "regular file" in err


def test_unrelated_broken_pyproject_does_not_fail_command_line_rules(
    run_file, tmp_path, monkeypatch, capsys
):
    work = tmp_path / "project"
    work.mkdir()
    (work / "pyproject.toml").write_bytes(b"[project\nname = 'x'\n\xff\n")
    monkeypatch.chdir(work)
    assert main(["check", str(run_file), "--max", "nc1=100"]) == 0
    capsys.readouterr()
    # one that is about ncinspect is read, and its error is reported (exit 3, naming it)
    (work / "pyproject.toml").write_text("[tool.ncinspect.check\nmax = { nc1 = 1 }\n")
    assert main(["check", str(run_file), "--max", "nc1=100"]) == 3
    assert "pyproject.toml" in _one_line(capsys)


@pytest.mark.parametrize(
    "table",
    ["max = { nc1 = true }", "min = { nc1 = false }", "non_increasing = { nc1 = { last = true } }"],
)
def test_booleans_are_not_numbers(run_file, tmp_path, capsys, table):
    config = tmp_path / "rules.toml"
    config.write_text(f"[check]\n{table}\n")
    assert main(["check", str(run_file), "--config", str(config)]) == 2
    assert "must be a number" in _one_line(capsys)


def test_a_bound_too_long_for_a_float(run_file, tmp_path, capsys):
    assert main(["check", str(run_file), "--max", "nc1=" + "9" * 100_001]) == 2
    err = _one_line(capsys)
    assert "finite" in err and len(err) < 400
    config = tmp_path / "rules.toml"
    config.write_text("[check]\nmax = { nc1 = " + "9" * 4000 + " }\n")  # within the digit limit
    assert main(["check", str(run_file), "--config", str(config)]) == 2
    err = _one_line(capsys)
    assert "finite" in err and len(err) < 400


# --------------------------------------------------------------------------------------
# report / theory: --memory-limit
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", ["0", "1B", "1000", "1KiB", "9" * 100_001, "1PB0"])
@pytest.mark.parametrize("cmd", ["report", "theory"])
def test_memory_limit_below_one_mib_is_refused(run_file, capsys, cmd, size):
    assert main([cmd, str(run_file), "--memory-limit", size]) == 2
    err = _usage(capsys)
    assert "--memory-limit" in err and len(err.splitlines()[-1]) < 300


def test_memory_limit_of_one_mib_is_accepted(run_file, capsys):
    # a valid value (no usage error); on the command line it covers the whole process,
    # which holds more than that already: refused as bad input naming what it holds
    assert main(["report", str(run_file), "--memory-limit", "1MiB", "-q"]) == 3
    assert "already holds" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("prefix", ["../../x-", "a/b-", "/abs-"])
def test_plot_prefix_cannot_leave_the_output_folder(run_file, tmp_path, capsys, prefix):
    out = tmp_path / "a" / "b" / "figs"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    args = ["plot", str(run_file), "-o", str(out), "--prefix", prefix, "-k", "trajectory"]
    assert main([*args, "-f", "png", "-q"]) == 2
    assert "--prefix" in _usage(capsys)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    ("args", "bound"),
    [(["--dpi", "100000"], "1200"), (["--dpi", "1"], "10"), (["--seed", "-1"], "0")],
)
def test_plot_option_ranges(run_file, tmp_path, capsys, args, bound):
    out = tmp_path / "figs"
    assert main(["plot", str(run_file), "-o", str(out), *args]) == 2
    err = _usage(capsys)
    assert bound in err.splitlines()[-1]
    assert not out.exists()


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--width", "30000"], "4096"),
        (["--depth", "100000"], "64"),
        (["--seed", "-1"], "seed must be in [0, 2**63 - 1]"),
        (["--noise", "-1"], "noise must be in [0, 1e+06]"),
        (["--noise", "1e308"], "noise must be in [0, 1e+06]"),
        (["--separation", "-2"], "separation must be in [0, 1e+06]"),
        (["--init-scale", "1e300"], "init_scale must be <= 1000"),
        (["--n-per-class", "100001"], "100000"),
        (["--depth", "5", "--width", "4096"], "weights"),  # each bound fine, the product not
    ],
)
def test_train_bounds_are_stated(tmp_path, capsys, args, needle):
    out = tmp_path / "x.h5"
    assert main(["train", "-o", str(out), *SMALL_TRAIN, *args]) == 2
    err = _one_line(capsys)
    assert needle in err
    assert not out.exists()


def test_train_weight_bound_applies_to_a_data_file(tmp_path, capsys):
    data = tmp_path / "wide.npz"
    rng = np.random.default_rng(0)
    np.savez(data, X=rng.standard_normal((6, 20_000)).astype(np.float32), y=np.arange(6) % 2)
    out = tmp_path / "x.h5"
    args = ["train", "-o", str(out), "--dataset", str(data), "--width", "4096", "--depth", "2"]
    assert main([*args, "-q", "--epochs", "0"]) == 2
    assert "weights" in _one_line(capsys)
    assert not out.exists()


def test_nan_in_x_is_reported_as_x(tmp_path, capsys):
    rng = np.random.default_rng(1)
    for row in range(10):  # wherever the random split puts the bad row, it is X's
        X = rng.standard_normal((10, 3))
        X[row, 1] = np.nan
        data = tmp_path / f"nan{row}.npz"
        np.savez(data, X=X, y=np.arange(10) % 2)
        args = ["train", "-o", str(tmp_path / "x.h5"), "--dataset", str(data), *SMALL_TRAIN]
        assert main(args) == 3
        err = _one_line(capsys)
        assert "X contains NaN" in err and "X_test" not in err and f"row {row}" in err
    X = rng.standard_normal((10, 3))
    X_test = X.copy()
    X_test[2, 0] = np.inf
    data = tmp_path / "inf_test.npz"
    np.savez(data, X=X, y=np.arange(10) % 2, X_test=X_test, y_test=np.arange(10) % 2)
    assert main(["train", "-o", str(tmp_path / "x.h5"), "--dataset", str(data), *SMALL_TRAIN]) == 3
    assert "X_test contains NaN or Inf" in _one_line(capsys)


# --------------------------------------------------------------------------------------
# theory: recorded constants
# --------------------------------------------------------------------------------------
def _theory_dump(path, **meta):
    h, y, m = make_data(C=3, d=5, n=10)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        g = f.create_group("epoch_0001")
        g["features"] = h
        g["weights"] = m
        g["outputs"] = h @ m.T
        g["params/W1"] = np.eye(5)
        g["params/W2"] = m
        g.attrs["epoch"] = 1
        f.attrs["weight_decay"] = 1e-3
        f.attrs["kappa"] = 0.1
        f.attrs["n_samples"] = len(y)
        for key, value in meta.items():
            f.attrs[key] = value
    return path


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("weight_decay", "abc"),
        ("weight_decay", "0.002"),
        ("weight_decay", np.complex128(1 + 2j)),
        ("weight_decay", np.nan),
        ("weight_decay", -1.0),
        ("weight_decay", True),
        ("kappa", -1.0),
        ("kappa", 0.0),
        ("kappa", "x"),
        ("n_samples", 2.5),
        ("Lambda", -0.1),
    ],
)
def test_invalid_theory_constants_exit_3(tmp_path, capsys, key, value):
    path = _theory_dump(tmp_path / "t.h5", **{key: value})
    before = file_digest(path)
    assert main(["theory", str(path)]) == 3
    err = _one_line(capsys)
    assert f"{key} = " in err and "invalid" in err and "missing" not in err
    assert "epoch_0001" in err and str(path) in err
    assert file_digest(path) == before


def test_valid_theory_constants_still_work(tmp_path, capsys):
    path = _theory_dump(tmp_path / "t.h5", n_samples=np.int64(30), kappa=np.float32(0.5))
    assert main(["theory", str(path)]) == 0
    assert "kappa=0.5" in capsys.readouterr().out


# --------------------------------------------------------------------------------------
# successful runs are quiet
# --------------------------------------------------------------------------------------
def test_successful_runs_emit_no_warnings(run_file, tmp_path):
    runs = [
        ["report", str(run_file), "--per-class", "--full"],
        ["info", str(run_file)],
        ["theory", str(run_file)],
        ["check", str(run_file), "--max", "nc1=100"],
        ["plot", str(run_file), "-o", str(tmp_path / "figs"), "-f", "png"],
        ["train", "-o", str(tmp_path / "t.h5"), *SMALL_TRAIN],
        ["report", str(tmp_path / "t.h5")],
    ]
    for args in runs:
        err = io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(err):
            warnings.simplefilter("always")
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(args) == 0, args
        assert [str(w.message) for w in caught] == [], args
        assert "Warning" not in err.getvalue(), args


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_theory_tolerance_must_be_finite(run_file, capsys, value):
    assert main(["theory", str(run_file), "--tolerance", value]) == 2
    assert "--tolerance" in _usage(capsys)


def test_plot_labels_with_control_characters_draw_without_warnings(run_file, tmp_path):
    out = tmp_path / "figs"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with contextlib.redirect_stdout(io.StringIO()):
            args = ["plot", str(run_file), "-o", str(out), "-k", "trajectory", "-f", "png"]
            assert main([*args, "--label", "run\x1b[2J\x07"]) == 0
    assert [str(w.message) for w in caught] == []
    assert (out / "trajectory.png").exists()
