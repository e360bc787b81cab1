"""The class-pair sweep: every statistic over unordered pairs of classes from one pass over
the pair tiles (numpy; on an accelerator's device: :mod:`ncinspect.metrics.pairs_xp`).

NC2's cosines (``nc2_equiangular_*``, ``nc2_maxangle_*``), GNC2's hyperspherical statistics
(``gnc2_*``), CDNV (``nc1_cdnv``, ``nc1_cdnv_exp2``) and ``minority_collapse`` are sums
over the C(C-1)/2 pairs c < c'. :func:`pair_sweep` forms each tile's products once and takes
every one of them from it.

Tiles: the classes are cut into blocks of :data:`PAIR_BLOCK` rows; tile (I, J), J >= I, holds
the pairs of block I with block J (the upper triangle of the diagonal tile (I, I)), its
values flattened in row-major order. A work item is one block row I (its tiles in J order);
the work items run through a ``map``-like callable (the caller's thread pool, or the
built-in ``map``) and are merged in I order, so the result is the same, bit for bit, whatever
the number of threads. Up to :data:`PAIR_BLOCK` classes there is one tile and every value is
that of the formulas written directly over the upper triangle (same operations, same order).
Over several tiles the leaner kernels (``_unit_tile_fast``, ``_cdnv_tile_fast``) form the
same cosines, distances and logs for each pair, the CDNV terms within a rounding or two,
and reorder the sums (BLAS ``ddot`` and ``dgemv``): a third fewer passes over each tile.
Moments are merged exactly (Chan); O(C^2 d) time, O(threads x PAIR_BLOCK^2) memory. At
d = 16 a pair costs about 26 ns of one core, of which the float64 ``log`` and ``sqrt`` of
both sets' distances (numpy has no vector float64 ``log`` on AVX2: 4.4 ns each) and the
three K = d products are about 15 ns: ``python benchmarks/bench_pairs.py --sweep 20000``
prints that floor and the ratio (1.8). The rest is the passes of the moments (three per
set, 0.8 ns each), the clip, ``|cos + 1/(C-1)|`` and the CDNV terms; the sum of the logs
alone could be taken from grouped mantissa products (2.8 ns a value) but the variance of
the logs (GNC2) needs every log.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..blas import one_blas_thread
from ..stats.blocks import COINCIDE  # rows closer than this of their squared norms coincide
from ..stats.passes import Moments, pow2_scale
from .linalg import unit, unit_norms, upper_mask

__all__ = ["PAIR_BLOCK", "UnitPairs", "CdnvPairs", "PairStats", "unit_rows", "pair_sweep"]
__all__ += ["COINCIDE", "near_exact", "SweepPlan", "direct_unit_tile", "direct_cdnv_tile"]

PAIR_BLOCK = 256  #: rows of one block: a tile holds at most PAIR_BLOCK^2 pairs (512 KiB)
NEAR_FACTOR = 2.0**20  #: distances within this many rounding bounds of 0: from differences


@dataclass
class UnitPairs:
    """Pair statistics of one set of unit vectors u_c (centred means or classifier rows).

    ``cos``: moments of ``clip(u_c . u_c', -1, 1)``; ``abs_sum``: sum of ``|cos + 1/(C-1)|``;
    ``dist``, ``log``: moments of ``||u_c - u_c'|| = sqrt(max(2 - 2 cos, 0))`` and of its
    ``log(1/dist)``; ``coincide``: some dist is 0 (the log moments are then meaningless);
    ``minority_sum``, ``minority_count``: the sum of the clipped cosines and the number of
    the pairs whose two classes are both in ``minority`` (0 without a mask).
    """

    cos: Moments = field(default_factory=Moments)
    abs_sum: float = 0.0
    dist: Moments = field(default_factory=Moments)
    log: Moments = field(default_factory=Moments)
    coincide: bool = False
    minority_sum: float = 0.0
    minority_count: int = 0

    def merge(self, other: UnitPairs) -> UnitPairs:
        return UnitPairs(
            self.cos.merge(other.cos),
            self.abs_sum + other.abs_sum,
            self.dist.merge(other.dist),
            self.log.merge(other.log),
            self.coincide or other.coincide,
            self.minority_sum + other.minority_sum,
            self.minority_count + other.minority_count,
        )


@dataclass
class CdnvPairs:
    """``sum (v_c + v_c') / (2 D)`` and ``sum (v_c + v_c') / (2 D^2)`` over pairs, with
    ``D = ||m_c - m_c'||^2`` of the rescaled centred means; ``coincide``: some D <= 0."""

    total1: float = 0.0
    total2: float = 0.0
    count: int = 0
    coincide: bool = False

    def merge(self, other: CdnvPairs) -> CdnvPairs:
        return CdnvPairs(
            self.total1 + other.total1,
            self.total2 + other.total2,
            self.count + other.count,
            self.coincide or other.coincide,
        )


@dataclass
class PairStats:
    """What :func:`pair_sweep` returns: one :class:`UnitPairs` per unit set (None where the
    set was not given), the :class:`CdnvPairs` (None when not asked) and the power of two
    ``cdnv_scale`` the centred means were divided by (the variances by its square)."""

    units: list[UnitPairs | None]
    cdnv: CdnvPairs | None
    cdnv_scale: float = 1.0


def unit_rows(vectors: np.ndarray, memo=None) -> tuple[np.ndarray, np.ndarray]:
    """``(units, norms)``: the rows of ``vectors`` divided (after an exact power-of-two
    rescaling) by their norms; zero or non-finite rows give zero units. ``memo``: the
    snapshot's :class:`~ncinspect.metrics.linalg.ClassProducts` (NC2's equinorm and the
    duality cosines read the same norms)."""
    units, norms, _ = _unit_rows(vectors, memo)
    return units, norms


def _unit_rows(vectors: np.ndarray, memo=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`unit_rows` and the rows whose norm is finite and non-zero (None: all of them)."""
    v = unit(vectors, memo)
    norms = unit_norms(vectors, memo)
    # every norm finite and non-zero (the usual case) from two reductions: norms are >= 0 or
    # NaN, and a NaN fails both comparisons
    if norms.size and np.minimum.reduce(norms) > 0 and np.maximum.reduce(norms) < np.inf:
        return v / norms[:, None], norms, None
    ok = (norms > 0) & np.isfinite(norms)
    if ok.all():
        return v / norms[:, None], norms, None
    with np.errstate(invalid="ignore", divide="ignore"):
        units = np.where(ok[:, None], v / np.where(ok, norms, 1.0)[:, None], 0.0)
    return units, norms, ok


class SweepPlan:
    """The inputs of one sweep, shared (read-only) by the work items."""

    @classmethod
    def of(cls, units, minority, cdnv) -> tuple[SweepPlan, float]:
        """The plan of :func:`pair_sweep`'s arguments and the power of two ``scale`` the
        centred means of ``cdnv`` are divided by (the variances by its square: exact)."""
        centred = variances = None
        scale = 1.0
        if cdnv is not None:
            variances, centred = cdnv
            scale = pow2_scale(centred)
            if scale != 1.0:
                centred = centred / scale
                with np.errstate(under="ignore", over="ignore"):
                    variances = variances / scale / scale
        minority = list(minority or [None] * len(units))
        return cls(units, minority, variances, centred), scale

    def __init__(self, units, minority, variances, centred):
        self.units = [None if u is None else np.ascontiguousarray(u) for u in units]
        self.minority = minority
        self.C = next(a.shape[0] for a in (*self.units, centred) if a is not None)
        self.variances, self.centred = variances, centred
        self.sq = None if centred is None else np.einsum("ij,ij->i", centred, centred)
        # where the product formulas lose their digits (see near_exact): a squared distance
        # sq + sq' - 2 m.m' is off by up to (4 d + 16) u max(sq) (u = 2^-53); below 2^20
        # times that it is taken from the difference instead (so the formula's relative
        # error stays below 2^-20 and equal rows give 0); the unit distances
        # sqrt(2 - 2 cos) likewise below the root of that bound (max(sq) = 1)
        d = next(a.shape[1] for a in (*self.units, centred) if a is not None)
        rel = NEAR_FACTOR * (4 * d + 16) * 2.0**-53
        self.near_unit = math.sqrt(rel)  # correctly rounded, as np.sqrt
        self.near_sq = None if centred is None else rel * float(self.sq.max(initial=0.0))
        self.block = max(1, int(PAIR_BLOCK))
        self.local = threading.local()
        # several tiles: the leaner kernels (reordered sums); one tile: the direct formulas
        self.fast = self.C > self.block
        self.ones = np.ones(self.block * self.block) if self.fast else None
        self.minority_f = [None if m is None else m.astype(np.float64) for m in minority]
        if self.fast and centred is not None:
            with np.errstate(under="ignore"):
                self.var_half = variances * 0.5  # exact unless subnormal

    def buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This thread's three work arrays of one tile (a tile is at most min(block, C)
        squared: C = 4 classes take 16 values, not three 512 KiB arrays a snapshot)."""
        buf = getattr(self.local, "buf", None)
        if buf is None:
            n = min(self.block, self.C) ** 2
            buf = self.local.buf = (np.empty(n), np.empty(n), np.empty(n))
        return buf

    def factor(self, which: int, rows: int, cols: int) -> np.ndarray:
        """This thread's (rows, cols) work array ``which`` for a factor of a tile's
        product (the multi-tile kernels form their factors tile by tile: O(PAIR_BLOCK d)
        memory a thread, not another copy of the C x d sets)."""
        bufs = getattr(self.local, "factors", None)
        if bufs is None:
            bufs = self.local.factors = {}
        buf = bufs.get(which)
        if buf is None or buf.size < rows * cols:
            buf = bufs[which] = np.empty(rows * cols)
        return buf[: rows * cols].reshape(rows, cols)


def pair_sweep(
    units: list[np.ndarray | None],
    *,
    minority: list[np.ndarray | None] | None = None,
    cdnv: tuple[np.ndarray, np.ndarray] | None = None,
    map: Callable = map,  # noqa: A002 - a map-like callable, the built-in by default
) -> PairStats:
    """Every pair statistic of one class set from one sweep over the pair tiles.

    Parameters
    ----------
    units : list of (C, d) arrays or None
        Unit rows (:func:`unit_rows`) of each vector set; None skips a set.
    minority : list of (C,) bool arrays or None, optional
        Per set, the classes whose pairs ``minority_sum`` / ``minority_count`` count.
    cdnv : (variances (C,), centred (C, d)), optional
        ``v_c`` in the units of ``centred`` squared and the centred means; both are divided
        by the power of two of ``centred`` (exact) before the sums.
    map : callable
        ``map(fn, items)`` returning the results in item order (e.g. a thread pool's map;
        BLAS should run one thread per worker). The result does not depend on it.
    """
    plan, scale = SweepPlan.of(units, minority, cdnv)
    n_blocks = -(-plan.C // plan.block)
    with one_blas_thread():  # ddot splits a sum over BLAS threads: the bits would follow them
        if n_blocks == 1:  # one tile (C <= PAIR_BLOCK): every set's values in one array
            with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
                return PairStats(*_one_tile(plan), scale)
        rows = list(map(lambda i: _block_row(plan, i, n_blocks), range(n_blocks)))
    out_units: list[UnitPairs | None] = [None if u is None else UnitPairs() for u in plan.units]
    out_cdnv = None if plan.centred is None else CdnvPairs()
    for row_units, row_cdnv in rows:
        out_units = [
            a if b is None else a.merge(b) for a, b in zip(out_units, row_units, strict=True)
        ]
        if out_cdnv is not None:
            out_cdnv = out_cdnv.merge(row_cdnv)
    return PairStats(out_units, out_cdnv, scale)


def _block_row(plan: SweepPlan, i: int, n_blocks: int):
    """The merged statistics of the tiles (i, j), j = i .. n_blocks - 1, in j order."""
    b, C = plan.block, plan.C
    a0, a1 = i * b, min((i + 1) * b, C)
    acc_u: list[UnitPairs | None] = [None if u is None else UnitPairs() for u in plan.units]
    acc_c = None if plan.centred is None else CdnvPairs()
    with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
        for j in range(i, n_blocks):
            b0, b1 = j * b, min((j + 1) * b, C)
            mask = None
            if i == j:  # the upper triangle of the diagonal tile
                mask = upper_mask(a1 - a0)
            unit_tile = _unit_tile_fast if plan.fast else direct_unit_tile
            for k, u in enumerate(plan.units):
                if u is not None:
                    tile = unit_tile(plan, u, k, a0, a1, b0, b1, mask)
                    acc_u[k] = acc_u[k].merge(tile)
            if acc_c is not None:
                cdnv_tile = _cdnv_tile_fast if plan.fast else direct_cdnv_tile
                acc_c = acc_c.merge(cdnv_tile(plan, a0, a1, b0, b1, mask))
    return acc_u, acc_c


def _one_tile(plan: SweepPlan) -> tuple[list[UnitPairs | None], CdnvPairs | None]:
    """``_block_row(plan, 0, 1)`` of a sweep whose pairs fit one tile, bit for bit: the
    operations of :func:`direct_unit_tile` and :func:`direct_cdnv_tile` on each pair, with
    the values of every set as rows of one array, so that each step is one numpy call for
    all of them (a small snapshot's sweep was about 70 calls on arrays of 6 values).

    The rows' sums are one ``np.add.reduce(axis=1)``: along a contiguous row numpy adds the
    same pairwise way as over the row alone (tests/metrics/test_pairs.py checks it against
    the tile kernels); the smallest distances are only compared, so their order (the sign of
    a zero) does not matter."""
    C, S = plan.C, sum(u is not None for u in plan.units)
    n = C * (C - 1) // 2
    cd = plan.centred is not None
    out_units: list[UnitPairs | None] = [None if u is None else UnitPairs() for u in plan.units]
    if n == 0:
        return out_units, CdnvPairs() if cd else None
    mask = upper_mask(C)
    # the C x C products, then every set's upper triangle at once: rows 0..S-1 the sets'
    # cosines, S the CDNV variance sums v_c + v_c', S + 1 the squared distances D
    prods = np.empty((S + 2 * cd, C, C))
    sets = [(k, u) for k, u in enumerate(plan.units) if u is not None]
    for s, (_, u) in enumerate(sets):  # U @ U.T: the symmetric product, as the tile's
        np.matmul(u, u.T, out=prods[s])
    if cd:
        cen, sq, var = plan.centred, plan.sq, plan.variances
        # a copy of the rows: the general product (as the tile's), not the symmetric one
        prod = np.matmul(cen.copy(), cen.T, out=prods[S])
        np.multiply(prod, 2.0, out=prod)
        dist = np.add(sq[:, None], sq[None, :], out=prods[S + 1])
        np.subtract(dist, prod, out=dist)
        np.add(var[:, None], var[None, :], out=prods[S])
    flat = prods.reshape(S + 2 * cd, C * C).compress(mask.ravel(), axis=1)
    # rows of ``values``: cosines, distances, logs (their moments), then |cos + 1/(C-1)|
    # and the two CDNV terms (plain sums)
    values = np.empty((4 * S + 2 * cd, n))
    cos, dist, logs = values[:S], values[S : 2 * S], values[2 * S : 3 * S]
    flat[:S].clip(-1.0, 1.0, out=cos)
    t = np.add(cos, 1.0 / (C - 1), out=values[3 * S : 4 * S])
    np.abs(t, out=t)
    np.multiply(cos, 2.0, out=dist)
    np.subtract(2.0, dist, out=dist)  # >= +0 for cos in [-1, 1]: max(., 0) changes no bit
    np.sqrt(dist, out=dist)
    lows = np.minimum.reduce(dist, axis=1).tolist()
    for s, (_, u) in enumerate(sets):
        if lows[s] <= plan.near_unit:
            near_exact(dist[s], plan.near_unit, u, 0, 0, C, mask, squared=False)
            lows[s] = dist[s].min()
    np.log(dist, out=logs)
    out_cdnv = None
    if cd:
        vsum, d2 = flat[S], flat[S + 1]
        low = _smallest(d2, plan.near_sq, cen, 0, 0, C, mask, squared=True)
        t1, t2 = values[4 * S], values[4 * S + 1]
        np.multiply(d2, 2.0, out=t1)
        np.multiply(t1, d2, out=t2)
        np.divide(vsum, t1, out=t1)
        np.divide(vsum, t2, out=t2)
    sums = np.add.reduce(values, axis=1)
    means = sums[: 3 * S] / n
    minority = []  # read before the deviations overwrite the cosines
    for s, (k, _) in enumerate(sets):
        m = plan.minority[k]
        if m is not None:
            sel = cos[s][(m[:, None] & m[None, :])[mask]]
            minority.append((float(sel.sum()), int(sel.size)))
        else:
            minority.append((0.0, 0))
    dev = np.subtract(values[: 3 * S], means[:, None], out=values[: 3 * S])
    np.square(dev, out=dev)
    m2 = np.add.reduce(dev, axis=1).tolist()
    means, sums = means.tolist(), sums.tolist()
    # the plain sums as the tiled path merges its tile onto zeros: 0.0 + s (-0.0 gives +0.0)
    for s, (k, _) in enumerate(sets):
        c, dd, lg = s, S + s, 2 * S + s
        out_units[k] = UnitPairs(
            Moments(n, means[c], m2[c]),
            0.0 + sums[3 * S + s],
            Moments(n, means[dd], m2[dd]),
            Moments(n, -means[lg], m2[lg]),  # of log(dist): log(1/dist) the opposite mean
            bool(lows[s] == 0),
            0.0 + minority[s][0],
            minority[s][1],
        )
    if cd:
        out_cdnv = CdnvPairs(0.0 + sums[4 * S], 0.0 + sums[4 * S + 1], n, bool(low <= 0))
    return out_units, out_cdnv


def near_exact(
    values: np.ndarray,
    bound: float,
    vectors: np.ndarray,
    a0: int,
    b0: int,
    k: int,
    mask: np.ndarray | None,
    squared: bool,
) -> None:
    """Pairs whose distance from the product formula lies within ``bound`` (its rounding)
    of zero take it from the difference of their two rows instead, in place in ``values``
    (a tile's flattened values, :func:`_flat`, of ``vectors[a0:]`` against ``vectors[b0:]``,
    ``k`` columns): exactly 0 when the rows are equal (the formula can leave 1e-15, and a
    metric that divides by it a huge number instead of null), and accurate near 0 (where
    the formula keeps no correct digit). Two rows closer than the rounding of a float64
    sum can resolve (``||a - b||^2 <= COINCIDE (||a||^2 + ||b||^2)``: equal to about 8
    digits, e.g. the means of two classes holding the same rows, summed in another order)
    coincide: their distance is 0. ``squared``: ``values`` are squared distances."""
    idx = np.flatnonzero(values <= bound)
    if idx.size == 0:
        return
    if mask is None:
        ia, ib = np.divmod(idx, k)
    else:
        ia, ib = (i[idx] for i in np.nonzero(mask))
    a, b = vectors[a0 + ia], vectors[b0 + ib]
    diff = a - b
    sq = np.einsum("ij,ij->i", diff, diff)
    scale = np.einsum("ij,ij->i", a, a) + np.einsum("ij,ij->i", b, b)
    sq[sq <= COINCIDE * scale] = 0.0
    values[idx] = sq if squared else np.sqrt(sq)


def _smallest(values, bound, vectors, a0, b0, k, mask, squared: bool) -> float:
    """The smallest of a tile's distances, those within ``bound`` of 0 first taken again
    from the rows' differences (:func:`near_exact`)."""
    low = values.min()
    if low <= bound:
        near_exact(values, bound, vectors, a0, b0, k, mask, squared)
        low = values.min()
    return low


def _flat(block: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """The tile's values in row-major order (a view of ``block`` off the diagonal)."""
    return block.ravel() if mask is None else block[mask]


def _moments(x: np.ndarray, tmp: np.ndarray) -> Moments:
    """:meth:`Moments.of` of ``x`` (same operations), with ``tmp`` as work space."""
    n = x.size
    if n == 0:
        return Moments()
    mean = float(np.add.reduce(x)) / n  # x.mean(): the same sum and division
    t = np.subtract(x, mean, out=tmp[:n])
    np.square(t, out=t)
    return Moments(n, mean, float(np.add.reduce(t)))


def _view(buf: np.ndarray, m: int, n: int) -> np.ndarray:
    return buf[: m * n].reshape(m, n)


def direct_unit_tile(plan: SweepPlan, u, k, a0, a1, b0, b1, mask) -> UnitPairs:
    """The :class:`UnitPairs` of one tile, with the operations of the direct formulas
    (:func:`_one_tile` makes the same operations for a sweep of one tile: change both)."""
    minority = plan.minority[k]
    x_buf, tmp, _ = plan.buffers()
    # on the diagonal the product of a block with itself: the symmetric product numpy takes
    # for ``U @ U.T``, as the direct formula over all C classes does
    block = np.matmul(u[a0:a1], u[b0:b1].T, out=_view(x_buf, a1 - a0, b1 - b0))
    cos = _flat(block, mask)
    n = cos.size
    if n == 0:
        return UnitPairs()
    np.clip(cos, -1.0, 1.0, out=cos)
    out = UnitPairs(cos=_moments(cos, tmp))
    t = np.add(cos, 1.0 / (plan.C - 1), out=tmp[:n])
    out.abs_sum = float(np.abs(t, out=t).sum())
    if minority is not None:
        both = minority[a0:a1, None] & minority[None, b0:b1]
        sel = cos[_flat(both, mask)]
        out.minority_sum, out.minority_count = float(sel.sum()), int(sel.size)
    dist = np.multiply(cos, 2.0, out=cos)  # the cosines are no longer needed
    np.subtract(2.0, dist, out=dist)  # >= +0 for cos in [-1, 1]: max(., 0) changes no bit
    np.sqrt(dist, out=dist)
    low = _smallest(dist, plan.near_unit, u, a0, b0, b1 - b0, mask, squared=False)
    out.coincide = bool(low == 0)
    out.dist = _moments(dist, tmp)
    logs = np.log(dist, out=dist)
    m = _moments(logs, tmp)  # of log(dist): log(1/dist) has the opposite mean, same m2
    out.log = Moments(m.count, -m.mean, m.m2)
    return out


def direct_cdnv_tile(plan: SweepPlan, a0, a1, b0, b1, mask) -> CdnvPairs:
    """The CDNV sums of one tile (both powers from one squared distance; :func:`_one_tile`
    makes the same operations for a sweep of one tile: change both)."""
    x_buf, tmp, t_buf = plan.buffers()
    cen, sq, var = plan.centred, plan.sq, plan.variances
    m, k = a1 - a0, b1 - b0
    prod = np.matmul(cen[np.arange(a0, a1)], cen[b0:b1].T, out=_view(x_buf, m, k))
    np.multiply(prod, 2.0, out=prod)
    dist = np.add(sq[a0:a1, None], sq[None, b0:b1], out=_view(tmp, m, k))
    np.subtract(dist, prod, out=dist)
    vsum = np.add(var[a0:a1, None], var[None, b0:b1], out=prod)
    dist, vsum = _flat(dist, mask), _flat(vsum, mask)
    n = dist.size
    if n == 0:
        return CdnvPairs()
    low = _smallest(dist, plan.near_sq, cen, a0, b0, k, mask, squared=True)
    out = CdnvPairs(count=n, coincide=bool(low <= 0))
    t = np.multiply(dist, 2.0, out=t_buf[:n])
    out.total1 = float(np.divide(vsum, t, out=t).sum())
    np.multiply(dist, 2.0, out=t)
    np.multiply(t, dist, out=t)
    out.total2 = float(np.divide(vsum, t, out=t).sum())
    return out


# --------------------------------------------------------------------------------------
# the kernels of a sweep over several tiles: the same values per pair, fewer passes
# --------------------------------------------------------------------------------------
def _moments_fast(x: np.ndarray, tmp: np.ndarray, ones: np.ndarray) -> Moments:
    """:meth:`Moments.of` of ``x`` with the values and the squared deviations summed by
    BLAS ``ddot`` (with ``ones``; then with themselves): reordered sums, one pass fewer."""
    n = x.size
    mean = float(np.dot(x, ones[:n])) / n
    t = np.subtract(x, mean, out=tmp[:n])
    return Moments(n, mean, float(np.dot(t, t)))


def _unit_tile_fast(plan: SweepPlan, u, k, a0, a1, b0, b1, mask) -> UnitPairs:
    """:func:`direct_unit_tile` over one of many tiles: each pair's cosine, distance and log are
    the same numbers; the sums are reordered (``ddot``, with ones for plain sums; the
    minority sum as ``1_A^T cos 1_B``), a zero distance makes the sum of the logs -inf,
    and the tile makes 17 passes instead of 24 (one finds the smallest distance, for
    :func:`near_exact`). The product forms ``t = -2 cos`` (the right factor times -2):
    the cosines' sums are those of ``t`` times -1/2 and 1/4, ``|cos + 1/(C-1)|`` that of
    ``|t - 2/(C-1)|`` times 1/2, and ``2 - 2 cos`` is ``t + 2``, all exact (powers of two).
    BLAS ``dasum`` is not used: its result depends on the array's alignment (``ddot``'s
    and ``dgemv``'s do not), and the sums must not depend on where a buffer lies."""
    x_buf, tmp, _ = plan.buffers()
    right = np.multiply(u[b0:b1], -2.0, out=plan.factor(0, b1 - b0, u.shape[1]))  # exact
    block = np.matmul(u[a0:a1], right.T, out=_view(x_buf, a1 - a0, b1 - b0))
    t = _flat(block, mask)  # -2 cos
    n = t.size
    if n == 0:
        return UnitPairs()
    np.clip(t, -2.0, 2.0, out=t)  # in place: ``block`` holds the clipped values too
    m = _moments_fast(t, tmp, plan.ones)
    out = UnitPairs(cos=Moments(m.count, -0.5 * m.mean, 0.25 * m.m2))
    a = np.abs(np.add(t, -2.0 * (1.0 / (plan.C - 1)), out=tmp[:n]), out=tmp[:n])
    out.abs_sum = 0.5 * float(np.dot(a, plan.ones[:n]))
    weights = plan.minority_f[k]
    if weights is not None:
        wa, wb = weights[a0:a1], weights[b0:b1]
        if mask is None:  # sum_{i in A, j in B} cos_ij and |A| |B|
            out.minority_sum = -0.5 * float(np.dot(wa @ block, wb))
            out.minority_count = int(wa.sum()) * int(wb.sum())
        else:  # the diagonal tile, as the direct formula
            sel = t[_flat((wa[:, None] * wb[None, :]) > 0, mask)]
            out.minority_sum, out.minority_count = -0.5 * float(sel.sum()), int(sel.size)
    dist = np.add(t, 2.0, out=t)  # 2 - 2 cos
    np.sqrt(dist, out=dist)
    _smallest(dist, plan.near_unit, u, a0, b0, b1 - b0, mask, squared=False)
    out.dist = _moments_fast(dist, tmp, plan.ones)
    m = _moments_fast(np.log(dist, out=dist), tmp, plan.ones)
    out.coincide = m.mean == -np.inf  # some distance is 0 (no log is +inf or NaN)
    out.log = Moments(m.count, -m.mean, m.m2)
    return out


_TINY_D = 2.0**-900  #: a smaller squared distance: the tile's CDNV sums divide directly


def _cdnv_tile_fast(plan: SweepPlan, a0, a1, b0, b1, mask) -> CdnvPairs:
    """:func:`direct_cdnv_tile` over one of many tiles: the squared distances ``D`` as one
    product of length d + 2 (``[m, |m|^2, 1] . [-2 m', 1, |m'|^2]``, within the same
    rounding bound as the formula's three terms); off the diagonal the sums
    ``sum (v + v') / (2 D)`` and ``/ (2 D^2)`` as ``v_A^T R 1 + 1^T R v_B`` with ``R``
    the reciprocals ``1 / D`` and then their squares (up to two roundings more per pair,
    all terms positive; ``dgemv`` and ``ddot``): 8 passes instead of 13, none of them a
    broadcast sum. A tile whose smallest D is below :data:`_TINY_D` (whose reciprocals
    could overflow) or a diagonal tile divides as :func:`direct_cdnv_tile` does."""
    x_buf, tmp, _ = plan.buffers()
    m, k = a1 - a0, b1 - b0
    cen, sq, d = plan.centred, plan.sq, plan.centred.shape[1]
    left, right = plan.factor(1, m, d + 2), plan.factor(2, k, d + 2)
    if getattr(plan.local, "left_rows", None) != (a0, a1):  # once per block row
        left[:, :d], left[:, d], left[:, d + 1] = cen[a0:a1], sq[a0:a1], 1.0
        plan.local.left_rows = (a0, a1)
    np.multiply(cen[b0:b1], -2.0, out=right[:, :d])  # exact: the products give -2 m.m'
    right[:, d], right[:, d + 1] = 1.0, sq[b0:b1]
    block = np.matmul(left, right.T, out=_view(x_buf, m, k))
    dist = _flat(block, mask)
    n = dist.size
    if n == 0:
        return CdnvPairs()
    low = _smallest(dist, plan.near_sq, plan.centred, a0, b0, k, mask, squared=True)
    out = CdnvPairs(count=n, coincide=bool(low <= 0))
    vh = plan.var_half
    if mask is not None or low < _TINY_D:
        vsum = np.add(vh[a0:a1, None], vh[None, b0:b1], out=_view(tmp, m, k))
        vsum = _flat(vsum, mask)
        r = np.divide(vsum, dist, out=vsum)
        out.total1 = float(r.sum())
        out.total2 = float(np.divide(r, dist, out=r).sum())
        return out
    ones, va, vb = plan.ones[:k], vh[a0:a1], vh[b0:b1]
    inv = np.divide(1.0, block, out=block)
    out.total1 = float(np.dot(va, inv @ ones)) + float(np.sum(inv @ vb))
    np.multiply(inv, inv, out=inv)
    out.total2 = float(np.dot(va, inv @ ones)) + float(np.sum(inv @ vb))
    return out


# --------------------------------------------------------------------------------------
# the class-level sets of a snapshot, and the values read from the sums
# --------------------------------------------------------------------------------------
@dataclass
class ClassPairs:
    """The pair sums of a snapshot's present classes (:func:`class_pairs`).

    ``means`` / ``weights``: the :class:`UnitPairs` of the centred means and of the
    classifier rows (None when not swept); ``means_ok`` / ``weights_ok``: every row has a
    finite non-zero norm; ``minority_ok``: at least two minority classes, none with a zero
    classifier row; ``cdnv`` and ``cdnv_scale`` as in :class:`PairStats`.
    """

    means: UnitPairs | None = None
    means_ok: bool = False
    weights: UnitPairs | None = None
    weights_ok: bool = False
    minority_ok: bool = False
    cdnv: CdnvPairs | None = None
    cdnv_scale: float = 1.0


def minority_classes(counts: np.ndarray) -> np.ndarray:
    """The minority classes of Fang et al.: ``n_c < max(n) / 2``."""
    # the largest count as a Python float: the same half (exact), a third less dispatch
    return counts < float(np.maximum.reduce(counts)) / 2.0


def class_pairs(
    centred: np.ndarray,
    weights: np.ndarray | None,
    counts: np.ndarray,
    *,
    cdnv: tuple[np.ndarray, np.ndarray] | None = None,
    map: Callable = map,  # noqa: A002
    sweep: Callable | None = None,
    memo=None,
) -> ClassPairs:
    """One :func:`pair_sweep` over the present classes: the centred means (NC2, GNC2), the
    classifier rows (NC2, GNC2, minority collapse) and, given ``cdnv = (variances,
    centred)`` (the centred means in the variances' units), CDNV. Nothing is swept below two
    classes. ``sweep``: the sweep to run (default :func:`pair_sweep` through ``map``), with
    its signature: e.g. :func:`~ncinspect.metrics.pairs_xp.pair_sweep_xp` on a device.
    ``memo``: the snapshot's :class:`~ncinspect.metrics.linalg.ClassProducts`."""
    out = ClassPairs()
    if centred.shape[0] < 2:
        return out
    mu, _, good = _unit_rows(centred, memo)
    out.means_ok = good is None
    sets, masks = [mu], [None]
    if weights is not None:
        wu, _, good = _unit_rows(weights, memo)
        out.weights_ok = good is None
        minority = minority_classes(counts)
        out.minority_ok = bool(
            np.count_nonzero(minority) >= 2 and (good is None or good[minority].all())
        )
        sets.append(wu)
        masks.append(minority if out.minority_ok else None)
    if sweep is None:
        stats = pair_sweep(sets, minority=masks, cdnv=cdnv, map=map)
    else:
        stats = sweep(sets, minority=masks, cdnv=cdnv)
    out.means = stats.units[0]
    out.weights = stats.units[1] if weights is not None else None
    out.cdnv, out.cdnv_scale = stats.cdnv, stats.cdnv_scale
    return out


def cosine_values(p: UnitPairs) -> tuple[float, float]:
    """``(equiangular, maxangle)``: population std of the cosines and mean of
    ``|cos + 1/(C-1)|`` over the pairs."""
    return float(np.sqrt(p.cos.m2 / p.cos.count)), p.abs_sum / p.cos.count


def hyperspherical_values(p: UnitPairs) -> tuple[float | None, float, float | None]:
    """``(var log(1/dist), var dist, mean log(1/dist))``; the two log values None when two
    directions coincide (``log(1/0)``); the variance of the distances is defined there too
    (spec/metrics.md: a population variance over the pairs, a distance of 0 among them)."""
    if p.coincide:
        return None, p.dist.m2 / p.dist.count, None
    return p.log.m2 / p.log.count, p.dist.m2 / p.dist.count, p.log.mean


def cdnv_values(p: CdnvPairs, scale: float) -> tuple[float | None, float | None]:
    """``(cdnv, cdnv_exp2)``: the power-1 mean (scale-free) and the power-2 mean in the units
    the centred means had before the sweep's rescaling; None when two means coincide."""
    if p.coincide or p.count == 0:
        return None, None
    with np.errstate(under="ignore", over="ignore"):
        return p.total1 / p.count, p.total2 / p.count / scale / scale
