"""A Meter's live bias, round six (issue 22 item 12's class): a bias given as a live tensor
that becomes NaN, or that the optimiser moves, between the passes.

The weights were checked at ``next_pass``/``compute`` (not finite: said so; changed: said
so), the bias was not: the meter measured the copy made when it was built, a classifier
other than the model's, silently."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.errors import InvalidDataError

from ..helpers import make_data


def _bias(kind: str, values):
    return torch.tensor(values, dtype=torch.float32) if kind == "torch" else np.array(values)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("when", ["next_pass", "compute"])
def test_a_bias_that_becomes_non_finite_is_named_as_such(kind, bad, when):
    h, y, m = make_data(C=3, d=4, n=10)
    bias = _bias(kind, [0.0, 0.0, 0.0])
    meter = ncinspect.Meter(weights=m, bias=bias)
    meter.update(h, y)
    if when == "compute":
        meter.next_pass()
        meter.update(h, y)
    bias[1] = bad
    with pytest.raises(InvalidDataError, match="classifier bias is not finite") as info:
        getattr(meter, when)()
    assert "changed since" not in str(info.value) and "index 1" in str(info.value)


@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_a_bias_that_moves_between_the_passes_is_refused(kind):
    h, y, m = make_data(C=3, d=4, n=10)
    bias = _bias(kind, [0.0, 0.0, 0.0])
    meter = ncinspect.Meter(weights=torch.tensor(m), bias=bias)
    meter.update(h, y)
    bias[0] = 0.5  # an optimiser step between the passes
    with pytest.raises(InvalidDataError, match="classifier bias changed since the meter"):
        meter.next_pass()


def test_a_fixed_bias_still_measures():
    h, y, m = make_data(C=3, d=4, n=10)
    meter = ncinspect.Meter(weights=torch.tensor(m), bias=torch.zeros(3))
    for _ in range(2):
        meter.update(h, y)
        if meter.pass_number == 1:
            meter.next_pass()
    assert meter.compute().metrics["nc1"] is not None


@pytest.mark.parametrize(
    "labels, shown",
    [
        (np.array([0, 1, 2**64 - 1], dtype=np.uint64), str(2**64 - 1)),
        (np.array([0, 1, 2**63], dtype=np.uint64), str(2**63)),
        (np.array([0.0, 1.0, 1e30]), str(int(1e30))),
        (np.array([0, 1, -1], dtype=np.int8), "-1"),
        (np.array([0, 1, 3], dtype=np.uint8), "3"),
    ],
)
def test_a_label_out_of_range_is_named_as_given(labels, shown):
    """Labels beyond int64 (uint64 sentinels, huge floats) were cast first and named as the
    value they wrapped to ('label -1 is not in [0, 3)' for 2^64 - 1)."""
    h, _, m = make_data(C=3, d=4, n=3)
    meter = ncinspect.Meter(weights=m)
    with pytest.raises(InvalidDataError) as info:
        meter.update(h[:3], labels)
    assert f"label {shown} is not in [0, 3)" in str(info.value)
