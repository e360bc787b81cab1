"""A pass-2 state on a device keeps each batch's SQI sums as one row and folds the rows into
its fields every ``FOLD_EVERY`` batches and before any read (``SecondState.settle``): the
numbers are those of a merge batch by batch, whatever the moment they are read at."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.errors import InvalidDataError
from ncinspect.stats import device as stats_device
from ncinspect.stats.protocol import NUMPY, fold_moments, merge_moments

from ..helpers import make_data

SQI = ("sqi_eps1", "sqi_eps2", "sqi_delta", "sqi_ratio", "mse", "interpolates")


def _rows(rng, k, empty=()):
    """(k, 2, 3) moments of random blocks (count, mean, m2), some empty (all zeros)."""
    rows = np.zeros((k, 2, 3))
    for i in range(k):
        if i in empty:
            continue
        for j in range(2):
            x = rng.normal(1.0 - j, 10.0 ** rng.uniform(-8, 0), rng.integers(1, 40))
            rows[i, j] = [x.size, x.mean(), np.square(x - x.mean()).sum()]
    return rows


@pytest.mark.parametrize("start_empty", [True, False])
def test_fold_equals_merging_row_by_row(start_empty):
    rng = np.random.default_rng(4)
    rows = _rows(rng, 50, empty=(0, 7, 49))
    state = np.zeros((2, 3)) if start_empty else _rows(rng, 1)[0]
    want = state
    for r in rows:
        want = merge_moments(NUMPY, want, r)
    got = fold_moments(NUMPY, state, rows)
    np.testing.assert_allclose(got[..., 0], want[..., 0], rtol=0, atol=0)
    np.testing.assert_allclose(got[..., 1], want[..., 1], rtol=1e-14)
    np.testing.assert_allclose(got[..., 2], want[..., 2], rtol=1e-12)


def test_fold_of_one_row_onto_nothing_is_that_row_and_nothing_changes_nothing():
    rng = np.random.default_rng(5)
    row = _rows(rng, 1)
    assert np.array_equal(fold_moments(NUMPY, np.zeros((2, 3)), row), row[0])
    state = _rows(rng, 1)[0]
    assert np.array_equal(fold_moments(NUMPY, state, np.zeros((3, 2, 3))), state)


def _data(seed, C=6, d=10, n=600):
    h, y, m = make_data(C=C, d=d, n=n // C, seed=seed)
    rng = np.random.default_rng(seed)
    return h, y, m + 0.2 * rng.standard_normal(m.shape), 0.1 * rng.standard_normal(C)


def _same_sqi(got, want):
    for key in SQI:
        if isinstance(want.metrics[key], bool):
            assert got.metrics[key] == want.metrics[key], key
        else:
            assert got.metrics[key] == pytest.approx(want.metrics[key], rel=1e-12), key


def feed(parts, h, y, size):
    """Each meter of ``parts`` its rows ``lo:hi``, in batches of ``size``."""
    for m, lo, hi in parts:
        for s in range(lo, hi, size):
            e = min(s + size, hi)
            m.update(torch.from_numpy(h[s:e]), torch.from_numpy(y[s:e]))


@pytest.mark.parametrize("batch", [4, 9])  # 150 and 67 batches a pass: past FOLD_EVERY
def test_device_meter_over_many_batches_equals_analyze(monkeypatch, batch):
    monkeypatch.setattr(stats_device, "on_host", lambda xp, h: False)  # the device kernel
    h, y, w, b = _data(7)
    assert len(y) // batch > stats_device.FOLD_EVERY
    meter = ncinspect.Meter(weights=torch.from_numpy(w), bias=torch.from_numpy(b))
    feed([(meter, 0, len(y))], h, y, batch)
    meter.next_pass()
    feed([(meter, 0, len(y))], h, y, batch)
    assert meter._s2.pending  # rows were pending when compute() read the state
    _same_sqi(meter.compute(), ncinspect.analyze(h, y, weights=w, bias=b))


def test_pending_rows_are_folded_before_a_merge_and_a_state_dict(monkeypatch):
    """Two meters in pass 2, each with pending rows, merged, and one saved and loaded mid-way:
    the same SQI numbers as one meter over every batch."""
    monkeypatch.setattr(stats_device, "on_host", lambda xp, h: False)
    h, y, w, b = _data(8, n=300)
    wt, bt = torch.from_numpy(w), torch.from_numpy(b)
    one = ncinspect.Meter(weights=wt, bias=bt)
    a, c = ncinspect.Meter(weights=wt, bias=bt), ncinspect.Meter(weights=wt, bias=bt)
    half = len(y) // 2
    parts = ((one, 0, len(y)), (a, 0, half), (c, half, len(y)))
    feed(parts, h, y, 10)
    one.next_pass()
    a.merge(c).next_pass()
    c.load_state_dict(a.state_dict())
    feed(parts, h, y, 10)
    assert a._s2.pending and c._s2.pending
    saved = ncinspect.Meter(weights=wt, bias=bt).load_state_dict(c.state_dict())
    assert not c._s2.pending  # the state dict read the folded fields
    _same_sqi(a.merge(saved).compute(), one.compute())


@pytest.mark.parametrize("where", ["torch", "as on a device"])
def test_check_counts_over_many_batches_name_the_first_row_and_the_label(monkeypatch, where):
    """The check counts of each batch are kept as rows too (folded every FOLD_EVERY batches):
    past several folds, the pass-end refusal names the first bad row and the bad labels."""
    if where == "as on a device":
        monkeypatch.setattr(stats_device, "on_host", lambda xp, h: False)
    h, y, w, b = _data(9)
    n_batches = len(y) // 4
    assert n_batches > 2 * stats_device.FOLD_EVERY
    bad = h.copy()
    bad[4 * 140 + 1, 2] = np.nan  # batch 140, past two folds
    bad[4 * 141, 0] = np.inf
    meter = ncinspect.Meter(weights=torch.from_numpy(w))
    feed([(meter, 0, len(y))], bad, y, 4)
    first = r"2 row\(s\) of pass 1 hold NaN/Inf values, first at row 561"
    with pytest.raises(InvalidDataError, match=first):
        meter.next_pass()
    labels = y.copy()
    labels[4 * 3] = -2  # batch 3: the smallest, before any fold
    labels[4 * 100 + 2] = 11  # batch 100: the largest, after the first fold
    meter = ncinspect.Meter(weights=torch.from_numpy(w))
    feed([(meter, 0, len(y))], h, labels, 4)
    with pytest.raises(InvalidDataError, match=r"label -2 is not in \[0, 6\)"):
        meter.next_pass()
