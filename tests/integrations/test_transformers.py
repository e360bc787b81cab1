"""The Transformers TrainerCallback: real tiny models built from configs (no hub download), a
real Trainer run on CPU; the logged numbers equal analyze() on the same head inputs computed
independently (BERT's pooler output, GPT-2's final hidden states)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch  # noqa: E402,F401  (CI installs every extra: a missing one fails)
import transformers  # noqa: E402

import ncinspect  # noqa: E402
from ncinspect.errors import UsageError  # noqa: E402
from ncinspect.integrations.transformers import NeuralCollapseCallback, find_head  # noqa: E402

C, VOCAB, T = 3, 40, 8


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("WANDB_MODE", "disabled")


class Rows(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def classification_data(n_per_class, seed):
    """Class c's tokens come from its own tenth of the vocabulary: learnable, not trivial."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for c in range(C):
        for _ in range(n_per_class):
            ids = torch.randint(10 * c + 1, 10 * c + 11, (T,), generator=g)
            ids[torch.rand(T, generator=g) < 0.3] = torch.randint(1, VOCAB, (1,), generator=g)
            items.append(
                {
                    "input_ids": ids,
                    "attention_mask": torch.ones(T, dtype=torch.long),
                    "labels": torch.tensor(c),
                }
            )
    return Rows(items)


def lm_data(n, seed, pad_last=2):
    """Token sequences; the last ``pad_last`` positions of every other row are padding
    (label -100), as the Transformers collators mark them."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        ids = torch.randint(0, VOCAB // 2, (T,), generator=g)  # half the vocabulary never occurs
        labels = ids.clone()
        if i % 2:
            labels[-pad_last:] = -100
        items.append({"input_ids": ids, "labels": labels})
    return Rows(items)


def bert(head=None):
    """A tiny BERT (``head``: its class, default sequence classification)."""
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=T,
        num_labels=C,
    )
    return (head or transformers.BertForSequenceClassification)(config)


def token_labels():
    """Six rows of T token ids and their labels, the first position of each unlabelled."""
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(1, VOCAB, (6, T), generator=g)
    labels = ids % C
    labels[:, 0] = -100  # [CLS]-like positions are not labelled
    return ids, labels


def token_reference(model, ids, mask, labels):
    """``(analyze of the labelled tokens' last hidden rows with the model's classifier, the
    mask of labelled tokens)``: what a callback measuring a token-classification BERT
    should report."""
    with torch.no_grad():
        hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = labels.reshape(-1) != -100
    ref = ncinspect.analyze(
        hidden.reshape(-1, hidden.shape[-1])[keep].double().numpy(),
        labels.reshape(-1)[keep].numpy(),
        weights=model.classifier.weight.detach().numpy(),
        bias=model.classifier.bias.detach().numpy(),
    )
    return ref, keep


def meta_rows(monkeypatch, d=4):
    """Labels (3 x 5, three of them -100) and a callback whose hooked forward gives rows of
    ``d`` features on torch's ``meta`` device, where any read of a value raises."""
    from ncinspect.integrations import transformers as hf

    b, t = 3, 5
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 7, (b, t), generator=g)
    labels[0, 2] = labels[2, 4] = labels[1, 1] = -100
    rows = b * t
    monkeypatch.setattr(
        hf, "forward_hooked", lambda *a, **k: (torch.empty(rows, d, device="meta"),)
    )
    return labels, NeuralCollapseCallback(trainer=object())


def gpt2():
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=16, n_layer=1, n_head=2, n_positions=T
    )
    return transformers.GPT2LMHeadModel(config)


def trainer_for(model, train, val, tmp_path, **args):
    targs = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        eval_strategy="steps",
        eval_steps=1,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=7,
        learning_rate=1e-2,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        logging_steps=1,
        **{"report_to": [], **args},
    )
    return transformers.Trainer(model=model, args=targs, train_dataset=train, eval_dataset=val)


