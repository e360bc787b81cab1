"""``get_namespace`` always returns a namespace: numpy's own for numpy (and plain) inputs,
without array-api-compat, and the library's for other arrays."""

from __future__ import annotations

import builtins
import sys

import array_api_strict
import numpy as np
import pytest
import torch

from ncinspect.stats.namespace import device_of, get_namespace, is_numpy, numpy_namespace


@pytest.mark.parametrize("value", [np.zeros((2, 3)), np.float32(1.0), [1, 2], (1.0,), 3, None])
def test_numpy_and_plain_inputs_get_numpy(value):
    xp = get_namespace(value)
    assert xp is numpy_namespace() and is_numpy(xp)
    assert xp is np  # numpy >= 2: the module itself is the array-API namespace


def test_other_libraries_get_their_own():
    xt = get_namespace(torch.zeros(2))
    assert xt is not None and not is_numpy(xt)
    assert xt.asarray([1.0]).__class__ is torch.Tensor
    xs = get_namespace(array_api_strict.asarray([1.0]))
    assert xs is array_api_strict and not is_numpy(xs)
    assert get_namespace(np.zeros(2), torch.zeros(2)) is xt  # numpy mixed in: the other's


def test_numpy_needs_no_array_api_compat(monkeypatch):
    """The core runs without the optional extra: a numpy lookup never imports it."""
    real_import = builtins.__import__

    def guarded(name, *args, **kwargs):
        if name.startswith("array_api_compat"):
            raise ImportError("array-api-compat is not installed")
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m.startswith("array_api_compat")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", guarded)
    x = np.ones((3, 2))
    assert get_namespace(x) is np
    assert device_of(x) == "cpu"


def test_float32_before_numpy_2_needs_array_api_compat(monkeypatch):
    """numpy < 2 without array-api-compat has no standard namespace for the float32 kernel:
    a usage error naming the extra, never an AttributeError from inside the kernel."""
    from ncinspect.errors import UsageError
    from ncinspect.stats import namespace

    monkeypatch.setattr(namespace, "_NUMPY2", False)
    monkeypatch.setattr(namespace, "numpy_namespace", lambda: np)
    with pytest.raises(UsageError, match="array-api-compat"):
        namespace.check_precision("float32")
    assert namespace.check_precision("float64") == "float64"
