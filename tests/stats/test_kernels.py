"""The pass-2 kernel's shortcuts give the float64 answers.

Decisions computed from float32 scores are decided again in float64 wherever the best two
candidates are within the float32 error bound; the projection of the residuals obtained
from the NCC scores equals the direct projection; pass 1's dense indicator product equals
the sparse one.
"""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect
import ncinspect.stats.blocks as stats_blocks
import ncinspect.stats.kernel as stats_kernel
from ncinspect.metrics import between_class_geometry
from ncinspect.stats.passes import FirstPass, SecondPass

from ..helpers import make_data


def _near_ties(n=400, C=4, d=16, r=3.0, delta=1e-9, seed=0):
    """Rows on the bisector of two centres (or classifier rows), pushed off it by
    ``delta * r``: far below float32 resolution, far above float64's."""
    rng = np.random.default_rng(seed)
    M = r * np.eye(C, d)  # centres = classifier rows: orthogonal, equal norms
    a = rng.integers(0, C, n)
    b = (a + rng.integers(1, C, n)) % C
    sign = rng.choice([-1.0, 1.0], n)
    h = (M[a] + M[b]) / 2 + (sign * delta)[:, None] * (M[a] - M[b])
    h[:, C:] = rng.standard_normal((n, d - C))  # orthogonal to every centre and row
    h += 7.0  # a common offset, removed by the centring
    M = M + 7.0
    y = np.where(rng.random(n) < 0.5, a, b)
    return h, y, M


def _float64_decisions(h, M, W):
    dist = ((h[:, None, :] - M[None, :, :]) ** 2).sum(axis=2)
    return np.argmin(dist, axis=1), np.argmax(h @ W.T, axis=1)


@pytest.mark.parametrize("stored_outputs", [False, True])
def test_near_ties_are_decided_as_in_float64(stored_outputs):
    h, y, M = _near_ties()
    W = M - 7.0
    ncc_ref, clf_ref = _float64_decisions(h, M, W)
    # the test can fail: float32 scores alone get many of these rows wrong
    h32, M32, W32 = (a.astype(np.float32) for a in (h - 7.0, M - 7.0, W))
    ncc32 = np.argmin((M32 * M32).sum(1) - 2 * h32 @ M32.T, axis=1)
    clf32 = np.argmax(h32 @ W32.T, axis=1)
    assert np.mean(ncc32 != ncc_ref) > 0.2 and np.mean(clf32 != clf_ref) > 0.2
    outputs = np.random.default_rng(1).random((len(y), 4)) if stored_outputs else None
    res = ncinspect.analyze(h, y, weights=W, ncc_centres=M, outputs=outputs, chunk_rows=97)
    m = res.metrics
    n = len(y)
    assert m["accuracy_ncc"] == pytest.approx(np.sum(ncc_ref == y) / n, rel=1e-12)
    assert m["accuracy_classifier"] == pytest.approx(np.sum(clf_ref == y) / n, rel=1e-12)
    assert m["nc4_ncc_mismatch"] == pytest.approx(np.sum(clf_ref != ncc_ref) / n, rel=1e-12)


@pytest.mark.parametrize("pairs", [False, True])
def test_float32_decisions_on_many_classes_match_float64(pairs):
    """C >= d, on data near chance: NCC by float32 scores with float64 rechecks, or (with the
    directional table, whose float64 residual scores it reads) by those scores."""
    rng = np.random.default_rng(3)
    C, d, n = 40, 8, 3000
    M = rng.standard_normal((C, d))
    y = rng.integers(0, C, n)
    h = M[y] + 1.5 * rng.standard_normal((n, d))
    W = M + 0.3 * rng.standard_normal((C, d))
    first = FirstPass.of_chunk(h, y, C)
    geom = between_class_geometry(first, weights=W)
    if not pairs:
        geom.pair_reason = "not summed in this test"
    means = first.class_means()
    ncc_ref, clf_ref = _float64_decisions(h, means, W)
    second = SecondPass.of_chunk(geom, h, y, rng.random((n, C)))
    assert geom.kernels[False].ncc64 == pairs  # pairs: float64 scores, else the float32 path
    assert not geom.kernels[False].from_scores
    np.testing.assert_array_equal(second.ncc_correct, np.bincount(y[ncc_ref == y], minlength=C))
    np.testing.assert_array_equal(second.clf_correct, np.bincount(y[clf_ref == y], minlength=C))
    np.testing.assert_array_equal(second.agree, np.bincount(y[clf_ref == ncc_ref], minlength=C))


