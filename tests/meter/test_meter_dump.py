"""The Meter writes the rows of pass 1 and the classifier to a dump while it measures;
analysing that dump gives the meter's numbers, and a snapshot is never doubled."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.errors import UsageError

from ..helpers import make_data


def _data(seed=0):
    h, y, m = make_data(C=4, d=8, n=20, seed=seed, imbalanced=True)
    rng = np.random.default_rng(seed)
    return h.astype(np.float32), y, m + 0.3 * rng.standard_normal(m.shape), rng.standard_normal(4)


def _measure(meter, h, y, k=5):
    for part in np.array_split(np.arange(len(y)), k):
        meter.update(torch.from_numpy(h[part]), torch.from_numpy(y[part]))
    meter.next_pass()
    for part in np.array_split(np.arange(len(y)), k - 2):
        meter.update(torch.from_numpy(h[part]), torch.from_numpy(y[part]))
    return meter.compute()


def test_the_dump_holds_the_rows_and_gives_the_same_numbers(tmp_path):
    h, y, w, b = _data(0)
    path = tmp_path / "run.h5"
    meter = ncinspect.Meter(
        weights=w,
        bias=b,
        dump=path,
        snapshot="epoch_0003",
        dump_meta={"epoch": 3, "split": "train"},
    )
    res = _measure(meter, h, y)
    with h5py.File(path, "r") as f:
        g = f["epoch_0003"]
        assert np.array_equal(g["features"][()], h) and g["features"].dtype == np.float32
        assert np.array_equal(g["labels"][()], y)  # pass 2's rows are not written again
        assert np.array_equal(g["weights"][()], w) and np.array_equal(g["bias"][()], b)
        assert g.attrs["epoch"] == 3 and g.attrs["split"] == "train"
    (snap,) = ncinspect.analyze_file(path).snapshots
    assert snap.epoch == 3
    for key, value in res.metrics.items():
        got = snap.metrics[key]
        if value is None or isinstance(value, bool):
            assert got == value, key
        else:
            assert got == pytest.approx(value, rel=1e-12, abs=1e-13), key


def test_an_open_writer_takes_several_measurements_never_doubling_one(tmp_path):
    h, y, w, b = _data(1)
    path = tmp_path / "run.h5"
    with ncinspect.DumpWriter(path, "w") as writer:
        meter = ncinspect.Meter(weights=w, bias=b, dump=writer, snapshot="epoch_0001")
        _measure(meter, h, y)
        meter.reset()
        with pytest.raises(UsageError, match="already wrote"):
            meter.update(h, y)  # the same snapshot again would double its rows
    with ncinspect.DumpWriter(path, "a") as writer:
        meter = ncinspect.Meter(weights=w, bias=b, dump=writer, snapshot="epoch_0002")
        _measure(meter, h, y)
        meter.reset(snapshot="epoch_0003", dump_meta={"epoch": 3})
        _measure(meter, h[: len(y) // 2], y[: len(y) // 2])
    with h5py.File(path, "r") as f:
        assert f["epoch_0001/features"].shape == h.shape
        assert f["epoch_0002/features"].shape == h.shape
        assert f["epoch_0003/features"].shape[0] == len(y) // 2
    # a new writer over a snapshot written earlier is refused, as DumpWriter refuses it
    meter = ncinspect.Meter(weights=w, bias=b, dump=path, snapshot="epoch_0001")
    with pytest.raises(UsageError):
        meter.update(h, y)
    with pytest.raises(UsageError, match="dump="):
        ncinspect.Meter(weights=w).reset(snapshot="x")
    with pytest.raises(UsageError, match="path, a DumpWriter"):
        ncinspect.Meter(weights=w, dump=3)
