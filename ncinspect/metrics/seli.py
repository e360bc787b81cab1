"""The SELI geometry of imbalanced classes (Thrampoulidis et al. 2022) at class level:
its target Grams and the distance of a cross-Gram to them (numpy only)."""

from __future__ import annotations

import numpy as np

from .linalg import (
    CACHE_MAX_C,
    DIRECT_MAX_C,
    ClassProducts,
    cross_gram_norm2,
    fro,
    kept,
    normalised_gram,
    unit,
)

__all__ = ["seli_target", "seli_error"]

SELI_MAX_GROUPS = 4096  #: above this many distinct class counts SELI is not computed
EIG_RTOL = 1e-12  #: eigenvalues below this fraction of the largest count as zero


def seli_target(counts: np.ndarray, power: int) -> np.ndarray:
    """The class-level SELI Gram ``U L^power U^T`` (C x C; small C only).

    Notes
    -----
    ``Z^ = P Y`` with ``P = I - 11^T/C`` and Y the C x N one-hot matrix, so
    ``Z^ Z^T = P D P`` (``D = diag(n_c)``) and with ``Z^ = U L V^T``: ``U L^2 U^T = P D P``.
    Hence ``U L^p U^T = (P D P)^{p/2}`` on its range (pseudo-power). Classifier Gram: p = 1;
    class-mean Gram: p = -1; class-level logits: p = 0 (``U U^T = P``).
    """
    C = counts.shape[0]
    p = np.eye(C) - np.full((C, C), 1.0 / C)
    lam, vec = np.linalg.eigh(p @ np.diag(counts.astype(np.float64)) @ p)
    keep = lam > EIG_RTOL * lam.max()
    lam, vec = lam[keep], vec[:, keep]
    return (vec * lam ** (power / 2.0)) @ vec.T


def _unit_target(counts: np.ndarray, power: int) -> np.ndarray:
    """``T / ||T||_F`` of the SELI Gram T of :func:`seli_target` (kept for small C: the
    counts of every snapshot of a file are often the same)."""

    def make():
        target = seli_target(counts, power)
        return target / fro(target)

    if counts.shape[0] > CACHE_MAX_C:
        return make()
    # the counts' own bytes and dtype determine the target (no float64 copy to form a key)
    key = ("seli", power, counts.dtype.str, counts.tobytes())
    return kept(key, make)


def _count_groups(counts: np.ndarray):
    """Classes grouped by equal count: values a_j, multiplicities m_j, group of each class."""
    values, inverse, mult = np.unique(counts, return_inverse=True, return_counts=True)
    return values.astype(np.float64), inverse, mult.astype(np.float64)


