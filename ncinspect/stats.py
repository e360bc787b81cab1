"""Mergeable sufficient statistics: the two passes over row chunks.

Every metric of spec/metrics.md is a function of these sums. A statistic of two chunks is
the :meth:`merge` of the statistics of each, so the same code runs on one in-memory chunk,
on a file streamed from disk, or on chunks spread over a cluster (merged at the end).

Pass 1 (:class:`FirstPass`) needs nothing: per-class counts and float64 feature sums.
Pass 2 (:class:`SecondPass`) needs the :class:`Geometry` derived from pass 1 (means, the
between-class eigenbasis, the classifier) and accumulates within-class scatter projected on
that basis, per-class scatter traces, NCC and classifier decisions and output statistics.
Nothing here builds a d x d matrix; within-class quantities come from centred values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .array_api import check_precision, get_namespace
from .stats_xp import first_sums, second_sums

__all__ = [
    "Moments",
    "FirstPass",
    "Geometry",
    "SecondPass",
    "to_float64",
    "block_rows",
    "pow2_scale",
]

#: magnitudes in this band need no rescaling: their squares and sums of squares over any
#: realistic N x d stay normal floats
_SAFE_LO, _SAFE_HI = 2.0**-200, 2.0**200


def pow2_scale(x: np.ndarray) -> float:
    """A power of two ``s`` with ``max|x| / s`` in [0.5, 1); 1.0 when ``max|x|`` lies in
    [2^-200, 2^200] (or is 0 or not finite).

    Dividing by a power of two is exact in float64 (unless the result is subnormal), so
    arrays divided by ``s`` give the same scale-invariant results, bit for bit, as
    unscaled ones whenever those did not under- or overflow; far outside the band they
    keep squares, Gram matrices and sums of squares inside the float64 range.
    """
    x = np.asarray(x)
    if x.size == 0:
        return 1.0
    m = float(np.max(np.abs(x)))
    if not math.isfinite(m) or m == 0 or _SAFE_LO <= m <= _SAFE_HI:
        return 1.0
    return math.ldexp(1.0, min(max(math.frexp(m)[1], -1020), 1020))


def to_float64(block: np.ndarray) -> np.ndarray:
    """A float64 copy of a chunk (always a copy, so callers may modify it in place)."""
    return np.array(block, dtype=np.float64, copy=True)


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of scalars, merged exactly (Chan et al.)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return cls()
        mean = float(values.mean())
        return cls(int(values.size), mean, float(np.square(values - mean).sum()))

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return Moments(self.count, self.mean, self.m2)
        if self.count == 0:
            return Moments(other.count, other.mean, other.m2)
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        return Moments(n, mean, m2)


@dataclass
class FirstPass:
    """Per-class counts and float64 feature sums; also counts non-finite feature rows.

    The class sums are ``sums * sum_scale``: ``sum_scale`` is 1.0 unless a sum of features
    near the float64 limit overflowed, when the sums are kept divided by a power of two
    (exact). :meth:`class_means` applies it.
    """

    counts: np.ndarray  # (C,) int64
    sums: np.ndarray  # (C, d) float64, in units of sum_scale
    n_nonfinite: int = 0
    first_nonfinite_row: int | None = None
    sum_scale: float = 1.0

    @classmethod
    def empty(cls, n_classes: int, n_features: int) -> FirstPass:
        return cls(np.zeros(n_classes, np.int64), np.zeros((n_classes, n_features)))

    @classmethod
    def of_chunk(cls, h: np.ndarray, y: np.ndarray, n_classes: int, row0: int = 0) -> FirstPass:
        """Statistics of one chunk: ``h`` (n, d) of any numeric dtype, ``y`` (n,) codes in 0..C-1.

        Sums are accumulated in float64 (each value is converted exactly); ``h`` is not
        modified. Rows holding NaN/Inf are counted (and left out of the sums). ``h`` may be
        an array of any array-API library: it is summed on its device
        (:func:`ncinspect.stats_xp.first_sums`); the statistics are host numpy.
        """
        xp = get_namespace(h)
        if xp is not None:
            return cls(*first_sums(xp, h, y, n_classes, row0))
        stats = cls.empty(n_classes, h.shape[1])
        stats.counts = np.bincount(y, minlength=n_classes).astype(np.int64)
        stats.sums = _group_sum(h, y, n_classes)
        if not np.isfinite(stats.sums).all():  # rare: find the rows, leave them out
            finite = np.isfinite(h).all(axis=1)
            if not finite.all():
                bad = np.flatnonzero(~finite)
                stats.n_nonfinite = int(bad.size)
                stats.first_nonfinite_row = int(row0 + bad[0])
                stats.sums = _group_sum(np.where(finite[:, None], h, 0), y, n_classes)
            if not np.isfinite(stats.sums).all():  # finite rows whose sums overflow
                rows = h if finite.all() else np.where(finite[:, None], h, 0)
                m = float(np.max(np.abs(rows)))
                scale = math.ldexp(1.0, min(math.frexp(m)[1] + h.shape[0].bit_length(), 1023))
                stats.sums = _group_sum(np.asarray(rows, np.float64) / scale, y, n_classes)
                stats.sum_scale = scale
        return stats

    def merge(self, other: FirstPass) -> FirstPass:
        firsts = [r for r in (self.first_nonfinite_row, other.first_nonfinite_row) if r is not None]
        scale = max(self.sum_scale, other.sum_scale)
        a, b = self._sums_in(scale), other._sums_in(scale)
        sums = a + b
        if not np.isfinite(sums).all():  # the two finite totals overflow together
            scale *= 2.0
            sums = a / 2.0 + b / 2.0
        return FirstPass(
            self.counts + other.counts,
            sums,
            self.n_nonfinite + other.n_nonfinite,
            min(firsts) if firsts else None,
            scale,
        )

    def _sums_in(self, scale: float) -> np.ndarray:
        if scale == self.sum_scale:
            return self.sums
        with np.errstate(under="ignore"):
            return self.sums * (self.sum_scale / scale)  # exact unless negligible

    def class_means(self) -> np.ndarray:
        """(C, d) float64 class means; rows of classes without samples are NaN."""
        with np.errstate(invalid="ignore", divide="ignore"):
            means = self.sums / self.counts[:, None]
        if self.sum_scale != 1.0:
            means *= self.sum_scale
        means[self.counts == 0] = np.nan
        return means

    def sample_mean(self) -> np.ndarray:
        """(d,) mean of all samples."""
        n = max(self.n_samples, 1)
        total = self.sums.sum(axis=0)
        if np.isfinite(total).all():
            return total / n * self.sum_scale if self.sum_scale != 1.0 else total / n
        # the classes' totals overflow together: weight the class means instead
        present = self.counts > 0
        return (self.counts[present, None] / n * self.class_means()[present]).sum(axis=0)

    @property
    def n_samples(self) -> int:
        return int(self.counts.sum())


def _numpy_namespace():
    """numpy as an array-API namespace (for the float32 kernels on numpy arrays)."""
    from array_api_compat import numpy as xnp

    return xnp


def _group_sum(h: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, d) float64 sums of the rows of ``h`` by label, each class summed in row order.

    One sparse (C x n) indicator product: a single pass over ``h``, no sort and no copy of
    the rows grouped by class.
    """
    from scipy.sparse import csr_matrix

    n = y.shape[0]
    indicator = csr_matrix((np.ones(n), (y, np.arange(n))), shape=(n_classes, n))
    return np.asarray(indicator @ h, dtype=np.float64)


