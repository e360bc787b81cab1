"""String labels: the Meter says what to pass (not a raw torch TypeError), and an in-memory
analyze() says to pass class_names= (no dump exists to record them in)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.errors import UnsupportedDtypeError
from ncinspect.inputs import NO_CLASS_ORDER, NO_CLASS_ORDER_ARRAYS


@pytest.mark.parametrize("kind", ["numpy", "list", "object"])
@pytest.mark.parametrize("features", ["torch", "numpy"])
def test_meter_string_labels_say_what_to_pass(kind, features):
    y = np.array(["cat", "dog"] * 5)
    labels = {"numpy": y, "list": list(y), "object": y.astype(object)}[kind]
    h = torch.randn(10, 3) if features == "torch" else np.random.default_rng(0).normal(size=(10, 3))
    meter = ncinspect.Meter(weights=np.eye(2, 3))
    with pytest.raises(UnsupportedDtypeError, match="integer labels.*class_names"):
        meter.update(h, labels)
    meter.update(h, np.searchsorted(["cat", "dog"], y))  # what the message says works


def test_analyze_in_memory_string_labels_point_to_class_names():
    rng = np.random.default_rng(0)
    y = np.array(["cat", "dog", "eel"] * 10)
    h = rng.normal(size=(30, 4))
    w = rng.normal(size=(3, 4))
    res = ncinspect.analyze(h, y, weights=w)
    assert res.metrics["nc3_self_duality"] is None
    assert res.null_reasons["nc3_self_duality"] == NO_CLASS_ORDER_ARRAYS
    assert "dump" not in NO_CLASS_ORDER_ARRAYS and "class_names=" in NO_CLASS_ORDER_ARRAYS
    assert NO_CLASS_ORDER != NO_CLASS_ORDER_ARRAYS
    named = ncinspect.analyze(h, y, weights=w, class_names=["cat", "dog", "eel"])
    assert named.metrics["nc3_self_duality"] is not None
