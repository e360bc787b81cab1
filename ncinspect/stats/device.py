"""Pass states that live where the rows live: declared fields, updated without a host sync.

:class:`FirstState` and :class:`SecondState` are the two passes of
:mod:`ncinspect.stats` as :class:`~ncinspect.stats.protocol.Declared` states on the
arrays' device, in float64. Their ``update`` adds one batch with array arithmetic only: no
value is read on the host (no ``.item()``, ``bool(tensor)``, host copies or data-dependent
shapes), so a CUDA stream never waits for the Python loop. What needs values is counted on
the device and read at the end of the pass (:mod:`ncinspect.meter.checks`): non-finite rows
(left out of the sums), labels outside ``[0, C)`` or not integers (left out too). Rows
carrying the ``ignore`` label (``Meter(ignore_index=...)``) stay in the batch and are masked
out of every field on the device (:func:`_prepare`'s ``taken``): no shape depends on them. Class
sums are scatter-adds (:func:`scatter_add`: torch ``index_add_``, CuPy ``scatter_add``, JAX
``.at[].add``, numpy ``bincount``/sparse); never a dense C x rows indicator except for an
unknown array library at small C (:func:`ncinspect.stats.namespace.scatter_add`).

``FirstPass.of_state`` / ``SecondPass.of_state`` turn a state into the host
:class:`~ncinspect.stats.FirstPass` / :class:`~ncinspect.stats.SecondPass` (one copy per
dtype), from which every metric is computed exactly as for a file.

Rows in host memory (CPU tensors) skip to the numpy fast path of pass 2
(:func:`~ncinspect.stats.kernel.numpy_block`) on a zero-copy view (:func:`host_view`), whose
block sums are added to the state: the same numbers as numpy arrays, at numpy's speed.

``SecondState`` is also the array-API file path's pass 2
(:func:`ncinspect.stats.device.second_sums`): one namespace kernel for files on a device and
for the Meter, with the per-geometry constants of the numpy kernel
(:class:`~ncinspect.stats.kernel.Kernel`, placed on the device).

``precision="float32"``: rows whose float32 decision lies within the rounding bound of a
tie are decided again in float64. On the host (numpy, CPU devices) every such row is; on an
accelerator, where counting them would be a host read, the first :func:`recheck_capacity`
of each block are (a fixed shape), and the rows beyond are counted on the device
(``n_unchecked``) and refused at the end of the pass, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..blas import one_blas_thread
from ..errors import InvalidDataError
from .kernel import BlockStats, block_rows, kernel_for, numpy_block
from .namespace import (
    device_of,
    host,
    is_numpy,
    on_device,
    product32,
    scatter_add,
    take_rows,
)
from .protocol import Declared, declare, fold_moments, merge_moments
from .xp import as_float64 as _float64
from .xp import (
    as_labels,
    class_sums,
    decisions,
    gap,
    precision_gamma,
    scores_projection,
    xp_block_rows,
)

__all__ = ["FirstState", "SecondState", "second_sums", "overflow_error"]


def on_host(xp: Any, h: Any) -> bool:
    """Whether ``h`` lives in host memory (numpy, a CPU device): there reading a count is
    no synchronisation with a device."""
    if is_numpy(xp):
        return True
    dev = device_of(h)
    kind = getattr(dev, "type", None)  # torch; CuPy and JAX devices have no .type
    return kind == "cpu" if isinstance(kind, str) else "cpu" in str(dev).lower()


def _blocks(xp: Any, h: Any, n_classes: int, step: int | None = None):
    """Row ranges of a batch: cache-sized blocks on a CPU (the numpy kernels' block rows,
    :func:`ncinspect.stats.kernel.block_rows`), where the work arrays then stay in cache;
    on an accelerator the whole batch (one launch per operation is what pays), or blocks
    of ``step`` rows (the file path's memory bound)."""
    m = h.shape[0]
    if on_host(xp, h):
        step = block_rows(h.shape[1], n_classes)
    elif step is None:
        step = max(m, 1)
    return [(a, min(m, a + step)) for a in range(0, m, step)] or [(0, 0)]


def host_view(xp: Any, a: Any) -> np.ndarray | None:
    """A zero-copy numpy view of ``a`` when it lies in host memory with a numpy dtype
    (numpy, CPU torch tensors), else None (device arrays, bfloat16)."""
    if isinstance(a, np.ndarray):
        return a
    if not on_host(xp, a):
        return None
    try:
        return np.from_dlpack(a)
    except (TypeError, RuntimeError, BufferError, AttributeError):
        return None


def _put(xp: Any, a: Any, like: Any) -> Any:
    """Host values ``a`` as an array of ``like``'s namespace, dtype and device."""
    if isinstance(like, np.ndarray):
        return np.asarray(a, dtype=like.dtype)
    return xp.asarray(
        np.asarray(a, dtype=str(like.dtype).rsplit(".", 1)[-1]), device=device_of(like)
    )


def recheck_capacity(m: int) -> int:
    """Rows of a block of ``m`` rows decided again in float64 on an accelerator (float32
    mode): a fixed shape, so no count is read; 1/8 of the rows (at least 64)."""
    return min(m, max(64, -(-m // 8)))


@dataclass
class _Rows:
    """One batch prepared on its device: float64 rows, safe labels, the checks' counts.

    Rows that are not finite or carry a bad label are *not* removed: the pass is refused
    at its end whenever one was seen, so what they add to the sums is never used."""

    ys: Any  # (m,) int64 labels, bad ones replaced by 0 (safe to index with)
    ok: Any  # (m,) bool: the label is an integer in [0, C)
    good: Any  # (m,) bool: ok and the row is finite
    n_bad_rows: Any  # () int64 non-finite rows
    first_bad: Any  # () int64 index of the first non-finite row (+ row0), or int64 max
    lo: Any  # () int64 smallest label (as an integer)
    hi: Any  # () int64 largest label
    n_fractional: Any  # () int64 labels that are not integers
    #: (m,) bool: the label is not the ignored one (None: no ``ignore_index``, every row)
    taken: Any = None
    n_taken: Any = None  # () int64 rows taken (None: all m)

    def taken_only(self, xp: Any, a: Any, rows: Any, zero: Any) -> Any:
        """``rows`` (rows ``a:a+len(rows)`` of the batch, float64) with the ignored rows
        made 0: what they add to a sum is then nothing (also when they hold NaN/Inf)."""
        if self.taken is None:
            return rows
        return xp.where(self.taken[a : a + rows.shape[0], None], rows, zero)


_BIG = int(np.iinfo(np.int64).max)
#: batches whose SQI rows a pass-2 state keeps before it folds them (SecondState.settle)
FOLD_EVERY = 64


def _finite_rows(xp: Any, h: Any) -> Any:
    """(m,) bool: rows without NaN/Inf. ``sum(h * 0)`` is 0 exactly for a finite row and NaN
    otherwise (never a false alarm from an overflowing sum); one cheap pass in h's dtype."""
    if not xp.isdtype(h.dtype, "real floating"):
        return xp.ones((h.shape[0],), dtype=xp.bool, device=device_of(h))
    return xp.sum(h * 0, axis=1) == 0


_CONSTANTS: dict = {}


def _constants(xp: Any, device: Any) -> tuple[Any, Any]:
    """The int64 0-d arrays ``(2^63 - 1, 0)`` on ``device``, made there once (a kernel each
    on every batch otherwise; they are only read)."""
    key = (getattr(xp, "__name__", str(xp)), str(device))
    found = _CONSTANTS.get(key)
    if found is None:
        if len(_CONSTANTS) > 16:
            _CONSTANTS.clear()
        found = _CONSTANTS[key] = (
            xp.full((), _BIG, dtype=xp.int64, device=device),
            xp.zeros((), dtype=xp.int64, device=device),
        )
    return found


def _prepare(
    xp: Any, h: Any, y: Any, n_classes: int, row0: int, ignore: int | None = None
) -> _Rows:
    """The labels and checks of a whole batch (the float64 rows are made block by block).

    ``ignore``: rows with this label are not taken: no class row (``ok`` False), no check
    (their label is neither out of range nor fractional, their NaN/Inf not counted), not in
    ``n_rows``; the kernels leave them out of every sum by ``taken`` (a mask on the device:
    no shape depends on it, nothing is read on the host)."""
    device = device_of(h)
    _float64(xp, h[:0, ...], "features")  # the dtype check, on no rows
    m = h.shape[0]
    big, zero = _constants(xp, device)
    skip = frac = None
    if y.dtype == xp.bool or xp.isdtype(y.dtype, "integral"):
        yi = y if y.dtype == xp.int64 else xp.astype(y, xp.int64)
        if ignore is not None:
            skip = yi == ignore
        n_frac = zero
    else:  # floating labels: integers in value; others are counted, refused at the pass end
        frac = ~((xp.round(y) == y) & xp.isfinite(y))
        if ignore is not None:
            skip = y == float(ignore)
            frac = frac & ~skip
        safe = xp.where(frac, xp.zeros_like(y), xp.clip(y, -(2.0**62), 2.0**62))
        yi = xp.astype(safe, xp.int64)
        n_frac = xp.sum(xp.astype(frac, xp.int64))
    ok = (yi >= 0) & (yi < n_classes)
    out = frac if skip is None else (skip if frac is None else frac | skip)  # no label range
    if out is not None:
        ok = ok & ~out
    if m == 0:
        lo, hi = big, -big - 1
    elif out is None:
        lo, hi = xp.min(yi), xp.max(yi)
    else:
        lo, hi = xp.min(xp.where(out, big, yi)), xp.max(xp.where(out, -big - 1, yi))
    finite = _finite_rows(xp, h)
    ys = xp.where(ok, yi, zero)
    bad = ~finite if skip is None else ~finite & ~skip
    rows = xp.arange(row0, row0 + m, dtype=xp.int64, device=device)
    first_bad = xp.min(xp.where(bad, rows, big)) if m else big
    n_bad = xp.sum(xp.astype(bad, xp.int64))
    taken = n_taken = None
    if skip is not None:
        taken = ~skip
        n_taken = xp.sum(xp.astype(taken, xp.int64))
    return _Rows(ys, ok, ok & finite, n_bad, first_bad, lo, hi, n_frac, taken, n_taken)


@dataclass
class _Checked(Declared):
    """The fields both passes count for the checks read at the end of a pass."""

    n_rows: Any = declare("sum", (), "int64")
    n_nonfinite: Any = declare("sum", (), "int64")
    first_nonfinite: Any = declare("min", (), "int64")
    label_min: Any = declare("min", (), "int64")
    label_max: Any = declare("max", (), "int64")
    n_fractional: Any = declare("sum", (), "int64")
    #: each batch's check counts since the last :meth:`settle`, one (5,) int64 row:
    #: [non-finite rows, first of them, smallest label, largest, fractional labels], folded
    #: every :data:`FOLD_EVERY` batches and before any read (one kernel a batch, not five)
    checks: list = field(default_factory=list, repr=False, compare=False)

    def _count(self, b: _Rows, m: int) -> None:
        self.n_rows = self.n_rows + (m if b.n_taken is None else b.n_taken)
        xp = self.xp
        self.checks.append(xp.stack([b.n_bad_rows, b.first_bad, b.lo, b.hi, b.n_fractional]))
        if len(self.checks) >= FOLD_EVERY:
            self.settle()

    def settle(self) -> None:
        """Fold the pending check rows into the fields."""
        if not self.checks:
            return
        xp = self.xp
        rows = xp.stack(self.checks)  # (k, 5): see _count
        self.checks = []
        low = xp.min(rows[:, 1:3], axis=0)
        self.n_nonfinite = self.n_nonfinite + xp.sum(rows[:, 0])
        self.first_nonfinite = xp.minimum(self.first_nonfinite, low[0])
        self.label_min = xp.minimum(self.label_min, low[1])
        self.label_max = xp.maximum(self.label_max, xp.max(rows[:, 3]))
        self.n_fractional = self.n_fractional + xp.sum(rows[:, 4])


@dataclass
class FirstState(_Checked):
    """Pass 1 on the device: class counts and float64 class sums (+ the checks' counts)."""

    counts: Any = declare("sum", ("C",), "int64")
    sums: Any = declare("sum", ("C", "d"), "float64")

    @classmethod
    def new(cls, xp: Any, device: Any, n_classes: int, n_features: int) -> FirstState:
        return cls.empty(xp, device, C=n_classes, d=n_features)

    def update(
        self, xp: Any, h: Any, y: Any, row0: int = 0, ignore: int | None = None
    ) -> FirstState:
        """Add a batch (``h`` (m, d), ``y`` (m,) on the state's device); returns self.
        Rows labelled ``ignore`` add nothing (see :func:`_prepare`)."""
        C = self.counts.shape[0]
        b = _prepare(xp, h, y, C, row0, ignore)
        self._count(b, h.shape[0])
        self.counts = scatter_add(xp, self.counts, b.ys, xp.astype(b.ok, xp.int64))
        zero = None if b.taken is None else xp.zeros((), dtype=xp.float64, device=device_of(h))
        for a, z in _blocks(xp, h, C):
            if b.taken is None:
                self.sums = class_sums(xp, self.sums, h[a:z, ...], b.ys[a:z], max(z - a, 1))
            else:  # the ignored rows as zeros (their label became class 0)
                rows = b.taken_only(xp, a, _float64(xp, h[a:z, ...], "features"), zero)
                self.sums = scatter_add(xp, self.sums, b.ys[a:z], rows)
        return self

    def add_pass(self, part: Any, n_rows: int) -> FirstState:
        """Add a host :class:`FirstPass` of ``n_rows`` checked rows (numpy states only)."""
        if part.sum_scale != 1.0:
            raise overflow_error()
        self.n_rows = self.n_rows + n_rows
        self.n_nonfinite = self.n_nonfinite + part.n_nonfinite
        if part.first_nonfinite_row is not None:
            self.first_nonfinite = np.minimum(self.first_nonfinite, part.first_nonfinite_row)
        self.counts = self.counts + part.counts
        self.sums = self.sums + part.sums
        return self


def overflow_error() -> InvalidDataError:
    """The Meter's refusal of class sums beyond float64 (it keeps unscaled sums)."""
    return InvalidDataError(
        "features: the class sums overflow float64 (values near 1e308): the Meter keeps "
        "unscaled sums; divide the features by a power of two, or analyse the rows from a file"
    )


@dataclass
class SecondState(_Checked):
    """Pass 2 on the device: the fields of :class:`~ncinspect.stats.SecondPass` as arrays,
    plus pass 2's own class counts and residual sums (to check it saw pass 1's rows)."""

    proj_sq: Any = declare("sum", ("r",), "float64")
    class_sq: Any = declare("sum", ("C",), "float64")
    ncc_correct: Any = declare("sum", ("C",), "int64")
    clf_correct: Any = declare("sum", ("C",), "int64")
    agree: Any = declare("sum", ("C",), "int64")
    outputs: Any = declare("moments", (2, 3), "float64")  # true-class, wrong-class moments
    sq_err: Any = declare("sum", (), "float64")
    max_abs_err: Any = declare("max", (), "float64")
    out_abs_max: Any = declare("max", (), "float64")
    n_rechecked: Any = declare("sum", (), "int64")
    n_unchecked: Any = declare("sum", (), "int64")  # near ties beyond the recheck capacity
    pair_sq: Any = declare("sum", ("P", "P"), "float64")  # directional table; P = 0: none
    seen: Any = declare("sum", ("C",), "int64")
    resid: Any = declare("sum", ("C", "d"), "float64")  # sum of e = h / scale - mu_y / scale
    #: the SQI sums of the batches since the last :meth:`settle`, one (9,) row each
    #: (:meth:`_outputs`): folded into ``outputs``, ``sq_err`` and the two largest values
    #: every :data:`FOLD_EVERY` batches and before any read, so that a batch costs one
    #: kernel for them, not some twenty for a merge of scalars (not a declared field)
    pending: list = field(default_factory=list, repr=False, compare=False)

    def settle(self) -> None:
        """Fold the pending check and SQI rows into the fields (one merge of them all)."""
        super().settle()
        if not self.pending:
            return
        xp = self.xp
        rows = xp.stack(self.pending)  # (k, 9): see _outputs
        self.pending = []
        moments = xp.reshape(rows[:, :6], (rows.shape[0], 2, 3))
        self.outputs = fold_moments(xp, self.outputs, moments)
        nw, w_mean = rows[:, 3], rows[:, 4]
        self.sq_err = self.sq_err + xp.sum(rows[:, 5] + nw * w_mean * w_mean + rows[:, 6])
        top = xp.max(rows[:, 7:], axis=0)
        self.out_abs_max = xp.maximum(self.out_abs_max, top[0])
        self.max_abs_err = xp.maximum(self.max_abs_err, top[1])

    @classmethod
    def new(cls, xp, device, n_classes: int, n_features: int, rank: int, pairs: bool = False):
        """Empty; ``pairs``: with the directional C x C table (``geom.pair_reason is None``)."""
        P = n_classes if pairs else 0
        s = cls.empty(xp, device, C=n_classes, d=n_features, r=rank, P=P)
        s.max_abs_err = xp.zeros_like(s.max_abs_err)
        s.out_abs_max = xp.zeros_like(s.out_abs_max)
        return s

    def update(
        self,
        xp: Any,
        geom: Any,
        means: np.ndarray,
        h: Any,
        y: Any,
        row0: int = 0,
        *,
        precision: str = "float64",
        outputs: Any = None,
        step: int | None = None,
        check: bool = True,
        sync_free: bool = True,
        ignore: int | None = None,
    ) -> SecondState:
        """Add a batch given pass 1's :class:`~ncinspect.stats.Geometry` and class means
        (host (C, d), NaN for a class without rows); returns self.

        ``outputs``: stored (m, C) outputs (the file path): the classifier decisions and
        SQI sums come from them when there is no classifier. ``step``: rows per block on an
        accelerator (default the whole batch). ``check``: also the residual sums that
        :func:`ncinspect.meter.checks.check_same_rows` reads. ``sync_free``: the float32
        recheck of an accelerator keeps a fixed shape (False: the file path, which reads its
        sums back anyway, rechecks every flagged row). ``ignore``: rows with this label add
        nothing to any field (see :func:`_prepare`)."""
        C, m = geom.n_classes, h.shape[0]
        b = _prepare(xp, h, y, C, row0, ignore)
        self._count(b, m)
        self.seen = scatter_add(xp, self.seen, b.ys, xp.astype(b.ok, xp.int64))
        if m == 0:
            return self
        rows = host_view(xp, h) if precision == "float64" and outputs is None else None
        if rows is not None:  # host memory: the numpy fast path on a view of the rows
            self._host_rows(xp, geom, means, (h, rows), b, check)
            return self
        g = kernel_for(geom, True).placed(xp, device_of(h))
        keep = b.good if g.all_present else b.good & take_rows(xp, g.present, b.ys)
        zero = xp.zeros((), dtype=xp.float64, device=device_of(h))
        cap = sync_free and not on_host(xp, h)
        cm = _class_means(xp, g, means)
        for a, z in _blocks(xp, h, C, step):
            hf = _float64(xp, h[a:z, ...], "features")
            out = None if outputs is None else _float64(xp, outputs[a:z, ...], "outputs")
            blk = (hf, b.ys[a:z], keep[a:z], out, (b, a))
            self._block(xp, g, cm, blk, zero, precision == "float32", cap, check)
        return self

    def _host_rows(self, xp, geom, means, hr, b, check) -> None:
        """A batch in host memory (a CPU tensor) through :func:`numpy_block` on a zero-copy
        numpy view, block by block as for a file, each block's sums added to this state.
        Rows with a bad label or NaN/Inf are left out (the pass is refused at its end)."""
        h, rows = hr  # the batch and its numpy view
        # a library may refuse a dtype through DLPack (bool on some torch builds): copy then
        ys, good = (host_view(xp, v) for v in (b.ys, b.good))
        ys = host(b.ys) if ys is None else ys
        good = host(b.good) if good is None else good
        if not good.all():
            rows, ys = rows[good], ys[good]
        kern = kernel_for(geom, True)
        C, n = geom.n_classes, rows.shape[0]
        step = block_rows(rows.shape[1], C)
        # numpy's BLAS beside the tensor library's own thread pool: both pools spinning on
        # the same cores made this 3-4x slower (torch CPU, 2 threads); BLAS keeps one thread
        with one_blas_thread():
            for a in range(0, n, step):
                blk = rows[a : a + step], ys[a : a + step]
                part, pairs = numpy_block(kern, *blk, None, min(step, n), BlockStats.empty)
                self._add_block(xp, part, pairs)
            if check:  # residual sums by class (pass 2's class means minus pass 1's)
                self._host_resid(xp, kern, means, h, b)

    def _host_resid(self, xp, kern, means, h, b) -> None:
        """``resid`` += the residuals ``h / scale - means_y / scale`` summed by class, by the
        namespace's scatter-adds over cache-sized blocks (torch ``index_add_``: faster on a
        CPU than a sparse indicator; work in m x d, no C x d temporary)."""
        cached = getattr(kern, "host_means", None)
        where = (type(self.resid), str(device_of(self.resid)))
        if cached is None or cached[0] is not means or cached[2] != where:
            m = np.where(np.isfinite(means), means, 0.0) / (1.0 / kern.inv_scale)
            kern.host_means = cached = (means, _put(xp, m, self.resid), where)
        zero = None if b.taken is None else xp.zeros((), dtype=xp.float64, device=device_of(h))
        for a, z in _blocks(xp, h, self.resid.shape[0]):
            hf = _float64(xp, h[a:z, ...], "features")
            hs = hf if kern.inv_scale == 1.0 else hf * kern.inv_scale
            e = b.taken_only(xp, a, hs - take_rows(xp, cached[1], b.ys[a:z]), zero)
            self.resid = scatter_add(xp, self.resid, b.ys[a:z], e)

    def _add_block(self, xp, part: Any, pairs: Any = None) -> None:
        """Add one block's host statistics (:class:`~ncinspect.stats.kernel.BlockStats`;
        ``pairs``: its ``(classes, sums)`` of the directional table) to this state."""
        self.settle()
        like = self.class_sq
        if self.proj_sq.shape[0]:
            self.proj_sq = self.proj_sq + _put(xp, part.proj_sq, like)
        self.class_sq = self.class_sq + _put(xp, part.class_sq, like)
        for name in ("ncc_correct", "clf_correct", "agree"):
            value = _put(xp, np.asarray(getattr(part, name), np.int64), self.seen)
            setattr(self, name, getattr(self, name) + value)
        if part.has_outputs:
            mo = [[m.count, m.mean, m.m2] for m in (part.true_out, part.wrong_out)]
            self.outputs = merge_moments(xp, self.outputs, _put(xp, mo, like))
            self.sq_err = self.sq_err + part.sq_err
            self.max_abs_err = xp.maximum(self.max_abs_err, _put(xp, part.max_abs_err, like))
            self.out_abs_max = xp.maximum(self.out_abs_max, _put(xp, part.out_abs_max, like))
        if pairs is not None and self.pair_sq.shape[0]:
            classes, sums = pairs
            idx = _put(xp, np.asarray(classes, np.int64), self.seen)
            self.pair_sq = scatter_add(xp, self.pair_sq, idx, _put(xp, sums, like))

    def _block(self, xp, g, class_means, blk, zero, f32, cap, check) -> None:
        """The one pass-2 kernel of a block of rows, on any namespace and device."""
        hf, ys, keep, outputs, (rows, a) = blk  # rows: the batch's _Rows, a: block start
        C, r = g.n_classes, g.rank
        hs = hf if g.inv_scale == 1.0 else hf * g.inv_scale  # exact power-of-two scaling
        # e = (h - mu_y) / scale from pass 1's class means (also of classes below min_count)
        e = hs - take_rows(xp, class_means, ys)
        hc = None if g.from_scores and not f32 else hs - g.mu_scaled[None, :]  # h' (decisions)
        if check:  # residual sums by class: pass 2's class means minus pass 1's
            self.resid = scatter_add(xp, self.resid, ys, rows.taken_only(xp, a, e, zero))
        scores, proj, es = scores_projection(xp, g, e, hc, ys, C, r, f32)
        onehot = g.classes == ys[:, None]  # (m, C): the row's own class (one kernel)
        if self.pair_sq.shape[0]:  # the directional table (ncinspect.stats.pairs)
            self._pairs(xp, g, e, es, (ys, onehot), keep, zero, f32)
        if r:
            self.proj_sq = self.proj_sq + xp.sum(xp.where(keep[:, None], proj * proj, zero), axis=0)
        sq = xp.where(keep, xp.sum(e * e, axis=1), zero)
        self.class_sq = scatter_add(xp, self.class_sq, ys, sq)

        zeros = xp.all(hf == 0.0, axis=1) if g.has_w else None  # dead rows: logits b
        dist, ncc, logits, clf_out, clf = decisions(xp, g, scores, C, g.has_w, outputs, zeros)
        self._count_ok(xp, ys, keep, ncc, clf)
        if f32:
            if hc is None:
                hc = hs - g.mu_scaled[None, :]
            decided = (dist, ncc, logits, clf)
            self._recheck(xp, g, (hs, hc), ys, keep, decided, outputs, cap, zeros)
        out = outputs
        if out is None and logits is not None:
            s_h, s_w = g.logit_scales
            out = logits * (s_h * s_w) if s_h * s_w != 1.0 else logits
        if out is not None:
            self._outputs(xp, out, onehot, keep, zero)

    def _count_ok(self, xp, ys, keep, ncc, clf, before=None) -> None:
        """Add the correct and agreeing decisions of the rows ``keep`` marks. ``before``:
        the ``(ncc, clf)`` decided earlier for the same rows, whose counts these replace
        (added as the difference: one scatter per count)."""

        def add(acc, ok, was):
            v = xp.astype(ok & keep, xp.int64)
            if was is not None:
                v = v - xp.astype(was & keep, xp.int64)
            return scatter_add(xp, acc, ys, v)

        was_ncc = was_clf = was_agree = None
        if before is not None:
            old_ncc, old_clf = before
            was_ncc = old_ncc == ys
            if clf is not None:
                was_clf, was_agree = old_clf == ys, old_clf == old_ncc
        self.ncc_correct = add(self.ncc_correct, ncc == ys, was_ncc)
        if clf is not None:
            self.clf_correct = add(self.clf_correct, clf == ys, was_clf)
            self.agree = add(self.agree, clf == ncc, was_agree)

    def _pairs(self, xp, g, e, es, labels, keep, zero, f32) -> None:
        """Per class c and every c', the sum over kept rows of c of (e . m'_c - e . m'_c')^2
        (``labels``: the rows' classes and their one-hot (m, C) mask)."""
        ys, onehot = labels
        if es is None:
            cen_t = xp.permute_dims(g.centred, (1, 0))
            if f32:
                es = product32(xp, e, xp.astype(cen_t, xp.float32))
            else:
                es = e @ cen_t
        own = xp.sum(xp.where(onehot, es, zero), axis=1)
        diff = xp.where(keep[:, None], own[:, None] - es, zero)
        self.pair_sq = scatter_add(xp, self.pair_sq, ys, diff * diff)

    def _recheck(self, xp, g, rows_hc, ys, keep, decided, outputs, cap, zeros=None) -> None:
        """Float32 mode: rows within the rounding bound of a tie decided again in float64;
        their counts are taken back and added again. ``cap``: a fixed number of rows
        (:func:`recheck_capacity`, no host read), the rest counted in ``n_unchecked``.
        ``rows_hc``: the rows ``h / scale`` and ``h'``; NCC is decided again from ``h'``, the
        classifier from ``W h + b`` as the definition reads it (at an exact tie, the first
        largest: the numpy kernel's :func:`~ncinspect.stats.kernel.tie_rows`)."""
        hs, hc = rows_hc
        dist, ncc, logits, clf = decided
        C, m = dist.shape[1], dist.shape[0]
        rows_norm = xp.sqrt(xp.sum(hc * hc, axis=1))
        bound = 2.0 * precision_gamma(hc.shape[1]) * rows_norm
        flag = gap(xp, dist, ncc, False, g.classes) <= 2.0 * bound * g.centre_norm
        if logits is not None:
            flag = flag | (
                gap(xp, logits, clf, True, g.classes) <= bound * g.weight_norm * abs(g.score_factor)
            )
        flag = flag & keep
        if cap:  # the flagged rows first (a stable sort), a fixed number of them
            k = recheck_capacity(m)
            idx = xp.argsort(xp.astype(~flag, xp.int8), stable=True)[:k]
            valid = take_rows(xp, flag, idx)
            n_flag = xp.sum(xp.astype(flag, xp.int64))
            n_done = xp.sum(xp.astype(valid, xp.int64))
            self.n_unchecked = self.n_unchecked + (n_flag - n_done)
        else:  # on the host: every flagged row
            idx = xp.nonzero(flag)[0]
            valid = xp.ones(idx.shape, dtype=xp.bool, device=device_of(flag))
            n_done = idx.shape[0]
        self.n_rechecked = self.n_rechecked + n_done
        y_x = take_rows(xp, ys, idx)
        kept = take_rows(xp, keep, idx) & valid
        was = (take_rows(xp, ncc, idx), None if clf is None else take_rows(xp, clf, idx))
        sub = take_rows(xp, hc, idx)
        sub_out = None if outputs is None else take_rows(xp, outputs, idx)
        sub_zeros = None if zeros is None else take_rows(xp, zeros, idx)
        _, ncc_x, _, _, clf_x = decisions(xp, g, sub @ g.decide, C, g.has_w, sub_out, sub_zeros)
        if g.has_w:  # the classifier from W h + b itself: exact ties go to the first largest
            direct = take_rows(xp, hs, idx) @ g.decide[:, C:]
            if g.score_factor != 1.0:
                direct = direct * g.score_factor
            if g.bias_units is not None:
                direct = direct + g.bias_units[None, :]
            clf_d = xp.argmax(direct, axis=1)
            if g.clf_twins is not None:
                clf_d = xp.take(g.clf_twins, clf_d)
            clf_x = xp.where(xp.all(xp.isfinite(direct), axis=1), clf_d, clf_x)
        self._count_ok(xp, y_x, kept, ncc_x, clf_x, was)  # the float64 decisions replace them

    def _outputs(self, xp, out, onehot, keep, zero) -> None:
        """The SQI sums of the kept rows' outputs, as the numpy kernel forms them
        (:func:`ncinspect.stats.blocks.output_sums`), merged on the device. ``onehot``: (m,
        C), each row's own class. The block's sums are taken together (one stacked
        reduction for the counts and totals, one for the squares, one for the largest
        values): on a GPU a batch costs a kernel launch per operation, so the fewer the
        better (benchmarks/bench_device.py prints their count)."""
        C = out.shape[1]
        # by where, not by a 0/1 product: a left-out row's NaN/Inf output adds nothing
        true = xp.sum(xp.where(onehot, out, zero), axis=1)  # f_{y_i}(x_i), exact
        t_kept = xp.where(keep, true, zero)
        off = onehot | ~keep[:, None]  # not a wrong-class output of a kept row
        wrong = xp.where(off, zero, out)
        f64 = xp.float64
        # [n, sum of true outputs, sum of wrong ones]; [n, n (C - 1)]; the two means
        s1 = xp.sum(xp.stack([xp.astype(keep, f64), t_kept, xp.sum(wrong, axis=1)]), axis=1)
        counts = xp.stack([s1[0], s1[0] * (C - 1)])
        means = s1[1:] / xp.clip(counts, min=1.0)
        dt = xp.where(keep, true - means[0], zero)
        dw = xp.where(off, zero, out - means[1])
        t_err = xp.where(keep, true - 1.0, zero)
        rows = xp.stack([dt, t_err])
        s2 = xp.sum(rows * rows, axis=1)  # [true m2, sum of (f_y - 1)^2]
        w_m2 = xp.sum(dw * dw)
        # [largest |f_y| of a kept row, largest |f_y - 1|], each against the largest wrong |f|
        top = xp.maximum(xp.max(xp.abs(wrong)), xp.max(xp.abs(xp.stack([t_kept, t_err])), axis=1))
        # one row: [true moments, wrong moments, sum of (f_y - 1)^2, the two largest]
        part = [counts[0], means[0], s2[0], counts[1], means[1], w_m2, s2[1], top[0], top[1]]
        self.pending.append(xp.stack(part))
        if len(self.pending) >= FOLD_EVERY:
            self.settle()

    def add_pass(
        self, part: Any, sums: Any, geom: Any, means: np.ndarray, n_rows: int
    ) -> SecondState:
        """Add host pass-2 statistics of ``n_rows`` checked rows (numpy states only)."""
        if sums.sum_scale != 1.0:
            raise overflow_error()
        self.settle()
        xp = self.xp
        self.n_rows = self.n_rows + n_rows
        for name in ("proj_sq", "class_sq", "ncc_correct", "clf_correct", "agree"):
            setattr(self, name, getattr(self, name) + getattr(part, name))
        if part.has_outputs:
            mo = [[m.count, m.mean, m.m2] for m in (part.true_out, part.wrong_out)]
            self.outputs = merge_moments(xp, self.outputs, np.array(mo, dtype=np.float64))
            self.sq_err = self.sq_err + part.sq_err
            self.max_abs_err = np.maximum(self.max_abs_err, part.max_abs_err)
            self.out_abs_max = np.maximum(self.out_abs_max, part.out_abs_max)
        if part.pair_sq is not None and self.pair_sq.shape[0]:
            self.pair_sq = self.pair_sq + part.pair_sq
        self.seen = self.seen + sums.counts
        inv = 1.0 / geom.scale
        m = np.where(np.isfinite(means), means, 0.0)
        self.resid = self.resid + (sums.sums * inv - sums.counts[:, None] * (m * inv))
        return self


def second_sums(
    xp: Any,
    geom: Any,
    h: Any,
    y: Any,
    outputs: Any = None,
    *,
    precision: str = "float64",
):
    """Pass 2 of one chunk on the arrays' device: the Meter's pass-2 state
    (:class:`SecondState`, the one namespace kernel) over the rows,
    in blocks of :func:`xp_block_rows` rows, read back once. Returns the state
    (:meth:`ncinspect.stats.SecondPass.of_state` gives the host statistics)."""
    device = device_of(h)
    y = as_labels(xp, y, device)
    if outputs is not None and isinstance(outputs, np.ndarray):
        outputs = on_device(xp, outputs, device)
    C, r = geom.n_classes, geom.basis.shape[0]
    state = SecondState.new(xp, device, C, h.shape[1], r, geom.pair_reason is None)
    step = xp_block_rows(h.shape[1], C)
    return state.update(
        xp,
        geom,
        geom.means,
        h,
        y,
        precision=precision,
        outputs=outputs,
        step=step,
        check=False,
        sync_free=False,
    )


def _class_means(xp: Any, g: Any, means: np.ndarray) -> Any:
    """(C, d) pass-1 class means / scale on the device (0 for a class without rows): the
    placed kernel's, unless ``means`` differ from the geometry's (cached then)."""
    cached = getattr(g, "given_means", None)
    if cached is not None and cached[0] is means:
        return cached[1]
    m = np.where(np.isfinite(means), means, 0.0) / (1.0 / g.inv_scale)
    g.given_means = (means, on_device(xp, m, device_of(g.centred)))
    return g.given_means[1]
