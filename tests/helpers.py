"""Data makers and file digests shared by the tests (imported as ``tests.helpers``)."""

from __future__ import annotations

import hashlib

import numpy as np


def simplex_etf(C: int, d: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """C x d rows forming a simplex ETF of norm ``radius`` in a random C-dim subspace (C <= d)."""
    basis = np.linalg.qr(rng.standard_normal((d, C)))[0]  # d x C orthonormal
    e = np.sqrt(C / (C - 1)) * (np.eye(C) - np.ones((C, C)) / C)
    return radius * e @ basis.T


def make_data(C=5, d=16, n=40, radius=4.0, sigma=0.5, seed=0, imbalanced=False, offset=0.0):
    """Features = ETF means + isotropic noise; returns H, y, M (means), W (= M)."""
    rng = np.random.default_rng(seed)
    m = simplex_etf(C, d, radius, rng)
    counts = [n + (7 * c if imbalanced else 0) for c in range(C)]
    y = np.concatenate([np.full(k, c) for c, k in enumerate(counts)])
    h = m[y] + sigma * rng.standard_normal((len(y), d)) + offset
    return h, y, m


def file_digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
