"""Meters merged across processes: state as bytes, merge in rank order, a 2-process gloo
group on CPU; all equal to one process seeing every row."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import ncinspect
from ncinspect.errors import InvalidDataError, UsageError
from ncinspect.integrations.distributed import all_reduce_meter, merge_meter_states
from ncinspect.meter.state import pack, unpack

from ..helpers import make_data


def _data(seed=0, C=5, d=10):
    h, y, m = make_data(C=C, d=d, n=25, seed=seed, imbalanced=True)
    rng = np.random.default_rng(seed)
    w = m + 0.3 * rng.standard_normal(m.shape)
    b = 0.1 * rng.standard_normal(C)
    perm = rng.permutation(len(y))
    return h[perm], y[perm], w, b


def _close(a, b):
    assert set(a) == set(b)
    for k, v in b.items():
        if v is None or isinstance(v, bool):
            assert a[k] == v, k
        else:
            assert a[k] == pytest.approx(v, rel=1e-12, abs=1e-13), k


def test_state_round_trips_through_bytes_bit_for_bit():
    h, y, w, b = _data(1)
    meter = ncinspect.Meter(weights=w, bias=b)
    meter.update(h, y)
    state = meter.state_dict()
    back = unpack(pack(state))
    assert set(back) == set(state)
    for k, v in state.items():
        if isinstance(v, np.ndarray):
            assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
        else:
            assert back[k] == v, k
    meter.next_pass()
    meter.update(h, y)
    want = meter.compute().metrics
    other = ncinspect.Meter(weights=w, bias=b).load_state_dict(unpack(pack(meter.state_dict())))
    assert other.compute().metrics == want  # identical, not merely close
    with pytest.raises(InvalidDataError, match="not a packed"):
        unpack(b"\x80\x04pickle")


def test_state_of_another_classifier_or_setting_is_refused():
    h, y, w, b = _data(2)
    meter = ncinspect.Meter(weights=w, bias=b)
    meter.update(h, y)
    state = meter.state_dict()
    with pytest.raises(InvalidDataError, match="weights_sha256"):
        ncinspect.Meter(weights=w + 1e-9, bias=b).load_state_dict(state)
    with pytest.raises(InvalidDataError, match="center"):
        ncinspect.Meter(weights=w, bias=b, center="samples").load_state_dict(state)
    with pytest.raises(UsageError):
        merge_meter_states(meter, [])


def _rank_parts(h, y, world, seed):
    owner = np.random.default_rng(seed).integers(0, world, size=len(y))
    return [np.flatnonzero(owner == r) for r in range(world)]


def test_merged_states_equal_one_process():
    h, y, w, b = _data(3)
    ref = ncinspect.analyze(h, y, weights=w, bias=b).metrics
    parts = _rank_parts(h, y, 3, seed=3)
    meters = [ncinspect.Meter(weights=w, bias=b) for _ in parts]
    for m, p in zip(meters, parts, strict=True):
        m.update(h[p], y[p])
    states = [m.state_dict() for m in meters]
    for m in meters:  # what all_reduce_meter does on every rank
        merge_meter_states(m, states)
        m.next_pass()
    for m, p in zip(meters, parts, strict=True):
        m.update(h[p], y[p])
    states = [m.state_dict() for m in meters]
    results = [merge_meter_states(m, states).compute().metrics for m in meters]
    assert results[0] == results[1] == results[2]  # bit-identical on every rank
    _close(results[0], ref)


def test_pass_two_without_a_shared_pass_one_is_refused():
    h, y, w, b = _data(4)
    parts = _rank_parts(h, y, 2, seed=4)
    meters = [ncinspect.Meter(weights=w, bias=b) for _ in parts]
    for m, p in zip(meters, parts, strict=True):
        m.update(h[p], y[p])
        m.next_pass()  # no all-reduce of pass 1: each rank has its own means
        m.update(h[p], y[p])
    with pytest.raises(InvalidDataError, match="share pass 1"):
        merge_meter_states(meters[0], [m.state_dict() for m in meters])


def test_all_reduce_needs_an_initialised_group():
    h, y, w, b = _data(5)
    with pytest.raises(UsageError, match="init_process_group"):
        all_reduce_meter(ncinspect.Meter(weights=w, bias=b))


def _worker(rank, world, init, out, seed):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        h, y, w, b = _data(seed)
        p = _rank_parts(h, y, world, seed)[rank]
        meter = ncinspect.Meter(weights=torch.from_numpy(w), bias=torch.from_numpy(b))
        for chunk in np.array_split(p, 3):
            meter.update(torch.from_numpy(h[chunk]), torch.from_numpy(y[chunk]))
        all_reduce_meter(meter)
        meter.next_pass()
        for chunk in np.array_split(p, 2):
            meter.update(torch.from_numpy(h[chunk]), torch.from_numpy(y[chunk]))
        all_reduce_meter(meter)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(meter.compute().metrics, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_group_gives_the_single_process_result(tmp_path):
    seed = 6
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_worker, args=(2, init, str(tmp_path), seed), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert got[0] == got[1]
    h, y, w, b = _data(seed)
    ref = ncinspect.analyze(h, y, weights=w, bias=b).metrics
    _close(got[0], json.loads(json.dumps(ref)))


def _worker_absent(rank, world, init, out, seed):
    """Rank 1 has no row of class 2, no rank has a row of class 4; states on the device."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        h, y, w, b = _data(seed)
        keep = y != 4
        h, y = h[keep], y[keep]
        owner = np.where(y == 2, 0, np.arange(len(y)) % world)
        p = np.flatnonzero(owner == rank)
        meter = ncinspect.Meter(weights=torch.from_numpy(w), bias=torch.from_numpy(b))
        for chunk in np.array_split(p, 3):
            meter.update(torch.from_numpy(h[chunk]).float(), torch.from_numpy(y[chunk]))
        all_reduce_meter(meter)
        assert isinstance(meter.pass_state().sums, torch.Tensor)  # reduced where it lives
        meter.next_pass()
        for chunk in np.array_split(p, 2):
            meter.update(torch.from_numpy(h[chunk]).float(), torch.from_numpy(y[chunk]))
        all_reduce_meter(meter)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(meter.compute().metrics, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_group_with_absent_classes(tmp_path):
    seed = 7
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_worker_absent, args=(2, init, str(tmp_path), seed), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert got[0] == got[1]
    h, y, w, b = _data(seed)
    keep = y != 4
    one = ncinspect.Meter(weights=w, bias=b)
    for _ in range(2):
        one.update(h[keep].astype(np.float32), y[keep])
        if one.pass_number == 1:
            one.next_pass()
    _close(got[0], json.loads(json.dumps(one.compute().metrics)))