def _close(got, want):
    compared = 0
    for key, value in want.metrics.items():
        if isinstance(value, float) and not isinstance(value, bool) and math.isfinite(value):
            assert got[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
            compared += 1
    assert compared >= 10 and set(got) <= set(want.metrics)


class Recorder(transformers.TrainerCallback):
    """Stands for a logger integration (W&B, TensorBoard, MLflow): what its on_log sees."""

    def __init__(self):
        self.logs = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logs.append(dict(logs or {}))


def test_sequence_classification_logs_analyze_numbers(tmp_path):
    model = bert()
    val = classification_data(6, seed=2)
    trainer = trainer_for(model, classification_data(8, seed=1), val, tmp_path)
    recorder = Recorder()
    trainer.add_callback(recorder)
    nc = NeuralCollapseCallback(dump=tmp_path / "run.h5").attach(trainer)
    trainer.train()

    assert [(step, split) for step, split, _ in nc.results] == [(1, "eval"), (2, "eval")]
    # the head was found as the module whose output is the logits
    loader = torch.utils.data.DataLoader(val, batch_size=4)
    assert find_head(model, "classification", loader)[1] == "classifier"
    logged = [log for log in trainer.state.log_history if "nc/eval/nc1" in log]
    assert [log["step"] for log in logged] == [1, 2]
    assert [log for log in recorder.logs if "nc/eval/nc1" in log]  # the loggers got them

    # independent reference at the end: BERT's pooler output is the classifier's input
    model.eval()
    ids = torch.stack([r["input_ids"] for r in val.items])
    mask = torch.stack([r["attention_mask"] for r in val.items])
    y = torch.stack([r["labels"] for r in val.items]).numpy()
    with torch.no_grad():
        H = model.bert(input_ids=ids, attention_mask=mask).pooler_output.double().numpy()
    ref = ncinspect.analyze(
        H,
        y,
        weights=model.classifier.weight.detach().numpy(),
        bias=model.classifier.bias.detach().numpy(),
    )
    last = {k.removeprefix("nc/eval/"): v for k, v in logged[-1].items() if k.startswith("nc/")}
    assert last["nc1"] > 0
    _close(last, ref)

    # the dump holds each measurement, with its metadata
    import h5py

    with h5py.File(tmp_path / "run.h5", "r") as f:
        snap = f["eval/step_0000002"]
        assert snap.attrs["step"] == 2 and snap.attrs["split"] == "eval"
        assert snap.attrs["loss"] == "cross_entropy"
        np.testing.assert_allclose(snap["features"][()], H, rtol=1e-5, atol=1e-6)
        assert snap.attrs["trainer_epoch"] == pytest.approx(trainer.state.epoch)
    report = ncinspect.analyze_file(tmp_path / "run.h5")
    assert [r.name for r in report] == ["/eval/step_0000001", "/eval/step_0000002"]
    _close(last, report["eval/step_0000002"])


def test_causal_lm_token_level_shifted_labels_and_absent_tokens(tmp_path):
    model = gpt2()
    val = lm_data(10, seed=2)
    trainer = trainer_for(model, lm_data(16, seed=1), val, tmp_path)
    nc = NeuralCollapseCallback().attach(trainer)
    metrics = trainer.evaluate()
    assert "nc/eval/nc1" in metrics  # evaluate() returns them too
    ((_, _, result),) = nc.results

    # reference: final hidden states at position t, next-token labels, padding dropped
    model.eval()
    ids = torch.stack([r["input_ids"] for r in val.items])
    labels = torch.stack([r["labels"] for r in val.items])
    with torch.no_grad():
        hidden = model.transformer(input_ids=ids).last_hidden_state
    H = hidden[:, :-1].reshape(-1, 16)
    y = labels[:, 1:].reshape(-1)
    keep = y != -100
    H, y = H[keep].double().numpy(), y[keep].numpy()
    assert len(y) == 10 * (T - 1) - 5 * 2  # padding rows dropped
    W = model.get_output_embeddings().weight.detach().numpy()
    assert W.shape[0] == VOCAB
    ref = ncinspect.analyze(H, y, weights=W)
    _close({k.removeprefix("nc/eval/"): v for k, v in metrics.items() if k.startswith("nc/")}, ref)
    # absent tokens: class-level metrics over the present ones, C = the vocabulary
    assert result.n_classes_total == VOCAB
    assert result.n_classes == len(np.unique(y)) < VOCAB
    assert result.metrics["nc4_ncc_mismatch"] == pytest.approx(ref.metrics["nc4_ncc_mismatch"])


def test_lm_labels_from_input_ids_and_mask(tmp_path):
    """Batches without labels: the next tokens of input_ids, masked positions dropped."""
    model = gpt2()
    rows = lm_data(6, seed=3)
    batch = {
        "input_ids": torch.stack([r["input_ids"] for r in rows.items]),
        "attention_mask": torch.ones(6, T, dtype=torch.long),
    }
    batch["attention_mask"][:, -1] = 0
    nc = NeuralCollapseCallback(trainer=object())
    with_labels = dict(
        batch, labels=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    )
    a = nc.measure_split(model, "x", [batch])
    b = nc.measure_split(model, "y", [with_labels])
    assert a == {k.replace("/y/", "/x/"): v for k, v in b.items()}
    assert nc.results[0][2].n_samples == 6 * (T - 2)


def test_callback_must_be_attached_and_options_checked(tmp_path):
    model = bert()
    trainer = trainer_for(model, classification_data(4, 1), classification_data(2, 2), tmp_path)
    trainer.add_callback(NeuralCollapseCallback())
    with pytest.raises(UsageError, match="attach"):
        trainer.train()
    with pytest.raises(UsageError, match="task"):
        NeuralCollapseCallback(task="seq2seq")
    with pytest.raises(UsageError, match="set by the callback"):
        NeuralCollapseCallback(dump_meta={})


def test_tensorboard_integration_gets_the_values(tmp_path):
    """Through the Trainer's own logging: TensorBoard's event files hold nc/eval/nc1."""
    import tensorboard  # noqa: F401  (the loggers extra)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = bert()
    trainer = trainer_for(
        model,
        classification_data(8, 1),
        classification_data(4, 2),
        tmp_path,
        report_to=["tensorboard"],
    )
    trainer.args.logging_dir = str(tmp_path / "tb")
    nc = NeuralCollapseCallback().attach(trainer)
    trainer.train()
    import glob

    files = glob.glob(str(tmp_path / "**" / "events.out.tfevents.*"), recursive=True)
    assert files
    tags, values = set(), {}
    for path in files:
        acc = EventAccumulator(path)
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            tags.add(tag)
            values[tag] = [e.value for e in acc.Scalars(tag)]
    key = next(t for t in tags if t.endswith("nc/eval/nc1"))
    want = [r.metrics["nc1"] for _, _, r in nc.results]
    assert values[key] == pytest.approx(want, rel=1e-6)  # TensorBoard stores float32


def test_token_classification_drops_ignored_rows():
    """Token-level labels are flattened and -100 rows dropped; the head is found by its logits."""
    model = bert(transformers.BertForTokenClassification).eval()
    ids, labels = token_labels()
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}
    nc = NeuralCollapseCallback(trainer=object())
    values = nc.measure_split(model, "tok", [batch])
    ref, _ = token_reference(model, ids, torch.ones_like(ids), labels)
    assert nc.results[0][2].n_samples == 6 * (T - 1)
    _close({k.removeprefix("nc/tok/"): v for k, v in values.items()}, ref)


