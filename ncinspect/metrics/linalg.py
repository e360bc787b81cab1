"""Small numerical building blocks shared by the metric kernels (numpy only).

Norms that give the same bits on any machine, exact power-of-two rescaling, and tiled
pairwise products so that C = 50,000 classes never builds a C x C matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..stats.namespace import host, on_device
from ..stats.passes import pow2_scale

__all__ = [
    "CACHE_MAX_C",
    "kept",
    "DIRECT_MAX_C",
    "TILE_ELEMS",
    "fro",
    "unit",
    "unit_norms",
    "upper_mask",
    "row_norms",
    "row_cos",
    "tile_rows",
    "tiles_product",
    "pairwise_upper",
    "cross_gram_norm2",
    "ClassProducts",
    "normalised_gram",
]

DIRECT_MAX_C = 2048  #: up to this C, C x C matrices are formed directly (exact, cheap)
TILE_ELEMS = 1 << 22  #: entries of one tile of a pairwise computation (~32 MB float64)


CACHE_MAX_C = 64  #: class-level constant matrices up to this C are kept between snapshots
_KEPT: dict[tuple, np.ndarray] = {}


def kept(key: tuple, make) -> np.ndarray:
    """``make()``, kept (read-only) for the next call with the same ``key``: the constant
    matrices of a small C (the ETF Gram, I/sqrt(C), a SELI target), the same for every
    snapshot of a file, are built once. At most 64 are kept."""
    value = _KEPT.get(key)
    if value is None:
        if len(_KEPT) >= 64:
            _KEPT.clear()
        value = make()
        value.flags.writeable = False
        _KEPT[key] = value
    return value


#: bounds on a sum of squares ``q`` of n float64 values that prove ``max|x|`` inside
#: pow2_scale's band [2^-200, 2^200]: ``q < 2^400`` (a larger |x_i| squares to >= 2^400, and
#: a rounded sum of non-negative terms is at least each term) and ``q >= n 2^-398`` (below
#: the band every square rounds to <= 2^-400, and n of them sum to <= n 2^-399 with
#: rounding). NaN and inf fail both.
_SQ_LO, _SQ_HI = 2.0**-398, 2.0**400
_F64 = np.dtype(np.float64)  #: native float64 (another byte order takes fro's general path)


def upper_mask(m: int) -> np.ndarray:
    """The (m, m) bool mask of the pairs c < c' of a diagonal tile (its strict upper
    triangle), kept for m <= :data:`CACHE_MAX_C` (every snapshot of a file asks again)."""

    def make() -> np.ndarray:
        r = np.arange(m)
        return r[None, :] > r[:, None]

    return kept(("upper", m), make) if m <= CACHE_MAX_C else make()


def fro(x: np.ndarray) -> float:
    """Frobenius norm by numpy's pairwise sum: unlike ``np.linalg.norm`` (a BLAS dot whose
    summation order follows the thread count) it gives the same bits on any machine.

    The squares are taken of ``x / s`` (``s`` from :func:`pow2_scale`), so they neither
    overflow nor underflow; the result is inf only when the norm itself exceeds float64.
    """
    if type(x) is not np.ndarray:
        x = np.asarray(x)
    # np.add.reduce: the pairwise sum np.sum and .sum() run, less dispatch. Its value proves
    # when pow2_scale(x) is 1.0 (max|x| in [2^-200, 2^200]) without reading x again, and
    # that sum is then the result's (see _SQ_HI): the same bits, a snapshot's ~20 norms of
    # small arrays without their max |x| pass
    # the native float64 dtype object (an identity test, a fraction of =='s cost): another
    # float64 dtype object (unpickled, with metadata, another byte order) takes the general
    # path below, which gives the same bits
    if x.dtype is _F64:
        sq = float(np.add.reduce(np.square(x), axis=None))
        if x.size * _SQ_LO <= sq < _SQ_HI:
            return math.sqrt(sq)  # correctly rounded, as np.sqrt
    s = pow2_scale(x)
    if s == 1.0:
        return float(np.sqrt(np.square(x).sum()))
    return float(np.sqrt(np.square(x / s).sum())) * s


def unit(x: np.ndarray, memo: ClassProducts | None = None) -> np.ndarray:
    """``x`` divided by :func:`pow2_scale` of it (exact): for quantities invariant to the
    scale of ``x``, so that their squares and products stay inside float64. ``memo``: the
    snapshot's :class:`ClassProducts`, through which it is formed once per array (above
    C = 2048 the ETF, OF and SELI errors and the d x d Grams each read it: every call is
    two passes over a C x d array)."""
    if memo is not None:
        return memo.unit(x)
    s = pow2_scale(x)
    return x if s == 1.0 else x / s


def unit_norms(x: np.ndarray, memo: ClassProducts | None = None) -> np.ndarray:
    """The row norms of :func:`unit` ``(x)`` (the equinorm of NC2, the unit rows of the pair
    sweep and the duality cosines read the same ones: ``memo`` forms them once)."""
    if memo is not None:
        return memo.unit_norms(x)
    return _norms_of_unit(unit(x))


def _norms_of_unit(u: np.ndarray) -> np.ndarray:
    if u.dtype.kind != "f":  # (np.linalg.norm casts integers to float64 first)
        return np.linalg.norm(u, axis=1)
    # np.linalg.norm(u, axis=1) of a real float array: the same products, sum and square
    # root in numpy's order, without its dispatch
    return np.sqrt(np.add.reduce(u * u, axis=1))


def row_norms(x: np.ndarray) -> np.ndarray:
    """Euclidean norms of the rows of ``x`` without overflow or underflow of the squares."""
    s = pow2_scale(x)
    if s == 1.0:
        return np.linalg.norm(x, axis=1)
    with np.errstate(over="ignore"):
        return np.linalg.norm(x / s, axis=1) * s


def row_cos(a: np.ndarray, b: np.ndarray, memo: ClassProducts | None = None) -> np.ndarray:
    """``cos(a_c, b_c)`` row by row (NaN where a row is zero); ``memo``: see
    :class:`ClassProducts`."""
    if memo is not None:
        return memo.row_cos(a, b)
    return _row_cos(a, b, None)


def _row_cos(a: np.ndarray, b: np.ndarray, memo: ClassProducts | None) -> np.ndarray:
    na, nb = unit_norms(a, memo), unit_norms(b, memo)
    a, b = unit(a, memo), unit(b, memo)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("ij,ij->i", a, b) / (na * nb)


def normalised_gram(
    a: np.ndarray, b: np.ndarray, memo: ClassProducts | None = None
) -> tuple[np.ndarray | None, float]:
    """``(A B^T / ||A B^T||_F, ||A B^T||_F)`` of the rows of ``a`` and ``b`` divided by
    their powers of two (:func:`unit`: the quotient is scale-free, the norm in those units);
    the quotient is None when the product is zero or not finite. A C x C matrix: for the
    direct branch (C <= :data:`DIRECT_MAX_C`) of the ETF, OF and SELI errors, which share it
    through ``memo``."""
    if memo is not None:
        return memo.gram(a, b)
    return _normalised_gram(unit(a), unit(b))


def _normalised_gram(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray | None, float]:
    """:func:`normalised_gram` of the :func:`unit` arrays ``a`` and ``b``."""
    g = a @ b.T
    norm = fro(g)  # a Python float: math.isfinite, not a ufunc's dispatch on a scalar
    if norm == 0 or not math.isfinite(norm):
        return None, norm
    return g / norm, norm


class ClassProducts:
    """The products of one snapshot's class-level arrays that several metrics read, each
    formed once: the normalised cross-Gram ``W M^T`` serves the ETF error of NC3 and the
    SELI logits, ``W W^T`` the ETF, OF and SELI errors of W, and so on.

    Entries are keyed by the identity of the arrays (the metrics of one snapshot pass the
    same objects) and hold them, so an id is never reused while its entry lives; a memo
    lives for one snapshot's metrics. Values are those of the call without a memo, bit for
    bit: the same function computes them. The products a small snapshot asks for ~15 times
    (the normalised Grams, the row cosines, the rows taken) have dicts of their own: their
    bookkeeping is then a fraction of the products'.
    """

    def __init__(self, device: tuple[Any, Any] | None = None) -> None:
        self._kept: dict[tuple, tuple] = {}
        #: id(x) -> [x, unit(x), its row norms or None, the power of two unit(x) divided by]
        self._units: dict[int, list] = {}
        self._grams: dict[tuple[int, int], tuple] = {}  # (id(a), id(b)) -> (a, b, value)
        self._cos: dict[tuple[int, int], tuple] = {}  # the same for row_cos
        self._taken: dict[tuple[int, int], tuple] = {}  # (id(x), id(present)) -> (x, p, rows)
        #: ``(xp, device)`` of an accelerator where the d x d Grams (:func:`unit_gram`) are
        #: formed (a Meter's there), else None: on the host
        self.device = device

    def get(self, what: str, a: np.ndarray, b: np.ndarray, fn):
        """``fn(a, b)``, computed on the first call for these two arrays."""
        key = (what, id(a), id(b))
        hit = self._kept.get(key)
        if hit is None:
            value = fn(a, b)
            for arr in value if isinstance(value, tuple) else (value,):
                if isinstance(arr, np.ndarray) and arr is not a and arr is not b:
                    arr.setflags(write=False)  # shared: no reader may change it
            hit = self._kept[key] = (a, b, value)
        return hit[2]

    def gram(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray | None, float]:
        """:func:`normalised_gram` ``(a, b)``, formed on the first call for these arrays."""
        hit = self._grams.get((id(a), id(b)))
        if hit is None:
            value = _normalised_gram(self.unit(a), self.unit(b))
            if value[0] is not None:
                value[0].setflags(write=False)  # shared: no reader may change it
            hit = self._grams[id(a), id(b)] = (a, b, value)
        return hit[2]

    def row_cos(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """:func:`row_cos` ``(a, b)``, formed on the first call for these arrays."""
        hit = self._cos.get((id(a), id(b)))
        if hit is None:
            value = _row_cos(a, b, self)
            value.setflags(write=False)
            hit = self._cos[id(a), id(b)] = (a, b, value)
        return hit[2]

    def unit(self, x: np.ndarray) -> np.ndarray:
        """:func:`unit` ``(x)``, formed on the first call for ``x`` (a plain dict of its
        own: it is read ~20 times a snapshot, cheaper than the pow2_scale it saves)."""
        hit = self._units.get(id(x))
        if hit is None:
            s = pow2_scale(x)  # unit(x), with its scale kept for unit_scale
            u = x if s == 1.0 else x / s
            if u is not x:
                u.setflags(write=False)
            hit = self._units[id(x)] = [x, u, None, s]
        return hit[1]

    def unit_scale(self, x: np.ndarray) -> float:
        """The power of two :func:`unit` ``(x)`` divided ``x`` by (:func:`pow2_scale`)."""
        self.unit(x)
        return self._units[id(x)][3]

    def unit_norms(self, x: np.ndarray) -> np.ndarray:
        """:func:`unit_norms` ``(x)``, formed on the first call for ``x``."""
        u = self.unit(x)
        hit = self._units[id(x)]
        if hit[2] is None:
            hit[2] = _norms_of_unit(u)
            hit[2].setflags(write=False)
        return hit[2]

    def take(self, x: np.ndarray | None, present: np.ndarray) -> np.ndarray | None:
        """``x[present]`` (rows of a class-level array), one array per ``x``: the metrics
        that read the present classes' rows then share their products."""
        if x is None:
            return None
        hit = self._taken.get((id(x), id(present)))
        if hit is None:
            rows = x[present]
            rows.setflags(write=False)  # shared: no reader may change it
            hit = self._taken[id(x), id(present)] = (x, present, rows)
        return hit[2]


