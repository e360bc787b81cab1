"""nc1_cdnv_directional: the isotropic simplex-ETF known answer, the direct reference on both
pass-2 layouts and with absent classes, every walk over rows (chunks, threads, Dask, the
Meter, the array-API path, float32), and the memory-budget null."""

import numpy as np
import pytest

from ncinspect import analyze
from ncinspect.budget import DEFAULT_MEMORY
from ncinspect.engines.local import LocalEngine
from ncinspect.metrics import between_class_geometry, compute_metrics
from ncinspect.stats.pairs import block_pairs, pair_table_bytes, pair_tables_reason
from ncinspect.stats.passes import FirstPass, SecondPass
from tests.reference import reference_cdnv_directional

KEY = "nc1_cdnv_directional"


def _etf_isotropic(C, d, s=0.3, scale=5.0):
    """Simplex-ETF class means (in d >= C - 1 dimensions) and, per class, the rows
    mu_c +- s e_k for every axis k: each class covariance is exactly (s^2/d) I."""
    etf = np.eye(C) - 1.0 / C  # C x C, rows a simplex ETF in R^C (rank C - 1)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))
    basis = np.linalg.svd(etf)[2][: C - 1]  # (C-1, C) orthonormal rows spanning the ETF
    means = scale * (etf @ basis.T) @ q[: C - 1]  # (C, d)
    eye = np.eye(d)
    rows = [m + sign * s * eye for m in means for sign in (1.0, -1.0)]
    h = np.concatenate(rows)
    y = np.repeat(np.arange(C), 2 * d)
    return h, y


@pytest.mark.parametrize("C,d", [(4, 7), (6, 5), (3, 2)])
def test_isotropic_etf_equals_cdnv_over_d(C, d):
    h, y = _etf_isotropic(C, d)
    m = analyze(h, y).metrics
    assert m[KEY] == pytest.approx(m["nc1_cdnv"] / d, rel=1e-12)
    # and the value itself: q = s^2/d, ||mu_c - mu_c'||^2 = 2 scale^2 (ETF of norm scale*...)
    mu = np.array([h[y == c].mean(0) for c in range(C)])
    dist2 = np.sum((mu[0] - mu[1]) ** 2)
    assert m[KEY] == pytest.approx((0.3**2 / d) / dist2, rel=1e-12)


def _anisotropic(C, d, n=40, seed=1):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((C, d)) * 2
    y = rng.integers(0, C, size=n * C)
    widths = rng.uniform(0.1, 1.5, size=(C, d))  # per class and axis: not isotropic
    h = means[y] + rng.standard_normal((y.size, d)) * widths[y]
    return h, y


@pytest.mark.parametrize("C,d", [(5, 12), (12, 5), (7, 7)])  # scores layout, direct layout
def test_matches_direct_reference(C, d):
    h, y = _anisotropic(C, d)
    mu = np.array([h[y == c].mean(0) for c in range(C)])
    got = analyze(h, y).metrics[KEY]
    assert got == pytest.approx(reference_cdnv_directional(h, y, mu), rel=1e-11)
    assert got < analyze(h, y).metrics["nc1_cdnv"]  # one direction of d


def test_absent_classes_and_min_class_count():
    h, y = _anisotropic(6, 10)
    y = np.where(y == 2, 3, y)  # class 2 absent; with W of 6 rows it stays a row of W
    w = np.random.default_rng(3).standard_normal((6, 10))
    keep = [0, 1, 3, 4, 5]
    mu = np.array([h[y == c].mean(0) for c in keep])
    codes = np.searchsorted(keep, y)
    got = analyze(h, y, weights=w).metrics[KEY]
    assert got == pytest.approx(reference_cdnv_directional(h, codes, mu), rel=1e-11)
    # a class below min_class_count takes no part
    small = np.concatenate([h, h[:2] + 7.0])
    ys = np.concatenate([y, [2, 2]])
    got = analyze(small, ys, weights=w, min_class_count=3).metrics[KEY]
    assert got == pytest.approx(reference_cdnv_directional(h, codes, mu), rel=1e-11)


def test_large_offset_and_tiny_scale():
    h, y = _anisotropic(5, 8)
    base = analyze(h, y).metrics[KEY]
    assert analyze(h + 1e6, y).metrics[KEY] == pytest.approx(base, rel=1e-6)
    assert analyze(h * 2.0**-700, y).metrics[KEY] == pytest.approx(base, rel=1e-12)
    assert analyze(h * 2.0**600, y).metrics[KEY] == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("C,d", [(6, 9), (12, 5)])  # both pass-2 layouts
def test_every_walk_over_rows_agrees(C, d):
    h, y = _anisotropic(C, d, n=60)
    base = analyze(h, y).metrics[KEY]
    assert analyze(h, y, chunk_rows=37).metrics[KEY] == pytest.approx(base, rel=1e-12)
    assert analyze(h, y, engine=LocalEngine(threads=2)).metrics[KEY] == base
    import array_api_strict as xp

    assert analyze(xp.asarray(h), xp.asarray(y)).metrics[KEY] == pytest.approx(base, rel=1e-12)
    first = FirstPass.of_chunk(h, y, C)
    geom = between_class_geometry(first)
    f32 = compute_metrics(first, SecondPass.of_chunk(geom, h, y, precision="float32"), geom)
    assert f32.values[KEY] == pytest.approx(base, rel=1e-5)


