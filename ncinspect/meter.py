"""A streaming :class:`Meter` for training loops: the two passes of ``analyze``, batch by batch.

::

    meter = ncinspect.Meter(weights=model.fc.weight, bias=model.fc.bias)  # any arrays
    for x, y in loader:
        meter.update(features(x), y)     # pass 1: class counts and sums
    meter.next_pass()
    for x, y in loader:
        meter.update(features(x), y)     # pass 2: scatter, decisions
    result = meter.compute()             # the SnapshotResult that analyze() returns
    meter.reset()

The statistics are the mergeable ones of :mod:`ncinspect.stats` (the same objects the
engines merge chunk by chunk), so any split of the same rows into batches, and meters of
several processes merged with :meth:`Meter.merge`, give the single-process numbers (to the
rounding of float64 sums, ~1e-15 relative). Batches may be numpy arrays, torch tensors (any
device, requiring grad, bfloat16), CuPy or JAX arrays or anything
:func:`ncinspect.arrays.to_host` converts. Arrays of an array-API library (looked up once
per batch, :func:`ncinspect.array_api.get_namespace`) are processed on their own device in
float64; only the small per-class sums come back to the host. Other inputs are copied to
host numpy. ``precision="float32"`` computes pass 2's large products in float32 with
float64 accumulation (bounds and measurements in :mod:`ncinspect.stats_xp`).

Labels are integers: row indices of ``weights`` (or ``0..n_classes-1`` without a
classifier). Pass 2 must see the same rows as pass 1: a different class count, or weights
that changed between the passes, is an error (:class:`~ncinspect.errors.InvalidDataError`).

``Meter(..., dump="run.h5", snapshot="epoch_0003", dump_meta={"epoch": 3})`` also writes the
rows of pass 1 (features as given, integer labels) and then the classifier to that snapshot
of a dump, so the file can be analysed again later with the same numbers.

:meth:`Meter.state_dict` / :meth:`Meter.load_state_dict` carry the accumulated statistics
as plain arrays (no pickle), which is how
:func:`ncinspect.integrations.torch.all_reduce_meter` merges meters across processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .analyze import build_result
from .analyze_build import check_center
from .array_api import check_precision, device_batch, get_namespace
from .arrays import host_dtype, to_host
from .errors import InvalidDataError, UnsupportedDtypeError, UsageError
from .inputs import Prepared
from .meter_dump import DumpTarget
from .meter_state import check_same_means, decode_state, digest, encode_state, same_first
from .metrics import between_class_geometry
from .stats import FirstPass, SecondPass

__all__ = ["Meter"]


class _Rows:
    """What a result needs to know of the features the meter saw (no data kept)."""

    where = "features"

    def __init__(self, n: int, d: int, dtype: np.dtype):
        self.shape = (n, d)
        self.dtype = dtype


class Meter:
    """Neural-collapse metrics accumulated over batches (see the module notes).

    Parameters
    ----------
    weights, bias : array-like, optional
        The classifier ``W`` (C, d) and ``b`` (C,); decisions take the argmax over every row.
    n_classes : int, optional
        The number of classes when there is no classifier.
    center : {"classes", "samples"}
    per_class : bool
        Per-class values in the result.
    min_class_count : int
        Classes with fewer samples (in pass 1) count as absent.
    dump : path, DumpWriter or SnapshotWriter, optional
        Also write the rows of pass 1 (``features``, ``labels``) and, at :meth:`next_pass`,
        ``weights`` / ``bias`` to this dump. A path is opened in mode ``"a"`` and closed at
        :meth:`next_pass`; an open writer is left open. A snapshot already holding rows
        from an earlier writer is refused (see :meth:`ncinspect.DumpWriter.snapshot`).
    snapshot : str
        The snapshot group written in ``dump`` (``"/"``: a flat file).
    dump_meta : mapping, optional
        Metadata of that snapshot (``epoch``, ``split``, ``loss``, ...).
    precision : {"float64", "float32"}
        ``"float32"``: pass 2's projections and decision scores as float32 products,
        accumulated in float64; decisions stay exact (see :mod:`ncinspect.stats_xp`).
    """

    def __init__(
        self,
        weights: Any = None,
        bias: Any = None,
        *,
        n_classes: int | None = None,
        center: str = "classes",
        per_class: bool = False,
        min_class_count: int = 1,
        dump: Any = None,
        snapshot: str = "/",
        dump_meta: Mapping[str, Any] | None = None,
        precision: str = "float64",
    ):
        check_center(center)
        self._weights_src, self._bias_src = weights, bias
        self.weights = None if weights is None else _numeric(to_host(weights, "weights"), "weights")
        self.bias = None if bias is None else _numeric(to_host(bias, "bias"), "bias")
        if self.weights is not None and self.weights.ndim != 2:
            raise InvalidDataError(f"weights must be 2-D (C, d), got shape {self.weights.shape}")
        if self.weights is None and self.bias is not None:
            raise UsageError("a bias without weights has no classifier to add it to")
        if self.weights is None and (
            isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1
        ):
            raise UsageError(f"give weights (the classifier) or n_classes >= 1, got {n_classes!r}")
        if self.weights is not None and n_classes is not None and n_classes != len(self.weights):
            raise UsageError(
                f"n_classes = {n_classes} but the weights have {len(self.weights)} rows"
            )
        self.n_classes = int(self.weights.shape[0] if self.weights is not None else n_classes)
        if self.bias is not None and self.bias.shape != (self.n_classes,):
            raise InvalidDataError(
                f"bias must have shape ({self.n_classes},), got {self.bias.shape}"
            )
        self.center, self.per_class, self.min_class_count = center, per_class, min_class_count
        self._dump = DumpTarget(dump, snapshot, dump_meta) if dump is not None else None
        self.precision = check_precision(precision)
        self.reset()

    # -- the loop ----------------------------------------------------------------------------
    def reset(self, *, snapshot: str | None = None, dump_meta: Mapping[str, Any] | None = None):
        """Forget every batch: back to pass 1.

        With a ``dump``, the next pass 1 is written to ``snapshot`` (with ``dump_meta``);
        writing a snapshot this meter already wrote is refused, never doubled.
        """
        if getattr(self, "_dump", None) is not None:
            self._dump.close()
            if snapshot is not None:
                self._dump.retarget(snapshot, dump_meta)
        elif snapshot is not None or dump_meta is not None:
            raise UsageError("reset(snapshot=...) needs a meter made with dump=")
        self.pass_number = 1
        self.first: FirstPass | None = None
        self.second: SecondPass | None = None
        self.geometry = None
        self._dtype = None
        self._seen2 = np.zeros(self.n_classes, dtype=np.int64)
        self._first2: FirstPass | None = None  # pass 2's own class sums, to compare

    def _batch(self, features: Any, labels: Any) -> tuple[Any, Any]:
        _check_label_kind(labels)
        xp = get_namespace(features)
        if xp is not None and str(getattr(features, "layout", "torch.strided")) == "torch.strided":
            h, y = device_batch(xp, features, labels, self.n_classes)
            if self.weights is not None and h.shape[1] != self.weights.shape[1]:
                raise InvalidDataError(
                    f"features have d = {h.shape[1]} but weights have "
                    f"{self.weights.shape[1]} columns"
                )
            return h, y
        h = to_host(features, "features")
        y = to_host(labels, "labels")
        if h.dtype.kind not in "fiu":
            raise UnsupportedDtypeError(f"features have unsupported dtype {h.dtype}: use floats")
        if y.dtype.kind not in "fiub":
            raise UnsupportedDtypeError(
                f"labels have dtype {y.dtype}: the Meter takes integer labels (rows of W)"
            )
        if h.ndim != 2:
            raise InvalidDataError(f"features must be 2-D (batch, d), got shape {h.shape}")
        if y.ndim != 1 or y.shape[0] != h.shape[0]:
            raise InvalidDataError(
                f"labels must have shape ({h.shape[0]},) for these features, got {y.shape}"
            )
        if y.dtype.kind not in "iub" and not (y.size and np.all(np.mod(y, 1) == 0)):
            raise InvalidDataError("labels must be integers (row indices of the classifier)")
        y = y.astype(np.int64)
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise InvalidDataError(
                f"label {int(y[(y < 0) | (y >= self.n_classes)][0])} is not in "
                f"[0, {self.n_classes}) (rows of the classifier)"
            )
        if self.weights is not None and h.shape[1] != self.weights.shape[1]:
            raise InvalidDataError(
                f"features have d = {h.shape[1]} but weights have {self.weights.shape[1]} columns"
            )
        return h, y

    def update(self, features: Any, labels: Any) -> None:
        """Add one batch to the current pass (on the device of ``features``)."""
        h, y = self._batch(features, labels)
        if self.pass_number == 1:
            self._dtype = self._dtype or (h.dtype if isinstance(h, np.ndarray) else host_dtype(h))
            n0 = 0 if self.first is None else self.first.n_samples
            part = FirstPass.of_chunk(h, y, self.n_classes, n0)
            self.first = part if self.first is None else self.first.merge(part)
            if self._dump is not None:
                self._dump.rows(h, y)
        else:
            sums = FirstPass.of_chunk(h, y, self.n_classes)  # also counts non-finite rows
            if sums.n_nonfinite:
                raise InvalidDataError("features: pass 2 met row(s) holding NaN/Inf values")
            new = sums.counts * (self.first.counts == 0)
            if new.any():
                c = int(np.flatnonzero(new)[0])
                raise InvalidDataError(
                    f"pass 2 saw class {c}, which pass 1 never saw: both passes must go over "
                    "the same rows"
                )
            part = SecondPass.of_chunk(self.geometry, h, y, precision=self.precision)
            self.second = part if self.second is None else self.second.merge(part)
            self._seen2 += sums.counts
            self._first2 = sums if self._first2 is None else self._first2.merge(sums)

    def next_pass(self) -> None:
        """End pass 1: fix the class means and the between-class geometry."""
        if self.pass_number != 1:
            raise UsageError("next_pass() was already called; reset() starts again")
        if self.first is None or self.first.n_samples == 0:
            raise UsageError("pass 1 saw no batch: call update() first")
        if self.first.n_nonfinite:
            raise InvalidDataError(
                f"features: {self.first.n_nonfinite} row(s) hold NaN/Inf values, first at row "
                f"{self.first.first_nonfinite_row}"
            )
        self._check_weights_unchanged()
        self.geometry = self._geometry()
        self.second = SecondPass.empty(self.n_classes, self.geometry.basis.shape[0])
        self.pass_number = 2
        if self._dump is not None:
            self._dump.finish(self.weights, self.bias)

    def compute(self):
        """The :class:`~ncinspect.report.SnapshotResult` of the two passes."""
        if self.pass_number != 2:
            raise UsageError("compute() needs both passes: call next_pass() after pass 1")
        counts = np.asarray(self.first.counts, dtype=np.int64)
        if not np.array_equal(self._seen2, counts):
            c = int(np.flatnonzero(self._seen2 != counts)[0])
            raise InvalidDataError(
                f"pass 2 saw {int(self._seen2[c])} sample(s) of class {c} where pass 1 saw "
                f"{int(counts[c])}: both passes must go over the same rows"
            )
        self._check_same_rows()
        self._check_weights_unchanged()
        prep = Prepared(
            features=_Rows(int(counts.sum()), self.first.sums.shape[1], self._dtype),
            codes=np.zeros(0, dtype=np.int64),
            class_names=list(range(self.n_classes)),
            weights=self.weights,
            bias=self.bias,
            n_classes_total=self.n_classes,
        )
        return build_result(
            prep,
            self.first,
            self.geometry,
            self.second,
            per_class=self.per_class,
            center=self.center,
            ncc_label="own",
        )

    # -- several processes -------------------------------------------------------------------
    def merge(self, other: Meter) -> Meter:
        """Add ``other``'s batches (same pass, same classifier) to this meter; returns self.

        In pass 1 the class sums merge; call :meth:`next_pass` on the merged meter (and copy
        its state to the others) before pass 2. In pass 2 both meters must share pass 1.
        """
        if other.pass_number != self.pass_number:
            raise UsageError("meters to merge must be in the same pass")
        mine, theirs = self._settings(), other._settings()
        differ = [k.removesuffix("_sha256") for k in mine if mine[k] != theirs[k]]
        if differ:  # a classifier or the classes differ: data; an option differs: usage
            error = (
                InvalidDataError if {"n_classes", "weights", "bias"} & set(differ) else UsageError
            )
            what = ", ".join("classes" if k == "n_classes" else k for k in differ)
            raise error(f"meters to merge must have the same {what}")
        if self.pass_number == 1:
            if other.first is not None:
                self.first = other.first if self.first is None else self.first.merge(other.first)
                self._dtype = self._dtype or other._dtype
        else:
            if not np.array_equal(self.geometry.means, other.geometry.means):
                raise InvalidDataError("meters in pass 2 must share pass 1 (the same class means)")
            self.second = self.second.merge(other.second)
            self._seen2 = self._seen2 + other._seen2
            if other._first2 is not None:
                self._first2 = (
                    other._first2 if self._first2 is None else self._first2.merge(other._first2)
                )
        return self

    def _geometry(self):
        return between_class_geometry(
            self.first,
            center=self.center,
            weights=self.weights,
            bias=self.bias,
            min_count=self.min_class_count,
        )

    def _settings(self) -> dict[str, Any]:
        return {
            "n_classes": self.n_classes,
            "center": self.center,
            "min_class_count": self.min_class_count,
            "precision": self.precision,
            "weights_sha256": digest(self.weights),
            "bias_sha256": digest(self.bias),
        }

    def state_dict(self) -> dict[str, Any]:
        """The accumulated statistics and settings as plain arrays, numbers and strings.

        A meter made with the same classifier and settings takes them back with
        :meth:`load_state_dict`; :func:`ncinspect.meter_state.pack` turns them into bytes.
        """
        passes = (self.first, self.second, self._first2)
        return encode_state(self.pass_number, self._dtype, self._seen2, self._settings(), *passes)

    def load_state_dict(self, state: Mapping[str, Any]) -> Meter:
        """Replace this meter's statistics by those of :meth:`state_dict`; returns self.

        The state must come from a meter with the same classes, classifier and settings. In
        pass 2 the geometry is rebuilt from the state's pass 1 (kept when it is this meter's
        own pass 1).
        """
        got = decode_state(state, self._settings())
        keep = self.geometry is not None and same_first(self.first, got["first"])
        self.pass_number, self.first, self.second = got["pass_number"], got["first"], got["second"]
        self._first2, self._seen2, self._dtype = got["first2"], got["seen2"], got["dtype"]
        if self.pass_number == 1:
            self.geometry = None
        elif not keep:
            self.geometry = self._geometry()
        return self

    def _check_same_rows(self) -> None:
        """Pass 2's class means must be pass 1's (the same rows, in any order or split)."""
        if self._first2 is not None:
            check_same_means(self.first, self._first2)

    def _check_weights_unchanged(self) -> None:
        """Weights given as a live tensor must not change between the passes."""
        if self._weights_src is None:
            return
        now = to_host(self._weights_src, "weights").astype(np.float64)
        if now.shape != self.weights.shape or not np.array_equal(now, self.weights):
            raise InvalidDataError(
                "the classifier weights changed since the meter was made: measure with a fixed "
                "model (between optimiser steps), or make a new Meter"
            )


def _check_label_kind(labels: Any) -> None:
    """String (or object) labels: say what to pass instead of a raw error of the array library."""
    kind = getattr(getattr(labels, "dtype", None), "kind", None)
    if kind is None and isinstance(labels, (list, tuple)):
        kind = np.asarray(labels).dtype.kind
    if kind in ("U", "S", "O"):
        raise UnsupportedDtypeError(
            f"labels have dtype {labels.dtype if hasattr(labels, 'dtype') else 'str'}: the "
            "Meter takes integer labels, the row of W (or 0..n_classes-1) of each sample; map "
            "names to rows first, e.g. rows = {name: i for i, name in enumerate(class_names)} "
            "with class_names in W's row order, then np.array([rows[n] for n in labels])"
        )


def _numeric(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.kind not in "fiu":
        raise UnsupportedDtypeError(f"{what} have unsupported dtype {arr.dtype}: use floats")
    return arr.astype(np.float64)
