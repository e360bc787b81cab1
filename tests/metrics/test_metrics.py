"""Known answers, invariances and a cross-check against a direct small-matrix computation."""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect
from ncinspect import metrics as M
from ncinspect.analysis.api import analyze
from ncinspect.metrics import kernels as K
from ncinspect.metrics import linalg as L
from ncinspect.metrics import pairs
from ncinspect.metrics.registry import spec

from ..helpers import make_data, simplex_etf
from ..reference import reference_metrics

FLOAT_KEYS = [k for k in M.METRIC_KEYS if spec(k).kind == "float"]


def close(a, b, rtol, atol=1e-12, *, both_none=False):
    if both_none and a is None and b is None:
        return
    assert a is not None and b is not None, (a, b)
    assert abs(a - b) <= atol + rtol * abs(b), (a, b)


# ---------------------------------------------------------------------------------------
# analytic known answers
# ---------------------------------------------------------------------------------------
def test_nc1_matches_closed_form_for_etf_plus_isotropic_noise():
    # class means at radius r on a simplex ETF, noise sigma per dimension:
    # nc1 -> sigma^2 (C-1)^2 / (C r^2) as n grows
    C, d, r, sigma = 6, 12, 3.0, 0.4
    h, y, m = make_data(C=C, d=d, n=20000, radius=r, sigma=sigma, seed=3)
    res = analyze(h, y)
    expected = sigma**2 * (C - 1) ** 2 / (C * r**2)
    close(res.metrics["nc1"], expected, rtol=0.02)
    # trace ratio: Tr(Sigma_W)/Tr(Sigma_B) = d sigma^2 / r^2
    close(res.metrics["nc1_trace_ratio"], d * sigma**2 / r**2, rtol=0.02)


def test_exact_etf_gives_zero_errors_and_full_agreement():
    C, d = 7, 10
    rng = np.random.default_rng(0)
    m = simplex_etf(C, d, 2.5, rng)
    y = np.repeat(np.arange(C), 3)
    h = m[y] + 5.0  # exact collapse onto an ETF, shifted by a common offset
    res = analyze(h, y, weights=m, bias=-(m @ np.full(d, 5.0)))
    for key in (
        "nc2_equinorm_means",
        "nc2_equinorm_weights",
        "nc2_equiangular_means",
        "nc2_equiangular_weights",
        "nc2_maxangle_means",
        "nc2_maxangle_weights",
        "etf_error_means",
        "etf_error_weights",
        "etf_error_weights_centered",
        "nc3_self_duality",
        "nc3_duality_etf_error",
        "nc4_ncc_mismatch",
    ):
        assert abs(res.metrics[key]) < 1e-7, key
    assert res.metrics["nc1"] == pytest.approx(0.0, abs=1e-20)
    assert res.metrics["nc3_duality_cos"] == pytest.approx(1.0, abs=1e-12)
    assert res.metrics["accuracy_classifier"] == 1.0 and res.metrics["accuracy_ncc"] == 1.0


def test_sqi_exact_pattern():
    # outputs exactly 1-eps on the true class and eps/(C-1) elsewhere: delta 0, ratio 1, spread 0
    C, eps = 5, 0.2
    y = np.repeat(np.arange(C), 4)
    outputs = np.where(np.eye(C)[y] == 1, 1 - eps, eps / (C - 1))
    h, _, m = make_data(C=C, d=8, n=4)
    res = analyze(h, y, weights=m, outputs=outputs)
    assert res.metrics["sqi_eps1"] == pytest.approx(eps)
    assert res.metrics["sqi_eps2"] == pytest.approx(eps / (C - 1))
    assert res.metrics["sqi_delta"] == pytest.approx(0.0, abs=1e-15)
    assert res.metrics["sqi_ratio"] == pytest.approx(1.0)
    assert res.metrics["sqi_spread"] == pytest.approx(0.0, abs=1e-15)
    assert res.metrics["mse"] == pytest.approx((eps**2 + (C - 1) * (eps / (C - 1)) ** 2) / C)
    assert res.metrics["interpolates"] is False
    res = analyze(h, y, weights=m, outputs=np.eye(C)[y])
    assert res.metrics["interpolates"] is True and res.metrics["sqi_ratio"] is None
    assert any("sqi_ratio" in w and "eps2 = 0" in w for w in res.warnings)


def test_float32_offset_uses_rank_limited_pseudo_inverse():
    # float32 features with a common offset of 1e3: a default-tolerance pinv of Sigma_B keeps a
    # spurious C-th eigenvalue and explodes; the right answer matches the float64 computation
    h, y, _ = make_data(C=10, d=64, n=100, radius=1.0, sigma=0.1, seed=5)
    ref = reference_metrics(h, y)["nc1"]
    h32 = (h + 1e3).astype(np.float32)
    got = analyze(h32, y).metrics["nc1"]
    close(got, reference_metrics(h32.astype(np.float64), y)["nc1"], rtol=1e-6)
    close(got, ref, rtol=1e-2)  # float32 rounding of the data itself
    assert 0.01 < got < 0.1


