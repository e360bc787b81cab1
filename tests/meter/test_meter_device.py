"""The Meter on torch tensors reads nothing on the host during update() (both passes), keeps
its states on the batches' device in float64, and equals the numpy path to 1e-12."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ncinspect
from ncinspect.errors import InvalidDataError

from ..helpers import make_data

#: ops that read a value on the host, or whose output shape depends on values (on a device
#: they wait for it: ``nonzero``, boolean-mask indexing, ``unique``)
_HOST_READS = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "masked_select"}
_HOST_READS |= {"_unique2", "unique_dim", "unique_consecutive"}


class HostReads(TorchDispatchMode):
    """Counts the aten ops that read a tensor's value on the host (``.item()``,
    ``bool(t)``, ``float(t)``, ``int(t)``...) and copies to the CPU from another device;
    ``.numpy()``, ``__array__`` and ``.tolist()`` do not dispatch, so they are wrapped."""

    def __init__(self):
        super().__init__()
        self.reads: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.__name__.split(".")[0]
        if name in _HOST_READS:
            self.reads.append(name)
        if name in ("index", "index_put", "index_put_") and len(args) > 1:
            masks = [i for i in args[1] if getattr(i, "dtype", None) == torch.bool]
            if masks:  # boolean-mask indexing: a nonzero inside
                self.reads.append(f"{name} by a mask")
        if name in ("_to_copy", "copy_", "to"):
            dev = kwargs.get("device")
            src = args[0] if args else None
            if (
                dev is not None
                and torch.device(dev).type == "cpu"
                and getattr(src, "device", None) is not None
                and src.device.type != "cpu"
            ):
                self.reads.append(f"{name} to cpu")
        return func(*args, **kwargs)

    def __enter__(self):
        self._saved = {}
        for attr in ("numpy", "__array__", "tolist", "cpu"):
            orig = getattr(torch.Tensor, attr)
            self._saved[attr] = orig

            def wrapped(t, *a, _orig=orig, _attr=attr, **k):
                self.reads.append(_attr)
                return _orig(t, *a, **k)

            setattr(torch.Tensor, attr, wrapped)
        return super().__enter__()

    def __exit__(self, *exc):
        for attr, orig in self._saved.items():
            setattr(torch.Tensor, attr, orig)
        return super().__exit__(*exc)


def _data(seed, C=7, d=12, absent=(2,)):
    h, y, m = make_data(C=C, d=d, n=20, seed=seed, imbalanced=True)
    keep = ~np.isin(y, absent)
    h, y = h[keep], y[keep]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    w = m + 0.3 * rng.standard_normal(m.shape)
    b = 0.1 * rng.standard_normal(C)
    return h[perm], y[perm], w, b


def _batches(n, size=32):
    return [slice(a, a + size) for a in range(0, n, size)]


def _close(got, want, rtol=1e-12):
    assert set(got.metrics) == set(want.metrics)
    for key, value in want.metrics.items():
        if value is None or isinstance(value, bool):
            assert got.metrics[key] == value, key
        else:
            assert got.metrics[key] == pytest.approx(value, rel=rtol, abs=1e-13), key


def test_probe_counts_what_it_should():
    """The counter itself can fail: every kind of host read it claims to see, it sees."""
    t = torch.arange(4.0)
    for read in (
        lambda: t.sum().item(),
        lambda: bool(t.sum() > 0),
        lambda: float(t[1]),
        lambda: t.numpy(),
        lambda: np.asarray(t),
        lambda: t.tolist(),
        lambda: int(t.max()),
        lambda: torch.nonzero(t > 1),
        lambda: t[t > 1],
    ):
        probe = HostReads()
        with probe:
            read()
        assert probe.reads, read
    probe = HostReads()
    with probe:
        (t * 2).sum()
    assert probe.reads == []


@pytest.mark.parametrize("classifier", [True, False])
@pytest.mark.parametrize("min_count", [1, 30])
@pytest.mark.parametrize("where", ["cpu", "as on a device"])
def test_update_reads_nothing_on_the_host_in_either_pass(monkeypatch, classifier, min_count, where):
    """CPU tensors take the numpy fast path on a zero-copy view; "as on a device": the
    namespace kernel that CUDA/other devices run, on the same CPU tensors."""
    if where != "cpu":
        _as_on_a_device(monkeypatch)
    h, y, w, b = _data(0)
    kw = {"weights": torch.from_numpy(w), "bias": torch.from_numpy(b)} if classifier else {}
    meter = ncinspect.Meter(
        **kw, n_classes=None if classifier else 7, per_class=True, min_class_count=min_count
    )
    ht = torch.from_numpy(h).float()  # float32 rows, as a model gives them
    yt = torch.from_numpy(y)
    reads = []
    for p in range(2):
        for s in _batches(len(y)):
            probe = HostReads()
            with probe:
                meter.update(ht[s], yt[s])
            reads.append((p + 1, probe.reads))
        if p == 0:
            for state in (meter._s1,):
                for name, _ in state.specs():
                    value = getattr(state, name)
                    assert isinstance(value, torch.Tensor) and value.device == ht.device, name
                    assert value.dtype in (torch.float64, torch.int64), name
            meter.next_pass()
    assert all(r == [] for _, r in reads), [x for x in reads if x[1]]
    # and the numbers are those of the numpy path, in other batches
    ref_meter = ncinspect.Meter(
        **({"weights": w, "bias": b} if classifier else {"n_classes": 7}),
        per_class=True,
        min_class_count=min_count,
    )
    h32 = h.astype(np.float32)
    for _ in range(2):
        for s in _batches(len(y), 50):
            ref_meter.update(h32[s], y[s])
        if ref_meter.pass_number == 1:
            ref_meter.next_pass()
    got, want = meter.compute(), ref_meter.compute()
    _close(got, want)
    ref = ncinspect.analyze(
        h32,
        y,
        per_class=True,
        min_class_count=min_count,
        **({"weights": w, "bias": b} if classifier else {}),
    )
    if classifier or min_count == 1:
        _close(got, ref)
    for g, r in zip(got.per_class, want.per_class, strict=True):
        for key, value in r.items():
            if isinstance(value, float):
                assert g[key] == pytest.approx(value, rel=1e-12, abs=1e-13), key


def test_values_are_checked_at_the_pass_end_with_the_row_and_label():
    h, y, w, b = _data(1)
    wt = torch.from_numpy(w)
    bad = torch.from_numpy(h).clone()
    bad[40, 3] = float("inf")
    bad[45, 0] = float("nan")
    meter = ncinspect.Meter(weights=wt)
    for s in _batches(len(y)):
        meter.update(bad[s], torch.from_numpy(y[s]))
    with pytest.raises(
        InvalidDataError, match=r"2 row\(s\) of pass 1 hold NaN/Inf values, first at row 40"
    ):
        meter.next_pass()
    meter = ncinspect.Meter(weights=wt)
    yy = torch.from_numpy(y).clone()
    yy[7] = 9
    meter.update(torch.from_numpy(h), yy)  # never an index out of range on the device
    with pytest.raises(InvalidDataError, match=r"label 9 is not in \[0, 7\)"):
        meter.next_pass()
    meter = ncinspect.Meter(weights=wt)
    meter.update(torch.from_numpy(h), torch.from_numpy(y))
    meter.next_pass()
    meter.update(torch.from_numpy(h), torch.from_numpy(np.where(y == 0, 2, y)))
    with pytest.raises(InvalidDataError, match="class 2, which pass 1 never saw"):
        meter.compute()


def test_pass_two_merge_holds_with_an_absent_class():
    """Class 2 is in no batch: its pass-1 mean is undefined, and merging still works."""
    h, y, w, b = _data(2)
    one = ncinspect.Meter(weights=w, bias=b)
    for _ in range(2):
        one.update(h, y)
        if one.pass_number == 1:
            one.next_pass()
    half = len(y) // 2
    for lib in (np.asarray, torch.from_numpy):
        a, c = ncinspect.Meter(weights=w, bias=b), ncinspect.Meter(weights=w, bias=b)
        a.update(lib(h[:half]), lib(y[:half]))
        c.update(lib(h[half:]), lib(y[half:]))
        a.merge(c).next_pass()
        c.load_state_dict(a.state_dict())
        a.update(lib(h[:half]), lib(y[:half]))
        c.update(lib(h[half:]), lib(y[half:]))
        _close(a.merge(c).compute(), one.compute())


def test_states_follow_the_batches_and_round_trip():
    """A state loaded on the host moves to the device of the next batch, numbers unchanged."""
    h, y, w, b = _data(3)
    meter = ncinspect.Meter(weights=w, bias=b)
    meter.update(torch.from_numpy(h[:50]), torch.from_numpy(y[:50]))
    other = ncinspect.Meter(weights=w, bias=b).load_state_dict(meter.state_dict())
    assert isinstance(other._s1.counts, np.ndarray)
    other.update(torch.from_numpy(h[50:]), torch.from_numpy(y[50:]))
    assert isinstance(other._s1.counts, torch.Tensor)
    meter.update(h[50:], y[50:])  # a numpy batch: the state comes to the host
    assert isinstance(meter._s1.counts, np.ndarray)
    a, c = meter.first, other.first
    assert np.array_equal(a.counts, c.counts)
    np.testing.assert_allclose(a.sums, c.sums, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_no_host_reads_with_host_labels_and_other_dtypes(dtype):
    """bfloat16 or float64 rows, labels as host numpy or as float tensors of integers."""
    h, y, w, b = _data(4)
    ht = torch.from_numpy(h).to(dtype)
    meter = ncinspect.Meter(weights=torch.from_numpy(w), bias=torch.from_numpy(b))
    for p in range(2):
        for k, s in enumerate(_batches(len(y))):
            labels = y[s] if k % 2 else torch.from_numpy(y[s]).double()
            probe = HostReads()
            with probe:
                meter.update(ht[s], labels)
            assert probe.reads == [], (p, k, probe.reads)
        if p == 0:
            meter.next_pass()
    rows = ht.float().numpy() if dtype == torch.bfloat16 else h  # the exact values given
    _close(meter.compute(), ncinspect.analyze(rows, y, weights=w, bias=b))


def _as_on_a_device(monkeypatch):
    """CPU tensors take the accelerator's path (where a count read would wait for the device)."""
    from ncinspect.stats import device

    monkeypatch.setattr(device, "on_host", lambda xp, h: False)


