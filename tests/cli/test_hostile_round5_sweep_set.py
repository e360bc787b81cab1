"""Hostile round five, class 3 (two names for one thing): ``sweep --set FIELD=VALUE``.

``--set`` takes "any other TrainConfig field", but it took the fields that have an option of
their own too, and one of the two won silently: ``--set epochs=3`` beat ``--epochs 1``,
``--set seed=5`` and ``--set weight_decay=5`` were dropped (the sweep sets both itself), and
``--set noise=1 --set noise=2`` kept the last. Each is now a usage error (exit 2) naming the
option to use, before anything is trained.
"""

from __future__ import annotations

import pytest

from ncinspect.cli import main

BASE = ["--epochs", "1", "--depth", "2", "--width", "8", "--weight-decays", "1e-3"]


@pytest.mark.parametrize(
    "setting, option",
    [
        ("epochs=3", "--epochs"),
        ("depth=3", "--depth"),
        ("width=4", "--width"),
        ("lr=0.1", "--lr"),
        ("batch_size=0", "--batch-size"),
        ("save_every=2", "--save-every"),
        ("dataset=gaussian", "--dataset"),
        ("seed=5", "--seed"),
        ("weight_decay=5", "--weight-decays"),
    ],
)
def test_set_of_a_field_with_its_own_option_is_refused(tmp_path, capsys, setting, option):
    out = tmp_path / "sw"
    assert main(["sweep", "-o", str(out), *BASE, "--set", setting]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and option in err and setting.split("=")[0] in err, err
    assert not out.exists()


def test_set_of_one_field_twice_is_refused(tmp_path, capsys):
    out = tmp_path / "sw"
    args = ["sweep", "-o", str(out), *BASE, "--set", "noise=1", "--set", "noise=2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "noise" in err and "twice" in err, err
    assert not out.exists()


def test_set_of_other_fields_still_works(tmp_path, capsys):
    out = tmp_path / "sw"
    args = [
        "sweep",
        "-o",
        str(out),
        *BASE,
        "--set",
        "noise=0.5",
        "--set",
        "n_per_class=5",
        "--set",
        "n_classes=3",
        "--set",
        "input_dim=4",
        "--no-figure",
    ]
    assert main(args) == 0, capsys.readouterr().err
    assert (out / "sweep.json").exists()
