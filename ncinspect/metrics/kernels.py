"""The kernels of NC1-NC3: pure functions of class-level arrays (numpy only).

Every public function documents its formula in Notes and returns ``None`` where the value
is undefined (the caller records why). Pairwise quantities over classes come from the
tiled sweep of :mod:`ncinspect.metrics.pairs`, so C = 30,000 classes never builds a C x C
matrix.
"""

from __future__ import annotations

import numpy as np

from ..stats.passes import pow2_scale
from .linalg import (
    CACHE_MAX_C,
    DIRECT_MAX_C,
    ClassProducts,
    cross_gram_norm2,
    fro,
    kept,
    normalised_gram,
    unit,
    unit_norms,
)
from .pairs import cosine_values, pair_sweep, unit_rows

__all__ = [
    "etf_gram",
    "etf_error",
    "equinorm",
    "pairwise_cosine_stats",
    "cdnv",
    "cdnv_mean",
    "self_duality",
]


def etf_gram(n_classes: int) -> np.ndarray:
    """``E = (I_C - 11^T/C) / sqrt(C-1)``: the simplex-ETF Gram matrix with unit Frobenius norm."""
    C = n_classes
    return (np.eye(C) - np.full((C, C), 1.0 / C)) / np.sqrt(C - 1)


def etf_error(a: np.ndarray, b: np.ndarray, memo: ClassProducts | None = None) -> float | None:
    """Distance of the normalised cross-Gram ``A B^T`` to the simplex ETF.

    Notes
    -----
    ``etf_error(A, B) = || A B^T / ||A B^T||_F - E ||_F`` with ``E`` from :func:`etf_gram`;
    in [0, 2]. For C <= 2048 the C x C product is formed; above, the identity
    ``||X/||X|| - E||^2 = 2 - 2 <X, E> / ||X||`` is used with ``<X, E> = (Tr X - 1^T X 1 / C) /
    sqrt(C-1)`` and ``||A B^T||_F^2 = <A^T A, B^T B>`` (d x d, used only when d < C).
    Returns None when ``A B^T = 0``. ``A`` and ``B`` are first divided by powers of two
    (:func:`~ncinspect.metrics.linalg.unit`), which leaves the value unchanged and keeps
    the products in range. ``memo``: the :class:`~ncinspect.metrics.linalg.ClassProducts`
    of the snapshot (the normalised product is shared with the OF and SELI errors).
    """
    C = a.shape[0]
    if C <= DIRECT_MAX_C:
        x, _ = normalised_gram(a, b, memo)
        if x is None:
            return None
        e = kept(("etf", C), lambda: etf_gram(C)) if C <= CACHE_MAX_C else etf_gram(C)
        return fro(x - e)
    norm2 = cross_gram_norm2(a, b, memo)
    a, b = unit(a, memo), unit(b, memo)
    if norm2 <= 0:
        return None
    inner = (np.einsum("ij,ij->", a, b) - np.sum(a.sum(0) * b.sum(0)) / C) / np.sqrt(C - 1)
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * inner / np.sqrt(norm2))))


def equinorm(vectors: np.ndarray, memo: ClassProducts | None = None) -> float | None:
    """``std(||v_c||) / mean(||v_c||)`` with ddof=1 (None when C < 2 or all norms are 0).

    Notes
    -----
    Papyan et al.'s equinorm measure, for centred class means or classifier rows. ``memo``:
    the snapshot's :class:`~ncinspect.metrics.linalg.ClassProducts` (the pair sweep reads
    the same norms).
    """
    norms = unit_norms(vectors, memo)
    n = norms.size
    if n < 2:
        return None
    mean = np.add.reduce(norms) / n  # norms.mean(): the same sum and division
    if mean == 0:
        return None
    dev = norms - mean  # norms.std(ddof=1): the same operations, in numpy's order
    np.multiply(dev, dev, out=dev)
    return float(np.sqrt(np.add.reduce(dev) / (n - 1)) / mean)


def pairwise_cosine_stats(vectors: np.ndarray) -> tuple[float | None, float | None]:
    """Equiangularity and max-angle measures of a set of C vectors.

    Returns
    -------
    (equiangular, maxangle)
        Population std (ddof=0) of ``cos(v_c, v_c')`` over the C(C-1)/2 unordered pairs, and
        the mean over pairs of ``|cos(v_c, v_c') + 1/(C-1)|``. None when C < 2 or a vector
        is zero (its cosine is undefined).

    Notes
    -----
    One :func:`~ncinspect.metrics.pairs.pair_sweep` over the tiles with an exact (Chan)
    merge of the moments, O(C^2 d) time and O(tile) memory.
    """
    if vectors.shape[0] < 2:
        return None, None
    units, norms = unit_rows(vectors)
    if np.any(norms == 0):
        return None, None
    return cosine_values(pair_sweep([units]).units[0])


def cdnv(variances: np.ndarray, centred: np.ndarray) -> float | None:
    """Class-distance normalised variance (Galanti et al.), mean over unordered pairs.

    Notes
    -----
    ``mean_{c<c'} (v_c + v_c') / (2 ||mu_c - mu_c'||^2)`` with
    ``v_c = (1/n_c) sum ||h_i - mu_c||^2``. Distances come from the centred means in tiles.
    Returns None when two class means coincide. ``variances`` must be in the units of
    ``centred`` squared; both are rescaled together by a power of two (exact).
    """
    mean, _ = cdnv_mean(variances, centred, power=1)
    return mean


def cdnv_mean(
    variances: np.ndarray, centred: np.ndarray, *, power: int
) -> tuple[float | None, float]:
    """``(mean_{c<c'} (v_c + v_c') / (2 ||mu_c - mu_c'||^(2 power)), s)`` in units where
    ``centred`` was divided by the power of two ``s`` (``variances`` by ``s**2``).

    Notes
    -----
    The shared sum of :func:`cdnv` (power 1, scale-free) and
    :func:`ncinspect.metrics.general.cdnv_exp2` (power 2, which scales the mean back by
    ``1/s**2``). Pairs in tiles; None when two class means coincide or C < 2.
    """
    if centred.shape[0] < 2:
        return None, pow2_scale(centred)
    stats = pair_sweep([], cdnv=(variances, centred))
    p, s = stats.cdnv, stats.cdnv_scale
    if p.coincide or p.count == 0:
        return None, s
    return (p.total1 if power == 1 else p.total2) / p.count, s


def self_duality(
    weights: np.ndarray, centred: np.ndarray, memo: ClassProducts | None = None
) -> float | None:
    """``|| W/||W||_F - M~/||M~||_F ||_F^2`` (squared, as in Papyan et al.; in [0, 4]);
    ``memo``: see :class:`~ncinspect.metrics.linalg.ClassProducts`."""
    weights, centred = unit(weights, memo), unit(centred, memo)
    nw, nm = fro(weights), fro(centred)
    if nw == 0 or nm == 0:
        return None
    # np.add.reduce: np.sum's pairwise sum over every entry, without its dispatch
    return float(np.add.reduce(np.square(weights / nw - centred / nm), axis=None))
