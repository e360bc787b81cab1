"""The class-pair sweep on an array namespace's device (metrics/pairs_xp.py) equals the numpy
sweep: every moment, sum and count, coincidences (taken again on the host) included; it
reads the device once, after the loop over tiles; a Meter on an accelerator uses it."""

from __future__ import annotations

import array_api_compat
import array_api_strict
import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.metrics import pairs_xp
from ncinspect.metrics.pairs import pair_sweep, unit_rows
from ncinspect.metrics.pairs_xp import pair_sweep_xp

from ..meter.test_meter_device import HostReads, _close, _data

_STRICT = array_api_strict.Device("device1")  # not the default: a stray array fails there
NAMESPACES = {
    "numpy": (np, None),
    "torch": (array_api_compat.array_namespace(torch.zeros(1)), torch.device("cpu")),
    "array_api_strict": (array_api_strict, _STRICT),
}


def _sets(C, d, seed, coincide=None, near=None):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((C, d))
    if coincide is not None:  # two classes with the same mean
        means[coincide[1]] = means[coincide[0]]
    if near is not None:  # two means 1e-9 apart: the product formula keeps no digit
        means[near[1]] = means[near[0]] + 1e-9 * rng.standard_normal(d)
    centred = means - means.mean(0)
    w = means + 0.3 * rng.standard_normal((C, d))
    w[C // 2] = 0.0  # a zero classifier row: a zero unit vector
    variances = rng.random(C)
    minority = rng.random(C) < 0.3
    return unit_rows(centred)[0], unit_rows(w)[0], minority, (variances, centred)


def _assert_moments(got, want, rtol):
    assert got.count == want.count
    for f in ("mean", "m2"):
        a, b = getattr(got, f), getattr(want, f)
        if np.isfinite(b):
            assert a == pytest.approx(b, rel=rtol, abs=1e-300), f
        else:
            assert not np.isfinite(a), f


def _assert_equal(got, want, rtol=1e-12):
    assert got.cdnv_scale == want.cdnv_scale
    for g, w in zip(got.units, want.units, strict=True):
        assert (g is None) == (w is None)
        if w is None:
            continue
        assert g.coincide == w.coincide and g.minority_count == w.minority_count
        for f in ("cos", "dist") + (() if w.coincide else ("log",)):
            _assert_moments(getattr(g, f), getattr(w, f), rtol)
        assert g.abs_sum == pytest.approx(w.abs_sum, rel=rtol)
        assert g.minority_sum == pytest.approx(w.minority_sum, rel=rtol, abs=1e-12)
    if want.cdnv is not None:
        assert got.cdnv.count == want.cdnv.count and got.cdnv.coincide == want.cdnv.coincide
        if not want.cdnv.coincide:
            assert got.cdnv.total1 == pytest.approx(want.cdnv.total1, rel=rtol)
            assert got.cdnv.total2 == pytest.approx(want.cdnv.total2, rel=rtol)


def _on(name):
    return NAMESPACES[name]


@pytest.mark.parametrize("name", list(NAMESPACES))
@pytest.mark.parametrize("block", [16, 45, 512])  # several tiles with a remainder; one tile
@pytest.mark.parametrize(
    "case", ["plain", "coincide", "near"], ids=["plain", "two-equal-means", "means-1e-9-apart"]
)
def test_device_sweep_equals_the_numpy_sweep(name, block, case):
    extra = {"coincide": {"coincide": (3, 40)}, "near": {"near": (7, 33)}}.get(case, {})
    mu, wu, minority, cdnv = _sets(90, 6, 1, **extra)
    want = pair_sweep([mu, wu], minority=[None, minority], cdnv=cdnv)
    xp, device = _on(name)
    got = pair_sweep_xp(xp, device, [mu, wu], minority=[None, minority], cdnv=cdnv, block=block)
    _assert_equal(got, want)
    if case == "coincide":
        assert got.units[0].coincide and got.cdnv.coincide
    if case == "near":  # taken again from the rows: the numpy sweep's exact distances
        assert got.units[0].dist.m2 == pytest.approx(want.units[0].dist.m2, rel=1e-12)


def test_device_sweep_on_a_large_power_of_two_scale():
    """Centred means near 1e300: the CDNV sums rescale by the same power of two."""
    mu, wu, minority, (var, cen) = _sets(70, 5, 2)
    cdnv = (var * 2.0**1000, cen * 2.0**500)
    want = pair_sweep([mu, None], cdnv=cdnv)
    got = pair_sweep_xp(*_on("torch"), [mu, None], cdnv=cdnv, block=32)
    assert got.cdnv_scale == want.cdnv_scale != 1.0
    _assert_equal(got, want)


def test_device_sweep_reads_the_device_once(monkeypatch):
    """No value read inside the loop over tiles: one transfer of every tile's sums after it
    (HostReads counts .item(), bool(t), float(t), nonzero and the numpy conversions)."""
    mu, wu, minority, cdnv = _sets(100, 4, 3)
    xp, device = _on("torch")
    transfers = []
    real_host = pairs_xp.host
    monkeypatch.setattr(pairs_xp, "host", lambda x: transfers.append(x.shape) or real_host(x))
    real_tile = pairs_xp._DeviceSweep.tile
    reads_in_tiles = []

    def probed_tile(self, *span):
        probe = HostReads()
        with probe:
            row = real_tile(self, *span)
        reads_in_tiles.extend(probe.reads)
        return row

    monkeypatch.setattr(pairs_xp._DeviceSweep, "tile", probed_tile)
    got = pair_sweep_xp(xp, device, [mu, wu], minority=[None, minority], cdnv=cdnv, block=16)
    n_tiles = sum(1 for i in range(0, 100, 16) for _ in range(i, 100, 16))
    assert reads_in_tiles == []
    assert transfers == [(n_tiles, 2 * 9 + 3)]  # one (tiles, sums) array, read once
    _assert_equal(got, pair_sweep([mu, wu], minority=[None, minority], cdnv=cdnv))


def test_meter_on_an_accelerator_sweeps_the_pairs_there(monkeypatch):
    """A Meter whose states are not in host memory sweeps the pairs on their device (here
    CPU tensors made to look like an accelerator's); every metric equals analyze's."""
    from ncinspect.stats.protocol import Declared

    calls = []
    real = pairs_xp.pair_sweep_xp

    def spy(xp, device, *a, **k):
        calls.append(device)
        return real(xp, device, *a, block=4, **k)  # several tiles at C = 7

    monkeypatch.setattr(pairs_xp, "pair_sweep_xp", spy)
    monkeypatch.setattr(Declared, "in_host_memory", property(lambda self: False))
    h, y, w, b = _data(4)
    meter = ncinspect.Meter(weights=torch.from_numpy(w), bias=torch.from_numpy(b))
    ht, yt = torch.from_numpy(h), torch.from_numpy(y)
    for p in range(2):
        meter.update(ht, yt)
        if p == 0:
            meter.next_pass()
    got = meter.compute()
    assert calls == [torch.device("cpu")]
    _close(got, ncinspect.analyze(h, y, weights=w, bias=b))


def test_meter_in_host_memory_keeps_the_numpy_sweep(monkeypatch):
    """numpy arrays and CPU tensors: the numpy sweep (on the host's threads)."""
    monkeypatch.setattr(pairs_xp, "pair_sweep_xp", lambda *a, **k: pytest.fail("device sweep"))
    h, y, w, b = _data(5)
    for wrap in (np.asarray, torch.from_numpy):
        meter = ncinspect.Meter(weights=wrap(w), bias=wrap(b))
        for p in range(2):
            meter.update(wrap(h), wrap(y))
            if p == 0:
                meter.next_pass()
        _close(meter.compute(), ncinspect.analyze(h, y, weights=w, bias=b))


def test_meter_on_an_accelerator_forms_the_large_c_grams_there(monkeypatch):
    """Above C = 2048 the ETF, OF and SELI errors read d x d Grams: an accelerator's Meter
    forms them on its device (each array's once), equal to analyze's values to 1e-12."""
    from ncinspect.metrics import linalg
    from ncinspect.metrics.kernels import DIRECT_MAX_C
    from ncinspect.stats.protocol import Declared

    grams = []
    real_gram = linalg._gram
    monkeypatch.setattr(linalg, "_gram", lambda u, dev: grams.append(dev) or real_gram(u, dev))
    real = pairs_xp.pair_sweep_xp
    monkeypatch.setattr(pairs_xp, "pair_sweep_xp", lambda *a, **k: real(*a, block=1024, **k))
    monkeypatch.setattr(Declared, "in_host_memory", property(lambda self: False))
    C, d = DIRECT_MAX_C + 60, 5
    rng = np.random.default_rng(8)
    means = rng.standard_normal((C, d))
    y = np.repeat(np.arange(C), 2)
    h = means[y] + 0.1 * rng.standard_normal((2 * C, d))
    w = means + 0.2 * rng.standard_normal((C, d))
    meter = ncinspect.Meter(weights=torch.from_numpy(w))
    for p in range(2):
        meter.update(torch.from_numpy(h), torch.from_numpy(y))
        if p == 0:
            meter.next_pass()
    got = meter.compute()
    assert grams and all(dev is not None and dev[1] == torch.device("cpu") for dev in grams)
    assert len(grams) == 4  # centred means, W, row-centred W, uncentred means: once each
    _close(got, ncinspect.analyze(h, y, weights=w))