def tile_rows(n_rows: int, n_cols: int) -> int:
    """Rows of one tile of an ``(n_rows, n_cols)`` product (:data:`TILE_ELEMS` entries)."""
    return max(1, min(n_rows, TILE_ELEMS // max(n_cols, 1)))


def tiles_product(a: np.ndarray, b: np.ndarray) -> Iterator[np.ndarray]:
    """``A B^T`` tile by tile (blocks of rows of A)."""
    step = tile_rows(a.shape[0], b.shape[0])
    for i in range(0, a.shape[0], step):
        yield a[i : i + step] @ b.T


def pairwise_upper(x: np.ndarray, y: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield, tile by tile, the values ``x_c . y_c'`` for c < c' (upper triangle, row major)."""
    y = x if y is None else y
    C = x.shape[0]
    step = tile_rows(C, C)
    for i in range(0, C, step):
        block = x[i : i + step] @ y[i:].T  # (t, C - i): columns left of the tile are not needed
        rows = np.arange(i, min(i + step, C))
        mask = np.arange(i, C)[None, :] > rows[:, None]
        yield block[mask]


def cross_gram_norm2(a: np.ndarray, b: np.ndarray, memo: ClassProducts | None = None) -> float:
    """``||A' B'^T||_F^2`` of ``A' = unit(A)``, ``B' = unit(B)`` (:func:`unit`) without a
    C x C matrix: ``<A'^T A', B'^T B'>`` (d < C) or by tiles. ``memo``: the snapshot's
    :class:`ClassProducts`, through which each d x d Gram is formed once (the ETF, OF and
    SELI errors of a large C read four of them twenty times)."""
    if a.shape[1] < a.shape[0]:
        return float(np.sum(unit_gram(a, memo) * unit_gram(b, memo)))
    return sum(float(np.sum(np.square(t))) for t in tiles_product(unit(a), unit(b)))


def unit_gram(x: np.ndarray, memo: ClassProducts | None = None) -> np.ndarray:
    """The d x d Gram ``X'^T X'`` of ``X' = unit(X)``, formed once per ``x`` with ``memo``
    (on its :attr:`~ClassProducts.device` when it names one: O(C d^2), 10^11 multiply-adds
    at a language-model vocabulary, against one C x d transfer there and a d x d one back)."""
    if memo is not None:
        return memo.get("unit_gram", x, x, lambda a, _: _gram(unit(a, memo), memo.device))
    return _gram(unit(x), None)


def _gram(u: np.ndarray, device: tuple[Any, Any] | None) -> np.ndarray:
    if device is None:
        return u.T @ u
    xp, dev = device
    ud = on_device(xp, u, dev, xp.float64)
    return host(xp.permute_dims(ud, (1, 0)) @ ud)