def test_dict_of_eval_sets_measures_each_and_train_once(tmp_path):
    model = bert()
    val = {"a": classification_data(3, 2), "b": classification_data(2, 3)}
    trainer = trainer_for(model, classification_data(4, 1), val, tmp_path)
    nc = NeuralCollapseCallback(train=True, max_batches=1).attach(trainer)
    metrics = trainer.evaluate()
    assert sorted(split for _, split, _ in nc.results) == ["eval_a", "eval_b", "train"]
    assert {"nc/eval_a/nc1", "nc/eval_b/nc1", "nc/train/nc1"} <= set(metrics)


def test_rows_reach_the_meter_as_tensors_and_no_dump_by_default(tmp_path, monkeypatch):
    """The callback hands the Meter device tensors (reduced in place by the array-API path),
    never host copies of the features; without dump= nothing is written."""
    seen = []
    real = ncinspect.Meter.update

    def spy(self, features, labels):
        seen.append((type(features), type(labels), tuple(features.shape)))
        return real(self, features, labels)

    monkeypatch.setattr(ncinspect.Meter, "update", spy)
    monkeypatch.chdir(tmp_path)
    model = gpt2()
    rows = lm_data(4, seed=5)
    batch = {k: torch.stack([r[k] for r in rows.items]) for k in ("input_ids", "labels")}
    NeuralCollapseCallback(trainer=object()).measure_split(model, "x", [batch, batch])
    assert len(seen) == 4  # two batches, two passes
    assert all(f is torch.Tensor and y is torch.Tensor for f, y, _ in seen)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("task", ["classification", "causal_lm"])
def test_host_labels_drop_ignored_rows_without_reading_the_device(monkeypatch, task):
    """Labels on the host (a DataLoader's) with features on an accelerator (here torch's
    ``meta`` device, where any read of a value raises): the ignored rows are found on the
    host and dropped from the features by an index sent to the device, the labels stay on
    the host for the Meter to send; the kept rows are the right ones."""
    d = 4
    labels, nc = meta_rows(monkeypatch, d)
    h, y = nc._rows(
        None, None, "head", {"input_ids": labels, "labels": labels}, 0, task, None, None
    )
    want = labels[:, 1:].reshape(-1) if task == "causal_lm" else labels.reshape(-1)
    want = want[want != -100]
    assert h.device.type == "meta" and h.shape == (want.numel(), d)
    assert y.device.type == "cpu" and torch.equal(y, want)
