"""Neural regression collapse (NRC1-NRC3, Andriopoulos et al. 2024): statistics and kernels.

A regression snapshot holds features ``h_i`` (N, d), float targets ``y_i`` (N, t) and,
optionally, the last layer ``W`` (t, d). With ``h^_i = h_i / ||h_i||``:

- ``nrc1 = (1/N) sum_i ||h^_i - P_pca h^_i||^2``, ``P_pca`` the projector on the top t
  principal directions of the centred features (eigenvectors of the covariance of the
  ``h_i``, as spec/metrics.md says; 0.2 took those of the normalised ``h^_i``);
- ``nrc2 = (1/N) sum_i ||h^_i - P_W h^_i||^2``, ``P_W`` the projector on the row space of W;
- ``nrc3 = min_{gamma in [0, lambda_min(Sigma_Y)]} || A - B(gamma)/||B(gamma)||_F ||_F^2``
  with ``A = W W^T/||W W^T||_F``, ``B(gamma) = Sigma_Y^{1/2} - sqrt(gamma) I`` and
  ``Sigma_Y`` the covariance of the targets (each column centred, divided by N; nrc3 does
  not depend on that scale).

Two passes over row chunks, both mergeable (so they stream and run on Dask):
:class:`RegressionFirstPass` (count, mean and centred d x d scatter of the features,
merged exactly with the Chan update; the same for the targets, t x t) and
:class:`RegressionSecondPass` (the two residual sums, from the explicit residuals
``h^ - P h^`` so that a value near 0 keeps its relative digits). d x d work is allowed here
only: it is what the principal directions need.

This module imports numpy only; no IO, no printing.
"""

from __future__ import annotations

import numpy as np

from ..stats.regression import (
    RegressionFirstPass,
    RegressionGeometry,
    RegressionSecondPass,
    normalise_rows,
)
from .nulls import MetricValues
from .registry import REGRESSION_REGISTRY

__all__ = [
    "REGRESSION_KEYS",
    "RegressionFirstPass",
    "RegressionGeometry",
    "RegressionSecondPass",
    "regression_geometry",
    "nrc3",
    "compute_regression_metrics",
    "normalise_rows",
]

#: The regression metrics, in report order (from the registry).
REGRESSION_KEYS: tuple[str, ...] = tuple(m.key for m in REGRESSION_REGISTRY)

TIE_RTOL = 1e-12  #: eigenvalues t and t+1 closer than this (relative) make P_pca ambiguous
RANK_RTOL = 1e-12  #: singular values of W below this fraction of the largest are dropped


def regression_geometry(
    first: RegressionFirstPass, n_targets: int, weights: np.ndarray | None
) -> RegressionGeometry:
    """``P_pca`` and ``P_W`` as orthonormal row bases, from pass 1 and the last layer.

    The top t principal directions are the leading t eigenvectors of the covariance of the
    (centred, not normalised) features; when eigenvalues t and t+1 are equal (to ``TIE_RTOL`` of the
    largest, which includes a centred rank below t) the subspace is not unique and nrc1 is
    undefined. With t >= d the projector is the identity.
    """
    d = first.feat_mean.shape[0]
    t = int(n_targets)
    pca, pca_reason, eig = None, None, None
    if first.n_feat < 2:
        pca_reason = "fewer than 2 nonzero feature rows"
    elif not np.isfinite(first.feature_covariance).all():
        pca_reason = "the covariance of the features overflows float64 (values too large)"
    else:
        lam, vec = np.linalg.eigh(first.feature_covariance)
        order = np.argsort(lam)[::-1]
        lam, vec = lam[order], vec[:, order]
        eig = lam
        if t >= d:
            pca = np.eye(d)
        else:
            top = max(float(lam[0]), 0.0)
            if top == 0.0 or lam[t - 1] - lam[t] <= TIE_RTOL * top:
                pca_reason = (
                    f"the top {t} principal directions of the centred features are not "
                    f"unique (eigenvalues {t} and {t + 1} are equal)"
                )
            else:
                pca = np.ascontiguousarray(vec[:, :t].T)
    wb, w_reason = None, None
    if weights is None:
        w_reason = "no last-layer weights W (t, d) (array 'weights' or an alias)"
    else:
        _, s, vt = np.linalg.svd(np.asarray(weights, dtype=np.float64), full_matrices=False)
        if s.size == 0 or s[0] == 0 or not np.isfinite(s[0]):
            w_reason = "W is zero"
        else:
            wb = np.ascontiguousarray(vt[s > RANK_RTOL * s[0]])
    return RegressionGeometry(pca, wb, pca_reason, w_reason, eig)


