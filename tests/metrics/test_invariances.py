"""Invariances of every metric, driven by the registry: each (metric, transformation) pair
the registry declares must hold, and each it does not declare must really move the value
(so a wrong declaration, or a transformation that does nothing, fails a test).

Transformations (:data:`ncinspect.metrics.registry.INVARIANCES`): ``sample_order`` (rows
shuffled), ``permutation`` (classes relabelled: labels, rows of W and of b together),
``rotation`` (features and W rotated by one orthogonal Q, OOD features too),
``feature_scale`` (features times a > 0, OOD features too) and ``weight_scale`` (W and b
times a > 0).
"""

from __future__ import annotations

import numpy as np
import pytest

from ncinspect.analysis.api import analyze
from ncinspect.analysis.regression import analyze_regression
from ncinspect.metrics.registry import (
    BY_KEY,
    INVARIANCES,
    OOD_REGISTRY,
    REGISTRY,
    REGRESSION_REGISTRY,
    SPECTRA_REGISTRY,
)

RTOL, ATOL = 1e-8, 1e-12
#: transformations that apply to a regression snapshot (no classes to relabel)
REGRESSION_INVARIANCES = ("feature_scale", "weight_scale", "rotation", "sample_order")


def _close(got, ref, key, inv):
    assert ref is not None, key  # the example defines every metric
    if BY_KEY[key].kind == "bool":
        assert got == ref, (key, inv)
    else:
        assert got is not None, (key, inv)
        assert abs(got - ref) <= ATOL + RTOL * abs(ref), (key, inv, got, ref)


def _moved(got, ref, key, inv):
    assert got is not None and ref is not None, (key, inv)
    assert abs(got - ref) > 1e-6 * abs(ref), (key, inv, got, ref)


# ---------------------------------------------------------------------------------------
# classification snapshots (REGISTRY) and the OOD metric (OOD_REGISTRY)
# ---------------------------------------------------------------------------------------
def _imbalanced(seed=5):
    """Imbalanced classes (three minority classes), an offset, a bias, an OOD set."""
    rng = np.random.default_rng(seed)
    C, d = 6, 9
    counts = np.array([60, 55, 50, 12, 9, 7])
    centres = 2.0 * rng.standard_normal((C, d))
    y = np.repeat(np.arange(C), counts)
    h = centres[y] + 0.8 * rng.standard_normal((len(y), d)) + 1.5
    w = centres + 0.5 * rng.standard_normal((C, d))
    b = 0.3 * rng.standard_normal(C)
    ood = rng.standard_normal((40, d)) + rng.standard_normal(d)
    return h, y, w, b, ood


def _transform(kind, h, y, w, b, ood):
    rng = np.random.default_rng(9)
    if kind == "sample_order":
        perm, perm_ood = rng.permutation(len(y)), rng.permutation(len(ood))
        assert np.any(perm != np.arange(len(y)))
        return h[perm], y[perm], w, b, ood[perm_ood]
    if kind == "feature_scale":
        return 2.5 * h, y, w, b, 2.5 * ood
    if kind == "weight_scale":
        return h, y, 0.3 * w, 0.3 * b, ood
    if kind == "rotation":
        q = np.linalg.qr(rng.standard_normal((h.shape[1], h.shape[1])))[0]
        return h @ q.T, y, w @ q.T, b, ood @ q.T
    assert kind == "permutation"
    perm = np.array([4, 2, 5, 0, 3, 1])  # class c becomes class perm[c]
    inv = np.argsort(perm)
    return h, perm[y], w[inv], b[inv], ood


def _analyze(h, y, w, b, ood):
    return analyze(h, y, weights=w, bias=b, ood_features=ood, spectra=True).metrics


_BASE: dict = {}


def _base():
    if not _BASE:
        _BASE.update(_analyze(*_imbalanced()))
    return _BASE


