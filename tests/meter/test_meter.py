"""The streaming Meter equals analyze() on the same rows, in any batch split, from tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.errors import InvalidDataError, UsageError

from ..helpers import make_data


def _data(seed=0, C=5, d=12):
    h, y, m = make_data(C=C, d=d, n=30, seed=seed, imbalanced=True)
    rng = np.random.default_rng(seed)
    w = m + 0.3 * rng.standard_normal(m.shape)
    b = 0.1 * rng.standard_normal(C)
    return h, y, w, b


def _splits(n, rng, k=6):
    cuts = np.sort(rng.choice(np.arange(1, n), size=k, replace=False))
    return np.split(np.arange(n), cuts)


def _run(meter, h, y, parts):
    for p in parts:
        meter.update(h[p], y[p])
    meter.next_pass()
    for p in parts:
        meter.update(h[p], y[p])
    return meter.compute()


def _same(a, b, rtol=1e-12):
    assert set(a.metrics) == set(b.metrics)
    for key, value in b.metrics.items():
        got = a.metrics[key]
        if value is None or isinstance(value, bool):
            assert got == value, key
        else:
            assert got == pytest.approx(value, rel=rtol, abs=1e-13), key


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_meter_over_torch_batches_equals_analyze(seed):
    h, y, w, b = _data(seed)
    ref = ncinspect.analyze(h, y, weights=w, bias=b, per_class=True)
    rng = np.random.default_rng(seed)
    ht, yt = torch.from_numpy(h), torch.from_numpy(y)
    wt = torch.nn.Parameter(torch.from_numpy(w))  # requires grad, as model.fc.weight
    meter = ncinspect.Meter(weights=wt, bias=torch.from_numpy(b), per_class=True)
    res = _run(meter, ht, yt, _splits(len(y), rng))
    _same(res, ref)
    for got, want in zip(res.per_class, ref.per_class, strict=True):
        assert got["class"] == want["class"]
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-13), key
    assert res.n_samples == ref.n_samples and res.n_classes == ref.n_classes


def test_batch_split_and_merged_meters_give_the_same_numbers():
    h, y, w, b = _data(3)
    rng = np.random.default_rng(3)
    one = _run(ncinspect.Meter(weights=w, bias=b), h, y, [np.arange(len(y))])
    split = _run(ncinspect.Meter(weights=w, bias=b), h, y, _splits(len(y), rng, k=9))
    _same(split, one)
    # two "processes", each with half of the rows
    half = len(y) // 2
    a, c = ncinspect.Meter(weights=w, bias=b), ncinspect.Meter(weights=w, bias=b)
    a.update(h[:half], y[:half])
    c.update(h[half:], y[half:])
    a.merge(c)
    a.next_pass()
    c.load_state_dict(a.state_dict())  # pass 1 of both, as all_reduce_meter shares it
    a.update(h[:half], y[:half])
    c.update(h[half:], y[half:])
    _same(a.merge(c).compute(), one)


def test_absent_classes_and_no_classifier():
    h, y, w, b = _data(4, C=6)
    keep = y != 2
    ref = ncinspect.analyze(h[keep], y[keep], weights=w, bias=b)
    _same(_run(ncinspect.Meter(weights=w, bias=b), h[keep], y[keep], [np.arange(keep.sum())]), ref)
    ref = ncinspect.analyze(h, y)
    _same(_run(ncinspect.Meter(n_classes=6), h, y, [np.arange(len(y))]), ref)


def test_pass_two_must_see_the_same_rows_and_weights():
    h, y, w, b = _data(5)
    meter = ncinspect.Meter(weights=w)
    meter.update(h, y)
    meter.next_pass()
    meter.update(h[:10], y[:10])
    with pytest.raises(InvalidDataError, match="same rows"):
        meter.compute()
    wt = torch.from_numpy(w.copy())
    meter = ncinspect.Meter(weights=wt)
    meter.update(h, y)
    wt += 1.0  # an optimiser step between the passes
    with pytest.raises(InvalidDataError, match="changed"):
        meter.next_pass()


def test_usage_errors():
    h, y, w, _ = _data(6)
    with pytest.raises(UsageError):
        ncinspect.Meter()
    meter = ncinspect.Meter(weights=w)
    with pytest.raises(UsageError):
        meter.compute()
    with pytest.raises(InvalidDataError, match="not in"):
        meter.update(h, y + 10)
    with pytest.raises(UsageError):
        meter.next_pass()  # nothing seen
    meter.update(h, y)
    meter.next_pass()
    meter.reset()
    assert meter.pass_number == 1 and meter.first is None


def test_pass_two_over_other_features_is_refused():
    h, y, w, _ = _data(7)
    meter = ncinspect.Meter(weights=w)
    meter.update(h, y)
    meter.next_pass()
    meter.update(h[::-1] + 0.5, y[::-1])  # same class counts, other rows
    with pytest.raises(InvalidDataError, match="other features"):
        meter.compute()
    meter = ncinspect.Meter(weights=w)
    meter.update(h, y)
    meter.next_pass()
    meter.update(h[::-1], y[::-1])  # the same rows in another order: fine
    assert meter.compute().metrics["nc1"] is not None
    bad = h.copy()
    bad[3, 0] = np.nan
    meter = ncinspect.Meter(weights=w)
    meter.update(h, y)
    meter.next_pass()
    with pytest.raises(InvalidDataError, match="NaN"):
        meter.update(bad, y)


def test_meters_with_other_settings_do_not_merge_and_inputs_are_checked():
    h, y, w, b = _data(8)
    with pytest.raises(InvalidDataError, match="bias"):
        ncinspect.Meter(weights=w).merge(ncinspect.Meter(weights=w, bias=b))
    with pytest.raises(InvalidDataError, match="same classes"):
        ncinspect.Meter(n_classes=3).merge(ncinspect.Meter(n_classes=4))
    with pytest.raises(UsageError, match="center"):
        ncinspect.Meter(weights=w).merge(ncinspect.Meter(weights=w, center="samples"))
    with pytest.raises(UsageError, match="center must be 'classes' or 'samples'"):
        ncinspect.Meter(weights=w, center="median")
    for kwargs in ({"weights": w, "n_classes": 9}, {"n_classes": -3}, {"bias": b, "n_classes": 5}):
        with pytest.raises(UsageError):
            ncinspect.Meter(**kwargs)
    from ncinspect.errors import UnsupportedDtypeError

    with pytest.raises(UnsupportedDtypeError):
        ncinspect.Meter(weights=w + 1j)
    meter = ncinspect.Meter(weights=w)
    with pytest.raises(UnsupportedDtypeError):
        meter.update(h + 1j, y)
    with pytest.raises(UnsupportedDtypeError):
        meter.update(h, y.astype(str))
