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
import threading
from collections.abc import Callable
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
    def of_chunk(
        cls, h: np.ndarray, y: np.ndarray, n_classes: int, row0: int = 0, *, map: Callable = map
    ) -> FirstPass:
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
        step = first_rows(h.shape[1], n_classes)
        parts = map(
            lambda a: _group_sum(h[a : a + step], y[a : a + step], n_classes),
            range(0, h.shape[0], step),
        )
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite sums: handled below
            for part in parts:  # merged in row order, whatever ran them
                stats.sums += part
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


def first_rows(n_features: int, n_classes: int) -> int:
    """Rows of one pass-1 part: about 4 MiB of float64 features and at least 16 C rows (so
    that merging the parts' C x d sums stays cheap). A function of d and C only: the parts,
    summed in any thread and merged in row order, give the same sums on any machine."""
    return max(256, 16 * n_classes, (4 << 20) // (8 * max(n_features, 1)))


DENSE_MAX_C = 64  #: up to this C, pass 1 sums by a dense float64 indicator product (BLAS)


def _group_sum(h: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, d) float64 sums of the rows of ``h`` by label.

    Up to :data:`DENSE_MAX_C` classes: a dense (C x k) indicator times each float64 block
    of k rows (BLAS), the block sums added in row order. Above: one sparse (C x n)
    indicator product, each class summed in row order. A single pass over ``h`` either way,
    no sort and no copy of the rows grouped by class.
    """
    n, d = h.shape
    if n_classes <= DENSE_MAX_C and n:
        rows = max(256, min(4096, (4 << 20) // (8 * max(d, 1))))
        classes = np.arange(n_classes)[:, None]
        buf = np.empty((min(rows, n), d))
        sums = np.zeros((n_classes, d))
        with np.errstate(over="ignore", invalid="ignore"):  # the caller handles inf/NaN
            for a in range(0, n, rows):
                part = buf[: min(rows, n - a)]
                part[...] = h[a : a + rows]  # exact conversion to float64
                sums += (y[a : a + rows] == classes).astype(np.float64) @ part
        return sums
    from scipy.sparse import csr_matrix

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
    _kernels: dict = field(default_factory=dict, repr=False, compare=False)

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

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_kernels"] = {}  # per-process work constants: rebuilt where they are used
        return state


BLOCK_BYTES = 2 << 20  #: float64 bytes of one pass-2 block of rows (fixed; sized for caches)


def block_rows(n_features: int, n_classes: int) -> int:
    """Rows of one pass-2 block: about :data:`BLOCK_BYTES` of float64 features, >= 32 rows.

    A function of d and C only, so that the same input gives the same sums on any machine.
    """
    return max(32, BLOCK_BYTES // (8 * (n_features + 2 * n_classes)))


_U32, _U64 = 2.0**-24, 2.0**-53  #: unit round-offs of float32 and float64
_HUGE32 = 2.0**100  #: rows whose norm exceeds this are decided in float64 (no float32 overflow)
_AMP_MAX = 256.0  #: largest round-off amplification allowed for the projection from scores
_GATHER_MAX = 1 << 22  #: entries of the largest C x C table gathered per row


class _Kernel:
    """The per-geometry constants of the pass-2 kernel, computed once and shared by chunks.

    Per block the residuals ``e = (h - mu_y) / scale`` are formed in float64 and enter one
    float64 product. Two layouts:

    * *scores* (own NCC centres, ``C < d``, a well-conditioned eigenbasis): the product is
      ``e [M~ | W]^T / units`` (C or 2C columns). Because the basis spans the centred
      means, ``M~^T A = V^T`` with ``A = M~ V^T diag(1/eigvals)`` (C x r), so the
      projection of the residuals is ``(e M~^T) A``: a C x r product per row instead of
      d x r. Decision scores of ``h' = e + M~_y`` add the class term ``M~_y [M~ | W]^T``
      (a C x C table gathered by label) in float64 after the product. The round-off of
      the projection grows by at most ``sqrt(sum(eigvals) / eigvals[-1])`` (bounded by
      :data:`_AMP_MAX`, else the direct layout is used).
    * *direct*: ``proj = e V^T`` and the classifier scores ``h' W^T`` in float64, as the
      definition reads.

    Scores that serve only a decision (NCC in the direct layout; the classifier when the
    outputs are stored) are computed in float32 and every row whose best two candidates lie
    within the float32 error bound is decided again in float64: the decisions are those of
    the float64 scores.
    """

    def __init__(self, geom: Geometry, logits64: bool):
        C, d = geom.means.shape
        r = geom.basis.shape[0]
        self.n_classes, self.n_features, self.rank = C, d, r
        present = np.ones(C, bool) if geom.present is None else geom.present
        self.present = None if present.all() else present
        inv = 1.0 / geom.scale
        self.inv_scale = inv
        self.mean_scaled = geom.global_mean * inv
        means = np.where(present[:, None], geom.means, 0.0)
        self.means_s = means * inv if inv != 1.0 else means  # mu_c / scale
        cen = geom.centred * inv if inv != 1.0 else geom.centred  # M~ / scale
        self.centred_s = cen
        ncc = geom.ncc_centres / geom.scale
        self.centre_sq = np.einsum("ij,ij->i", ncc, ncc)
        self.centre_sq_max = float(self.centre_sq.max()) if C else 0.0
        half = (self.centre_sq / 2).astype(np.float32)
        half[~geom.ncc_valid] = np.inf  # an undefined centre is never the nearest
        self.half_sq32 = half
        self.ncc_invalid = None if geom.ncc_valid.all() else ~geom.ncc_valid
        self.has_w = geom.weights is not None
        self.logits64 = self.has_w and logits64
        self._logit_units(geom)
        w = geom.weights / geom.weight_scale if self.has_w else None

        own = np.array_equal(geom.ncc_centres, geom.centred)
        amp = math.inf
        if r:
            amp = math.sqrt(float(geom.eigvals.sum()) / float(geom.eigvals[-1]))
        self.from_scores = bool(r and own and C < d and C * C <= _GATHER_MAX and amp <= _AMP_MAX)
        # float64 product columns: [NCC (C)] [W (C) if logits64] [basis (r) in direct]
        cols64, cols32 = [], []
        if self.from_scores:
            cols64.append(ncc)
            self.proj_map = (cen @ geom.basis.T) / geom.eigvals  # A (C, r)
        else:
            cols32.append(ncc)
        if self.has_w:
            (cols64 if self.logits64 else cols32).append(w)
        self.ncc64 = self.from_scores
        self.d64 = np.ascontiguousarray(np.vstack(cols64).T) if cols64 else None
        self.d32 = np.ascontiguousarray(np.vstack(cols32).T, dtype=np.float32) if cols32 else None
        self.basis_t = None if (self.from_scores or not r) else np.ascontiguousarray(geom.basis.T)
        self.ncc_t = None if self.ncc64 else np.ascontiguousarray(ncc.T)  # float64 rechecks
        self.w_t = np.ascontiguousarray(w.T) if self.has_w and not self.logits64 else None
        self._local = threading.local()
        if self.from_scores:  # class terms M~_y [ncc | W]^T / units, gathered by label
            self.k_ncc = cen @ ncc.T
            self.k_w = cen @ w.T if self.has_w else None
        # constants of the float32 error bounds
        kappa = 1.02 * (d + 4) * (_U32 + _U64)
        self.kappa = kappa
        self.tiny = (4 * d + 8) * 2.0**-149
        self.ncc_norm = float(np.sqrt(self.centre_sq.max())) if C else 0.0
        self.w_norm = float(np.sqrt(np.einsum("ij,ij->i", w, w).max())) if self.has_w else 0.0
        self.cen_norm = float(np.sqrt(np.einsum("ij,ij->i", cen, cen).max())) if C else 0.0

    def buffers(self, rows: int) -> _Buffers:
        """This thread's work arrays for blocks of up to ``rows`` rows."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.rows < rows:
            buf = self._local.buf = _Buffers(rows, self)
        return buf

    def _logit_units(self, geom: Geometry) -> None:
        # logits / unit = scores * score_factor + offset, the scores being those of
        # h' = (h - mu_G) / scale against W / weight_scale
        self.offset = None
        self.logit_scales = (geom.scale, geom.weight_scale)
        self.score_factor = 1.0
        if geom.weights is None:
            return
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
        self.offset_max = float(np.abs(self.offset).max()) if self.offset.size else 0.0

    def logits(self, scores: np.ndarray, inplace: bool = False) -> np.ndarray:
        """Logits (in units) of float64 scores of h' against W / weight_scale."""
        if not inplace:
            scores = scores.copy()
        if self.score_factor != 1.0:
            with np.errstate(under="ignore"):
                scores *= self.score_factor
        scores += self.offset
        return scores

    def distances(self, scores: np.ndarray) -> np.ndarray:
        """``||h' - m'_c||^2 - ||h'||^2`` from the float64 scores of h' against the centres."""
        dist = self.centre_sq[None, :] - 2.0 * scores
        if self.ncc_invalid is not None:
            dist[:, self.ncc_invalid] = np.inf
        return dist


def _kernel(geom: Geometry, logits64: bool) -> _Kernel:
    cache = geom._kernels
    key = bool(logits64)
    if key not in cache:
        cache[key] = _Kernel(geom, key)
    return cache[key]


def _best(values: np.ndarray, bound: np.ndarray, maximise: bool) -> tuple[np.ndarray, np.ndarray]:
    """Arg-best of approximate ``values`` (m, k) and the rows that must be decided again.

    ``bound[i]`` bounds ``|values[i, c] - exact[i, c]|`` for every c: a row whose runner-up
    lies more than ``2 bound`` from its best cannot change its decision.
    """
    if maximise:
        best = np.argmax(values, axis=1)
        top = values[np.arange(values.shape[0]), best]
        close = np.count_nonzero(values >= (top - 2.0 * bound)[:, None], axis=1) > 1
    else:
        best = np.argmin(values, axis=1)
        top = values[np.arange(values.shape[0]), best]
        close = np.count_nonzero(values <= (top + 2.0 * bound)[:, None], axis=1) > 1
    close |= ~np.isfinite(bound) | ~np.isfinite(top)  # overflow, or no finite candidate
    return best, np.flatnonzero(close)


class _Buffers:
    """Float64 work arrays of one pass-2 block (one set per thread)."""

    def __init__(self, rows: int, kern: _Kernel):
        d = kern.n_features
        self.rows = rows
        self.e = np.empty((rows, d))
        self.g = np.empty((rows, d))
        self.s64 = None if kern.d64 is None else np.empty((rows, kern.d64.shape[1]))
        self.proj = None if kern.basis_t is None else np.empty((rows, kern.rank))


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
        map: Callable = map,
    ) -> SecondPass:
        """Statistics of one chunk: ``h`` (n, d) of any numeric dtype (not modified).

        The rows are processed in blocks of :func:`block_rows` rows (a fixed number for a
        given d and C, so results never depend on the machine), each in cache-sized float64
        buffers, and the block statistics are merged in block order. ``map`` runs the blocks
        (e.g. a thread pool's ``map``, which must return results in order): the result is
        the same, bit for bit, whatever runs them.

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
        kern = _kernel(geom, outputs is None)
        n = h.shape[0]

        def block(a: int) -> SecondPass:
            out = None if outputs is None else outputs[a : a + step]
            return cls._of_block(kern, h[a : a + step], y[a : a + step], out, min(step, n))

        stats = cls.empty(C, r)
        for part in map(block, range(0, n, step)):
            stats = stats.merge(part)
        return stats

    @classmethod
    def _of_block(
        cls,
        kern: _Kernel,
        block: np.ndarray,
        y: np.ndarray,
        outputs: np.ndarray | None,
        rows: int,
    ) -> SecondPass:
        C = kern.n_classes
        stats = cls.empty(C, kern.rank)
        if kern.present is not None:
            keep = kern.present[y]  # rows of classes below min_count take no part
            if not keep.all():
                block, y = block[keep], y[keep]
                outputs = None if outputs is None else outputs[keep]
        m = block.shape[0]
        if m == 0:
            return stats
        buf = kern.buffers(rows)
        e, x, sq = _residuals(kern, block, y, buf)
        stats.class_sq = np.bincount(y, weights=sq, minlength=C)
        s64 = None if kern.d64 is None else np.matmul(x, kern.d64, out=buf.s64[:m])
        if kern.from_scores:  # e M~^T A = e V^T, then the class term of h' = e + M~_y
            proj = s64[:, :C] @ kern.proj_map
            s64[:, :C] += np.take(kern.k_ncc, y, axis=0)
            if kern.logits64:
                s64[:, C:] += np.take(kern.k_w, y, axis=0)
        elif kern.rank:
            proj = np.matmul(e, kern.basis_t, out=buf.proj[:m])
        if kern.rank:
            stats.proj_sq = np.einsum("ij,ij->j", proj, proj)

        s32 = None
        if kern.d32 is not None:
            s32 = np.matmul(x.astype(np.float32), kern.d32)
            xnorm = np.sqrt(sq) if kern.from_scores else np.sqrt(np.einsum("ij,ij->i", x, x))
            xnorm *= 1.01
            xnorm[~(xnorm < _HUGE32)] = np.inf
        if kern.ncc64:
            ncc = np.argmin(kern.distances(s64[:, :C]), axis=1)
        else:
            ncc = _ncc_float32(kern, s32[:, :C], x, xnorm)
        stats.ncc_correct = np.bincount(y[ncc == y], minlength=C)

        logits = None
        if kern.logits64:  # in place, in the product's buffer
            logits = kern.logits(s64[:, kern.d64.shape[1] - C :], inplace=True)
            clf = np.argmax(logits, axis=1)
        elif kern.has_w:
            clf = _clf_float32(kern, s32[:, s32.shape[1] - C :], x, y, xnorm)
        elif outputs is not None:
            clf = np.argmax(outputs, axis=1)
        if kern.has_w or outputs is not None:
            stats.clf_correct = np.bincount(y[clf == y], minlength=C)
            stats.agree = np.bincount(y[clf == ncc], minlength=C)
            stats.has_decisions = True

        if outputs is not None:
            stats._output_stats(np.asarray(outputs, dtype=np.float64), y)
        elif logits is not None:
            s_h, s_w = kern.logit_scales
            if s_h * s_w != 1.0:
                with np.errstate(over="ignore", under="ignore"):  # may leave float64: SQI null
                    logits = logits * s_h * s_w
            stats._output_stats(logits, y, scratch=True)
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

    def _output_stats(self, out: np.ndarray, y: np.ndarray, scratch: bool = False) -> None:
        """SQI sums of one block (non-finite where logits left float64: SQI is then null).

        ``scratch``: ``out`` is a work array that may be overwritten.
        """
        stats = self
        with np.errstate(over="ignore", invalid="ignore"):
            m, C = out.shape
            rows = np.arange(m)
            true = out[rows, y].copy()
            stats.true_out = Moments.of(true)
            wrong = out if scratch else out.copy()
            wrong[rows, y] = 0.0  # the wrong-class outputs, zeros on the true entries
            top = max(float(wrong.max()), -float(wrong.min())) if wrong.size else 0.0
            t_abs = float(np.abs(true).max()) if m else 0.0
            t_err = float(np.abs(true - 1.0).max()) if m else 0.0
            stats.out_abs_max = max(top, t_abs)
            stats.max_abs_err = max(top, t_err)
            n_wrong = m * (C - 1)
            mean = float(wrong.sum()) / n_wrong if n_wrong else 0.0
            wrong -= mean
            wrong[rows, y] = 0.0
            m2 = float(np.einsum("ij,ij->", wrong, wrong))
            stats.wrong_out = Moments(n_wrong, mean, m2) if n_wrong else Moments()
            # sum_i ||f(x_i) - onehot(y_i)||^2: the wrong outputs' squares are m2 + n mean^2
            # (two non-negative terms, no cancellation)
            stats.sq_err = m2 + n_wrong * mean * mean + float(np.square(true - 1.0).sum())
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


def _residuals(kern: _Kernel, block: np.ndarray, y: np.ndarray, buf: _Buffers):
    """``e = (h - mu_y) / scale`` (m, d), the left factor of the block's products and the
    squared row norms of ``e``, all float64 in the buffers of ``buf``."""
    m = block.shape[0]
    inv = kern.inv_scale
    if kern.from_scores:  # e straight from the class means; the products use e
        e = buf.e[:m]
        g = np.take(kern.means_s, y, axis=0, out=buf.g[:m], mode="clip")
        if inv == 1.0:
            np.subtract(block, g, out=e)
        else:  # exact scaling first, so nothing overflows
            np.multiply(block, inv, out=e)
            np.subtract(e, g, out=e)
        x = e
    else:  # h' = (h - mu_G) / scale for the decisions, e = h' - M~_y for the projection
        x = buf.g[:m]
        if inv == 1.0:
            np.subtract(block, kern.mean_scaled, out=x)
        else:
            np.multiply(block, inv, out=x)
            np.subtract(x, kern.mean_scaled, out=x)
        e = np.take(kern.centred_s, y, axis=0, out=buf.e[:m], mode="clip")
        np.subtract(x, e, out=e)
    return e, x, np.einsum("ij,ij->i", e, e)


def _ncc_float32(kern: _Kernel, s32: np.ndarray, x: np.ndarray, xnorm: np.ndarray):
    """NCC decisions from float32 scores of h' (``x``), rows near a tie redone in float64.

    ``argmin_c ||h' - m'_c||^2 = argmax_c (h'.m'_c - ||m'_c||^2 / 2)``, evaluated in float32
    in place: it differs from half the negated float64 distance by at most the float32
    product error ``kappa |h'| |m'_c|`` (+ underflow) plus the rounding of both formulas.
    """
    values = np.subtract(s32, kern.half_sq32, out=s32)
    nn = kern.ncc_norm
    bound = kern.kappa * xnorm * nn + kern.tiny + 4.0 * _U32 * (kern.centre_sq_max + xnorm * nn)
    best, redo = _best(values, bound.astype(np.float32), maximise=True)
    if redo.size:
        exact = kern.distances(x[redo] @ kern.ncc_t)
        best[redo] = np.argmin(exact, axis=1)
    return best


def _clf_float32(kern: _Kernel, s32: np.ndarray, x: np.ndarray, y: np.ndarray, xnorm):
    """Classifier decisions from float32 scores, rows near a tie redone in float64."""
    scores = s32.astype(np.float64)
    if kern.from_scores:
        scores += np.take(kern.k_w, y, axis=0)
    approx = kern.logits(scores)
    f = abs(kern.score_factor)
    wn = kern.w_norm
    kmax = kern.cen_norm * wn if kern.from_scores else 0.0
    big = np.abs(approx).max(axis=1) + kern.offset_max + f * (xnorm * wn + kmax)
    bound = f * (kern.kappa * xnorm * wn + kern.tiny) + 16.0 * _U64 * big
    best, redo = _best(approx, bound, maximise=True)
    if redo.size:
        exact = x[redo] @ kern.w_t
        if kern.from_scores:
            exact += np.take(kern.k_w, y[redo], axis=0)
        best[redo] = np.argmax(kern.logits(exact), axis=1)
    return best
