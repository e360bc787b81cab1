"""Snapshots that inherit one labels array read and encode it once; nothing else changes."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.analysis.build import prepare_snapshot
from ncinspect.dump import open_dump


def _dump(path):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["labels"] = np.array([3, 1, 1, 3, 7, 7, 1, 3, 7, 3])
        for e in range(3):
            g = f.create_group(f"epoch_{e}")
            g["features"] = rng.standard_normal((10, 4))
        g = f.create_group("epoch_3")  # its own labels: another dataset, other classes
        g["features"] = rng.standard_normal((10, 4))
        g["labels"] = np.array([0, 2, 2, 0, 0, 2, 2, 0, 0, 2])
    return str(path)


def test_inherited_labels_are_encoded_once_and_read_only(tmp_path):
    path = _dump(tmp_path / "d.h5")
    seen: dict = {}
    with open_dump(path) as dump:
        preps = [prepare_snapshot(s, None, seen) for s in dump.snapshots]
        fresh = [prepare_snapshot(s) for s in dump.snapshots]
    assert preps[0].codes is preps[1].codes is preps[2].codes  # one encoding, shared
    assert preps[3].codes is not preps[0].codes
    for p, q in zip(preps, fresh, strict=True):
        np.testing.assert_array_equal(p.codes, q.codes)
        assert p.class_names == q.class_names
    assert preps[0].class_names == [1, 3, 7] and preps[3].class_names == [0, 2]
    with pytest.raises(ValueError):
        preps[0].codes[0] = 5  # kept codes cannot be changed under another snapshot
    preps[0].class_names.append("x")  # the names are each snapshot's own list
    assert preps[1].class_names == [1, 3, 7]


def test_report_equal_with_and_without_the_shared_labels(tmp_path):
    path = _dump(tmp_path / "d.h5")
    report = ncinspect.analyze_file(path)
    with open_dump(path) as dump:
        for snap, res in zip(dump.snapshots, report.snapshots, strict=True):
            alone = ncinspect.analyze_file(path, snapshot=snap.name).snapshots[0]
            assert res.to_dict() == alone.to_dict()
