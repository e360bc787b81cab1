"""Neural regression collapse (NRC1-NRC3, Andriopoulos et al. 2024): statistics and kernels.

A regression snapshot holds features ``h_i`` (N, d), float targets ``y_i`` (N, t) and,
optionally, the last layer ``W`` (t, d). With ``h^_i = h_i / ||h_i||``:

- ``nrc1 = (1/N) sum_i ||h^_i - P_pca h^_i||^2``, ``P_pca`` the projector on the top t
  principal directions of the centred normalised features (eigenvectors of the covariance
  of the ``h^_i``);
- ``nrc2 = (1/N) sum_i ||h^_i - P_W h^_i||^2``, ``P_W`` the projector on the row space of W;
- ``nrc3 = min_{gamma in [0, lambda_min(Sigma_Y)]} || A - B(gamma)/||B(gamma)||_F ||_F^2``
  with ``A = W W^T/||W W^T||_F``, ``B(gamma) = Sigma_Y^{1/2} - sqrt(gamma) I`` and
  ``Sigma_Y`` the covariance of the targets (each column centred, divided by N; nrc3 does
  not depend on that scale).

Two passes over row chunks, both mergeable (so they stream and run on Dask):
:class:`RegressionFirstPass` (count, mean and centred d x d scatter of the normalised
features, merged exactly with the Chan update; the same for the targets, t x t) and
:class:`RegressionSecondPass` (the two residual sums, from the explicit residuals
``h^ - P h^`` so that a value near 0 keeps its relative digits). d x d work is allowed here
only: it is what the principal directions need.

This module imports numpy only; no IO, no printing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .registry import REGRESSION_REGISTRY

__all__ = [
    "REGRESSION_INFO",
    "REGRESSION_KEYS",
    "RegressionFirstPass",
    "RegressionGeometry",
    "RegressionSecondPass",
    "regression_geometry",
    "nrc3",
    "compute_regression_metrics",
    "normalise_rows",
]

#: (key, group, direction, meaning) of the regression metrics, in report order (the layout
#: of :data:`ncinspect.metrics.METRIC_INFO`), from
#: :data:`ncinspect.metrics.registry.REGRESSION_REGISTRY`.
REGRESSION_INFO: tuple[tuple[str, str, str, str], ...] = tuple(
    (m.key, m.group, m.direction, m.title) for m in REGRESSION_REGISTRY
)
REGRESSION_KEYS: tuple[str, ...] = tuple(k for k, *_ in REGRESSION_INFO)

TIE_RTOL = 1e-12  #: eigenvalues t and t+1 closer than this (relative) make P_pca ambiguous
RANK_RTOL = 1e-12  #: singular values of W below this fraction of the largest are dropped


def normalise_rows(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(h^, ok)``: float64 rows scaled to unit norm, and which rows could be (nonzero, finite).

    Each row is first divided by its largest absolute entry, so no square overflows or
    underflows over the whole float64 range. Rows that are zero or not finite are left 0.
    """
    x = np.array(h, dtype=np.float64, copy=True)
    finite = np.isfinite(x).all(axis=1)
    x[~finite] = 0.0
    scale = np.abs(x).max(axis=1) if x.shape[1] else np.zeros(x.shape[0])
    ok = finite & (scale > 0)
    x[ok] /= scale[ok, None]
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    x[ok] /= norms[ok, None]
    x[~ok] = 0.0
    return x, ok


