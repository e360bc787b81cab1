"""The array backends every statistics test runs on: a missing one fails, never skips.

``array-api-strict`` arrays live on its non-default device ``device1``: an array the kernels
create without ``device=`` (or a numpy call on the input) fails there, so the tests catch
both numpy-only calls and computations that leave the inputs' device.
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest
import torch

#: "torch-kernel": torch CPU tensors through the namespace kernel that device arrays take
#: (CPU tensors otherwise take the numpy fast path on a zero-copy view)
BACKENDS = ["numpy", "array_api_strict", "torch", "torch-kernel"]


class Backend:
    def __init__(self, name: str):
        self.name = name

    def __call__(self, a, dtype=None):
        """Numpy ``a`` as an array of this backend (``dtype`` a numpy dtype name)."""
        a = np.ascontiguousarray(a if dtype is None else np.asarray(a).astype(dtype))
        if self.name == "numpy":
            return a
        if self.name.startswith("torch"):
            return torch.from_numpy(a)
        return array_api_strict.asarray(a, device=array_api_strict.Device("device1"))

    def __repr__(self):
        return self.name


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    if request.param == "torch-kernel":
        from ncinspect.stats import device

        monkeypatch.setattr(device, "on_host", lambda xp, h: False)
    return Backend(request.param)
