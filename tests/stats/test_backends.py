"""Pass 1 and pass 2 on numpy, array-api-strict and torch: known answers computed directly
(explicit per-class loops, explicit distances) and equality with the numpy kernels."""

from __future__ import annotations

import numpy as np
import pytest

from ncinspect.metrics import between_class_geometry
from ncinspect.stats.kernel import kernel_for
from ncinspect.stats.passes import FirstPass, SecondPass

from ..helpers import make_data


def _data(seed=0, C=6, d=20, n=35, dtype="float64"):
    h, y, m = make_data(C=C, d=d, n=n, seed=seed, imbalanced=True, offset=1.5)
    rng = np.random.default_rng(seed)
    w = m + 0.4 * rng.standard_normal(m.shape)
    b = 0.2 * rng.standard_normal(C)
    return h.astype(dtype), y, w, b


def _direct_first(h, y, C):
    h = h.astype(np.float64)
    counts = np.array([np.sum(y == c) for c in range(C)])
    sums = np.array([h[y == c].sum(axis=0) for c in range(C)])
    return counts, sums


@pytest.mark.parametrize("dtype", ["float64", "float32", "int32"])
def test_first_pass_known_sums(backend, dtype):
    h, y, _, _ = _data(dtype="float64")
    h = (h * 8).astype(dtype)
    first = FirstPass.of_chunk(backend(h), backend(y), 6)
    counts, sums = _direct_first(h, y, 6)
    assert isinstance(first.sums, np.ndarray) and isinstance(first.counts, np.ndarray)
    np.testing.assert_array_equal(first.counts, counts)
    np.testing.assert_allclose(first.sums, sums, rtol=1e-13, atol=1e-12)
    assert first.n_nonfinite == 0 and first.sum_scale == 1.0


def test_first_pass_leaves_out_nonfinite_rows(backend):
    h, y, _, _ = _data()
    h[[7, 30], 3] = [np.nan, np.inf]
    first = FirstPass.of_chunk(backend(h), backend(y), 6, row0=100)
    assert (first.n_nonfinite, first.first_nonfinite_row) == (2, 107)
    keep = np.isfinite(h).all(axis=1)
    _, sums = _direct_first(np.where(keep[:, None], h, 0.0), y, 6)
    np.testing.assert_allclose(first.sums, sums, rtol=1e-13, atol=1e-12)


def test_first_pass_sums_that_overflow_are_scaled(backend):
    h, y, _, _ = _data()
    h = np.abs(h) * 1e307  # every class sum exceeds float64
    first = FirstPass.of_chunk(backend(h), backend(y), 6)
    ref = FirstPass.of_chunk(h, y, 6)
    assert first.sum_scale == ref.sum_scale > 1.0
    np.testing.assert_allclose(first.class_means(), ref.class_means(), rtol=1e-13)
    assert np.isfinite(first.sums).all()


def _geometry(h, y, w, b, C, **kw):
    return between_class_geometry(FirstPass.of_chunk(h, y, C), weights=w, bias=b, **kw)


def _direct_second(geom, h, y, w, b, outputs=None):
    """Pass 2 by definition: residuals, their projections, distances, argmax."""
    means, C = geom.means, geom.n_classes
    e = h - means[y]
    proj = e @ geom.basis.T
    class_sq = np.array([np.sum(e[y == c] ** 2) for c in range(C)])
    dist = np.stack(
        [np.sum((h - geom.global_mean - geom.ncc_centres[c]) ** 2, 1) for c in range(C)]
    )
    ncc = np.argmin(dist, axis=0)
    logits = h @ w.T + b
    clf = np.argmax(logits, axis=1)
    out = logits if outputs is None else outputs
    onehot = np.eye(C)[y]
    count = lambda ok: np.array([np.sum(ok & (y == c)) for c in range(C)])  # noqa: E731
    return {
        "proj_sq": np.sum(proj**2, axis=0),
        "class_sq": class_sq,
        "ncc_correct": count(ncc == y),
        "clf_correct": count(clf == y),
        "agree": count(clf == ncc),
        "true": out[onehot == 1],
        "wrong": out[onehot == 0],
        "sq_err": np.sum((out - onehot) ** 2),
        "max_abs_err": np.max(np.abs(out - onehot)),
    }


