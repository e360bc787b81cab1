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
from .input_checks import (  # the one checker of shapes, dtypes and center (re-exported)
    check_batch,
    check_center,
    check_dtype,
    check_features,
    check_labels_rows,
    check_numeric,
    dtype_kind,
)
from .io.class_names import (  # read_class_names re-exported: the class order file
    check_unique_names,
    read_class_names,
)
from .io.sources import ArraySource, as_source, refuse_bad_code_points
from .text import clip

__all__ = [
    "Prepared",
    "prepare",
    "check_batch",
    "check_features",
    "check_labels_rows",
    "check_center",
    "dtype_kind",
    "check_dtype",
    "encode_labels",
    "read_class_names",
    "check_finite",
    "check_finite_rows",
    "check_numeric",
    "NO_CLASS_ORDER",
    "NO_CLASS_ORDER_ARRAYS",
]

_NUMERIC = "iuf"


@dataclass
class Prepared:
    """Validated inputs of one analysis."""

    features: ArraySource
    codes: np.ndarray  # (N,) int64 in 0..C-1: a row of W when W is known
    class_names: list[Any]  # the name of each code (C entries; classes may be absent)
    weights: np.ndarray | None = None  # (C, d) float64
    bias: np.ndarray | None = None  # (C,) float64
    outputs: ArraySource | None = None  # (N, C)
    notes: list[str] = field(default_factory=list)
    #: rows of the classifier (or outputs columns); else ``len(class_names)``
    n_classes_total: int | None = None
    #: why the classifier was set aside (string labels without a class order), or None
    classifier_reason: str | None = None

    @property
    def n_samples(self) -> int:
        return self.features.shape[0]

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def check_finite(arr: np.ndarray, where: str) -> None:
    finite = np.isfinite(arr)
    if not finite.all():  # (the mask of the bad values made only for the message)
        bad = ~finite
        first = np.argwhere(bad)[0]
        raise InvalidDataError(
            f"{where}: {int(bad.sum())} non-finite value(s) (NaN/Inf), "
            f"first at index {tuple(first.tolist())}"
        )


def check_finite_rows(stats: Any, where: str) -> Any:
    """``stats`` (a statistic of a walk that counts the rows holding NaN/Inf:
    ``n_nonfinite``, ``first_nonfinite_row``), or an InvalidDataError naming ``where``."""
    if stats.n_nonfinite:
        raise InvalidDataError(
            f"{where}: {stats.n_nonfinite} row(s) hold NaN/Inf values, "
            f"first at row {stats.first_nonfinite_row}"
        )
    return stats


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
            hint = (
                f"; class codes in one column: store them as shape ({raw.shape[0]},)"
                if raw.shape[1] == 1
                else ""
            )
            raise InvalidDataError(
                f"{where}: 2-D labels of shape {raw.shape} are not one-hot (row {bad} is "
                f"{raw[bad][:8].tolist()}); expected exactly one 1 per row{hint}"
            )
        return np.argmax(vals, axis=1).astype(np.int64), list(range(raw.shape[1])), True
    if raw.ndim != 1:
        raise ShapeMismatchError(f"{where}: labels must have shape (N,) or (N, C), got {raw.shape}")
    names, codes = np.unique(_plain_labels(raw, where), return_inverse=True)
    return codes.astype(np.int64).ravel(), names.tolist(), False


