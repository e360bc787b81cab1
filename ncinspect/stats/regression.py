"""The two mergeable passes of a regression snapshot (NRC1-NRC3): moments of the
features and targets (pass 1), residual sums of the normalised features off two subspaces
(pass 2).

Both merge exactly (Chan's update for the moments), so they stream and run on Dask. d x d
work is allowed here only: it is what the principal directions need. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "RegressionFirstPass",
    "RegressionGeometry",
    "RegressionSecondPass",
    "normalise_rows",
]


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
    """Pass 1: moments of the features (for their principal directions) and of the targets.

    Attributes
    ----------
    n_rows : rows seen.
    n_feat, feat_mean (d,), feat_scatter (d, d) : over the rows with a nonzero finite
        feature vector, of the features ``h_i`` themselves (float64; not normalised, as
        spec/metrics.md defines nrc1); scatter is ``sum (h_i - mean)(h_i - mean)^T``.
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
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported as null
            nf, mf, sf = _moments(np.asarray(h, dtype=np.float64)[ok])
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
        """(d, d) covariance of the features (centred, divided by their count)."""
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
