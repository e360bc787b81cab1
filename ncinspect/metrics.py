"""Pure functions from sufficient statistics to the numbers of spec/metrics.md.

This module imports numpy only (no IO, no printing, no plotting). Every public function
documents its formula in Notes. Undefined values are returned as ``None`` together with a
one-line reason, never as 0 or NaN.

Costs: everything here is O(C d min(C, d)) or less; pairwise quantities over classes are
computed in tiles so that C = 30,000 classes never builds a C x C matrix.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .registry import REGISTRY
from .stats import FirstPass, Geometry, SecondPass, pow2_scale

__all__ = [
    "METRIC_KEYS",
    "PER_CLASS_KEYS",
    "METRIC_INFO",
    "between_class_geometry",
    "etf_gram",
    "etf_error",
    "equinorm",
    "pairwise_cosine_stats",
    "cdnv",
    "self_duality",
    "compute_metrics",
]

EIG_RTOL = 1e-12  #: eigenvalues of Sigma_B below this fraction of the largest are dropped
_DIRECT_MAX_C = 2048  #: up to this C, C x C matrices are formed directly (exact, cheap)
_TILE_ELEMS = 1 << 22  #: entries of one tile of a pairwise computation (~32 MB float64)

#: (key, group, direction, meaning) for every metric, in report order (from the registry).
METRIC_INFO: tuple[tuple[str, str, str, str], ...] = tuple(
    (m.key, m.group, m.direction, m.title) for m in REGISTRY
)
METRIC_KEYS: tuple[str, ...] = tuple(k for k, *_ in METRIC_INFO)
PER_CLASS_KEYS: tuple[str, ...] = (
    "n",
    "var",
    "mean_norm",
    "weight_norm",
    "duality_cos",
    "ncc_agreement",
    "accuracy_classifier",
)


# --------------------------------------------------------------------------------------
# geometry from pass 1
# --------------------------------------------------------------------------------------
def between_class_geometry(
    first: FirstPass,
    *,
    center: str = "classes",
    weights: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    ncc_means: np.ndarray | None = None,
    min_count: int = 1,
) -> Geometry:
    """Class means, global mean and the between-class eigenbasis from pass-1 statistics.

    Parameters
    ----------
    first : FirstPass
        Per-class counts and sums.
    center : {"classes", "samples"}
        mu_G is the mean of class means (default) or the sample mean.
    weights, bias : arrays, optional
        The classifier (C, d) and bias (C,), stored in the geometry for pass 2.
    ncc_means : (C, d) array, optional
        Centres for the NCC decisions (e.g. the train means for a test split); default the
        class means of ``first``.
    min_count : int
        Classes with fewer samples are absent (``min_class_count``); classes with none
        always are. Absent classes have NaN means, zero centred rows and no NCC centre, take
        no part in mu_G or the eigenbasis, and their rows are left out of pass 2.

    Notes
    -----
    ``M~`` has rows ``mu_c - mu_G``. Its thin SVD ``M~ = U S V^T`` gives the eigenpairs of
    ``M~^T M~ = C Sigma_B`` without a d x d matrix (work is O(C d min(C, d))). Kept are at
    most ``r = min(C-1, d)`` leading pairs, and only those with eigenvalue at least
    ``1e-12`` times the largest, so float32 round-off never yields a spurious direction.
    The SVD runs on ``M~ / scale`` (``scale`` a power of two from :func:`pow2_scale`), so
    the eigenvalues stay inside float64 for features of any magnitude; they are stored in
    units of ``scale**2`` (see :class:`Geometry`).
    """
    if center not in ("classes", "samples"):
        raise ValueError(f"center must be 'classes' or 'samples', got {center!r}")
    counts = first.counts
    present = counts >= max(1, int(min_count))
    means = first.class_means()
    means[~present] = np.nan
    C, d = means.shape
    n_present = int(present.sum())
    dropped = bool(np.any((counts > 0) & ~present))  # classes below min_count
    if n_present == 0:
        mu_g = np.zeros(d)
    elif center == "classes":
        with np.errstate(over="ignore"):
            mu_g = means[present].mean(axis=0)
        if not np.isfinite(mu_g).all():  # means near the float64 limit: sum them scaled
            s = pow2_scale(means[present])
            mu_g = (means[present] / s).mean(axis=0) * s
    elif not dropped:
        mu_g = first.sample_mean()
    else:  # the samples of the present classes only
        n = int(counts[present].sum())
        s = pow2_scale(means[present])
        mu_g = (counts[present, None] / n * (means[present] / s)).sum(axis=0) * s
    with np.errstate(over="ignore", invalid="ignore"):
        centred = np.where(present[:, None], means - mu_g, 0.0)
    if not np.isfinite(centred).all():
        from .errors import InvalidDataError

        raise InvalidDataError(
            "features: class means differ by more than float64 can hold "
            "(|mu_c - mu_G| > 1.8e308); rescale the features"
        )
    scale = pow2_scale(centred)
    if not centred.any() and n_present:  # means coincide: the residuals still need a unit
        scale = pow2_scale(means[present])
    # the eigenbasis of the present classes only (absent rows are 0 and add nothing)
    if n_present:
        _, s, vt = np.linalg.svd(centred[present] / scale, full_matrices=False)
    else:
        s, vt = np.zeros(0), np.zeros((0, d))
    eig = s * s
    keep = max(0, min(n_present - 1, d))
    if eig.size and eig[0] > 0:
        keep = min(keep, int(np.count_nonzero(eig >= EIG_RTOL * eig[0])))
    else:
        keep = 0
    if ncc_means is None:
        ncc_centres, ncc_valid = centred.copy(), present.copy()
    else:
        ncc_means = np.asarray(ncc_means, dtype=np.float64)
        ncc_valid = np.isfinite(ncc_means).all(axis=1)
        ncc_centres = np.where(ncc_valid[:, None], ncc_means - mu_g, 0.0)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    return Geometry(
        means=means,
        global_mean=mu_g,
        centred=centred,
        basis=np.ascontiguousarray(vt[:keep]),
        eigvals=eig[:keep].copy(),
        ncc_centres=ncc_centres,
        ncc_valid=ncc_valid,
        weights=w,
        bias=None if bias is None else np.asarray(bias, dtype=np.float64),
        scale=scale,
        weight_scale=1.0 if w is None else pow2_scale(w),
        present=present,
        min_count=max(1, int(min_count)),
    )


# --------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------
def etf_gram(n_classes: int) -> np.ndarray:
    """``E = (I_C - 11^T/C) / sqrt(C-1)``: the simplex-ETF Gram matrix with unit Frobenius norm."""
    C = n_classes
    return (np.eye(C) - np.full((C, C), 1.0 / C)) / np.sqrt(C - 1)


def etf_error(a: np.ndarray, b: np.ndarray) -> float | None:
    """Distance of the normalised cross-Gram ``A B^T`` to the simplex ETF.

    Notes
    -----
    ``etf_error(A, B) = || A B^T / ||A B^T||_F - E ||_F`` with ``E`` from :func:`etf_gram`;
    in [0, 2]. For C <= 2048 the C x C product is formed; above, the identity
    ``||X/||X|| - E||^2 = 2 - 2 <X, E> / ||X||`` is used with ``<X, E> = (Tr X - 1^T X 1 / C) /
    sqrt(C-1)`` and ``||A B^T||_F^2 = <A^T A, B^T B>`` (d x d, used only when d < C).
    Returns None when ``A B^T = 0``. ``A`` and ``B`` are first divided by powers of two
    (:func:`_unit`), which leaves the value unchanged and keeps the products in range.
    """
    a, b = _unit(a), _unit(b)
    C = a.shape[0]
    if C <= _DIRECT_MAX_C:
        x = a @ b.T
        norm = _fro(x)
        if norm == 0 or not np.isfinite(norm):
            return None
        return _fro(x / norm - etf_gram(C))
    if a.shape[1] < C:
        norm2 = float(np.sum((a.T @ a) * (b.T @ b)))
    else:
        norm2 = sum(float(np.sum(np.square(t))) for t in _tiles_product(a, b))
    if norm2 <= 0:
        return None
    inner = (np.einsum("ij,ij->", a, b) - np.sum(a.sum(0) * b.sum(0)) / C) / np.sqrt(C - 1)
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * inner / np.sqrt(norm2))))


def _fro(x: np.ndarray) -> float:
    """Frobenius norm by numpy's pairwise sum: unlike ``np.linalg.norm`` (a BLAS dot whose
    summation order follows the thread count) it gives the same bits on any machine.

    The squares are taken of ``x / s`` (``s`` from :func:`pow2_scale`), so they neither
    overflow nor underflow; the result is inf only when the norm itself exceeds float64.
    """
    s = pow2_scale(x)
    if s == 1.0:
        return float(np.sqrt(np.sum(np.square(x))))
    return float(np.sqrt(np.sum(np.square(x / s)))) * s


def _unit(x: np.ndarray) -> np.ndarray:
    """``x`` divided by :func:`pow2_scale` of it (exact): for quantities invariant to the
    scale of ``x``, so that their squares and products stay inside float64."""
    s = pow2_scale(x)
    return x if s == 1.0 else x / s


def _row_norms(x: np.ndarray) -> np.ndarray:
    """Euclidean norms of the rows of ``x`` without overflow or underflow of the squares."""
    s = pow2_scale(x)
    if s == 1.0:
        return np.linalg.norm(x, axis=1)
    with np.errstate(over="ignore"):
        return np.linalg.norm(x / s, axis=1) * s


def _tile_rows(n_rows: int, n_cols: int) -> int:
    return max(1, min(n_rows, _TILE_ELEMS // max(n_cols, 1)))


def _tiles_product(a: np.ndarray, b: np.ndarray) -> Iterator[np.ndarray]:
    step = _tile_rows(a.shape[0], b.shape[0])
    for i in range(0, a.shape[0], step):
        yield a[i : i + step] @ b.T


def equinorm(vectors: np.ndarray) -> float | None:
    """``std(||v_c||) / mean(||v_c||)`` with ddof=1 (None when C < 2 or all norms are 0).

    Notes
    -----
    Papyan et al.'s equinorm measure, for centred class means or classifier rows.
    """
    norms = np.linalg.norm(_unit(vectors), axis=1)
    if norms.size < 2 or norms.mean() == 0:
        return None
    return float(norms.std(ddof=1) / norms.mean())


def _pairwise_upper(x: np.ndarray, y: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield, tile by tile, the values ``x_c . y_c'`` for c < c' (upper triangle, row major)."""
    y = x if y is None else y
    C = x.shape[0]
    step = _tile_rows(C, C)
    for i in range(0, C, step):
        block = x[i : i + step] @ y[i:].T  # (t, C - i): columns left of the tile are not needed
        rows = np.arange(i, min(i + step, C))
        mask = np.arange(i, C)[None, :] > rows[:, None]
        yield block[mask]


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
    Computed in tiles with an exact (Chan) merge of the moments, O(C^2 d) time and
    O(tile) memory.
    """
    from .stats import Moments

    C = vectors.shape[0]
    vectors = _unit(vectors)
    norms = np.linalg.norm(vectors, axis=1)
    if C < 2 or np.any(norms == 0):
        return None, None
    unit = vectors / norms[:, None]
    moments = Moments()
    abs_sum = 0.0
    for cos in _pairwise_upper(unit):
        cos = np.clip(cos, -1.0, 1.0)
        moments = moments.merge(Moments.of(cos))
        abs_sum += float(np.abs(cos + 1.0 / (C - 1)).sum())
    return float(np.sqrt(moments.m2 / moments.count)), abs_sum / moments.count


def cdnv(variances: np.ndarray, centred: np.ndarray) -> float | None:
    """Class-distance normalised variance (Galanti et al.), mean over unordered pairs.

    Notes
    -----
    ``mean_{c<c'} (v_c + v_c') / (2 ||mu_c - mu_c'||^2)`` with
    ``v_c = (1/n_c) sum ||h_i - mu_c||^2``. Distances come from the centred means in tiles.
    Returns None when two class means coincide. ``variances`` must be in the units of
    ``centred`` squared; both are rescaled together by a power of two (exact).
    """
    s = pow2_scale(centred)
    if s != 1.0:
        centred = centred / s
        with np.errstate(under="ignore", over="ignore"):
            variances = variances / s / s
    C = centred.shape[0]
    sq = np.einsum("ij,ij->i", centred, centred)
    total, count = 0.0, 0
    step = _tile_rows(C, C)
    for i in range(0, C, step):
        rows = np.arange(i, min(i + step, C))  # pairs (c, c') with c' > c only
        dist = sq[rows, None] + sq[None, i:] - 2.0 * (centred[rows] @ centred[i:].T)
        mask = np.arange(i, C)[None, :] > rows[:, None]
        dist = dist[mask]
        if np.any(dist <= 0):
            return None
        vsum = (variances[rows, None] + variances[None, i:])[mask]
        total += float(np.sum(vsum / (2.0 * dist)))
        count += dist.size
    return total / count if count else None


def self_duality(weights: np.ndarray, centred: np.ndarray) -> float | None:
    """``|| W/||W||_F - M~/||M~||_F ||_F^2`` (squared, as in Papyan et al.; in [0, 4])."""
    weights, centred = _unit(weights), _unit(centred)
    nw, nm = _fro(weights), _fro(centred)
    if nw == 0 or nm == 0:
        return None
    return float(np.sum(np.square(weights / nw - centred / nm)))


def _row_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = _unit(a), _unit(b)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("ij,ij->i", a, b) / (na * nb)


# --------------------------------------------------------------------------------------
# everything at once
# --------------------------------------------------------------------------------------
class _Collector:
    """Metric values plus warnings grouped by reason (one line per reason)."""

    def __init__(self) -> None:
        self.values: dict[str, object] = dict.fromkeys(METRIC_KEYS)
        self._reasons: dict[str, list[str]] = {}
        self.notes: list[str] = []

    def set(self, key: str, value, reason: str | None = None) -> None:
        if value is not None and isinstance(value, float) and not np.isfinite(value):
            value, reason = None, reason or "not finite"
        self.values[key] = value
        if value is None:
            self._reasons.setdefault(reason or "undefined", []).append(key)

    def warnings(self) -> list[str]:
        out = list(self.notes)
        for reason, keys in self._reasons.items():
            out.append(f"{', '.join(keys)}: null ({reason})")
        return out


def compute_metrics(
    first: FirstPass,
    second: SecondPass,
    geom: Geometry,
    *,
    per_class: bool = False,
    classifier_reason: str | None = None,
) -> tuple[dict[str, object], list[dict[str, object]] | None, list[str]]:
    """Every metric of spec/metrics.md from the two passes' statistics.

    The class-level metrics (NC1, NC2, NC3, NCC) use the present classes only
    (``geom.present``: at least one sample, or ``min_class_count``) and their rows of W; the
    classifier's decisions (NC4, accuracy) and the SQI outputs use every row of W. With
    ``classifier_reason`` (no usable classifier, e.g. string labels without a class order)
    every W-dependent metric is null with that reason.

    Returns
    -------
    metrics : dict
        One value per key of :data:`METRIC_KEYS` (None where undefined).
    per_class : list of dict or None
        Per-class values (:data:`PER_CLASS_KEYS`) of the present classes, in code order,
        when ``per_class`` is set.
    warnings : list of str
        One line per reason a value is null, plus notes (e.g. C > d + 1).

    Notes
    -----
    With ``v_k, s_k^2`` the kept eigenpairs of ``M~^T M~`` and ``q_k = sum_i (v_k . (h_i -
    mu_{y_i}))^2``: ``nc1 = Tr(Sigma_W Sigma_B^+) / C = sum_k q_k / (N s_k^2)``, because
    ``Sigma_B = M~^T M~ / C`` and ``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(...)^T``.
    ``Tr Sigma_W = sum_c class_sq_c / N`` and ``Tr Sigma_B = ||M~||_F^2 / C``. The SQI spread
    uses ``||F - T||_F^2 = M2(true outputs) + M2(wrong outputs)``, exact from the merged
    moments. See spec/metrics.md for every definition.
    """
    out = _Collector()
    C_total, d = geom.means.shape
    counts = first.counts
    present = counts > 0 if geom.present is None else geom.present
    rows = np.flatnonzero(present)  # the present classes' codes (rows of W)
    C = int(rows.size)
    N = int(counts[present].sum())  # samples of the present classes: those pass 2 scored
    n_present = counts[present]
    absent_note = _absent_note(counts, present, geom.min_count, geom.weights is not None)
    if absent_note:
        out.notes.append(absent_note)
    class_reason = None
    if C < 2:
        class_reason = (
            f"fewer than two classes with samples (found {C})"
            if geom.min_count <= 1
            else f"fewer than two classes with at least {geom.min_count} samples (found {C})"
        )
    if C > d + 1:
        out.notes.append(
            f"C = {C} classes in d = {d} dimensions: C > d + 1 cannot form a simplex ETF; "
            "NC2/NC3 values are still computed"
        )
    M = geom.centred[rows]
    W = None if geom.weights is None else geom.weights[rows]
    # pass-2 sums of squares are in units of geom.scale**2: NC1 pairs them with M / scale
    Ms = M if geom.scale == 1.0 else M / geom.scale
    variances = second.class_sq[rows] / np.maximum(n_present, 1)
    singletons = rows[n_present == 1]
    if N == 0:
        reason = f"no class has at least {geom.min_count} samples"
        for key in METRIC_KEYS:
            out.set(key, None, reason)
        return out.values, [] if per_class else None, out.warnings()

    # NC1 -------------------------------------------------------------------------------
    if class_reason:
        for key in ("nc1", "nc1_trace_ratio", "nc1_cdnv"):
            out.set(key, None, class_reason)
    elif np.all(n_present < 2):
        reason = "every class has one sample: within-class scatter is undefined"
        for key in ("nc1", "nc1_trace_ratio", "nc1_cdnv"):
            out.set(key, None, reason)
    else:
        if singletons.size:
            out.notes.append(
                f"{singletons.size} class(es) have one sample ({singletons.tolist()[:10]}): "
                "they add no within-class scatter to NC1"
            )
        tr_b = float(np.sum(Ms * Ms)) / C
        tr_w = float(second.class_sq[rows].sum()) / N
        if geom.eigvals.size == 0 or tr_b == 0:
            out.set("nc1", None, "all class means coincide (Sigma_B = 0)")
            out.set("nc1_trace_ratio", None, "all class means coincide (Sigma_B = 0)")
        else:
            out.set("nc1", float(np.sum(second.proj_sq / geom.eigvals)) / N)
            out.set("nc1_trace_ratio", tr_w / tr_b)
        out.set("nc1_cdnv", cdnv(variances, Ms), "two class means coincide")

    # NC2 -------------------------------------------------------------------------------
    def nc2(suffix: str, vectors: np.ndarray | None, what: str, reason: str | None) -> None:
        keys = [f"nc2_{m}_{suffix}" for m in ("equinorm", "equiangular", "maxangle")]
        if vectors is None or reason is not None:
            for key in (*keys, f"etf_error_{suffix}"):
                out.set(key, None, reason)
            return
        out.set(keys[0], equinorm(vectors), f"{what} are all zero")
        eq, ma = pairwise_cosine_stats(vectors)
        out.set(keys[1], eq, f"one of the {what} is zero")
        out.set(keys[2], ma, f"one of the {what} is zero")
        out.set(f"etf_error_{suffix}", etf_error(vectors, vectors), f"{what} are all zero")

    no_w = classifier_reason or "no classifier weights (array 'weights' or an alias)"
    nc2("means", M, "centred class means", class_reason)
    nc2("weights", W, "classifier rows", no_w if W is None else class_reason)
    if W is None or class_reason:
        out.set("etf_error_weights_centered", None, no_w if W is None else class_reason)
    else:
        wc = W - W.mean(axis=0)
        out.set("etf_error_weights_centered", etf_error(wc, wc), "row-centred W is zero")

    # NC3 -------------------------------------------------------------------------------
    nc3 = ("nc3_self_duality", "nc3_duality_etf_error", "nc3_duality_cos")
    if W is None:
        for key in nc3:
            out.set(key, None, no_w)
    elif class_reason:
        for key in nc3:
            out.set(key, None, class_reason)
    else:
        out.set("nc3_self_duality", self_duality(W, M), "W or the centred means are zero")
        out.set("nc3_duality_etf_error", etf_error(W, M), "W M~^T is zero")
        cos = _row_cos(W, M)
        out.set(
            "nc3_duality_cos",
            float(cos.mean()) if np.all(np.isfinite(cos)) else None,
            "a classifier row or centred mean is zero",
        )

    # NC4 -------------------------------------------------------------------------------
    # NCC over the centres that exist (present classes, or another split's); the classifier
    # over every row of W: that is what the network does
    ncc_ok = bool(geom.ncc_valid.any())
    ncc_reason = "no NCC centre is defined"
    if second.has_decisions:
        out.set("accuracy_classifier", float(second.clf_correct.sum()) / N)
        out.set(
            "nc4_ncc_mismatch", 1.0 - float(second.agree.sum()) / N if ncc_ok else None, ncc_reason
        )
    else:
        reason = classifier_reason or "no classifier weights or outputs in the dump"
        out.set("accuracy_classifier", None, reason)
        out.set("nc4_ncc_mismatch", None, reason)
    out.set("accuracy_ncc", float(second.ncc_correct.sum()) / N if ncc_ok else None, ncc_reason)

    # SQI: over all C_total outputs ----------------------------------------------------
    sqi = ("sqi_eps1", "sqi_eps2", "sqi_delta", "sqi_ratio", "sqi_spread", "mse", "interpolates")
    if not second.has_outputs:
        no_out = classifier_reason or "no outputs and no classifier weights in the dump"
        for key in sqi:
            out.set(key, None, no_out)
    else:
        K = C_total
        eps1 = 1.0 - second.true_out.mean
        eps2 = second.wrong_out.mean if second.wrong_out.count else 0.0
        out.set("sqi_eps1", eps1)
        out.set("sqi_eps2", eps2)
        out.set("sqi_delta", eps1 - (K - 1) * eps2)
        out.set("sqi_ratio", eps1 / ((K - 1) * eps2) if eps2 != 0 else None, "eps2 = 0")
        # hypot: no Python float overflow for outputs near the float64 limit
        t_norm = math.sqrt(N) * math.hypot(1.0 - eps1, math.sqrt(K - 1) * eps2)
        spread = math.hypot(math.sqrt(second.true_out.m2), math.sqrt(second.wrong_out.m2))
        if 0 < second.out_abs_max < 2.0**-450:  # their squared deviations underflowed
            out.set("sqi_spread", None, "outputs below 1e-135: their squares underflow float64")
        else:
            out.set(
                "sqi_spread",
                float(spread / t_norm) if t_norm > 0 else None,
                "the class-constant pattern T is zero",
            )
        out.set("mse", second.sq_err / (N * K))
        out.set("interpolates", bool(second.max_abs_err < 1e-3))

    # generalized metrics (metrics_general: GNC2, UNC3, bias, OF, ETF floor, SELI) ------
    from .metrics_general import general_metrics

    # full per-row arrays with the present mask: the same classes as the metrics above
    for key, (value, reason) in general_metrics(
        geom.means,
        geom.centred,
        geom.global_mean,
        geom.weights,
        geom.bias,
        counts,
        second.class_sq / np.maximum(counts, 1),
        present=present,
        scale=geom.scale,
        no_weights=no_w,
    ).items():
        out.set(key, value, reason)

    table = None
    if per_class:
        mean_norm = _row_norms(M)
        w_norm = _row_norms(W) if W is not None else None
        variances = geom.squared(variances)
        dcos = _row_cos(W, M) if W is not None else None
        table = []
        for j, c in enumerate(rows.tolist()):
            n = int(counts[c])
            row = {
                "n": n,
                "var": float(variances[j]) if np.isfinite(variances[j]) else None,
                "mean_norm": float(mean_norm[j]),
                "weight_norm": float(w_norm[j]) if w_norm is not None else None,
                "duality_cos": (
                    float(dcos[j]) if dcos is not None and np.isfinite(dcos[j]) else None
                ),
                "ncc_agreement": (
                    float(second.agree[c]) / n if second.has_decisions and ncc_ok else None
                ),
                "accuracy_classifier": (
                    float(second.clf_correct[c]) / n if second.has_decisions else None
                ),
            }
            table.append(row)
    return out.values, table, out.warnings()


def _absent_note(counts: np.ndarray, present: np.ndarray, min_count: int, has_w: bool) -> str:
    """One line on the classes left out of the class-level statistics ('' when none)."""
    C_total = counts.size
    k = int(C_total - present.sum())
    if k == 0:
        return ""
    empty = np.flatnonzero(counts == 0)
    small = np.flatnonzero((counts > 0) & ~present)
    parts = []
    if empty.size:
        shown = ", ".join(map(str, empty[:8].tolist())) + (", ..." if empty.size > 8 else "")
        parts.append(f"{empty.size} with no samples: {shown}")
    if small.size:
        parts.append(
            f"{small.size} with fewer than {min_count} samples "
            f"({int(counts[small].sum())} samples left out)"
        )
    decisions = f", the classifier's decisions all {C_total} rows of W" if has_w else ""
    return (
        f"{k} of {C_total} classes absent ({'; '.join(parts)}); class-level metrics use the "
        f"{C_total - k} present classes{decisions}"
    )
