"""Decisions at many classes are taken tile by tile (rows x classes, ncinspect.stats.kernel):
every decision equals the float64 argmin / argmax of the distances and logits written
directly from spec/metrics.md, ties going to the first class, also when the best two
candidates lie in different tiles and when float32 cannot separate them."""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect.stats.kernel as K
from ncinspect.metrics import between_class_geometry
from ncinspect.stats.passes import FirstPass, SecondPass


def _tile_data(C=1100, d=16, n=600, delta=1e-9, seed=0):
    """Centres of equal norm (so that the NCC and the classifier with W = the centres tie
    together); the rows of class a sit on the bisector of the centres of a and of a class b
    in another tile, pushed off it by ``delta`` (far below float32 resolution); 40 classes
    share their centre with a class several tiles away (exact ties: the first must win)."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((C, d))
    M *= 3.0 / np.linalg.norm(M, axis=1)[:, None]
    M[C - 40 :] = M[:40]
    y = rng.integers(0, C, n)
    b = (y + rng.integers(C // 3, 2 * C // 3, n)) % C
    sign = rng.choice([-1.0, 1.0], n)
    h = (M[y] + M[b]) / 2 + (sign * delta)[:, None] * (M[y] - M[b])
    h[: n // 3] = M[y[: n // 3]] + rng.standard_normal((n // 3, d))  # ordinary rows too
    h[n // 3 : n // 3 + 40] = M[C - 40 :] * 1.001  # nearest: a tied pair, across tiles
    return h, y, M


def _direct(h, M):
    """argmin_c ||h - m_c||^2 and argmax_c w_c . h (W = M) in float64, first on ties. Both
    sums are numpy's over the last axis, the same operations for every class: ``h @ M.T``
    (BLAS) may round two equal columns apart (an AVX-512 kernel forms the last columns of a
    product in another order), and then no longer ties the equal classes."""
    dist = ((h[:, None, :] - M[None, :, :]) ** 2).sum(axis=2)
    return np.argmin(dist, axis=1), np.argmax((h[:, None, :] * M[None, :, :]).sum(axis=2), axis=1)


@pytest.mark.parametrize("tile_bytes", [32 * 256 * 4, 32 * 300 * 4 + 4, K._TILE_BYTES])
@pytest.mark.parametrize("stored_outputs", [False, True])
def test_tiled_decisions_equal_the_direct_float64_ones(monkeypatch, tile_bytes, stored_outputs):
    monkeypatch.setattr(K, "_TILE_BYTES", tile_bytes)  # 5 tiles, 4 uneven ones, one
    h, y, M = _tile_data()
    C, W = M.shape[0], M
    ncc_ref, clf_ref = _direct(h, M)
    assert np.all(ncc_ref[200:240] < 40) and np.all(clf_ref[200:240] < 40)  # the tied pairs
    # the test can fail: float32 alone decides many of these rows otherwise
    h32, W32 = h.astype(np.float32), W.astype(np.float32)
    assert np.mean(np.argmax(h32 @ W32.T, axis=1) != clf_ref) > 0.1
    first = FirstPass.of_chunk(h, y, C)
    geom = between_class_geometry(first, weights=W, ncc_centres=M)
    outputs = np.random.default_rng(1).random((len(y), C)) if stored_outputs else None
    got = SecondPass.of_chunk(geom, h, y, outputs)
    kern = geom.kernels[outputs is None]
    assert not kern.ncc64 and (kern.logits64 != stored_outputs)  # the float32 paths ran
    np.testing.assert_array_equal(got.ncc_correct, np.bincount(y[ncc_ref == y], minlength=C))
    np.testing.assert_array_equal(got.clf_correct, np.bincount(y[clf_ref == y], minlength=C))
    np.testing.assert_array_equal(got.agree, np.bincount(y[clf_ref == ncc_ref], minlength=C))


def test_best_two_is_argmax_and_the_runner_up():
    """Per row: numpy's argmax (first index, NaN first), the largest value and the largest
    of the others, over tiles of any width."""
    rng = np.random.default_rng(2)
    m, k = 40, 1000
    v = rng.integers(-30, 30, (m, k)).astype(np.float32)  # many exact ties
    v[3, 700:] = 100.0  # the best tied across tiles
    v[4] = -np.inf
    v[5, 10] = np.nan
    v[6, 999] = np.inf
    for width in (1, 7, 256, 999, 1000):
        tiles = ((a, v[:, a : a + width].copy()) for a in range(0, k, width))
        best, top, second, big = K._best_two(tiles, lambda a, t: t, m, absmax=True)
        np.testing.assert_array_equal(best, np.argmax(v, axis=1))
        np.testing.assert_array_equal(top, v[np.arange(m), np.argmax(v, axis=1)])
        ok = ~np.isnan(v).any(axis=1)
        srt = np.sort(v[ok], axis=1)
        np.testing.assert_array_equal(second[ok], srt[:, -2])
        np.testing.assert_array_equal(big[ok], np.abs(v[ok]).max(axis=1))


def test_scores32_tiles_are_the_product():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((32, 16)).astype(np.float32)
    right = rng.standard_normal((16, 900)).astype(np.float32)
    s = K.Scores32(x, right)[:, 100:]
    assert s.shape == (32, 800)
    import threading

    got = np.concatenate([t.copy() for _, t in s.tiles(threading.local())], axis=1)
    np.testing.assert_allclose(got, x @ right[:, 100:], rtol=1e-5, atol=1e-5)
    with pytest.raises(IndexError):
        s[1:, :]


def test_first_twins_maps_each_row_to_the_lowest_equal_one():
    rows = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [0.0, 0.0], [-0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_array_equal(K.first_twins(rows), [0, 1, 0, 3, 3, 1])  # -0.0 is 0.0
    assert K.first_twins(rows[:2]) is None and K.first_twins(rows[:1]) is None
    keep = np.array([False, True, True, True, True, True])  # row 0 is not a candidate
    np.testing.assert_array_equal(K.first_twins(rows, keep), [0, 1, 2, 3, 3, 1])
    # many rows (the hashed path) give what a few (the bytes of each) give
    rng = np.random.default_rng(4)
    many = np.vstack([rows, rng.standard_normal((400, 2)), rows])
    twins = K.first_twins(many)
    np.testing.assert_array_equal(twins[:6], [0, 1, 0, 3, 3, 1])
    np.testing.assert_array_equal(twins[6:406], np.arange(6, 406))
    np.testing.assert_array_equal(twins[406:], [0, 1, 0, 3, 3, 1])
    np.testing.assert_array_equal(
        K.first_twins(many, np.arange(412) >= 3)[406:], [406, 5, 406, 3, 3, 5]
    )
    rng = np.random.default_rng(3)
    big = rng.standard_normal((5000, 7))
    assert K.first_twins(big) is None
    big[4999] = big[17]
    twins = K.first_twins(big)
    assert twins[4999] == 17 and np.array_equal(twins[:4999], np.arange(4999))


def test_equal_classifier_rows_tie_to_the_lowest_class_on_the_meter_too():
    """The namespace kernel (the Meter's, here on torch CPU tensors) decides the same as the
    numpy one and as the spec's rule: classes with equal rows of W tie, the lowest wins."""
    import torch

    import ncinspect

    h, y, M = _tile_data(C=300, n=400)
    meter = ncinspect.Meter(weights=torch.from_numpy(M), n_classes=300)
    for _ in range(2):
        meter.update(torch.from_numpy(h), torch.from_numpy(y))
        if meter.pass_number == 1:
            meter.next_pass()
    got = meter.compute().metrics
    local = ncinspect.analyze(h, y, weights=M).metrics
    assert got["accuracy_classifier"] == local["accuracy_classifier"]
    assert got["nc4_ncc_mismatch"] == local["nc4_ncc_mismatch"]
    _, clf_exact = _direct(h, M)
    assert local["accuracy_classifier"] == np.mean(clf_exact == y)
