"""The Meter on numpy, array-api-strict and torch batches equals analyze() on numpy arrays."""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect

from ..helpers import make_data


def _same(a, b, rtol=1e-12):
    assert set(a.metrics) == set(b.metrics)
    for key, value in b.metrics.items():
        got = a.metrics[key]
        if value is None or isinstance(value, bool):
            assert got == value, key
        else:
            assert got == pytest.approx(value, rel=rtol, abs=1e-13), key


@pytest.mark.parametrize("seed", [0, 1])
def test_meter_in_random_batches_equals_analyze(backend, seed):
    h, y, m = make_data(C=5, d=14, n=40, seed=seed, imbalanced=True)
    rng = np.random.default_rng(seed)
    w, b = m + 0.3 * rng.standard_normal(m.shape), 0.1 * rng.standard_normal(5)
    ref = ncinspect.analyze(h, y, weights=w, bias=b, per_class=True)
    meter = ncinspect.Meter(weights=backend(w), bias=backend(b), per_class=True)
    for _ in range(2):
        cuts = np.sort(rng.choice(np.arange(1, len(y)), size=5, replace=False))
        for part in np.split(rng.permutation(len(y)), cuts):  # another split in each pass
            meter.update(backend(h[part], "float32" if seed else None), backend(y[part]))
        if meter.pass_number == 1:
            meter.next_pass()
    res = meter.compute()
    if seed:  # float32 batches: compare with analyze of the same float32 values
        ref = ncinspect.analyze(h.astype(np.float32), y, weights=w, bias=b, per_class=True)
    _same(res, ref)
    for got, want in zip(res.per_class, ref.per_class, strict=True):
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-13), key


def test_meter_checks_device_batches(backend):
    """Shapes and dtypes are refused at update(); values (labels, NaN) of device batches
    are counted on the device and refused at the end of the pass (host rows: at once)."""
    from ncinspect.errors import InvalidDataError, ShapeMismatchError, UnsupportedDtypeError

    h, y, m = make_data(C=3, d=6, n=10)
    for labels, match in ((y + 1, "label 3 is not in"), (y - 1, "label -1 is not in")):
        meter = ncinspect.Meter(weights=backend(m))
        with pytest.raises(InvalidDataError, match=match):
            meter.update(backend(h), backend(labels))
            meter.next_pass()
    meter = ncinspect.Meter(weights=backend(m))
    with pytest.raises(InvalidDataError, match="integers"):
        meter.update(backend(h), backend(y + 0.5))
        meter.next_pass()
    meter = ncinspect.Meter(weights=backend(m))
    with pytest.raises(ShapeMismatchError, match="2-D"):
        meter.update(backend(h[0]), backend(y[:1]))
    with pytest.raises(UnsupportedDtypeError, match="dtype"):
        meter.update(backend(h > 0), backend(y))
    bad = h.copy()
    bad[2, 1] = np.nan
    meter.update(backend(h[:5]), backend(y[:5]))
    meter.update(backend(bad), backend(y))
    with pytest.raises(InvalidDataError, match="1 row.* NaN/Inf values, first at row 7"):
        meter.next_pass()
    meter = ncinspect.Meter(weights=backend(m))
    meter.update(backend(h), backend(y))
    meter.next_pass()
    with pytest.raises(InvalidDataError, match="NaN"):
        meter.update(backend(bad), backend(y))
        meter.compute()
    # float labels that are integers in value are taken as such
    meter = ncinspect.Meter(weights=backend(m))
    meter.update(backend(h), backend(y.astype(np.float64)))
    meter.next_pass()
    meter.update(backend(h), backend(y))
    _same(meter.compute(), ncinspect.analyze(h, y, weights=m))
