"""Generalized and imbalanced-data metrics: known answers, registry-driven invariances,
streaming, the d < C - 1 floor, the SELI anchors, minority collapse and a direct reference."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from ncinspect import metrics as M
from ncinspect.analysis.api import analyze
from ncinspect.metrics import general as G
from ncinspect.metrics import linalg as L
from ncinspect.metrics import seli as S
from ncinspect.metrics.registry import (
    BY_KEY,
    INVARIANCES,
    REGISTRY,
    UNIFORMITY_GROUPS,
    table_entries,
)

from ..helpers import simplex_etf
from ..reference import etf_error as ref_etf_error
from ..reference import reference_metrics, seli_geometry

DIRECTIONS = {"lower", "higher", "zero", "one", "info"}


def close(a, b, rtol=1e-9, atol=1e-12):
    assert a is not None and b is not None, (a, b)
    assert abs(a - b) <= atol + rtol * abs(b), (a, b)


# ---------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------
def test_registry_covers_every_metric_once():
    keys = [m.key for m in REGISTRY]
    assert len(keys) == len(set(keys))
    assert tuple(keys) == M.METRIC_KEYS
    assert set(G.GENERAL_KEYS) <= set(keys)
    for m in REGISTRY:
        assert m.direction in DIRECTIONS, m.key
        assert m.invariances <= set(INVARIANCES), m.key
        assert m.kind in ("float", "bool") and m.title and m.formula, m.key
    # groups are contiguous: a table section per group
    groups = [m.group for m in REGISTRY]
    assert len(list(itertools.groupby(groups))) == len(set(groups))


def test_table_order_leads_with_uniformity_when_no_etf_fits():
    keys = [m.key for m in table_entries({"etf_feasible": True})]
    assert keys == list(M.METRIC_KEYS)
    assert keys.index("etf_error_floor") == keys.index("etf_error_means") + 1
    infeasible = table_entries({"etf_feasible": False})
    n_lead = sum(m.group in UNIFORMITY_GROUPS for m in REGISTRY)
    assert n_lead >= 7
    assert all(m.group in UNIFORMITY_GROUPS for m in infeasible[:n_lead])
    assert infeasible[0].key == "gnc2_log_means"
    assert sorted(m.key for m in infeasible) == sorted(keys)


# ---------------------------------------------------------------------------------------
# exact known answers
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("C", [3, 7])
def test_exact_simplex_etf(C):
    d = C + 3
    rng = np.random.default_rng(C)
    m = simplex_etf(C, d, 2.5, rng)
    w = 1.7 * m
    y = np.repeat(np.arange(C), 4)
    off = np.full(d, 3.0)
    res = analyze(m[y] + off, y, weights=w, bias=-(w @ off)).metrics
    for key in (
        "gnc2_log_means",
        "gnc2_dist_means",
        "gnc2_log_weights",
        "gnc2_dist_weights",
        "unc3_uniform_duality",
        "bias_collapse",
        "seli_error_weights",
    ):
        assert abs(res[key]) < 1e-12, (key, res[key])
    energy = -0.5 * np.log(2 * C / (C - 1))
    close(res["gnc2_energy_log_means"], energy, rtol=1e-12)
    close(res["gnc2_energy_log_weights"], energy, rtol=1e-12)
    assert res["etf_feasible"] is True and res["etf_error_floor"] == 0.0
    # an ETF Gram is proportional to P = I - 11^T/C: its distance to the orthogonal frame is
    # ||P/||P|| - I/sqrt(C)|| = sqrt(2 - 2 sqrt((C-1)/C))
    of = np.sqrt(2 - 2 * np.sqrt((C - 1) / C))
    close(res["of_error_weights"], of, rtol=1e-12)
    # uncentred means are the ETF shifted by `off`: no longer an ETF, so compare directly
    mu = m + off
    close(res["of_error_means"], ref_of(mu, mu), rtol=1e-10)
    close(res["of_error_duality"], ref_of(w, mu), rtol=1e-10)
    assert res["of_error_means"] > 0.1
    assert res["minority_collapse"] is None  # balanced: no minority classes


def ref_of(a, b):
    x = a @ b.T
    return float(np.linalg.norm(x / np.linalg.norm(x) - np.eye(len(a)) / np.sqrt(len(a))))


def test_exact_orthogonal_frame():
    C, d = 5, 9
    rng = np.random.default_rng(4)
    frame = 2.0 * np.linalg.qr(rng.standard_normal((d, C)))[0].T  # C orthogonal rows
    y = np.repeat(np.arange(C), 3)
    res = analyze(frame[y], y, weights=0.5 * frame).metrics
    for key in ("of_error_weights", "of_error_means", "of_error_duality"):
        assert abs(res[key]) < 1e-12, key
    close(res["etf_error_weights"], np.sqrt(2 - 2 * np.sqrt((C - 1) / C)), rtol=1e-12)


def test_bias_collapse_value():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((30, 4))
    y = np.arange(30) % 3
    w, b = rng.standard_normal((3, 4)), rng.standard_normal(3)
    mu_g = np.mean([h[y == c].mean(0) for c in range(3)], axis=0)
    close(analyze(h, y, weights=w, bias=b).metrics["bias_collapse"], np.linalg.norm(w @ mu_g + b))
    close(analyze(h, y, weights=w).metrics["bias_collapse"], np.linalg.norm(w @ mu_g))


def test_cdnv_exp2_two_classes():
    rng = np.random.default_rng(1)
    h = rng.standard_normal((40, 6))
    h[20:] += 3.0
    y = np.repeat([0, 1], 20)
    res = analyze(h, y).metrics
    gap = np.sum((h[:20].mean(0) - h[20:].mean(0)) ** 2)
    close(res["nc1_cdnv_exp2"], res["nc1_cdnv"] / gap, rtol=1e-12)


# ---------------------------------------------------------------------------------------
# d < C - 1: no ETF, and its floor
# ---------------------------------------------------------------------------------------
def _floor_configuration(C, d, rng):
    """C centred means whose Gram is the projector on d eigenvectors of E: reaches the floor."""
    ones = np.ones((C, 1)) / np.sqrt(C)
    q = np.linalg.qr(np.hstack([ones, rng.standard_normal((C, C - 1))]))[0][:, 1:]  # 1-perp
    return q[:, :d] @ np.linalg.qr(rng.standard_normal((d, d)))[0]


@pytest.mark.parametrize("C,d", [(12, 4), (30, 2), (9, 7)])
def test_floor_when_no_etf_fits(C, d):
    rng = np.random.default_rng(C + d)
    floor = np.sqrt(2 - 2 * np.sqrt(d / (C - 1)))
    m = 3.0 * _floor_configuration(C, d, rng)
    y = np.repeat(np.arange(C), 2)
    res = analyze(m[y], y, weights=m)
    assert res.metrics["etf_feasible"] is False
    close(res.metrics["etf_error_floor"], floor, rtol=1e-12)
    close(res.metrics["etf_error_means"], floor, rtol=1e-9)
    assert any("C > d + 1" in w for w in res.warnings)
    for seed in range(5):  # nothing in d dimensions does better
        h = np.random.default_rng(seed).standard_normal((C, d))
        assert analyze(h[y], y).metrics["etf_error_means"] >= floor - 1e-12


def test_floor_zero_when_feasible():
    assert G.etf_floor(4, 5) == (True, 0.0)
    assert G.etf_floor(3, 5)[0] is False and G.etf_floor(3, 5)[1] == pytest.approx(
        np.sqrt(2 - 2 * np.sqrt(3 / 4))
    )


# ---------------------------------------------------------------------------------------
# the imbalanced example (its invariances: tests/metrics/test_invariances.py)
# ---------------------------------------------------------------------------------------
def _imbalanced(seed=5):
    rng = np.random.default_rng(seed)
    C, d = 6, 9
    counts = np.array([60, 55, 50, 12, 9, 7])  # three minority classes
    centres = 2.0 * rng.standard_normal((C, d))
    y = np.repeat(np.arange(C), counts)
    h = centres[y] + 0.8 * rng.standard_normal((len(y), d)) + 1.5
    w = centres + 0.5 * rng.standard_normal((C, d))
    b = 0.3 * rng.standard_normal(C)
    return h, y, w, b


_BASE = None


def _base_metrics():
    global _BASE
    if _BASE is None:
        _BASE = analyze(*_imbalanced()[:2], weights=_imbalanced()[2], bias=_imbalanced()[3])
    return _BASE.metrics


# ---------------------------------------------------------------------------------------
# streaming, tiles, large-C paths
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_rows", [1, 7, 10_000])
def test_streaming_equals_one_chunk(chunk_rows):
    h, y, w, b = _imbalanced()
    one = analyze(h, y, weights=w, bias=b, chunk_rows=len(y)).metrics
    many = analyze(h, y, weights=w, bias=b, chunk_rows=chunk_rows).metrics
    for key in G.GENERAL_KEYS:
        assert one[key] is not None, key
        if BY_KEY[key].kind == "bool":
            assert many[key] == one[key]
        else:
            close(many[key], one[key], rtol=1e-10, atol=1e-14)


def test_matches_direct_reference_on_imbalanced_data():
    h, y, w, b = _imbalanced()
    got = analyze(h, y, weights=w, bias=b).metrics
    ref = reference_metrics(h, y, W=w, b=b)
    for key in G.GENERAL_KEYS:
        assert ref[key] is not None, key
        if BY_KEY[key].kind == "bool":
            assert got[key] == ref[key]
        else:
            close(got[key], ref[key], rtol=1e-8, atol=1e-12)


def test_large_c_paths_match_direct(monkeypatch):
    rng = np.random.default_rng(3)
    C, d = 40, 6
    counts = rng.choice([3, 8, 20, 50], size=C)
    w, mu = rng.standard_normal((C, d)), rng.standard_normal((C, d)) + 0.5
    var = rng.random(C)
    direct = {
        "of_w": G.of_error(w, w),
        "of_d": G.of_error(w, mu),
        "seli_w": S.seli_error(w, w, counts, 1)[0],
        "seli_m": S.seli_error(mu, mu, counts, -1)[0],
        "hyper": G.hyperspherical_stats(mu),
        "cdnv": G.cdnv_exp2(var, mu),
        "minority": G.minority_collapse(w, counts),
    }
    monkeypatch.setattr(G, "DIRECT_MAX_C", 4)  # trace identities and count groups
    monkeypatch.setattr(S, "DIRECT_MAX_C", 4)
    monkeypatch.setattr(L, "TILE_ELEMS", 50)  # one row per tile
    close(G.of_error(w, w), direct["of_w"], rtol=1e-8)
    close(G.of_error(w, mu), direct["of_d"], rtol=1e-8)
    close(S.seli_error(w, w, counts, 1)[0], direct["seli_w"], rtol=1e-8)
    close(S.seli_error(w, w.copy(), counts, 1)[0], direct["seli_w"], rtol=1e-8)  # X, Y apart
    close(S.seli_error(mu, mu, counts, -1)[0], direct["seli_m"], rtol=1e-8)
    for a, b in zip(G.hyperspherical_stats(mu), direct["hyper"], strict=True):
        close(a, b, rtol=1e-10)
    close(G.cdnv_exp2(var, mu), direct["cdnv"], rtol=1e-12)
    close(G.minority_collapse(w, counts), direct["minority"], rtol=1e-12)
    d2 = 60  # d > C: the tiled ||A B^T|| branch
    w2 = rng.standard_normal((C, d2))
    monkeypatch.setattr(G, "DIRECT_MAX_C", 2048)
    monkeypatch.setattr(S, "DIRECT_MAX_C", 2048)
    ref = G.of_error(w2, w2)
    monkeypatch.setattr(G, "DIRECT_MAX_C", 4)
    monkeypatch.setattr(S, "DIRECT_MAX_C", 4)
    close(G.of_error(w2, w2), ref, rtol=1e-8)


def test_large_c_never_holds_a_c_by_c_matrix(monkeypatch):
    C, d = 4000, 16  # a C x C float64 matrix would be 128 MB
    monkeypatch.setattr(L, "TILE_ELEMS", 1 << 18)  # tiles of 2 MB
    rng = np.random.default_rng(0)
    mu = rng.standard_normal((C, d))
    w = mu + 0.1 * rng.standard_normal((C, d))
    counts = rng.integers(1, 60, size=C)
    var = rng.random(C)
    tracemalloc.start()
    try:
        out = G.general_metrics(mu, mu - mu.mean(0), mu.mean(0), w, None, counts, var)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert all(out[k][0] is not None for k in G.GENERAL_KEYS), out
    assert out["etf_feasible"][0] is False
    assert peak < 40e6, peak  # tiles and (C, d) arrays only


# ---------------------------------------------------------------------------------------
# SELI: the two anchors
# ---------------------------------------------------------------------------------------
def _seli_configuration(counts, d, rng):
    """W = U L^{1/2} R^T and class means = columns of R L^{1/2} V^T, one per class."""
    C = len(counts)
    y = np.repeat(np.arange(C), counts)
    Y = np.eye(C)[y].T
    Z = Y - np.ones((C, C)) @ Y / C
    U, L, Vt = np.linalg.svd(Z, full_matrices=False)
    U, L, Vt = U[:, : C - 1], L[: C - 1], Vt[: C - 1]
    R = np.linalg.qr(rng.standard_normal((d, C - 1)))[0]  # orthonormal columns
    W = (U * np.sqrt(L)) @ R.T
    H = ((R * np.sqrt(L)) @ Vt).T  # (N, d): one column of R L^{1/2} V^T per sample
    first = np.array([np.flatnonzero(y == c)[0] for c in range(C)])
    assert np.allclose(H, H[first][y])  # features of one class coincide
    return H, y, W


@pytest.mark.parametrize("counts", [[40, 20, 10, 5, 5], [100, 3, 3, 3, 50, 7, 1]])
def test_seli_exact_configuration_gives_zero(counts, monkeypatch):
    H, y, W = _seli_configuration(counts, 9, np.random.default_rng(len(counts)))
    res = analyze(H, y, weights=W).metrics
    for key in ("seli_error_weights", "seli_error_means", "seli_error_logits"):
        assert abs(res[key]) < 1e-7, (key, res[key])
    # on imbalanced data SELI is not the ETF: the test discriminates
    assert res["etf_error_weights"] > 0.05
    assert res["nc3_duality_etf_error"] < 1e-7  # logits of SELI are the simplex-encoded labels
    monkeypatch.setattr(G, "DIRECT_MAX_C", 2)  # the count-group path agrees
    monkeypatch.setattr(S, "DIRECT_MAX_C", 2)
    res2 = analyze(H, y, weights=W).metrics
    for key in ("seli_error_weights", "seli_error_means", "seli_error_logits"):
        assert abs(res2[key]) < 1e-6, (key, res2[key])


def test_seli_balanced_equals_etf_type_errors():
    rng = np.random.default_rng(8)
    C, d = 5, 7
    y = np.repeat(np.arange(C), 12)
    h = 1.5 * rng.standard_normal((C, d))[y] + rng.standard_normal((len(y), d)) + 0.7
    w = rng.standard_normal((C, d))
    res = analyze(h, y, weights=w).metrics
    mu = np.stack([h[y == c].mean(0) for c in range(C)])  # uncentred means
    close(res["seli_error_weights"], res["etf_error_weights"], rtol=1e-10)
    close(res["seli_error_means"], ref_etf_error(mu, mu), rtol=1e-10)
    close(res["seli_error_logits"], ref_etf_error(w, mu), rtol=1e-10)
    assert res["seli_error_means"] > 0.05  # a real value, not a degenerate 0


def test_seli_reference_geometry_is_the_documented_reduction():
    # the class-level Grams used by the kernels equal the SVD reduction of the reference
    counts = np.array([30, 12, 5, 5, 2])
    y = np.repeat(np.arange(5), counts)
    w_t, h_t, z_t = seli_geometry(y, 5)
    for got, ref in ((S.seli_target(counts, 1), w_t), (S.seli_target(counts, -1), h_t)):
        np.testing.assert_allclose(got, ref, atol=1e-12)
    np.testing.assert_allclose(S.seli_target(counts, 0), z_t, atol=1e-12)


# ---------------------------------------------------------------------------------------
# minority collapse
# ---------------------------------------------------------------------------------------
def test_minority_collapse_values():
    d = 4
    e = np.eye(d)
    w = np.vstack([e[0] + e[1], e[2] - e[1], e[0], e[1], (e[0] + e[1]) / np.sqrt(2), -e[3]])
    counts = [100, 90, 10, 12, 20, 80]  # minority (n < 50): rows 2, 3, 4
    y = np.repeat(np.arange(6), counts)
    h = 5 * np.eye(6, d, k=0)[y] + np.random.default_rng(0).standard_normal((len(y), d))
    res = analyze(h, y, weights=w).metrics
    expected = (0.0 + 2 / np.sqrt(2)) / 3  # cos(e0,e1)=0, cos(e0,(e0+e1)/sqrt2)=cos(e1,.)=1/sqrt2
    close(res["minority_collapse"], expected, rtol=1e-12)
    w_collapsed = w.copy()
    w_collapsed[2:5] = [1.0, 2.0, 0.0, 0.0]  # minority rows on one direction: value 1
    close(analyze(h, y, weights=w_collapsed).metrics["minority_collapse"], 1.0, rtol=1e-12)


def test_minority_collapse_null_without_two_minority_classes():
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(4), [50, 40, 30, 10])  # one minority class
    h = rng.standard_normal((len(y), 5)) + 3 * np.eye(4, 5)[y]
    res = analyze(h, y, weights=rng.standard_normal((4, 5)))
    assert res.metrics["minority_collapse"] is None
    assert any(w.startswith("minority_collapse") and "half the largest" in w for w in res.warnings)


# ---------------------------------------------------------------------------------------
# undefined values, absent classes
# ---------------------------------------------------------------------------------------
def test_without_weights_weight_metrics_are_null_with_reason():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    res = analyze(rng.standard_normal((40, 6)) + np.eye(4, 6)[y], y)
    for key in ("gnc2_log_weights", "unc3_uniform_duality", "bias_collapse", "of_error_weights"):
        assert res.metrics[key] is None, key
    for key in ("gnc2_log_means", "of_error_means", "seli_error_means", "nc1_cdnv_exp2"):
        assert res.metrics[key] is not None, key
    line = next(w for w in res.warnings if "unc3_uniform_duality" in w)
    assert "weights" in line


def test_absent_classes_take_no_part():
    rng = np.random.default_rng(6)
    C, d = 5, 8
    counts = [30, 25, 20, 8, 6]
    y = np.repeat(np.arange(C), counts)
    h = 2 * rng.standard_normal((C, d))[y] + rng.standard_normal((len(y), d))
    w = rng.standard_normal((C, d))
    b = rng.standard_normal(C)
    own = analyze(h, y, weights=w, bias=b).metrics
    extra = np.vstack([w[:2], rng.standard_normal((3, d)), w[2:]])  # rows 2-4 have no samples
    y2 = np.where(y >= 2, y + 3, y)
    b2 = np.concatenate([b[:2], rng.standard_normal(3), b[2:]])
    res = analyze(h, y2, weights=extra, bias=b2).metrics
    for key in G.GENERAL_KEYS:
        if key not in ("etf_feasible", "etf_error_floor"):
            close(res[key], own[key], rtol=1e-10)


@pytest.mark.parametrize("power", [520, -520])
def test_far_outside_the_usual_magnitudes(power):
    # features 2^+-520: squares would over/underflow without the power-of-two rescaling
    h, y, w, b = _imbalanced()
    base = _base_metrics()
    a = 2.0**power
    res = analyze(h * a, y, weights=w, bias=b * a).metrics
    for key in G.GENERAL_KEYS:
        spec_ = BY_KEY[key]
        if spec_.kind == "bool":
            assert res[key] == base[key]
        elif "feature_scale" in spec_.invariances:
            close(res[key], base[key], rtol=1e-8, atol=1e-12)
    with np.errstate(over="ignore"):
        expected = base["nc1_cdnv_exp2"] / a / a
    if np.isfinite(expected):
        close(res["nc1_cdnv_exp2"], expected, rtol=1e-8, atol=0)
    else:  # the true value exceeds float64: null, never a wrong finite number
        assert res["nc1_cdnv_exp2"] is None
    close(res["bias_collapse"], base["bias_collapse"] * a, rtol=1e-8, atol=0)
