"""What the Lightning callback records for the theory (issue 23 item 3): epochs completed
(``epoch_0002`` after the 2nd epoch, as ``report`` reads it), the global step, the loss kind
(argument or the module's word), learning rate and weight decay per parameter group, the
user's metadata; and hidden layers (``layers=``) in the dump and the logs."""

from __future__ import annotations

import h5py
import lightning.pytorch as pl
import pytest
import torch
from torch import nn

import ncinspect
from ncinspect.errors import UsageError
from ncinspect.integrations.lightning import NeuralCollapseCallback, loss_kind, optimizer_meta
from ncinspect.results.conventions import loss_of

from ..torchnet import MLP, gaussian_classes, loader
from .test_lightning import quiet_trainer


class Grouped(pl.LightningModule):
    """Cross-entropy through a loss module; weight decay on the body only (two groups)."""

    def __init__(self):
        super().__init__()
        self.net = MLP(8, 32, 16, 4)
        self.criterion = nn.CrossEntropyLoss()

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, _):
        x, y = batch
        return self.criterion(self(x), y)

    def validation_step(self, batch, _):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(
            [
                {"params": self.net.body.parameters(), "weight_decay": 5e-4},
                {"params": self.net.fc.parameters(), "weight_decay": 0.0},
            ],
            lr=0.05,
            momentum=0.9,
        )


def test_dump_and_results_carry_what_the_theory_needs(tmp_path):
    torch.manual_seed(0)
    x, y = gaussian_classes(C=4, n=30, d_in=8, seed=0)
    xv, yv = gaussian_classes(C=4, n=10, d_in=8, seed=1)
    cb = NeuralCollapseCallback(
        "net.fc",
        dump=tmp_path / "run.h5",
        layers={"hidden": "net.body.1"},
        dump_meta={"seed": 7, "dataset": "gaussian"},
    )
    trainer = quiet_trainer(cb, max_epochs=2)
    model = Grouped()
    trainer.fit(model, loader(x, y, batch_size=40), loader(xv, yv, batch_size=40))
    assert [(e, s) for e, s, _ in cb.results] == [
        (1, "train"),
        (1, "val"),
        (2, "train"),
        (2, "val"),
    ]
    assert [(e, s, n) for e, s, n, _ in cb.layer_results][-2:] == [
        (2, "train", "hidden"),
        (2, "val", "hidden"),
    ]
    with h5py.File(tmp_path / "run.h5", "r") as f:
        assert sorted(f["train"]) == ["epoch_0001", "epoch_0002"]  # epochs completed
        attrs = dict(f["val/epoch_0002"].attrs)
        assert attrs["epoch"] == 2 and attrs["split"] == "val"
        assert attrs["step"] == 6  # 2 epochs of 3 batches
        assert attrs["loss"] == "cross_entropy"
        assert attrs["learning_rate"] == 0.05 and "weight_decay" not in attrs  # groups differ
        assert list(attrs["weight_decay_groups"]) == [5e-4, 0.0]
        assert list(attrs["learning_rate_groups"]) == [0.05, 0.05]
        assert attrs["optimizer"] == "SGD" and attrs["seed"] == 7
        assert attrs["dataset"] == "gaussian"
        layer = dict(f["val/epoch_0002/layer_1"].attrs)
        assert layer["layer"] == "layer_1" and layer["layer_index"] == 1
        assert layer["module"] == "hidden" and layer["epoch"] == 2 and layer["seed"] == 7
    report = ncinspect.analyze_file(tmp_path / "run.h5")
    val = {s.layer: s for s in report.snapshots if s.split == "val" and s.epoch == 2}
    assert set(val) == {None, "layer_1"}
    assert loss_of(val[None].meta) == ("cross_entropy", False)
    last = cb.results[-1][2]
    assert last.epoch == 2 and last.meta["step"] == 6 and last.meta["loss"] == "cross_entropy"
    assert val[None].metrics["nc1"] == pytest.approx(last.metrics["nc1"], rel=1e-12)
    hidden = cb.layer_results[-1][3]
    assert val["layer_1"].metrics["nc1"] == pytest.approx(hidden.metrics["nc1"], rel=1e-12)
    assert float(trainer.callback_metrics["nc/val/hidden/nc1"]) == pytest.approx(
        hidden.metrics["nc1"]
    )


def test_loss_kind_reads_what_the_module_says():
    class M(nn.Module):
        pass

    m = M()
    assert loss_kind(m) is None  # not recorded rather than a guess
    m.criterion = nn.MSELoss()
    assert loss_kind(m) == "mse" and loss_of({"loss": loss_kind(m)}) == ("mse", True)
    m.criterion = nn.BCEWithLogitsLoss()
    assert loss_kind(m) == "bce_with_logits"
    m = M()
    m.loss_fn = torch.nn.functional.cross_entropy
    assert loss_kind(m) == "cross_entropy"
    m.loss_kind = "square"
    assert loss_kind(m) == "square"

    class H(pl.LightningModule):
        def __init__(self, loss="square"):
            super().__init__()
            self.save_hyperparameters()

    assert loss_kind(H()) == "square"
    assert loss_kind(H(loss="cross_entropy")) == "cross_entropy"


def test_optimizer_meta_and_user_meta_checks():
    p = [nn.Parameter(torch.zeros(2))]
    assert optimizer_meta([torch.optim.AdamW(p, lr=1e-3, weight_decay=0.01)]) == {
        "optimizer": "AdamW",
        "learning_rate": 1e-3,
        "weight_decay": 0.01,
    }
    assert optimizer_meta([]) == {}
    with pytest.raises(UsageError, match="may not set"):
        NeuralCollapseCallback("fc", dump_meta={"epoch": 3})
    with pytest.raises(UsageError, match="loss must name"):
        NeuralCollapseCallback("fc", loss=nn.MSELoss())

    class T:  # the trainer, as far as run_meta looks
        current_epoch, global_step = 9, 90
        optimizers = [torch.optim.SGD(p, lr=0.1, weight_decay=1e-4)]

    cb = NeuralCollapseCallback("fc", loss="square", dump_meta=lambda t, m: {"run": "a"})
    meta = cb.run_meta(T(), nn.Linear(2, 2))
    assert meta == {
        "epoch": 10,
        "step": 90,
        "loss": "square",
        "optimizer": "SGD",
        "learning_rate": 0.1,
        "weight_decay": 1e-4,
        "run": "a",
    }
