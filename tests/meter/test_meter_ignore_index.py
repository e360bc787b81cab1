"""``Meter(ignore_index=...)``: rows carrying the ignored label add nothing to any statistic.

The reference is a Meter fed only the kept rows (numpy, its own batches); the meter under
test gets every row, with ignored rows holding NaN/Inf features and labels outside
``[0, C)``, on numpy, torch (CPU: the numpy fast path on a view; "kernel": the namespace
kernel that accelerators run) and array-api-strict on its non-default device, in both
passes, in several batch sizes. Device batches are read on the host not once per
``update`` (the ``TorchDispatchMode`` probe of ``test_meter_device``).
"""

from __future__ import annotations

import array_api_strict
import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.errors import InvalidDataError, UsageError

from ..helpers import make_data
from .test_meter_cudapath import two_passes_without_sync
from .test_meter_device import HostReads

IGNORE = -100
C = 6


def _lib(name):
    if name == "numpy":
        return np.asarray
    if name.startswith("torch"):
        return lambda a: torch.from_numpy(np.ascontiguousarray(a))
    dev = array_api_strict.Device("device1")  # a stray array made without device= fails
    return lambda a: array_api_strict.asarray(np.ascontiguousarray(a), device=dev)


@pytest.fixture(params=["numpy", "array_api_strict", "torch", "torch-kernel"])
def lib(request, monkeypatch):
    if request.param == "torch-kernel":  # CPU tensors through the accelerators' kernel
        from ncinspect.stats import device

        monkeypatch.setattr(device, "on_host", lambda xp, h: False)
    return _lib(request.param)


def _data(seed, absent=(), ignore_value=IGNORE, frac=0.3):
    """Rows, labels with ``ignore_value`` on about ``frac`` of them (some of those rows NaN,
    Inf or huge), the kept mask, a classifier."""
    h, y, m = make_data(C=C, d=10, n=14, seed=seed, imbalanced=True)
    rng = np.random.default_rng(seed)
    keep = ~np.isin(y, absent)
    h, y = h[keep], y[keep]
    perm = rng.permutation(len(y))
    h, y = h[perm], y[perm]
    ignored = rng.random(len(y)) < frac
    ignored[[0, 3]] = True  # the first row of the first batches, whatever the seed
    y = y.copy()
    y[ignored] = ignore_value
    h = h.copy()
    idx = np.flatnonzero(ignored)
    h[idx[0], 2], h[idx[1], 0], h[idx[2], 4] = np.nan, np.inf, 1e300  # nothing of them counts
    w = m + 0.3 * rng.standard_normal(m.shape)
    b = 0.1 * rng.standard_normal(C)
    return h, y, ~ignored, w, b


def _run(meter, lib, h, y, sizes):
    """Both passes of ``meter`` in batches of ``sizes[pass]`` rows; its result."""
    for p, size in enumerate(sizes):
        for a in range(0, len(y), size):
            meter.update(lib(h[a : a + size]), lib(y[a : a + size]))
        if p == 0:
            meter.next_pass()
    return meter.compute()


def _same(got, want, rtol=1e-12):
    assert set(got.metrics) == set(want.metrics)
    for key, value in want.metrics.items():
        g = got.metrics[key]
        if value is None or isinstance(value, bool) or key.startswith(("accuracy", "nc4")):
            assert g == value, key  # decisions: exactly
        else:
            assert g == pytest.approx(value, rel=rtol, abs=1e-13), key
    assert got.null_reasons == want.null_reasons
    for g, r in zip(got.per_class or [], want.per_class or [], strict=True):
        for key, value in r.items():
            if isinstance(value, float):
                assert g[key] == pytest.approx(value, rel=rtol, abs=1e-13, nan_ok=True), key
            else:
                assert g[key] == value, key


