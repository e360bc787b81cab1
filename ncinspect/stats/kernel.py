"""The pass-2 kernel: per-geometry constants and the float64 work of one block of rows.

:class:`Kernel` holds what every block of pass 2 needs from the geometry of pass 1 (the
product's right-hand sides, the class terms, the float32 error bounds); :func:`residuals`
forms the centred rows of a block and :func:`ncc_float32` / :func:`clf_float32` take the
decisions from float32 scores, deciding again in float64 every row near a tie.
:class:`ncinspect.stats.SecondPass` runs them block by block.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np

from .blocks import Moments, errstate_calls, output_sums
from .pairs import block_pairs

__all__ = [
    "BLOCK_BYTES",
    "BlockStats",
    "Buffers",
    "Kernel",
    "Placed",
    "Scores32",
    "block_rows",
    "clf_float32",
    "kernel_for",
    "ncc_float32",
    "numpy_block",
    "residuals",
    "scores32",
]

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


class _lazy:
    """A property computed on first read and stored on the instance, as
    :func:`functools.cached_property` without its lock: before Python 3.12 that lock is one
    per property, shared by every instance, and taken on each first read (about a dozen
    reads a snapshot). Each value is a function of the kernel's constants only, so two
    threads that compute one at once store equal values."""

    def __init__(self, fn):
        self.fn, self.name, self.__doc__ = fn, fn.__name__, fn.__doc__

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)
        return value


class Kernel:
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
      definition reads. When pass 2 sums the directional table (own NCC centres, the C x C
      class terms within :data:`_GATHER_MAX`), its float64 product ``e M~^T`` plus the
      gathered class term gives the NCC scores as well (``ncc_from_e``): NCC is then decided
      in float64 and leaves the float32 product.

    Scores that serve only a decision (NCC in the direct layout; the classifier when the
    outputs are stored) are computed in float32 and every row whose best two candidates lie
    within the float32 error bound is decided again in float64: the decisions are those of
    the float64 scores.
    """

    def __init__(self, geom, logits64: bool):
        C, d = geom.means.shape
        r = geom.basis.shape[0]
        self.n_classes, self.n_features, self.rank = C, d, r
        present = np.ones(C, bool) if geom.present is None else geom.present
        self.present = None if present.all() else present
        self.pairs = geom.pair_reason is None  # sum the directional table (stats/pairs.py)
        # a scale of 1.0 (features of ordinary magnitude) divides nothing: x / 1.0 is x, bit
        # for bit, and the kernel only reads these arrays
        inv = 1.0 / geom.scale
        self.inv_scale = inv
        self.mean_scaled = geom.global_mean * inv if inv != 1.0 else geom.global_mean
        # absent classes' NaN means zeroed (the kernel only reads these arrays)
        means = geom.means if self.present is None else np.where(present[:, None], geom.means, 0.0)
        self.means_s = means * inv if inv != 1.0 else means  # mu_c / scale
        cen = geom.centred * inv if inv != 1.0 else geom.centred  # M~ / scale
        self.centred_s = cen
        ncc = geom.ncc_centres / geom.scale if inv != 1.0 else geom.ncc_centres
        self.centre_sq = np.einsum("ij,ij->i", ncc, ncc)
        self.ncc_invalid = None if geom.ncc_valid.all() else ~geom.ncc_valid
        self.has_w = geom.weights is not None
        self.logits64 = self.has_w and logits64
        w = None
        if self.has_w:
            s_w = geom.weight_scale
            w = geom.weights / s_w if s_w != 1.0 else geom.weights
        self._logit_units(geom, w)

        a, b = geom.ncc_centres, geom.centred  # np.array_equal(a, b), without its wrapper
        own = a.shape == b.shape and bool((a == b).all())
        self._own = own
        self._counts = geom.counts
        amp = math.inf
        if r:
            amp = math.sqrt(float(geom.eigvals.sum()) / float(geom.eigvals[-1]))
        self.from_scores = bool(r and own and C < d and C * C <= _GATHER_MAX and amp <= _AMP_MAX)
        # The directional table needs e . m'_c' in float64 (a product of width C): in the
        # direct layout that product, plus the class term, gives the NCC scores too, so NCC
        # leaves the float32 product rather than being computed twice.
        self.ncc_from_e = self.from_scores or bool(self.pairs and own and C * C <= _GATHER_MAX)
        # float64 product columns: [NCC (C)] [W (C) if logits64] [basis (r) in direct]
        cols64, cols32 = [], []
        if self.from_scores:
            cols64.append(ncc)
            self.proj_map = (cen @ geom.basis.T) / geom.eigvals  # A (C, r)
        elif not self.ncc_from_e:
            cols32.append(ncc)
        if self.has_w:
            (cols64 if self.logits64 else cols32).append(w)
        self.ncc64 = self.ncc_from_e
        # the numpy kernel's right-hand sides are built on first use (lazy properties below):
        # a kernel placed on a device (Placed) never builds them
        self._cols, self._basis, self._ncc, self._w = (cols64, cols32), geom.basis, ncc, w
        self._bias = geom.bias  # the classifier's rows are (w_c, b_c): their twins
        self._local = threading.local()
        # no reference back to ``geom``: it holds this kernel (``geom.kernels``), and a cycle
        # would keep both, and their C x d arrays, until the cyclic collector ran (a file
        # of many snapshots grew by them, snapshot after snapshot)
        self._ncc_valid = geom.ncc_valid
        self._placed: dict = {}
        if self.ncc_from_e:  # class terms M~_y [ncc | W]^T / units, gathered by label
            self.k_ncc = cen @ ncc.T
            self.k_w = cen @ w.T if self.has_w and self.from_scores else None
        # constants of the float32 error bounds (the norms below: on first use, as a
        # snapshot whose decisions are all float64 never reads them)
        kappa = 1.02 * (d + 4) * (_U32 + _U64)
        self.kappa = kappa
        self.tiny = (4 * d + 8) * 2.0**-149

    @_lazy
    def ncc_twins(self) -> np.ndarray | None:
        """For each class, the lowest class whose NCC centre is the same and defined: bit for
        bit (:func:`first_twins`) or up to the rounding of the sums that made it (two classes
        holding the same rows, summed in other orders: :func:`coincident_twins`, the bound by
        which a mean is zero in the metrics); None when no two defined centres are."""
        exact = first_twins(self._ncc, self._ncc_valid)
        if not self._own or self._counts is None:  # another split's centres: bit for bit
            return exact
        return coincident_twins(self.means_s, self._ncc_valid, exact, self._counts)

    @_lazy
    def clf_twins(self) -> np.ndarray | None:
        """For each class, the lowest class with the same classifier row and bias (bit for
        bit); None when no two rows are equal or there is no classifier."""
        if not self.has_w:
            return None
        w, b = self._w, self._bias
        rows = w if b is None else np.concatenate((w, b[:, None]), axis=1)  # column_stack
        return first_twins(rows)

    def lowest_twins(self, ncc: np.ndarray, clf: np.ndarray | None):
        """The decisions ``ncc``, ``clf`` with every class replaced by the lowest class of
        the same centre / classifier row: equal rows give equal scores in exact arithmetic,
        and the lowest index wins a tie (spec/metrics.md, NC4), where a BLAS product may
        round two equal columns apart (an AVX-512 kernel forms the last columns of a product
        in another order than the others)."""
        if self.ncc_twins is not None:
            ncc = self.ncc_twins[ncc]
        if clf is not None and self.clf_twins is not None:
            clf = self.clf_twins[clf]
        return ncc, clf

    @_lazy
    def centre_sq_max(self) -> float:
        """The largest squared norm of an NCC centre (in the units of the scores)."""
        return float(self.centre_sq.max()) if self.n_classes else 0.0

    @_lazy
    def half_sq32(self) -> np.ndarray:
        """float32 half squared norms of the NCC centres (inf for an undefined one)."""
        half = (self.centre_sq / 2).astype(np.float32)
        half[~self._ncc_valid] = np.inf  # an undefined centre is never the nearest
        return half

    @_lazy
    def ncc_norm(self) -> float:
        """The largest norm of an NCC centre (the float32 bounds)."""
        return float(np.sqrt(self.centre_sq.max())) if self.n_classes else 0.0

    @_lazy
    def zero_class(self) -> int:
        """The classifier's class for a row of zeros (logits ``b`` exactly): the first
        largest entry of b, class 0 without a bias."""
        return 0 if self.bias_units is None else int(np.argmax(self.bias_units))

    @_lazy
    def clf_reps(self) -> np.ndarray | None:
        """The lowest row of each group of equal classifier rows (and biases), in order;
        None when no two are equal (:attr:`clf_twins`): a tie between equal rows needs no
        product."""
        twins = self.clf_twins
        return None if twins is None else np.flatnonzero(twins == np.arange(twins.size))

    @_lazy
    def mean_norm(self) -> float:
        """The norm of mu_G in the units of the scores (the tie bound of :func:`tie_rows`)."""
        return float(np.sqrt(np.dot(self.mean_scaled, self.mean_scaled)))

    @_lazy
    def w_norm(self) -> float:
        """The largest norm of a classifier row in its units (the float32 bounds)."""
        if not self.has_w:
            return 0.0
        w = self._w
        return float(np.sqrt(np.einsum("ij,ij->i", w, w).max()))

    @_lazy
    def cen_norm(self) -> float:
        """The largest norm of a centred mean in the units of the scores (the bounds)."""
        if not self.n_classes:
            return 0.0
        cen = self.centred_s
        return float(np.sqrt(np.einsum("ij,ij->i", cen, cen).max()))

    def buffers(self, rows: int) -> Buffers:
        """This thread's work arrays for blocks of up to ``rows`` rows."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.rows < rows:
            buf = self._local.buf = Buffers(rows, self)
        return buf

    @_lazy
    def d64(self) -> np.ndarray | None:
        """(d, k) float64 right-hand side of the numpy kernel's float64 product."""
        cols = self._cols[0]
        # np.vstack of 2-D arrays, without its wrapper
        return np.ascontiguousarray(np.concatenate(cols).T) if cols else None

    @_lazy
    def d32(self) -> np.ndarray | None:
        """(d, k) float32 right-hand side of the numpy kernel's decision-only product."""
        cols = self._cols[1]
        return np.ascontiguousarray(np.concatenate(cols).T, dtype=np.float32) if cols else None

    @_lazy
    def e64(self) -> np.ndarray | None:
        """(d, C) right factor of the residuals' NCC product (direct layout, ``ncc_from_e``)."""
        if self.from_scores or not self.ncc_from_e:
            return None
        return np.ascontiguousarray(self._ncc.T)

    @_lazy
    def basis_t(self) -> np.ndarray | None:
        """(d, r) basis of the direct projection (None in the scores layout)."""
        if self.from_scores or not self.rank:
            return None
        return np.ascontiguousarray(self._basis.T)

    @_lazy
    def ncc_t(self) -> np.ndarray | None:
        """(d, C) float64 NCC centres of the rechecks (None when NCC is decided in float64)."""
        return None if self.ncc64 else np.ascontiguousarray(self._ncc.T)

    @_lazy
    def w_t(self) -> np.ndarray | None:
        """(d, C) float64 classifier of the rechecks (None when the logits are float64)."""
        return np.ascontiguousarray(self._w.T) if self.has_w and not self.logits64 else None

    def placed(self, xp, device) -> Placed:
        """These constants as ``xp`` arrays on ``device`` (built once per namespace and
        device): what the namespace kernel (:mod:`ncinspect.stats.device`) reads."""
        key = (getattr(xp, "__name__", str(xp)), str(device))
        if key not in self._placed:
            self._placed[key] = Placed(xp, self, device)
        return self._placed[key]

    @errstate_calls(under="ignore", over="ignore")
    def _logit_units(self, geom, w: np.ndarray | None) -> None:
        # logits / unit = scores * score_factor + offset, the scores being those of
        # h' = (h - mu_G) / scale against W / weight_scale (``w``)
        self.offset = None
        self.bias_units = None  # b in the logits' units (None: no bias), for tie_rows
        self.logit_scales = (geom.scale, geom.weight_scale)
        self.score_factor = 1.0
        if w is None:
            return
        mu = geom.global_mean if geom.scale == 1.0 else geom.global_mean / geom.scale
        self.offset = w @ mu
        if geom.bias is not None:
            bias = geom.bias
            if geom.scale != 1.0 or geom.weight_scale != 1.0:  # x / 1.0 is x
                bias = bias / geom.scale / geom.weight_scale
            if not np.isfinite(bias).all():  # the bias dwarfs W h: its own unit
                unit = math.ldexp(1.0, math.frexp(float(np.abs(geom.bias).max()))[1])
                self.score_factor = geom.scale / unit * geom.weight_scale
                self.offset = self.offset * self.score_factor
                self.logit_scales = (unit, 1.0)
                bias = geom.bias / unit
            self.offset = self.offset + bias
            self.bias_units = bias

    @_lazy
    def offset_max(self) -> float:
        """The largest ``|offset|`` of the logits (the classifier's float32 bound)."""
        return float(np.abs(self.offset).max()) if self.offset.size else 0.0

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
        dist = self.centre_sq - 2.0 * scores  # (C,) broadcast along the rows
        if self.ncc_invalid is not None:
            dist[:, self.ncc_invalid] = np.inf
        return dist