@dataclass
class Geometry:
    """What pass 2 needs from pass 1 (computed by :func:`ncinspect.metrics.between_class_geometry`).

    Attributes
    ----------
    means : (C, d) class means (rows of empty classes are NaN).
    global_mean : (d,) mu_G.
    centred : (C, d) M~ = means - mu_G (rows of empty classes are 0).
    basis : (r, d) orthonormal eigenvectors of M~^T M~ kept for the pseudo-inverse.
    eigvals : (r,) the matching eigenvalues of M~^T M~ (= C x eigenvalues of Sigma_B).
    ncc_centres : (C, d) NCC centres minus mu_G (own means, or another split's).
    ncc_valid : (C,) bool, False for a centre that is undefined (empty class).
    weights, bias : the classifier, float64, or None (every row: decisions use them all).
    scale : power of two (:func:`pow2_scale` of the centred means): pass 2 works on
        ``(h - mu_G) / scale``, so ``eigvals`` and the pass-2 sums of squares
        (``SecondPass.proj_sq``, ``class_sq``) are in units of ``scale**2`` (1.0 for features
        of ordinary magnitude, where nothing is rescaled). :meth:`squared` converts back.
    weight_scale : power of two (:func:`pow2_scale` of ``weights``) for the decisions.
    present : (C,) bool, the classes that enter the class-level statistics (at least
        ``min_count`` samples); pass 2 leaves the rows of the other classes out. None: all.
    min_count : the ``min_class_count`` that ``present`` was derived with.
    """

    means: np.ndarray
    global_mean: np.ndarray
    centred: np.ndarray
    basis: np.ndarray
    eigvals: np.ndarray
    ncc_centres: np.ndarray
    ncc_valid: np.ndarray
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    scale: float = 1.0
    weight_scale: float = 1.0
    present: np.ndarray | None = None
    min_count: int = 1
    _stack: np.ndarray | None = field(default=None, repr=False)
    #: the pass-2 constants copied to a device, per (namespace, device) (see stats_xp)
    device_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_classes(self) -> int:
        return self.means.shape[0]

    def squared(self, values: np.ndarray) -> np.ndarray:
        """Values in units of ``scale**2`` (eigvals, pass-2 sums) in the features' units.

        May over- or underflow (to inf or 0) where the true value lies outside float64.
        """
        values = np.asarray(values, dtype=np.float64)
        if self.scale == 1.0:
            return values
        with np.errstate(over="ignore", under="ignore"):
            return values * self.scale * self.scale

    def decision_matrix(self) -> np.ndarray:
        """(d, C or 2C): NCC centres / scale and classifier rows / weight_scale side by side,
        for one product (decisions are unchanged by these positive scalings)."""
        if self._stack is None:
            mats = [self.ncc_centres / self.scale]
            if self.weights is not None:
                mats.append(self.weights / self.weight_scale)
            self._stack = np.ascontiguousarray(np.vstack(mats).T)
        return self._stack


