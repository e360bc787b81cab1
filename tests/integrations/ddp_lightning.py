"""A Lightning fit with the NeuralCollapseCallback, on CPU, with 1 or 2 processes (DDP, gloo),
for tests/integrations/test_lightning_ddp.py. Run as ``python ddp_lightning.py OUT DEVICES``:
Lightning's DDP launcher starts the second process by running this script again.

Each rank writes ``OUT/rank<r>.json``: the callback's numbers per (epochs completed, split),
the labels of the validation rows that rank saw; rank 0 also writes the final weights
(``OUT/weights.npz``, plain arrays). The validation split is laid out so that, with the
interleaving of a DistributedSampler (rank r gets rows r, r+2, ...), rank 1 sees no row of class
3 while rank 0 sees all of them.
"""

from __future__ import annotations

import json
import os
import sys

import lightning.pytorch as pl
import numpy as np
import torch

from ncinspect.integrations.lightning import NeuralCollapseCallback

torch.set_num_threads(1)
C, D_IN = 4, 8


class Net(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(D_IN, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU()
        )
        self.fc = torch.nn.Linear(8, C)

    def forward(self, x):
        return self.fc(self.body(x))

    def training_step(self, batch, _):
        x, y = batch
        return torch.nn.functional.cross_entropy(self(x), y)

    def validation_step(self, batch, _):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def data():
    """``(x, y, xv, yv)``: 4 Gaussian classes; in the validation split class 3 sits only at
    even positions (rank 0's rows under two processes)."""
    rng = np.random.default_rng(0)
    centres = 3.0 * rng.standard_normal((C, D_IN))
    y = np.repeat(np.arange(C), 24)
    rng.shuffle(y)
    yv = np.array([0, 1, 3, 2] * 4 + [0, 1, 2, 1] * 2)  # 24 rows: class 3 at even positions
    assert not np.any(yv[1::2] == 3) and np.any(yv[0::2] == 3)
    x = centres[y] + rng.standard_normal((len(y), D_IN))
    xv = centres[yv] + rng.standard_normal((len(yv), D_IN))
    as_t = lambda a, dt: torch.tensor(a, dtype=dt)  # noqa: E731
    return (
        as_t(x, torch.float32),
        as_t(y, torch.int64),
        as_t(xv, torch.float32),
        as_t(yv, torch.int64),
    )


class Data(pl.LightningDataModule):
    """Each rank's rows r, r + world, ... in order (training too: Lightning's own sampler
    would shuffle the training rows under DDP, and the single-process run could not match);
    a global batch of 24 rows, 24 // world per rank."""

    def __init__(self):
        super().__init__()
        self.x, self.y, self.xv, self.yv = data()

    def _loader(self, x, y):
        ds = torch.utils.data.TensorDataset(x, y)
        world, rank = self.trainer.world_size, self.trainer.global_rank
        sampler = torch.utils.data.DistributedSampler(
            ds, num_replicas=world, rank=rank, shuffle=False
        )
        return torch.utils.data.DataLoader(ds, batch_size=24 // world, sampler=sampler)

    def train_dataloader(self):
        return self._loader(self.x, self.y)

    def val_dataloader(self):
        return self._loader(self.xv, self.yv)


def main(out: str, devices: int) -> None:
    pl.seed_everything(0, verbose=False)
    model = Net()
    cb = NeuralCollapseCallback("fc", layers=["body.1"])
    trainer = pl.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        callbacks=[cb],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,  # Data's own DistributedSampler, in order
    )
    trainer.fit(model, datamodule=Data())
    seen = [int(v) for batch in trainer.val_dataloaders for v in batch[1]]
    record = {
        "world_size": trainer.world_size,
        "val_labels_seen": seen,
        "results": [
            {"epoch": e, "split": s, "layer": None, "metrics": r.metrics, "n": r.n_samples}
            for e, s, r in cb.results
        ]
        + [
            {"epoch": e, "split": s, "layer": n, "metrics": r.metrics, "n": r.n_samples}
            for e, s, n, r in cb.layer_results
        ],
    }
    rank = trainer.global_rank
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(record, f, default=float)
    if rank == 0:
        np.savez(
            os.path.join(out, "weights.npz"),
            **{k: v.detach().numpy() for k, v in model.state_dict().items()},
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
