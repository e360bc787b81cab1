"""measure(): the metrics of a torch model over a loader (two passes, the capture hook)
equal analyze() on the same features; state restored; errors."""

from __future__ import annotations

import pytest
import torch

import ncinspect
from ncinspect.errors import InvalidDataError, UsageError
from ncinspect.integrations.torch import capture, measure

from ..torchnet import MLP, loader, trained_mlp


def _features(model, dl):
    """The classifier's inputs, batch by batch as the hook sees them (same bits)."""
    with torch.no_grad():
        return torch.cat([model.features(x) for x, _ in dl]).numpy()


def _same(got, want):
    assert set(got.metrics) == set(want.metrics)
    for key, value in want.metrics.items():
        if value is None or isinstance(value, bool):
            assert got.metrics[key] == value, key
        else:
            assert got.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-13), key


def test_measure_equals_analyze_on_the_same_features():
    model, x, y = trained_mlp()
    dl = loader(x, y)
    want = ncinspect.analyze(
        _features(model, dl),
        y.numpy(),
        weights=model.fc.weight.detach().numpy(),
        bias=model.fc.bias.detach().numpy(),
        per_class=True,
    )
    model.train()
    got = measure(model, "fc", dl, device="cpu", per_class=True)
    assert model.training and model.fc.training  # state restored
    assert model.fc.weight.requires_grad and torch.is_grad_enabled()
    _same(got, want)
    assert got.n_samples == len(y) and got.n_features == model.fc.in_features
    for g, w in zip(got.per_class, want.per_class, strict=True):
        assert g.keys() == w.keys()
        for key, value in w.items():
            assert g[key] == (value if not isinstance(value, float) else pytest.approx(value)), key


def test_measure_equals_capture_then_analyze_file(tmp_path):
    model, x, y = trained_mlp()
    dl = loader(x, y, batch_size=50)
    capture(model, model.fc, dl, tmp_path / "run.h5", outputs=False)
    (want,) = ncinspect.analyze_file(tmp_path / "run.h5").snapshots
    _same(measure(model, model.fc, dl, center="classes"), want)
    dicts = [{"x": xb, "labels": yb} for xb, yb in dl]  # dict batches: model(x=...)
    _same(measure(model, "fc", dicts), want)
    _same(measure(model, "fc", dicts, batch_fn=lambda b: (b["x"], b["labels"])), want)


def test_measure_errors():
    model, x, y = trained_mlp()
    dl = loader(x, y)
    with pytest.raises(UsageError, match="no submodule"):
        measure(model, "head", dl)
    spare = MLP(8, 32, 16, 4)
    spare.unused = torch.nn.Linear(16, 4)  # a (C, d) module the forward never calls
    with pytest.raises(UsageError, match="was not called"):
        measure(spare, "unused", [(torch.zeros(3, 8), torch.zeros(3, dtype=torch.long))])
    with pytest.raises(UsageError, match="no batch"):
        measure(model, "fc", [])
    g = torch.Generator().manual_seed(0)
    noisy = [(xb + torch.randn(xb.shape, generator=g), yb) for xb, yb in dl]

    class Augmented:  # a loader whose two passes see other features (random augmentation)
        def __iter__(self):
            for xb, yb in dl:
                yield xb + 0.1 * torch.randn(xb.shape, generator=g), yb

    with pytest.raises(InvalidDataError, match="same rows"):
        measure(model, "fc", Augmented())
    assert measure(model, "fc", noisy).metrics["nc1"] is not None  # a fixed list is fine


def test_reduce_is_called_after_each_pass_with_the_meter():
    model, x, y = trained_mlp()
    dl = loader(x, y)
    seen = []

    def reduce(meter):  # what all_reduce_meter receives under DDP
        seen.append((meter.pass_number, int(meter.first.n_samples)))

    got = measure(model, "fc", dl, reduce=reduce)
    assert seen == [(1, len(y)), (2, len(y))]
    _same(got, measure(model, "fc", dl))