@pytest.mark.parametrize("classifier", [True, False])
def test_float32_update_reads_nothing_on_the_host(monkeypatch, classifier):
    """precision float32: the near-tie recheck keeps a fixed shape (no count read, no
    nonzero) in both passes; decisions equal float64's, sums within the float32 bound."""
    _as_on_a_device(monkeypatch)
    h, y, w, b = _data(5)
    kw = {"weights": torch.from_numpy(w), "bias": torch.from_numpy(b)} if classifier else {}
    meter = ncinspect.Meter(**kw, n_classes=None if classifier else 7, precision="float32")
    ht, yt = torch.from_numpy(h).float(), torch.from_numpy(y)
    for p in range(2):
        for s in _batches(len(y)):
            probe = HostReads()
            with probe:
                meter.update(ht[s], yt[s])
            assert probe.reads == [], (p + 1, probe.reads)
        if p == 0:
            meter.next_pass()
    got = meter.compute()
    want = ncinspect.analyze(
        h.astype(np.float32), y, **({"weights": w, "bias": b} if classifier else {})
    )
    assert int(meter._s2.n_rechecked) >= 0 and int(meter._s2.n_unchecked) == 0
    for key, value in want.metrics.items():
        if key.startswith(("accuracy", "nc4")) and value is not None:
            assert got.metrics[key] == value, key  # decisions: exact
    assert got.metrics["nc1"] == pytest.approx(want.metrics["nc1"], rel=1e-5)


