"""Spectral metrics of the features (spec/metrics.md, "Spectral metrics (0.3)").

From the merged d x d sums of :class:`~ncinspect.stats.spectra.SpectraPass` and the class
means of pass 1:

- ``Sigma_W = (1/N) sum_i e_i e_i^T`` (the pass-2 residuals), and exactly
  ``Sigma_T = Sigma_W + (1/N) sum_c n_c (mu_c - hbar)(mu_c - hbar)^T``, ``hbar`` the
  sample mean (the within-class residuals of each class sum to zero);
- ``rank_effective`` = ``exp(H(s / sum s))``, ``s_k = sqrt(l_k)``, ``l_k`` the eigenvalues of
  ``Sigma_T`` (Roy & Vetterli 2007); ``rank_effective_within`` the same on ``Sigma_W``;
  ``rank_effective_means`` on the singular values of ``M~``;
- ``rankme`` = ``exp(-sum p log p)``, ``p = s'/sum s' + 1e-7``, ``s'`` the singular values of
  the uncentred N x d feature matrix (the square roots of the Gram's eigenvalues), as the
  reference code of Garrido et al. 2023 computes it (``min(N, d)`` values);
- ``stable_rank`` = ``Tr(Sigma_T) / l_1``;
- ``alpha_req`` = minus the least-squares slope of ``log l_k`` on ``log k``, k = 1..K,
  ``K = #{l_k > 1e-12 l_1}`` (at most ``min(d, N-1)``), null when K < 3 (Agrawal et al. 2022).

Round-off zeros: eigenvalues of a d x d sum at or below ``d * eps * l_1`` (the rank tolerance
of ``numpy.linalg.matrix_rank``) are exact zeros of the true matrix up to round-off; they
count as 0 (with ``p_k = 0`` contributing nothing to the entropy). Every value is
scale-free, so the sums may be in any units.

No IO here: numpy only.
"""

from __future__ import annotations

import numpy as np

from .nulls import MetricValues

__all__ = ["SPECTRA_KEYS", "spectral_metrics", "entropy_rank", "rankme_of", "alpha_req_of"]

SPECTRA_KEYS: tuple[str, ...] = (
    "rank_effective",
    "rank_effective_within",
    "rank_effective_means",
    "rankme",
    "stable_rank",
    "alpha_req",
)

_EPS = np.finfo(np.float64).eps


def _eigvals_desc(matrix: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD ``matrix``, decreasing, round-off zeros set to 0."""
    a = np.asarray(matrix, dtype=np.float64)
    a = 0.5 * (a + a.T)
    lam = np.linalg.eigvalsh(a)[::-1].copy()
    if lam.size == 0 or lam[0] <= 0:
        return np.zeros_like(lam)
    lam[lam <= a.shape[0] * _EPS * lam[0]] = 0.0
    return lam


def entropy_rank(values: np.ndarray) -> float | None:
    """``exp(H(p))`` with ``p = values / sum(values)`` (zeros contribute 0); None if all 0."""
    v = np.asarray(values, dtype=np.float64)
    v = v[v > 0]
    total = v.sum()
    if v.size == 0 or not np.isfinite(total) or total <= 0:
        return None
    p = v / total
    return float(np.exp(-np.sum(p * np.log(p))))


def rankme_of(singular: np.ndarray) -> float | None:
    """RankMe of the singular values ``s'`` (as the reference code: ``p = s'/sum s' + 1e-7``)."""
    s = np.asarray(singular, dtype=np.float64)
    total = s.sum()
    if s.size == 0 or total <= 0 or not np.isfinite(total):
        return None
    p = s / total + 1e-7
    return float(np.exp(-np.sum(p * np.log(p))))


def alpha_req_of(eigvals: np.ndarray, n_samples: int) -> tuple[float | None, str | None]:
    """``(alpha, reason)``: minus the LS slope of log l_k on log k over the top K eigenvalues."""
    lam = np.asarray(eigvals, dtype=np.float64)
    if lam.size == 0 or lam[0] <= 0:
        return None, "the features have no variance"
    K = int(np.count_nonzero(lam > 1e-12 * lam[0]))
    K = min(K, lam.size, max(int(n_samples) - 1, 0))
    if K < 3:
        return None, f"{K} eigenvalue(s) above 1e-12 l_1: the power-law fit needs 3"
    x = np.log(np.arange(1, K + 1, dtype=np.float64))
    z = np.log(lam[:K])
    xc = x - x.mean()
    slope = float(np.dot(xc, z - z.mean()) / np.dot(xc, xc))
    return -slope, None


def spectral_metrics(
    scatter: np.ndarray,
    gram: np.ndarray,
    count: int,
    means: np.ndarray,
    counts: np.ndarray,
    centred: np.ndarray,
) -> MetricValues:
    """The six spectral keys from the merged sums.

    Parameters
    ----------
    scatter, gram : (d, d) ``sum_i e_i e_i^T`` and ``sum_i h_i h_i^T``, in one unit
        (``units**2``).
    count : N, the rows summed.
    means : (C, d) the class means of the classes that take part, in ``units``.
    counts : (C,) their row counts (summing to N).
    centred : (C, d) the centred means ``M~`` of those classes (any units).
    """
    out = MetricValues.of_keys(SPECTRA_KEYS)
    N = int(count)
    if N < 1:
        out.set_all(SPECTRA_KEYS, None, "no rows")
        return out
    mu = np.asarray(means, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    d = scatter.shape[0]
    sigma_w = np.asarray(scatter, dtype=np.float64) / N
    hbar = (n @ mu) / N
    between = np.sqrt(n / N)[:, None] * (mu - hbar)  # (C, d): B^T B = between-class part
    sigma_t = sigma_w + between.T @ between

    lam_t = _eigvals_desc(sigma_t)
    if lam_t.size == 0 or lam_t[0] <= 0:
        out.set_all(("rank_effective", "stable_rank", "alpha_req"), None,
                    "the features have no variance (Sigma_T = 0)")  # fmt: skip
    else:
        out.set("rank_effective", entropy_rank(np.sqrt(lam_t)))
        out.set("stable_rank", float(np.trace(sigma_t) / lam_t[0]))
        out.set("alpha_req", *alpha_req_of(lam_t, N))

    lam_w = _eigvals_desc(sigma_w)
    value = entropy_rank(np.sqrt(lam_w))
    out.set("rank_effective_within", value, "Sigma_W = 0 (every row equals its class mean)")

    s_means = np.linalg.svd(np.asarray(centred, dtype=np.float64), compute_uv=False)
    if s_means.size and s_means[0] > 0:
        s_means[s_means <= max(centred.shape) * _EPS * s_means[0]] = 0.0
    out.set("rank_effective_means", entropy_rank(s_means), "the class means coincide (M~ = 0)")

    lam_g = _eigvals_desc(gram)
    k = min(N, d)
    out.set("rankme", rankme_of(np.sqrt(lam_g[:k])), "every feature is 0")
    return out
