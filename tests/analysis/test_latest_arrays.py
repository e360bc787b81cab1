"""A run keeps the class-level arrays of the snapshots its figures can show, not of every
epoch: its memory does not grow by several C x d arrays per snapshot."""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect
from ncinspect.errors import UsageError
from ncinspect.render.html import last_classified
from ncinspect.results.trajectory import classifier_layer, final_snapshot


def _dump(path, epochs=4):
    rng = np.random.default_rng(0)
    C, d, n = 4, 6, 60
    y = np.arange(n) % C
    with ncinspect.DumpWriter(str(path), "w") as wr:
        wr.write("labels", y)
        for e in range(epochs):
            for split in ("train", "test"):
                for layer in ("layer_1", None):
                    name = f"{split}/epoch_{e}" + (f"/{layer}" if layer else "")
                    snap = wr.snapshot(name)
                    snap.append(features=rng.standard_normal((n, d)))
                    arrays = {} if layer else {"weights": rng.standard_normal((C, d))}
                    snap.write(**arrays)
                    meta = {"epoch": e, "split": split} | ({"layer": layer} if layer else {})
                    snap.set_meta(**meta)
    return str(path)


def test_last_epoch_of_each_trajectory_keeps_its_arrays(tmp_path):
    path = _dump(tmp_path / "run.h5")
    every = ncinspect.analyze_file(path)
    last = ncinspect.analyze_file(path, arrays="last")
    assert every.to_json() == last.to_json()  # no number changes
    kept = [r for r in last.snapshots if r.arrays.means is not None]
    assert len(kept) == 4  # (train, test) x (layer_1, penultimate): one epoch each
    assert {r.epoch for r in kept} == {3}
    for r in last.snapshots:
        assert r.arrays.released == (r.epoch != 3)
        if r.arrays.released:
            assert r.arrays.weights is None and r.arrays.basis is None
            assert r.arrays.had_weights == (r.layer is None)
            assert r.arrays.class_var is not None  # the small per-class vectors stay
    # what the figures pick is the same result, with the same arrays
    for pick in (last_classified, lambda rep: final_snapshot(rep.snapshots)):
        a, b = pick(every), pick(last)
        assert a.name == b.name
        np.testing.assert_array_equal(a.arrays.means, b.arrays.means)
    assert classifier_layer(every.snapshots) == classifier_layer(last.snapshots)


def test_snapshots_without_an_epoch_keep_theirs(tmp_path):
    rng = np.random.default_rng(1)
    path = str(tmp_path / "plain.h5")
    with ncinspect.DumpWriter(path, "w") as wr:
        wr.write("labels", np.arange(30) % 3)
        for name in ("a", "b"):
            snap = wr.snapshot(name)
            snap.append(features=rng.standard_normal((30, 4)))
    rep = ncinspect.analyze_file(path, arrays="last")
    assert all(r.epoch is None and not r.arrays.released for r in rep.snapshots)


def test_arrays_option_is_checked(tmp_path):
    path = _dump(tmp_path / "run.h5", epochs=1)
    with pytest.raises(UsageError, match="arrays must be"):
        ncinspect.analyze_file(path, arrays="none")
