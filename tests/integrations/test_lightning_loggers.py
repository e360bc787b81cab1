"""The Lightning callback through real loggers (issue 23 item 5): one fit logs to a CSVLogger,
a TensorBoardLogger and a WandbLogger (offline) at once; each logger's own files are read back
(metrics.csv; the event file with TensorBoard's EventAccumulator; the W&B run's transaction
log ``run-*.wandb``, parsed record by record) and hold the callback's numbers at the global
step, and the figures (Gram heatmap, trajectory) as PNG images where the logger takes images.
Nothing is written outside tmp_path: HOME points into it and must stay empty."""

from __future__ import annotations

import csv
import glob
import io
import json
import os

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from ncinspect.integrations.lightning import NeuralCollapseCallback

from ..torchnet import gaussian_classes, loader
from .test_lightning import Module, quiet_trainer


def wandb_records(path):
    """The protobuf records of a W&B transaction log (``run-<id>.wandb``): a 7-byte file
    header (``:W&B``, magic, version), then records in 32 KiB blocks, each with a 7-byte
    header (CRC, little-endian length, type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # the rest of a block is padding
            pos += left
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        kind = data[pos + 6]
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending + payload)
            pending = b""
            yield record
        elif kind in (2, 3):
            pending += payload


def wandb_history(run_dir) -> list[dict]:
    (log,) = glob.glob(os.path.join(run_dir, "run-*.wandb"))
    rows = []
    for record in wandb_records(log):
        if record.WhichOneof("record_type") == "history":
            row = {}
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            rows.append(row)
    return rows


@pytest.fixture
def fitted(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var, sub in (
        ("WANDB_DIR", "wandb"),
        ("WANDB_CACHE_DIR", "wandb-cache"),
        ("WANDB_CONFIG_DIR", "wandb-config"),
        ("WANDB_DATA_DIR", "wandb-data"),
        ("WANDB_ARTIFACT_DIR", "wandb-artifacts"),
    ):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    torch.manual_seed(0)
    x, y = gaussian_classes(C=4, n=30, d_in=8, seed=0)
    xv, yv = gaussian_classes(C=4, n=10, d_in=8, seed=1)
    loggers = [
        pl.loggers.CSVLogger(tmp_path, name="csv"),
        pl.loggers.TensorBoardLogger(tmp_path, name="tb"),
        pl.loggers.WandbLogger(save_dir=str(tmp_path / "wandb"), offline=True, project="nc"),
    ]
    cb = NeuralCollapseCallback("net.fc", layers=["net.body.1"], log_figures=True)
    trainer = quiet_trainer(cb, max_epochs=2, logger=loggers, log_every_n_steps=1)
    trainer.fit(Module(), loader(x, y, batch_size=40), loader(xv, yv, batch_size=40))
    import wandb

    wandb.finish()
    steps = {e: 3 * e for e in (1, 2)}  # 120 rows in batches of 40: 3 steps an epoch
    return tmp_path, trainer, cb, loggers, steps, home


def _logged(cb):
    """{(name, step): value} the callback logged, from its results."""
    out = {}
    for epoch, split, result in cb.results:
        for key in ("nc1", "nc2_equinorm_means", "nc4_ncc_mismatch"):
            out[(f"nc/{split}/{key}", 3 * epoch)] = result.metrics[key]
    for epoch, split, name, result in cb.layer_results:
        out[(f"nc/{split}/{name}/nc1", 3 * epoch)] = result.metrics["nc1"]
    return out


def _png(data: bytes) -> np.ndarray:
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # something is drawn
    return image


@pytest.mark.slow  # about 2 minutes on the shared 2-core machine (W&B's service, figures)
def test_scalars_and_figures_through_csv_tensorboard_and_wandb(fitted):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp_path, trainer, cb, (csv_logger, tb_logger, wandb_logger), steps, home = fitted
    want = _logged(cb)
    assert len(want) == 2 * 2 * 4 and all(v is not None for v in want.values())

    # CSV: one row per measurement, the global step, Lightning's 0-based epoch column
    with open(os.path.join(csv_logger.log_dir, "metrics.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("nc/train/nc1")]
    assert [(int(r["step"]), int(r["epoch"])) for r in rows] == [(3, 0), (6, 1)]
    for (name, step), value in want.items():
        (row,) = [r for r in rows if int(r["step"]) == step]
        assert float(row[name]) == pytest.approx(value, rel=1e-12), name

    # TensorBoard: the event file read back
    acc = EventAccumulator(tb_logger.log_dir, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    for (name, step), value in want.items():
        events = {e.step: e.value for e in acc.Scalars(name)}
        assert events[step] == pytest.approx(value, rel=1e-6), name  # float32 in the file
    for split in ("train", "val"):
        for kind in ("gram", "trajectory"):
            images = acc.Images(f"nc/{split}/{kind}")
            assert [im.step for im in images] == [3, 6]
            _png(images[-1].encoded_image_string)

    # W&B offline: the run's transaction log read back, and its media files
    (run_dir,) = glob.glob(str(tmp_path / "wandb" / "wandb" / "offline-run-*"))
    history = wandb_history(run_dir)  # WandbLogger puts the trainer's step beside W&B's _step
    for (name, step), value in want.items():
        got = [r[name] for r in history if name in r and r.get("trainer/global_step") == step]
        assert got == [pytest.approx(value, rel=1e-12)], name
    for split in ("train", "val"):
        for kind in ("gram", "trajectory"):
            key = f"nc/{split}/{kind}"
            logged = [r for r in history if r.get(f"{key}/_type") == "images/separated"]
            assert [r["trainer/global_step"] for r in logged] == [3, 6]
            (name,) = logged[-1][f"{key}/filenames"]
            with open(os.path.join(run_dir, "files", name), "rb") as f:
                _png(f.read())

    # nothing under HOME (W&B's settings, caches and logs all went to tmp_path)
    assert os.listdir(home) == [], os.listdir(home)
