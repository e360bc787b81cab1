"""Round seven, valid-but-unusual dumps x commands: ``theory`` on regression snapshots.

``report`` reads an array ``targets`` (N, t) of floats as regression targets (spec
dump-format.md), but ``theory`` read it as labels and refused the whole file with exit 3
("2-D labels ... are not one-hot"), classification snapshots beside it included. A regression
snapshot is now skipped with a note, as a test split or a hidden layer is.
"""

from __future__ import annotations

import h5py
import numpy as np

from ncinspect.cli import main


def _write(path, *, with_class: bool):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    mu = rng.normal(size=(3, 5)) * 3
    with h5py.File(path, "w") as f:
        f["reg/features"] = rng.normal(size=(24, 5))
        f["reg/targets"] = rng.normal(size=(24, 2))
        if with_class:
            f["cls/features"] = mu[y] + rng.normal(size=(24, 5))
            f["cls/labels"] = y
            f["cls/weights"] = mu


def test_theory_skips_a_regression_snapshot_and_checks_the_classifier(tmp_path, capsys):
    path = tmp_path / "mixed.h5"
    _write(path, with_class=True)
    assert main(["theory", str(path)]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "/reg: skipped (a regression snapshot" in text
    assert "snapshot /cls" in text


def test_theory_on_a_regression_only_dump_is_not_a_bad_input(tmp_path, capsys):
    path = tmp_path / "reg.h5"
    _write(path, with_class=False)
    code = main(["theory", str(path)])
    text = "".join(capsys.readouterr())
    assert code != 3 and code != 4, text
    assert "not one-hot" not in text
    assert "regression snapshot" in text
