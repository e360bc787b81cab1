"""The one shared input checker: shapes, dtypes and labels, with messages that say where.

Used by :func:`ncinspect.analyze` on in-memory arrays and on file snapshots alike. Features
stay lazy (an :class:`~ncinspect.io.sources.ArraySource`); labels, weights and bias are
small and read whole here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import (
    InvalidDataError,
    ShapeMismatchError,
    UnsupportedDtypeError,
)
from .io.sources import ArraySource, as_source

__all__ = ["Prepared", "prepare", "encode_labels"]

_NUMERIC = "iuf"


@dataclass
class Prepared:
    """Validated inputs of one analysis."""

    features: ArraySource
    codes: np.ndarray  # (N,) int64 in 0..C-1
    class_names: list[Any]
    weights: np.ndarray | None = None  # (C, d) float64
    bias: np.ndarray | None = None  # (C,) float64
    outputs: ArraySource | None = None  # (N, C)
    notes: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return self.features.shape[0]

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _check_numeric(src: ArraySource, what: str) -> None:
    if src.dtype.kind not in _NUMERIC:
        hint = " (object arrays are never unpickled)" if src.dtype.kind == "O" else ""
        raise UnsupportedDtypeError(
            f"{src.where}: {what} has unsupported dtype {src.dtype}{hint}; "
            "expected float16/32/64 or integers"
        )


def _check_finite(arr: np.ndarray, where: str) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        first = np.argwhere(bad)[0]
        raise InvalidDataError(
            f"{where}: {int(bad.sum())} non-finite value(s) (NaN/Inf), "
            f"first at index {tuple(first.tolist())}"
        )


def encode_labels(raw: np.ndarray, where: str) -> tuple[np.ndarray, list[Any], bool]:
    """Map labels to codes 0..C-1 in sorted order of the distinct values.

    Accepts integers (contiguous or not), integral floats, strings/bytes, and one-hot
    (N, C) arrays. Returns ``(codes, class_names, one_hot)``; for one-hot input the class
    names are the column indices 0..C-1 (all columns count as classes).
    """
    raw = np.asarray(raw)
    if raw.ndim == 2:
        if raw.dtype.kind not in "iufb":
            raise UnsupportedDtypeError(
                f"{where}: 2-D labels must be numeric one-hot, got {raw.dtype}"
            )
        vals = raw.astype(np.float64)
        if not (np.isin(vals, (0.0, 1.0)).all() and np.all(vals.sum(axis=1) == 1)):
            bad = int(
                np.flatnonzero(~(np.isin(vals, (0.0, 1.0)).all(axis=1) & (vals.sum(axis=1) == 1)))[
                    0
                ]
            )
            raise InvalidDataError(
                f"{where}: 2-D labels of shape {raw.shape} are not one-hot (row {bad} is "
                f"{raw[bad][:8].tolist()}); expected exactly one 1 per row"
            )
        return np.argmax(vals, axis=1).astype(np.int64), list(range(raw.shape[1])), True
    if raw.ndim != 1:
        raise ShapeMismatchError(f"{where}: labels must have shape (N,) or (N, C), got {raw.shape}")
    kind = raw.dtype.kind
    if kind in "SO":
        try:
            raw = np.array([v.decode() if isinstance(v, bytes) else v for v in raw.tolist()])
        except (UnicodeDecodeError, AttributeError) as exc:
            raise UnsupportedDtypeError(
                f"{where}: labels cannot be decoded as text ({exc})"
            ) from None
        kind = raw.dtype.kind
        if kind == "O":
            raise UnsupportedDtypeError(
                f"{where}: labels hold Python objects; expected ints or strings"
            )
    if kind == "f":
        _check_finite(raw, where)
        frac = raw != np.round(raw)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise InvalidDataError(
                f"{where}: labels must be integers, found fractional value "
                f"{raw[i].item()!r} at row {i} "
                f"({int(frac.sum())} such rows)"
            )
        # integral floats are class indices; one outside int64 would wrap (or saturate)
        # on conversion and merge distinct labels, so it is refused instead
        wide = raw.astype(np.float64)
        out_of_range = (wide < -(2.0**63)) | (wide >= 2.0**63)
        if out_of_range.any():
            i = int(np.flatnonzero(out_of_range)[0])
            raise InvalidDataError(
                f"{where}: float labels must be integers within the int64 range, found "
                f"{raw[i].item()!r} at row {i} ({int(out_of_range.sum())} such rows)"
            )
        raw = wide.astype(np.int64)
    elif kind == "b":
        raw = raw.astype(np.int64)
    elif kind not in "iuU":
        raise UnsupportedDtypeError(f"{where}: labels have unsupported dtype {raw.dtype}")
    names, codes = np.unique(raw, return_inverse=True)
    return codes.astype(np.int64).ravel(), names.tolist(), False


def _where(value: Any, role: str) -> str:
    """Where an input comes from: a source's location, else its role (a tensor's ``.where``
    is a method, not a location)."""
    return value.where if isinstance(value, ArraySource) else role


def _small(value: Any, where: str) -> np.ndarray | None:
    if value is None:
        return None
    src = as_source(value, where)
    _check_numeric(src, where.rsplit("/", 1)[-1])
    arr = np.asarray(src.read_all(), dtype=np.float64)
    _check_finite(arr, src.where)
    return arr


def prepare(
    features: Any,
    labels: Any,
    *,
    weights: Any = None,
    bias: Any = None,
    outputs: Any = None,
    class_names: list[Any] | None = None,
) -> Prepared:
    """Validate and normalise the inputs of an analysis (see :func:`ncinspect.analyze`)."""
    feats = as_source(features, "features")
    labs = as_source(labels, "labels")
    if len(feats.shape) != 2:
        raise ShapeMismatchError(
            f"{feats.where}: features must be 2-D (N, d), got shape {feats.shape}"
        )
    _check_numeric(feats, "features")
    N, d = feats.shape
    if N == 0 or d == 0:
        raise InvalidDataError(f"{feats.where}: features are empty (shape {feats.shape})")
    if len(labs.shape) == 0 or labs.shape[0] != N:
        raise ShapeMismatchError(
            f"{labs.where}: labels have {labs.shape[0] if labs.shape else 0} rows but "
            f"{feats.where} has N = {N} rows"
        )
    codes, names, one_hot = encode_labels(labs.read_all(), labs.where)

    w = _small(weights, _where(weights, "weights"))
    b = _small(bias, _where(bias, "bias"))
    notes: list[str] = []
    wsrc = _where(weights, "weights")
    if w is not None:
        if w.ndim != 2 or w.shape[1] != d:
            raise ShapeMismatchError(
                f"{wsrc}: weights must have shape (C, d) with d = {d} (the features' width), "
                f"got {w.shape}"
            )
        C_w = w.shape[0]
        if C_w != len(names):
            integral = not one_hot and np.asarray(names).dtype.kind in "iu"
            if integral and C_w > len(names) and min(names) >= 0 and max(names) < C_w:
                # labels index the classifier rows directly; some classes have no samples here
                codes = np.asarray(names, dtype=np.int64)[codes]
                names = list(range(C_w))
            else:
                raise ShapeMismatchError(
                    f"{wsrc}: weights have C = {C_w} rows but {labs.where} has "
                    f"{len(names)} classes ({_preview(names)})"
                )
    C = len(names)
    if C < 2:
        raise InvalidDataError(
            f"{labs.where}: fewer than two classes (found {C}: {_preview(names)}); "
            "neural collapse needs at least two"
        )
    if b is not None and (b.ndim != 1 or b.shape[0] != C):
        raise ShapeMismatchError(
            f"{_where(bias, 'bias')}: bias must have shape ({C},), got {b.shape}"
        )
    outs = as_source(outputs, "outputs")
    if outs is not None:
        _check_numeric(outs, "outputs")
        if outs.shape != (N, C):
            raise ShapeMismatchError(
                f"{outs.where}: outputs must have shape (N, C) = ({N}, {C}), got {outs.shape}"
            )
    if class_names is not None:
        if len(class_names) == C:
            names = list(class_names)
        else:
            notes.append(
                f"class_names metadata has {len(class_names)} names for C = {C} classes; "
                "the label values are used as names"
            )
    return Prepared(feats, codes, list(names), w, b, outs, notes)


def _preview(names: list[Any], k: int = 6) -> str:
    text = ", ".join(map(str, names[:k]))
    return text + (", ..." if len(names) > k else "")