CLASSIFICATION = (*REGISTRY, *OOD_REGISTRY, *SPECTRA_REGISTRY)
INVARIANT = [(m.key, inv) for m in CLASSIFICATION for inv in INVARIANCES if inv in m.invariances]
#: not declared invariant, and continuous (decisions, booleans and the fraction of OOD rows
#: above one threshold, FPR95, may not move on one example)
VARIANT = [
    (m.key, inv)
    for m in CLASSIFICATION
    for inv in INVARIANCES
    if inv not in m.invariances
    and m.kind == "float"
    and m.group != "NC4"
    and not m.key.startswith("ood_fpr95")
]


def test_every_metric_is_covered():
    keys = {k for k, _ in INVARIANT}
    assert keys == {m.key for m in CLASSIFICATION}
    assert all("sample_order" in m.invariances for m in (*CLASSIFICATION, *REGRESSION_REGISTRY))
    assert VARIANT, "some metric is scale-dependent: the other direction is tested too"
    # every regression metric holds every transformation that applies to it (else add a
    # test that the undeclared ones move it, as for the classification metrics)
    assert all(set(REGRESSION_INVARIANCES) <= m.invariances for m in REGRESSION_REGISTRY)


@pytest.mark.parametrize("key,inv", INVARIANT, ids=lambda v: str(v))
def test_declared_invariance_holds(key, inv):
    got = _analyze(*_transform(inv, *_imbalanced()))[key]
    _close(got, _base()[key], key, inv)


@pytest.mark.parametrize("key,inv", VARIANT, ids=lambda v: str(v))
def test_undeclared_invariance_really_fails(key, inv):
    got = _analyze(*_transform(inv, *_imbalanced()))[key]
    _moved(got, _base()[key], key, inv)


# ---------------------------------------------------------------------------------------
# regression snapshots (REGRESSION_REGISTRY)
# ---------------------------------------------------------------------------------------
def _regression(seed=4, N=120, d=9, t=3):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, 5))
    y = np.tanh(x @ rng.standard_normal((5, t))) + 0.1 * rng.standard_normal((N, t))
    w = rng.standard_normal((t, d))
    h = y @ w + 0.05 * rng.standard_normal((N, d)) + 0.3
    return h, y, w


def _transform_regression(kind, h, y, w):
    rng = np.random.default_rng(11)
    if kind == "sample_order":
        perm = rng.permutation(len(h))
        return h[perm], y[perm], w
    if kind == "feature_scale":
        return 4.0 * h, y, w
    if kind == "weight_scale":
        return h, y, 7.0 * w
    assert kind == "rotation"
    q = np.linalg.qr(rng.standard_normal((h.shape[1], h.shape[1])))[0]
    return h @ q.T, y, w @ q.T


REG_INVARIANT = [
    (m.key, inv)
    for m in REGRESSION_REGISTRY
    for inv in REGRESSION_INVARIANCES
    if inv in m.invariances
]


@pytest.mark.parametrize("key,inv", REG_INVARIANT, ids=lambda v: str(v))
def test_regression_declared_invariance_holds(key, inv):
    h, y, w = _regression()
    ref = analyze_regression(h, y, weights=w).metrics[key]
    th, ty, tw = _transform_regression(inv, h, y, w)
    _close(analyze_regression(th, ty, weights=tw).metrics[key], ref, key, inv)


# ---------------------------------------------------------------------------------------
# the transformations themselves bite
# ---------------------------------------------------------------------------------------
def test_a_transformation_that_breaks_an_invariance_is_caught():
    # the checker above is not vacuous: features shifted by a non-uniform offset per class
    # (not one of the declared transformations) move the metrics that are declared
    # invariant to everything, and _close says so
    h, y, w, b, ood = _imbalanced()
    shifted = h + 0.5 * np.eye(h.shape[1])[y % 2]
    got = _analyze(shifted, y, w, b, ood)
    with pytest.raises(AssertionError):
        _close(got["nc1"], _base()["nc1"], "nc1", "none")
