"""The torch capture helper, and one real trained model dumped three ways (DumpWriter by
hand, the capture helper, safetensors) against a direct float64 computation."""

from __future__ import annotations

import copy
import subprocess
import sys

import h5py
import numpy as np
import pytest
import safetensors.numpy
import torch
from torch import nn

import ncinspect
from ncinspect.errors import NCInspectError, UsageError
from ncinspect.integrations.torch import ClassifierHook, capture
from ncinspect.io.writer import SnapshotWriter

from ..reference import reference_metrics
from ..torchnet import direct_arrays, loader, trained_mlp


def _close(got, ref, rtol=1e-10):
    for key, value in ref.items():
        if value is None or isinstance(value, bool):
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=rtol, abs=1e-12), key


def test_three_ways_give_the_direct_float64_metrics(tmp_path):
    model, x, y = trained_mlp()
    h, out, w, b = direct_arrays(model, x)
    ref = reference_metrics(h, y.numpy(), W=w, b=b, outputs=out)
    assert ref["accuracy_classifier"] > 0.9  # the model did learn something
    # 1. DumpWriter by hand
    by_hand = tmp_path / "hand.h5"
    with torch.no_grad(), ncinspect.DumpWriter(by_hand) as dump:
        snap = dump.snapshot("epoch_0005", epoch=5, split="train")
        for xb, yb in loader(x, y):
            hb = model.features(xb)
            snap.append(features=hb, labels=yb, outputs=model.fc(hb))
        snap.write(weights=model.fc.weight, bias=model.fc.bias)
    # 2. the capture helper
    captured = tmp_path / "capture.h5"
    info = capture(
        model, model.fc, loader(x, y), captured, snapshot="epoch_0005", epoch=5, split="train"
    )
    assert (info.n_samples, info.n_features, info.n_classes) == (len(y), w.shape[1], w.shape[0])
    assert info.snapshot == "/epoch_0005"
    # 3. safetensors, written from the model's own tensors
    st = tmp_path / "dump.safetensors"
    with torch.no_grad():
        feats = model.features(x)
        safetensors.numpy.save_file(
            {
                "epoch_0005/features": feats.numpy(),
                "epoch_0005/outputs": model.fc(feats).numpy(),
                "labels": y.numpy(),
                **{k: v.numpy() for k, v in model.state_dict().items()},
            },
            str(st),
        )
    results = [ncinspect.analyze_file(p)[0] for p in (by_hand, captured, st)]
    for res in results:
        assert res.name == "/epoch_0005" and res.epoch == 5 and res.n_samples == len(y)
        _close(res.metrics, ref)
    # the dumps hold exactly the model's float32 features
    with h5py.File(captured, "r") as f:
        assert np.array_equal(f["epoch_0005/features"][()], h.astype(np.float32))
        assert f["epoch_0005/features"].dtype == np.float32


def test_eval_no_grad_and_modes_restored(tmp_path):
    model, x, y = trained_mlp()
    model = copy.deepcopy(model)
    model.zero_grad(set_to_none=True)
    model.train()
    model.body[1].eval()  # a submodule deliberately left in eval mode
    seen = []
    model.body.register_forward_hook(lambda m, i, o: seen.append((m.training, o.requires_grad)))
    info = capture(model, "fc", loader(x, y), tmp_path / "m.h5")
    assert info.n_samples == len(y)
    assert seen and all(t is False and g is False for t, g in seen)  # eval() and no_grad
    assert model.training and model.body[0].training and not model.body[1].training
    assert all(p.grad is None for p in model.parameters())


def test_batches_are_appended_one_by_one(tmp_path, monkeypatch):
    model, x, y = trained_mlp()
    sizes = []
    real = SnapshotWriter.append

    def spy(self, **batches):
        sizes.append(batches["features"].shape[0])
        return real(self, **batches)

    monkeypatch.setattr(SnapshotWriter, "append", spy)
    capture(model, model.fc, loader(x, y, batch_size=16), tmp_path / "b.h5")
    assert sizes == [16] * (len(y) // 16) + ([len(y) % 16] if len(y) % 16 else [])


def test_bfloat16_model_and_dict_batches(tmp_path):
    model, x, y = trained_mlp()
    bf = copy.deepcopy(model).to(torch.bfloat16)

    class Wrapped(nn.Module):  # a model called with keyword inputs, as HF models are
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values):
            return self.inner(pixel_values)

    wrapped = Wrapped(bf)
    batches = [{"pixel_values": xb, "labels": yb} for xb, yb in loader(x, y)]
    path = tmp_path / "bf.h5"
    capture(wrapped, "inner.fc", batches, path, loss="cross_entropy", epoch=3)
    with torch.no_grad():
        h = bf.features(x.bfloat16())
        out = bf.fc(h)
    with h5py.File(path, "r") as f:
        assert f["features"].dtype == np.float32
        assert np.array_equal(f["features"][()], h.float().numpy())  # exact widening
        assert np.array_equal(f["weights"][()], bf.fc.weight.float().detach().numpy())
    res = ncinspect.analyze_file(path)[0]
    assert res.meta["loss"] == "cross_entropy" and res.epoch == 3
    ref = reference_metrics(
        h.double().numpy(),
        y.numpy(),
        W=bf.fc.weight.detach().double().numpy(),
        b=bf.fc.bias.detach().double().numpy(),
        outputs=out.double().numpy(),
    )
    _close(res.metrics, ref)


