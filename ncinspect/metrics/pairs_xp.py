"""The class-pair sweep where the arrays live: :func:`pair_sweep_xp` gives what
:func:`ncinspect.metrics.pairs.pair_sweep` gives (NC2's cosines, GNC2, CDNV, minority
collapse), its tiles computed on the device of an array namespace (torch on a GPU, CuPy,
JAX, ``array-api-strict``...), for a Meter whose states live on an accelerator.

At a language-model vocabulary (C = 50,257, d = 768) the pair sweep is O(C^2 d) = 10^12
multiply-adds per set and about 10^9 logarithms: minutes on a CPU, a fraction of a second on
a GPU. The class-level arrays (C x d, small beside the rows) go to the device once.

Each tile (blocks of :data:`DEVICE_PAIR_BLOCK` classes, the upper triangle of the diagonal
tiles by a mask, never a data-dependent shape) is taken with the direct formulas of
:func:`ncinspect.metrics.pairs.direct_unit_tile` and ``direct_cdnv_tile`` in float64: the same value
for each pair up to the products' summation order. Its sums (the plain sum and the sum of
squared deviations from the tile's mean, so that the moments merge exactly) stay on the
device as one row of a (tiles, k) array; **nothing is read on the host inside the loop over
tiles**. One transfer at the end brings the rows over and the host merges them (Chan) in
tile order. A tile whose smallest distance lies within the near-zero bound of the product
formula (two classes that nearly or exactly coincide: rare, and where the formula keeps no
correct digit) is taken again on the host by the numpy kernels, from its rows, with their
exact treatment near 0 (:func:`~ncinspect.metrics.pairs.near_exact`). The result equals the
numpy sweep's to about 1e-15 relative (tests/metrics/test_pairs_xp.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..stats.namespace import host, on_device
from ..stats.passes import Moments
from .pairs import (
    PAIR_BLOCK,
    CdnvPairs,
    PairStats,
    SweepPlan,
    UnitPairs,
    direct_cdnv_tile,
    direct_unit_tile,
)

__all__ = ["DEVICE_PAIR_BLOCK", "pair_sweep_xp"]

#: classes of one block on a device: a tile holds up to 2048^2 pairs (32 MiB a float64 array)
DEVICE_PAIR_BLOCK = 2048

#: sums of one unit set per tile: cos (sum, m2), abs_sum, minority sum, dist (sum, m2), the
#: smallest distance, log (sum, m2)
_UNIT_SUMS = 9
_CDNV_SUMS = 3  # total1, total2, low


def pair_sweep_xp(
    xp: Any,
    device: Any,
    units: list[np.ndarray | None],
    *,
    minority: list[np.ndarray | None] | None = None,
    cdnv: tuple[np.ndarray, np.ndarray] | None = None,
    block: int = DEVICE_PAIR_BLOCK,
) -> PairStats:
    """:func:`~ncinspect.metrics.pairs.pair_sweep` with the tiles on ``device`` of ``xp``.

    The inputs are host numpy arrays, as for the numpy sweep (unit rows, minority masks,
    ``(variances, centred)``); ``block``: classes per block (tests use small ones).
    """
    plan, scale = SweepPlan.of(units, minority, cdnv)  # the host's bounds and its retakes
    sweep = _DeviceSweep(xp, device, plan)
    C, b = plan.C, max(1, int(block))
    tiles = [(i, j) for i in range(0, C, b) for j in range(i, C, b)]
    out_units = [None if u is None else UnitPairs() for u in plan.units]
    out_cdnv = None if plan.centred is None else CdnvPairs()
    # a coincidence's log(0) and its moments are discarded (the tile is taken again): numpy
    # as the namespace would warn of them, as the numpy sweep's tiles do not
    with np.errstate(divide="ignore", invalid="ignore", under="ignore", over="ignore"):
        rows = [sweep.tile(i, min(i + b, C), j, min(j + b, C)) for i, j in tiles]
        sums = host(xp.stack(rows)) if rows else np.zeros((0, sweep.width))  # one transfer
        for (i, j), row in zip(tiles, sums, strict=True):
            span = (i, min(i + b, C), j, min(j + b, C))
            for k, col in sweep.unit_cols.items():
                out_units[k] = out_units[k].merge(_unit_pairs(plan, k, span, row[col:]))
            if out_cdnv is not None:
                out_cdnv = out_cdnv.merge(_cdnv_pairs(plan, span, row[sweep.cdnv_col :]))
    return PairStats(out_units, out_cdnv, scale)


class _DeviceSweep:
    """The sweep's arrays on the device and the kernel of one tile."""

    def __init__(self, xp: Any, device: Any, plan: SweepPlan):
        self.xp, self.device, self.C = xp, device, plan.C
        f64 = xp.float64
        self.units = [None if u is None else on_device(xp, u, device, f64) for u in plan.units]
        self.minority = [
            None if m is None else on_device(xp, m.astype(np.float64), device, f64)
            for m in plan.minority
        ]
        self.unit_cols: dict[int, int] = {}
        width = 0
        for k, u in enumerate(plan.units):
            if u is not None:
                self.unit_cols[k] = width
                width += _UNIT_SUMS
        self.cdnv_col = width
        self.centred = None
        if plan.centred is not None:
            self.centred = on_device(xp, plan.centred, device, f64)
            self.sq = on_device(xp, plan.sq, device, f64)
            self.var = on_device(xp, plan.variances, device, f64)
            width += _CDNV_SUMS
        self.width = width
        self._fills: dict[tuple, Any] = {}

    def tile(self, a0: int, a1: int, b0: int, b1: int) -> Any:
        """The (width,) row of device sums of tile (a0:a1, b0:b1)."""
        xp = self.xp
        mask = None
        if a0 == b0:  # the upper triangle of the diagonal tile
            r = xp.arange(a1 - a0, device=self.device)
            mask = r[None, :] > r[:, None]
        n = (a1 - a0) * (a1 - a0 - 1) // 2 if mask is not None else (a1 - a0) * (b1 - b0)
        parts = []
        for k in self.unit_cols:
            parts.extend(self._unit(k, a0, a1, b0, b1, mask, n))
        if self.centred is not None:
            parts.extend(self._cdnv(a0, a1, b0, b1, mask))
        return xp.stack(parts)

    def _where(self, mask, x, other: float):
        """``x`` on the tile's pairs, ``other`` elsewhere (``x`` itself off the diagonal)."""
        if mask is None:
            return x
        key = (tuple(x.shape), other)
        fill = self._fills.get(key)
        if fill is None:  # made once per diagonal tile shape: no fill array per call
            fill = self._fills[key] = self.xp.full(
                x.shape, other, dtype=x.dtype, device=self.device
            )
        return self.xp.where(mask, x, fill)

    def _sum(self, mask, x):
        return self.xp.sum(self._where(mask, x, 0.0))

    def _moments(self, mask, x, n: int):
        """``(sum, sum of squared deviations from sum / n)`` over the tile's pairs."""
        s = self._sum(mask, x)
        dev = x - s / n
        return s, self._sum(mask, dev * dev)

    def _unit(self, k, a0, a1, b0, b1, mask, n):
        xp, u = self.xp, self.units[k]
        cos = xp.clip(u[a0:a1, ...] @ xp.permute_dims(u[b0:b1, ...], (1, 0)), -1.0, 1.0)
        s_cos, m2_cos = self._moments(mask, cos, n)
        abs_sum = self._sum(mask, xp.abs(cos + 1.0 / (self.C - 1)))
        weights = self.minority[k]
        if weights is None:
            minority_sum = xp.zeros((), dtype=xp.float64, device=self.device)
        else:
            both = (weights[a0:a1, None] * weights[None, b0:b1]) > 0
            minority_sum = self._sum(mask, xp.where(both, cos, xp.zeros_like(cos)))
        dist = xp.sqrt(2.0 - cos * 2.0)  # the numpy kernel's operations: 2 - 2 cos >= +0
        s_d, m2_d = self._moments(mask, dist, n)
        low = xp.min(self._where(mask, dist, math.inf))
        logs = xp.log(self._where(mask, dist, 1.0))  # of the masked-out entries: log 1 = 0
        s_l, m2_l = self._moments(mask, logs, n)
        return [s_cos, m2_cos, abs_sum, minority_sum, s_d, m2_d, low, s_l, m2_l]

    def _cdnv(self, a0, a1, b0, b1, mask):
        xp, cen, sq, var = self.xp, self.centred, self.sq, self.var
        prod = (cen[a0:a1, ...] @ xp.permute_dims(cen[b0:b1, ...], (1, 0))) * 2.0
        dist = (sq[a0:a1, None] + sq[None, b0:b1]) - prod
        vsum = var[a0:a1, None] + var[None, b0:b1]
        low = xp.min(self._where(mask, dist, math.inf))
        safe = self._where(mask, dist, 1.0)  # no division by the diagonal's zeros
        t = safe * 2.0
        total1 = self._sum(mask, vsum / t)
        total2 = self._sum(mask, vsum / (t * safe))
        return [total1, total2, low]