def _plain_labels(raw: np.ndarray, where: str, offset: int | None = None) -> np.ndarray:
    """1-D labels as int64 or str values, each checked (see :func:`encode_labels`).
    ``offset``: ``raw`` is the block of rows starting there (row numbers in messages count
    from the start of the labels)."""
    at = 0 if offset is None else offset
    among = "" if offset is None else f" among rows {offset}:{offset + len(raw)}"
    kind = raw.dtype.kind
    refuse_bad_code_points(raw, where, at)  # in memory too: a SystemError in numpy's tolist
    if kind == "S":  # fixed-width bytes: checked and decoded once per distinct value
        distinct = np.unique(raw)
        try:
            decoded = np.array([v.decode() for v in distinct.tolist()], dtype=str)
        except UnicodeDecodeError as exc:
            raise UnsupportedDtypeError(
                f"{where}: labels cannot be decoded as text ({exc})"
            ) from None
        if len(decoded) == 0:
            return decoded
        return decoded[np.searchsorted(distinct, raw)]
    if kind == "O":
        values = raw.tolist()
        if values and _is_int(values[0]):  # a pandas object column of ints, ints as objects
            return _object_ints(values, where, at)
        other = next((v for v in values if not isinstance(v, (str, bytes))), None)
        if other is not None and _is_int(other):
            _refuse_mixed(values, where, at)
        if other is not None:  # e.g. HDF5 variable-length integers: a sequence per row
            raise UnsupportedDtypeError(
                f"{where}: labels hold {type(other).__name__} values ({clip(repr(other))}), "
                "not one integer or string per row; expected ints or strings"
            )
        try:
            raw = np.array([v.decode() if isinstance(v, bytes) else v for v in values])
        except (UnicodeDecodeError, AttributeError) as exc:
            raise UnsupportedDtypeError(
                f"{where}: labels cannot be decoded as text ({exc})"
            ) from None
        del values
        kind = raw.dtype.kind
        if kind == "O":
            raise UnsupportedDtypeError(
                f"{where}: labels hold Python objects; expected ints or strings"
            )
    if kind == "f":
        check_finite(raw, where)
        frac = raw != np.round(raw)
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise InvalidDataError(
                f"{where}: labels must be integers, found fractional value "
                f"{clip(repr(raw[i].item()))} at row {at + i} ({int(frac.sum())} such rows"
                f"{among})"
            )
        wide = raw.astype(np.float64)
        _within_int64(
            raw, (wide < -(2.0**63)) | (wide >= 2.0**63), where, "float labels", at, among
        )
        raw = wide.astype(np.int64)
    elif kind == "b":
        raw = raw.astype(np.int64)
    elif kind == "u" and raw.dtype.itemsize >= 8:  # uint64 above int64: a stored -1 sentinel?
        _within_int64(raw, raw > np.iinfo(np.int64).max, where, f"{raw.dtype} labels", at, among)
        raw = raw.astype(np.int64)
    elif kind not in "iuU":
        raise UnsupportedDtypeError(f"{where}: labels have unsupported dtype {raw.dtype}")
    return raw