def _moments(x: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    n = x.shape[0]
    if n == 0:
        k = x.shape[1]
        return 0, np.zeros(k), np.zeros((k, k))
    mean = x.mean(axis=0)
    xc = x - mean
    return n, mean, xc.T @ xc


def _merge_moments(a, b):
    """Chan et al.'s exact merge of (count, mean, centred scatter) for vectors."""
    na, ma, sa = a
    nb, mb, sb = b
    if nb == 0:
        return na, ma.copy(), sa.copy()
    if na == 0:
        return nb, mb.copy(), sb.copy()
    n = na + nb
    delta = mb - ma
    mean = ma + delta * (nb / n)
    scatter = sa + sb + np.outer(delta, delta) * (na * nb / n)
    return n, mean, scatter


@dataclass
class RegressionFirstPass:
    """Pass 1: moments of the normalised features and of the targets.

    Attributes
    ----------
    n_rows : rows seen.
    n_feat, feat_mean (d,), feat_scatter (d, d) : over the rows with a nonzero feature
        vector, of ``h^_i``; scatter is ``sum (h^_i - mean)(h^_i - mean)^T``.
    n_tgt, tgt_mean (t,), tgt_scatter (t, t) : the same for the targets (every row).
    n_zero, first_zero_row : rows whose features are all zero (``h^`` undefined).
    n_nonfinite, first_nonfinite_row : feature rows holding NaN/Inf.
    n_bad_targets, first_bad_target_row : target rows holding NaN/Inf.
    """

    n_rows: int
    n_feat: int
    feat_mean: np.ndarray
    feat_scatter: np.ndarray
    n_tgt: int
    tgt_mean: np.ndarray
    tgt_scatter: np.ndarray
    n_zero: int = 0
    first_zero_row: int | None = None
    n_nonfinite: int = 0
    first_nonfinite_row: int | None = None
    n_bad_targets: int = 0
    first_bad_target_row: int | None = None

    @classmethod
    def empty(cls, n_features: int, n_targets: int) -> RegressionFirstPass:
        d, t = n_features, n_targets
        return cls(0, 0, np.zeros(d), np.zeros((d, d)), 0, np.zeros(t), np.zeros((t, t)))

    @classmethod
    def of_chunk(cls, row0: int, h: np.ndarray, y: np.ndarray) -> RegressionFirstPass:
        """Statistics of rows ``row0 ..`` : features ``h`` (n, d) any numeric dtype, targets ``y``
        (n, t) float64."""
        x, ok = normalise_rows(h)
        finite = np.isfinite(np.asarray(h, dtype=np.float64)).all(axis=1)
        zero = finite & ~ok
        y = np.asarray(y, dtype=np.float64)
        ybad = ~np.isfinite(y).all(axis=1)
        nf, mf, sf = _moments(x[ok])
        nt, mt, st = _moments(np.where(ybad[:, None], 0.0, y)[~ybad])

        def first(mask):
            idx = np.flatnonzero(mask)
            return int(row0 + idx[0]) if idx.size else None

        return cls(
            int(h.shape[0]),
            nf,
            mf,
            sf,
            nt,
            mt,
            st,
            int(zero.sum()),
            first(zero),
            int((~finite).sum()),
            first(~finite),
            int(ybad.sum()),
            first(ybad),
        )

    def merge(self, other: RegressionFirstPass) -> RegressionFirstPass:
        def lo(a, b):
            vals = [v for v in (a, b) if v is not None]
            return min(vals) if vals else None

        nf, mf, sf = _merge_moments(
            (self.n_feat, self.feat_mean, self.feat_scatter),
            (other.n_feat, other.feat_mean, other.feat_scatter),
        )
        nt, mt, st = _merge_moments(
            (self.n_tgt, self.tgt_mean, self.tgt_scatter),
            (other.n_tgt, other.tgt_mean, other.tgt_scatter),
        )
        return RegressionFirstPass(
            self.n_rows + other.n_rows,
            nf,
            mf,
            sf,
            nt,
            mt,
            st,
            self.n_zero + other.n_zero,
            lo(self.first_zero_row, other.first_zero_row),
            self.n_nonfinite + other.n_nonfinite,
            lo(self.first_nonfinite_row, other.first_nonfinite_row),
            self.n_bad_targets + other.n_bad_targets,
            lo(self.first_bad_target_row, other.first_bad_target_row),
        )

    @property
    def feature_covariance(self) -> np.ndarray:
        """(d, d) covariance of the normalised features (divided by their count)."""
        return self.feat_scatter / max(self.n_feat, 1)

    @property
    def target_covariance(self) -> np.ndarray:
        """(t, t) ``Sigma_Y``: covariance of the targets, columns centred, divided by N."""
        return self.tgt_scatter / max(self.n_tgt, 1)


@dataclass
class RegressionGeometry:
    """Orthonormal bases (rows) of the two subspaces pass 2 projects on (None: undefined)."""

    pca_basis: np.ndarray | None  # (k, d), k = min(t, d)
    w_basis: np.ndarray | None  # (rank W, d)
    pca_reason: str | None = None
    w_reason: str | None = None
    pca_eigvals: np.ndarray | None = None  # every eigenvalue of the covariance, descending


def regression_geometry(
    first: RegressionFirstPass, n_targets: int, weights: np.ndarray | None
) -> RegressionGeometry:
    """``P_pca`` and ``P_W`` as orthonormal row bases, from pass 1 and the last layer.

    The top t principal directions are the leading t eigenvectors of the covariance of the
    normalised features; when eigenvalues t and t+1 are equal (to ``TIE_RTOL`` of the
    largest, which includes a centred rank below t) the subspace is not unique and nrc1 is
    undefined. With t >= d the projector is the identity.
    """
    d = first.feat_mean.shape[0]
    t = int(n_targets)
    pca, pca_reason, eig = None, None, None
    if first.n_feat < 2:
        pca_reason = "fewer than 2 nonzero feature rows"
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
                    f"the top {t} principal directions of the normalised features are not "
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


@dataclass
class RegressionSecondPass:
    """Pass 2: sums over rows of ``||h^_i - P h^_i||^2`` for P_pca and P_W."""

    n: int = 0
    res_pca: float = 0.0
    res_w: float = 0.0

    @classmethod
    def of_chunk(cls, geom: RegressionGeometry, h: np.ndarray) -> RegressionSecondPass:
        x, ok = normalise_rows(h)
        x = x[ok]

        def residual(basis):
            if basis is None:
                return 0.0
            r = x - (x @ basis.T) @ basis
            return float(np.einsum("ij,ij->", r, r))

        return cls(int(x.shape[0]), residual(geom.pca_basis), residual(geom.w_basis))

    def merge(self, other: RegressionSecondPass) -> RegressionSecondPass:
        return RegressionSecondPass(
            self.n + other.n, self.res_pca + other.res_pca, self.res_w + other.res_w
        )


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
) -> tuple[dict[str, object], list[str], dict[str, object]]:
    """``(metrics, warnings, extra)``: nrc1-nrc3 (None with a reason where undefined).

    ``extra`` holds the minimising ``gamma`` of nrc3 (in the units of Sigma_Y) and the
    eigenvalues of the normalised features' covariance, for figures.
    """
    values: dict[str, object] = dict.fromkeys(REGRESSION_KEYS)
    reasons: dict[str, list[str]] = {}

    def null(key: str, reason: str) -> None:
        reasons.setdefault(reason, []).append(key)

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
            null(key, zero_reason)
        elif basis is None or n == 0:
            null(key, why or "no feature rows")
        else:
            values[key] = res / n
    extra: dict[str, object] = {"nrc3_gamma": None}
    if weights is None:
        null("nrc3", geom.w_reason or "no last-layer weights W")
    elif first.n_tgt < 2:
        null("nrc3", "fewer than 2 target rows (Sigma_Y undefined)")
    else:
        v, gamma, why = nrc3(weights, first.target_covariance)
        if v is None:
            null("nrc3", why or "undefined")
        else:
            values["nrc3"] = v
            extra["nrc3_gamma"] = gamma
    if geom.pca_eigvals is not None:
        extra["feature_eigvals"] = geom.pca_eigvals
    warnings = [f"{', '.join(keys)}: null ({why})" for why, keys in reasons.items()]
    return values, warnings, extra
