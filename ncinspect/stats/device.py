"""Pass states that live where the rows live: declared fields, updated without a host sync.

:class:`FirstState` and :class:`SecondState` are the two passes of
:mod:`ncinspect.stats` as :class:`~ncinspect.stats.protocol.Declared` states on the
arrays' device, in float64. Their ``update`` adds one batch with array arithmetic only: no
value is read on the host (no ``.item()``, ``bool(tensor)``, host copies or data-dependent
shapes), so a CUDA stream never waits for the Python loop. What needs values is counted on
the device and read at the end of the pass (:mod:`ncinspect.meter.checks`): non-finite rows
(left out of the sums), labels outside ``[0, C)`` or not integers (left out too). Class
sums are scatter-adds (:func:`scatter_add`: torch ``index_add_``, CuPy ``scatter_add``, JAX
``.at[].add``, numpy ``bincount``/sparse); never a dense C x rows indicator except for an
unknown array library at small C (:func:`ncinspect.stats.namespace.scatter_add`).

``to_first_pass`` / ``to_second_pass`` turn a state into the host
:class:`~ncinspect.stats.FirstPass` / :class:`~ncinspect.stats.SecondPass` (one copy per
dtype), from which every metric is computed exactly as for a file.

``precision="float32"`` keeps one host read per batch: the number of rows near a tie,
decided again in float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidDataError
from .blocks import Moments
from .kernel import block_rows
from .namespace import device_of, scatter_add
from .passes import FirstPass, SecondPass
from .protocol import Declared, declare, merge_moments
from .xp import as_float64 as _float64
from .xp import decisions as _decisions
from .xp import device_geometry as _device_geometry
from .xp import gap as _gap
from .xp import patch as _patch
from .xp import precision_gamma, scores_projection

__all__ = ["FirstState", "SecondState"]


def _blocks(xp: Any, h: Any, n_classes: int):
    """Row ranges of a batch: cache-sized blocks on a CPU (the numpy kernels' block rows,
    :func:`ncinspect.stats.kernel.block_rows`), where the work arrays then stay in cache;
    the whole batch on an accelerator, where one launch per operation is what pays."""
    m = h.shape[0]
    dev = device_of(h)
    kind = getattr(dev, "type", None)  # torch; CuPy and JAX devices have no .type
    on_host = kind == "cpu" if isinstance(kind, str) else "cpu" in str(dev).lower()
    step = block_rows(h.shape[1], n_classes) if on_host else max(m, 1)
    return [(a, min(m, a + step)) for a in range(0, m, step)] or [(0, 0)]


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


_BIG = int(np.iinfo(np.int64).max)


def _finite_rows(xp: Any, h: Any) -> Any:
    """(m,) bool: rows without NaN/Inf. ``sum(h * 0)`` is 0 exactly for a finite row and NaN
    otherwise (never a false alarm from an overflowing sum); one cheap pass in h's dtype."""
    if not xp.isdtype(h.dtype, "real floating"):
        return xp.ones((h.shape[0],), dtype=xp.bool, device=device_of(h))
    return xp.sum(h * 0, axis=1) == 0


def _prepare(xp: Any, h: Any, y: Any, n_classes: int, row0: int) -> _Rows:
    """The labels and checks of a whole batch (the float64 rows are made block by block)."""
    device = device_of(h)
    _float64(xp, h[:0, ...], "features")  # the dtype check, on no rows
    m = h.shape[0]
    big = xp.full((), _BIG, dtype=xp.int64, device=device)
    if y.dtype == xp.bool or xp.isdtype(y.dtype, "integral"):
        yi = xp.astype(y, xp.int64)
        ok = (yi >= 0) & (yi < n_classes)
        n_frac = xp.zeros((), dtype=xp.int64, device=device)
        lo = xp.min(yi) if m else big
        hi = xp.max(yi) if m else -big - 1
    else:  # floating labels: integers in value; others are counted, refused at the pass end
        frac = ~((xp.round(y) == y) & xp.isfinite(y))
        safe = xp.where(frac, xp.zeros_like(y), xp.clip(y, -(2.0**62), 2.0**62))
        yi = xp.astype(safe, xp.int64)
        ok = ~frac & (yi >= 0) & (yi < n_classes)
        n_frac = xp.sum(xp.astype(frac, xp.int64))
        lo = xp.min(xp.where(frac, big, yi)) if m else big
        hi = xp.max(xp.where(frac, -big - 1, yi)) if m else -big - 1
    finite = _finite_rows(xp, h)
    ys = xp.where(ok, yi, xp.zeros_like(yi))
    bad = ~finite
    rows = xp.arange(row0, row0 + m, dtype=xp.int64, device=device)
    first_bad = xp.min(xp.where(bad, rows, big)) if m else big
    n_bad = xp.sum(xp.astype(bad, xp.int64))
    return _Rows(ys, ok, ok & finite, n_bad, first_bad, lo, hi, n_frac)


