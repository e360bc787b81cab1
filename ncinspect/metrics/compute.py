"""Every metric of spec/metrics.md from the two passes' statistics (numpy only)."""

from __future__ import annotations

import math

import numpy as np

from ..stats import FirstPass, Geometry, SecondPass
from .general import general_metrics
from .kernels import cdnv, equinorm, etf_error, pairwise_cosine_stats, self_duality
from .linalg import row_cos, row_norms
from .registry import REGISTRY

__all__ = ["METRIC_INFO", "METRIC_KEYS", "PER_CLASS_KEYS", "compute_metrics"]

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
        cos = row_cos(W, M)
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

    # generalized metrics (GNC2, UNC3, bias, OF, ETF floor, SELI) ----------------------
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
        mean_norm = row_norms(M)
        w_norm = row_norms(W) if W is not None else None
        variances = geom.squared(variances)
        dcos = row_cos(W, M) if W is not None else None
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