@dataclass
class BlockStats:
    """What one block of pass 2 adds (the fields of :class:`~ncinspect.stats.SecondPass`),
    as :func:`numpy_block` fills them for a device state."""

    proj_sq: np.ndarray
    class_sq: np.ndarray
    ncc_correct: np.ndarray
    clf_correct: np.ndarray
    agree: np.ndarray
    has_decisions: bool = False
    true_out: Moments = field(default_factory=Moments)
    wrong_out: Moments = field(default_factory=Moments)
    sq_err: float = 0.0
    max_abs_err: float = 0.0
    has_outputs: bool = False
    out_abs_max: float = 0.0

    @classmethod
    def empty(cls, n_classes: int, rank: int) -> BlockStats:
        z = np.zeros(n_classes, np.int64)
        return cls(np.zeros(rank), np.zeros(n_classes), z, z.copy(), z.copy())


class Placed:
    """The constants of a :class:`Kernel` on one device of one array namespace: float64
    right-hand sides of the products (and float32 copies for ``precision="float32"``), the
    class terms of the scores layout, the logit units and the norms of the recheck bound."""

    def __init__(self, xp, kern: Kernel, device):
        from .namespace import on_device

        def put(a, dtype=xp.float64):
            return on_device(xp, np.asarray(a), device, dtype)

        basis, ncc_valid = kern._basis, kern._ncc_valid
        rows = np.vstack([kern._ncc, kern._w]) if kern.has_w else kern._ncc  # (C | 2C, d)
        C, r = kern.n_classes, kern.rank
        self.n_classes, self.rank, self.has_w = C, r, kern.has_w
        self.pairs = kern.pairs
        self.inv_scale = kern.inv_scale
        self.mu_scaled = put(kern.mean_scaled)
        self.centred = put(kern.centred_s)
        self.basis_t = put(np.ascontiguousarray(basis.T))  # (d, r)
        self.decide = xp.permute_dims(put(rows), (1, 0))  # (d, C | 2C) view: NCC centres, W
        self.from_scores = kern.from_scores
        if self.from_scores:  # e [M~ | W]^T gives the projection and, + a class term, h'
            self.proj_map = put(kern.proj_map)
            terms = [kern.k_ncc] + ([kern.k_w] if kern.has_w else [])
            self.class_term = put(np.ascontiguousarray(np.hstack(terms)))
        self.centre_sq = put(kern.centre_sq)
        self.ncc_valid = on_device(xp, np.asarray(ncc_valid, bool), device)
        self.all_ncc_valid = bool(np.all(ncc_valid))
        #: (1, C) int64 class indices: ``classes == y[:, None]`` is the rows' one-hot mask
        self.classes = on_device(xp, np.arange(C, dtype=np.int64)[None, :], device)
        present = np.ones(C, bool) if kern.present is None else kern.present
        self.all_present = kern.present is None
        self.present = on_device(xp, present, device)
        self.centre_norm, self.weight_norm = kern.ncc_norm, kern.w_norm
        self.score_factor, self.logit_scales = kern.score_factor, kern.logit_scales
        self.offset = None if kern.offset is None else put(kern.offset)
        #: the class of a row of zeros (logits ``b`` exactly): the first largest b, else 0
        self.zero_class = on_device(xp, np.asarray(kern.zero_class, np.int64), device)
        self.bias_units = None if kern.bias_units is None else put(kern.bias_units)
        #: the lowest class of equal centres / classifier rows (:meth:`Kernel.lowest_twins`)
        self.ncc_twins, self.clf_twins = (
            None if t is None else on_device(xp, t.astype(np.int64), device)
            for t in (kern.ncc_twins, kern.clf_twins)
        )
        self._xp = xp

    @_lazy
    def basis_t32(self):
        """float32 copy of ``basis_t`` (precision float32 only)."""
        return self._xp.astype(self.basis_t, self._xp.float32)

    @_lazy
    def decide32(self):
        """float32 copy of ``decide`` (precision float32 only)."""
        return self._xp.astype(self.decide, self._xp.float32)


