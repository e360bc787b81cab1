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

Batches may be numpy arrays, torch tensors (any device, requiring grad, bfloat16), CuPy
or JAX arrays or anything :func:`ncinspect.arrays.to_host` converts. Device arrays are
summed where they live, into float64 states on that device
(:mod:`ncinspect.stats.device`): ``update`` never waits for the device (no host copy, no
value read); labels out of range, non-integer labels and NaN/Inf rows are counted there and
refused at :meth:`~Meter.next_pass` / :meth:`~Meter.compute`, the only two host reads of a
pass. Host rows use the numpy kernels of :mod:`ncinspect.stats` and are checked at once;
in pass 2, CPU tensors go through the numpy fast path on a zero-copy view, into torch states.
Any split of the rows into batches, and meters merged with :meth:`Meter.merge` (or across
processes by :func:`ncinspect.integrations.distributed.all_reduce_meter`), give the
single-process numbers to the rounding of float64 sums. ``precision="float32"``: pass 2's
large products in float32, accumulated in float64 (bounds in :mod:`ncinspect.stats.xp`).

Labels are integers: row indices of ``weights`` (or ``0..n_classes-1`` without a
classifier); ``ignore_index=-100`` leaves the rows of that label out, on the device (no
boolean mask read on the host). Pass 2 must see the same rows as pass 1, and weights must
not change between the passes (:class:`~ncinspect.errors.InvalidDataError`). ``dump="run.h5"`` (with
``snapshot=``, ``dump_meta=``) also writes the rows of pass 1 and the classifier to a dump.
:meth:`Meter.state_dict` / :meth:`Meter.load_state_dict` carry the statistics as plain
arrays (no pickle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..analysis.api import build_result
from ..analysis.build import check_options
from ..arrays import to_host
from ..errors import InvalidDataError, UnsupportedDtypeError, UsageError
from ..inputs import Prepared
from ..metrics import between_class_geometry
from ..stats.blocks import scale_band
from ..stats.device import FirstState, SecondState
from ..stats.namespace import (
    batch_dtype,
    check_float64_states,
    check_precision,
    device_of,
    is_numpy,
    meter_batch,
)
from ..stats.passes import FirstPass, SecondPass
from ..stats.protocol import NUMPY, merged, placed
from ..text import clip
from .checks import check_same_rows, check_second, never_seen, problems
from .dump import DumpTarget
from .spectra import MeterSpectra
from .state import decode_state, digest, encode_state, same_first

__all__ = ["Meter"]

#: the most classes a meter made without weights takes (its sums are (C, d) arrays)
MAX_CLASSES = 2**31 - 1


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
        With ``ignore_index``, the rows not ignored (the dump is written on the host, so
        device labels are read there for it).
    snapshot : str
        The snapshot group written in ``dump`` (``"/"``: a flat file).
    dump_meta : mapping, optional
        Metadata of that snapshot (``epoch``, ``split``, ``loss``, ...).
    precision : {"float64", "float32"}
        ``"float32"``: pass 2's projections and decision scores as float32 products,
        accumulated in float64; decisions stay exact (see :mod:`ncinspect.stats.xp`).
    spectra : bool
        Also the spectral metrics (two d x d float64 sums in pass 2, on the host; see
        :mod:`ncinspect.meter.spectra`).
    ignore_index : int, optional
        Rows with this label are left out, as if never given (padding tokens, unlabelled
        positions: ``-100`` of the Transformers losses). Device batches are taken whole and
        the ignored rows masked on the device in every sum (class counts and sums, checks,
        scatter, decisions, output moments, the directional table): no shape depends on
        the labels and nothing is read on the host; host rows are dropped at once. The
        result equals that of a meter fed the other rows only (to float64 rounding;
        decisions exactly); error messages number rows as given, ignored ones included.
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
        spectra: bool = False,
        ignore_index: int | None = None,
    ):
        check_options(center, min_class_count)  # the analyses' own check (min_class_count >= 1)
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))
        ):
            raise UsageError(f"ignore_index must be an integer label or None, got {ignore_index!r}")
        self.ignore_index = None if ignore_index is None else int(ignore_index)
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
        if self.weights is None and n_classes > MAX_CLASSES:  # (C, d) sums: beyond, no memory
            raise UsageError(f"n_classes must be at most {MAX_CLASSES}, got {clip(n_classes)}")
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
        self.spectra = bool(spectra)
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
        self._s1: FirstState | None = None  # pass 1 where the batches live
        self._s2: SecondState | None = None  # pass 2 where the batches live
        self._first: FirstPass | None = None  # pass 1 on the host, fixed by next_pass()
        self.geometry = None
        self._dtype = None
        self._row = 0  # rows this meter's update() saw in this pass (row numbers of errors)
        self._spectra = MeterSpectra(self.spectra)  # pass 2's d x d sums (spectra=True)

    @property
    def first(self) -> FirstPass | None:
        """Pass 1's class counts and sums on the host (None before any batch; a host copy)."""
        if self._first is not None:
            return self._first
        return None if self._s1 is None else FirstPass.of_state(self._s1)

    @property
    def _means(self) -> np.ndarray:
        """Pass 1's class means (C, d) (NaN for a class without rows), cached."""
        if getattr(self, "_means_of", None) is not self._first:
            self._means_cache, self._means_of = self._first.class_means(), self._first
        return self._means_cache

    @staticmethod
    def _check_states(xp: Any, h: Any) -> None:
        """The batches' device can hold the float64 and int64 states (a clear refusal on,
        e.g., Apple's MPS; numpy rows keep host states)."""
        if not is_numpy(xp):
            check_float64_states(xp, _device(xp, h))

    @property
    def second(self) -> SecondPass | None:
        """Pass 2's statistics on the host (None before pass 2's first batch)."""
        return None if self._s2 is None else SecondPass.of_state(self._s2, self.weights is not None)

    def update(self, features: Any, labels: Any) -> None:
        """Add one batch to the current pass, on the device of ``features``.

        Device arrays (torch, CuPy, JAX, ...) are summed where they live into float64 states
        on that device, with no host synchronisation: problems found in the values are
        reported at :meth:`next_pass` / :meth:`compute`. With ``ignore_index``, give the
        whole batch: its ignored rows are left out there, by a mask on the device.
        """
        ignore = self.ignore_index
        _check_batch_form(features, labels)
        # the one check; host rows labelled ignore_index are dropped there (kept: the rest)
        xp, h, y, kept = meter_batch(features, labels, self.n_classes, self.weights, ignore)
        m, row0 = h.shape[0], self._row
        given = m if kept is None else kept[1]  # rows before the drop
        if self.pass_number == 1:
            self._dtype = self._dtype or batch_dtype(h)
            if self._s1 is None:
                self._check_states(xp, h)
                self._s1 = FirstState.new(_state_xp(xp), _device(xp, h), *self._shape(h))
            self._s1 = _place(self._s1, xp, h)
            if is_numpy(xp):
                part = FirstPass.of_chunk(h, y, self.n_classes, row0)
                if kept is not None and part.first_nonfinite_row is not None:  # as given
                    part.first_nonfinite_row = row0 + int(kept[0][part.first_nonfinite_row - row0])
                self._s1.add_pass(part, m)
            else:
                self._s1.update(xp, h, y, row0, ignore)
            if self._dump is not None:
                self._dump.rows(*_taken_rows(xp, h, y, ignore))
        else:
            if self._s2 is None:
                self._check_states(xp, h)
                rank = self.geometry.basis.shape[0]
                pairs = self.geometry.pair_reason is None
                where = (_state_xp(xp), _device(xp, h))
                self._s2 = SecondState.new(*where, *self._shape(h), rank, pairs)
            self._s2 = _place(self._s2, xp, h)
            if is_numpy(xp):  # host rows: checked at once (reading them costs nothing)
                sums = FirstPass.of_chunk(h, y, self.n_classes)  # also counts non-finite rows
                if sums.n_nonfinite:
                    raise InvalidDataError("features: pass 2 met row(s) holding NaN/Inf values")
                new = sums.counts * (self._first.counts == 0)
                if new.any():
                    raise never_seen(int(np.flatnonzero(new)[0]))
                part = SecondPass.of_chunk(self.geometry, h, y, precision=self.precision)
                self._s2.add_pass(part, sums, self.geometry, self._means, m)
            else:
                self._s2.update(
                    xp,
                    self.geometry,
                    self._means,
                    h,
                    y,
                    row0,
                    precision=self.precision,
                    ignore=ignore,
                )
            self._spectra.add(self.geometry, h, y, ignore)
        self._row += given

    def _shape(self, h: Any) -> tuple[int, int]:
        return self.n_classes, int(h.shape[1])

    def next_pass(self) -> None:
        """End pass 1: read its state once, check it, fix the means and the geometry."""
        if self.pass_number != 1:
            raise UsageError("next_pass() was already called; reset() starts again")
        values = None if self._s1 is None else self._s1.to_host()
        if values is None or int(values["n_rows"]) == 0:
            if self._row and self.ignore_index is not None:
                raise InvalidDataError(
                    f"pass 1 saw {self._row} row(s), every one labelled ignore_index = "
                    f"{self.ignore_index}: no row to measure"
                )
            raise UsageError("pass 1 saw no batch: call update() first")
        problem = problems(values, self.n_classes, 1)
        if problem:
            raise InvalidDataError(problem)
        first = FirstPass.of_state(self._s1, values)
        self._check_weights_unchanged()
        self._first = first
        self.geometry = self._geometry()
        self.pass_number = 2
        self._s2, self._row = None, 0
        self._spectra.start(first.sums.shape[1])
        if self._dump is not None:
            self._dump.finish(self.weights, self.bias)

    def compute(self):
        """The :class:`~ncinspect.results.report.SnapshotResult` of the two passes."""
        if self.pass_number != 2:
            raise UsageError("compute() needs both passes: call next_pass() after pass 1")
        if self._s2 is None:
            d, rank = self._first.sums.shape[1], self.geometry.basis.shape[0]
            pairs = self.geometry.pair_reason is None
            self._s2 = SecondState.new(NUMPY, None, self.n_classes, d, rank, pairs)
        values = self._s2.to_host()
        check_second(values, self._first.counts, self.n_classes)
        counts = np.asarray(self._first.counts, dtype=np.int64)
        check_same_rows(values, self._means, self.geometry.scale)
        self._check_weights_unchanged()
        prep = Prepared(
            features=_Rows(int(counts.sum()), self._first.sums.shape[1], self._dtype),
            codes=np.zeros(0, dtype=np.int64),
            class_names=list(range(self.n_classes)),
            weights=self.weights,
            bias=self.bias,
            n_classes_total=self.n_classes,
        )
        res = build_result(
            prep,
            self._first,
            self.geometry,
            SecondPass.of_state(self._s2, self.weights is not None, values),
            per_class=self.per_class,
            center=self.center,
            ncc_label="own",
            class_device=class_device(self._s2),
        )
        return self._spectra.finish(res, self.geometry, self._first)

    # -- several processes -------------------------------------------------------------------
    def merge(self, other: Meter) -> Meter:
        """Add ``other``'s batches (same pass, same classifier) to this meter; returns self.

        In pass 1 the class sums merge; call :meth:`next_pass` on the merged meter (and copy
        its state to the others) before pass 2. In pass 2 both meters must share pass 1
        (the same class counts and sums, bit for bit; classes absent from the data are
        fine). The states merge by their declared reductions, on this meter's device.
        """
        if other.pass_number != self.pass_number:
            raise UsageError("meters to merge must be in the same pass")
        mine, theirs = self._settings(), other._settings()
        keys = dict.fromkeys([*mine, *theirs])  # "spectra" only when on
        differ = [k.removesuffix("_sha256") for k in keys if mine.get(k) != theirs.get(k)]
        if differ:  # a classifier or the classes differ: data; an option differs: usage
            error = (
                InvalidDataError if {"n_classes", "weights", "bias"} & set(differ) else UsageError
            )
            what = ", ".join("classes" if k == "n_classes" else k for k in differ)
            raise error(f"meters to merge must have the same {what}")
        if self.pass_number == 1:
            self._s1 = merged(self._s1, other._s1)
            self._dtype = self._dtype or other._dtype
        else:
            if not same_first(self._first, other._first):
                raise InvalidDataError("meters in pass 2 must share pass 1 (the same class means)")
            self._s2 = merged(self._s2, other._s2)
            self._spectra.merge(other._spectra)
        return self

    def sibling(self) -> Meter:
        """An empty meter with this one's classifier and settings, sharing its pass 1 (when
        fixed), so that a state loaded into it keeps the geometry (no rebuild)."""
        other = Meter.__new__(Meter)
        other.__dict__.update(self.__dict__)
        other._dump = None
        other.reset()
        other._first, other.geometry = self._first, self.geometry
        return other

    def pass_state(self) -> Any:
        """The declared state of the current pass (None before its first batch)."""
        return self._s1 if self.pass_number == 1 else self._s2

    def set_pass_state(self, state: Any) -> None:
        """Replace the current pass's state (e.g. by its reduction over processes)."""
        if self.pass_number == 1:
            self._s1 = state
        else:
            self._s2 = state

    def _geometry(self):
        return between_class_geometry(
            self._first,
            center=self.center,
            weights=self.weights,
            bias=self.bias,
            min_count=self.min_class_count,
            scale_band=scale_band(self.precision),
        )

    def _settings(self) -> dict[str, Any]:
        return {
            "n_classes": self.n_classes,
            "center": self.center,
            "min_class_count": self.min_class_count,
            "precision": self.precision,
            "weights_sha256": digest(self.weights),
            "bias_sha256": digest(self.bias),
            **self._spectra.settings(),
        }

    def state_dict(self) -> dict[str, Any]:
        """The accumulated statistics and settings as plain arrays, numbers and strings.

        The fields are those the pass states declare (:mod:`ncinspect.stats.device`); a meter
        made with the same classifier and settings takes them back with
        :meth:`load_state_dict`; :func:`ncinspect.meter.state.pack` turns them into bytes.
        """
        state = encode_state(self.pass_number, self._dtype, self._settings(), self._s1, self._s2)
        return self._spectra.save(state)

    def load_state_dict(self, state: Mapping[str, Any]) -> Meter:
        """Replace this meter's statistics by those of :meth:`state_dict`; returns self.

        The state must come from a meter with the same classes, classifier and settings. In
        pass 2 the geometry is rebuilt from the state's pass 1 (kept when it is this meter's
        own pass 1). The states load on the host and move to the device of the next batch.
        """
        got = decode_state(state, self._settings())
        s1, s2 = got["first"], got["second"]
        first = None
        if got["pass_number"] == 2:
            values = s1.to_host()
            problem = problems(values, self.n_classes, 1)
            if problem:
                raise InvalidDataError(f"meter state: {problem}")
            first = FirstPass.of_state(s1, values)
        keep = self.geometry is not None and same_first(self._first, first)
        saved = (self.pass_number, self._s1, self._s2, self._dtype, self._first, self._row)
        saved_geometry = self.geometry
        try:
            self.pass_number, self._s1, self._s2 = got["pass_number"], s1, s2
            self._dtype, self._first, self._row = got["dtype"], first, 0
            if self.pass_number == 1:
                self.geometry = None
            elif not keep:
                self.geometry = self._geometry()
            if s2 is not None and self.geometry is not None:
                self._check_second_dims(s2)
            self._spectra.load(state)
        except BaseException:  # a state refused half way leaves the meter as it was
            self.pass_number, self._s1, self._s2, self._dtype, self._first, self._row = saved
            self.geometry = saved_geometry
            raise
        return self

    def _check_second_dims(self, s2) -> None:
        """A loaded pass-2 state must have the sizes this meter's geometry gives (its rank,
        its pair table), which its own fields cannot check: another meter's state."""
        rank = self.geometry.basis.shape[0]
        pairs = self.n_classes if self.geometry.pair_reason is None else 0
        got = (int(s2.proj_sq.shape[0]), int(s2.pair_sq.shape[0]))
        if got != (rank, pairs):
            raise InvalidDataError(
                f"meter state: pass 2 holds a rank-{got[0]} projection and a {got[1]}-class pair "
                f"table, but its pass 1 gives rank {rank} and {pairs}: the state is damaged"
            )

    def _check_weights_unchanged(self) -> None:
        """Weights and bias given as live tensors must not change between the passes (the
        meter measures the copies it made; a bias the optimiser moved, or one that became
        NaN, would be a classifier other than the model's, silently)."""
        for what, src, kept in (
            ("weights", self._weights_src, self.weights),
            ("bias", self._bias_src, self.bias),
        ):
            if src is None:
                continue
            now = to_host(src, what)  # a view for CPU tensors: no float64 copy
            if now.dtype.kind not in "fiub":
                now = now.astype(np.float64)
            _check_finite(
                now,
                what,
                f" ({'they were' if what == 'weights' else 'it was'} finite "
                "when the meter was made)",
            )
            if now.shape != kept.shape:
                raise InvalidDataError(
                    f"the classifier {what} changed shape since the meter was made "
                    f"({tuple(kept.shape)} -> {tuple(now.shape)}): measure with a fixed model, "
                    "or make a new Meter"
                )
            if not np.array_equal(now, kept):
                raise InvalidDataError(
                    f"the classifier {what} changed since the meter was made: measure with a "
                    "fixed model (between optimiser steps), or make a new Meter"
                )