@dataclass
class _Checked(Declared):
    """The fields both passes count for the checks read at the end of a pass."""

    n_rows: Any = declare("sum", (), "int64")
    n_nonfinite: Any = declare("sum", (), "int64")
    first_nonfinite: Any = declare("min", (), "int64")
    label_min: Any = declare("min", (), "int64")
    label_max: Any = declare("max", (), "int64")
    n_fractional: Any = declare("sum", (), "int64")

    def _count(self, b: _Rows, m: int) -> None:
        self.n_rows = self.n_rows + m
        self.n_nonfinite = self.n_nonfinite + b.n_bad_rows
        xp = self.xp
        self.first_nonfinite = xp.minimum(self.first_nonfinite, b.first_bad)
        self.label_min = xp.minimum(self.label_min, b.lo)
        self.label_max = xp.maximum(self.label_max, b.hi)
        self.n_fractional = self.n_fractional + b.n_fractional


@dataclass
class FirstState(_Checked):
    """Pass 1 on the device: class counts and float64 class sums (+ the checks' counts)."""

    counts: Any = declare("sum", ("C",), "int64")
    sums: Any = declare("sum", ("C", "d"), "float64")

    @classmethod
    def new(cls, xp: Any, device: Any, n_classes: int, n_features: int) -> FirstState:
        return cls.empty(xp, device, C=n_classes, d=n_features)

    def update(self, xp: Any, h: Any, y: Any, row0: int = 0) -> FirstState:
        """Add a batch (``h`` (m, d), ``y`` (m,) on the state's device); returns self."""
        C = self.counts.shape[0]
        b = _prepare(xp, h, y, C, row0)
        self._count(b, h.shape[0])
        self.counts = scatter_add(xp, self.counts, b.ys, xp.astype(b.ok, xp.int64))
        for a, z in _blocks(xp, h, C):
            hf = _float64(xp, h[a:z, ...], "features")
            self.sums = scatter_add(xp, self.sums, b.ys[a:z], hf)
        return self

    def add_pass(self, part: FirstPass, n_rows: int) -> FirstState:
        """Add a host :class:`FirstPass` of ``n_rows`` checked rows (numpy states only)."""
        if part.sum_scale != 1.0:
            raise _overflow()
        self.n_rows = self.n_rows + n_rows
        self.n_nonfinite = self.n_nonfinite + part.n_nonfinite
        if part.first_nonfinite_row is not None:
            self.first_nonfinite = np.minimum(self.first_nonfinite, part.first_nonfinite_row)
        self.counts = self.counts + part.counts
        self.sums = self.sums + part.sums
        return self

    def to_first_pass(self, values: dict | None = None) -> FirstPass:
        values = self.to_host() if values is None else values
        if not np.isfinite(values["sums"]).all():
            raise _overflow()
        return FirstPass(values["counts"], values["sums"])