BLOCK_BYTES = 2 << 20  #: float64 bytes of one pass-2 block of rows (fixed; sized for caches)


def block_rows(n_features: int, n_classes: int) -> int:
    """Rows of one pass-2 block: about :data:`BLOCK_BYTES` of float64 features, >= 32 rows.

    A function of d and C only, so that the same input gives the same sums on any machine.
    """
    return max(32, BLOCK_BYTES // (8 * (n_features + 2 * n_classes)))


class _Buffers:
    """Reusable float64 work arrays of one pass-2 block, and the per-chunk constants."""

    def __init__(self, rows: int, d: int, r: int, geom: Geometry):
        self.h = np.empty((rows, d))
        self.e = np.empty((rows, d))
        self.proj = np.empty((rows, r))
        self.scores = np.empty((rows, geom.decision_matrix().shape[1]))
        centres = geom.ncc_centres / geom.scale
        self.centre_sq = np.einsum("ij,ij->i", centres, centres)
        self.inv_scale = 1.0 / geom.scale
        self.mean_scaled = geom.global_mean * self.inv_scale
        self.centred = geom.centred if geom.scale == 1.0 else geom.centred / geom.scale
        # (W mu_G + b) / (scale weight_scale): logits of h, in those units, from the scores
        # of h' = (h - mu_G) / scale
        self.offset = None
        self.logit_scales = (geom.scale, geom.weight_scale)
        self.score_factor = 1.0  # logits / unit = scores * score_factor + offset
        if geom.weights is not None:
            with np.errstate(under="ignore", over="ignore"):
                w = geom.weights / geom.weight_scale
                self.offset = w @ (geom.global_mean / geom.scale)
                if geom.bias is not None:
                    bias = geom.bias / geom.scale / geom.weight_scale
                    if not np.isfinite(bias).all():  # the bias dwarfs W h: its own unit
                        unit = math.ldexp(1.0, math.frexp(float(np.abs(geom.bias).max()))[1])
                        self.score_factor = geom.scale / unit * geom.weight_scale
                        self.offset = self.offset * self.score_factor
                        self.logit_scales = (unit, 1.0)
                        bias = geom.bias / unit
                    self.offset = self.offset + bias


@dataclass
class SecondPass:
    """Within-class scatter, decisions and output statistics given the :class:`Geometry`."""

    proj_sq: np.ndarray  # (r,)  sum_i (v_k . (h_i - mu_{y_i}))^2
    class_sq: np.ndarray  # (C,)  sum_{y_i=c} ||h_i - mu_c||^2
    ncc_correct: np.ndarray  # (C,) per true class
    clf_correct: np.ndarray  # (C,)
    agree: np.ndarray  # (C,) NCC decision == classifier decision
    has_decisions: bool = False
    true_out: Moments = field(default_factory=Moments)  # f_{y_i}(x_i)
    wrong_out: Moments = field(default_factory=Moments)  # f_c(x_i), c != y_i
    sq_err: float = 0.0  # sum_i ||f(x_i) - onehot(y_i)||^2
    max_abs_err: float = 0.0
    has_outputs: bool = False
    out_abs_max: float = 0.0  # max |f_c(x_i)|: below 2^-450 the m2 sums underflow

    @classmethod
    def empty(cls, n_classes: int, rank: int) -> SecondPass:
        z = np.zeros(n_classes, np.int64)
        return cls(np.zeros(rank), np.zeros(n_classes), z, z.copy(), z.copy())

    @classmethod
    def of_chunk(
        cls,
        geom: Geometry,
        h: np.ndarray,
        y: np.ndarray,
        outputs: np.ndarray | None = None,
        *,
        precision: str = "float64",
    ) -> SecondPass:
        """Statistics of one chunk: ``h`` (n, d) of any numeric dtype (not modified).

        The rows are processed in blocks of :func:`block_rows` rows (a fixed number for a
        given d and C, so results never depend on the machine): each block is converted to
        float64 and centred in one cache-sized buffer, and the block statistics are merged.

        ``h`` may be an array of any array-API library: it is processed on its device by
        :func:`ncinspect.stats_xp.second_sums`. ``precision="float32"`` computes the large
        products in float32 with float64 accumulation (bounds in :mod:`ncinspect.stats_xp`).
        """
        xp = get_namespace(h)
        if xp is None and check_precision(precision) == "float32":
            xp = _numpy_namespace()
        if xp is not None:
            stats = cls.empty(geom.n_classes, geom.basis.shape[0])
            for part in second_sums(xp, geom, h, y, outputs, precision=precision):
                stats = stats.merge(cls._of_sums(part))
            return stats
        C, r, d = geom.n_classes, geom.basis.shape[0], h.shape[1]
        step = block_rows(d, C)
        bufs = _Buffers(min(step, h.shape[0]), d, r, geom)
        stats = cls.empty(C, r)
        for a in range(0, h.shape[0], step):
            out = None if outputs is None else outputs[a : a + step]
            stats = stats.merge(cls._of_block(geom, h[a : a + step], y[a : a + step], out, bufs))
        return stats

    @classmethod
    def _of_block(
        cls,
        geom: Geometry,
        block: np.ndarray,
        y: np.ndarray,
        outputs: np.ndarray | None,
        bufs: _Buffers,
    ) -> SecondPass:
        C = geom.n_classes
        stats = cls.empty(C, geom.basis.shape[0])
        if geom.present is not None and not geom.present.all():
            keep = geom.present[y]  # rows of classes below min_count take no part
            if not keep.all():
                block, y = block[keep], y[keep]
                outputs = None if outputs is None else outputs[keep]
        m = block.shape[0]
        if m == 0:
            return stats
        if bufs.inv_scale == 1.0:
            h = np.subtract(block, geom.global_mean, out=bufs.h[:m])  # h' = h - mu_G, float64
        else:  # h' = h / scale - mu_G / scale: exact scaling first, so nothing overflows
            h = np.multiply(block, bufs.inv_scale, out=bufs.h[:m])
            np.subtract(h, bufs.mean_scaled, out=h)
        e = np.take(bufs.centred, y, axis=0, out=bufs.e[:m])
        np.subtract(h, e, out=e)  # (m, d) within-class residuals h_i - mu_{y_i}
        if geom.basis.shape[0]:
            proj = np.matmul(e, geom.basis.T, out=bufs.proj[:m])  # (m, r)
            stats.proj_sq = np.einsum("ij,ij->j", proj, proj)
        stats.class_sq = np.bincount(y, weights=np.einsum("ij,ij->i", e, e), minlength=C)

        scores = np.matmul(h, geom.decision_matrix(), out=bufs.scores[:m])  # (m, C) or (m, 2C)
        dist = bufs.centre_sq[None, :] - 2.0 * scores[:, :C]  # ||h'-m'_c||^2 - ||h'||^2
        if not geom.ncc_valid.all():
            dist[:, ~geom.ncc_valid] = np.inf
        ncc = np.argmin(dist, axis=1)
        stats.ncc_correct = np.bincount(y[ncc == y], minlength=C)

        logits = None
        if geom.weights is not None:
            logits = scores[:, C:]  # (W h + b) / (scale weight_scale)
            if bufs.score_factor != 1.0:
                with np.errstate(under="ignore"):
                    logits = logits * bufs.score_factor
            logits = logits + bufs.offset
        if outputs is not None:
            outputs = np.asarray(outputs, dtype=np.float64)
        clf_out = logits if logits is not None else outputs
        s_h, s_w = bufs.logit_scales
        if logits is not None and outputs is None and s_h * s_w != 1.0:
            with np.errstate(over="ignore", under="ignore"):  # may leave float64: then SQI is null
                logits = logits * s_h * s_w
        if clf_out is not None:
            clf = np.argmax(clf_out, axis=1)
            stats.clf_correct = np.bincount(y[clf == y], minlength=C)
            stats.agree = np.bincount(y[clf == ncc], minlength=C)
            stats.has_decisions = True

        out = outputs if outputs is not None else logits
        if out is not None:
            stats._output_stats(out, y)
        return stats

    @classmethod
    def _of_sums(cls, part: dict) -> SecondPass:
        """A block's statistics from the host values of :func:`~ncinspect.stats_xp.second_sums`."""
        stats = cls(
            part["proj_sq"],
            part["class_sq"],
            part["ncc_correct"],
            part["clf_correct"],
            part["agree"],
            part["has_decisions"],
        )
        if part["has_outputs"]:
            stats.true_out = Moments(*part["true_out"])
            stats.wrong_out = Moments(*part["wrong_out"])
            stats.sq_err, stats.max_abs_err = part["sq_err"], part["max_abs_err"]
            stats.out_abs_max, stats.has_outputs = part["out_abs_max"], True
        return stats

    def _output_stats(self, out: np.ndarray, y: np.ndarray) -> None:
        """SQI sums of one block (non-finite where logits left float64: SQI is then null)."""
        stats = self
        with np.errstate(over="ignore", invalid="ignore"):
            rows = np.arange(out.shape[0])
            true = out[rows, y]
            stats.true_out = Moments.of(true)
            mask = np.ones(out.shape, dtype=bool)
            mask[rows, y] = False
            stats.wrong_out = Moments.of(out[mask])
            err = out.copy()
            err[rows, y] -= 1.0
            stats.sq_err = float(np.einsum("ij,ij->", err, err))
            stats.max_abs_err = float(np.abs(err).max()) if err.size else 0.0
            stats.out_abs_max = float(np.abs(out).max()) if out.size else 0.0
            stats.has_outputs = True

    def merge(self, other: SecondPass) -> SecondPass:
        return SecondPass(
            self.proj_sq + other.proj_sq,
            self.class_sq + other.class_sq,
            self.ncc_correct + other.ncc_correct,
            self.clf_correct + other.clf_correct,
            self.agree + other.agree,
            self.has_decisions or other.has_decisions,
            self.true_out.merge(other.true_out),
            self.wrong_out.merge(other.wrong_out),
            self.sq_err + other.sq_err,
            max(self.max_abs_err, other.max_abs_err),
            self.has_outputs or other.has_outputs,
            max(self.out_abs_max, other.out_abs_max),
        )