def _seli_trace_terms(x: np.ndarray, y: np.ndarray, counts: np.ndarray, power: int):
    """``<X Y^T, U L^p U^T>`` and ``||U L^p U^T||_F^2`` without C x C matrices.

    Notes
    -----
    With ``A = P D^{1/2}`` (so ``Z^ Z^T = A A^T``) and ``K = A^T A = D - s s^T/C``,
    ``s = sqrt(n)``: ``U L^p U^T = A K^{(p-2)/2} A^T`` and ``||U L^p U^T||_F^2 = sum mu^p``
    over the nonzero eigenvalues mu of K. K is diagonal minus rank one; on vectors summing to
    zero within each group of equal counts it is ``a_j I``, and on the span of the group
    indicators it is the g x g matrix ``diag(a) - sqrt(a m) sqrt(a m)^T / C``. So
    ``f(K) z = f(a_j) (z - group mean of z) + E f(K_g) E^T z``: O(C d + g^3), g the number of
    distinct counts.
    """
    a, grp, m = _count_groups(counts)
    C = counts.shape[0]
    kg = np.diag(a) - np.outer(np.sqrt(a * m), np.sqrt(a * m)) / C
    lam, vec = np.linalg.eigh(kg)
    nonzero = lam > EIG_RTOL * max(lam.max(), a.max())
    s = (power - 2) / 2.0
    f_g = (vec[:, nonzero] * lam[nonzero] ** s) @ vec[:, nonzero].T

    # The rows are taken in group order (each group's rows in class order): every group is
    # then a contiguous block, E^T z one sum along its rows (not ``np.add.at``'s dispatch
    # per element, nor ``np.add.reduceat``, 60x slower along axis 0 with few groups), and
    # the work on a group is done in place on its block: one C x d array in all (at a
    # vocabulary, 300 MB), not four. g is the number of distinct counts.
    order = np.argsort(grp, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(m.astype(np.int64))]).tolist()
    blocks = list(zip(bounds[:-1], bounds[1:], strict=True))
    sqrt_n = np.sqrt(counts.astype(np.float64))[order]
    root_m = np.sqrt(m)

    def at(z):  # A^T z = D^{1/2} P z, its rows in group order
        mean = z.mean(axis=0)
        out = z[order]
        out -= mean
        out *= sqrt_n[:, None]
        return out

    def group_sums(b):  # E^T z: (g, d) sums over each group / sqrt(m_j)
        return np.stack([b[lo:hi].sum(axis=0) for lo, hi in blocks]) / root_m[:, None]

    bx = at(x)
    by = bx if y is x else at(y)  # X = Y for the weights' and the means' SELI
    sx = group_sums(bx)
    sy = sx if by is bx else group_sums(by)
    # <bx, f(K) by>: f(a_j) (by - its group mean) within each group, plus the group part
    inner = float(np.einsum("ij,ij->", sx, f_g @ sy))
    for j, (lo, hi) in enumerate(blocks):
        perp = by[lo:hi] - sy[j] / root_m[j]
        inner += float(a[j] ** s) * float(np.einsum("ij,ij->", bx[lo:hi], perp))
    norm2 = float(np.sum((m - 1.0) * a**power) + np.sum(lam[nonzero] ** power))
    return inner, norm2


def seli_error(
    x: np.ndarray,
    y: np.ndarray,
    counts: np.ndarray,
    power: int,
    memo: ClassProducts | None = None,
) -> tuple[float | None, str | None]:
    """Distance of the normalised cross-Gram ``X Y^T`` to the SELI Gram ``U L^p U^T``.

    Notes
    -----
    ``|| X Y^T/||X Y^T||_F - U L^p U^T/||U L^p U^T||_F ||_F`` (Thrampoulidis et al. 2022,
    reduced to class level in docs/metrics.md): X = Y = W with p = 1 (``seli_error_weights``),
    X = Y = M uncentred means with p = -1 (``seli_error_means``); the logits (p = 0) have the
    target ``P = I - 11^T/C`` whatever the counts, i.e. the simplex ETF. For C <= 2048 the
    C x C matrices are formed; above, ``2 - 2 <G, T>/(||G|| ||T||)`` with the trace terms of
    :func:`_seli_trace_terms`. On balanced data the target is proportional to P, so the value
    equals the ETF-type error of the same matrices.
    """
    C = x.shape[0]
    if C <= DIRECT_MAX_C:  # the normalised product (shared through ``memo``)
        gram, _ = normalised_gram(x, y, memo)
        if gram is None:
            return None, "the Gram matrix is zero"
        return fro(gram - _unit_target(counts, power)), None
    if np.unique(counts).size > SELI_MAX_GROUPS:
        return None, (
            f"more than {SELI_MAX_GROUPS} distinct class counts at C = {C} classes "
            "(the SELI geometry is computed per group of equal counts)"
        )
    norm2 = cross_gram_norm2(x, y, memo)  # of unit(x), unit(y)
    ux = unit(x, memo)  # scale-free in each: exact rescaling
    x, y = ux, (ux if y is x else unit(y, memo))
    if norm2 <= 0 or not np.isfinite(norm2):
        return None, "the Gram matrix is zero"
    inner, t2 = _seli_trace_terms(x, y, counts, power)
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * inner / np.sqrt(norm2 * t2)))), None
