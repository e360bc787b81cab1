"""Every metric of the registry: the Meter over torch CPU tensors in random batch splits
equals analyze() on the same numpy arrays to 1e-12; pass 2 over other classes or another W
is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.errors import InvalidDataError
from ncinspect.metrics.registry import REGISTRY

from ..helpers import make_data

KEYS = [spec.key for spec in REGISTRY]


def _long_tailed(seed):
    """Three large classes and three small ones (minority collapse is defined)."""
    h, y, m = make_data(C=6, d=9, n=40, seed=seed)
    keep = np.concatenate([np.flatnonzero(y == c)[: (40 if c < 3 else 8)] for c in range(6)])
    return h[keep], y[keep], m


CASES = {
    "imbalanced": lambda s: make_data(C=5, d=12, n=20, seed=s, imbalanced=True),
    "long_tailed": _long_tailed,
}


def _case(name, seed):
    h, y, m = CASES[name](seed)
    rng = np.random.default_rng(seed)
    w = m + 0.4 * rng.standard_normal(m.shape)
    b = 0.2 * rng.standard_normal(len(m))
    return h, y, w, b, rng


def _random_batches(n, rng):
    order = rng.permutation(n)
    cuts = np.sort(rng.choice(np.arange(1, n), size=int(rng.integers(1, 12)), replace=False))
    return np.split(order, cuts)


def _meter_result(h, y, w, b, rng, **options):
    meter = ncinspect.Meter(weights=torch.from_numpy(w), bias=torch.from_numpy(b), **options)
    ht, yt = torch.from_numpy(h), torch.from_numpy(y)
    for part in _random_batches(len(y), rng):
        meter.update(ht[part], yt[part])
    meter.next_pass()
    for part in _random_batches(len(y), rng):  # another split, another order
        meter.update(ht[part], yt[part])
    return meter.compute()


def _assert_equal(got, want, where):
    if want is None or isinstance(want, bool):
        assert got == want, where
    else:
        assert got is not None, where
        assert abs(got - want) <= 1e-12 * max(1.0, abs(want)), (where, got, want)


@pytest.mark.parametrize("center", ["classes", "samples"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_registry_metric_equals_analyze(center, dtype):
    defined = set()
    for name in CASES:
        for seed in (0, 1):
            h, y, w, b, rng = _case(name, seed)
            h = h.astype(dtype)
            want = ncinspect.analyze(h, y, weights=w, bias=b, center=center, per_class=True)
            got = _meter_result(h, y, w, b, rng, center=center, per_class=True)
            assert set(got.metrics) == set(want.metrics)
            for key in KEYS:
                assert key in want.metrics, key
                _assert_equal(got.metrics[key], want.metrics[key], (name, seed, key))
                if want.metrics[key] is not None:
                    defined.add(key)
            for g, r in zip(got.per_class, want.per_class, strict=True):
                for key, value in r.items():
                    if isinstance(value, float):
                        _assert_equal(g[key], value, (name, seed, "per_class", key))
            assert (got.n_samples, got.n_classes) == (want.n_samples, want.n_classes)
    # every metric had a number in some case: none was compared only as None == None
    assert defined == set(KEYS), sorted(set(KEYS) - defined)


def test_pass_two_over_a_class_pass_one_never_saw_is_refused():
    h, y, w, b, _ = _case("imbalanced", 2)
    keep = y != 3
    meter = ncinspect.Meter(weights=w, bias=b)
    meter.update(h[keep], y[keep])
    meter.next_pass()
    with pytest.raises(InvalidDataError, match="class 3, which pass 1 never saw"):
        meter.update(h, y)


def test_pass_two_with_another_classifier_is_refused():
    h, y, w, b, _ = _case("imbalanced", 3)
    wt = torch.from_numpy(w.copy())
    meter = ncinspect.Meter(weights=wt, bias=b)
    meter.update(h, y)
    meter.next_pass()
    meter.update(h, y)
    wt[0, 0] += 0.5  # an optimiser step during pass 2
    with pytest.raises(InvalidDataError, match="weights changed"):
        meter.compute()
