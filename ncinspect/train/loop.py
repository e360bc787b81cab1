"""The training loop: ``fit(config, data) -> History``, writing snapshots to a dump as it goes.

Dump layout (spec/dump-format.md)::

    labels                      train labels (inherited by every train snapshot)
    epoch_XXXX/                 train split, penultimate layer: features, outputs, weights = W_L,
                                params/W1..WL; metadata epoch, split, loss, accuracies, lr, ...
    epoch_XXXX/layer_k/         features after hidden layer k = 1 .. L-2 (metadata layer)
    test/labels
    test/epoch_XXXX/...         the same for the held-out split (split = "test"; absent when
                                the data have no test rows)

Loss metadata: ``loss_type`` is ``"square"`` (the kind of loss, for loss-aware reports);
``loss``, ``data_loss`` and ``mse`` are the snapshot's own split's values;
``train_loss``, ``train_data_loss``, ``train_mse``, ``train_accuracy`` and the same with
``test_`` are on every snapshot (test values None when there is no test split). The test
split's objective weights its data term by ``kappa N / N_test``: the training objective with the
test rows in place of the training rows.

Root attributes hold the run's settings (weight_decay, kappa, n_samples, Lambda, depth, ...),
and each snapshot repeats the ones the theory checks need.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .config import TrainConfig
from .data import Dataset, load_dataset
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

__all__ = ["fit", "History", "evaluate", "one_hot"]

_LOSSES = ("loss", "data_loss", "mse", "accuracy")


def one_hot(y: np.ndarray, n_classes: int, dtype: np.dtype | str = np.float64) -> np.ndarray:
    """(N,) integer labels -> (N, C) one-hot targets."""
    Y = np.zeros((y.shape[0], n_classes), dtype=dtype)
    Y[np.arange(y.shape[0]), y] = 1
    return Y


def evaluate(
    params: Sequence[np.ndarray], X: np.ndarray, y: np.ndarray, *, kappa: float, weight_decay: float
) -> dict[str, float]:
    """Exact full objective, data term, mse and accuracy of ``params`` on ``(X, y)``.

    ``loss = (kappa/2) sum_i ||y_i - f(x_i)||^2 + (lambda/2) sum_l ||W_l||_F^2``;
    ``mse = (1/(N C)) sum_i ||y_i - f(x_i)||^2``.
    """
    sq, correct = 0.0, 0
    C = params[-1].shape[0]
    for start in range(0, X.shape[0], EVAL_ROWS):
        out, _ = forward(params, X[start : start + EVAL_ROWS])
        yb = y[start : start + EVAL_ROWS]
        R = one_hot(yb, C, out.dtype) - out
        sq += float(np.vdot(R, R))
        correct += int((out.argmax(axis=1) == yb).sum())
    reg = 0.5 * weight_decay * sum(float(np.vdot(W, W)) for W in params)
    n = max(1, X.shape[0])
    return {
        "loss": 0.5 * kappa * sq + reg,
        "data_loss": 0.5 * kappa * sq,
        "mse": sq / (n * C),
        "accuracy": correct / n,
    }


def _nc1(features: np.ndarray, labels: np.ndarray) -> float | None:
    """NC1 of the penultimate features through ``ncinspect.analyze`` (None if unavailable)."""
    try:
        from ..analysis.api import analyze
    except ImportError:
        return None
    from ..errors import NCInspectError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = analyze(features, labels).metrics.get("nc1")
    except NCInspectError:
        return None
    return None if value is None else float(value)


def _run_meta(config: TrainConfig, data: Dataset, hist: History, batch: int) -> dict[str, Any]:
    """Settings recorded at the root of the dump and on every snapshot.

    ``batch_size`` is the minibatch size actually used, ``min(config.batch_size, N)`` (N for
    full-batch gradient descent, ``config.batch_size == 0``); ``full_batch`` says which.
    """
    return {
        "trainer": "ncinspect.train",
        "loss_type": "square",  # the kind of loss; ``loss`` holds the objective's value
        "dataset": data.name,
        "n_classes": int(data.n_classes),
        "input_dim": int(data.input_dim),
        "n_samples": int(hist.n_samples),
        "n_test_samples": int(data.X_test.shape[0]),
        "weight_decay": float(hist.weight_decay),
        "kappa": float(hist.kappa),
        "Lambda": float(hist.Lambda),
        "depth": int(config.depth),
        "widths": [int(w) for w in config.hidden_widths()],
        "init_scale": float(config.init_scale),
        "momentum": float(config.momentum),
        "batch_size": int(batch),
        "full_batch": bool(batch >= hist.n_samples),
        "epochs": int(config.epochs),
        "lr": float(config.lr),
        "schedule": config.schedule,
        "dtype": config.dtype,
        "seed": int(config.seed),
    }


def fit(
    config: TrainConfig | None = None,
    data: Dataset | None = None,
    *,
    dump: str | os.PathLike | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> History:
    """Train a bias-free ReLU network with square loss and weight decay; optionally write a dump.

    Parameters
    ----------
    config : TrainConfig, optional
        The settings (defaults: ``TrainConfig()``).
    data : Dataset, optional
        Train and test data; by default the one ``config`` names (``load_dataset(config)``).
    dump : path, optional, keyword-only
        HDF5 file to (over)write with a snapshot at epoch 0, every ``config.save_every``
        epochs and at the last epoch.
    callback : callable, optional, keyword-only
        Called with each epoch's record (for progress bars).

    Returns
    -------
    History
        Per-epoch records, final parameters and the objective's constants.

    Notes
    -----
    Minimises ``(kappa/2) sum_i ||y_i - f(x_i)||^2 + (lambda/2) sum_l ||W_l||_F^2`` with
    one-hot targets, ``kappa = 1/(N C)`` by default, by minibatch SGD with momentum (full-batch
    gradient descent when ``batch_size`` is 0). Randomness comes from three generators seeded
    by ``config.seed``: data ``[seed, 0]``, initialisation ``[seed, 1]``, shuffling
    ``[seed, 2]``. Ctrl-C stops training cleanly: the returned history has
    ``interrupted=True`` and the dump holds every snapshot completed so far.
    """
    config = TrainConfig() if config is None else config
    config.validate()
    if config.task == "regression":  # t real outputs instead of one-hot classes
        from .regression import RegressionData, fit_regression

        reg = data if isinstance(data, RegressionData) else None
        return fit_regression(config, reg, dump=dump, callback=callback)
    run = _Run(config, load_dataset(config) if data is None else data)
    writer = None
    if dump is not None:
        from ..io.writer import DumpWriter

        writer = DumpWriter(dump, "w", compression=config.compression)
    run.writer = writer
    train_seconds = 0.0
    try:
        if writer is not None:
            run.write_header()
        lr0 = lr_at(config, 0)
        rec0 = {"epoch": 0, "learning_rate": lr0, **run.snapshot(0, lr0)}
        run.hist.records.append(rec0)
        if callback is not None:
            callback(rec0)
        for epoch in range(config.epochs):
            lr = lr_at(config, epoch)
            t0 = time.perf_counter()
            loss_sum, correct = run.train_epoch(lr)
            train_seconds += time.perf_counter() - t0
            rec = {
                "epoch": epoch + 1,
                "learning_rate": lr,
                "loss": loss_sum / run.N,
                "train_accuracy": correct / run.N,
            }
            end_epoch(run.hist, rec, config, run.snapshot, lr, callback)
    except KeyboardInterrupt:  # held until a snapshot is written whole (defer_sigint)
        run.hist.interrupted = True
    except BaseException:
        if writer is not None:  # a snapshot an error stopped in stays marked in progress
            writer.close(finish=False)
        raise
    finally:
        if writer is not None:
            writer.close()
    set_epoch_seconds(run.hist, train_seconds)
    return run.hist


class _Run:
    """The state of one classification run: arrays, parameters, optimiser, dump writer."""

    def __init__(self, config: TrainConfig, data: Dataset):
        self.config, self.data, self.writer = config, data, None
        dtype = np.dtype(config.dtype)
        self.features_dtype = np.dtype(config.features_dtype or config.dtype)
        self.X = np.ascontiguousarray(data.X, dtype=dtype)  # (N, d)
        self.X_test = np.ascontiguousarray(data.X_test, dtype=dtype)  # (N_test, d)
        N, C = self.X.shape[0], data.n_classes
        self.N, self.n_test = N, self.X_test.shape[0]
        self.Y = one_hot(data.y, C, dtype)  # (N, C)
        self.kappa = kappa = float(config.kappa) if config.kappa is not None else 1.0 / (N * C)
        self.wd = wd = float(config.weight_decay)
        self.hist = History(
            config, kappa=kappa, weight_decay=wd, n_samples=N, Lambda=wd / (kappa * N)
        )
        widths = [data.input_dim, *config.hidden_widths(), C]
        rng = np.random.default_rng([config.seed, 1])
        self.params = init_params(widths, rng, init_scale=config.init_scale, dtype=dtype)
        self.shuffle_rng = np.random.default_rng([config.seed, 2])
        self.opt = SGD(self.params, momentum=config.momentum)
        self.B = N if config.batch_size == 0 else min(config.batch_size, N)
        self.hist.params = self.params
        self.run_meta = _run_meta(config, data, self.hist, self.B)

    def write_header(self) -> None:
        """Root settings, class names and the labels of each split."""
        w, data = self.writer, self.data
        with defer_sigint():
            w.set_meta("/", **self.run_meta, class_names=data.class_names)
            w.write("labels", data.y)
            if self.n_test:
                w.write("labels", data.y_test, group="test")
                w.set_meta("test", split="test")

    def train_epoch(self, lr: float) -> tuple[float, int]:
        """One pass of minibatch SGD; the summed minibatch objective and correct count."""
        X, Y, y, N, B = self.X, self.Y, self.data.y, self.N, self.B
        order = self.shuffle_rng.permutation(N) if B < N else None
        loss_sum, correct = 0.0, 0
        for start in range(0, N, B):
            if order is None:
                xb, yb, labels = X, Y, y
            else:
                idx = order[start : start + B]
                xb, yb, labels = X[idx], Y[idx], y[idx]  # (B, d), (B, C), (B,)
            with np.errstate(over="ignore", invalid="ignore"):  # divergence: end_epoch says
                loss, grads, out = objective_and_grads(
                    self.params, xb, yb, kappa=self.kappa, weight_decay=self.wd, n_total=N
                )
                self.opt.step(grads, lr)
            loss_sum += loss * xb.shape[0]
            correct += int((out.argmax(axis=1) == labels).sum())
        return loss_sum, correct

    def snapshot(self, epoch: int, lr: float) -> dict[str, Any]:
        """Evaluate both splits; write their snapshots when dumping; the record's fields."""
        params, data, wd = self.params, self.data, self.wd
        train = evaluate(params, self.X, data.y, kappa=self.kappa, weight_decay=wd)
        refuse_divergence(train["loss"], epoch, self.config)  # before anything is written
        test = (
            evaluate(
                params,
                self.X_test,
                data.y_test,
                kappa=self.kappa * self.N / self.n_test,
                weight_decay=wd,
            )
            if self.n_test
            else dict.fromkeys(_LOSSES)
        )
        rec = {
            "loss": train["loss"],
            "mse": train["mse"],
            "train_accuracy": train["accuracy"],
            "test_accuracy": test["accuracy"],
            "saved": self.writer is not None,
        }
        if self.writer is not None:
            H = self._write(epoch, lr, train, test)
        else:
            H = forward(params, self.X)[1][-1]
        rec["nc1"] = _nc1(H, data.y)
        return rec

    def _write(self, epoch: int, lr: float, train: dict, test: dict) -> np.ndarray:
        meta = {
            **self.run_meta,
            "epoch": epoch,
            "learning_rate": lr,
            **{f"train_{k}": train[k] for k in _LOSSES},
            **{f"test_{k}": test[k] for k in _LOSSES},
        }

        def own(split: str, values: dict[str, Any]) -> dict[str, Any]:
            # the unprefixed loss keys are always the snapshot's own split's values
            return {**meta, "split": split, **{k: values[k] for k in _LOSSES[:3]}}

        w, params, fd = self.writer, self.params, self.features_dtype
        with defer_sigint():
            H = write_split(w, f"epoch_{epoch:04d}", params, self.X, fd, own("train", train))
            if self.n_test:
                prefix = f"test/epoch_{epoch:04d}"
                write_split(w, prefix, params, self.X_test, fd, own("test", test))
            self.hist.saved_epochs.append(epoch)
        return H
