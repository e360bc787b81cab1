"""The Meter's device path as a GPU runs it, checked without one.

* On torch's ``meta`` device (no data, any op on two devices raises, reading a value raises)
  ``update`` runs both passes of the accelerator path itself, with no patch: no host read, no
  CPU array mixed into a device op, float64/int64 states on the device, and no blocking copy
  from the host (on a GPU a blocking copy waits for the stream).
* ``precision="float32"``: the float32 products stay IEEE float32 under ``torch.autocast``
  (bfloat16 products on a CPU: wrong decisions before) and with TF32 allowed (the CUDA
  setting is exercised on CPU tensors by mapping the CPU to CUDA's knob); every setting is
  restored.
* With a GPU at hand (``torch.cuda.is_available()``) the same on CUDA tensors, with torch's
  sync debug mode raising on any synchronisation, against the numpy path to 1e-12; the test
  exists only there (no skip elsewhere).
"""

from __future__ import annotations

import copy
import traceback

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ncinspect
from ncinspect.errors import InvalidDataError
from ncinspect.stats import namespace

from ..helpers import make_data
from .test_meter_device import _close, _data  # _data: class 2 absent

META = torch.device("meta")


class BlockingUploads(TorchDispatchMode):
    """Records copies from the host onto another device that are not ``non_blocking``
    (``.to``, ``asarray`` of a host array) and tensors made on a device from Python data
    (``torch.asarray(2.0, device=...)``: a hidden blocking copy, seen by wrapping the
    constructors), each with the ncinspect line that made it."""

    def __init__(self, monkeypatch):
        super().__init__()
        self.found: list[str] = []
        for name in ("asarray", "as_tensor", "tensor"):
            orig = getattr(torch, name)

            def made(obj, *a, _orig=orig, _name=name, **k):
                dev = k.get("device")
                on_dev = isinstance(obj, torch.Tensor) and obj.device.type != "cpu"
                if dev is not None and torch.device(dev).type != "cpu" and not on_dev:
                    self.found.append(f"{_name} {self._where()}")
                return _orig(obj, *a, **k)

            monkeypatch.setattr(torch, name, made)

    @staticmethod
    def _where() -> str:
        ours = [f for f in traceback.extract_stack() if "/ncinspect/" in f.filename]
        if not ours:
            return "?"
        return f"{ours[-1].filename.rsplit('/ncinspect/', 1)[-1]}:{ours[-1].lineno}"

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0]
        if name in ("_to_copy", "copy_"):
            src = args[1] if name == "copy_" else args[0]
            dst = args[0].device if name == "copy_" else kwargs.get("device")
            if (
                dst is not None
                and torch.device(dst).type != "cpu"
                and src.device.type == "cpu"
                and src.dim()  # a 0-d CPU tensor is a scalar argument, not a copy
                and not kwargs.get("non_blocking")
            ):
                self.found.append(f"{name} {self._where()}")
        return func(*args, **kwargs)


_LABELS = {
    "device": lambda y: torch.from_numpy(y).to(META),
    "device float": lambda y: torch.from_numpy(y).double().to(META),
    "numpy": lambda y: y,
    "cpu tensor": lambda y: torch.from_numpy(y),
}


def two_passes_without_sync(meter, ht, y, dev, batch: int) -> None:
    """Both passes of ``meter`` over the device rows ``ht`` in batches of ``batch``, their
    labels ``y`` (numpy) on the host and on ``dev`` in turn, each update under torch's
    sync debug mode "error" (a host synchronisation raises)."""
    for p in range(2):
        for k, a in enumerate(range(0, len(y), batch)):
            yb = torch.from_numpy(y[a : a + batch])
            yb = yb if k % 2 else yb.to(dev)
            torch.cuda.set_sync_debug_mode("error")
            try:
                meter.update(ht[a : a + batch], yb)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        if p == 0:
            meter.next_pass()


