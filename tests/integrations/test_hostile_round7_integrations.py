"""Hostile round seven: names that reach the loggers and dumps of the framework integrations.

Each case failed on the branch point (bd9715b) and passes now:

- ``layers=`` names that look like another (``blk`` and ``blk`` + a zero-width space; a
  ``penultimate`` with a blank or an invisible character beside the classifier's input) gave
  two results and two logged keys of one shown name, and a dump the readers refuse; a blank
  name or one holding a newline was taken;
- the Lightning callback's splits and layers met in one logged name (the split ``a/b`` and
  the layer ``b`` of split ``a`` both log ``nc/a/b/nc1``): one value overwrote the other in
  every logger, silently; loader splits ``0`` and ``"0"``, or two that look the same, the
  same (Lightning and Transformers callbacks).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ncinspect.errors import UsageError  # noqa: E402
from ncinspect.integrations.torch import measure  # noqa: E402

from ..torchnet import gaussian_classes, loader, trained_mlp  # noqa: E402

BAD_LAYER_NAMES = [
    {"penultimate ": "body.0"},
    {"penultimate\u200b": "body.0"},
    {"\ufeffpenultimate": "body.0"},
    {"blk": "body.0", "blk\u200b": "body.2"},
    {"blk": "body.0", " blk": "body.2"},
    {"caf\u00e9": "body.0", "cafe\u0301": "body.2"},
    {"": "body.0"},
    {"   ": "body.0"},
    {"x\n": "body.0"},
    {"x\x1b[31m": "body.0"},
]


@pytest.mark.parametrize("layers", BAD_LAYER_NAMES, ids=ascii)
def test_layer_names_that_show_as_another_or_nothing_are_refused(tmp_path, layers):
    model, x, y = trained_mlp()
    with pytest.raises(UsageError, match="layers: "):
        measure(model, "fc", loader(x, y), layers=layers)
    with pytest.raises(UsageError, match="layers: "):
        measure(model, "fc", loader(x, y), layers=layers, dump=str(tmp_path / "d.h5"))
    assert not (tmp_path / "d.h5").exists()


def test_layer_names_with_slashes_and_formulas_stay_usable():
    model, x, y = trained_mlp()
    got = measure(model, "fc", loader(x, y), layers={"a/b": "body.0", "=1+1": "body.2"})
    assert set(got) == {"a/b", "=1+1", "penultimate"}


def test_merge_logged_refuses_a_name_twice_or_a_look_alike():
    from ncinspect.integrations.layers import merge_logged

    values = {"nc/a/b/nc1": 1.0}
    with pytest.raises(UsageError, match="also the name of another"):
        merge_logged(values, {"nc/a/b/nc1": 2.0}, "split 'a', layer 'b'")
    with pytest.raises(UsageError, match="like"):
        merge_logged(values, {"nc/a/b/nc1\u200b": 2.0}, "split 'a'")
    assert values == {"nc/a/b/nc1": 1.0}


pl = pytest.importorskip("lightning.pytorch")

from ncinspect.integrations.lightning import NeuralCollapseCallback  # noqa: E402

from .test_lightning import Module, quiet_trainer  # noqa: E402


def _fit(cb, tmp_path):
    torch.manual_seed(0)
    x, y = gaussian_classes(C=4, n=20, d_in=8, seed=0)
    trainer = quiet_trainer(cb, logger=pl.loggers.CSVLogger(tmp_path, name="logs"))
    trainer.fit(Module(), loader(x, y, batch_size=40))
    return trainer


def _loaders():
    x, y = gaussian_classes(C=4, n=10, d_in=8, seed=1)
    return loader(x, y, batch_size=40)


@pytest.mark.parametrize(
    "splits",
    [["a/b", "a"], [0, "0"], ["val", "val\u200b"], ["val", "val "]],
    ids=ascii,
)
def test_lightning_splits_and_layers_never_log_one_name_twice(tmp_path, splits):
    cb = NeuralCollapseCallback(
        "net.fc",
        loaders={s: _loaders() for s in splits},
        layers={"b": "net.body.0"},
    )
    with pytest.raises(UsageError, match="logged name|splits: "):
        _fit(cb, tmp_path)


def test_lightning_distinct_splits_with_slashes_still_log(tmp_path):
    cb = NeuralCollapseCallback("net.fc", loaders={"a/b": _loaders(), "c": _loaders()})
    trainer = _fit(cb, tmp_path)
    assert {"nc/a/b/nc1", "nc/c/nc1"} <= set(trainer.callback_metrics)


@pytest.mark.parametrize("splits", [[0, "0"], ["val", "val\u200b"]], ids=ascii)
def test_transformers_splits_never_log_one_name_twice(tmp_path, monkeypatch, splits):
    pytest.importorskip("transformers")
    from ncinspect.integrations.transformers import NeuralCollapseCallback as HFCallback

    from .test_transformers import bert, classification_data, trainer_for

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    data = classification_data(3, 2)
    trainer = trainer_for(bert(), classification_data(3, 1), data, tmp_path)
    batches = torch.utils.data.DataLoader(data, batch_size=9)
    HFCallback(loaders={s: batches for s in splits}).attach(trainer)
    with pytest.raises(UsageError, match="splits: "):
        trainer.evaluate()


@pytest.mark.parametrize("diverged", ["body.0", "body.2"])
def test_a_diverged_hooked_layer_is_named_in_the_error(diverged):
    """With layers=, "features: 240 row(s) of pass 1 hold NaN/Inf values" did not say which
    layer; the classifier's input (downstream of the NaN) was the one reported."""
    import copy

    from ncinspect.errors import InvalidDataError

    model, x, y = trained_mlp()
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.get_submodule(diverged).weight[0, 0] = float("nan")
    k = 1 if diverged == "body.0" else 2
    with pytest.raises(InvalidDataError, match=rf"^layer '{diverged}' \(layer_{k}\): .*NaN/Inf"):
        measure(model, "fc", loader(x, y), layers=["body.0", "body.2"])