def _check_second(stats, want, rtol=1e-11):
    np.testing.assert_allclose(stats.proj_sq, want["proj_sq"], rtol=rtol)
    np.testing.assert_allclose(stats.class_sq, want["class_sq"], rtol=rtol)
    for key in ("ncc_correct", "clf_correct", "agree"):
        np.testing.assert_array_equal(getattr(stats, key), want[key], err_msg=key)
    assert stats.has_decisions and stats.has_outputs
    for mom, vals in ((stats.true_out, want["true"]), (stats.wrong_out, want["wrong"])):
        assert mom.count == vals.size
        assert mom.mean == pytest.approx(vals.mean(), rel=rtol, abs=1e-13)
        assert mom.m2 == pytest.approx(np.sum((vals - vals.mean()) ** 2), rel=rtol)
    assert stats.sq_err == pytest.approx(want["sq_err"], rel=rtol)
    assert stats.max_abs_err == pytest.approx(want["max_abs_err"], rel=rtol)


@pytest.mark.parametrize("seed", [0, 1])
def test_second_pass_known_answers(backend, seed):
    h, y, w, b = _data(seed)
    geom = _geometry(h, y, w, b, 6)
    stats = SecondPass.of_chunk(geom, backend(h), backend(y))
    _check_second(stats, _direct_second(geom, h, y, w, b))
    assert isinstance(stats.proj_sq, np.ndarray) and isinstance(stats.true_out.mean, float)


def test_second_pass_with_outputs_and_absent_classes(backend):
    h, y, w, b = _data(2)
    keep = (y != 4) | (np.arange(len(y)) % 9 == 0)  # class 4 keeps only a few rows
    h, y = h[keep], y[keep]
    rng = np.random.default_rng(5)
    outputs = rng.standard_normal((len(y), 6))
    geom = _geometry(h, y, w, b, 6, min_count=10)
    assert not geom.present[4]
    got = SecondPass.of_chunk(geom, backend(h), backend(y), backend(outputs))
    ref = SecondPass.of_chunk(geom, h, y, outputs)
    for key in ("proj_sq", "class_sq"):
        np.testing.assert_allclose(getattr(got, key), getattr(ref, key), rtol=1e-12, atol=1e-13)
    for key in ("ncc_correct", "clf_correct", "agree"):
        np.testing.assert_array_equal(getattr(got, key), getattr(ref, key))
    assert got.ncc_correct[4] == 0 and got.class_sq[4] == 0
    for a, r in ((got.true_out, ref.true_out), (got.wrong_out, ref.wrong_out)):
        assert a.count == r.count
        assert (a.mean, a.m2) == pytest.approx((r.mean, r.m2), rel=1e-12, abs=1e-14)
    assert got.sq_err == pytest.approx(ref.sq_err, rel=1e-12)


def test_chunks_merge_to_the_one_chunk_statistics(backend):
    h, y, w, b = _data(3)
    geom = _geometry(h, y, w, b, 6)
    whole = SecondPass.of_chunk(geom, backend(h), backend(y))
    parts = SecondPass.empty(6, geom.basis.shape[0])
    first = FirstPass.empty(6, h.shape[1])
    for a in range(0, len(y), 37):
        hb, yb = backend(h[a : a + 37]), backend(y[a : a + 37])
        parts = parts.merge(SecondPass.of_chunk(geom, hb, yb))
        first = first.merge(FirstPass.of_chunk(hb, yb, 6, a))
    np.testing.assert_allclose(parts.proj_sq, whole.proj_sq, rtol=1e-12)
    np.testing.assert_array_equal(parts.ncc_correct, whole.ncc_correct)
    np.testing.assert_allclose(first.sums, FirstPass.of_chunk(h, y, 6).sums, rtol=1e-13)


@pytest.mark.parametrize("shape", [(6, 20), (12, 8)])
def test_both_pass_two_layouts_give_the_known_answers(backend, shape):
    """C < d: projection from the NCC scores; C > d: the direct projection e V^T."""
    C, d = shape
    rng = np.random.default_rng(C)
    means = 3.0 * rng.standard_normal((C, d))
    y = np.concatenate([np.arange(C), rng.integers(0, C, 200)])
    h = means[y] + rng.standard_normal((len(y), d))
    w, b = means + 0.5 * rng.standard_normal((C, d)), 0.1 * rng.standard_normal(C)
    geom = _geometry(h, y, w, b, C)
    stats = SecondPass.of_chunk(geom, backend(h), backend(y))
    _check_second(stats, _direct_second(geom, h, y, w, b))
    kern = kernel_for(geom, True)
    assert kern.from_scores == (C < d)
    if backend.name in ("array_api_strict", "torch-kernel"):  # the namespace kernel
        (layout,) = kern._placed.values()
        assert layout.from_scores == (C < d)