def _moments(n: int, s: float, m2: float) -> Moments:
    return Moments(n, float(s) / n, float(m2)) if n else Moments()


def _unit_pairs(plan: SweepPlan, k: int, span, sums: np.ndarray) -> UnitPairs:
    """A tile's :class:`UnitPairs` from its device sums, or taken again on the host when
    its smallest distance lies within the near-zero bound."""
    a0, a1, b0, b1 = span
    s_cos, m2_cos, abs_sum, minority_sum, s_d, m2_d, low, s_l, m2_l = sums[:_UNIT_SUMS]
    if not low > plan.near_unit:  # near 0 (or NaN): the exact host kernel
        return _retake(plan, span, lambda s: direct_unit_tile(plan, plan.units[k], k, *s))
    n = (a1 - a0) * (a1 - a0 - 1) // 2 if a0 == b0 else (a1 - a0) * (b1 - b0)
    out = UnitPairs(cos=_moments(n, s_cos, m2_cos), abs_sum=float(abs_sum))
    weights = plan.minority[k]
    if weights is not None:
        na, nb = int(np.count_nonzero(weights[a0:a1])), int(np.count_nonzero(weights[b0:b1]))
        out.minority_sum = float(minority_sum)
        out.minority_count = na * (na - 1) // 2 if a0 == b0 else na * nb
    out.dist = _moments(n, s_d, m2_d)
    m = _moments(n, s_l, m2_l)  # of log(dist): log(1/dist) has the opposite mean, same m2
    out.log = Moments(m.count, -m.mean, m.m2)
    return out


