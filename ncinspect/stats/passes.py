"""Mergeable sufficient statistics: the two passes over row chunks.

Every metric of spec/metrics.md is a function of these sums; the statistic of two chunks is
the :meth:`merge` of each one's, so the same code runs on one in-memory chunk, a file
streamed from disk or chunks spread over a cluster. Pass 1 (:class:`FirstPass`): per-class
counts and float64 feature sums. Pass 2 (:class:`SecondPass`, given the :class:`Geometry`
of pass 1): within-class scatter projected on the between-class eigenbasis, per-class
scatter traces, directional pair sums, NCC and classifier decisions and output statistics,
block by block (:mod:`ncinspect.stats.kernel`). No d x d matrix is built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .blocks import Moments, errstate_calls, first_rows, pow2_scale, to_float64
from .kernel import block_rows, kernel_for, numpy_block
from .namespace import check_precision, get_namespace, is_numpy
from .pairs import AUTO, add_pairs, merge_pairs, pair_tables_reason
from .xp import first_sums

__all__ = ["Moments", "FirstPass", "Geometry", "SecondPass", "to_float64", "block_rows"]
__all__ += ["first_rows", "pow2_scale"]


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
        (:func:`ncinspect.stats.xp.first_sums`); the statistics are host numpy.
        """
        return cls(*first_sums(get_namespace(h), h, y, n_classes, row0, map=map))

    @classmethod
    def of_state(cls, state, values: dict | None = None) -> FirstPass:
        """The host statistics of a :class:`~ncinspect.stats.device.FirstState` (``values``:
        its host values, when already read)."""
        from .device import overflow_error

        values = state.to_host() if values is None else values
        if not np.isfinite(values["sums"]).all():
            raise overflow_error()
        return cls(values["counts"], values["sums"])

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

    @errstate_calls(invalid="ignore", divide="ignore")
    def class_means(self) -> np.ndarray:
        """(C, d) float64 class means; rows of classes without samples are NaN."""
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
    weight_scale : power of two (:func:`pow2_scale` of ``weights``), for the decisions.
    present : (C,) bool, the classes that enter the class-level statistics (at least
        ``min_count`` samples); pass 2 leaves the rows of the other classes out. None: all.
    min_count : the ``min_class_count`` that ``present`` was derived with.
    pair_reason : None when pass 2 sums the directional C x C table (in ``scale**4``
        units, :mod:`ncinspect.stats.pairs`), else why not (beyond the memory budget).
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
    pair_reason: str | None = AUTO
    #: (C,) samples of each class in pass 1 (the rounding bound of its mean); None: unknown
    counts: np.ndarray | None = None
    _stack: np.ndarray | None = field(default=None, repr=False)
    #: of kernel_for (each also holds its constants placed on devices, Kernel.placed)
    kernels: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:  # the default budget unless a caller decided
        if self.pair_reason == AUTO:
            self.pair_reason = pair_tables_reason(self.n_classes)

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
        state["kernels"] = {}  # per-process work constants: rebuilt where they are used
        return state


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
    pair_sq: np.ndarray | None = None  # (C, C) directional sums (stats/pairs.py); None: zeros

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
        :func:`ncinspect.stats.device.second_sums`. ``precision="float32"`` computes the large
        products in float32 with float64 accumulation (bounds in :mod:`ncinspect.stats.xp`).
        """
        xp = get_namespace(h)
        if not is_numpy(xp) or check_precision(precision) == "float32":
            from .device import second_sums

            state = second_sums(xp, geom, h, y, outputs, precision=precision)
            decided = geom.weights is not None or outputs is not None
            return cls.of_state(state, decided)
        C, r, d = geom.n_classes, geom.basis.shape[0], h.shape[1]
        step = block_rows(d, C)
        kern = kernel_for(geom, outputs is None)
        n = h.shape[0]

        def block(a: int):
            out = None if outputs is None else outputs[a : a + step]
            return cls._of_block(kern, h[a : a + step], y[a : a + step], out, min(step, n))

        # the first block's statistics start the merge: every sum of pass 2 is of squares,
        # counts or maxima (never -0.0), so adding them to zeros would change no bit
        stats = None
        for part, pair_part in map(block, range(0, n, step)):
            stats = part if stats is None else stats.merge(part)
            if pair_part is not None:  # in place: no C x C table per block
                stats.pair_sq = add_pairs(stats.pair_sq, pair_part, C)
        return cls.empty(C, r) if stats is None else stats

    @classmethod
    def _of_block(cls, kern, block, y, outputs, rows: int):
        """One block through the numpy kernel (:func:`~ncinspect.stats.kernel.numpy_block`)."""
        return numpy_block(kern, block, y, outputs, rows, cls.empty)

    @classmethod
    def of_state(cls, state, has_clf: bool, values: dict | None = None) -> SecondPass:
        """The host statistics of a :class:`~ncinspect.stats.device.SecondState`;
        ``has_clf``: decisions and SQI sums were taken (a classifier or stored outputs)."""
        v = state.to_host() if values is None else values
        keys = ("proj_sq", "class_sq", "ncc_correct", "clf_correct", "agree")
        stats = cls(*(v[k] for k in keys), has_clf)
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
            merge_pairs(self.pair_sq, other.pair_sq),
        )
