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

import numpy as np

__all__ = [
    "BLOCK_BYTES",
    "Buffers",
    "Kernel",
    "Scores32",
    "best_of",
    "block_rows",
    "clf_float32",
    "kernel_for",
    "ncc_float32",
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
        # The directional table needs e . m'_c' in float64 (a product of width C): in the
        # direct layout that product, plus the class term, gives the NCC scores too, so NCC
        # leaves the float32 product rather than being computed twice.
        self.ncc_from_e = self.from_scores or bool(self.pairs and own and C * C <= _GATHER_MAX)
        # float64 product columns: [NCC (C)] [W (C) if logits64] [basis (r) in direct]
        cols64, cols32 = [], []
        self.e64 = None  # (d, C) right factor of the residuals' NCC product (direct layout)
        if self.from_scores:
            cols64.append(ncc)
            self.proj_map = (cen @ geom.basis.T) / geom.eigvals  # A (C, r)
        elif self.ncc_from_e:
            self.e64 = np.ascontiguousarray(ncc.T)
        else:
            cols32.append(ncc)
        if self.has_w:
            (cols64 if self.logits64 else cols32).append(w)
        self.ncc64 = self.ncc_from_e
        self.d64 = np.ascontiguousarray(np.vstack(cols64).T) if cols64 else None
        self.d32 = np.ascontiguousarray(np.vstack(cols32).T, dtype=np.float32) if cols32 else None
        self.basis_t = None if (self.from_scores or not r) else np.ascontiguousarray(geom.basis.T)
        self.ncc_t = None if self.ncc64 else np.ascontiguousarray(ncc.T)  # float64 rechecks
        self.w_t = np.ascontiguousarray(w.T) if self.has_w and not self.logits64 else None
        self._local = threading.local()
        if self.ncc_from_e:  # class terms M~_y [ncc | W]^T / units, gathered by label
            self.k_ncc = cen @ ncc.T
            self.k_w = cen @ w.T if self.has_w and self.from_scores else None
        # constants of the float32 error bounds
        kappa = 1.02 * (d + 4) * (_U32 + _U64)
        self.kappa = kappa
        self.tiny = (4 * d + 8) * 2.0**-149
        self.ncc_norm = float(np.sqrt(self.centre_sq.max())) if C else 0.0
        self.w_norm = float(np.sqrt(np.einsum("ij,ij->i", w, w).max())) if self.has_w else 0.0
        self.cen_norm = float(np.sqrt(np.einsum("ij,ij->i", cen, cen).max())) if C else 0.0

    def buffers(self, rows: int) -> Buffers:
        """This thread's work arrays for blocks of up to ``rows`` rows."""
        buf = getattr(self._local, "buf", None)
        if buf is None or buf.rows < rows:
            buf = self._local.buf = Buffers(rows, self)
        return buf

    def _logit_units(self, geom) -> None:
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


def kernel_for(geom, logits64: bool) -> Kernel:
    """The :class:`Kernel` of ``geom`` (a :class:`~ncinspect.stats.Geometry`), built once per
    geometry and kind (``logits64``: the classifier's logits are needed in float64)."""
    cache = geom.kernels
    key = bool(logits64)
    if key not in cache:
        cache[key] = Kernel(geom, key)
    return cache[key]


def best_of(values: np.ndarray, bound: np.ndarray, maximise: bool) -> tuple[np.ndarray, np.ndarray]:
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
        g = np.take(kern.means_s, y, axis=0, out=buf.g[:m], mode="clip")
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
        e = np.take(kern.centred_s, y, axis=0, out=buf.e[:m], mode="clip")
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
    best (the count of :func:`best_of`), a non-finite bound or no finite best."""
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


def clf_float32(kern: Kernel, s32, x: np.ndarray, y: np.ndarray, xnorm):
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
        best[redo] = np.argmax(kern.logits(exact), axis=1)
    return best
