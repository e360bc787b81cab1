"""Per-layer capture (issue 23 item 2): ``layers=`` on ``capture`` and ``measure`` hooks each
module's output (flattened, or pooled with ``pool="avg"``/``"max"`` for CNN maps), measures
or writes it as snapshot ``layer_<k>`` with ``layer_index`` metadata, and gives the numbers
``analyze()`` gives on the same features, computed here directly from the modules."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch import nn

import ncinspect
from ncinspect.errors import UsageError
from ncinspect.integrations.layers import LayerHooks
from ncinspect.integrations.torch import capture, measure

from ..torchnet import gaussian_classes, loader, trained_mlp


def _same_metrics(got, want):
    assert got.n_samples == want.n_samples and got.n_features == want.n_features
    assert got.n_classes == want.n_classes
    for key, value in want.metrics.items():
        if value is None:
            assert got.metrics[key] is None, key
        elif isinstance(value, (int, float)):
            assert got.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-13), key


class CNN(nn.Module):
    """Two conv blocks, global average pooling, a linear classifier."""

    def __init__(self, C=3):
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, C)

    def features(self, x):
        return self.pool(self.block2(self.block1(x))).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))


def _images(C=3, n=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(C).repeat_interleave(n)
    patterns = torch.randn(C, 1, 6, 6, generator=g)
    x = 2 * patterns[y] + torch.randn(len(y), 1, 6, 6, generator=g)
    return x, y


def test_measure_layers_of_an_mlp_equal_analyze_of_the_hooked_features():
    model, x, y = trained_mlp()
    got = measure(model, "fc", loader(x, y), layers=["body.1", model.body[2]])
    assert list(got) == ["body.1", "body.2", "penultimate"]
    with torch.no_grad():
        h1 = model.body[:2](x).double().numpy()  # after the first ReLU
        h2 = model.body[:3](x).double().numpy()  # the second Linear, before its ReLU
        h = model.features(x).double().numpy()
    fc = model.fc
    w, b = fc.weight.detach().double().numpy(), fc.bias.detach().double().numpy()
    for k, (name, feats) in enumerate((("body.1", h1), ("body.2", h2)), 1):
        result = got[name]
        assert result.layer == f"layer_{k}"
        assert result.meta["layer_index"] == k and result.meta["module"] == name
        _same_metrics(result, ncinspect.analyze(feats, y.numpy()))  # no classifier
        assert result.metrics["nc3_self_duality"] is None  # a hidden layer has no W
    _same_metrics(got["penultimate"], ncinspect.analyze(h, y.numpy(), weights=w, bias=b))
    assert got["penultimate"].layer is None
    # without layers= the result is the penultimate one alone, as before
    _same_metrics(measure(model, "fc", loader(x, y)), got["penultimate"])


@pytest.mark.parametrize("pool", [None, "avg", "max"])
def test_measure_layers_of_a_cnn_pooled_or_flattened(pool):
    torch.manual_seed(0)
    model = CNN()
    x, y = _images()
    got = measure(
        model,
        "fc",
        loader(x, y, batch_size=16),
        layers={"b1": "block1", "b2": "block2"},
        pool=pool,
    )
    with torch.no_grad():
        maps = {"b1": model.block1(x), "b2": model.block2(model.block1(x))}
    for name, m in maps.items():
        if pool == "avg":
            feats = m.mean(dim=(2, 3))
        elif pool == "max":
            feats = m.amax(dim=(2, 3))
        else:
            feats = m.reshape(len(m), -1)
        assert got[name].n_features == feats.shape[1]
        _same_metrics(got[name], ncinspect.analyze(feats.double().numpy(), y.numpy()))
    assert got["b1"].n_features == (4 if pool else 4 * 36)


def test_capture_writes_one_snapshot_per_layer_that_report_reads(tmp_path):
    torch.manual_seed(1)
    model = CNN()
    x, y = _images(seed=1)
    path = tmp_path / "cnn.h5"
    cap = capture(
        model,
        "fc",
        loader(x, y, batch_size=16),
        path,
        snapshot="epoch_0003",
        epoch=3,
        split="train",
        loss="cross_entropy",
        layers=["block1", "block2"],
        pool="avg",
    )
    assert cap.layer_snapshots == ["/epoch_0003/layer_1", "/epoch_0003/layer_2"]
    with h5py.File(path, "r") as f:
        for k, name in ((1, "block1"), (2, "block2")):
            g = f[f"epoch_0003/layer_{k}"]
            assert g.attrs["layer"] == f"layer_{k}" and g.attrs["layer_index"] == k
            assert g.attrs["module"] == name and g.attrs["epoch"] == 3
            assert g.attrs["loss"] == "cross_entropy"
            assert "weights" not in g and g["features"].shape == (len(y), 4 if k == 1 else 6)
            np.testing.assert_array_equal(g["labels"][:], y.numpy())
    report = ncinspect.analyze_file(path)
    by_layer = {s.layer: s for s in report.snapshots}
    assert set(by_layer) == {None, "layer_1", "layer_2"}
    in_memory = measure(
        model, "fc", loader(x, y, batch_size=16), layers=["block1", "block2"], pool="avg"
    )
    for k, name in ((1, "block1"), (2, "block2")):
        snap = by_layer[f"layer_{k}"]
        assert snap.epoch == 3 and snap.n_samples == len(y)
        assert snap.metrics["nc1"] == pytest.approx(in_memory[name].metrics["nc1"], rel=1e-6)
    assert by_layer[None].metrics["nc3_self_duality"] is not None  # the classifier's layer


def test_measure_with_a_dump_writes_every_layer(tmp_path):
    model, x, y = trained_mlp()
    path = tmp_path / "m.h5"
    got = measure(
        model,
        "fc",
        loader(x, y),
        layers=["body.1"],
        dump=path,
        snapshot="epoch_0002",
        dump_meta={"epoch": 2, "split": "train"},
    )
    report = ncinspect.analyze_file(path)
    by_layer = {s.layer: s for s in report.snapshots}
    assert by_layer["layer_1"].name == "/epoch_0002/layer_1" and by_layer["layer_1"].epoch == 2
    assert by_layer["layer_1"].meta["layer_index"] == 1
    assert by_layer["layer_1"].metrics["nc1"] == pytest.approx(
        got["body.1"].metrics["nc1"], rel=1e-12
    )
    assert by_layer[None].metrics["nc1"] == pytest.approx(
        got["penultimate"].metrics["nc1"], rel=1e-12
    )


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(8, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.fc(self.shared(self.shared(x)))


def test_layer_errors_name_the_layer():
    model, x, y = trained_mlp()
    with pytest.raises(UsageError, match="no submodule 'nope'"):
        measure(model, "fc", loader(x, y), layers=["nope"])
    with pytest.raises(UsageError, match="given twice"):
        measure(model, "fc", loader(x, y), layers=["body.1", "body.1"])
    with pytest.raises(UsageError, match="penultimate"):
        measure(model, "fc", loader(x, y), layers={"penultimate": "body.1"})
    with pytest.raises(UsageError, match="pool must be one of"):
        measure(model, "fc", loader(x, y), layers=["body.1"], pool="mean")
    xs, ys = gaussian_classes(C=4, n=5, d_in=8)
    with pytest.raises(UsageError, match="'shared' was called 2 time"):
        measure(Twice(), "fc", loader(xs, ys), layers=["shared"])
    hooks = LayerHooks([("shared", Twice().shared)])
    assert hooks.rows(torch.ones(3)).shape == (3, 1)


def test_the_layer_wise_law_reads_captured_layers(tmp_path):
    """report's layers section orders capture's layer_<k> snapshots by k, the penultimate
    layer last, with the nc1 of each."""
    import json

    from ncinspect.cli import main

    model, x, y = trained_mlp()
    path = tmp_path / "layers.h5"
    capture(
        model,
        "fc",
        loader(x, y),
        path,
        snapshot="epoch_0005",
        epoch=5,
        split="train",
        layers=["body.0", "body.1", "body.2"],
    )
    assert main(["report", str(path), "--json", str(tmp_path / "r.json"), "-q"]) == 0
    (section,) = json.loads((tmp_path / "r.json").read_text())["layers"]
    got = [(entry["layer"], entry["position"]) for entry in section["layers"]]
    assert got == [("layer_1", 1), ("layer_2", 2), ("layer_3", 3), (None, 4)]
    direct = measure(model, "fc", loader(x, y), layers=["body.0", "body.1", "body.2"])
    nc1 = [r.metrics["nc1"] for r in direct.values()]
    assert [entry["nc1"] for entry in section["layers"]] == pytest.approx(nc1, rel=1e-6)
    assert section["metrics"]["layer_law_layers"] == 4