@pytest.mark.parametrize("sizes", [(7, 7), (16, 5), (1000, 13)])
@pytest.mark.parametrize("classifier", [True, False])
def test_ignored_rows_add_nothing_on_every_backend(lib, sizes, classifier):
    h, y, kept, w, b = _data(0, absent=(2,))
    kw = {"weights": lib(w), "bias": lib(b)} if classifier else {"n_classes": C}
    ref_kw = {"weights": w, "bias": b} if classifier else {"n_classes": C}
    want = _run(ncinspect.Meter(**ref_kw, per_class=True), np.asarray, h[kept], y[kept], (11, 9))
    meter = ncinspect.Meter(**kw, per_class=True, ignore_index=IGNORE)
    got = _run(meter, lib, h, y, sizes)
    _same(got, want)
    assert int(meter._s2.n_rows) == int(kept.sum())  # the rows taken, as the reference's


@pytest.mark.parametrize("min_count", [1, 40])
def test_pass_states_equal_those_of_the_kept_rows(lib, min_count):
    """Every declared field of both passes (class sums, counts, scatter, decisions, output
    moments, the directional table...), not only the metrics made of them."""
    h, y, kept, w, b = _data(1)
    ref = ncinspect.Meter(weights=w, bias=b, min_class_count=min_count)
    meter = ncinspect.Meter(
        weights=lib(w), bias=lib(b), min_class_count=min_count, ignore_index=IGNORE
    )
    states = []
    for mt, hh, yy, f in ((ref, h[kept], y[kept], np.asarray), (meter, h, y, lib)):
        for a in range(0, len(yy), 9):
            mt.update(f(hh[a : a + 9]), f(yy[a : a + 9]))
        first = mt._s1.to_host()
        mt.next_pass()
        for a in range(0, len(yy), 10):
            mt.update(f(hh[a : a + 10]), f(yy[a : a + 10]))
        states.append((first, mt._s2.to_host()))
    (f_ref, s_ref), (f_got, s_got) = states
    for want, got in ((f_ref, f_got), (s_ref, s_got)):
        assert set(want) == set(got)
        for key, value in want.items():
            if key in ("label_min", "label_max", "first_nonfinite"):
                continue  # the checks of device rows (host rows are checked at once)
            g = np.asarray(got[key])
            if value.dtype.kind in "iu":
                assert np.array_equal(g, value), key
            else:
                np.testing.assert_allclose(g, value, rtol=1e-12, atol=1e-12, err_msg=key)
    assert s_got["pair_sq"].shape[0] == C  # the directional table was on and compared


@pytest.mark.parametrize(
    "where, precision",
    [("cpu", "float64"), ("as on a device", "float64"), ("as on a device", "float32")],
)
def test_update_reads_nothing_on_the_host_with_ignored_rows(monkeypatch, where, precision):
    """(CPU tensors in float32 recheck their near ties by ``nonzero``: in host memory that
    waits for no device, as without ignored rows; an accelerator keeps a fixed shape.)"""
    if where != "cpu":
        from ncinspect.stats import device

        monkeypatch.setattr(device, "on_host", lambda xp, h: False)
    h, y, kept, w, b = _data(2, absent=(4,))
    meter = ncinspect.Meter(
        weights=torch.from_numpy(w),
        bias=torch.from_numpy(b),
        precision=precision,
        ignore_index=IGNORE,
        min_class_count=20,  # classes below it too: no row of theirs counts in pass 2
    )
    ht, yt = torch.from_numpy(h).float(), torch.from_numpy(y)
    labels_as = [lambda t: t, lambda t: t.double()]  # integer and float labels on the device
    reads = []
    for p in range(2):
        for k, a in enumerate(range(0, len(y), 12)):
            probe = HostReads()
            with probe:
                meter.update(ht[a : a + 12], labels_as[k % 2](yt[a : a + 12]))
            reads.append((p + 1, k, probe.reads))
        if p == 0:
            meter.next_pass()
    assert all(r == [] for *_, r in reads), [x for x in reads if x[2]]
    got = meter.compute()
    assert 2 <= got.n_classes < C - 1
    ref = ncinspect.Meter(weights=w, bias=b, precision=precision, min_class_count=20)
    want = _run(ref, np.asarray, h[kept].astype(np.float32), y[kept], (12, 12))
    if precision == "float64":
        _same(got, want)
    else:  # float32 products: decisions exact, sums within the float32 bound
        for key, value in want.metrics.items():
            if key.startswith(("accuracy", "nc4")) and value is not None:
                assert got.metrics[key] == value, key
        assert got.metrics["nc1"] == pytest.approx(want.metrics["nc1"], rel=1e-5)


