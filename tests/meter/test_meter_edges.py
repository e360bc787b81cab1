"""Edge batches of the Meter: whole-number float labels with spectra on torch, empty float
batches, damaged packed states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.errors import InvalidDataError
from ncinspect.meter.state import pack, unpack

from ..helpers import make_data


def _run(h, y, C, **kw):
    meter = ncinspect.Meter(n_classes=C, **kw)
    for _ in range(2):
        meter.update(h, y)
        if _ == 0:
            meter.next_pass()
    return meter.compute()


def test_spectra_meter_takes_whole_number_float_labels_on_torch():
    h, y, _ = make_data(C=3, d=5, n=60)
    want = _run(torch.as_tensor(h), torch.as_tensor(y), 3, spectra=True)
    got = _run(torch.as_tensor(h), torch.as_tensor(y, dtype=torch.float64), 3, spectra=True)
    assert got.metrics["rank_effective"] == pytest.approx(want.metrics["rank_effective"], 1e-12)


def test_spectra_meter_refuses_an_out_of_range_device_label_at_compute():
    h, y, _ = make_data(C=3, d=5, n=60)
    y = y.copy()
    y[4] = 7
    with pytest.raises(InvalidDataError, match="label 7"):
        _run(torch.as_tensor(h), torch.as_tensor(y), 3, spectra=True)


def test_an_empty_batch_with_float_labels_is_accepted():
    h, y, _ = make_data(C=3, d=4, n=30)
    meter = ncinspect.Meter(n_classes=3)
    meter.update(np.zeros((0, 4)), np.zeros(0))
    meter.update(h, y)
    meter.next_pass()
    meter.update(h, y)
    assert meter.compute().metrics["nc1"] == ncinspect.analyze(h, y).metrics["nc1"]


@pytest.mark.parametrize("cut", [20, 40, -3])
def test_damaged_packed_states_are_invalid_data(cut):
    data = pack({"a": np.arange(6.0).reshape(2, 3), "b": 1})
    assert unpack(data)["b"] == 1
    damaged = data[:cut] if cut > 0 else data[:16] + b"\xff" * 8 + data[24:]
    with pytest.raises(InvalidDataError, match="meter state"):
        unpack(damaged)