def _cdnv_pairs(plan: SweepPlan, span, sums: np.ndarray) -> CdnvPairs:
    """A tile's :class:`CdnvPairs` from its device sums (or again on the host, as above)."""
    a0, a1, b0, b1 = span
    total1, total2, low = sums[:_CDNV_SUMS]
    if not low > plan.near_sq:
        return _retake(plan, span, lambda s: direct_cdnv_tile(plan, *s))
    n = (a1 - a0) * (a1 - a0 - 1) // 2 if a0 == b0 else (a1 - a0) * (b1 - b0)
    return CdnvPairs(float(total1), float(total2), n, False)


def _retake(plan: SweepPlan, span, kernel):
    """A device tile's statistics from the numpy kernels, over its host sub-tiles of
    :data:`~ncinspect.metrics.pairs.PAIR_BLOCK` classes, merged in order."""
    a0, a1, b0, b1 = span
    out = None
    for i in range(a0, a1, PAIR_BLOCK):
        i1 = min(i + PAIR_BLOCK, a1)
        for j in range(b0 if a0 != b0 else i, b1, PAIR_BLOCK):
            j1 = min(j + PAIR_BLOCK, b1)
            mask = None
            if i == j:
                mask = np.arange(j, j1)[None, :] > np.arange(i, i1)[:, None]
            part = kernel((i, i1, j, j1, mask))
            out = part if out is None else out.merge(part)
    return out
