"""``ignore_index`` through :func:`~ncinspect.integrations.torch.measure` (the classifier's
input and every hooked layer) and the Lightning callback's options: rows labelled with it
are left out, the numbers those of the kept rows alone."""

from __future__ import annotations

import pytest
import torch

from ncinspect.integrations.lightning import NeuralCollapseCallback
from ncinspect.integrations.torch import measure

from ..torchnet import loader, trained_mlp
from .test_lightning import Module, _analyze, quiet_trainer


def _same(got, want):
    assert set(got.metrics) == set(want.metrics)
    for key, value in want.metrics.items():
        if value is None or isinstance(value, bool) or key.startswith(("accuracy", "nc4")):
            assert got.metrics[key] == value, key
        else:
            assert got.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-13), key


def _ignored(y, every=5, label=-1):
    yy = y.clone()
    yy[::every] = label
    return yy, yy != label


def test_measure_leaves_the_ignored_rows_out_of_every_layer():
    model, x, y = trained_mlp()
    yy, keep = _ignored(y)
    layers = ["body.1", model.body[2]]
    got = measure(model, "fc", loader(x, yy, batch_size=37), layers=layers, ignore_index=-1)
    want = measure(model, "fc", loader(x[keep], y[keep], batch_size=29), layers=layers)
    assert list(got) == list(want) and len(got) == 3
    for name in want:
        assert got[name].n_samples == int(keep.sum())
        _same(got[name], want[name])


def test_lightning_callback_passes_ignore_index_to_the_meter(tmp_path):
    from ..torchnet import gaussian_classes

    torch.manual_seed(0)
    x, y = gaussian_classes(C=4, n=30, d_in=8, seed=0)
    xv, yv = gaussian_classes(C=4, n=15, d_in=8, seed=1)
    yv_ign, keep = _ignored(yv, every=4, label=-100)
    model = Module()
    cb = NeuralCollapseCallback(
        "net.fc", loaders={"val": loader(xv, yv_ign, batch_size=16)}, ignore_index=-100
    )
    trainer = quiet_trainer(cb)
    trainer.fit(model, loader(x, y, batch_size=32))
    ((_, split, result),) = cb.results
    assert split == "val" and result.n_samples == int(keep.sum())
    _same(result, _analyze(model, xv[keep], yv[keep]))
