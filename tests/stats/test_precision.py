"""precision="float32": float32 products, float64 accumulation, within the stated bounds.

Bounds (ncinspect/stats/xp.py, docs/array-api.md), ``g = (d + 2) 2^-24 / (1 - (d + 2) 2^-24)``:
each projected scatter ``P_k`` within ``(2g + g^2) sum_i ||e_i||^2``; nc1 within
``(2g + g^2) tr(S_W) tr(S_B^+) / C``; decisions exact; logits within ``g ||h'|| ||w_c||``.
"""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect
from ncinspect.metrics import between_class_geometry
from ncinspect.stats.device import second_sums
from ncinspect.stats.namespace import get_namespace
from ncinspect.stats.passes import FirstPass, SecondPass
from ncinspect.stats.xp import precision_gamma

from ..helpers import make_data


def _setup(seed=0, C=8, d=300, n=60):
    h, y, m = make_data(C=C, d=d, n=n, seed=seed, radius=3.0, sigma=1.0, offset=2.0)
    rng = np.random.default_rng(seed)
    w, b = m + 0.5 * rng.standard_normal(m.shape), 0.3 * rng.standard_normal(C)
    geom = between_class_geometry(FirstPass.of_chunk(h, y, C), weights=w, bias=b)
    return h, y, w, b, geom


def test_projected_scatter_and_logits_within_the_bound(backend):
    h, y, w, b, geom = _setup()
    g = precision_gamma(h.shape[1])
    exact = SecondPass.of_chunk(geom, h, y)
    fast = SecondPass.of_chunk(geom, backend(h), backend(y), precision="float32")
    e = h - geom.means[y]
    direct = np.sum((e @ geom.basis.T) ** 2, axis=0)  # the known answer, by definition
    bound = (2 * g + g * g) * np.sum(e * e)
    err = np.abs(fast.proj_sq - direct)
    assert np.all(err <= bound)
    assert err.max() > 0  # float32 products were used (float64 agrees to ~1e-15)
    np.testing.assert_allclose(fast.class_sq, exact.class_sq, rtol=1e-13)  # float64 sums
    hp = h - geom.global_mean
    logit_bound = g * np.linalg.norm(hp, axis=1).max() * np.linalg.norm(w, axis=1).max()
    assert abs(fast.true_out.mean - exact.true_out.mean) <= logit_bound
    assert abs(fast.wrong_out.mean - exact.wrong_out.mean) <= logit_bound
    for key in ("ncc_correct", "clf_correct", "agree"):
        np.testing.assert_array_equal(getattr(fast, key), getattr(exact, key))


def test_near_ties_are_decided_exactly(backend):
    """Rows on the bisector of two centres (off by ~1e-9): float32 scores cannot order them;
    the float64 recheck must give exactly the float64 decisions."""
    rng = np.random.default_rng(3)
    d = 64
    m = np.zeros((2, d))
    m[0, 0], m[1, 0] = 1.0, -1.0
    n = 400
    h = rng.standard_normal((n, d)) * 5
    h[:, 0] = 1e-9 * rng.standard_normal(n)  # |margin| ~ 1e-9 << float32 error ~ 1e-5
    h[:2, 0], h[2:4, 0] = 1.0, -1.0  # keep the class means at +-1 (roughly)
    y = (rng.random(n) < 0.5).astype(np.int64)
    w = m.copy()
    geom = between_class_geometry(FirstPass.of_chunk(h, y, 2), weights=w)
    exact = SecondPass.of_chunk(geom, h, y)
    xh, xy = backend(h), backend(y)
    state = second_sums(get_namespace(xh), geom, xh, xy, precision="float32")
    values = state.to_host()
    assert int(values["n_rechecked"]) >= n - 4  # the ties were decided again
    assert int(values["n_unchecked"]) == 0  # the file path rechecks every flagged row
    fast = SecondPass.of_chunk(geom, xh, xy, precision="float32")
    for key in ("ncc_correct", "clf_correct", "agree"):
        np.testing.assert_array_equal(getattr(fast, key), getattr(exact, key))


@pytest.mark.parametrize("seed", [0, 1])
def test_meter_nc1_within_the_stated_bound(backend, seed):
    h, y, w, b, geom = _setup(seed)
    ref = ncinspect.analyze(h, y, weights=w, bias=b)
    meter = ncinspect.Meter(weights=w, bias=b, precision="float32")
    for _ in range(2):
        for a in range(0, len(y), 70):
            meter.update(backend(h[a : a + 70]), backend(y[a : a + 70]))
        if meter.pass_number == 1:
            meter.next_pass()
    res = meter.compute()
    g = precision_gamma(h.shape[1])
    C, N = 8, len(y)
    tr_w = np.sum((h - geom.means[y]) ** 2) / N
    tr_b_pinv = C * np.sum(1.0 / geom.eigvals)  # eigvals of C Sigma_B
    bound = (2 * g + g * g) * tr_w * tr_b_pinv / C
    assert abs(res.metrics["nc1"] - ref.metrics["nc1"]) <= bound
    assert res.metrics["nc1"] != ref.metrics["nc1"]
    for key in ("nc1_trace_ratio", "nc4_ncc_mismatch", "accuracy_ncc", "accuracy_classifier"):
        assert res.metrics[key] == pytest.approx(ref.metrics[key], rel=1e-12), key


def test_unknown_precision_is_a_usage_error():
    from ncinspect.errors import UsageError

    with pytest.raises(UsageError, match="precision"):
        ncinspect.Meter(n_classes=3, precision="float16")


@pytest.mark.parametrize("scale", [2.0**66, 1e30, 1e-25, 1e-30, 1e-150, 1e150])
def test_float32_at_extreme_feature_scales_matches_float64(scale):
    """Features of 1e20 or 1e-25 (inside float64's unscaled band, far outside float32's):
    squares and NCC scores overflowed or underflowed in float32, and accuracy_ncc fell to
    0.58 (1.0 in float64), nc1_cdnv_directional became null ("two class means coincide").
    Pass 2 in float32 now sees them at unit scale (``FLOAT32_BAND``): decisions exact,
    the rest within float32's rounding, and no overflow warning (locally and the Meter)."""
    import warnings

    from ncinspect.engines.local import LocalEngine
    from ncinspect.meter.meter import Meter

    h, y, m = make_data(C=3, d=5, n=8, seed=3)
    w = m + 0.3 * np.random.default_rng(3).standard_normal(m.shape)
    h = h * scale
    exact = ncinspect.analyze(h, y, weights=w).metrics
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        local = ncinspect.analyze(h, y, weights=w, engine=LocalEngine(precision="float32"))
        meter = Meter(w, precision="float32")
        meter.update(h, y)
        meter.next_pass()
        meter.update(h, y)
        metered = meter.compute()
    for got in (local.metrics, metered.metrics):
        for key in ("accuracy_ncc", "nc4_ncc_mismatch", "accuracy_classifier"):
            assert got[key] == exact[key], (key, got[key], exact[key])
        for key in ("nc1", "nc1_cdnv_directional", "nc2_equiangular_means", "nc3_self_duality"):
            assert exact[key] is not None
            assert got[key] == pytest.approx(exact[key], rel=1e-4, abs=1e-6), key