def _sym_sqrt(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending, clipped at 0) and eigenvectors of a symmetric PSD matrix."""
    lam, vec = np.linalg.eigh((sigma + sigma.T) / 2.0)
    return np.clip(lam, 0.0, None), vec


def nrc3(weights: np.ndarray, sigma_y: np.ndarray) -> tuple[float | None, float | None, str | None]:
    """``(nrc3, gamma*, reason)`` for W (t, d) and the target covariance Sigma_Y (t, t).

    Notes
    -----
    ``nrc3 = min_{gamma in [0, lambda_min]} || A - B/||B||_F ||_F^2`` with
    ``A = W W^T/||W W^T||_F`` and ``B = Sigma_Y^{1/2} - sqrt(gamma) I``. In the eigenbasis V
    of Sigma_Y (eigenvalues ``lambda_k``, ``sigma_k = sqrt(lambda_k)``), with ``s = sqrt(gamma)``
    in ``[0, sigma_min]``, ``B = V diag(sigma - s) V^T``; both terms have unit norm, so the
    objective is ``2 - 2 phi(s)`` with ``phi(s) = (a - s tau) / sqrt(P2 - 2 s P1 + t s^2)``,
    ``a = sum_k sigma_k (V^T A V)_kk``, ``tau = tr A``, ``P1 = sum sigma_k``,
    ``P2 = sum sigma_k^2``. ``phi'(s) = 0`` is linear in s:
    ``s* = (tau P2 - a P1) / (tau P1 - a t)``, so the minimum is exact: the smaller of the
    objective at ``s = 0``, at ``s = sigma_min`` (unless B vanishes there, Sigma_Y ∝ I) and at
    ``s*`` when it lies inside. The objective itself is evaluated as the explicit matrix
    difference (no ``2 - 2 phi`` cancellation). The Sigma_Y^{1/2} is the symmetric square
    root; nrc3 does not depend on the scale of Sigma_Y.
    """
    w = np.asarray(weights, dtype=np.float64)
    sig = np.asarray(sigma_y, dtype=np.float64)
    t = sig.shape[0]
    if w.shape[0] != t:
        return None, None, f"W has {w.shape[0]} rows for t = {t} targets"
    m = np.abs(w).max() if w.size else 0.0
    if m == 0 or not np.isfinite(m):
        return None, None, "W is zero"
    ww = (w / m) @ (w / m).T
    a_mat = ww / np.linalg.norm(ww)
    scale = np.abs(sig).max() if sig.size else 0.0
    if scale == 0:
        return None, None, "the targets are constant (Sigma_Y = 0)"
    lam, vec = _sym_sqrt(sig / scale)
    sigma = np.sqrt(lam)  # ascending
    ar = vec.T @ a_mat @ vec
    diag = np.diag(ar).copy()
    off = float(np.sum(np.square(ar)) - np.sum(np.square(diag)))
    off = max(off, 0.0)

    def objective(s: float) -> float | None:
        b = sigma - s
        nb = np.linalg.norm(b)
        if nb == 0:
            return None
        return off + float(np.sum(np.square(diag - b / nb)))

    s_max = float(sigma[0])
    cands = [0.0, s_max]
    tau, a = float(diag.sum()), float(np.dot(sigma, diag))
    p1, p2 = float(sigma.sum()), float(np.dot(sigma, sigma))
    den = tau * p1 - a * t
    if den != 0:
        s_star = (tau * p2 - a * p1) / den
        if 0.0 < s_star < s_max:
            cands.append(s_star)
    best = None
    for s in cands:
        v = objective(s)
        if v is not None and (best is None or v < best[0]):
            best = (v, s)
    if best is None:
        return None, None, "Sigma_Y^{1/2} - sqrt(gamma) I is zero"
    return float(best[0]), float(best[1] ** 2 * scale), None


def compute_regression_metrics(
    first: RegressionFirstPass,
    second: RegressionSecondPass,
    geom: RegressionGeometry,
    weights: np.ndarray | None,
) -> tuple[MetricValues, dict[str, object]]:
    """``(values, extra)``: nrc1-nrc3 (None with a reason in ``values.null_reasons`` where
    undefined).

    ``extra`` holds the minimising ``gamma`` of nrc3 (in the units of Sigma_Y) and the
    eigenvalues of the normalised features' covariance, for figures.
    """
    out = MetricValues.of_keys(REGRESSION_KEYS)
    zero_reason = None
    if first.n_zero:
        zero_reason = (
            f"{first.n_zero} feature row(s) are zero (h/||h|| undefined), first at row "
            f"{first.first_zero_row}"
        )
    n = second.n
    for key, basis, res, why in (
        ("nrc1", geom.pca_basis, second.res_pca, geom.pca_reason),
        ("nrc2", geom.w_basis, second.res_w, geom.w_reason),
    ):
        if zero_reason:
            out.set(key, None, zero_reason)
        elif basis is None or n == 0:
            out.set(key, None, why or "no feature rows")
        else:
            out.values[key] = res / n
    extra: dict[str, object] = {"nrc3_gamma": None}
    if weights is None:
        out.set("nrc3", None, geom.w_reason or "no last-layer weights W")
    elif first.n_tgt < 2:
        out.set("nrc3", None, "fewer than 2 target rows (Sigma_Y undefined)")
    else:
        v, gamma, why = nrc3(weights, first.target_covariance)
        if v is None:
            out.set("nrc3", None, why or "undefined")
        else:
            out.values["nrc3"] = v
            extra["nrc3_gamma"] = gamma
    if geom.pca_eigvals is not None:
        extra["feature_eigvals"] = geom.pca_eigvals
    return out, extra
