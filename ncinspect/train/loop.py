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

import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import TrainConfig
from .data import Dataset, load_dataset
from .model import forward, init_params, objective_and_grads
from .optim import SGD, learning_rate

__all__ = ["fit", "History", "evaluate"]

_EVAL_ROWS = 4096  # rows per forward pass when evaluating / dumping


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
    for start in range(0, X.shape[0], _EVAL_ROWS):
        out, _ = forward(params, X[start : start + _EVAL_ROWS])
        yb = y[start : start + _EVAL_ROWS]
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


def end_epoch(hist, rec: dict, config: TrainConfig, snapshot, lr: float, callback) -> None:
    """Record one epoch: refuse a diverged loss, snapshot on schedule, tell the callback."""
    done = rec["epoch"]
    if not np.isfinite(rec["loss"]):
        from ..errors import UsageError

        raise UsageError(
            f"training diverged at epoch {done} (loss {rec['loss']}); lower the learning "
            f"rate (lr={config.lr}) or the init scale (init_scale={config.init_scale})"
        )
    if done % config.save_every == 0 or done == config.epochs:
        rec.update(snapshot(done, lr))
    hist.records.append(rec)
    if callback is not None:
        callback(rec)


def set_epoch_seconds(hist, train_seconds: float) -> None:
    """Mean seconds per trained epoch (the record of epoch 0 is not one)."""
    n_epochs = max(0, len(hist.records) - 1)
    if n_epochs:
        hist.epoch_seconds = train_seconds / n_epochs


@contextlib.contextmanager
def _defer_sigint() -> Iterator[None]:
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


def _nc1(features: np.ndarray, labels: np.ndarray) -> float | None:
    """NC1 of the penultimate features through ``ncinspect.analyze`` (None if unavailable)."""
    try:
        from ..analyze import analyze
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


def _write_split(
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
    for start in range(0, X.shape[0], _EVAL_ROWS):
        out, acts = forward(params, X[start : start + _EVAL_ROWS])  # acts: [X, a_1 .. a_{L-1}]
        snap.append(features=acts[-1].astype(features_dtype), outputs=out)
        for k, h in enumerate(hidden, start=1):
            h.append(features=acts[k].astype(features_dtype))
        chunks.append(acts[-1])
    snap.write(weights=params[-1])
    snap.write_params(list(params))
    return np.concatenate(chunks) if chunks else np.zeros((0, params[-1].shape[1]))


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
    data = load_dataset(config) if data is None else data
    dtype = np.dtype(config.dtype)
    features_dtype = np.dtype(config.features_dtype or config.dtype)

    X = np.ascontiguousarray(data.X, dtype=dtype)  # (N, d)
    X_test = np.ascontiguousarray(data.X_test, dtype=dtype)  # (N_test, d)
    N, C = X.shape[0], data.n_classes
    Y = one_hot(data.y, C, dtype)  # (N, C)
    kappa = float(config.kappa) if config.kappa is not None else 1.0 / (N * C)
    wd = float(config.weight_decay)
    hist = History(config, kappa=kappa, weight_decay=wd, n_samples=N, Lambda=wd / (kappa * N))

    widths = [data.input_dim, *config.hidden_widths(), C]
    params = init_params(
        widths, np.random.default_rng([config.seed, 1]), init_scale=config.init_scale, dtype=dtype
    )
    shuffle_rng = np.random.default_rng([config.seed, 2])
    opt = SGD(params, momentum=config.momentum)
    B = N if config.batch_size == 0 else min(config.batch_size, N)
    hist.params = params

    writer = None
    if dump is not None:
        from ..io.writer import DumpWriter

        writer = DumpWriter(dump, "w", compression=config.compression)
    run_meta = _run_meta(config, data, hist, B)
    n_test = X_test.shape[0]
    _losses = ("loss", "data_loss", "mse", "accuracy")

    def snapshot(epoch: int, lr: float) -> dict[str, Any]:
        train = evaluate(params, X, data.y, kappa=kappa, weight_decay=wd)
        test = (
            evaluate(params, X_test, data.y_test, kappa=kappa * N / n_test, weight_decay=wd)
            if n_test
            else dict.fromkeys(_losses)
        )
        rec = {
            "loss": train["loss"],
            "mse": train["mse"],
            "train_accuracy": train["accuracy"],
            "test_accuracy": test["accuracy"],
            "saved": writer is not None,
        }
        if writer is not None:
            meta = {
                **run_meta,
                "epoch": epoch,
                "learning_rate": lr,
                **{f"train_{k}": train[k] for k in _losses},
                **{f"test_{k}": test[k] for k in _losses},
            }

            def own(split: str, values: dict[str, Any]) -> dict[str, Any]:
                # the unprefixed loss keys are always the snapshot's own split's values
                return {**meta, "split": split, **{k: values[k] for k in _losses[:3]}}

            with _defer_sigint():
                H = _write_split(
                    writer, f"epoch_{epoch:04d}", params, X, features_dtype, own("train", train)
                )
                if n_test:
                    _write_split(
                        writer,
                        f"test/epoch_{epoch:04d}",
                        params,
                        X_test,
                        features_dtype,
                        own("test", test),
                    )
                hist.saved_epochs.append(epoch)
        else:
            H = forward(params, X)[1][-1]
        rec["nc1"] = _nc1(H, data.y)
        return rec

    train_seconds = 0.0
    try:
        if writer is not None:
            with _defer_sigint():
                writer.set_meta("/", **run_meta, class_names=data.class_names)
                writer.write("labels", data.y)
                if n_test:
                    writer.write("labels", data.y_test, group="test")
                    writer.set_meta("test", split="test")
        lr0 = learning_rate(
            config.schedule,
            config.lr,
            0,
            config.epochs,
            step_every=config.step_every,
            gamma=config.gamma,
            lr_min=config.lr_min,
        )
        rec0 = {"epoch": 0, "learning_rate": lr0, **snapshot(0, lr0)}
        hist.records.append(rec0)
        if callback is not None:
            callback(rec0)

        for epoch in range(config.epochs):
            lr = learning_rate(
                config.schedule,
                config.lr,
                epoch,
                config.epochs,
                step_every=config.step_every,
                gamma=config.gamma,
                lr_min=config.lr_min,
            )
            t0 = time.perf_counter()
            order = shuffle_rng.permutation(N) if B < N else None
            loss_sum, correct = 0.0, 0
            for start in range(0, N, B):
                if order is None:
                    xb, yb, labels = X, Y, data.y
                else:
                    idx = order[start : start + B]
                    xb, yb, labels = X[idx], Y[idx], data.y[idx]  # (B, d), (B, C), (B,)
                with np.errstate(over="ignore", invalid="ignore"):  # divergence: see below
                    loss, grads, out = objective_and_grads(
                        params, xb, yb, kappa=kappa, weight_decay=wd, n_total=N
                    )
                    opt.step(grads, lr)
                loss_sum += loss * xb.shape[0]
                correct += int((out.argmax(axis=1) == labels).sum())
            train_seconds += time.perf_counter() - t0
            done = epoch + 1
            rec = {
                "epoch": done,
                "learning_rate": lr,
                "loss": loss_sum / N,
                "train_accuracy": correct / N,
            }
            end_epoch(hist, rec, config, snapshot, lr, callback)
    except KeyboardInterrupt:
        hist.interrupted = True
    finally:
        if writer is not None:
            writer.close()
    set_epoch_seconds(hist, train_seconds)
    return hist