def test_float_labels_and_an_ignored_label_inside_the_classes(lib):
    """Float labels (ignored ones too) are taken by value; an ``ignore_index`` that is a
    class row leaves that class out, as if its rows were never given."""
    h, y, _, w, b = _data(3, ignore_value=0)
    kept = y != 0  # class 0's own rows too
    y = y.astype(np.float64)
    want = _run(
        ncinspect.Meter(weights=w, bias=b), np.asarray, h[kept], y[kept].astype(int), (8, 8)
    )
    got = _run(ncinspect.Meter(weights=lib(w), bias=lib(b), ignore_index=0), lib, h, y, (9, 4))
    _same(got, want)
    assert got.n_classes == C - 1 and got.n_samples == int(kept.sum())


def test_problems_of_kept_rows_are_still_refused_with_the_row_as_given(lib):
    h, y, kept, w, b = _data(4)
    bad = h.copy()
    row = int(np.flatnonzero(kept)[5])
    bad[row, 1] = np.nan  # a kept row: refused, numbered as given (ignored rows count)
    meter = ncinspect.Meter(weights=lib(w), ignore_index=IGNORE)
    with pytest.raises(InvalidDataError, match=rf"1 row\(s\) of pass 1 .* first at row {row}\b"):
        for a in range(0, len(y), 7):
            meter.update(lib(bad[a : a + 7]), lib(y[a : a + 7]))
        meter.next_pass()
    yy = y.copy()
    yy[row] = -1  # another label out of range: refused, the ignored one not
    meter = ncinspect.Meter(weights=lib(w), ignore_index=IGNORE)
    with pytest.raises(InvalidDataError, match=r"label -1 is not in \[0, 6\)"):
        meter.update(lib(h), lib(yy))
        meter.next_pass()
    meter = ncinspect.Meter(weights=lib(w))  # without ignore_index, -100 is a bad label
    with pytest.raises(InvalidDataError, match=r"label -100 is not in"):
        meter.update(lib(h), lib(y))
        meter.next_pass()


def test_a_pass_of_ignored_rows_only(lib):
    h, y, kept, w, b = _data(5)
    meter = ncinspect.Meter(weights=lib(w), ignore_index=IGNORE)
    meter.update(lib(h[~kept]), lib(y[~kept]))
    with pytest.raises(InvalidDataError, match=r"every one labelled ignore_index = -100"):
        meter.next_pass()
    # a batch of ignored rows only, between others, changes nothing
    meter = ncinspect.Meter(weights=lib(w), bias=lib(b), ignore_index=IGNORE)
    for _ in range(2):
        meter.update(lib(h[~kept]), lib(y[~kept]))
        meter.update(lib(h[kept]), lib(y[kept]))
        if meter.pass_number == 1:
            meter.next_pass()
    want = _run(ncinspect.Meter(weights=w, bias=b), np.asarray, h[kept], y[kept], (50, 50))
    _same(meter.compute(), want)


def test_options_are_checked():
    for bad in (True, 1.5, "x"):
        with pytest.raises(UsageError, match="ignore_index must be an integer"):
            ncinspect.Meter(n_classes=3, ignore_index=bad)
    assert ncinspect.Meter(n_classes=3, ignore_index=np.int64(-1)).ignore_index == -1


def test_merged_meters_and_state_round_trip():
    h, y, kept, w, b = _data(6)
    half = len(y) // 2
    want = _run(ncinspect.Meter(weights=w, bias=b), np.asarray, h[kept], y[kept], (40, 40))
    a = ncinspect.Meter(weights=w, bias=b, ignore_index=IGNORE)
    c = ncinspect.Meter(weights=w, bias=b, ignore_index=IGNORE)
    t = torch.from_numpy
    a.update(t(h[:half]), t(y[:half]))
    c.update(h[half:], y[half:])
    a.merge(c).next_pass()
    c.load_state_dict(a.state_dict())
    a.update(h[:half], y[:half])
    c.update(t(h[half:]), t(y[half:]))
    _same(a.merge(c).compute(), want)