def _near_ties(n=400, d=64, seed=3):
    """Rows on the bisector of two centres (off by ~1e-9): float32 cannot order them."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((n, d)) * 5
    h[:, 0] = 1e-9 * rng.standard_normal(n)
    h[:2, 0], h[2:4, 0] = 1.0, -1.0
    y = (rng.random(n) < 0.5).astype(np.int64)
    return h, y


def test_float32_recheck_is_exact_within_its_capacity(monkeypatch):
    """A few near ties per batch: all decided again in float64 without a host read."""
    _as_on_a_device(monkeypatch)
    h, y = _near_ties()
    rng = np.random.default_rng(0)
    h[8:, 0] += np.where(y[8:] == 0, 1.0, -1.0) * (0.5 + rng.random(len(y) - 8))  # clear rows
    w = np.zeros((2, h.shape[1]))
    w[0, 0], w[1, 0] = 1.0, -1.0
    meter = ncinspect.Meter(weights=w, precision="float32")
    for p in range(2):
        for s in _batches(len(y), 100):
            meter.update(torch.from_numpy(h[s]), torch.from_numpy(y[s]))
        if p == 0:
            meter.next_pass()
    got, want = meter.compute(), ncinspect.analyze(h, y, weights=w)
    assert int(meter._s2.n_rechecked) >= 4 and int(meter._s2.n_unchecked) == 0
    for key in ("accuracy_ncc", "accuracy_classifier", "nc4_ncc_mismatch"):
        assert got.metrics[key] == want.metrics[key], key


def test_float32_ties_beyond_the_capacity_are_refused_not_guessed(monkeypatch):
    """Nearly every row a near tie: more than the fixed share is decided again; the rest
    is counted on the device and the pass refused at compute(), with what to do."""
    _as_on_a_device(monkeypatch)
    h, y = _near_ties()
    w = np.zeros((2, h.shape[1]))
    w[0, 0], w[1, 0] = 1.0, -1.0
    meter = ncinspect.Meter(weights=w, precision="float32")
    for p in range(2):
        meter.update(torch.from_numpy(h), torch.from_numpy(y))
        if p == 0:
            meter.next_pass()
    with pytest.raises(InvalidDataError, match=r"precision float32: \d+ row\(s\) of pass 2"):
        meter.compute()
    # on the host every flagged row is decided again: the same data is fine
    host = ncinspect.Meter(weights=w, precision="float32")
    monkeypatch.undo()
    for p in range(2):
        host.update(torch.from_numpy(h), torch.from_numpy(y))
        if p == 0:
            host.next_pass()
    want = ncinspect.analyze(h, y, weights=w)
    got = host.compute()
    for key in ("accuracy_ncc", "accuracy_classifier", "nc4_ncc_mismatch"):
        assert got.metrics[key] == want.metrics[key], key


def test_cpu_tensors_when_dlpack_refuses_a_dtype(monkeypatch):
    """Some torch builds refuse bool tensors through DLPack: the CPU fast path then copies
    the labels and the row mask instead of failing on a missing view."""
    from ncinspect.stats import device

    real = device.host_view

    def no_bool(xp, a):
        if isinstance(a, torch.Tensor) and a.dtype == torch.bool:
            return None
        return real(xp, a)

    monkeypatch.setattr(device, "host_view", no_bool)
    h, y, w, b = _data(4)
    ref = ncinspect.Meter(weights=w, bias=b)
    got = ncinspect.Meter(weights=torch.from_numpy(w), bias=torch.from_numpy(b))
    for m, conv in ((ref, np.asarray), (got, torch.from_numpy)):
        for _ in range(2):
            for a in range(0, h.shape[0], 37):
                m.update(conv(h[a : a + 37]), conv(y[a : a + 37]))
            if m.pass_number == 1:
                m.next_pass()
    want, res = ref.compute().metrics, got.compute().metrics
    for key, value in want.items():
        if isinstance(value, float):
            assert res[key] == pytest.approx(value, rel=1e-12, abs=1e-300), key
        else:
            assert res[key] == value, key