def test_sequence_model_rows_are_tokens(tmp_path):
    torch.manual_seed(0)
    emb, head = nn.Embedding(7, 5), nn.Linear(5, 7, bias=False)
    model = nn.Sequential(emb, head)
    tokens = torch.randint(0, 7, (6, 9))
    targets = torch.roll(tokens, -1, dims=1)
    path = tmp_path / "lm.h5"
    info = capture(model, head, [(tokens[:3], targets[:3]), (tokens[3:], targets[3:])], path)
    assert info.n_samples == 54 and info.n_classes == 7
    with h5py.File(path, "r") as f:
        assert f["features"].shape == (54, 5) and "bias" not in f
        assert np.array_equal(f["labels"][()], targets.reshape(-1).numpy())


def test_rerun_refused_then_replaced(tmp_path):
    model, x, y = trained_mlp()
    path = tmp_path / "r.h5"
    capture(model, model.fc, loader(x, y), path, snapshot="epoch_0001")
    with pytest.raises(NCInspectError, match="append=True"):
        capture(model, model.fc, loader(x, y), path, snapshot="epoch_0001")
    capture(model, model.fc, loader(x, y), path, snapshot="epoch_0001", replace=True)
    with h5py.File(path, "r") as f:
        assert f["epoch_0001/features"].shape[0] == len(y)


def test_hook_is_reusable_in_a_loop():
    model, x, y = trained_mlp()
    seen = []
    with torch.no_grad(), ClassifierHook(model.fc, lambda h, o: seen.append((h, o))) as hook:
        model(x[:10])
        model(x[10:25])
    model(x[:3])  # removed on exit
    assert hook.calls == 2 and [h.shape[0] for h, _ in seen] == [10, 15]
    with torch.no_grad():
        assert torch.equal(seen[1][0], model.features(x[10:25]))
        assert torch.equal(seen[1][1], model(x[10:25]))


def test_usage_errors(tmp_path):
    model, x, y = trained_mlp()
    with pytest.raises(UsageError, match="no submodule 'head'"):
        capture(model, "head", loader(x, y), tmp_path / "a.h5")
    with pytest.raises(UsageError, match="not a module of the model"):
        capture(model, nn.Linear(2, 2), loader(x, y), tmp_path / "b.h5")
    spare = nn.Sequential(model, nn.Linear(16, 4))  # a module the forward never calls
    spare.forward = lambda inp: model(inp)
    with pytest.raises(UsageError, match="'1' was not called"):
        capture(spare, "1", loader(x, y), tmp_path / "c.h5")
    with pytest.raises(UsageError, match="labels"):
        capture(model, model.fc, [x[:4]], tmp_path / "d.h5")


def test_integration_not_imported_by_core():
    code = (
        "import sys, ncinspect, ncinspect.integrations; "
        "sys.exit(1 if 'torch' in sys.modules or 'ncinspect.integrations.torch' in sys.modules "
        "else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_ood_set_without_labels_gives_nc5(tmp_path):

    model, x, y = trained_mlp()
    path = tmp_path / "ood.h5"
    capture(model, "fc", loader(x, y), path, snapshot="epoch_0005", epoch=5, split="train")
    x_ood = torch.randn(50, x.shape[1], generator=torch.Generator().manual_seed(7)) * 3
    batches = [x_ood[:20], x_ood[20:]]  # inputs alone, as an unlabelled loader yields them
    info = capture(model, "fc", batches, path, snapshot="ood/epoch_0005", epoch=5, split="ood")
    assert info.n_samples == 50
    report = ncinspect.analyze_file(path)
    train = next(r for r in report if r.split == "train")
    h, _, _, _ = direct_arrays(model, x)
    h_ood = direct_arrays(model, x_ood)[0]
    mu_ood = h_ood.mean(0)
    means = np.stack([h[y.numpy() == c].mean(0) for c in range(int(y.max()) + 1)])
    cos = means @ mu_ood / (np.linalg.norm(means, axis=1) * np.linalg.norm(mu_ood))
    assert train.metrics["nc5_ood_orthogonality"] == pytest.approx(np.abs(cos).mean(), rel=1e-10)
