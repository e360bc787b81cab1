"""Data sets for the trainer: Gaussian classes, mnist1d (optional extra) and user files.

Every loader returns a :class:`Dataset` with standardised inputs (zero mean and unit variance
per input dimension, estimated on the training split) and integer labels 0..C-1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidDataError, MissingArrayError, UnreadableFileError, UsageError

__all__ = ["Dataset", "gaussian", "mnist1d", "from_file", "load_dataset"]


@dataclass
class Dataset:
    """Train and test inputs (rows are samples) with integer labels 0..C-1."""

    X: np.ndarray  # (N, d)
    y: np.ndarray  # (N,) int64
    X_test: np.ndarray  # (N_test, d)
    y_test: np.ndarray  # (N_test,)
    name: str
    class_names: list[str] | None = None

    @property
    def n_classes(self) -> int:
        return int(max(self.y.max(), self.y_test.max() if self.y_test.size else 0)) + 1

    @property
    def input_dim(self) -> int:
        return self.X.shape[1]


def _standardise(X: np.ndarray, X_test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std == 0] = 1.0
    return (X - mean) / std, (X_test - mean) / std


def gaussian(
    rng: np.random.Generator,
    *,
    n_classes: int = 10,
    n_per_class: int = 100,
    n_test_per_class: int = 100,
    input_dim: int = 32,
    separation: float = 1.0,
    noise: float = 1.0,
) -> Dataset:
    """Balanced Gaussian classes: ``x = separation * m_c + noise * z`` with ``z ~ N(0, I_d)``.

    The class centres ``m_c`` are independent ``N(0, I_d)`` vectors, so ``separation / noise``
    is the signal-to-noise ratio per input dimension. Samples are ordered by class.
    """
    centres = rng.standard_normal((n_classes, input_dim))  # (C, d)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(n_classes), n)  # (C n,)
        X = separation * centres[y] + noise * rng.standard_normal((y.size, input_dim))
        return X, y

    X, y = draw(n_per_class)
    X_test, y_test = draw(n_test_per_class)
    X, X_test = _standardise(X, X_test)
    return Dataset(X, y, X_test, y_test, name="gaussian")


def mnist1d(seed: int = 42, *, n_samples: int = 5000) -> Dataset:
    """The mnist1d data set (10 classes, 40-dimensional signals) from its procedural generator.

    Needs the optional extra ``mnist1d`` (``pip install ncinspect[mnist1d]``). The data are
    generated offline (``mnist1d.data.make_dataset``); nothing is downloaded. ``n_samples``
    are split 80/20 into train and test.
    """
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise UsageError(
            "dataset 'mnist1d' needs the optional package mnist1d "
            "(pip install 'ncinspect[mnist1d]')"
        ) from None
    args = get_dataset_args()
    args.num_samples = int(n_samples)
    args.seed = int(seed)
    d = make_dataset(args)
    X, X_test = _standardise(np.asarray(d["x"], float), np.asarray(d["x_test"], float))
    return Dataset(
        X, np.asarray(d["y"], np.int64), X_test, np.asarray(d["y_test"], np.int64), name="mnist1d"
    )


def from_file(
    path: str | os.PathLike, rng: np.random.Generator, *, test_fraction: float = 0.2
) -> Dataset:
    """A user's NPZ or HDF5 file with ``X`` (N, d), ``y`` (N,) and optional ``X_test``, ``y_test``.

    Without a test split, a random ``test_fraction`` of the samples is held out. Labels may be
    any integers or strings; they are mapped to 0..C-1 in sorted order.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UnreadableFileError(
            f"{path}: no such file (expected 'gaussian', 'mnist1d' or a file)"
        )
    arrays: dict[str, np.ndarray] = {}
    with open(path, "rb") as fh:
        magic = fh.read(8)
    try:
        if magic.startswith(b"PK"):
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("X", "y", "X_test", "y_test") if k in z.files}
        elif magic == b"\x89HDF\r\n\x1a\n":
            import h5py

            with h5py.File(path, "r") as f:
                arrays = {k: f[k][()] for k in ("X", "y", "X_test", "y_test") if k in f}
        else:
            raise UnreadableFileError(f"{path}: not an NPZ or HDF5 file")
    except (OSError, ValueError) as exc:
        raise UnreadableFileError(f"{path}: cannot read ({exc})") from None
    for key in ("X", "y"):
        if key not in arrays:
            raise MissingArrayError(f"{path}: no array {key!r} (found {sorted(arrays)})")
    X = np.asarray(arrays["X"], dtype=float).reshape(len(arrays["X"]), -1)
    y = np.asarray(arrays["y"])
    if y.shape != (X.shape[0],):
        raise InvalidDataError(f"{path}: y has shape {y.shape}, expected ({X.shape[0]},)")
    if "X_test" in arrays and "y_test" in arrays:
        X_test = np.asarray(arrays["X_test"], dtype=float).reshape(len(arrays["X_test"]), -1)
        y_test = np.asarray(arrays["y_test"])
    else:
        perm = rng.permutation(X.shape[0])
        n_test = int(round(test_fraction * X.shape[0]))
        X, y, X_test, y_test = (
            X[perm[n_test:]],
            y[perm[n_test:]],
            X[perm[:n_test]],
            y[perm[:n_test]],
        )
    if not (np.isfinite(X).all() and np.isfinite(X_test).all()):
        raise InvalidDataError(f"{path}: X or X_test contains NaN or Inf")
    classes, y_idx = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise InvalidDataError(f"{path}: y has {classes.size} class; need at least 2")
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    try:
        y_test_idx = np.array([lookup[c] for c in y_test.tolist()], dtype=np.int64)
    except KeyError as exc:
        raise InvalidDataError(f"{path}: y_test has label {exc} that y does not have") from None
    X, X_test = _standardise(X, X_test)
    return Dataset(
        X,
        y_idx.astype(np.int64),
        X_test,
        y_test_idx,
        name=os.path.basename(path),
        class_names=[str(c) for c in classes.tolist()],
    )


def load_dataset(config) -> Dataset:
    """The data set a :class:`~ncinspect.train.TrainConfig` names, generated from its seed."""
    rng = np.random.default_rng([config.seed, 0])  # data stream, independent of init/shuffling
    if config.dataset == "gaussian":
        return gaussian(
            rng,
            n_classes=config.n_classes,
            n_per_class=config.n_per_class,
            n_test_per_class=config.n_test_per_class,
            input_dim=config.input_dim,
            separation=config.separation,
            noise=config.noise,
        )
    if config.dataset == "mnist1d":
        return mnist1d(config.seed, n_samples=config.mnist1d_samples)
    return from_file(config.dataset, rng)
