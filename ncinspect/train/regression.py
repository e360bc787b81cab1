"""Regression training for neural regression collapse (``TrainConfig(task="regression")``).

The same bias-free ReLU network, optimiser and objective as :func:`ncinspect.train.fit`,
with t real-valued outputs and targets in place of one-hot classes:

- inputs ``x ~ N(0, I_d)`` (d = ``input_dim``), standardised on the training split;
  ``n_classes * n_per_class`` training and ``n_classes * n_test_per_class`` test rows (the
  same N as the classification defaults);
- targets ``y = g(A x / sqrt(d)) + target_offset`` with ``A`` (t, d) Gaussian
  (t = ``n_targets``) and ``g`` the identity (``target_map="linear"``) or ``tanh``
  (``"smooth"``), plus ``0.1 * noise`` Gaussian noise per entry. The offset (default 1)
  matters for a bias-free ReLU network: its features are non-negative, and with centred
  targets the non-negative offset they must carry lies outside the row space of W (it may
  not move the outputs), so nrc1/nrc2 plateau far from 0 (about 0.56 in the docs' run);
  with a nonzero target mean the offset can sit in the row space and the features collapse
  onto t dimensions;
- objective ``(kappa/2) sum_i ||y_i - f(x_i)||^2 + (lambda/2) sum_l ||W_l||_F^2`` with
  ``kappa = 1/(N t)`` unless given.

Dump layout: ``targets`` (N, t) at the root (and ``test/targets``), metadata
``task = "regression"`` and ``n_targets`` at the root, snapshots ``epoch_XXXX`` (features,
outputs, weights = W_L (t, width), params) as for classification, so ``ncinspect report``
gives nrc1-nrc3 for each.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import TrainConfig
from .model import forward, init_params, objective_and_grads
from .optim import SGD
from .run import (
    EVAL_ROWS,
    History,
    defer_sigint,
    end_epoch,
    lr_at,
    refuse_divergence,
    set_epoch_seconds,
    write_split,
)

__all__ = ["RegressionData", "regression_data", "fit_regression", "evaluate_regression"]

TARGET_MAPS = ("linear", "smooth")


@dataclass
class RegressionData:
    X: np.ndarray  # (N, d)
    Y: np.ndarray  # (N, t)
    X_test: np.ndarray
    Y_test: np.ndarray
    name: str

    @property
    def input_dim(self) -> int:
        return self.X.shape[1]

    @property
    def n_targets(self) -> int:
        return self.Y.shape[1]


def regression_data(config: TrainConfig) -> RegressionData:
    """The inputs and targets ``config`` names, drawn from the data stream ``[seed, 0]``."""
    rng = np.random.default_rng([config.seed, 0])
    d, t = int(config.input_dim), int(config.n_targets)
    n, n_test = config.n_classes * config.n_per_class, config.n_classes * config.n_test_per_class
    A = rng.standard_normal((t, d))
    X = rng.standard_normal((n, d))
    X_test = rng.standard_normal((n_test, d))
    mean, std = X.mean(axis=0), X.std(axis=0)
    std[std == 0] = 1.0
    X, X_test = (X - mean) / std, (X_test - mean) / std

    def targets(x: np.ndarray) -> np.ndarray:
        z = x @ A.T / np.sqrt(d)
        if config.target_map == "smooth":
            z = np.tanh(z)
        return z + config.target_offset + 0.1 * config.noise * rng.standard_normal(z.shape)

    Y, Y_test = targets(X), targets(X_test)
    return RegressionData(X, Y, X_test, Y_test, name=f"gaussian-{config.target_map}")


def evaluate_regression(
    params, X: np.ndarray, Y: np.ndarray, *, kappa: float, weight_decay: float
) -> dict[str, float]:
    """Exact objective, data term and ``mse = (1/(N t)) sum_i ||y_i - f(x_i)||^2``."""
    sq = 0.0
    for a in range(0, X.shape[0], EVAL_ROWS):
        out, _ = forward(params, X[a : a + EVAL_ROWS])
        r = Y[a : a + EVAL_ROWS] - out
        sq += float(np.vdot(r, r))
    reg = 0.5 * weight_decay * sum(float(np.vdot(W, W)) for W in params)
    n = max(1, X.shape[0])
    return {
        "loss": 0.5 * kappa * sq + reg,
        "data_loss": 0.5 * kappa * sq,
        "mse": sq / (n * Y.shape[1]),
    }


def _nrc1(features: np.ndarray, targets: np.ndarray) -> float | None:
    from ..analysis.regression import analyze_regression
    from ..errors import NCInspectError

    try:
        return analyze_regression(features, targets).metrics.get("nrc1")
    except NCInspectError:
        return None


def fit_regression(
    config: TrainConfig,
    data: RegressionData | None = None,
    *,
    dump: str | os.PathLike | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
):
    """Train the bias-free network on a regression task; the :class:`History` of :func:`fit`.

    Records hold ``epoch``, ``loss``, ``learning_rate`` and, at snapshots, ``mse``,
    ``test_mse`` and ``nrc1`` (through :func:`ncinspect.analyze_regression`).
    """
    run = _RegressionRun(config, regression_data(config) if data is None else data)
    if dump is not None:
        from ..io.writer import DumpWriter

        run.writer = DumpWriter(dump, "w", compression=config.compression)
    train_seconds = 0.0
    try:
        if run.writer is not None:
            run.write_header()
        lr0 = lr_at(config, 0)
        rec0 = {"epoch": 0, "learning_rate": lr0, **run.snapshot(0, lr0)}
        run.hist.records.append(rec0)
        if callback is not None:
            callback(rec0)
        for epoch in range(config.epochs):
            lr = lr_at(config, epoch)
            t0 = time.perf_counter()
            loss_sum = run.train_epoch(lr)
            train_seconds += time.perf_counter() - t0
            rec = {"epoch": epoch + 1, "learning_rate": lr, "loss": loss_sum / run.N}
            end_epoch(run.hist, rec, config, run.snapshot, lr, callback)
    except KeyboardInterrupt:  # held until a snapshot is written whole (defer_sigint)
        run.hist.interrupted = True
    except BaseException:
        if run.writer is not None:  # a snapshot an error stopped in stays marked in progress
            run.writer.close(finish=False)
        raise
    finally:
        if run.writer is not None:
            run.writer.close()
    set_epoch_seconds(run.hist, train_seconds)
    return run.hist


class _RegressionRun:
    """The state of one regression run: arrays, parameters, optimiser, dump writer."""

    def __init__(self, config: TrainConfig, data: RegressionData):
        self.config, self.data, self.writer = config, data, None
        dtype = np.dtype(config.dtype)
        self.features_dtype = np.dtype(config.features_dtype or config.dtype)
        self.X = X = np.ascontiguousarray(data.X, dtype=dtype)
        self.Y = Y = np.ascontiguousarray(data.Y, dtype=dtype)
        self.X_test = np.ascontiguousarray(data.X_test, dtype=dtype)
        self.Y_test = np.ascontiguousarray(data.Y_test, dtype=dtype)
        N, t = X.shape[0], Y.shape[1]
        self.N = N
        self.kappa = kappa = float(config.kappa) if config.kappa is not None else 1.0 / (N * t)
        self.wd = wd = float(config.weight_decay)
        self.hist = hist = History(
            config, kappa=kappa, weight_decay=wd, n_samples=N, Lambda=wd / (kappa * N)
        )
        self.params = init_params(
            [data.input_dim, *config.hidden_widths(), t],
            np.random.default_rng([config.seed, 1]),
            init_scale=config.init_scale,
            dtype=dtype,
        )
        hist.params = self.params
        self.shuffle_rng = np.random.default_rng([config.seed, 2])
        self.opt = SGD(self.params, momentum=config.momentum)
        self.B = B = N if config.batch_size == 0 else min(config.batch_size, N)
        self.n_test = n_test = self.X_test.shape[0]
        self.run_meta = _run_meta(config, data, hist, t=t, N=N, n_test=n_test, B=B)

    def write_header(self) -> None:
        """Root settings and the targets of each split."""
        w = self.writer
        with defer_sigint():
            w.set_meta("/", **self.run_meta)
            w.write("targets", self.Y)
            if self.n_test:
                w.write("targets", self.Y_test, group="test")
                w.set_meta("test", split="test")

    def train_epoch(self, lr: float) -> float:
        """One pass of minibatch SGD; the summed minibatch objective."""
        N, B = self.N, self.B
        order = self.shuffle_rng.permutation(N) if B < N else None
        loss_sum = 0.0
        for start in range(0, N, B):
            idx = slice(None) if order is None else order[start : start + B]
            xb, yb = self.X[idx], self.Y[idx]
            with np.errstate(over="ignore", invalid="ignore"):
                loss, grads, _ = objective_and_grads(
                    self.params, xb, yb, kappa=self.kappa, weight_decay=self.wd, n_total=N
                )
                self.opt.step(grads, lr)
            loss_sum += loss * xb.shape[0]
        return loss_sum

    def snapshot(self, epoch: int, lr: float) -> dict[str, Any]:
        """Evaluate both splits; write their snapshots when dumping; the record's fields."""
        params, kappa, wd, N, n_test = self.params, self.kappa, self.wd, self.N, self.n_test
        train = evaluate_regression(params, self.X, self.Y, kappa=kappa, weight_decay=wd)
        refuse_divergence(train["loss"], epoch, self.config)  # before anything is written
        test = (
            evaluate_regression(
                params, self.X_test, self.Y_test, kappa=kappa * N / n_test, weight_decay=wd
            )
            if n_test
            else dict.fromkeys(train)
        )
        rec = {"loss": train["loss"], "mse": train["mse"], "test_mse": test["mse"]}
        rec["saved"] = self.writer is not None
        if self.writer is not None:
            H = self._write(epoch, lr, train, test)
        else:
            H = forward(params, self.X)[1][-1]
        rec["nrc1"] = _nrc1(H, self.Y)
        return rec

    def _write(self, epoch: int, lr: float, train: dict, test: dict) -> np.ndarray:
        meta = {
            **self.run_meta,
            "epoch": epoch,
            "learning_rate": lr,
            **{f"train_{k}": v for k, v in train.items()},
            **{f"test_{k}": v for k, v in test.items()},
        }
        w, params, fd = self.writer, self.params, self.features_dtype
        with defer_sigint():
            train_meta = {**meta, "split": "train", **train}
            H = write_split(w, f"epoch_{epoch:04d}", params, self.X, fd, train_meta)
            if self.n_test:
                test_meta = {**meta, "split": "test", **test}
                write_split(w, f"test/epoch_{epoch:04d}", params, self.X_test, fd, test_meta)
            self.hist.saved_epochs.append(epoch)
        return H


def _run_meta(config: TrainConfig, data, hist, *, t: int, N: int, n_test: int, B: int) -> dict:
    """Settings recorded at the root of the dump and on every snapshot."""
    wd, kappa = hist.weight_decay, hist.kappa
    return {
        "trainer": "ncinspect.train",
        "task": "regression",
        "loss_type": "square",
        "dataset": data.name,
        "n_targets": int(t),
        "target_map": config.target_map,
        "target_offset": float(config.target_offset),
        "input_dim": int(data.input_dim),
        "n_samples": int(N),
        "n_test_samples": int(n_test),
        "weight_decay": wd,
        "kappa": kappa,
        "Lambda": float(hist.Lambda),
        "depth": int(config.depth),
        "widths": [int(w) for w in config.hidden_widths()],
        "init_scale": float(config.init_scale),
        "momentum": float(config.momentum),
        "batch_size": int(B),
        "full_batch": bool(B >= N),
        "epochs": int(config.epochs),
        "lr": float(config.lr),
        "schedule": config.schedule,
        "dtype": config.dtype,
        "seed": int(config.seed),
    }
