"""The one conversion helper: numpy, torch tensors (grad, bfloat16, float16), __array__,
DLPack; and every public entry using it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.arrays import to_host
from ncinspect.errors import NCInspectError

from ..reference import reference_metrics
from ..torchnet import direct_arrays, trained_mlp


def _close(got, ref, rtol=1e-10):
    for key, value in ref.items():
        if isinstance(value, bool) or value is None:  # None: undefined on both sides
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=rtol, abs=1e-12), key


def test_requires_grad_weights_and_tensor_labels():
    # the reported bug: weights=model.fc.weight (requires grad) raised torch's error, and
    # a detached tensor's .where method was taken for a location (AttributeError 'rsplit')
    model, x, y = trained_mlp()
    h, out, w, b = direct_arrays(model, x)
    assert model.fc.weight.requires_grad
    with torch.no_grad():
        ht = model.features(x)
    ref = reference_metrics(h, y.numpy(), W=w, b=b)
    res = ncinspect.analyze(ht, y, weights=model.fc.weight, bias=model.fc.bias)
    _close(res.metrics, ref)
    res = ncinspect.analyze(ht, y, weights=model.fc.weight.detach(), bias=model.fc.bias.detach())
    _close(res.metrics, ref)
    # features that require grad too (no torch.no_grad in the user's code)
    res = ncinspect.analyze(model.features(x), y, weights=model.fc.weight, outputs=model(x))
    assert res.metrics["nc1"] == pytest.approx(ref["nc1"], rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_tensors_convert_exactly(dtype):
    rng = np.random.default_rng(3)
    t = torch.tensor(rng.standard_normal((50, 6)), dtype=dtype)
    arr = to_host(t, "features")
    assert arr.dtype in (np.float32, np.float16)
    # exact: every value of the tensor is the value of the array
    assert torch.equal(torch.from_numpy(arr.astype(np.float64)), t.double())
    y = np.arange(50) % 5
    w = torch.tensor(rng.standard_normal((5, 6)), dtype=dtype, requires_grad=True)
    res = ncinspect.analyze(t, y, weights=w)
    ref = reference_metrics(t.double().numpy(), y, W=w.detach().double().numpy())
    _close(res.metrics, ref)


def test_array_protocol_and_dlpack_objects():
    rng = np.random.default_rng(4)
    h = rng.standard_normal((40, 3))
    y = np.arange(40) % 4

    class ViaArray:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a if dtype is None else self.a.astype(dtype)

    class ViaDLPack:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, **kw):
            return self.a.__dlpack__(**kw)

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    assert np.array_equal(to_host(ViaArray(h), "x"), h)
    assert np.array_equal(to_host(ViaDLPack(h), "x"), h)
    a = ncinspect.analyze(ViaArray(h), ViaArray(y)).metrics
    b = ncinspect.analyze(ViaDLPack(h), ViaDLPack(y)).metrics
    assert a == ncinspect.analyze(h, y).metrics == b


def test_tensor_with_conj_and_neg_bits_and_non_contiguous():
    t = torch.arange(12, dtype=torch.float64).reshape(3, 4).t()  # non-contiguous view
    assert np.array_equal(to_host(t, "x"), t.numpy())
    n = torch.arange(4.0)._neg_view()
    assert np.array_equal(to_host(n, "x"), -np.arange(4.0))


def test_unconvertible_object_is_one_line_error():
    with pytest.raises(NCInspectError) as exc:
        ncinspect.analyze(object(), [0, 1])
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("features:") and "object" in msg
    with pytest.raises(NCInspectError, match="weights"):
        ncinspect.analyze(np.ones((4, 2)), [0, 1, 0, 1], weights={"not": "an array"})


def test_writer_takes_tensors(tmp_path):
    model, x, y = trained_mlp()
    path = tmp_path / "t.h5"
    with ncinspect.DumpWriter(path, "w") as w:
        s = w.snapshot("epoch_0005", epoch=5, loss=torch.tensor(0.25))
        for idx in torch.arange(len(y)).split(50):
            h = model.features(x[idx]).bfloat16()  # requires grad and bfloat16
            s.append(features=h, labels=y[idx], outputs=model(x[idx]))
        s.write(weights=model.fc.weight, bias=model.fc.bias)
    res = ncinspect.analyze_file(path)[0]
    assert res.dtype == "float32" and res.meta["loss"] == 0.25
    with torch.no_grad():
        h = model.features(x).bfloat16().double().numpy()
        out = model(x).double().numpy()
    ref = reference_metrics(
        h,
        y.numpy(),
        W=model.fc.weight.detach().double().numpy(),
        b=model.fc.bias.detach().double().numpy(),
        outputs=out,
    )
    _close(res.metrics, ref)


def test_theory_arrays_take_tensors():
    model, x, y = trained_mlp()
    with torch.no_grad():
        h = model.features(x)
    params = [model.body[0].weight, model.body[2].weight, model.fc.weight]
    res = ncinspect.theory_arrays(h, y, params, weight_decay=1e-3, kappa=1.0)
    assert res.metrics["nc1"] is not None


def test_core_import_never_imports_torch():
    code = (
        "import sys, numpy as np, ncinspect; "
        "ncinspect.analyze(np.random.default_rng(0).standard_normal((20, 3)), np.arange(20) % 2); "
        "bad = [m for m in ('torch', 'safetensors', 'pandas') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_conversion_error_has_exit_code_3():
    err = pytest.raises(NCInspectError, to_host, object(), "features").value
    assert err.exit_code == 3


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.int64])
def test_wide_tensors_keep_their_dtype_and_every_bit(dtype):
    # float64 must never be taken for a narrow float format (its name starts with "float6")
    base = torch.arange(-6, 6, dtype=torch.float64) / 7.0
    t = (base if dtype.is_floating_point else torch.arange(-6, 6)).to(dtype)
    got = to_host(torch.nn.Parameter(t) if dtype.is_floating_point else t, "x")
    assert got.dtype == np.dtype(str(dtype).removeprefix("torch."))
    np.testing.assert_array_equal(got, t.detach().numpy())
