"""The Lightning callback: a tiny model on CPU with a CSVLogger; nc1 and friends appear in
metrics.csv, equal to analyze() on the same features; the dump; every_n_epochs."""

from __future__ import annotations

import csv

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.errors import UsageError
from ncinspect.integrations.lightning import NeuralCollapseCallback

from ..torchnet import MLP, gaussian_classes, loader


class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = MLP(8, 32, 16, 4)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def quiet_trainer(cb, **options) -> pl.Trainer:
    """A one-epoch trainer on one CPU with the callback ``cb``, no logger, and nothing saved,
    shown or sanity-checked (``options`` override any of it)."""
    return pl.Trainer(
        **{
            "max_epochs": 1,
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "callbacks": [cb],
            "enable_checkpointing": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "num_sanity_val_steps": 0,
            **options,
        }
    )


def _fit(tmp_path, epochs, **cb_options):
    torch.manual_seed(0)
    x, y = gaussian_classes(C=4, n=40, d_in=8, seed=0)
    xv, yv = gaussian_classes(C=4, n=15, d_in=8, seed=1)
    model = Module()
    cb = NeuralCollapseCallback("net.fc", **cb_options)
    trainer = quiet_trainer(
        cb, max_epochs=epochs, logger=pl.loggers.CSVLogger(tmp_path, name="logs")
    )
    trainer.fit(model, loader(x, y, batch_size=32), loader(xv, yv, batch_size=32))
    return model, trainer, cb, (x, y, xv, yv)


def _rows(trainer):
    with open(f"{trainer.logger.log_dir}/metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def _analyze(model, x, y):
    with torch.no_grad():
        h = torch.cat([model.net.features(xb) for xb, _ in loader(x, y, batch_size=32)])
    fc = model.net.fc
    return ncinspect.analyze(
        h.numpy(), y.numpy(), weights=fc.weight.detach().numpy(), bias=fc.bias.detach().numpy()
    )


def test_callback_logs_the_metrics_of_analyze_to_the_csv_logger(tmp_path):
    model, trainer, cb, (x, y, xv, yv) = _fit(tmp_path, 2, dump=tmp_path / "run.h5")
    rows = [r for r in _rows(trainer) if r.get("nc/train/nc1")]
    assert [int(r["epoch"]) for r in rows] == [0, 1]  # every epoch
    last = rows[-1]  # measured after the last optimiser step: the final model
    for split, (xs, ys) in {"train": (x, y), "val": (xv, yv)}.items():
        want = _analyze(model, xs, ys).metrics
        for key in ("nc1", "nc1_cdnv", "nc2_equinorm_means", "nc3_self_duality"):
            assert want[key] is not None and last.get(f"nc/{split}/{key}"), key
        for key, value in want.items():
            name = f"nc/{split}/{key}"
            if value is None:
                assert not last.get(name), name
            else:
                assert float(last[name]) == pytest.approx(float(value), rel=1e-12, abs=1e-13), name
        assert float(trainer.callback_metrics[f"nc/{split}/nc1"]) == pytest.approx(want["nc1"])
    assert [(e, s) for e, s, _ in cb.results] == [  # epochs completed
        (1, "train"),
        (1, "val"),
        (2, "train"),
        (2, "val"),
    ]
    # the dump holds each measurement; analysing it gives the logged numbers
    report = ncinspect.analyze_file(tmp_path / "run.h5", snapshot="val/epoch_0002")
    (snap,) = report.snapshots
    assert snap.epoch == 2 and snap.split == "val" and snap.n_samples == len(yv)
    assert snap.metrics["nc1"] == pytest.approx(float(last["nc/val/nc1"]), rel=1e-12)


def test_every_n_epochs_and_explicit_loaders(tmp_path):
    x, y = gaussian_classes(C=4, n=10, d_in=8, seed=2)
    model, trainer, cb, _ = _fit(
        tmp_path, 3, every_n_epochs=2, loaders={"test": loader(x, y)}, prefix="collapse/"
    )
    rows = [r for r in _rows(trainer) if r.get("collapse/test/nc1")]
    assert [int(r["epoch"]) for r in rows] == [1]
    assert [(e, s) for e, s, _ in cb.results] == [(2, "test")]  # after the 2nd epoch
    assert not any(k.startswith("collapse/train") for k in rows[0])
    with pytest.raises(UsageError, match="every_n_epochs"):
        NeuralCollapseCallback("fc", every_n_epochs=0)
    with pytest.raises(UsageError, match="set by the callback"):
        NeuralCollapseCallback("fc", snapshot="x")
    assert np.isfinite(float(rows[0]["collapse/test/nc1"]))