def test_spectra_and_dump_take_the_kept_rows_only(tmp_path, lib):
    import h5py

    h, y, kept, w, b = _data(7)
    h32 = h.astype(np.float32)
    path = tmp_path / "run.h5"
    meter = ncinspect.Meter(
        weights=lib(w), bias=lib(b), spectra=True, ignore_index=IGNORE, dump=path
    )
    got = _run(meter, lib, h32, y, (10, 6))
    want = _run(
        ncinspect.Meter(weights=w, bias=b, spectra=True), np.asarray, h32[kept], y[kept], (7, 7)
    )
    assert want.metrics["stable_rank"] is not None  # the spectral keys were compared
    _same(got, want)
    with h5py.File(path, "r") as f:
        assert np.array_equal(f["features"][()], h32[kept]) and f["features"].dtype == np.float32
        assert np.array_equal(f["labels"][()], y[kept])
    (snap,) = ncinspect.analyze_file(path).snapshots
    for key, value in got.metrics.items():
        if isinstance(value, float) and key in snap.metrics:
            assert snap.metrics[key] == pytest.approx(value, rel=1e-12, abs=1e-13), key


@pytest.mark.parametrize("pass_number", [1, 2])
@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_on_the_meta_device_nothing_is_read_or_waited_for(monkeypatch, pass_number, precision):
    """torch's ``meta`` device raises on any read of a value and on two devices in one op;
    the probe of ``test_meter_cudapath`` records blocking uploads. Ignored rows in every
    batch, rows in four dtypes, labels on the device (integers, floats), numpy or a CPU
    tensor, classes below ``min_class_count``."""
    from .test_meter_cudapath import _LABELS, META, BlockingUploads

    h, y, kept, w, b = _data(8)
    dtypes = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
    for i, labels in enumerate(_LABELS):
        meter = ncinspect.Meter(
            weights=w, bias=b, precision=precision, min_class_count=20, ignore_index=IGNORE
        )
        if pass_number == 2:
            meter.update(h, y)
            meter.next_pass()
        for k, a in enumerate(range(0, len(y), 40)):
            hb = torch.from_numpy(h[a : a + 40]).to(dtypes[(i + k) % 4]).to(META)
            yb = _LABELS[labels](y[a : a + 40])
            probe = BlockingUploads(monkeypatch)
            with probe:
                meter.update(hb, yb)
            monkeypatch.undo()
            assert probe.found == [], (labels, k, probe.found)
        state = meter.pass_state()
        for name, _ in state.specs():
            assert getattr(state, name).device == META, name


if torch.cuda.is_available():  # only where a GPU is: no skip elsewhere

    @pytest.mark.parametrize("precision", ["float64", "float32"])
    def test_cuda_update_with_ignored_rows_never_synchronises(precision):
        """CUDA tensors, labels on the GPU (and on the host on odd batches): torch's sync
        debug mode raises on any synchronisation inside update(); the numbers are those
        of the kept rows (1e-12 in float64; decisions exact)."""
        dev = torch.device("cuda", torch.cuda.current_device())
        h, y, kept, w, b = _data(9)
        meter = ncinspect.Meter(
            weights=torch.from_numpy(w).to(dev),
            bias=torch.from_numpy(b).to(dev),
            precision=precision,
            ignore_index=IGNORE,
            per_class=True,
        )
        ht = torch.from_numpy(h).to(dev)
        two_passes_without_sync(meter, ht, y, dev, 16)
        ref = ncinspect.Meter(weights=w, bias=b, precision=precision, per_class=True)
        want = _run(ref, np.asarray, h[kept], y[kept], (16, 16))
        got = meter.compute()
        if precision == "float64":
            _same(got, want)
        else:
            for key, value in want.metrics.items():
                if key.startswith(("accuracy", "nc4")) and value is not None:
                    assert got.metrics[key] == value, key
