"""What the classification and regression loops share: the :class:`History` they return,
the end-of-epoch record, the learning rate of an epoch, Ctrl-C held during a snapshot, and
writing one split's snapshot."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import TrainConfig
from .model import forward
from .optim import learning_rate

__all__ = [
    "EVAL_ROWS",
    "History",
    "end_epoch",
    "set_epoch_seconds",
    "defer_sigint",
    "write_split",
    "lr_at",
]

EVAL_ROWS = 4096  # rows per forward pass when evaluating / dumping


@dataclass
class History:
    """What :func:`fit` returns.

    Attributes
    ----------
    config : TrainConfig
    records : list of dict
        One per epoch (epoch 0 = initialisation): ``epoch``, ``loss`` (mean of the minibatch
        objectives of the epoch; exact full objective at epoch 0 and at snapshots),
        ``train_accuracy`` and ``learning_rate``; snapshot epochs add ``test_accuracy``
        (None without test rows), ``mse``, ``nc1`` (None where ``ncinspect.analyze`` is
        unavailable) and ``saved``.
    params : list of ndarray
        The final ``[W_1, ..., W_L]``.
    kappa, weight_decay, n_samples, Lambda : float, float, int, float
        The objective's constants; ``Lambda = weight_decay / (kappa * n_samples)``.
    interrupted : bool
        True when Ctrl-C stopped training; the dump then holds the snapshots written so far.
    epoch_seconds : float
        Mean wall time of a training epoch (excluding snapshots); NaN when no epoch ran.
    """

    config: TrainConfig
    kappa: float
    weight_decay: float
    n_samples: int
    Lambda: float
    records: list[dict[str, Any]] = field(default_factory=list)
    params: list[np.ndarray] = field(default_factory=list)
    saved_epochs: list[int] = field(default_factory=list)
    interrupted: bool = False
    epoch_seconds: float = float("nan")

    def last(self, key: str) -> Any:
        """The most recent non-None value of ``key`` in the records (None if never set)."""
        for rec in reversed(self.records):
            if rec.get(key) is not None:
                return rec[key]
        return None


def end_epoch(hist, rec: dict, config: TrainConfig, snapshot, lr: float, callback) -> None:
    """Record one epoch: refuse a diverged loss, snapshot on schedule, tell the callback."""
    done = rec["epoch"]
    refuse_divergence(rec["loss"], done, config)
    if done % config.save_every == 0 or done == config.epochs:
        rec.update(snapshot(done, lr))
    hist.records.append(rec)
    if callback is not None:
        callback(rec)


def refuse_divergence(loss: float, epoch: int, config: TrainConfig) -> None:
    """A usage error when ``loss`` (of ``epoch``) is not finite: the run diverged. Called on
    each epoch's training loss and on a snapshot's loss before it is written, so the last
    step of a run cannot leave a snapshot of non-finite values marked complete."""
    if not np.isfinite(loss):
        from ..errors import UsageError

        raise UsageError(
            f"training diverged at epoch {epoch} (loss {loss}); lower the learning "
            f"rate (lr={config.lr}) or the init scale (init_scale={config.init_scale})"
        )


def set_epoch_seconds(hist, train_seconds: float) -> None:
    """Mean seconds per trained epoch (the record of epoch 0 is not one)."""
    n_epochs = max(0, len(hist.records) - 1)
    if n_epochs:
        hist.epoch_seconds = train_seconds / n_epochs


@contextlib.contextmanager
def defer_sigint() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so a snapshot is never left half written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


def lr_at(config: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based) under the config's schedule."""
    return learning_rate(
        config.schedule,
        config.lr,
        epoch,
        config.epochs,
        step_every=config.step_every,
        gamma=config.gamma,
        lr_min=config.lr_min,
    )


def write_split(
    writer,
    prefix: str,
    params: Sequence[np.ndarray],
    X: np.ndarray,
    features_dtype: np.dtype,
    meta: dict[str, Any],
) -> np.ndarray:
    """Write one split's snapshot (penultimate + hidden layers); return its penultimate features."""
    L = len(params)
    snap = writer.snapshot(prefix, **meta)
    hidden = [writer.snapshot(f"{prefix}/layer_{k}", layer=f"layer_{k}") for k in range(1, L - 1)]
    chunks = []
    for start in range(0, X.shape[0], EVAL_ROWS):
        out, acts = forward(params, X[start : start + EVAL_ROWS])  # acts: [X, a_1 .. a_{L-1}]
        snap.append(features=acts[-1].astype(features_dtype), outputs=out)
        for k, h in enumerate(hidden, start=1):
            h.append(features=acts[k].astype(features_dtype))
        chunks.append(acts[-1])
    snap.write(weights=params[-1])
    snap.write_params(list(params))
    for done in (*hidden, snap):  # marked complete last, after everything is flushed
        done.finish()
    return np.concatenate(chunks) if chunks else np.zeros((0, params[-1].shape[1]))