def class_device(state: Any) -> tuple[Any, Any] | None:
    """Where :meth:`Meter.compute` runs the class-level work that grows with C: the class-pair
    sweep (O(C^2 d): NC2, GNC2, CDNV, :mod:`ncinspect.metrics.pairs_xp`) and the large-C
    d x d Grams (O(C d^2)). On the device of a state that lives on an accelerator (``(xp,
    device)``), else None: numpy on the host's threads, the faster of the two for host
    memory (numpy arrays and CPU tensors; docs/array-api.md)."""
    return None if state.in_host_memory else (state.xp, state.device)


def _taken_rows(xp: Any, h: Any, y: Any, ignore: int | None) -> tuple[Any, Any]:
    """The rows of a batch a dump gets: those not labelled ``ignore`` (host rows were
    dropped already; device rows are chosen by their labels, read on the host: the dump
    writes them there anyway)."""
    if ignore is None or is_numpy(xp):
        return h, y
    keep = np.flatnonzero(to_host(y, "labels") != ignore)
    if keep.shape[0] == h.shape[0]:
        return h, y
    index = xp.asarray(keep, device=device_of(h))
    return xp.take(h, index, axis=0), xp.take(y, index, axis=0)


def _state_xp(xp: Any) -> Any:
    return NUMPY if is_numpy(xp) else xp


