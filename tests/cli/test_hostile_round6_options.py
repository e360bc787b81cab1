"""Integer options, round six: ``plot --min-class-count`` above every class's size.

Every class left out made ``plot`` exit 4 (``-k trajectory``: "no trajectory panel has
data"; ``-k gram``/``geometry``: "a simplex ETF needs at least 2 classes"), and ``plot``
without ``-k`` wrote nothing, said nothing and exited 0. Now a kind that cannot be drawn
says why (one line, exit 3), and so does a run with no figure at all."""

from __future__ import annotations

import h5py
import pytest

from ncinspect.cli import main

from ..helpers import file_digest, make_data


def _run(path, imbalanced=False):
    h, y, m = make_data(C=3, d=4, n=10, imbalanced=imbalanced)  # sizes 10 (17, 24)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for e in (0, 5):
            f[f"epoch_{e}/features"], f[f"epoch_{e}/weights"] = h * (1 + e), m
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("ncinspect: error")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("kind", ["trajectory", "gram", "geometry", "projection", "spectrum"])
@pytest.mark.parametrize("count", ["11", "1000", str(2**62)])
def test_plot_kinds_with_every_class_left_out(tmp_path, capsys, kind, count):
    path = _run(tmp_path / "run.h5")
    before = file_digest(path)
    out = tmp_path / "figs"
    args = ["plot", str(path), "-o", str(out), "-k", kind, "--min-class-count", count]
    assert main(args) == 3
    line = _one_line(capsys)
    assert f"cannot draw {kind}" in line and "min-class-count" in line, line
    assert not out.exists() or not any(out.iterdir())
    assert file_digest(path) == before


@pytest.mark.parametrize("kind", ["gram", "geometry"])
def test_plot_kinds_with_one_class_left(tmp_path, capsys, kind):
    path = _run(tmp_path / "run.h5", imbalanced=True)  # 10, 17 and 24 samples
    args = ["plot", str(path), "-o", str(tmp_path / "f"), "-k", kind, "--min-class-count", "20"]
    assert main(args) == 3
    assert "has 1" in _one_line(capsys)


def test_plot_without_kinds_and_nothing_to_draw_says_so(tmp_path, capsys):
    path = _run(tmp_path / "run.h5")
    out = tmp_path / "figs"
    assert main(["plot", str(path), "-o", str(out), "--min-class-count", "1000"]) == 3
    line = _one_line(capsys)
    assert "no figure can be drawn" in line and "trajectory:" in line and "gram:" in line
    assert not out.exists()


def test_plot_aggregate_with_every_class_left_out(tmp_path, capsys):
    a, b = _run(tmp_path / "a.h5"), _run(tmp_path / "b.h5")
    out = tmp_path / "figs"
    args = ["plot", str(a), str(b), "--aggregate", "-o", str(out), "--min-class-count", "99"]
    assert main(args) == 3
    assert "cannot draw trajectory" in _one_line(capsys)
    assert not out.exists()


# -- train/sweep: sizes each within bounds, together past memory -----------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--n-classes", "1000", "--n-per-class", "100000"],  # 1e8 samples: 23.8 GiB of inputs
        ["--n-classes", "1000", "--n-per-class", "100000", "--input-dim", "100000"],  # 73 TiB
        ["--n-classes", "1000", "--n-per-class", "1", "--n-test-per-class", "100000"],
        ["--n-classes", "2", "--class-counts", "100000,100000", "--width", "4096", "--depth", "10"],
        ["--task", "regression", "--n-classes", "1000", "--n-per-class", "100000"],
        ["--dataset", "mnist1d", "--mnist1d-samples", "1000000", "--width", "4096", "--depth", "3"],
    ],
)
def test_train_sizes_that_multiply_past_memory_are_a_usage_error(tmp_path, capsys, args):
    """Each size within its own bound; together they asked numpy for 23.8 GiB or 73 TiB
    (exit 4 MemoryError, or the machine's memory taken)."""
    out = tmp_path / "run.h5"
    assert main(["train", "-o", str(out), "--epochs", "1", "-q", *args]) == 2
    err = capsys.readouterr().err
    assert "values of data and activations" in err and "Traceback" not in err, err
    assert not out.exists()


def test_sweep_set_sizes_that_multiply_past_memory_are_a_usage_error(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "-o", str(out), "--weight-decays", "0,1e-3", "--epochs", "1"]
    args += ["--set", "n_classes=1000", "--set", "n_per_class=100000"]
    assert main(args) == 2
    assert "values of data and activations" in capsys.readouterr().err
    assert not out.exists()


# -- train --dataset: one huge HDF5 chunk in a small file (issue 22 item 8's class) ----------


@pytest.mark.parametrize("key", ["X", "y", "X_test"])
def test_train_dataset_with_a_chunk_larger_than_its_array_is_refused(tmp_path, capsys, key):
    """A 40-row array declaring one 320 MiB gzip chunk (a 300 kB file): the dump readers
    refuse it before reading, ``train --dataset`` inflated the whole chunk."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = {
        "X": rng.standard_normal((40, 8)).astype("f4"),
        "y": np.arange(40) % 4,
        "X_test": rng.standard_normal((8, 8)).astype("f4"),
        "y_test": np.arange(8) % 4,
    }
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            if name != key:
                f[name] = value
                continue
            row = value.dtype.itemsize * int(np.prod(value.shape[1:]))
            f.create_dataset(
                name,
                shape=value.shape,
                maxshape=(None,) + value.shape[1:],
                chunks=((320 << 20) // row,) + value.shape[1:],
                dtype=value.dtype,
                compression="gzip",
            )[...] = value
    assert path.stat().st_size < 4 << 20
    out = tmp_path / "run.h5"
    assert main(["train", "--dataset", str(path), "-o", str(out), "--epochs", "1", "-q"]) == 3
    line = _one_line(capsys)
    assert repr(key) in line and "chunk" in line and "320 MiB" in line, line
    assert not out.exists()
