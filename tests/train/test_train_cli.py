"""``ncinspect train``: options, exit codes, progress, Ctrl-C, and the dump read back by report."""

from __future__ import annotations

from pathlib import Path

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


# -- bad data files, output paths, non-finite options ------------------------------------------


def _bad_files(tmp_path):
    import numpy as np

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"PK" + b"\x00garbage" * 8)
    cols = tmp_path / "cols.npz"
    y = np.arange(10) % 2
    np.savez(cols, X=np.zeros((10, 3)), y=y, X_test=np.zeros((4, 5)), y_test=y[:4])
    group = tmp_path / "group.h5"
    with h5py.File(group, "w") as f:
        f.create_group("X")
        f["y"] = y
    half = tmp_path / "half.npz"
    np.savez(half, X=np.zeros((10, 3)), y=y, X_test=np.zeros((4, 3)))
    return {"corrupt": corrupt, "cols": cols, "group": group, "dir": tmp_path, "half": half}


@pytest.mark.parametrize("which", ["corrupt", "cols", "group", "dir", "half"])
def test_bad_data_files_exit_3_with_one_line(tmp_path, capsys, which):
    path = _bad_files(tmp_path)[which]
    out = tmp_path / "out" / "x.h5"
    assert main(["train", "-o", str(out), *SMALL, "--dataset", str(path)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("ncinspect: error: ") and str(path) in err
    assert err.count("\n") == 1 and "internal error" not in err
    assert not out.exists()  # no half-made dump (nor an empty probe file) is left behind


def test_missing_output_folders_are_created(tmp_path, capsys):
    path = tmp_path / "new" / "deeper" / "run.h5"
    assert main(["train", "-o", str(path), *SMALL, "-q"]) == 0
    assert path.exists()


def test_unwritable_output_is_a_usage_error(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["train", "-o", str(blocker / "run.h5"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert str(blocker / "run.h5") in err and err.count("\n") == 1
    assert main(["train", "-o", "/proc/ncinspect-test/run.h5", *SMALL]) == 2


@pytest.mark.parametrize(
    "args",
    [
        ["--lr", "nan"],
        ["--weight-decay", "inf"],
        ["--init-scale", "nan"],
        ["--separation", "inf"],
        ["--noise", "nan"],
        ["--momentum", "nan"],
    ],
)
def test_non_finite_options_exit_2(tmp_path, capsys, args):
    assert main(["train", "-o", str(tmp_path / "x.h5"), *SMALL, *args]) == 2
    assert "finite" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_no_test_split_prints_na(tmp_path, capsys):
    path = tmp_path / "run.h5"
    assert main(["train", "-o", str(path), *SMALL, "--n-test-per-class", "0"]) == 0
    err = capsys.readouterr().err
    assert "test acc n/a" in err and "test acc 0.000" not in err


def test_zero_epochs_prints_no_nan(tmp_path, capsys):
    path = tmp_path / "run.h5"
    assert main(["train", "-o", str(path), *SMALL, "--epochs", "0", "-q"]) == 0
    err = capsys.readouterr().err
    assert "snapshots at epochs 0;" in err and "no epoch trained" in err
    assert "nan ms" not in err and "ms/epoch" not in err


def test_epochs_help_and_hidden_debug(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Passes over the training set" in out and "--debug" not in out


def test_debug_shows_the_traceback(tmp_path, capsys):
    from ncinspect.errors import UsageError

    with pytest.raises(UsageError):
        main(["train", "-o", str(tmp_path / "x.h5"), *SMALL, "--lr", "nan", "--debug"])


def test_every_config_field_is_an_option_with_its_comment_as_help():
    import dataclasses

    from ncinspect.cli.train import command
    from ncinspect.train.config import TrainConfig

    params = {p.name: p for p in command.params}
    source = (Path(__file__).resolve().parents[2] / "ncinspect/train/config.py").read_text()
    for field in dataclasses.fields(TrainConfig):
        param = params[field.name]
        assert param.opts == ["--" + field.name.replace("_", "-")]
        assert param.default == getattr(TrainConfig(), field.name)
        # the help is the field's comment in config.py (its last words end a comment line)
        tail = param.help.rstrip(".").split()[-3:]
        assert " ".join(tail) in source.replace("\n    # ", " "), field.name


def test_options_set_the_config_fields(tmp_path, capsys):
    path = tmp_path / "run.h5"
    args = ["train", "-o", str(path), *SMALL, "-q", "--widths", "6,5", "--kappa", "0.5"]
    args += ["--schedule", "step", "--step-every", "2", "--gamma", "0.5", "--compression", "lzf"]
    assert main(args) == 0
    with h5py.File(path, "r") as f:
        g = f["epoch_0004"]
        assert list(g.attrs["widths"]) == [6, 5] and g.attrs["kappa"] == 0.5
        assert f["epoch_0004/features"].compression == "lzf"
    assert main(["train", "-o", str(path), *SMALL, "--widths", "6,x"]) == 2
    assert "--widths" in capsys.readouterr().err
    assert main(["train", "-o", str(path), *SMALL, "--compress", "--compression", "lzf"]) == 2


def test_class_counts_set_the_number_of_gaussian_classes(tmp_path, capsys):
    path = tmp_path / "run.h5"
    assert main(["train", "-o", str(path), *SMALL, "-q", "--class-counts", "6,6,3"]) == 0
    with h5py.File(path, "r") as f:
        assert sorted(set(f["labels"][()].tolist())) == [0, 1, 2]
    args = ["train", "-o", str(path), *SMALL, "--class-counts", "6,6,3", "--n-classes", "4"]
    assert main(args) == 2  # three counts for four classes: said, not guessed
