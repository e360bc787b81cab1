"""Every metric of spec/metrics.md from the two passes' statistics (numpy; the class-pair sweep
also on an accelerator's device)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np

from ..stats.passes import FirstPass, Geometry, SecondPass, pow2_scale
from . import pairs_xp
from .directional import set_directional
from .general import general_metrics
from .kernels import equinorm, etf_error, self_duality
from .linalg import ClassProducts, row_cos, row_norms
from .nulls import MetricValues
from .pairs import ClassPairs, UnitPairs, cdnv_values, class_pairs, cosine_values
from .registry import REGISTRY

__all__ = ["METRIC_KEYS", "PER_CLASS_KEYS", "MetricValues", "compute_metrics"]

#: Every metric key of a classification snapshot, in report order (from the registry).
METRIC_KEYS: tuple[str, ...] = tuple(m.key for m in REGISTRY)
PER_CLASS_KEYS: tuple[str, ...] = (
    "n",
    "var",
    "mean_norm",
    "weight_norm",
    "duality_cos",
    "ncc_agreement",
    "accuracy_classifier",
)


@dataclass
class _Classes:
    """The present classes of one snapshot and their class-level arrays."""

    present: np.ndarray  # (C_total,) bool: which classes take part
    rows: np.ndarray  # codes of the present classes (rows of W)
    C: int  # present classes
    C_total: int  # rows of W (every class code)
    d: int
    N: int  # samples of the present classes: those pass 2 scored
    n: np.ndarray  # their counts
    class_sq: np.ndarray  # their pass-2 within-class sums of squares
    M: np.ndarray  # centred means mu_c - mu_G
    W: np.ndarray | None  # classifier rows
    Ms: np.ndarray  # M in units of geom.scale (the units of the pass-2 sums)
    variances: np.ndarray  # v_c in units of geom.scale**2
    singles: bool  # every present class has one sample (no within-class scatter)
    class_reason: str | None  # why the class-level metrics are undefined (C < 2)
    no_w: str  # why the W-dependent metrics are undefined when W is None


def compute_metrics(
    first: FirstPass,
    second: SecondPass,
    geom: Geometry,
    *,
    per_class: bool = False,
    classifier_reason: str | None = None,
    pair_map=map,
    class_device=None,
) -> MetricValues:
    """Every metric of spec/metrics.md from the two passes' statistics.

    The class-level metrics (NC1, NC2, NC3, NCC) use the present classes only
    (``geom.present``: at least one sample, or ``min_class_count``) and their rows of W; the
    classifier's decisions (NC4, accuracy) and the SQI outputs use every row of W. With
    ``classifier_reason`` (no usable classifier, e.g. string labels without a class order)
    every W-dependent metric is null with that reason. The class-pair sweep runs through
    ``pair_map`` (a ``map``-like callable over its tiles), or, with ``class_device = (xp,
    device)`` (an accelerator's), there (:mod:`ncinspect.metrics.pairs_xp`), as do the d x d
    Grams of the large-C ETF, OF and SELI errors (:class:`ClassProducts`); the values do not
    depend on either beyond the order of float64 roundings.

    Returns
    -------
    MetricValues
        ``values``: one value per key of :data:`METRIC_KEYS` (None where undefined);
        ``null_reasons``: key -> why for every None; ``notes`` (e.g. C > d + 1);
        ``per_class``: the per-class values (:data:`PER_CLASS_KEYS`) of the present
        classes, in code order, when ``per_class`` is set; ``warnings``: the notes, then
        one line per reason a value is null.

    Notes
    -----
    With ``v_k, s_k^2`` the kept eigenpairs of ``M~^T M~`` and ``q_k = sum_i (v_k . (h_i -
    mu_{y_i}))^2``: ``nc1 = Tr(Sigma_W Sigma_B^+) / C = sum_k q_k / (N s_k^2)``, because
    ``Sigma_B = M~^T M~ / C`` and ``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(...)^T``.
    ``Tr Sigma_W = sum_c class_sq_c / N`` and ``Tr Sigma_B = ||M~||_F^2 / C``. The SQI spread
    uses ``||F - T||_F^2 = M2(true outputs) + M2(wrong outputs)``, exact from the merged
    moments. See spec/metrics.md for every definition.
    """
    out = MetricValues.of_keys(METRIC_KEYS)
    memo = ClassProducts(class_device)  # products several metrics read, formed once
    # the present classes' codes, counts and sums of squares, read by what follows
    counts = first.counts
    present = counts > 0 if geom.present is None else geom.present
    rows = present.nonzero()[0]  # np.flatnonzero of the 1-D mask, without its dispatch
    n = memo.take(counts, present)
    N = int(np.add.reduce(n))
    # (every class present: the array itself, read only here, not an index's copy)
    class_sq = second.class_sq if rows.size == counts.size else second.class_sq[rows]
    variances = class_sq / np.maximum(n, 1)
    centred = _centred_beyond_rounding(geom, out, rows, n, N, variances)
    args = (present, rows, n, N, class_sq, variances)
    cl = _classes(geom, classifier_reason, memo, centred, *args)
    _notes(out, first, geom, cl)
    if cl.N == 0:
        out.set_all(METRIC_KEYS, None, f"no class has at least {geom.min_count} samples")
        out.per_class = [] if per_class else None
        return out
    # every statistic over pairs of classes (NC2, GNC2, CDNV, minority) from one sweep
    with_cdnv = cl.C >= 2 and not cl.singles
    pairs = class_pairs(
        cl.M,
        cl.W,
        cl.n,
        cdnv=(cl.variances, cl.Ms) if with_cdnv else None,
        map=pair_map,
        sweep=None if class_device is None else partial(pairs_xp.pair_sweep_xp, *class_device),
        memo=memo,
    )
    _nc1(out, second, geom, cl, pairs)
    _nc1_directional(out, second, geom, cl)
    _nc2(out, cl, "means", cl.M, pairs.means_ok, pairs.means, cl.class_reason, memo)
    no_w = cl.no_w if cl.W is None else cl.class_reason
    _nc2(out, cl, "weights", cl.W, pairs.weights_ok, pairs.weights, no_w, memo)
    _nc3(out, cl, memo)
    ncc_ok = bool(geom.ncc_valid.any())
    _nc4(out, second, cl, ncc_ok, classifier_reason)
    _sqi(out, second, cl, classifier_reason)
    # generalized metrics (GNC2, UNC3, bias, OF, ETF floor, SELI): full per-row arrays with
    # the present mask, the same classes as the metrics above (the variances are read only
    # for a sweep of their own: the pairs are given)
    general = general_metrics(
        geom.means,
        centred,
        geom.global_mean,
        geom.weights,
        geom.bias,
        counts,
        None,
        present=cl.present,
        scale=geom.scale,
        no_weights=cl.no_w,
        pairs=pairs,
        memo=memo,
    )
    out.set_items(general)
    if per_class:
        out.per_class, lost = _per_class(first, second, geom, cl, ncc_ok)
        if lost:
            out.notes.append(
                f"per-class var: null for {lost} class(es) (within-class variances "
                "below 1e-308 underflow float64: features of magnitude ~1e-154 or less; "
                "the scale-free metrics are computed)"
            )
    return out


_U64 = 2.0**-53  #: the unit round-off of float64


def _centred_beyond_rounding(
    geom: Geometry,
    out: MetricValues,
    rows: np.ndarray,
    n: np.ndarray,
    N: int,
    variances: np.ndarray,
) -> np.ndarray:
    """``geom.centred`` (rows ``mu_c - mu_G``) with every row that lies within the rounding
    bound of the sums that made it set to exactly zero: a class whose mean is the global
    mean in exact arithmetic (every class holding the same rows, a class of rows a and -a
    at mu_G) is left a vector of ~1e-16 by the float sums, whose direction is rounding noise
    (nc1 5e32, cosines of a noise vector); as zero, what depends on it is null with its
    reason, as for a mean that is 0.0 in float.

    The bound, in the units of ``geom.scale``: a class sum of n_c rows taken in any order
    errs by at most ``(n_c + 1) u sum_i |h_i|`` per coordinate, and ``sum_i |h_i| / n_c`` is
    at most the root mean square ``sqrt(v_c + |mu_c|^2)`` in norm (v_c from pass 2); mu_G
    adds the larger of its two forms' bounds (the mean of the C means: the mean of those
    bounds plus ``(C + 1) u`` of the mean |mu_c|; the sample mean: the sum of N rows), the
    subtraction ``u (|mu_c| + |mu_G|)``; all four times over (the bounds' own roundings).
    One screen against the largest of these bounds first: the rows of real data lie far
    above it, and a snapshot pays a few small products for it. ``rows``: the present
    classes, ``n`` their counts (``N`` in all), ``variances`` their v_c.
    """
    centred = geom.centred
    if rows.size == 0:
        return centred
    inv = 1.0 / geom.scale
    # every class present (the common case): the class-level arrays are their rows, read
    # in place (an index would copy the same values)
    every = rows.size == centred.shape[0]
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        cs = centred if every else centred[rows]
        cs = cs if inv == 1.0 else cs * inv
        size2 = np.add.reduce(cs * cs, axis=1)
        mus = geom.means if every else geom.means[rows]
        mus = mus if inv == 1.0 else mus * inv
        mu2 = np.add.reduce(mus * mus, axis=1)
        rms2 = variances + mu2
        g = geom.global_mean if inv == 1.0 else geom.global_mean * inv
        g_norm = math.sqrt(float(np.dot(g, g)))
        # |mu_c| <= rms_c (rms_c^2 = v_c + |mu_c|^2, v_c >= 0, and the rounded sum is at
        # least |mu_c|^2): twice the largest rms_c bounds the largest rms_c plus the
        # largest |mu_c|, so one maximum serves (a larger screen only sends more snapshots
        # to the exact test below)
        top = 2.0 * math.sqrt(float(np.maximum.reduce(rms2))) + g_norm
        total = float(N)
        screen = 4.0 * (2.0 * total + rows.size + 6.0) * _U64 * top
        if not (math.isfinite(screen) and math.sqrt(np.minimum.reduce(size2)) <= screen):
            return centred  # (NaN and an overflowed bound included: nothing is snapped)
        # the rows near the screen: each against its own bound
        nf = n.astype(np.float64)
        rms, mu = np.sqrt(rms2), np.sqrt(mu2)
        own = (nf + 1.0) * _U64 * rms
        g_err = max(
            float(own.mean()) + (rows.size + 1.0) * _U64 * float(mu.mean()),
            (total + 1.0) * _U64 * math.sqrt(float(np.dot(nf, rms2)) / total),
        )
        bound = 4.0 * (own + g_err + _U64 * (mu + g_norm))
        noise = (size2 > 0) & (np.sqrt(size2) <= bound) & np.isfinite(bound)
    if not noise.any():
        return centred
    centred = centred.copy()
    centred[rows[noise]] = 0.0
    shown = ", ".join(str(int(c)) for c in rows[noise][:10])
    more = f" and {int(noise.sum()) - 10} more" if noise.sum() > 10 else ""
    out.notes.append(
        f"class(es) {shown}{more}: mean equal to the global mean up to the rounding of the "
        "class sums (|mu_c - mu_G| within their error bound); taken as mu_G, so what depends "
        "on the direction of mu_c - mu_G is null"
    )
    return centred


def _classes(
    geom: Geometry,
    classifier_reason: str | None,
    memo: ClassProducts,
    centred: np.ndarray,
    present: np.ndarray,
    rows: np.ndarray,
    n_present: np.ndarray,
    N: int,
    class_sq: np.ndarray,
    variances: np.ndarray,
) -> _Classes:
    C = int(rows.size)
    C_total, d = geom.means.shape
    class_reason = None
    if C < 2:
        class_reason = (
            f"fewer than two classes with samples (found {C})"
            if geom.min_count <= 1
            else f"fewer than two classes with at least {geom.min_count} samples (found {C})"
        )
    M = memo.take(centred, present)
    return _Classes(
        present=present,
        rows=rows,
        C=C,
        C_total=C_total,
        d=d,
        N=N,
        n=n_present,
        class_sq=class_sq,
        M=M,
        W=memo.take(geom.weights, present),
        Ms=M if geom.scale == 1.0 else M / geom.scale,
        variances=variances,
        # N <= C when every count is below 2: the test of the counts only then
        singles=N <= C and bool((n_present < 2).all()),
        class_reason=class_reason,
        no_w=classifier_reason or "no classifier weights (array 'weights' or an alias)",
    )


def _notes(out: MetricValues, first: FirstPass, geom: Geometry, cl: _Classes) -> None:
    has_w = geom.weights is not None
    absent_note = _absent_note(first.counts, cl.present, geom.min_count, has_w, cl.C)
    if absent_note:
        out.notes.append(absent_note)
    if cl.C > cl.d + 1:
        out.notes.append(
            f"C = {cl.C} classes in d = {cl.d} dimensions: C > d + 1 cannot form a simplex "
            "ETF; NC2/NC3 values are still computed"
        )


def _nc1(
    out: MetricValues, second: SecondPass, geom: Geometry, cl: _Classes, pairs: ClassPairs
) -> None:
    keys = ("nc1", "nc1_trace_ratio", "nc1_cdnv")
    if cl.class_reason:
        out.set_all(keys, None, cl.class_reason)
        return
    if cl.singles:
        out.set_all(keys, None, "every class has one sample: within-class scatter is undefined")
        return
    singletons = cl.rows[cl.n == 1]
    if singletons.size:
        out.notes.append(
            f"{singletons.size} class(es) have one sample ({singletons.tolist()[:10]}): "
            "they add no within-class scatter to NC1"
        )
    # np.add.reduce: np.sum's pairwise sum over every entry, without its dispatch
    tr_b = float(np.add.reduce(cl.Ms * cl.Ms, axis=None)) / cl.C
    tr_w = float(np.add.reduce(cl.class_sq, axis=None)) / cl.N
    if geom.eigvals.size == 0 or tr_b == 0:
        out.set("nc1", None, "all class means coincide (Sigma_B = 0)")
        out.set("nc1_trace_ratio", None, "all class means coincide (Sigma_B = 0)")
    else:
        out.set("nc1", float(np.add.reduce(second.proj_sq / geom.eigvals, axis=None)) / cl.N)
        out.set("nc1_trace_ratio", tr_w / tr_b)
    cdnv = cdnv_values(pairs.cdnv, pairs.cdnv_scale)[0]
    out.set("nc1_cdnv", cdnv, "two class means coincide")


def _nc1_directional(out: MetricValues, second: SecondPass, geom: Geometry, cl: _Classes) -> None:
    args = (second.pair_sq, geom.pair_reason, cl.rows, cl.n, cl.Ms, cl.class_reason)
    set_directional(out, *args)


#: NC2's keys of the means and of the weights, and their ETF error's
_NC2_KEYS = {
    s: (*(f"nc2_{m}_{s}" for m in ("equinorm", "equiangular", "maxangle")), f"etf_error_{s}")
    for s in ("means", "weights")
}


def _nc2(
    out: MetricValues,
    cl: _Classes,
    suffix: str,
    vectors: np.ndarray | None,
    ok: bool,
    sums: UnitPairs | None,
    reason: str | None,
    memo: ClassProducts,
) -> None:
    what = "centred class means" if suffix == "means" else "classifier rows"
    keys = _NC2_KEYS[suffix]
    if vectors is None or reason is not None:
        out.set_all(keys, None, reason)
    else:
        out.set(keys[0], equinorm(vectors, memo), f"{what} are all zero")
        eq, ma = cosine_values(sums) if ok else (None, None)
        out.set(keys[1], eq, f"one of the {what} is zero")
        out.set(keys[2], ma, f"one of the {what} is zero")
        out.set(keys[3], etf_error(vectors, vectors, memo), f"{what} are all zero")
    if suffix != "weights":
        return
    if cl.W is None or cl.class_reason:
        out.set("etf_error_weights_centered", None, cl.no_w if cl.W is None else cl.class_reason)
    else:
        # W.mean(axis=0): the same sum and division, without its dispatch
        wc = cl.W - np.add.reduce(cl.W, axis=0) / cl.W.shape[0]
        wc = _rows_beyond_rounding(wc, cl.W)
        out.set(
            "etf_error_weights_centered",
            etf_error(wc, wc, memo),
            "row-centred W is zero (up to the rounding of the mean row)",
        )


def _rows_beyond_rounding(wc: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``wc = W - mean_row(W)`` with the rows that lie within the rounding bound of that
    difference set to zero (equal rows of W leave ~1e-17 after the mean row rounds: its
    direction is noise). Per coordinate the mean row errs by at most ``(C + 1) u`` times the
    mean ``|W_rj|``, the subtraction by ``u |W_rj|``; screened first against the largest."""
    C, d = W.shape
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        size2 = np.add.reduce(wc * wc, axis=1)
        top = float(np.maximum.reduce(np.abs(W), axis=None))  # np.abs(W).max()
        screen = 4.0 * (C + 2.0) * _U64 * top * math.sqrt(d)
        if not (math.isfinite(screen) and math.sqrt(np.minimum.reduce(size2)) <= screen):
            return wc  # (an overflowed square is no noise: nothing is snapped)
        s = pow2_scale(W)
        a = np.abs(W / s)
        err = (C + 1.0) * _U64 * np.add.reduce(a, axis=0) / C + _U64 * a
        bound = 4.0 * np.sqrt(np.add.reduce(err * err, axis=1)) * s
        noise = (size2 > 0) & (np.sqrt(size2) <= bound) & np.isfinite(bound)
    if not noise.any():
        return wc
    wc = wc.copy()
    wc[noise] = 0.0
    return wc


def _nc3(out: MetricValues, cl: _Classes, memo: ClassProducts) -> None:
    keys = ("nc3_self_duality", "nc3_duality_etf_error", "nc3_duality_cos")
    W, M = cl.W, cl.M
    if W is None:
        out.set_all(keys, None, cl.no_w)
    elif cl.class_reason:
        out.set_all(keys, None, cl.class_reason)
    else:
        out.set("nc3_self_duality", self_duality(W, M, memo), "W or the centred means are zero")
        out.set("nc3_duality_etf_error", etf_error(W, M, memo), "W M~^T is zero")
        cos = row_cos(W, M, memo)
        # cos.mean(): the same sum and division, without its dispatch
        out.set(
            "nc3_duality_cos",
            float(np.add.reduce(cos) / cos.size) if np.isfinite(cos).all() else None,
            "a classifier row or centred mean is zero",
        )


def _nc4(
    out: MetricValues,
    second: SecondPass,
    cl: _Classes,
    ncc_ok: bool,
    classifier_reason: str | None,
) -> None:
    # NCC over the centres that exist (present classes, or another split's); the classifier
    # over every row of W: that is what the network does
    N = cl.N
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


def _sqi(
    out: MetricValues, second: SecondPass, cl: _Classes, classifier_reason: str | None
) -> None:
    """The SQI section over all C_total outputs."""
    if not second.has_outputs:
        no_out = classifier_reason or "no outputs and no classifier weights in the dump"
        keys = ("sqi_eps1", "sqi_eps2", "sqi_delta", "sqi_ratio", "sqi_spread", "mse")
        out.set_all((*keys, "interpolates"), None, no_out)
        return
    N, K = cl.N, cl.C_total
    eps1 = 1.0 - second.true_out.mean
    eps2 = second.wrong_out.mean if second.wrong_out.count else 0.0
    out.set("sqi_eps1", eps1)
    out.set("sqi_eps2", eps2)
    out.set("sqi_delta", eps1 - (K - 1) * eps2)
    out.set("sqi_ratio", eps1 / ((K - 1) * eps2) if eps2 != 0 else None, "eps2 = 0")
    # hypot: no Python float overflow for outputs near the float64 limit. T's diagonal,
    # 1 - eps1, is the mean true-class output m: for |m| below 2^-10 it is taken as m, as
    # 1 - eps1 loses m's digits (0 for |m| < 2^-53: sqi_spread 12.2 for 0.74 at outputs of
    # 1e-30); above, 1 - eps1 holds m to 2^-43 relative and keeps the released bits
    m = second.true_out.mean
    t_diag = m if abs(m) < 2.0**-10 else 1.0 - eps1
    t_norm = math.sqrt(N) * math.hypot(t_diag, math.sqrt(K - 1) * eps2)
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


def _per_class(
    first: FirstPass, second: SecondPass, geom: Geometry, cl: _Classes, ncc_ok: bool
) -> tuple[list[dict[str, object]], int]:
    """The per-class rows, and how many classes' ``var`` underflowed float64 (null)."""
    counts = first.counts
    W = cl.W
    mean_norm = row_norms(cl.M)
    w_norm = row_norms(W) if W is not None else None
    scaled = np.asarray(cl.variances, dtype=np.float64)
    variances = geom.squared(scaled)
    lost = (variances == 0) & (scaled > 0)  # underflowed in the features' units
    dcos = row_cos(W, cl.M) if W is not None else None
    table = []
    for j, c in enumerate(cl.rows.tolist()):
        n = int(counts[c])
        row = {
            "n": n,
            "var": float(variances[j]) if np.isfinite(variances[j]) and not lost[j] else None,
            "mean_norm": float(mean_norm[j]),
            "weight_norm": float(w_norm[j]) if w_norm is not None else None,
            "duality_cos": (float(dcos[j]) if dcos is not None and np.isfinite(dcos[j]) else None),
            "ncc_agreement": (
                float(second.agree[c]) / n if second.has_decisions and ncc_ok else None
            ),
            "accuracy_classifier": (
                float(second.clf_correct[c]) / n if second.has_decisions else None
            ),
        }
        table.append(row)
    return table, int(lost.sum())


def _absent_note(
    counts: np.ndarray, present: np.ndarray, min_count: int, has_w: bool, C: int
) -> str:
    """One line on the classes left out of the class-level statistics ('' when none);
    ``C``: how many are present."""
    C_total = counts.size
    k = C_total - C
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
