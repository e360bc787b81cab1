"""One input checker for host and device batches: shapes, dtypes and ``center``.

Every entry (files, arrays, regression, OOD, the Meter's host and device batches) checks
with these, so each mistake has one message and one error type: a wrong number of axes or
rows is a ShapeMismatchError, a dtype that is not numbers an UnsupportedDtypeError, an empty
array an InvalidDataError, a bad ``center`` a UsageError. They read only ``.shape`` and
``.dtype`` (metadata: no device synchronisation, no copy), so they run on numpy, torch,
CuPy, JAX or array-api-strict arrays and on lazy ArraySources alike. :mod:`ncinspect.inputs`
re-exports them (``inputs.check_batch``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InvalidDataError, ShapeMismatchError, UnsupportedDtypeError, UsageError
from .text import clip

__all__ = [
    "check_batch",
    "check_features",
    "check_labels_rows",
    "check_center",
    "check_dtype",
    "check_numeric",
    "dtype_kind",
]

_NUMERIC = "iuf"

_KINDS = {"real floating": "f", "signed integer": "i", "unsigned integer": "u", "bool": "b"}


def dtype_kind(dtype: Any, xp: Any = None) -> str:
    """numpy's one-letter kind of ``dtype`` (``"f"``, ``"i"``, ``"u"``, ``"b"``, ``"c"``,
    ``"O"``, ...) for a numpy dtype or any array namespace's dtype (``xp.isdtype``);
    ``"?"`` when it is none of those."""
    try:
        return np.dtype(dtype).kind
    except TypeError:
        pass
    if xp is not None and hasattr(xp, "isdtype"):
        for name, kind in _KINDS.items():
            try:
                if xp.isdtype(dtype, name):
                    return kind
            except (TypeError, ValueError):
                continue
        try:
            if xp.isdtype(dtype, "complex floating"):
                return "c"
        except (TypeError, ValueError):
            pass
        return "?"
    text = str(dtype).lower()  # torch.float32, jax's dtypes: by name
    for word, kind in (("bool", "b"), ("complex", "c"), ("uint", "u"), ("int", "i")):
        if word in text:
            return kind
    return "f" if "float" in text else "?"


def check_dtype(
    dtype: Any,
    where: str,
    what: str,
    *,
    kinds: str = _NUMERIC,
    xp: Any = None,
    shown: str | None = None,
) -> None:
    """An :class:`UnsupportedDtypeError` unless ``dtype`` is of one of ``kinds``; ``shown``:
    the dtype as the file names it, when that says more (a safetensors ``F8_E8M0`` is held
    as bytes, numpy's ``|V1``)."""
    kind = dtype_kind(dtype, xp)
    if kind not in kinds:
        hint = " (object arrays are never unpickled)" if kind == "O" else ""
        expected = "floats" if kinds == "f" else "float16/32/64 or integers"
        raise UnsupportedDtypeError(
            f"{where}: {what} has unsupported dtype {shown or dtype}{hint}; expected {expected}"
        )


def _shown_dtype(array: Any) -> str | None:
    """The dtype as the file names it (an ArraySource's ``shown_dtype``), or None."""
    text = getattr(array, "shown_dtype", None)
    return text if isinstance(text, str) else None


def check_numeric(src: Any, what: str) -> None:
    """An UnsupportedDtypeError unless the ArraySource ``src`` holds numbers."""
    check_dtype(src.dtype, src.where, what, shown=_shown_dtype(src))


def check_features(
    shape: Any,
    dtype: Any,
    where: str,
    *,
    what: str = "features",
    empty_ok: bool = False,
    xp: Any = None,
    shown: str | None = None,
) -> tuple[int, int]:
    """``(N, d)`` of features of ``shape`` and ``dtype``: 2-D (a ShapeMismatchError), numbers
    (an UnsupportedDtypeError) and, unless ``empty_ok`` (a batch may be empty), with N and d
    above 0 (an InvalidDataError)."""
    shape = tuple(shape) if shape is not None else ()
    if len(shape) != 2:
        raise ShapeMismatchError(f"{where}: {what} must be 2-D (N, d), got shape {shape}")
    check_dtype(dtype, where, what, xp=xp, shown=shown)
    N, d = shape
    if not empty_ok and (N == 0 or d == 0):
        raise InvalidDataError(f"{where}: {what} are empty (shape {shape})")
    return N, d


def check_labels_rows(labels_shape: Any, n: Any, where: str, features_where: str) -> None:
    """A ShapeMismatchError unless the labels hold one row per feature row (``n``)."""
    shape = tuple(labels_shape) if labels_shape is not None else ()
    if not shape:  # a scalar: not "0 rows" (0.2 said so of ``np.int64(1)``)
        raise ShapeMismatchError(
            f"{where}: labels must hold one value per row of {features_where} (shape (N,) "
            f"or (N, C) one-hot, N = {n}), got shape ()"
        )
    rows = shape[0]
    if n is not None and rows != n:
        raise ShapeMismatchError(
            f"{where}: labels have {rows} rows but {features_where} has N = {n} rows"
        )


def check_center(center: Any) -> str:
    """``center`` names a global mean: ``"classes"`` or ``"samples"`` (a UsageError)."""
    if center not in ("classes", "samples"):
        raise UsageError(f"center must be 'classes' or 'samples', got {clip(repr(center))}")
    return center


def _where(array: Any, default: str) -> str:
    """Where an array came from: an :class:`ArraySource`'s ``where`` text, else ``default``
    (a tensor's ``where`` is a method, not a place)."""
    where = getattr(array, "where", None)
    return where if isinstance(where, str) else default


def check_batch(
    xp: Any,
    features: Any,
    labels: Any = None,
    *,
    where: str = "features",
    labels_where: str = "labels",
    what: str = "features",
    empty_ok: bool = False,
    center: Any = None,
) -> tuple[int, int]:
    """Check one batch (or a whole input) before any value is read: ``(N, d)``.

    ``features`` and ``labels`` are arrays of the namespace ``xp`` (numpy, torch, CuPy,
    array-api-strict; None for numpy) or :class:`~ncinspect.io.sources.ArraySource` objects;
    only their ``shape`` and ``dtype`` are read, so a device batch is never synchronised.
    Features must be 2-D numbers (non-empty unless ``empty_ok``); labels, when given, one per
    row; ``center``, when given, ``"classes"`` or ``"samples"``. Each problem has one message
    and one error type (see above)."""
    if center is not None:
        check_center(center)
    N, d = check_features(
        getattr(features, "shape", None),
        getattr(features, "dtype", None),
        _where(features, where),
        what=what,
        empty_ok=empty_ok,
        xp=xp,
        shown=_shown_dtype(features),
    )
    if labels is not None:
        check_labels_rows(
            getattr(labels, "shape", None),
            N,
            _where(labels, labels_where),
            _where(features, where),
        )
    return N, d
