"""``ncinspect train``: options, exit codes, progress, Ctrl-C, and the dump read back by report."""

from __future__ import annotations

import h5py
import pytest

from ncinspect.cli import main
from ncinspect.train import loop as loop_module

SMALL = [
    "--depth",
    "3",
    "--width",
    "8",
    "--n-per-class",
    "6",
    "--n-test-per-class",
    "3",
    "--batch-size",
    "10",
    "--epochs",
    "4",
    "--save-every",
    "2",
    "--lr",
    "0.05",
]


def test_train_writes_a_dump(tmp_path, capsys):
    path = tmp_path / "run.h5"
    assert main(["train", "-o", str(path), *SMALL, "--weight-decay", "1e-3", "--seed", "3"]) == 0
    err = capsys.readouterr().err
    assert "snapshots at epochs 0, 2, 4" in err and "ms/epoch" in err
    with h5py.File(path, "r") as f:
        assert {"labels", "epoch_0000", "epoch_0002", "epoch_0004", "test"} <= set(f)
        g = f["epoch_0004"]
        assert g.attrs["weight_decay"] == 1e-3 and g.attrs["seed"] == 3 and g.attrs["depth"] == 3
        assert g.attrs["learning_rate"] >= 0 and list(g.attrs["widths"]) == [8, 8]
        assert g["features"].dtype.name == "float64"


def test_train_quiet_float32_compressed(tmp_path, capsys):
    path = tmp_path / "run.h5"
    args = [
        "train",
        "-o",
        str(path),
        *SMALL,
        "-q",
        "--dtype",
        "float32",
        "--features-dtype",
        "float32",
        "--compress",
        "--batch-size",
        "0",
        "--momentum",
        "0",
    ]
    assert main(args) == 0
    with h5py.File(path, "r") as f:
        assert f["epoch_0004/features"].compression == "gzip"
        assert f["epoch_0004/params/W1"].dtype.name == "float32"
        assert f.attrs["batch_size"] == 60


def test_report_reads_the_dump_with_no_options(tmp_path, capsys):
    path = tmp_path / "run.h5"
    assert main(["train", "-o", str(path), *SMALL, "-q"]) == 0
    capsys.readouterr()
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "epoch_0004" in out and "layer_1" in out


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--depth", "1"], 2),
        (["--lr", "-1"], 2),
        (["--dtype", "float16"], 2),
        (["--dataset", "no/such/file.npz"], 3),
        (["--lr", "1e4", "--epochs", "30"], 2),  # diverges: says to lower the learning rate
    ],
)
def test_bad_options_exit_codes(tmp_path, capsys, args, code):
    assert main(["train", "-o", str(tmp_path / "x.h5"), *SMALL, *args]) == code
    assert capsys.readouterr().err


def test_ctrl_c_exits_130_and_keeps_the_snapshots(tmp_path, capsys, monkeypatch):
    path = tmp_path / "run.h5"
    real = loop_module.objective_and_grads
    calls = {"n": 0}

    def interrupt_in_epoch_3(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 2 * 6:  # 6 minibatches per epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop_module, "objective_and_grads", interrupt_in_epoch_3)
    assert main(["train", "-o", str(path), *SMALL, "--epochs", "10"]) == 130
    assert "interrupted at epoch 2" in capsys.readouterr().err
    with h5py.File(path, "r") as f:
        assert sorted(k for k in f if k.startswith("epoch_")) == ["epoch_0000", "epoch_0002"]
    assert main(["report", str(path)]) == 0


def test_help_lists_the_options(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for opt in (
        "--dataset",
        "--depth",
        "--width",
        "--weight-decay",
        "--lr",
        "--momentum",
        "--epochs",
        "--batch-size",
        "--save-every",
        "--seed",
        "--init-scale",
        "--dtype",
    ):
        assert opt in out
