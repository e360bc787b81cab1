"""Round seven, valid-but-unusual splits: ``--ncc-centres train`` when the train split of the
same epoch lacks a class the test split has.

No train centre exists for that class, so its test rows can never be nearest to their own
centre: they count as NCC errors (accuracy_ncc 2/3 below) and the report said nothing. The
number is that of the convention, but a warning now names the class and the rows.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from ncinspect.cli import main


def _write(path, train_classes):
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(3, 5)) * 6
    with h5py.File(path, "w") as f:
        for split, classes in (("train", train_classes), ("test", [0, 1, 2])):
            y = np.repeat(np.array(classes), 8)
            g = f.create_group(f"{split}/epoch_0")
            g["features"] = mu[y] + 0.1 * rng.normal(size=(len(y), 5))
            g["labels"] = y
            g["weights"] = mu
            g.attrs["split"] = split


def _test_snapshot(tmp_path, train_classes):
    path = tmp_path / "d.h5"
    _write(path, train_classes)
    out = tmp_path / "r.json"
    assert main(["report", str(path), "-q", "--ncc-centres", "train", "--json", str(out)]) == 0
    snaps = {s["name"]: s for s in json.loads(out.read_text())["snapshots"]}
    return snaps["/test/epoch_0"]


def test_a_class_without_train_centre_is_named(tmp_path):
    snap = _test_snapshot(tmp_path, [0, 1])
    assert snap["ncc_means"] == "train:/train/epoch_0"
    assert abs(snap["metrics"]["accuracy_ncc"] - 2 / 3) < 1e-12
    notes = [w for w in snap["warnings"] if "no samples there" in w]
    assert len(notes) == 1
    assert "class(es) 2 " in notes[0] and "8 row(s)" in notes[0]


def test_every_class_with_a_train_centre_needs_no_warning(tmp_path):
    snap = _test_snapshot(tmp_path, [0, 1, 2])
    assert snap["metrics"]["accuracy_ncc"] == 1.0
    assert not any("no samples there" in w for w in snap["warnings"])