def first_twins(rows: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray | None:
    """``twins[c]``: the lowest index of a row of ``rows`` equal to row ``c`` bit for bit
    once ``-0.0`` is read as ``0.0`` (``c`` itself for most), over the rows ``keep`` selects
    (the others map to themselves); None when no two of them are equal. A few rows are
    looked up by their bytes; many are screened by an integer hash of their first columns'
    bits (exact, whatever the BLAS), and only rows of a repeated hash compared whole: a
    matrix of distinct rows costs a pass over C x 16 values and a sort of C numbers."""
    C = rows.shape[0]
    idx = None if keep is None else keep.nonzero()[0]  # np.flatnonzero of a 1-D mask
    if idx is not None and idx.size == C:
        idx = None  # every row kept: no copy of them all
    sub = np.asarray(rows if idx is None else rows[idx], dtype=np.float64)  # no copy of all
    n, d = sub.shape
    if n < 2:
        return None
    if n <= _TWINS_FEW:  # each row's bytes looked up in a dict: no numpy call per pair
        seen: dict[bytes, int] = {}
        data, width = (sub + 0.0).tobytes(), 8 * d  # in C order: row i, then row i + 1
        rows_bytes = (data[i * width : (i + 1) * width] for i in range(n))
        found = [(i, seen.setdefault(row, i)) for i, row in enumerate(rows_bytes)]
        pairs = [(i, j) for i, j in found if j != i]
        if not pairs:
            return None
        twins = np.arange(C)
        at = np.arange(C) if idx is None else idx
        for i, j in pairs:
            twins[at[i]] = at[j]
        return twins
    # the screen hashes at most 16 columns (equal rows agree on every column; a repeated hash
    # of distinct rows only sends them to the whole-row comparison); -0.0 + 0.0 is 0.0:
    # equal values, equal bits
    bits = (sub[:, : min(16, d)] + 0.0).view(np.uint64)
    mult = np.arange(bits.shape[1], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        keys = (bits * (mult | np.uint64(1))).sum(axis=1, dtype=np.uint64)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    cand = np.flatnonzero(counts[inverse.ravel()] > 1)  # positions in ``sub``, increasing
    if cand.size < 2:
        return None
    whole = np.ascontiguousarray(sub[cand] + 0.0).view(np.dtype((np.void, 8 * d))).ravel()
    _, first, inverse = np.unique(whole, return_index=True, return_inverse=True)
    lowest = cand[first[inverse.ravel()]]  # np.unique's first occurrences: the lowest index
    if np.array_equal(lowest, cand):
        return None
    twins = np.arange(C)
    at = np.arange(C) if idx is None else idx
    twins[at[cand]] = at[lowest]
    return twins


#: up to this many rows first_twins compares their bytes in a dict (above: hashed by numpy)
_TWINS_FEW = 64
#: candidate pairs coincident_twins compares whole, at most (beyond: bit-for-bit twins only)
_NEAR_PAIRS_MAX = 1 << 20


@errstate_calls(over="ignore", invalid="ignore", under="ignore")
def coincident_twins(
    rows: np.ndarray, keep: np.ndarray, exact: np.ndarray | None, counts: np.ndarray
) -> np.ndarray | None:
    """:func:`first_twins`' map ``exact`` (None: no equal rows) joined with the class means
    ``rows`` (uncentred, in units) that are equal up to the rounding of the sums that made
    them, ``||a - b|| <= 4 u ((n_a + 1) |a| + (n_b + 1) |b|)`` (``counts``: the n's; two
    classes holding the same rows, summed in other orders, differ by about that), over the
    rows ``keep`` selects: each row maps to the lowest row of its group (groups joined
    through any such pair). Well separated means are far outside it (at an offset of 1e8,
    means 1 apart of 200 rows each: a bound of 1e-4).

    The pairs are screened by a product (a few rows: their Gram matrix; many: their
    projections on one fixed direction, which differ by at most the distance) and only the
    candidates compared by their differences; beyond ``_NEAR_PAIRS_MAX`` candidates only the
    bit-for-bit twins are kept. Memory O(n^2 + n d) for a few rows, O(n + candidates d)."""
    idx = keep.nonzero()[0]  # np.flatnonzero of a 1-D mask
    n = idx.size
    if n < 2:
        return exact
    every = n == rows.shape[0]
    sub = rows if every else rows[idx]  # every row kept: no copy of them all
    d = sub.shape[1]
    sq = np.einsum("ij,ij->i", sub, sub)
    norm = np.sqrt(sq)
    n_a = counts if every else counts[idx]
    reach = 4.0 * _U64 * (n_a.astype(np.float64) + 1.0) * norm  # a's share
    # no reach is negative: all are finite when the largest is (a NaN is the largest)
    r = float(reach.max())
    if not math.isfinite(r):
        return exact
    slack = 4.0 * (d + 2) * _U64  # the rounding of the screens' own products
    if n <= _TWINS_FEW:
        gram = sub @ sub.T
        d2 = sq[:, None] + sq[None, :] - 2.0 * gram
        d2.flat[:: n + 1] = np.inf  # no row pairs with itself (the pairs are a < b)
        # One screen of every pair first: a pair's bound below is at most the one of
        # the largest reach and square (rounding is monotone, the terms are >= 0), so
        # with every distance above that there is no candidate (the usual case).
        s = float(sq.max())
        if float(d2.min()) > (r + r) * (r + r) + slack * (s + s):
            return exact
        tol = reach[:, None] + reach[None, :]
        cand = d2 <= tol * tol + slack * (sq[:, None] + sq[None, :])
        a, b = np.nonzero(cand)
        upper = a < b
        a, b = a[upper], b[upper]
    else:
        direction = np.random.default_rng(0x5EED).standard_normal(d)
        direction /= np.sqrt(np.dot(direction, direction))
        key = sub @ direction
        tol = 2.0 * r + slack * float(norm.max())
        order = np.argsort(key, kind="stable")
        ks = key[order]
        ends = np.searchsorted(ks, ks + tol, side="right")
        counts_ = ends - np.arange(n) - 1
        total = int(counts_.sum())
        if total == 0 or total > _NEAR_PAIRS_MAX or not math.isfinite(tol):
            return exact
        first = np.repeat(np.arange(n), counts_)
        starts = np.repeat(np.cumsum(counts_) - counts_, counts_)
        second = first + 1 + (np.arange(total) - starts)
        a, b = order[first], order[second]
    if a.size == 0:
        return exact
    ok = np.empty(a.size, dtype=bool)
    step = max(1, (1 << 22) // max(d, 1))  # the differences of 4 Mi values at a time
    for lo in range(0, a.size, step):
        pa, pb = a[lo : lo + step], b[lo : lo + step]
        diff = sub[pa] - sub[pb]
        ok[lo : lo + step] = np.sqrt(np.einsum("ij,ij->i", diff, diff)) <= reach[pa] + reach[pb]
    a, b = a[ok], b[ok]
    if a.size == 0:
        return exact
    parent = np.arange(rows.shape[0]) if exact is None else exact.copy()

    def root(c: int) -> int:
        while parent[c] != c:
            c = int(parent[c])
        return c

    for i, j in zip(idx[a].tolist(), idx[b].tolist(), strict=True):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(c) for c in range(parent.size)], dtype=parent.dtype)


def kernel_for(geom, logits64: bool) -> Kernel:
    """The :class:`Kernel` of ``geom`` (a :class:`~ncinspect.stats.Geometry`), built once per
    geometry and kind (``logits64``: the classifier's logits are needed in float64)."""
    cache = geom.kernels
    key = bool(logits64)
    if key not in cache:
        cache[key] = Kernel(geom, key)
    return cache[key]


class Buffers:
    """Float64 work arrays of one pass-2 block (one set per thread)."""

    def __init__(self, rows: int, kern: Kernel):
        d = kern.n_features
        self.rows = rows
        self.e = np.empty((rows, d))
        self.g = np.empty((rows, d))
        self.s64 = None if kern.d64 is None else np.empty((rows, kern.d64.shape[1]))
        self.proj = None if kern.basis_t is None else np.empty((rows, kern.rank))


def residuals(kern: Kernel, block: np.ndarray, y: np.ndarray, buf: Buffers):
    """``e = (h - mu_y) / scale`` (m, d), the left factor of the block's products and the
    squared row norms of ``e``, all float64 in the buffers of ``buf``."""
    m = block.shape[0]
    inv = kern.inv_scale
    if kern.from_scores:  # e straight from the class means; the products use e
        e = buf.e[:m]
        g = kern.means_s.take(y, axis=0, out=buf.g[:m], mode="clip")  # np.take, unwrapped
        np.copyto(e, block)  # exact; float64 ufuncs run faster than mixed-type ones
        if inv != 1.0:  # exact scaling first, so nothing overflows
            np.multiply(e, inv, out=e)
        np.subtract(e, g, out=e)
        x = e
    else:  # h' = (h - mu_G) / scale for the decisions, e = h' - M~_y for the projection
        x = buf.g[:m]
        np.copyto(x, block)
        if inv != 1.0:
            np.multiply(x, inv, out=x)
        np.subtract(x, kern.mean_scaled, out=x)
        e = kern.centred_s.take(y, axis=0, out=buf.e[:m], mode="clip")
        np.subtract(x, e, out=e)
    return e, x, np.einsum("ij,ij->i", e, e)


def scores32(kern: Kernel, x: np.ndarray, sq: np.ndarray):
    """The float32 decision scores of the block's rows ``x`` (None without float32 columns)
    and the bound on the rows' norms the error bounds use (inf where float32 could overflow).

    The scores are a :class:`Scores32`: the product ``x32 @ d32`` formed tile by tile by
    the decisions that read it, never as a whole (at C = 100,000 a block's scores are
    12.8 MB, written and read again several times; a tile stays in cache).
    """
    if kern.d32 is None:
        return None, None
    s32 = Scores32(x.astype(np.float32), kern.d32)
    xnorm = np.sqrt(sq) if kern.from_scores else np.sqrt(np.einsum("ij,ij->i", x, x))
    xnorm *= 1.01
    xnorm[~(xnorm < _HUGE32)] = np.inf
    return s32, xnorm


_TILE_BYTES = 1 << 20  #: float32 bytes of one tile of decision scores (rows x classes), ~L2


class Scores32:
    """The float32 scores ``x32 @ right`` (m, k) of one block, by tiles of columns.

    ``s[:, a:b]`` is the scores of columns a..b (a view of ``right``); :meth:`tiles` yields
    ``(first column, tile)`` with each tile a float32 (m, w) work array of about
    :data:`_TILE_BYTES`, overwritten by the next. The values are those of the whole
    product (BLAS forms each entry as one dot product of length d in either case only up
    to its own blocking; the decisions read them through error bounds, so the float64
    decisions do not depend on it).
    """

    __slots__ = ("x32", "right", "shape")

    def __init__(self, x32: np.ndarray, right: np.ndarray):
        self.x32, self.right = x32, right
        self.shape = (x32.shape[0], right.shape[1])

    def __getitem__(self, key) -> Scores32:
        rows, cols = key
        if rows != slice(None) or not isinstance(cols, slice):
            raise IndexError("Scores32 takes [:, a:b] only")
        return Scores32(self.x32, self.right[:, cols])

    def tiles(self, local):
        m, k = self.shape
        width = max(1, min(k, max(256, _TILE_BYTES // (4 * max(m, 1)))))
        buf = getattr(local, "tile32", None)
        if buf is None or buf.size < m * width:
            buf = local.tile32 = np.empty(m * width, np.float32)
        for a in range(0, k, width):
            b = min(a + width, k)
            tile = buf[: m * (b - a)].reshape(m, b - a)
            yield a, np.matmul(self.x32, self.right[:, a:b], out=tile)


def _tiles(scores, local):
    """``(first column, tile)`` of a :class:`Scores32`, or of a plain (m, k) array (one
    tile, a copy: the callers work in place)."""
    if isinstance(scores, Scores32):
        return scores.tiles(local)
    return iter([(0, np.array(scores, copy=True))])


def _best_two(tiles, values, m: int, absmax: bool = False):
    """Over the tiles of a block, per row: the first index of the largest value, the largest
    and the second largest values (the largest of the others: equal to the largest at a
    tie) and, with ``absmax``, the largest ``|value|``.

    ``values(a, tile)`` turns a score tile in place into the values (float32 or float64).
    Each tile's best index, best value and runner-up are taken while it is in cache; the
    row's decision is the best of the tiles' bests, the first tile winning a tie, so the
    index is :func:`numpy.argmax`'s over the whole row (a NaN counts as the largest and is
    reported as the largest value, as there).
    """
    rows = np.arange(m)
    tops, idx, runner, amax = [], [], [], []
    for a, tile in tiles:
        v = values(a, tile)
        i = np.argmax(v, axis=1)
        top = v[rows, i]
        if absmax:
            amax.append(np.maximum(np.abs(top), np.abs(v.min(axis=1))))
        v[rows, i] = -np.inf
        runner.append(v.max(axis=1) if v.shape[1] > 1 else np.full(m, -np.inf, v.dtype))
        tops.append(top)
        idx.append(i + a)
    tops_a, idx_a = np.stack(tops), np.stack(idx)
    win = np.argmax(tops_a, axis=0)  # the first tile holding the row's largest value
    top = tops_a[win, rows]
    tops_a[win, rows] = -np.inf
    second = np.maximum(tops_a.max(axis=0), np.stack(runner).max(axis=0))
    big = np.stack(amax).max(axis=0) if absmax else None
    return idx_a[win, rows], top, second, big


def _close(top, second, bound):
    """The rows whose decision must be taken again: a runner-up within ``2 bound`` of the
    best (a second candidate within the error bound), a non-finite bound or no finite best."""
    close = second >= top - 2.0 * bound
    close |= ~np.isfinite(bound) | ~np.isfinite(top)
    return np.flatnonzero(close)


def ncc_float32(kern: Kernel, s32, x: np.ndarray, xnorm: np.ndarray):
    """NCC decisions from float32 scores of h' (``x``), rows near a tie redone in float64.

    ``argmin_c ||h' - m'_c||^2 = argmax_c (h'.m'_c - ||m'_c||^2 / 2)``, evaluated in float32
    in place: it differs from half the negated float64 distance by at most the float32
    product error ``kappa |h'| |m'_c|`` (+ underflow) plus the rounding of both formulas.
    ``s32``: a :class:`Scores32` (or an (m, C) float32 array), taken tile by tile.
    """
    half = kern.half_sq32

    def values(a, tile):
        return np.subtract(tile, half[a : a + tile.shape[1]], out=tile)

    m = x.shape[0]
    best, top, second, _ = _best_two(_tiles(s32, kern._local), values, m)
    nn = kern.ncc_norm
    bound = kern.kappa * xnorm * nn + kern.tiny + 4.0 * _U32 * (kern.centre_sq_max + xnorm * nn)
    redo = _close(top, second, bound.astype(np.float32))
    if redo.size:
        exact = kern.distances(x[redo] @ kern.ncc_t)
        best[redo] = np.argmin(exact, axis=1)
    return best


def clf_float32(kern: Kernel, s32, x: np.ndarray, y: np.ndarray, xnorm, block=None):
    """Classifier decisions from float32 scores, rows near a tie redone in float64.

    The approximate logits of a tile are formed in float64 as
    :meth:`Kernel.logits` forms them (the same operations per entry)."""
    m = x.shape[0]
    f = kern.score_factor
    work = np.empty(0)

    def values(a, tile):
        nonlocal work
        b = a + tile.shape[1]
        if work.size < tile.size:
            work = np.empty(tile.size)
        t = work[: tile.size].reshape(tile.shape)
        t[...] = tile
        if kern.from_scores:
            t += np.take(kern.k_w[:, a:b], y, axis=0)
        if f != 1.0:
            with np.errstate(under="ignore"):
                t *= f
        t += kern.offset[a:b]
        return t

    best, top, second, amax = _best_two(_tiles(s32, kern._local), values, m, absmax=True)
    f = abs(kern.score_factor)
    wn = kern.w_norm
    kmax = kern.cen_norm * wn if kern.from_scores else 0.0
    big = amax + kern.offset_max + f * (xnorm * wn + kmax)
    bound = f * (kern.kappa * xnorm * wn + kern.tiny) + 16.0 * _U64 * big
    redo = _close(top, second, bound)
    if redo.size:
        exact = x[redo] @ kern.w_t
        if kern.from_scores:
            exact += np.take(kern.k_w, y[redo], axis=0)
        logits = kern.logits(exact)
        best[redo] = np.argmax(logits, axis=1)
        if block is not None:
            tie_rows(kern, block[redo], x[redo], logits, best, redo)
    return best


def tie_rows(kern: Kernel, block, x, logits, best, at=None, x_sq=None) -> None:
    """Classifier decisions at an exact tie: rows whose two largest float64 logits lie within
    the rounding bound of the form they were taken in (``W h' + W mu_G + b``, centred at
    mu_G, in units) are decided again from ``W h + b`` as the definition reads it (each
    entry one dot product of length d in order, the same for a row wherever it lies), the
    first largest winning (spec/metrics.md, NC4: the lowest index). A row of zeros (a dead
    ReLU pattern) has the logits ``b`` exactly there, and every class ties without a bias:
    the centred form rounds the tie apart at random. ``block``: the rows as given (float64
    or narrower), ``x``: their h' in units, ``logits``: their float64 logits (read; left as
    they were), ``best``: their argmax, set in place at ``at`` (the rows' places in it; all
    rows when None). ``x_sq``: the squared norms of the rows of ``x`` when the caller has
    them."""
    m, C = logits.shape
    if m == 0 or C < 2:
        return
    rows = np.arange(m)
    i = best if at is None else best[at]  # np.argmax of each row of ``logits``
    top = logits[rows, i]
    logits[rows, i] = -np.inf  # the runner-up, without a copy of the logits
    second = logits.max(axis=1)
    logits[rows, i] = top
    gaps = top - second
    d = kern.n_features
    f = abs(kern.score_factor)
    wn = kern.w_norm
    kmax = kern.cen_norm * wn if kern.from_scores else 0.0
    x_sq = np.einsum("ij,ij->i", x, x) if x_sq is None else x_sq
    mnorm = kern.mean_norm
    # the centred form: h' (h / scale - mu_G, one rounding an entry), its dot with w (d
    # terms), the offset W mu_G (d terms) plus b, the class term, the factor and the sum
    u = 1.02 * (2 * d + 8) * _U64
    # the largest norm is the root of the largest square (a correctly rounded root is
    # monotone): the rows' norms are taken only past the screen
    first = f * ((math.sqrt(float(x_sq.max())) + 2.0 * mnorm) * wn + kmax) + kern.offset_max
    if float(gaps.min()) > 2.0 * u * (first + float(np.abs(top).max())):
        return  # no row near a tie (NaN rows, whose gap is NaN, are left as they are)
    xnorm = np.sqrt(x_sq)
    big = f * ((xnorm + 2.0 * mnorm) * wn + kmax) + kern.offset_max + np.abs(top)
    near = np.flatnonzero((gaps <= 2.0 * u * big) & np.isfinite(top))
    if near.size == 0:
        return
    h = np.asarray(block[near], dtype=np.float64)
    pick = np.full(near.size, -1)
    zero = ~h.any(axis=1)  # a row of zeros: its logits are b exactly, no product needed
    pick[zero] = kern.zero_class
    rest = np.flatnonzero(~zero)
    if rest.size:
        h = h[rest] if kern.inv_scale == 1.0 else h[rest] * kern.inv_scale  # exact
        reps = kern.clf_reps  # one row of W per group of equal rows (and biases): its lowest
        w = kern._w if reps is None else kern._w[reps]
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            direct = np.einsum("ij,cj->ic", h, w)  # each entry summed in order: no BLAS
            if kern.score_factor != 1.0:
                direct *= kern.score_factor
            if kern.bias_units is not None:
                direct += kern.bias_units if reps is None else kern.bias_units[reps]
        ok = np.isfinite(direct).all(axis=1)
        got = np.argmax(direct, axis=1)
        got = got if reps is None else reps[got]
        pick[rest[ok]] = got[ok]
    done = pick >= 0  # a row whose direct logits are not finite keeps its decision
    where = near[done] if at is None else np.asarray(at)[near[done]]
    best[where] = pick[done]


def numpy_block(kern: Kernel, block: np.ndarray, y: np.ndarray, outputs, rows: int, empty):
    """The numpy fast path of pass 2 on one block of host rows: ``(stats, pairs)``, ``stats``
    made by ``empty(C, r)`` (a :class:`~ncinspect.stats.SecondPass`) and filled, ``pairs`` the
    block's directional sums (:func:`~ncinspect.stats.pairs.block_pairs`) or None.

    The same pass as the namespace kernel (:class:`ncinspect.stats.device.SecondState`),
    with what pays on a CPU: this thread's reusable float64 buffers (:meth:`Kernel.buffers`),
    ``bincount`` class sums, rows of absent classes dropped, and the decision-only scores
    as float32 products with the float64 recheck of every near tie (:func:`ncc_float32`,
    :func:`clf_float32`).
    """
    C = kern.n_classes
    stats = empty(C, kern.rank)
    if kern.present is not None:
        keep = kern.present[y]  # rows of classes below min_count take no part
        if not keep.all():
            block, y = block[keep], y[keep]
            outputs = None if outputs is None else outputs[keep]
    m = block.shape[0]
    if m == 0:
        return stats, None
    buf = kern.buffers(rows)
    e, x, sq = residuals(kern, block, y, buf)
    stats.class_sq = np.bincount(y, weights=sq, minlength=C)
    s64 = None if kern.d64 is None else np.matmul(x, kern.d64, out=buf.s64[:m])
    se = None  # e . m'_c' (m, C) in float64: the NCC scores of the residuals
    if kern.from_scores:
        se = s64[:, :C]
    elif kern.ncc_from_e:
        se = np.matmul(e, kern.e64)
    pairs = None
    if kern.pairs:  # the directional sums read e . m'_c': those scores, else one product
        pairs = block_pairs(se if se is not None else e @ kern.centred_s.T, y)
    if kern.from_scores:  # e M~^T A = e V^T, then the class term of h' = e + M~_y
        proj = s64[:, :C] @ kern.proj_map
        s64[:, :C] += kern.k_ncc.take(y, axis=0)  # the methods: no np.take wrapper
        if kern.logits64:
            s64[:, C:] += kern.k_w.take(y, axis=0)
    elif kern.rank:
        proj = np.matmul(e, kern.basis_t, out=buf.proj[:m])
    if kern.rank:
        stats.proj_sq = np.einsum("ij,ij->j", proj, proj)

    s32, xnorm = scores32(kern, x, sq)
    if kern.ncc64:  # h' . m'_c = e . m'_c + M~_y . m'_c (added above in the scores layout)
        if not kern.from_scores:
            se += kern.k_ncc.take(y, axis=0)
        ncc = kern.distances(se).argmin(axis=1)
    else:
        ncc = ncc_float32(kern, s32[:, :C], x, xnorm)

    logits = None
    if kern.logits64:  # in place, in the product's buffer
        logits = kern.logits(s64[:, kern.d64.shape[1] - C :], inplace=True)
        clf = logits.argmax(axis=1)
        tie_rows(kern, block, x, logits, clf, x_sq=sq if x is e else None)
    elif kern.has_w:
        clf = clf_float32(kern, s32[:, s32.shape[1] - C :], x, y, xnorm, block)
    elif outputs is not None:
        clf = np.argmax(outputs, axis=1)
    # a tie between equal centres or classifier rows goes to the lowest class (the decisions
    # of stored outputs are theirs, as given)
    if kern.has_w:
        ncc, clf = kern.lowest_twins(ncc, clf)
    else:
        ncc, _ = kern.lowest_twins(ncc, None)
    stats.ncc_correct = np.bincount(y[ncc == y], minlength=C)
    if kern.has_w or outputs is not None:
        stats.clf_correct = np.bincount(y[clf == y], minlength=C)
        stats.agree = np.bincount(y[clf == ncc], minlength=C)
        stats.has_decisions = True

    sums = None
    if outputs is not None:
        sums = output_sums(np.asarray(outputs, dtype=np.float64), y)
    elif logits is not None:
        s_h, s_w = kern.logit_scales
        if s_h * s_w != 1.0:
            with np.errstate(over="ignore", under="ignore"):  # may leave float64: SQI null
                logits = logits * s_h * s_w
        sums = output_sums(logits, y, scratch=True)
    if sums is not None:
        stats.true_out, stats.wrong_out, stats.sq_err, stats.max_abs_err = sums[:4]
        stats.out_abs_max, stats.has_outputs = sums[4], True
    return stats, pairs
