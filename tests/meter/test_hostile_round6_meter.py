"""A Meter's live bias, round six (issue 22 item 12's class): a bias given as a live tensor
that becomes NaN, or that the optimiser moves, between the passes.

The weights were checked at ``next_pass``/``compute`` (not finite: said so; changed: said
so), the bias was not: the meter measured the copy made when it was built, a classifier
other than the model's, silently."""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect
from ncinspect.errors import InvalidDataError

from ..helpers import make_data

torch = pytest.importorskip("torch")


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
