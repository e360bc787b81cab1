"""Pure-numpy geometry for figures: seeded subsamples, projections, cosine matrices.

This module imports numpy only (no IO, no plotting). The plots receive what these functions
compute, so every plotted number can be recomputed (and tested) without matplotlib.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "subsample_indices",
    "project",
    "cosine_matrix",
    "pairwise_cosines",
    "row_norms",
    "output_split",
    "etf_cosine",
]


def subsample_indices(n: int, size: int, *, seed: int = 0) -> np.ndarray:
    """Sorted indices of a uniform subsample of ``size`` out of ``n`` rows (all when n <= size).

    Parameters
    ----------
    n : int
        Number of rows.
    size : int
        Rows wanted (>= 0).
    seed : int
        Seed of the ``numpy.random.Generator`` (PCG64); same seed, same rows.

    Returns
    -------
    numpy.ndarray
        int64 indices in increasing order (row chunks can then be read in order).
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if n <= size:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def project(rows: np.ndarray, basis: np.ndarray, *, origin: np.ndarray | None = None) -> np.ndarray:
    """Coordinates of ``rows - origin`` along the orthonormal ``basis`` rows.

    Parameters
    ----------
    rows : (n, d) array
    basis : (k, d) array
        Orthonormal directions, e.g. the leading between-class eigenvectors.
    origin : (d,) array, optional
        Subtracted first (e.g. the global mean mu_G); default 0.

    Returns
    -------
    numpy.ndarray
        (n, k) float64 coordinates ``(h_i - origin) . v_k``.
    """
    x = np.asarray(rows, dtype=np.float64)
    if origin is not None:
        x = x - np.asarray(origin, dtype=np.float64)
    return x @ np.asarray(basis, dtype=np.float64).T


def row_norms(vectors: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row (float64)."""
    return np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)


def cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    """(C, C) cosines between rows; rows of norm 0 (or non-finite) give NaN entries.

    Notes
    -----
    ``G_cc' = <v_c, v_c'> / (||v_c|| ||v_c'||)``; the diagonal is 1 for non-zero rows.
    """
    v = np.asarray(vectors, dtype=np.float64)
    norms = row_norms(v)
    ok = np.isfinite(norms) & (norms > 0)
    unit = np.where(ok[:, None], v / np.where(ok, norms, 1.0)[:, None], np.nan)
    g = unit @ unit.T
    np.clip(g, -1.0, 1.0, out=g)
    return g


def pairwise_cosines(vectors: np.ndarray) -> np.ndarray:
    """The C(C-1)/2 cosines of unordered pairs of rows (upper triangle of :func:`cosine_matrix`)."""
    g = cosine_matrix(vectors)
    iu = np.triu_indices(g.shape[0], k=1)
    return g[iu]


def etf_cosine(n_classes: int) -> float:
    """Pairwise cosine of a simplex ETF with ``n_classes`` vertices: ``-1/(C-1)``."""
    if n_classes < 2:
        raise ValueError(f"a simplex ETF needs at least 2 classes, got {n_classes}")
    return -1.0 / (n_classes - 1)


def output_split(outputs: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split outputs (n, C) into true-class values (n,) and wrong-class values (n (C-1),).

    Notes
    -----
    ``true_i = f_{y_i}(x_i)``; ``wrong`` holds ``f_c(x_i)`` for every ``c != y_i`` in row-major
    order. Their means are ``1 - sqi_eps1`` and ``sqi_eps2`` of spec/metrics.md.
    """
    out = np.asarray(outputs, dtype=np.float64)
    y = np.asarray(codes, dtype=np.int64)
    rows = np.arange(out.shape[0])
    mask = np.ones(out.shape, dtype=bool)
    mask[rows, y] = False
    return out[rows, y], out[mask]
