"""The Hugging Face callback with labels already on the device (batches placed there, as
Accelerate's loaders do): no mask is read on the host; every row goes to the Meter, made with
``ignore_index``, which leaves the padding out on the device.

Real tiny models built from configs (no hub download). CPU tensors are made to look like an
accelerator's (the callback's ``_on_host`` and the Meter's ``on_host`` say no), and the
``TorchDispatchMode`` probe of ``tests/meter/test_meter_device.py`` counts the host reads
of the callback's own work on each batch (the model's forward left out) and of each
``Meter.update``: none. The numbers equal ``analyze`` of the kept rows computed
independently. On torch's ``meta`` device, where any read of a value raises, the rows
reach the Meter whole.
"""

from __future__ import annotations

import pytest
import torch
import transformers

import ncinspect
from ncinspect.integrations import transformers as hf
from ncinspect.integrations.transformers import NeuralCollapseCallback

from ..meter.test_meter_device import HostReads
from .test_transformers import (  # noqa: F401 - _offline: the module's autouse fixture
    VOCAB,
    C,
    T,
    _close,
    _offline,
    bert,
    gpt2,
    lm_data,
    meta_rows,
    token_labels,
    token_reference,
)


@pytest.fixture
def on_a_device(monkeypatch):
    """CPU tensors taken as an accelerator's; the host reads of each batch, recorded."""
    from ncinspect.stats import device

    monkeypatch.setattr(hf, "_on_host", lambda labels: False)
    monkeypatch.setattr(device, "on_host", lambda xp, h: False)
    reads: list[tuple[str, list[str]]] = []
    real_rows, real_forward = NeuralCollapseCallback._rows, hf.forward_hooked
    real_update = ncinspect.Meter.update
    active: list[HostReads] = []

    def rows(self, *args):
        probe = HostReads()
        active.append(probe)
        with probe:
            out = real_rows(self, *args)
        active.pop()
        reads.append(("rows", probe.reads))
        return out

    def forward(*args, **kwargs):  # the model's own forward is not the callback's work
        probe = active[-1]
        before = len(probe.reads)
        out = real_forward(*args, **kwargs)
        del probe.reads[before:]
        return out

    def update(self, features, labels):
        assert isinstance(labels, torch.Tensor) and labels.shape[0] == features.shape[0]
        probe = HostReads()
        with probe:
            real_update(self, features, labels)
        reads.append(("update", probe.reads))

    monkeypatch.setattr(NeuralCollapseCallback, "_rows", rows)
    monkeypatch.setattr(hf, "forward_hooked", forward)
    monkeypatch.setattr(ncinspect.Meter, "update", update)
    return reads


def _no_reads(reads, n_batches):
    assert len([r for r in reads if r[0] == "update"]) == 2 * n_batches  # both passes
    assert all(r == [] for _, r in reads), [x for x in reads if x[1]]


def test_token_classification_with_device_labels(on_a_device):
    model = bert(transformers.BertForTokenClassification).eval()
    ids, labels = token_labels()
    labels[1, 3:] = -100  # a padded row
    mask = torch.ones_like(ids)
    batches = [
        {
            "input_ids": ids[a : a + 3],
            "attention_mask": mask[a : a + 3],
            "labels": labels[a : a + 3],
        }
        for a in (0, 3)
    ]
    nc = NeuralCollapseCallback(trainer=object())
    values = nc.measure_split(model, "tok", batches)
    _no_reads(on_a_device, 2)
    ref, keep = token_reference(model, ids, mask, labels)
    assert nc.results[0][2].n_samples == int(keep.sum()) == 6 * (T - 1) - (T - 3)
    _close({k.removeprefix("nc/tok/"): v for k, v in values.items()}, ref)


@pytest.mark.parametrize("from_mask", [False, True])
def test_causal_lm_with_device_labels(on_a_device, from_mask):
    """Shifted next-token labels with padding, given or made from ``attention_mask``."""
    model = gpt2().eval()
    rows = lm_data(8, seed=2)
    ids = torch.stack([r["input_ids"] for r in rows.items])
    labels = torch.stack([r["labels"] for r in rows.items])
    if from_mask:
        batches = [
            {"input_ids": ids[a : a + 4], "attention_mask": (labels[a : a + 4] != -100).long()}
            for a in (0, 4)
        ]
    else:
        batches = [{"input_ids": ids[a : a + 4], "labels": labels[a : a + 4]} for a in (0, 4)]
    nc = NeuralCollapseCallback(trainer=object())
    values = nc.measure_split(model, "lm", batches)
    _no_reads(on_a_device, 2)
    with torch.no_grad():
        mask = (labels != -100).long() if from_mask else None
        hidden = model.transformer(input_ids=ids, attention_mask=mask).last_hidden_state
    H = hidden[:, :-1].reshape(-1, 16)
    y = labels[:, 1:].reshape(-1)
    keep = y != -100
    H, y = H[keep].double().numpy(), y[keep].numpy()
    assert len(y) == 8 * (T - 1) - 4 * 2
    ref = ncinspect.analyze(H, y, weights=model.get_output_embeddings().weight.detach().numpy())
    assert nc.results[0][2].n_samples == len(y)
    _close({k.removeprefix("nc/lm/"): v for k, v in values.items()}, ref)


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
def test_device_labels_reach_the_meter_whole_on_the_meta_device(monkeypatch, task):
    """Labels and features on ``meta`` (any read of a value raises): every row is handed
    on, the labels as they are (shifted for a causal LM), ignored ones included."""
    d = 4
    labels, nc = meta_rows(monkeypatch, d)
    (b, t), rows = labels.shape, labels.numel()
    on_meta = labels.to("meta")
    batch = {"input_ids": on_meta, "labels": on_meta}
    if task == "causal_lm":  # labels made from the attention mask, on the device
        batch = {"input_ids": on_meta, "attention_mask": (labels != -100).long().to("meta")}
    h, y = nc._rows(None, None, "head", batch, 0, task, None, None)
    n = b * (t - 1) if task == "causal_lm" else rows
    assert h.device.type == "meta" and y.device.type == "meta"
    assert h.shape == (n, d) and y.shape == (n,)