def test_strong_collapse_measured_to_1e6():
    C, d, r, sigma = 4, 10, 1.0, 1e-5  # nc1 ~ 1e-10
    h, y, _ = make_data(C=C, d=d, n=500, radius=r, sigma=sigma, seed=7, offset=100.0)
    got = analyze(h, y).metrics["nc1"]
    ref = reference_metrics(h, y)["nc1"]
    assert 1e-12 < ref < 1e-8
    close(got, ref, rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------
# cross-check against the direct implementation on varied inputs
# ---------------------------------------------------------------------------------------
CASES = [
    dict(imbalanced=False, bias=False, dtype=np.float64, center="classes"),
    dict(imbalanced=True, bias=True, dtype=np.float64, center="classes"),
    dict(imbalanced=True, bias=False, dtype=np.float32, center="samples"),
    dict(imbalanced=False, bias=True, dtype=np.float32, center="samples"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
@pytest.mark.parametrize("outputs", [False, True])
def test_matches_direct_reference(case, outputs):
    rng = np.random.default_rng(11)
    C, d = 6, 9
    h, y, m = make_data(
        C=C, d=d, n=30, radius=2.0, sigma=0.9, seed=2, imbalanced=case["imbalanced"]
    )
    h = h.astype(case["dtype"])
    w = m + 0.3 * rng.standard_normal(m.shape)
    b = 0.2 * rng.standard_normal(C) if case["bias"] else None
    outs = rng.standard_normal((len(y), C)) * 0.1 + np.eye(C)[y] if outputs else None
    got = analyze(h, y, weights=w, bias=b, outputs=outs, center=case["center"]).metrics
    ref = reference_metrics(h, y, W=w, b=b, outputs=outs, center=case["center"])
    assert set(ref) == set(M.METRIC_KEYS)
    for key in FLOAT_KEYS:  # minority_collapse is undefined here (no two minority classes)
        close(got[key], ref[key], rtol=1e-6, atol=1e-12, both_none=key == "minority_collapse")
    assert got["interpolates"] == ref["interpolates"]
    assert got["etf_feasible"] == ref["etf_feasible"]


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 10_000])
def test_streaming_equals_single_chunk(chunk_rows):
    h, y, m = make_data(C=5, d=12, n=50, imbalanced=True, seed=4)
    w = m + 0.1
    one = analyze(h, y, weights=w, per_class=True, chunk_rows=len(y))
    many = analyze(h, y, weights=w, per_class=True, chunk_rows=chunk_rows)
    for key in FLOAT_KEYS:
        close(many.metrics[key], one.metrics[key], rtol=1e-10, both_none=True)
    for a, b in zip(many.per_class, one.per_class, strict=True):
        for k in M.PER_CLASS_KEYS:
            close(a[k], b[k], rtol=1e-10)


def test_large_c_closed_form_etf_error_matches_direct():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((300, 20)), rng.standard_normal((300, 20))
    direct = M.etf_error(a, b)
    old = K.DIRECT_MAX_C
    try:
        K.DIRECT_MAX_C = 10  # force the closed form (d < C branch)
        close(M.etf_error(a, b), direct, rtol=1e-8)
        a2, b2 = rng.standard_normal((30, 50)), rng.standard_normal((30, 50))  # d > C branch
        direct2 = float(np.linalg.norm((x := a2 @ b2.T) / np.linalg.norm(x) - M.etf_gram(30)))
        close(M.etf_error(a2, b2), direct2, rtol=1e-8)
    finally:
        K.DIRECT_MAX_C = old


def test_tiled_pairwise_matches_direct(monkeypatch):
    rng = np.random.default_rng(1)
    v = rng.standard_normal((40, 6))
    full = M.pairwise_cosine_stats(v)
    var = rng.random(40)
    cd = M.cdnv(var, v)
    monkeypatch.setattr(L, "TILE_ELEMS", 50)  # tiles of one row
    monkeypatch.setattr(pairs, "PAIR_BLOCK", 3)  # the pair sweep in 3 x 3 tiles
    tiled = M.pairwise_cosine_stats(v)
    close(tiled[0], full[0], rtol=1e-12)
    close(tiled[1], full[1], rtol=1e-12)
    close(M.cdnv(var, v), cd, rtol=1e-12)


# ---------------------------------------------------------------------------------------
# invariances, for every metric at once
# ---------------------------------------------------------------------------------------
def _base():
    rng = np.random.default_rng(21)
    h, y, m = make_data(C=5, d=8, n=25, sigma=1.0, seed=9, imbalanced=True)
    w = m + 0.4 * rng.standard_normal(m.shape)
    b = 0.3 * rng.standard_normal(5)
    return h, y, w, b


def _all_equal(got, ref, rtol=1e-9, skip=()):
    for key in M.METRIC_KEYS:
        if key in skip:
            continue
        if spec(key).kind == "bool":
            assert got[key] == ref[key]
        else:
            close(got[key], ref[key], rtol=rtol, atol=1e-12, both_none=True)


def test_invariant_to_sample_order():
    h, y, w, b = _base()
    perm = np.random.default_rng(0).permutation(len(y))
    _all_equal(
        analyze(h[perm], y[perm], weights=w, bias=b).metrics,
        analyze(h, y, weights=w, bias=b).metrics,
    )


def test_invariant_to_class_relabelling():
    h, y, w, b = _base()
    perm = np.array([3, 0, 4, 1, 2])  # class c becomes label perm[c]
    new_y = perm[y]
    order = np.argsort(perm)  # label k is row k of W: row perm[c] holds w[c]
    _all_equal(
        analyze(h, new_y, weights=w[order], bias=b[order]).metrics,
        analyze(h, y, weights=w, bias=b).metrics,
    )


def test_invariant_to_joint_rotation_and_scaling():
    h, y, w, b = _base()
    q = np.linalg.qr(np.random.default_rng(3).standard_normal((8, 8)))[0]
    ref = analyze(h, y, weights=w, bias=b).metrics
    rotated = analyze(h @ q, y, weights=w @ q, bias=b).metrics
    _all_equal(rotated, ref)
    # scaling features by a and W by 1/a keeps outputs, hence every metric
    scaled = analyze(3.0 * h, y, weights=w / 3.0, bias=b).metrics
    _all_equal(scaled, ref, skip=("nc1_cdnv_exp2",))  # distances to the 4th: not scale-free
    # scaling features alone changes no scale-free NC1/NC2/NC3/NC4 metric
    sc = analyze(2.5 * h, y, weights=w, bias=2.5 * b).metrics
    for key in (
        "nc1",
        "nc1_trace_ratio",
        "nc1_cdnv",
        "etf_error_means",
        "nc3_self_duality",
        "nc4_ncc_mismatch",
        "accuracy_classifier",
        "accuracy_ncc",
    ):
        close(sc[key], ref[key], rtol=1e-9)


# ---------------------------------------------------------------------------------------
# undefined values and warnings
# ---------------------------------------------------------------------------------------
def test_no_weights_gives_null_with_reasons():
    h, y, _ = make_data()
    res = analyze(h, y)
    for key in (
        "nc3_self_duality",
        "nc2_equinorm_weights",
        "etf_error_weights_centered",
        "nc4_ncc_mismatch",
        "sqi_eps1",
        "mse",
    ):
        assert res.metrics[key] is None
    assert res.metrics["accuracy_ncc"] == 1.0 or res.metrics["accuracy_ncc"] > 0.9
    assert any("nc3_self_duality" in w and "weights" in w for w in res.warnings)
    text = ncinspect.Report(None, [res]).to_json()
    assert "NaN" not in text and '"nc3_self_duality": null' in text


def test_empty_class_fixed_by_weights():
    h, y, m = make_data(C=4, d=8)
    w = np.vstack([m, np.ones(8)])  # 5 rows: class 4 has no samples
    res = analyze(h, y, weights=w)
    # an absent class: class-level metrics over the 4 present classes and their rows of W
    assert res.n_classes == 4 and res.n_classes_total == 5
    four = analyze(h, y, weights=m).metrics
    for key in ("nc1", "nc1_cdnv", "etf_error_weights", "nc3_self_duality", "accuracy_ncc"):
        close(res.metrics[key], four[key], rtol=1e-12)
    assert any("1 of 5 classes absent" in w and "no samples: 4" in w for w in res.warnings)


def test_more_classes_than_dimensions_warns_but_computes():
    rng = np.random.default_rng(0)
    C, d = 12, 4
    means = rng.standard_normal((C, d)) * 3
    y = np.repeat(np.arange(C), 10)
    h = means[y] + 0.1 * rng.standard_normal((len(y), d))
    res = analyze(h, y, weights=means)
    assert any("C > d + 1" in w for w in res.warnings)
    assert res.metrics["nc1"] is not None
    close(res.metrics["nc1"], reference_metrics(h, y)["nc1"], rtol=1e-6)


def test_nc1_null_when_every_class_has_one_sample():
    # the within-class scatter is 0 by construction, not a measured collapse
    h, y, _ = make_data(C=4, n=1)
    res = analyze(h, y)
    for key in ("nc1", "nc1_trace_ratio", "nc1_cdnv"):
        assert res.metrics[key] is None
    assert any("one sample" in w and "nc1" in w for w in res.warnings)


def test_per_class_values():
    h, y, m = make_data(C=4, d=8, n=30, imbalanced=True)
    w = m * 2
    res = analyze(h, y, weights=w, per_class=True)
    ref_var = [np.mean(np.sum((h[y == c] - h[y == c].mean(0)) ** 2, axis=1)) for c in range(4)]
    assert [row["class"] for row in res.per_class] == [0, 1, 2, 3]
    for c, row in enumerate(res.per_class):
        assert row["n"] == int(np.sum(y == c))
        close(row["var"], ref_var[c], rtol=1e-10)
        close(row["weight_norm"], np.linalg.norm(w[c]), rtol=1e-12)
        assert set(row) == {"class", *M.PER_CLASS_KEYS}