@pytest.mark.parametrize("pass_number", [1, 2])
@pytest.mark.parametrize("classifier", ["weights+bias", "weights", "none"])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_update_on_a_device_mixes_no_devices_and_waits_for_nothing(
    monkeypatch, pass_number, classifier, precision
):
    """Every option the device path branches on: float32/bfloat16/float16/float64 rows,
    labels on the device (integers or floats), in numpy or in a CPU tensor, classes absent
    (min_class_count 30 drops more), center 'samples', an empty batch. The meta device
    raises on a host read and on two devices in one op; the probe records blocking
    uploads. Pass 2 starts from a host pass 1 (its state is built on the device)."""
    h, y, w, b = _data(0)
    kw = {"n_classes": 7}
    if classifier != "none":
        kw = {"weights": w, "bias": b if classifier == "weights+bias" else None}
    dtypes, kinds = [torch.float32, torch.bfloat16, torch.float16, torch.float64], list(_LABELS)
    options = [(1, "classes"), (30, "samples")]
    # each dtype with two label kinds, each label kind with two dtypes, both option sets
    combos = [(dtypes[i % 4], kinds[(i + i // 4) % 4], options[(i // 2) % 2]) for i in range(8)]
    for dtype, labels, (min_count, center) in combos:
        meter = ncinspect.Meter(
            **kw, precision=precision, min_class_count=min_count, center=center, per_class=True
        )
        if pass_number == 2:
            meter.update(h, y)
            meter.next_pass()
        for k, (a, z) in enumerate([(0, 32), (32, 64), (64, 64)]):  # the last one empty
            hb = torch.from_numpy(h[a:z]).to(dtype).to(META)
            yb = _LABELS[labels](y[a:z])
            probe = BlockingUploads(monkeypatch)
            with probe:
                meter.update(hb, yb)
            monkeypatch.undo()
            # the first batch of pass 2 uploads the geometry's constants, non-blocking too
            assert probe.found == [], (dtype, labels, min_count, k, probe.found)
        state = meter.pass_state()
        for name, spec in state.specs():
            value = getattr(state, name)
            assert value.device == META, name
            assert str(value.dtype) == f"torch.{spec.dtype}", name


def test_uploads_to_cuda_stage_through_a_fresh_pinned_buffer(monkeypatch):
    """On CUDA a host tensor goes through a pinned buffer of torch's caching host allocator
    (kept until the copy has run), never the caller's own buffer, which may be written again
    once update() returns; then a non-blocking copy. Exercised on the meta device with the
    staging asked for (a CPU-only torch cannot pin: the pinning request is recorded)."""
    asked, sources = [], []
    real_empty, real_to = torch.empty, torch.Tensor.to

    def empty(*a, pin_memory=False, **k):
        asked.append(pin_memory)
        return real_empty(*a, **k)

    def to(self, *a, **k):
        sources.append((self, self.clone()))
        return real_to(self, *a, **k)

    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.Tensor, "to", to)
    y = torch.arange(5)
    out = namespace.torch_upload(y, META, stage=True)
    ((src, seen),) = sources
    y[:] = 7  # the caller's buffer written again
    assert asked == [True] and out.device == META
    assert (
        src.data_ptr() != y.data_ptr()
        and torch.equal(src, seen)
        and torch.equal(seen, torch.arange(5))
    )
    monkeypatch.undo()
    probe = BlockingUploads(monkeypatch)
    with probe:
        namespace.torch_upload(torch.arange(5), META)  # not CUDA: a non-blocking copy
    monkeypatch.undo()
    assert probe.found == []
    asked.clear()  # a CUDA device stages by default (the copy itself stubbed out here)
    monkeypatch.setattr(torch, "empty", empty)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: (a, k))
    got = namespace.torch_upload(torch.arange(5), torch.device("cuda", 0))
    assert asked == [True] and got == ((torch.device("cuda", 0),), {"non_blocking": True})
    big = torch.zeros(namespace.STAGE_MAX_BYTES // 8 + 1, dtype=torch.float64)
    got = namespace.torch_upload(big, torch.device("cuda", 0))  # large: not kept pinned
    assert asked == [True] and got == ((torch.device("cuda", 0),), {"non_blocking": True})


def test_the_probes_see_what_they_should(monkeypatch):
    """The meta device and the upload probe can fail: each kind of fault is seen."""
    x = torch.ones(4, device=META)
    for fault in (lambda: x.sum().item(), lambda: x + torch.ones(4), lambda: x.cpu()):
        with pytest.raises((RuntimeError, NotImplementedError)):
            fault()
    for upload in (
        lambda: torch.asarray(2.0, dtype=torch.float64, device=META),
        lambda: torch.arange(3).to(META),
        lambda: torch.asarray(np.arange(3), device=META),
    ):
        probe = BlockingUploads(monkeypatch)
        with probe:
            upload()
        monkeypatch.undo()
        assert probe.found, upload
    probe = BlockingUploads(monkeypatch)
    with probe:
        torch.arange(3).to(META, non_blocking=True)
        torch.full((), 2.0, dtype=torch.float64, device=META)
    monkeypatch.undo()
    assert probe.found == []


def _as_on_a_device(monkeypatch):
    from ncinspect.stats import device

    monkeypatch.setattr(device, "on_host", lambda xp, h: False)


@pytest.mark.parametrize("precision", ["float64", "float32"])
@pytest.mark.parametrize("pass_number", [1, 2])
def test_non_finite_rows_cost_no_host_read_and_are_refused_at_the_pass_end(
    monkeypatch, precision, pass_number
):
    """bfloat16 rows holding NaN/Inf, labels as float tensors or host numpy, a classifier
    with bias and an absent class, through the accelerator's path on CPU tensors: the
    counting probe of test_meter_device sees no host read in update(); the pass end names
    the rows."""
    from .test_meter_device import HostReads

    _as_on_a_device(monkeypatch)
    h, y, w, b = _data(6)
    bad = torch.from_numpy(h).to(torch.bfloat16)
    bad[41, 3], bad[45, 0] = float("inf"), float("nan")
    clean = torch.from_numpy(h).to(torch.bfloat16)
    meter = ncinspect.Meter(
        weights=torch.from_numpy(w),
        bias=torch.from_numpy(b),
        precision=precision,
        min_class_count=30,
    )
    for p in (1, 2):
        rows = bad if p == pass_number else clean
        for k, a in enumerate(range(0, len(y), 32)):
            labels = y[a : a + 32] if k % 2 else torch.from_numpy(y[a : a + 32]).double()
            probe = HostReads()
            with probe:
                meter.update(rows[a : a + 32], labels)
            assert probe.reads == [], (p, k, probe.reads)
        if p == 1 and pass_number == 2:
            meter.next_pass()
        elif p == 1:
            break
    end = meter.next_pass if pass_number == 1 else meter.compute
    with pytest.raises(
        InvalidDataError,
        match=rf"2 row\(s\) of pass {pass_number} hold NaN/Inf values, first at row 41",
    ):
        end()


def _wide_data():
    """Classes that overlap: many rows near a decision boundary, where bfloat16 or TF32
    products (8 or 11 bits) decide otherwise than float32's bound allows."""
    h, y, m = make_data(C=7, d=48, n=60, seed=0, sigma=2.0)
    rng = np.random.default_rng(0)
    return h, y, m + 0.8 * rng.standard_normal(m.shape), 0.1 * rng.standard_normal(7)


def _both_passes(meter, h, y, size=64):
    for p in range(2):
        for a in range(0, len(y), size):
            meter.update(torch.from_numpy(h[a : a + size]), torch.from_numpy(y[a : a + size]))
        if p == 0:
            meter.next_pass()
    return meter.compute()


_DECISIONS = ("accuracy_ncc", "accuracy_classifier", "nc4_ncc_mismatch")


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_products_stay_ieee_under_autocast(monkeypatch, precision):
    """torch.autocast turns float32 products into bfloat16 ones: the float32 mode then
    decided 0.4833 where the rows give 0.4857 (the bound assumes float32's 2**-24)."""
    _as_on_a_device(monkeypatch)
    h, y, w, b = _wide_data()
    want = ncinspect.analyze(h, y, weights=w, bias=b)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _both_passes(ncinspect.Meter(weights=w, bias=b, precision=precision), h, y)
        assert torch.is_autocast_enabled("cpu")  # the caller's setting is kept
    for key in _DECISIONS:
        assert got.metrics[key] == want.metrics[key], key
    rel = 1e-5 if precision == "float32" else 1e-12
    assert got.metrics["nc1"] == pytest.approx(want.metrics["nc1"], rel=rel)


class MatmulPrecision(TorchDispatchMode):
    """The CUDA matmul precision setting at every float32 product."""

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in ("mm", "addmm", "bmm", "matmul") and args[0].dtype == torch.float32:
            self.seen.append(torch.backends.cuda.matmul.fp32_precision)
        return func(*args, **(kwargs or {}))


@pytest.fixture
def cuda_matmul_knob():
    """The CUDA float32 matmul setting, restored after the test."""
    knob = torch.backends.cuda.matmul
    saved = knob.fp32_precision
    yield knob
    knob.fp32_precision = saved


def test_float32_products_turn_tf32_off_and_back(monkeypatch, cuda_matmul_knob):
    """With TF32 allowed (``set_float32_matmul_precision("high")`` does it), every float32
    product of the Meter runs with CUDA's setting at "ieee", and the user's "tf32" is back
    after each update. CPU tensors stand for CUDA ones (the CPU mapped to CUDA's knob)."""
    _as_on_a_device(monkeypatch)
    monkeypatch.setitem(namespace._FP32_BACKENDS, "cpu", ("cuda", "matmul"))
    cuda_matmul_knob.fp32_precision = "tf32"
    h, y, w, b = _wide_data()
    meter = ncinspect.Meter(weights=w, bias=b, precision="float32")
    probe = MatmulPrecision()
    with probe:
        got = _both_passes(meter, h, y)
    assert probe.seen and set(probe.seen) == {"ieee"}, probe.seen
    assert cuda_matmul_knob.fp32_precision == "tf32"
    want = ncinspect.analyze(h, y, weights=w, bias=b)
    for key in _DECISIONS:
        assert got.metrics[key] == want.metrics[key], key


def test_the_legacy_tf32_switch_is_turned_off_and_back():
    """torch before the ``fp32_precision`` setting: cuBLAS's ``allow_tf32``."""

    class Legacy:
        allow_tf32 = True

    knob = Legacy()
    assert namespace._get_fp32(knob) == ("allow_tf32", True, False)
    assert namespace._get_fp32(None) is None
    assert namespace._get_fp32(object()) is None
    assert namespace._get_fp32(torch.backends.cuda.matmul)[0] == "fp32_precision"


def test_collectives_travel_where_the_backend_reduces(monkeypatch):
    """NCCL reduces CUDA tensors only: a host state (numpy, or torch CPU tensors fed to a
    meter in an NCCL job) goes to the current GPU and back; a CUDA state stays on its GPU;
    gloo reduces where the state lies (numpy on the host)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from ncinspect.stats.protocol import collective_device

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    gpu1 = torch.device("cuda", 1)
    assert collective_device("nccl", np.zeros(3)) == gpu1
    assert collective_device("nccl", torch.zeros(3)) == gpu1  # was: NCCL on a CPU tensor
    assert collective_device("gloo", np.zeros(3)) == torch.device("cpu")
    assert collective_device("gloo", torch.zeros(3)) == torch.device("cpu")
    with FakeTensorMode():
        on_gpu = torch.zeros(3, device=torch.device("cuda", 0))
    assert collective_device("nccl", on_gpu) == on_gpu.device
    assert collective_device("gloo", on_gpu) == on_gpu.device


def test_cupy_scatter_adds_of_int64_counts(monkeypatch):
    """CuPy's ``cupyx.scatter_add`` takes no int64 (only int32, uint32, uint64 and floats),
    and every count of the pass states is int64: they are added as uint64, whose wrapping
    sums are the same bits (negative values too: the float32 recheck takes counts back).
    A stand-in for cupyx with CuPy's dtype rule, on numpy arrays."""
    import sys
    import types

    def scatter_add(a, index, v):
        if a.dtype not in (np.int32, np.uint32, np.uint64, np.float16, np.float32, np.float64):
            raise TypeError("scatter_add only supports int32, float16, float32, float64, ...")
        np.add.at(a, index, np.asarray(v).astype(a.dtype))

    monkeypatch.setitem(sys.modules, "cupyx", types.SimpleNamespace(scatter_add=scatter_add))
    monkeypatch.setattr(namespace, "_library", lambda xp: "cupy")
    idx = np.array([0, 2, 2, 1, 0])
    for values in (np.array([1, 1, 1, 1, 1]), np.array([-3, 5, -(2**40), 7, 2**50])):
        acc = np.array([10, -20, 2**62], dtype=np.int64)
        want = acc.copy()
        np.add.at(want, idx, values)
        got = namespace.scatter_add(np, acc, idx, values)
        assert got.dtype == np.int64 and np.array_equal(got, want), (got, want)
    sums = namespace.scatter_add(np, np.zeros((3, 2)), idx, np.ones((5, 2)))  # floats as is
    assert np.array_equal(sums, [[2, 2], [1, 1], [2, 2]])


if torch.cuda.is_available():  # only where a GPU is: no skip elsewhere

    @pytest.mark.parametrize("precision", ["float64", "float32"])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
    def test_cuda_update_never_synchronises_and_equals_numpy(precision, dtype):
        """CUDA tensors, CPU labels on odd batches: torch's sync debug mode raises on any
        synchronisation inside update(); the numbers are the numpy path's (1e-12 in
        float64; decisions exact in float32), with TF32 allowed by the caller."""
        dev = torch.device("cuda", torch.cuda.current_device())
        h, y, w, b = _data(4, C=9, d=40)
        ht = torch.from_numpy(h).to(dtype).to(dev)
        rows = ht.float().cpu().numpy()
        meter = ncinspect.Meter(
            weights=torch.from_numpy(w).to(dev),
            bias=torch.from_numpy(b).to(dev),
            precision=precision,
            per_class=True,
        )
        was = torch.backends.cuda.matmul.fp32_precision
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        try:
            two_passes_without_sync(meter, ht, y, dev, 32)
        finally:
            torch.backends.cuda.matmul.fp32_precision = was
        for name, _ in meter.pass_state().specs():
            assert getattr(meter.pass_state(), name).device == dev, name
        got = meter.compute()
        want = ncinspect.analyze(rows, y, weights=w, bias=b, per_class=True)
        for key, value in want.metrics.items():
            if value is None or isinstance(value, bool) or key in _DECISIONS:
                assert got.metrics[key] == value, key
            elif precision == "float64":
                assert got.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-13), key
        bad = ht.clone()
        bad[5, 0] = float("nan")
        again = ncinspect.Meter(weights=w, bias=b, precision=precision)
        again.update(bad, torch.from_numpy(y).to(dev))
        with pytest.raises(InvalidDataError, match=r"1 row\(s\) of pass 1 hold NaN/Inf"):
            again.next_pass()

    def _gpu_reference(model, dl, dev):
        """analyze() of the features the model gives on the GPU, batch by batch (the rows
        the hook sees), copied to the host."""
        with torch.no_grad():
            h = torch.cat([model.features(xb.to(dev)).float().cpu() for xb, _ in dl])
        y = torch.cat([yb for _, yb in dl]).numpy()
        fc = model.fc
        w, b = (p.detach().float().cpu().numpy() for p in (fc.weight, fc.bias))
        return ncinspect.analyze(h.numpy(), y, weights=w, bias=b)

    def _same(got, want, rel=1e-12):
        _close(got, want, rtol=rel)

    def test_cuda_measure_equals_analyze_of_the_gpu_features():
        """measure() of a model on the GPU (CPU batches moved there, labels non-blocking)."""
        from ncinspect.integrations.torch import measure

        from ..torchnet import loader, trained_mlp

        dev = torch.device("cuda", torch.cuda.current_device())
        model, x, y = trained_mlp()
        model = copy.deepcopy(model).to(dev)  # the cached model stays on the host
        dl = loader(x, y)
        for precision in ("float64", "float32"):
            got = measure(model, "fc", dl, precision=precision)
            _same(got, _gpu_reference(model, dl, dev), 1e-9 if precision == "float64" else 1e-4)

    def test_lightning_callback_on_a_gpu_in_bf16_mixed(tmp_path):
        """The Lightning callback on one GPU, bf16-mixed precision: its logged nc1 is
        analyze() of the trained model's GPU features."""
        import lightning.pytorch as pl

        from ncinspect.integrations.lightning import NeuralCollapseCallback

        from ..integrations.test_lightning import Module
        from ..torchnet import gaussian_classes, loader

        torch.manual_seed(0)
        x, y = gaussian_classes(C=4, n=40, d_in=8, seed=0)
        model, cb = Module(), NeuralCollapseCallback("net.fc", val=False)
        trainer = pl.Trainer(
            max_epochs=2,
            accelerator="gpu",
            devices=1,
            precision="bf16-mixed",
            logger=False,
            callbacks=[cb],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, loader(x, y, batch_size=32))
        assert [(e, s) for e, s, _ in cb.results] == [(1, "train"), (2, "train")]
        dev = torch.device("cuda", torch.cuda.current_device())
        want = _gpu_reference(model.net.to(dev), loader(x, y, batch_size=32), dev)
        _same(cb.results[-1][2], want, 1e-6)  # the same GPU kernels; 1e-6 spares ulps
        assert float(trainer.callback_metrics["nc/train/nc1"]) == pytest.approx(want.metrics["nc1"])

    def test_nccl_all_reduce_of_device_and_host_states(tmp_path):
        """An NCCL group (one rank: one GPU here) reduces a Meter's CUDA states where they
        live, and torch CPU states (a meter fed CPU tensors in an NCCL job) through the GPU
        and back to the CPU: both passes, the output moments by all_gather."""
        import torch.distributed as dist

        init = f"file://{tmp_path / 'rendezvous'}"
        dist.init_process_group("nccl", init_method=init, rank=0, world_size=1)
        try:
            h, y, w, b = _data(7)
            dev = torch.device("cuda", torch.cuda.current_device())
            for where in (dev, torch.device("cpu")):
                meter = ncinspect.Meter(weights=w, bias=b)
                ht, yt = torch.from_numpy(h).to(where), torch.from_numpy(y).to(where)
                for p in range(2):
                    meter.update(ht, yt)
                    state = meter.pass_state()
                    got = state.all_reduce()
                    for name, _ in state.specs():
                        mine, theirs = getattr(state, name), getattr(got, name)
                        assert theirs.device == mine.device, (where, p, name)
                        assert torch.equal(theirs, mine), (where, p, name)
                    meter.set_pass_state(got)
                    if p == 0:
                        meter.next_pass()
                _same(meter.compute(), ncinspect.analyze(h, y, weights=w, bias=b))
        finally:
            dist.destroy_process_group()


class _NoFloat64:
    """array-api-strict as a library whose device holds no float64 (Apple's MPS raises) or
    narrows it silently (JAX without x64 makes float32 and int32)."""

    def __init__(self, mode: str):
        import array_api_strict

        self._xp, self._mode = array_api_strict, mode

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def zeros(self, shape, dtype=None, device=None):
        if dtype in (self._xp.float64, self._xp.int64):
            if self._mode == "raise":
                raise TypeError(
                    "Cannot convert a MPS Tensor to float64 dtype as the MPS framework "
                    "doesn't support float64. Please use float32 instead."
                )
            dtype = self._xp.float32 if dtype == self._xp.float64 else self._xp.int32
        return self._xp.zeros(shape, dtype=dtype, device=device)


@pytest.mark.parametrize("mode", ["raise", "narrow"])
def test_a_device_without_float64_is_refused_in_one_line(monkeypatch, mode):
    """The Meter's first batch on a device whose library cannot hold its float64/int64
    states is one UnsupportedDtypeError saying so and what to do (before: the library's
    own TypeError from deep inside, or float32 states without a word)."""
    import array_api_strict

    from ncinspect.errors import UnsupportedDtypeError
    from ncinspect.meter import meter as meter_module

    fake = _NoFloat64(mode)
    h, y, _, _ = _data(3)
    xs, ys = array_api_strict.asarray(h), array_api_strict.asarray(y)
    monkeypatch.setattr(
        meter_module, "meter_batch", lambda f, lab, c, w=None, ignore=None: (fake, f, lab, None)
    )
    monkeypatch.setattr(namespace, "_FLOAT64_OK", {})
    meter = ncinspect.Meter(n_classes=7)
    with pytest.raises(UnsupportedDtypeError, match="cannot hold them") as err:
        meter.update(xs, ys)
    assert "\n" not in str(err.value) and "features.cpu()" in str(err.value)
    if mode == "narrow":
        assert "float32 and" in str(err.value) and "int32 of them" in str(err.value)
    assert meter._s1 is None  # nothing was made


def test_float64_states_check_passes_where_float64_exists():
    import array_api_strict

    namespace.check_float64_states(array_api_strict, array_api_strict.Device("device1"))
    xp = namespace.get_namespace(torch.zeros(1))
    namespace.check_float64_states(xp, torch.device("cpu"))
