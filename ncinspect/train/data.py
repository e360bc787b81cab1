"""Data sets for the trainer: Gaussian classes, mnist1d (optional extra) and user files.

Every loader returns a :class:`Dataset` with standardised inputs (zero mean and unit variance
per input dimension, estimated on the training split) and integer labels 0..C-1.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from ..errors import (
    InvalidDataError,
    MissingArrayError,
    ShapeMismatchError,
    UnreadableFileError,
    UnsupportedDtypeError,
    UsageError,
)

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


_KEYS = ("X", "y", "X_test", "y_test")


def _why(exc: BaseException) -> str:
    """The first line of an exception's message (messages stay one line)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


#: the most bytes one array of a data file (X, y, X_test, y_test) may declare: it is read
#: whole, so a small file declaring a huge (compressed) array is refused before any read
MAX_DATA_BYTES = 4 << 30


def _too_big(path: str, key: str, nbytes: int) -> None:
    if nbytes > MAX_DATA_BYTES:
        raise InvalidDataError(
            f"{path}: array {key!r} declares {nbytes / 2**20:.0f} MiB, more than the "
            f"{MAX_DATA_BYTES >> 20} MiB a training data array may take (it is read whole)"
        )


def _chunk_too_big(path: str, key: str, ds) -> None:
    """Refuse an HDF5 dataset one of whose chunks decompresses to more than the array itself
    and the default chunk bound (256 MiB): HDF5 inflates a whole chunk for any read, so a
    40 x 8 array declaring one 1 GiB gzip chunk (1 MB on disk) took 1 GiB to read. The dump
    readers refuse it the same way (:func:`ncinspect.budget.chunk_bound`)."""
    import math

    from ..budget import chunk_bound, fmt_bytes

    if not ds.chunks:
        return
    chunk_bytes = math.prod(ds.chunks) * ds.dtype.itemsize
    declared = ds.size * ds.dtype.itemsize
    if chunk_bytes > max(chunk_bound(None), declared):
        raise InvalidDataError(
            f"{path}: array {key!r} is stored in HDF5 chunks {tuple(ds.chunks)} of "
            f"{fmt_bytes(chunk_bytes)} each decompressed, more than the array "
            f"({fmt_bytes(declared)}) and the {fmt_bytes(chunk_bound(None))} one chunk may "
            "take; rewrite the file with smaller chunks"
        )


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    """The arrays X, y, X_test, y_test that ``path`` holds (NPZ or HDF5), read without pickle.

    Pickles and PyTorch saves are refused saying so; HDF5 external links, external storage
    and virtual datasets (values from other files) are refused, as the dump readers refuse
    them; an array declaring more than :data:`MAX_DATA_BYTES` is refused before it is read."""
    from ..io.detect import refuse_pickle

    refuse_pickle(path)
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic.startswith(b"PK"):
        import zipfile

        if not zipfile.is_zipfile(path):
            raise UnreadableFileError(f"{path}: not a readable NPZ file (corrupt or truncated zip)")
        arrays, key = {}, None
        try:
            with zipfile.ZipFile(path) as zf:
                seen: dict[str, str] = {}
                stems = [n[:-4] if n.endswith(".npy") else n for n in zf.namelist()]
                _refuse_lookalike_keys(path, stems)
                for info in zf.infolist():
                    name = info.filename  # numpy's key: the name without a .npy suffix
                    stem = name[:-4] if name.endswith(".npy") else name
                    if stem not in _KEYS:
                        continue
                    if stem in seen:  # X.npy and X: np.load picks one silently
                        raise InvalidDataError(
                            f"{path}: members {seen[stem]!r} and {name!r} are both array "
                            f"{stem!r}; ncinspect does not pick one"
                        )
                    seen[stem] = name
                    _too_big(path, stem, info.file_size)
            with np.load(path, allow_pickle=False) as z:
                for key in (k for k in _KEYS if k in z.files):
                    arrays[key] = z[key]
        except ValueError as exc:
            if "pickle" in str(exc):  # object arrays: never unpickled
                raise UnsupportedDtypeError(
                    f"{path}: array {key!r} has dtype object (needs pickle, which ncinspect "
                    "never loads); save numbers, or strings for labels"
                ) from None
            raise UnreadableFileError(f"{path}: not a readable NPZ file ({_why(exc)})") from None
        except (OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
            where = f" (array {key!r})" if key else ""
            raise UnreadableFileError(
                f"{path}: not a readable NPZ file{where} ({_why(exc)})"
            ) from None
        return arrays
    if magic == b"\x89HDF\r\n\x1a\n":
        import h5py

        from ..io.h5file import h5_file

        arrays = {}
        try:
            with h5_file(path) as f:
                _refuse_lookalike_keys(path, list(f))
                for k in _KEYS:
                    if k not in f:
                        continue
                    if isinstance(f.get(k, getlink=True), h5py.ExternalLink):
                        raise InvalidDataError(
                            f"{path}: {k!r} is an HDF5 external link (its values would come "
                            "from another file); copy the array into the file"
                        )
                    if not isinstance(f[k], h5py.Dataset):
                        raise InvalidDataError(
                            f"{path}: {k!r} is an HDF5 {type(f[k]).__name__.lower()}, "
                            "expected a dataset (array)"
                        )
                    ds = f[k]
                    if ds.external or ds.is_virtual:
                        raise InvalidDataError(
                            f"{path}: {k!r} has external storage or is a virtual dataset "
                            "(its values would come from other files); copy it into the file"
                        )
                    _too_big(path, k, ds.size * ds.dtype.itemsize)
                    _chunk_too_big(path, k, ds)
                    arrays[k] = ds[()]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UnreadableFileError(f"{path}: not a readable HDF5 file ({_why(exc)})") from None
        return arrays
    raise UnreadableFileError(f"{path}: not an NPZ or HDF5 file (expected X, y arrays)")


def _refuse_lookalike_keys(path: str, names: list[str]) -> None:
    """Refuse a file whose array names include one that looks like ``X``, ``y``, ``X_test``
    or ``y_test`` without being it (a zero-width space, a BOM, blanks around it, another
    Unicode composition), beside it or instead of it: every listing shows the two alike, so
    the data read would not be the data the user sees (the dump readers' rule,
    :func:`~ncinspect.io.tree.refuse_lookalikes`)."""
    from ..io.class_names import shown_key
    from ..io.paths import MAX_SHOWN
    from ..io.tree import lookalike_of, refuse_lookalikes
    from ..text import elide

    refuse_lookalikes([n for n in names if shown_key(n) in _KEYS], path)
    for key in _KEYS:
        other = lookalike_of(key, names)
        if other is not None and key not in names:
            raise InvalidDataError(
                f"{path}: the array {ascii(elide(other, MAX_SHOWN))} looks like {key!r} but "
                "is not (it differs in invisible characters, blanks around it or Unicode "
                f"normalisation); name it {key!r}"
            )


def _features(path: str, name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` as a 2-D float array (N, d): 1-D is refused, >2-D is flattened per row."""
    if arr.ndim < 2:
        raise ShapeMismatchError(
            f"{path}: {name} has shape {arr.shape}, expected (N, d) with one row per sample"
        )
    if arr.dtype.kind not in "biuf":
        raise InvalidDataError(f"{path}: {name} has dtype {arr.dtype}, expected numbers")
    return np.asarray(arr, dtype=float).reshape(arr.shape[0], -1)


def _labels(path: str, name: str, arr: np.ndarray, n: int, of: str) -> np.ndarray:
    if arr.shape != (n,):
        raise ShapeMismatchError(
            f"{path}: {name} has shape {arr.shape}, expected ({n},) (one label per row of {of})"
        )
    if arr.dtype.kind == "f" and not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise InvalidDataError(f"{path}: {name} has fractional, NaN or Inf labels")
    if arr.dtype.kind not in "biufSU":
        raise InvalidDataError(
            f"{path}: {name} has dtype {arr.dtype}, expected integers or strings"
        )
    return arr


def _check_finite(path: str, name: str, arr: np.ndarray) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise InvalidDataError(f"{path}: {name} contains NaN or Inf (first in row {row})")


def from_file(
    path: str | os.PathLike, rng: np.random.Generator, *, test_fraction: float = 0.2
) -> Dataset:
    """A user's NPZ or HDF5 file with ``X`` (N, d), ``y`` (N,) and optional ``X_test``, ``y_test``.

    Without a test split, a random ``test_fraction`` of the samples is held out. Labels may be
    any integers or strings; they are mapped to 0..C-1 in sorted order. ``X`` (and ``X_test``)
    with more than two axes are flattened per row. A file that cannot be read, or whose arrays
    do not fit together, raises a :class:`~ncinspect.errors.DumpError` subclass (exit code 3)
    naming the file and the array.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UnreadableFileError(
            f"{path}: no such file (expected 'gaussian', 'mnist1d' or a file)"
        )
    if os.path.isdir(path):
        raise UnreadableFileError(f"{path}: is a directory, expected an NPZ or HDF5 file")
    if not os.path.isfile(path):  # a FIFO, device or socket: said as such, never opened
        from ..io.paths import check_input_file

        check_input_file(path, "--dataset")
    try:
        arrays = _read_arrays(path)
    except OSError as exc:  # open() itself: permission denied, I/O error
        raise UnreadableFileError(f"{path}: cannot read ({exc.strerror or _why(exc)})") from None
    for key in ("X", "y"):
        if key not in arrays:
            raise MissingArrayError(f"{path}: no array {key!r} (found {sorted(arrays)})")
    if ("X_test" in arrays) != ("y_test" in arrays):
        have, lack = ("X_test", "y_test") if "X_test" in arrays else ("y_test", "X_test")
        raise MissingArrayError(
            f"{path}: has {have!r} but no {lack!r}; give both or neither (then "
            f"{test_fraction:g} of X is held out)"
        )
    X = _features(path, "X", arrays["X"])
    _check_finite(path, "X", X)  # before the split: a bad row of X is reported as X
    y = _labels(path, "y", arrays["y"], X.shape[0], "X")
    if "X_test" in arrays:
        X_test = _features(path, "X_test", arrays["X_test"])
        _check_finite(path, "X_test", X_test)
        if X_test.shape[1] != X.shape[1]:
            raise ShapeMismatchError(
                f"{path}: X_test has {X_test.shape[1]} features per row, X has {X.shape[1]}"
            )
        y_test = _labels(path, "y_test", arrays["y_test"], X_test.shape[0], "X_test")
    else:
        perm = rng.permutation(X.shape[0])
        n_test = int(round(test_fraction * X.shape[0]))
        X, y, X_test, y_test = (
            X[perm[n_test:]],
            y[perm[n_test:]],
            X[perm[:n_test]],
            y[perm[:n_test]],
        )
    if X.shape[0] == 0:
        raise InvalidDataError(f"{path}: X has no training rows")
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


def with_class_counts(data: Dataset, counts) -> Dataset:
    """``data`` with the first ``counts[c]`` training samples of each class c (test unchanged).

    Raises :class:`~ncinspect.errors.UsageError` when the counts do not fit the data.
    """
    from ..errors import UsageError

    counts = [int(n) for n in counts]
    if len(counts) != data.n_classes:
        raise UsageError(
            f"class_counts has {len(counts)} entries; {data.name} has {data.n_classes} classes"
        )
    keep = []
    for c, n in enumerate(counts):
        rows = np.flatnonzero(data.y == c)
        if n > rows.size:
            raise UsageError(
                f"class_counts asks {n} training samples of class {c}; {data.name} has {rows.size}"
            )
        keep.append(rows[:n])
    keep = np.sort(np.concatenate(keep))
    return dataclasses.replace(data, X=data.X[keep], y=data.y[keep])


def load_dataset(config) -> Dataset:
    """The data set a :class:`~ncinspect.train.TrainConfig` names, generated from its seed.

    With ``class_counts`` the training split keeps the first ``n_c`` samples of each class
    (:func:`with_class_counts`); gaussian data are then drawn with ``max(n_c)`` per class.
    """
    data = _load(config)
    counts = getattr(config, "class_counts", None)
    return data if counts is None else with_class_counts(data, counts)


def _load(config) -> Dataset:
    rng = np.random.default_rng([config.seed, 0])  # data stream, independent of init/shuffling
    if getattr(config, "task", "classification") == "regression":
        from .regression import regression_data

        return regression_data(config)
    counts = getattr(config, "class_counts", None)
    if config.dataset == "gaussian":
        return gaussian(
            rng,
            n_classes=config.n_classes,
            n_per_class=config.n_per_class if counts is None else max(counts),
            n_test_per_class=config.n_test_per_class,
            input_dim=config.input_dim,
            separation=config.separation,
            noise=config.noise,
        )
    if config.dataset == "mnist1d":
        return mnist1d(config.seed, n_samples=config.mnist1d_samples)
    return from_file(config.dataset, rng)