def _is_int(value: Any) -> bool:
    """An integer label value held as an object: a Python or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _object_ints(values: list[Any], where: str, at: int) -> np.ndarray:
    """Object labels that are all integers, as int64 (refused beyond int64, or mixed)."""
    bad = next((i for i, v in enumerate(values) if not _is_int(v)), None)
    if bad is not None:
        _refuse_mixed(values, where, at)
    lo, hi = -(2**63), 2**63 - 1
    out = next((i for i, v in enumerate(values) if not lo <= int(v) <= hi), None)
    if out is not None:
        raise InvalidDataError(
            f"{where}: labels must be integers within the int64 range, found "
            f"{clip(repr(int(values[out])))} at row {at + out}"
        )
    return np.array([int(v) for v in values], dtype=np.int64)


def _refuse_mixed(values: list[Any], where: str, at: int) -> None:
    """Object labels holding integers beside other values (``1`` beside ``'1'``: two classes
    that show alike): refused naming the first of each."""
    i = next(i for i, v in enumerate(values) if _is_int(v))
    j = next(j for j, v in enumerate(values) if not _is_int(v))
    raise UnsupportedDtypeError(
        f"{where}: labels mix integers ({clip(repr(values[i]))} at row {at + i}) and "
        f"{type(values[j]).__name__} values ({clip(repr(values[j]))} at row {at + j}); "
        "give labels of one kind (ints, or strings with class_names)"
    )


#: rows of labels encoded at a time (:func:`encode_source`): a file's labels are never held
#: whole in any form but their codes (string labels as Python objects took about 170 bytes
#: a row: 5,000,000 of them peaked at 880 MiB under ``--memory-limit 300MiB``)
LABEL_BLOCK = 1 << 18


def encode_source(labs: ArraySource) -> tuple[np.ndarray, list[Any], bool]:
    """:func:`encode_labels` of the labels source ``labs``, read in blocks of
    :data:`LABEL_BLOCK` rows when they are 1-D: a first pass finds the distinct values, a
    second one gives each row its code, so what the encoding holds is the codes (8 bytes a
    row) and one block."""
    shape = tuple(labs.shape)
    if len(shape) != 1 or shape[0] <= LABEL_BLOCK:
        return encode_labels(labs.read_all(), labs.where)
    n = shape[0]
    blocks = [(i, min(i + LABEL_BLOCK, n)) for i in range(0, n, LABEL_BLOCK)]
    distinct: list[np.ndarray] = []  # the distinct values of the blocks read so far
    kinds: dict[str, int] = {}  # "integers" / "text" -> the first row of a block of them
    for i, j in blocks:
        block = _plain_labels(np.asarray(labs.read(i, j)), labs.where, i)
        kinds.setdefault("text" if block.dtype.kind == "U" else "integers", i)
        if len(kinds) > 1:  # object labels, ints in one block and text in another: the
            # concatenation below would turn the ints into text ('1' and 1 one class)
            raise UnsupportedDtypeError(
                f"{labs.where}: labels mix integers (rows from {kinds['integers']}) and "
                f"text (rows from {kinds['text']}); give labels of one kind (ints, or "
                "strings with class_names)"
            )
        distinct.append(np.unique(block))
        if sum(len(v) for v in distinct) > 4 * LABEL_BLOCK:
            distinct = [np.unique(np.concatenate(distinct))]
    names = np.unique(np.concatenate(distinct))
    del distinct
    codes = np.empty(n, dtype=np.int64)
    for i, j in blocks:
        codes[i:j] = np.searchsorted(
            names, _plain_labels(np.asarray(labs.read(i, j)), labs.where, i)
        )
    return codes, names.tolist(), False


def _encoded(labs: ArraySource, seen: dict | None) -> tuple[np.ndarray, list[Any], bool]:
    """:func:`encode_labels` of the labels source ``labs``, once per dataset of a dump
    (``seen``: see :func:`prepare`); the codes kept are read-only."""
    # the dtype itself, not its text: str() of a numpy dtype runs Python code (the snapshots
    # of a dump ask once each)
    key = (labs.where, tuple(labs.shape), labs.dtype)
    if seen is not None and seen.get("key") == key:
        codes, names, one_hot = seen["value"]
        return codes, list(names), one_hot
    codes, names, one_hot = encode_source(labs)
    if seen is not None:
        codes.flags.writeable = False
        seen.clear()
        seen.update(key=key, value=(codes, list(names), one_hot))
    return codes, names, one_hot


def _within_int64(
    raw: np.ndarray, outside: np.ndarray, where: str, what: str, at: int = 0, among: str = ""
) -> None:
    """Refuse labels beyond int64 (they would wrap or saturate and merge distinct classes)."""
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InvalidDataError(
            f"{where}: {what} must be integers within the int64 range, found "
            f"{clip(repr(raw[i].item()))} at row {at + i} ({int(outside.sum())} such rows"
            f"{among})"
        )


def _where(value: Any, role: str) -> str:
    """Where an input comes from: a source's location, else its role (a tensor's ``.where``
    is a method, not a location)."""
    return value.where if isinstance(value, ArraySource) else role


def _small(value: Any, where: str) -> np.ndarray | None:
    if value is None:
        return None
    src = as_source(value, where)
    check_numeric(src, where.rsplit("/", 1)[-1])
    arr = np.asarray(src.read_all(), dtype=np.float64)
    check_finite(arr, src.where)
    return arr


def _decode_names(names: Any, where: str) -> list[str]:
    """Class names as a list of str (bytes decoded as UTF-8)."""
    out = []
    if isinstance(names, np.ndarray):
        refuse_bad_code_points(names, where)
    for v in np.asarray(names, dtype=object).ravel().tolist():
        if isinstance(v, bytes):
            try:
                v = v.decode()
            except UnicodeDecodeError as exc:
                raise UnsupportedDtypeError(f"{where}: class_names are not UTF-8 ({exc})") from None
        out.append(v if isinstance(v, str) else str(v))
    check_unique_names(out, where)
    return out


#: Why W-dependent metrics are null when labels are strings and no class order is known.
NO_CLASS_ORDER = (
    "labels are strings and the dump has no class_names: record the classifier's class order "
    "as class_names (DumpWriter(...).set_meta(class_names=[...]) or a class_names array, one "
    "name per row of W), or pass class_names=[...] / --class-names FILE"
)
NO_CLASS_ORDER_ARRAYS = (  #: the same for arrays in memory, where no dump exists
    "labels are strings and no class order was given: pass class_names=[...] (one name per "
    "row of W, in W's row order), or integer labels that are row indices of W"
)


def prepare(
    features: Any,
    labels: Any,
    *,
    weights: Any = None,
    bias: Any = None,
    outputs: Any = None,
    class_names: Any = None,
    class_names_where: str = "class_names",
    no_order_reason: str = NO_CLASS_ORDER,
    labels_seen: dict | None = None,
) -> Prepared:
    """Validate and normalise the inputs of an analysis (see :func:`ncinspect.analyze`).

    Classes follow spec/metrics.md, "Classes and class order": integer (or one-hot) labels
    are row indices of W (or columns of ``outputs`` without W); string labels are matched by
    name to ``class_names``. Without a classifier, the classes are the distinct label values
    in increasing order (or the rows of ``class_names`` when every integer label indexes
    it). With string labels, a classifier and no class order, the classifier (weights, bias
    and outputs) is set aside with the reason ``no_order_reason`` (default for a dump).

    ``labels_seen``: a dict kept across the snapshots of one open dump, where each labels
    array is a dataset named by its ``where`` (snapshots that inherit one labels array
    then read and encode it once; the last one is kept).
    """
    feats = as_source(features, "features")
    labs = as_source(labels, "labels")
    N, d = _check_rows(feats, labs)
    codes, names, one_hot = _encoded(labs, labels_seen)
    strings = not one_hot and np.asarray(names).dtype.kind == "U"
    if strings:  # two label values that show alike would be two classes of one shown name
        check_unique_names([str(n) for n in names], labs.where, "label value")

    w = _small(weights, _where(weights, "weights"))
    b = _small(bias, _where(bias, "bias"))
    outs = as_source(outputs, "outputs")
    rows = _classifier_rows(w, outs, _where(weights, "weights"), N, d)
    order = None if class_names is None else _decode_names(class_names, class_names_where)
    reason = None
    total = None
    if strings:
        codes, names, set_aside = _string_classes(
            codes, names, order, rows, labs.where, class_names_where
        )
        if set_aside:
            reason, total = no_order_reason, rows[0]
            w = b = outs = None
        notes: list[str] = []
    else:
        codes, names, notes = _integer_classes(
            codes, names, one_hot, order, rows, labs.where, class_names_where
        )
    prep = Prepared(
        feats,
        np.ascontiguousarray(codes, dtype=np.int64),
        list(names),
        w,
        b,
        outs,
        notes,
        n_classes_total=total or len(names),
        classifier_reason=reason,
    )
    _check_classes(prep, labs.where, _where(bias, "bias"))
    return prep


def _check_rows(feats: ArraySource, labs: ArraySource) -> tuple[int, int]:
    """``(N, d)`` of 2-D, numeric, non-empty features with one label per row."""
    return check_batch(np, feats, labs)


def _classifier_rows(
    w: np.ndarray | None, outs: ArraySource | None, wsrc: str, N: int, d: int
) -> tuple[int | None, str | None, str | None]:
    """The classifier's classes: ``(count, where, "rows")`` of W, else ``(count, where,
    "columns")`` of the outputs, else ``(None, None, None)``; W and outputs shapes checked."""
    if w is not None and (w.ndim != 2 or w.shape[1] != d):
        raise ShapeMismatchError(
            f"{wsrc}: weights must have shape (C, d) with d = {d} (the features' width), "
            f"got {w.shape}"
        )
    if outs is not None:
        check_numeric(outs, "outputs")
        if len(outs.shape) != 2 or outs.shape[0] != N:
            raise ShapeMismatchError(
                f"{outs.where}: outputs must have shape (N, C) with N = {N}, got {outs.shape}"
            )
    if w is not None:
        return w.shape[0], wsrc, "rows"
    if outs is not None:
        return outs.shape[1], outs.where, "columns"
    return None, None, None


def _string_classes(
    codes: np.ndarray,
    names: list[Any],
    order: list[str] | None,
    rows: tuple[int | None, str | None, str | None],
    where: str,
    order_where: str,
) -> tuple[np.ndarray, list[Any], bool]:
    """Codes and names of string labels, matched by name to ``order``; the last value is
    True when a classifier has no class order and must be set aside."""
    n_rows, rows_where, rows_what = rows
    if order is None:
        return codes, names, n_rows is not None
    codes, names = _match_names(codes, names, order, where, order_where)
    if n_rows is not None and len(order) != n_rows:
        raise InvalidDataError(
            f"{order_where}: {len(order)} class names for the {n_rows} {rows_what} "
            f"of {rows_where}; class_names must name every one, in order"
        )
    return codes, names, False


def _integer_classes(
    codes: np.ndarray,
    names: list[Any],
    one_hot: bool,
    order: list[str] | None,
    rows: tuple[int | None, str | None, str | None],
    where: str,
    order_where: str,
) -> tuple[np.ndarray, list[Any], list[str]]:
    """Codes, names and notes of integer or one-hot labels: row indices of the classifier
    when there is one, named by ``order`` when it names every class."""
    n_rows, rows_where, rows_what = rows
    notes: list[str] = []
    values = codes if one_hot else np.asarray(names, dtype=np.int64)[codes]
    if one_hot and n_rows is not None and len(names) != n_rows:
        raise ShapeMismatchError(
            f"{where}: one-hot labels have {len(names)} columns but {rows_where} has "
            f"C = {n_rows} {rows_what}"
        )
    if n_rows is not None:
        bad = (values < 0) | (values >= n_rows)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidDataError(
                f"{where}: label {int(values[i])} at row {i} is not a row of the "
                f"classifier ({rows_where} has C = {n_rows} {rows_what}); integer labels are "
                f"row indices and must lie in [0, {n_rows}) ({int(bad.sum())} such rows)"
            )
        codes, names = values, list(range(n_rows))
    elif order is not None and not one_hot and values.min() >= 0 and values.max() < len(order):
        codes, names = values, list(range(len(order)))
    if order is not None:
        if len(order) == len(names):
            names = list(order)
        else:
            notes.append(
                f"{order_where} has {len(order)} names for C = {len(names)} classes; "
                "the class indices are used as names"
            )
    return codes, names, notes


def _check_classes(prep: Prepared, where: str, bias_where: str) -> None:
    """At least two classes, and a bias and outputs with one entry per class."""
    C, N, b, outs = prep.n_classes, prep.n_samples, prep.bias, prep.outputs
    if C < 2 and prep.n_classes_total < 2:
        raise InvalidDataError(
            f"{where}: fewer than two classes (found {C}: {_preview(prep.class_names)}); "
            "neural collapse needs at least two"
        )
    if b is not None and (b.ndim != 1 or b.shape[0] != C):
        raise ShapeMismatchError(f"{bias_where}: bias must have shape ({C},), got {b.shape}")
    if outs is not None and outs.shape != (N, C):
        raise ShapeMismatchError(
            f"{outs.where}: outputs must have shape (N, C) = ({N}, {C}), got {outs.shape}"
        )


def _match_names(
    codes: np.ndarray, names: list[Any], order: list[str], where: str, order_where: str
) -> tuple[np.ndarray, list[str]]:
    """Codes of string labels in the class ``order`` (a label outside it is bad input)."""
    check_unique_names(order, order_where)
    index = {name: i for i, name in enumerate(order)}
    missing = [n for n in names if n not in index]
    if missing:
        rows = np.flatnonzero(np.asarray(names, dtype=object)[codes] == missing[0])
        label = clip(repr(missing[0]))
        twin = _lookalike(missing[0], order)
        if twin is not None:  # shown alike: both escaped, so the message tells them apart
            i = order.index(twin)
            raise InvalidDataError(
                f"{where}: label {ascii(clip(missing[0]))} (first at row {int(rows[0])}) is "
                f"not in the class order, where {order_where} names class {i} "
                f"{ascii(clip(twin))}: the two look the same but differ in invisible "
                "characters, blanks around them or Unicode normalisation; ncinspect does not "
                "match them: write both alike"
            )
        raise InvalidDataError(
            f"{where}: label {label} (first at row {int(rows[0])}) is not in "
            f"the class order ({order_where}: {_preview(order)}); {len(missing)} such value(s)"
        )
    lut = np.array([index[n] for n in names], dtype=np.int64)
    return lut[codes], list(order)


def _lookalike(name: Any, order: list[str]) -> str | None:
    """The name of ``order`` that looks like ``name`` (the class-name rule,
    :func:`~ncinspect.io.class_names.shown_key`) but is not it, or None."""
    from .io.class_names import shown_key

    if not isinstance(name, str):
        return None
    key = shown_key(name)
    return next((n for n in order if n != name and shown_key(n) == key), None)


def _preview(names: list[Any], k: int = 6) -> str:
    text = ", ".join(map(str, names[:k]))
    return text + (", ..." if len(names) > k else "")