def _overflow():
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
    pair_sq: Any = declare("sum", ("P", "P"), "float64")  # directional table; P = 0: none
    seen: Any = declare("sum", ("C",), "int64")
    resid: Any = declare("sum", ("C", "d"), "float64")  # sum of e = h / scale - mu_y / scale

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
    ) -> SecondState:
        """Add a batch given pass 1's :class:`~ncinspect.stats.Geometry` and class means
        (host (C, d), NaN for a class without rows); returns self."""
        C, m = geom.n_classes, h.shape[0]
        b = _prepare(xp, h, y, C, row0)
        self._count(b, m)
        self.seen = scatter_add(xp, self.seen, b.ys, xp.astype(b.ok, xp.int64))
        if m == 0:
            return self
        g = _device_geometry(xp, geom, device_of(h))
        keep = b.good if g.all_present else b.good & xp.take(g.present, b.ys, axis=0)
        zero = xp.zeros((), dtype=xp.float64, device=device_of(h))
        for a, z in _blocks(xp, h, C):
            hf = _float64(xp, h[a:z, ...], "features")
            self._block(xp, g, geom, means, hf, b.ys[a:z], keep[a:z], zero, precision)
        return self

    def _block(self, xp, g, geom, means, hf, ys, keep, zero, precision) -> None:
        C, r = geom.n_classes, geom.basis.shape[0]
        hs = hf if g.inv_scale == 1.0 else hf * g.inv_scale  # exact power-of-two scaling
        f32 = precision == "float32"
        # e = (h - mu_y) / scale from pass 1's class means (also of classes below min_count)
        e = hs - xp.take(_class_means(xp, g, means), ys, axis=0)
        hc = None if g.from_scores and not f32 else hs - g.mu_scaled[None, :]  # h' (decisions)
        # residual sums by class: pass 2's class means minus pass 1's (checked at compute)
        self.resid = scatter_add(xp, self.resid, ys, e)
        scores, proj, es = scores_projection(xp, g, e, hc, ys, C, r, f32)
        if self.pair_sq.shape[0]:  # the directional table (ncinspect.stats.pairs)
            self._pairs(xp, g, e, es, ys, keep, zero, f32)
        if r:
            self.proj_sq = self.proj_sq + xp.sum(xp.where(keep[:, None], proj * proj, zero), axis=0)
        sq = xp.where(keep, xp.sum(e * e, axis=1), zero)
        self.class_sq = scatter_add(xp, self.class_sq, ys, sq)

        has_clf = geom.weights is not None
        dist, ncc, logits, _, clf = _decisions(xp, g, scores, C, has_clf, None)
        ncc_ok, clf_ok, agree_ok = ncc == ys, None, None
        if clf is not None:
            clf_ok, agree_ok = clf == ys, clf == ncc
        if f32:
            ncc_ok, clf_ok, agree_ok = self._recheck(
                xp, g, hc, ys, dist, ncc, logits, clf, ncc_ok, clf_ok, agree_ok
            )
        self.ncc_correct = scatter_add(xp, self.ncc_correct, ys, xp.astype(ncc_ok & keep, xp.int64))
        if clf is not None:
            self.clf_correct = scatter_add(
                xp, self.clf_correct, ys, xp.astype(clf_ok & keep, xp.int64)
            )
            self.agree = scatter_add(xp, self.agree, ys, xp.astype(agree_ok & keep, xp.int64))
        if logits is not None:
            s_h, s_w = g.logit_scales
            out = logits * (s_h * s_w) if s_h * s_w != 1.0 else logits
            self._outputs(xp, out, ys, keep, zero)

    def _pairs(self, xp, g, e, es, ys, keep, zero, f32) -> None:
        """Per class c and every c', the sum over kept rows of c of (e . m'_c - e . m'_c')^2."""
        if es is None:
            cen_t = xp.permute_dims(g.centred, (1, 0))
            if f32:
                es = xp.astype(xp.astype(e, xp.float32) @ xp.astype(cen_t, xp.float32), xp.float64)
            else:
                es = e @ cen_t
        C = es.shape[1]
        onehot = xp.arange(C, dtype=xp.int64, device=device_of(es))[None, :] == ys[:, None]
        own = xp.sum(xp.where(onehot, es, zero), axis=1)
        diff = xp.where(keep[:, None], own[:, None] - es, zero)
        self.pair_sq = scatter_add(xp, self.pair_sq, ys, diff * diff)

    def _recheck(self, xp, g, hc, ys, dist, ncc, logits, clf, ncc_ok, clf_ok, agree_ok):
        """Float32 mode: rows within the rounding bound decided again in float64."""
        C = dist.shape[1]
        rows_norm = xp.sqrt(xp.sum(hc * hc, axis=1))
        bound = 2.0 * precision_gamma(hc.shape[1]) * rows_norm
        flag = _gap(xp, dist, ncc, largest=False) <= 2.0 * bound * g.centre_norm
        if clf is not None:
            flag = flag | (
                _gap(xp, logits, clf, largest=True) <= bound * g.weight_norm * abs(g.score_factor)
            )
        idx = xp.nonzero(flag)[0]  # the one host read of float32 mode
        k = int(idx.shape[0])
        self.n_rechecked = self.n_rechecked + k
        if k:
            sub = xp.take(hc, idx, axis=0)
            _, ncc_x, _, _, clf_x = _decisions(xp, g, sub @ g.decide, C, clf is not None, None)
            y_x = xp.take(ys, idx, axis=0)
            ncc_ok = _patch(xp, ncc_ok, flag, idx, ncc_x == y_x)
            if clf is not None:
                clf_ok = _patch(xp, clf_ok, flag, idx, clf_x == y_x)
                agree_ok = _patch(xp, agree_ok, flag, idx, clf_x == ncc_x)
        return ncc_ok, clf_ok, agree_ok

    def _outputs(self, xp, out, ys, keep, zero) -> None:
        """The SQI sums of the kept rows' outputs, as the numpy kernel forms them
        (:func:`ncinspect.stats.blocks.output_sums`), merged on the device."""
        C = out.shape[1]
        onehot = xp.arange(C, dtype=xp.int64, device=device_of(out))[None, :] == ys[:, None]
        keepf = xp.astype(keep, xp.float64)
        true = xp.sum(xp.where(onehot, out, zero), axis=1)  # f_{y_i}(x_i), exact
        n = xp.sum(keepf)
        t_mean = xp.sum(true * keepf) / xp.where(n > 0, n, xp.ones_like(n))
        dt = (true - t_mean) * keepf
        off = onehot | ~keep[:, None]  # not a wrong-class output of a kept row
        wrong = xp.where(off, zero, out)
        nw = n * (C - 1)
        w_mean = xp.sum(wrong) / xp.where(nw > 0, nw, xp.ones_like(nw))
        dw = xp.where(off, zero, out - w_mean)
        w_m2 = xp.sum(dw * dw)
        block = xp.stack([xp.stack([n, t_mean, xp.sum(dt * dt)]), xp.stack([nw, w_mean, w_m2])])
        self.outputs = merge_moments(xp, self.outputs, block)
        t_err = xp.where(keep, true - 1.0, zero)
        self.sq_err = self.sq_err + (w_m2 + nw * w_mean * w_mean + xp.sum(t_err * t_err))
        top = xp.max(xp.abs(wrong))
        t_abs = xp.max(xp.where(keep, xp.abs(true), zero))
        self.max_abs_err = xp.maximum(self.max_abs_err, xp.maximum(top, xp.max(xp.abs(t_err))))
        self.out_abs_max = xp.maximum(self.out_abs_max, xp.maximum(top, t_abs))

    def add_pass(
        self, part: SecondPass, sums: FirstPass, geom: Any, means: np.ndarray, n_rows: int
    ) -> SecondState:
        """Add host pass-2 statistics of ``n_rows`` checked rows (numpy states only)."""
        if sums.sum_scale != 1.0:
            raise _overflow()
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

    def to_second_pass(self, has_clf: bool, values: dict | None = None) -> SecondPass:
        v = self.to_host() if values is None else values
        stats = SecondPass(
            v["proj_sq"],
            v["class_sq"],
            v["ncc_correct"],
            v["clf_correct"],
            v["agree"],
            has_clf,
        )
        if has_clf:
            (nt, mt, qt), (nw, mw, qw) = v["outputs"].tolist()
            stats.true_out = Moments(int(round(nt)), mt, qt)
            stats.wrong_out = Moments(int(round(nw)), mw, qw)
            stats.sq_err = float(v["sq_err"])
            stats.max_abs_err = float(v["max_abs_err"])
            stats.out_abs_max = float(v["out_abs_max"])
            stats.has_outputs = True
        stats.pair_sq = v["pair_sq"] if v["pair_sq"].shape[0] else None
        return stats


def _class_means(xp: Any, g: Any, means: np.ndarray) -> Any:
    """(C, d) pass-1 class means / scale on the device (0 for a class without rows), cached."""
    if getattr(g, "class_means", None) is None:
        m = np.where(np.isfinite(means), means, 0.0) / (1.0 / g.inv_scale)
        g.class_means = xp.asarray(np.ascontiguousarray(m), device=device_of(g.centred))
    return g.class_means