def _device(xp: Any, h: Any) -> Any:
    return None if is_numpy(xp) else device_of(h)


def _place(state: Any, xp: Any, h: Any) -> Any:
    return placed(state, _state_xp(xp), _device(xp, h))


def _check_batch_form(features: Any, labels: Any) -> None:
    """What the batch checks of :func:`~ncinspect.stats.namespace.meter_batch` take for
    granted, from shapes and devices only (nothing is read): no labels on PyTorch's ``meta``
    device beside features with values, and one integer label a row (1-D: one-hot or (N, 1) labels
    made numpy's ``ValueError`` or torch's ``IndexError``)."""
    from ..errors import ShapeMismatchError

    on_meta = [
        getattr(getattr(v, "device", None), "type", None) == "meta" for v in (features, labels)
    ]
    if on_meta[1] and not on_meta[0]:  # meta features, host labels: the device path's tests
        raise UnsupportedDtypeError(
            "labels: a tensor on PyTorch's meta device holds no values (made with "
            "device='meta' and never filled), beside features with values; move the labels "
            "to the features' device"
        )
    shape = getattr(labels, "shape", None)
    if shape is None and isinstance(labels, (list, tuple)):
        shape = np.shape(np.asarray(labels, dtype=object)) if labels else (0,)
    if shape is not None and len(shape) != 1:
        raise ShapeMismatchError(
            f"labels: the Meter takes one integer label a row (shape (N,)), got shape "
            f"{tuple(int(n) for n in shape)}; for one-hot or (N, 1) labels pass "
            "labels.argmax(1) or labels.reshape(-1)"
        )


def _numeric(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype.kind not in "fiu":
        raise UnsupportedDtypeError(f"{what} have unsupported dtype {arr.dtype}: use floats")
    out = arr.astype(np.float64)
    _check_finite(out, what)
    return out


def _check_finite(arr: np.ndarray, what: str, when: str = "") -> None:
    """Refuse NaN/Inf classifier values, saying so (not that they changed: NaN != NaN)."""
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InvalidDataError(
            f"the classifier {what} {'is' if what == 'bias' else 'are'} not finite{when}: "
            f"{int(bad.sum())} NaN/Inf value(s), "
            f"first at index {first if len(first) != 1 else first[0]} (did training diverge?)"
        )
