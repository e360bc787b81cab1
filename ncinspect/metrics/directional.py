"""Directional variability ``nc1_cdnv_directional`` (Luthra, Salunkhe & Galanti 2026) from the
pass-2 pair table of :mod:`ncinspect.stats.pairs` (numpy only)."""

from __future__ import annotations

import numpy as np

from ..stats.passes import pow2_scale
from .linalg import tile_rows, upper_mask
from .nulls import MetricValues
from .pairs import NEAR_FACTOR, near_exact

__all__ = ["KEY", "cdnv_directional", "set_directional"]

KEY = "nc1_cdnv_directional"


def cdnv_directional(table: np.ndarray, counts: np.ndarray, centred: np.ndarray) -> float | None:
    """Mean over unordered pairs c < c' of ``(q(c, u) + q(c', u)) / (2 ||mu_c - mu_c'||^2)``.

    Parameters
    ----------
    table : (C, C) ``A[c, c'] = sum_{y_i = c} ((h_i - mu_c) . (mu_c - mu_c'))^2``, in the
        units of ``centred`` to the fourth power.
    counts : (C,) ``n_c`` (at least 1).
    centred : (C, d) the centred class means ``mu_c - mu_G``.

    Notes
    -----
    With ``D = ||mu_c - mu_c'||`` and ``u = (mu_c - mu_c') / D``, ``q(c, u) = (1/n_c)
    sum_{y_i=c} ((h_i - mu_c) . u)^2 = A[c, c'] / (n_c D^2)``, so each pair contributes
    ``(A[c, c'] / n_c + A[c', c] / n_c') / (2 D^4)``. Distances come from the centred means
    in tiles (as for ``nc1_cdnv``); ``centred`` and ``table`` are first divided by a power
    of two and its fourth power (exact), which leaves the value unchanged. None when two
    class means coincide or C < 2.
    """
    C = centred.shape[0]
    if C < 2:
        return None
    s = pow2_scale(centred)
    if s != 1.0:
        centred = centred / s
        with np.errstate(under="ignore", over="ignore"):
            table = table / (s * s) / (s * s)
    n = np.asarray(counts, dtype=np.float64)
    sq = np.einsum("ij,ij->i", centred, centred)
    total, count = 0.0, 0
    step = tile_rows(C, C)
    # the pair sweep's near-zero bound (SweepPlan); np.maximum.reduce: sq.max(), less dispatch
    near = NEAR_FACTOR * (4 * centred.shape[1] + 16) * 2.0**-53 * float(np.maximum.reduce(sq))
    for i in range(0, C, step):
        rows = np.arange(i, min(i + step, C))  # pairs (c, c') with c' > c only
        r = slice(i, i + rows.size)  # the same rows as a view (no copies below)
        # centred[rows]: a copy, so the product is the general one (as the CDNV sweep's),
        # never numpy's symmetric a @ a.T
        dist = sq[r, None] + sq[None, i:] - 2.0 * (centred[rows] @ centred[i:].T)
        if i == 0 and rows.size == C:  # one tile: the pairs c < c' of all C classes
            mask = upper_mask(C)
        else:
            mask = np.arange(i, C)[None, :] > rows[:, None]
        dist = dist[mask]
        low = np.minimum.reduce(dist) if dist.size else np.inf  # dist.min(), less dispatch
        if low <= near:  # equal means give 0, not the formula's 1e-15
            near_exact(dist, near, centred, i, i, C - i, mask, squared=True)
        # low > near >= 0: every distance is positive, the check cannot fire
        if not low > near and (dist <= 0).any():
            return None
        fwd = table[r, i:] / n[r, None]  # q(c, u) n_c D^2 / n_c
        bwd = table[i:, r].T / n[None, i:]  # the same for c'
        # np.add.reduce: the pairwise sum np.sum runs, less dispatch
        total += float(np.add.reduce((fwd + bwd)[mask] / (2.0 * dist * dist)))
        count += dist.size
    return total / count


def set_directional(
    out: MetricValues,
    table: np.ndarray | None,
    pair_reason: str | None,
    rows: np.ndarray,
    counts: np.ndarray,
    centred: np.ndarray,
    class_reason: str | None,
) -> None:
    """Set :data:`KEY` in ``out`` for the present classes ``rows`` (codes) with their
    ``counts`` and ``centred`` means (the pass-2 units); ``table`` the (C_total, C_total)
    pass-2 table, ``pair_reason`` why it was not summed (None: it was). A missing table
    (statistics that never carried one, e.g. a Meter state saved before 0.3) is null, never
    read as zeros."""
    if class_reason:
        out.set(KEY, None, class_reason)
    elif pair_reason is not None:
        out.set(KEY, None, pair_reason)
    elif (counts < 2).all():
        out.set(KEY, None, "every class has one sample: within-class scatter is undefined")
    elif table is None:
        out.set(KEY, None, "the pass-2 statistics carry no directional table")
    else:
        # every class present: the rows are 0..C-1, the table as it is (np.ix_ copies it)
        sub = table if rows.size == table.shape[0] else table[np.ix_(rows, rows)]
        out.set(KEY, cdnv_directional(sub, counts, centred), "two class means coincide")
