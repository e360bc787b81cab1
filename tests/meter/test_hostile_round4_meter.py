"""Hostile round four, class 7 (bounds on integer settings) in the Meter: ``n_classes``
beyond what numpy can shape exited with numpy's ValueError at the first batch, and
``min_class_count`` was never checked (``-5`` and ``0`` ran as 1); both are now the same
UsageError the file analyses give, when the meter is made."""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect
from ncinspect.errors import UsageError

from ..helpers import make_data


@pytest.mark.parametrize("n_classes", [2**31, 2**64 + 5])
def test_meter_refuses_n_classes_beyond_the_bound(n_classes):
    with pytest.raises(UsageError, match="n_classes must be at most"):
        ncinspect.Meter(n_classes=n_classes)


@pytest.mark.parametrize("k", [-5, 0, 2.0, True, "3"])
def test_meter_checks_min_class_count_as_the_analyses_do(k):
    with pytest.raises(UsageError, match="min_class_count must be an integer >= 1"):
        ncinspect.Meter(n_classes=3, min_class_count=k)
    h, y, _ = make_data(C=3, d=5, n=10)
    with pytest.raises(UsageError, match="min_class_count must be an integer >= 1"):
        ncinspect.analyze(h, y, min_class_count=k)


def test_meter_with_valid_settings_still_measures():
    h, y, m = make_data(C=3, d=5, n=10)
    meter = ncinspect.Meter(n_classes=3, min_class_count=np.int64(2))
    for _ in range(2):
        meter.update(h, y)
        if meter.pass_number == 1:
            meter.next_pass()
    ref = ncinspect.analyze(h, y)
    assert meter.compute().metrics["nc1"] == pytest.approx(ref.metrics["nc1"], rel=1e-12)