@pytest.mark.parametrize("min_count", [1, 45])
def test_projection_from_scores_equals_direct_projection(monkeypatch, min_count):
    h, y, m = make_data(C=6, d=20, n=40, offset=50.0, imbalanced=True)
    first = FirstPass.of_chunk(h, y, 6)
    fast = SecondPass.of_chunk(between_class_geometry(first, weights=m, min_count=min_count), h, y)
    monkeypatch.setattr(stats_kernel, "_AMP_MAX", 0.0)  # forces the direct layout
    geom = between_class_geometry(first, weights=m, min_count=min_count)
    direct = SecondPass.of_chunk(geom, h, y)
    assert not geom.kernels[True].from_scores
    np.testing.assert_allclose(fast.proj_sq, direct.proj_sq, rtol=1e-12)
    np.testing.assert_allclose(fast.class_sq, direct.class_sq, rtol=1e-12)
    for key in ("ncc_correct", "clf_correct", "agree"):
        np.testing.assert_array_equal(getattr(fast, key), getattr(direct, key))
    assert fast.wrong_out.m2 == pytest.approx(direct.wrong_out.m2, rel=1e-12)
    assert fast.sq_err == pytest.approx(direct.sq_err, rel=1e-12)


def test_projection_from_scores_known_answer():
    """Residuals along one between-class direction only: proj_sq is known exactly."""
    C, d = 3, 10
    M = np.zeros((C, d))
    M[0, 0], M[1, 1], M[2, 0] = 4.0, 4.0, -4.0  # centred means span e0, e1
    y = np.repeat(np.arange(C), 2)
    h = M[y].copy()
    h[0::2, 0] += 0.5  # residual +-0.5 along e0 in every class, nothing along e1
    h[1::2, 0] -= 0.5
    h[:, 5] = np.tile([1.0, -1.0], C)  # residual outside the span: class_sq only
    first = FirstPass.of_chunk(h, y, C)
    geom = between_class_geometry(first)
    second = SecondPass.of_chunk(geom, h, y)
    assert geom.kernels[True].from_scores
    along_e0 = np.abs(geom.basis[:, 0]) ** 2
    want = 6 * 0.25 * along_e0 * geom.scale**-2
    np.testing.assert_allclose(second.proj_sq, want, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(geom.squared(second.class_sq), [2.5, 2.5, 2.5], rtol=1e-12)


def test_dense_pass1_equals_sparse(monkeypatch):
    rng = np.random.default_rng(5)
    h = rng.standard_normal((5000, 9)).astype(np.float32) + 3
    y = rng.integers(0, 7, 5000)
    dense = FirstPass.of_chunk(h, y, 7)
    monkeypatch.setattr(stats_blocks, "DENSE_MAX_C", 0)
    sparse = FirstPass.of_chunk(h, y, 7)
    np.testing.assert_allclose(dense.sums, sparse.sums, rtol=1e-13)
    ints = rng.integers(-1000, 1000, (5000, 9))  # integer sums: both are exact
    np.testing.assert_array_equal(
        FirstPass.of_chunk(ints, y, 7).sums, np.array([ints[y == c].sum(0) for c in range(7)])
    )
    monkeypatch.setattr(stats_blocks, "DENSE_MAX_C", 64)
    np.testing.assert_array_equal(
        FirstPass.of_chunk(ints, y, 7).sums, np.array([ints[y == c].sum(0) for c in range(7)])
    )


def test_a_geometry_and_its_kernel_are_freed_without_the_cycle_collector():
    """The kernel a geometry keeps (``geom.kernels``) holds no reference back to it: each
    snapshot's geometry and kernel (several C x d arrays) are freed when the snapshot is
    done, not when the cyclic collector runs (a file of 40 snapshots of a C = 1000 head
    once grew by 1.2 GB of them)."""
    import gc
    import weakref

    from ncinspect.engines.local import first_pass
    from ncinspect.inputs import prepare
    from ncinspect.metrics.geometry import between_class_geometry
    from ncinspect.stats.kernel import kernel_for

    rng = np.random.default_rng(0)
    h, y = rng.standard_normal((60, 5)), np.arange(60) % 3
    prep = prepare(h, y, weights=rng.standard_normal((3, 5)))
    geom = between_class_geometry(first_pass(prep, 60), weights=prep.weights)
    kern = kernel_for(geom, True)
    # the lazy constants read what they need without geom
    assert kern.half_sq32.shape == (3,) and kern.w_norm > 0
    gone = weakref.ref(geom)
    gc.disable()
    try:
        del geom, kern
        assert gone() is None
    finally:
        gc.enable()