def test_dask_engine():
    import dask.array as da

    from ncinspect.engines.dask import DaskEngine

    h, y = _anisotropic(5, 8, n=50)
    base = analyze(h, y).metrics[KEY]
    got = analyze(da.from_array(h, chunks=(33, 8)), y, engine=DaskEngine(threads=1)).metrics
    assert got[KEY] == pytest.approx(base, rel=1e-12)


def test_meter_matches_analyze():
    from ncinspect import Meter

    h, y = _anisotropic(5, 8, n=50)
    meter = Meter(n_classes=5)
    for pass_ in range(2):
        for a in range(0, len(y), 64):
            meter.update(h[a : a + 64], y[a : a + 64])
        if pass_ == 0:
            meter.next_pass()
    got = meter.compute().metrics[KEY]
    assert got == pytest.approx(analyze(h, y).metrics[KEY], rel=1e-12)


def test_block_pairs_by_hand():
    s = np.array([[1.0, 2.0, 4.0], [0.0, 3.0, 1.0], [2.0, 2.0, 0.0]])
    y = np.array([1, 0, 1])
    classes, sums = block_pairs(s, y)
    assert classes.tolist() == [0, 1]
    np.testing.assert_array_equal(sums[0], [0.0, 9.0, 1.0])  # row 1, own column 0
    np.testing.assert_array_equal(sums[1], [1.0 + 0.0, 0.0, 4.0 + 4.0])  # rows 0 and 2


def test_null_beyond_the_memory_budget():
    assert pair_table_bytes(100) == 16 * 100 * 100
    assert pair_tables_reason(4096) is None  # 256 MiB: the default budget holds it
    assert 16 * 4097**2 > DEFAULT_MEMORY and "memory-limit" in pair_tables_reason(4097)
    assert pair_tables_reason(300, 2 << 20) is not None  # 1.4 MB > half of 2 MiB
    C, d = 300, 4
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(C), 3)
    h = rng.standard_normal((C, d))[y] + 0.1 * rng.standard_normal((y.size, d))
    res = analyze(h, y, memory_limit=2 << 20)
    assert res.metrics[KEY] is None
    assert "C x C tables (C = 300)" in res.null_reasons[KEY]
    assert res.metrics["nc1_cdnv"] is not None
    assert analyze(h, y, memory_limit=8 << 20).metrics[KEY] is not None


def test_null_cases():
    h = np.array([[0.0, 1.0], [1.0, 0.0]])
    res = analyze(h, np.array([0, 1]))
    assert res.metrics[KEY] is None and "one sample" in res.null_reasons[KEY]
    res = analyze(h, np.array([0, 0]), weights=np.eye(2))
    assert res.metrics[KEY] is None and "fewer than two classes" in res.null_reasons[KEY]
    same = np.array([[0.0, 1.0], [0.0, 3.0], [0.0, 1.0], [0.0, 3.0], [5.0, 5.0], [5.0, 6.0]])
    res = analyze(same, np.array([0, 0, 1, 1, 2, 2]))
    assert res.metrics[KEY] is None and "coincide" in res.null_reasons[KEY]


def test_geometry_without_budget_check_and_two_passes_by_hand():
    h, y = _anisotropic(4, 6)
    first = FirstPass.of_chunk(h, y, 4)
    geom = between_class_geometry(first)
    assert geom.pair_reason is None  # the default budget holds C = 4
    second = SecondPass.of_chunk(geom, h[:70], y[:70]).merge(
        SecondPass.of_chunk(geom, h[70:], y[70:])
    )
    mu = np.array([h[y == c].mean(0) for c in range(4)])
    got = compute_metrics(first, second, geom).values[KEY]
    assert got == pytest.approx(reference_cdnv_directional(h, y, mu), rel=1e-11)
    second.pair_sq = None  # statistics without the table: null, never zeros
    values = compute_metrics(first, second, geom)
    assert values.values[KEY] is None and "no directional table" in values.null_reasons[KEY]
    geom.pair_reason = "told not to"
    values = compute_metrics(first, SecondPass.of_chunk(geom, h, y), geom)
    assert values.values[KEY] is None and values.null_reasons[KEY] == "told not to"


def test_two_classes_with_the_same_mean_are_null():
    """Class 6 holds the rows of class 1 again: equal means, whose squared distance the
    product formula leaves at rounding size (a 1e15-size metric); from the difference it is
    0 and the directional CDNV (like CDNV) is null with its reason."""
    h, y = _anisotropic(6, 10)
    h = h * np.pi  # values whose products round (0.2 gave nc1_cdnv = 8.8e13 here)
    h2 = np.concatenate([h, h[y == 1]])
    y2 = np.concatenate([y, np.full(np.count_nonzero(y == 1), 6)])
    res = analyze(h2, y2)
    assert res.metrics[KEY] is None and res.metrics["nc1_cdnv"] is None
    assert res.null_reasons.get(KEY)
