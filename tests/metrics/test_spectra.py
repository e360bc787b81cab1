"""Spectral metrics (--spectra): closed forms, a direct small reference, streaming, engines."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.engines.local import LocalEngine
from ncinspect.io.writer import DumpWriter
from ncinspect.metrics.spectra import SPECTRA_KEYS, alpha_req_of
from ncinspect.stats.spectra import PANEL

from ..helpers import make_data


def _erank(values):
    v = np.asarray(values, dtype=np.float64)
    p = v / v.sum()
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def _rankme(singular):
    p = singular / singular.sum() + 1e-7
    return float(np.exp(-np.sum(p * np.log(p))))


def _reference(h, y, center="classes"):
    """The six keys written from the spec alone, with numpy's eigvalsh and svd."""
    h = np.asarray(h, dtype=np.float64)
    N, d = h.shape
    classes = np.unique(y)
    mu = np.stack([h[y == c].mean(0) for c in classes])
    mu_g = mu.mean(0) if center == "classes" else h.mean(0)
    hbar = h.mean(0)
    st = (h - hbar).T @ (h - hbar) / N
    e = h - mu[np.searchsorted(classes, y)]
    sw = e.T @ e / N
    lt = np.clip(np.linalg.eigvalsh(st)[::-1], 0, None)
    lw = np.clip(np.linalg.eigvalsh(sw)[::-1], 0, None)
    tol = d * np.finfo(float).eps
    lt[lt <= tol * lt[0]] = 0
    lw[lw <= tol * lw[0]] = 0
    sm = np.linalg.svd(mu - mu_g, compute_uv=False)
    sm[sm <= max(mu.shape) * np.finfo(float).eps * sm[0]] = 0
    K = min(int(np.sum(lt > 1e-12 * lt[0])), N - 1)
    k = np.arange(1, K + 1)
    slope = np.polyfit(np.log(k), np.log(lt[:K]), 1)[0]
    return {
        "rank_effective": _erank(np.sqrt(lt)),
        "rank_effective_within": _erank(np.sqrt(lw)),
        "rank_effective_means": _erank(sm),
        "rankme": _rankme(np.linalg.svd(h, compute_uv=False)),
        "stable_rank": float(np.trace(st) / lt[0]),
        "alpha_req": float(-slope),
    }


def _isotropic_etf(C, d, n_pairs, r, s, rng):
    """Simplex-ETF means (norm r, centred: hbar = mu_G = 0) and, per class, residuals
    +-a e_k over an orthonormal frame: each class covariance is exactly s^2 I."""
    q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    e = np.sqrt(C / (C - 1)) * (np.eye(C) - np.ones((C, C)) / C)
    means = r * e @ q[:, :C].T  # rows of norm r, in a random C-dim subspace
    a = s * np.sqrt(d)
    frame = np.concatenate([a * q.T, -a * q.T])  # 2d rows: mean 0, scatter 2 a^2 I
    assert n_pairs == 1
    h = np.concatenate([means[c] + frame for c in range(C)])
    y = np.repeat(np.arange(C), 2 * d)
    return h, y


def test_isotropic_simplex_etf_closed_forms():
    C, d, r, s = 4, 9, 3.0, 0.5
    h, y = _isotropic_etf(C, d, 1, r, s, np.random.default_rng(0))
    res = ncinspect.analyze(h, y, spectra=True)
    m = res.metrics
    # Sigma_B = r^2/(C-1) times a projector of rank C-1 (the Gram of the ETF rows is
    # r^2 C/(C-1) (I - 11^T/C), divided by C), Sigma_W = s^2 I
    big, small = s**2 + r**2 / (C - 1), s**2
    lt = np.array([big] * (C - 1) + [small] * (d - C + 1))
    assert m["rank_effective_means"] == pytest.approx(C - 1, rel=1e-12)
    assert m["rank_effective_within"] == pytest.approx(d, rel=1e-12)
    assert m["rank_effective"] == pytest.approx(_erank(np.sqrt(lt)), rel=1e-12)
    assert m["stable_rank"] == pytest.approx(lt.sum() / big, rel=1e-12)
    N = len(y)
    assert m["rankme"] == pytest.approx(_rankme(np.sqrt(N * lt)), rel=1e-12)  # uncentred = centred
    # two distinct eigenvalues: the fit is exact only for a power law; check it against lstsq
    k = np.arange(1, d + 1)
    slope = np.polyfit(np.log(k), np.log(lt), 1)[0]
    assert m["alpha_req"] == pytest.approx(-slope, rel=1e-10)


def test_power_law_spectrum_gives_its_exponent():
    rng = np.random.default_rng(3)
    N, d, a = 64, 20, 1.7
    lam = np.arange(1, d + 1, dtype=float) ** -a
    # orthonormal columns orthogonal to the ones vector: the rows have mean 0
    z = rng.standard_normal((N, d))
    z -= z.mean(0)
    q = np.linalg.qr(z)[0]
    rot = np.linalg.qr(rng.standard_normal((d, d)))[0]
    h = np.sqrt(N) * q * np.sqrt(lam) @ rot.T  # Sigma_T = rot diag(lam) rot^T exactly
    y = rng.integers(0, 3, N)
    m = ncinspect.analyze(h + 5.0, y, spectra=True).metrics  # an offset changes no Sigma_T
    assert m["alpha_req"] == pytest.approx(a, rel=1e-9)
    assert m["stable_rank"] == pytest.approx(lam.sum() / lam[0], rel=1e-9)
    assert m["rank_effective"] == pytest.approx(_erank(np.sqrt(lam)), rel=1e-9)


@pytest.mark.parametrize("center", ["classes", "samples"])
@pytest.mark.parametrize("shape", [(3, 7, 11), (5, 12, 3)])  # (C, d, n): N > d and N < d
def test_direct_reference(center, shape):
    C, d, n = shape
    h, y, _ = make_data(C=C, d=d, n=n, sigma=0.7, imbalanced=True, offset=1.3, seed=5)
    m = ncinspect.analyze(h, y, spectra=True, center=center).metrics
    ref = _reference(h, y, center)
    for key in SPECTRA_KEYS:
        assert m[key] == pytest.approx(ref[key], rel=1e-9), key


def test_streaming_threads_and_one_chunk_agree():
    h, y, m = make_data(C=4, d=10, n=30, offset=2.0, seed=2)
    one = ncinspect.analyze(h, y, weights=m, spectra=True).metrics
    many = ncinspect.analyze(h, y, weights=m, spectra=True, chunk_rows=7).metrics
    for key in SPECTRA_KEYS:
        assert many[key] == pytest.approx(one[key], rel=1e-12), key
    # d above one panel of the d x d products: the panels run on the pool, same bits
    h, y, _ = make_data(C=3, d=PANEL + 9, n=10, offset=2.0, seed=2)
    t1 = ncinspect.analyze(h, y, spectra=True, chunk_rows=7, engine=LocalEngine(1))
    t2 = ncinspect.analyze(h, y, spectra=True, chunk_rows=7, engine=LocalEngine(2))
    assert [t1.metrics[k] for k in SPECTRA_KEYS] == [t2.metrics[k] for k in SPECTRA_KEYS]
    ref = _reference(h, y)
    for key in SPECTRA_KEYS:
        assert t1.metrics[key] == pytest.approx(ref[key], rel=1e-9), key


def test_dask_equals_local():
    import dask.array as da

    h, y, m = make_data(C=3, d=8, n=25, offset=1.0, seed=4)
    local = ncinspect.analyze(h, y, spectra=True, chunk_rows=10).metrics
    dsk = ncinspect.analyze(da.from_array(h, chunks=(10, 8)), y, spectra=True).metrics
    for key in SPECTRA_KEYS:
        assert dsk[key] == pytest.approx(local[key], rel=1e-12), key


def test_opt_in_and_budget_null():
    h, y, _ = make_data(C=3, d=64, n=20)
    plain = ncinspect.analyze(h, y)
    assert not set(SPECTRA_KEYS) & set(plain.metrics)
    assert not set(SPECTRA_KEYS) & set(plain.metric_keys())
    # 4 d^2 float64 = 128 KiB > a 100 KiB budget: null, the reason names the budget
    small = ncinspect.analyze(h, y, spectra=True, memory_limit=100 << 10, chunk_rows=16)
    for key in SPECTRA_KEYS:
        assert small.metrics[key] is None
        assert "--memory-limit" in small.null_reasons[key]
    assert small.metrics["nc1"] == pytest.approx(plain.metrics["nc1"], rel=1e-12)


def test_null_cases():
    assert alpha_req_of(np.array([2.0, 1.0, 0.0]), 10) == (
        None,
        alpha_req_of(np.array([2.0, 1.0, 0.0]), 10)[1],
    )
    assert "needs 3" in alpha_req_of(np.array([2.0, 1.0, 0.0]), 10)[1]
    # every row on its class mean: Sigma_W = 0, rank_effective_within is null with a reason
    y = np.repeat(np.arange(3), 4)
    h = np.eye(3, 5)[y] * 2.0
    r = ncinspect.analyze(h, y, spectra=True)
    assert r.metrics["rank_effective_within"] is None
    assert "Sigma_W = 0" in r.null_reasons["rank_effective_within"]
    assert r.metrics["rank_effective_means"] == pytest.approx(2.0, rel=1e-12)  # C - 1


def test_cli_report_spectra(tmp_path):
    h, y, m = make_data(C=3, d=6, n=15, seed=1)
    path = tmp_path / "d.h5"
    with DumpWriter(path, "w") as w:
        s = w.snapshot("epoch_1", epoch=1, split="train")
        s.append(features=h, labels=y)
        s.write(weights=m)
    out = tmp_path / "r.json"
    assert main(["report", str(path), "--spectra", "--json", str(out), "-q"]) == 0
    got = json.loads(out.read_text())["snapshots"][0]["metrics"]
    ref = _reference(h, y)
    for key in SPECTRA_KEYS:
        assert got[key] == pytest.approx(ref[key], rel=1e-9), key
    plain = tmp_path / "p.json"
    assert main(["report", str(path), "--json", str(plain), "-q"]) == 0
    assert "rankme" not in json.loads(plain.read_text())["snapshots"][0]["metrics"]


def test_meter_equals_analyze_and_state_round_trip():
    from ncinspect.meter.state import pack, unpack

    h, y, m = make_data(C=4, d=10, n=30, offset=1.0, seed=6)
    ref = ncinspect.analyze(h, y, weights=m, spectra=True).metrics
    meters = [ncinspect.Meter(m, spectra=True) for _ in range(2)]
    halves = [slice(0, 50), slice(50, None)]
    for meter, rows in zip(meters, halves, strict=True):  # two processes' batches
        meter.update(h[rows], y[rows])
    meters[0].merge(meters[1]).next_pass()
    meters[1].load_state_dict(unpack(pack(meters[0].state_dict())))
    for meter, rows in zip(meters, halves, strict=True):
        for a in range(rows.start, rows.stop or len(y), 11):
            meter.update(
                h[a : min(a + 11, rows.stop or len(y))], y[a : min(a + 11, rows.stop or len(y))]
            )
    merged = meters[0].merge(meters[1])
    got = merged.compute().metrics
    for key in SPECTRA_KEYS:
        assert got[key] == pytest.approx(ref[key], rel=1e-12), key
    again = ncinspect.Meter(m, spectra=True).load_state_dict(unpack(pack(merged.state_dict())))
    assert [again.compute().metrics[k] for k in SPECTRA_KEYS] == [got[k] for k in SPECTRA_KEYS]
    plain = ncinspect.Meter(m)
    plain.update(h, y)
    plain.next_pass()
    plain.update(h, y)
    assert "rankme" not in plain.compute().metrics
    with pytest.raises(ncinspect.errors.UsageError, match="spectra"):
        ncinspect.Meter(m, spectra=True).merge(ncinspect.Meter(m))


def test_check_rule_on_a_spectral_metric_runs_the_spectra(tmp_path):
    h, y, m = make_data(C=3, d=6, n=15, seed=1)
    path = tmp_path / "d.h5"
    with DumpWriter(path, "w") as w:
        s = w.snapshot("epoch_1", epoch=1, split="train")
        s.append(features=h, labels=y)
        s.write(weights=m)
    value = _reference(h, y)["rank_effective_means"]  # 2 (C - 1) up to the noise
    assert main(["check", str(path), "--min", f"rank_effective_means={value - 1e-6}"]) == 0
    assert main(["check", str(path), "--min", f"rank_effective_means={value + 1e-6}"]) == 1


def test_budget_that_holds_the_sums_but_not_the_chunks_beside_them():
    from ncinspect.engines.local import plan_chunk_rows
    from ncinspect.errors import ResourceLimitError
    from ncinspect.stats.spectra import spectra_bytes

    h, y, _ = make_data(C=3, d=64, n=20)
    lo, hi = 1, 1 << 30  # the smallest plain budget, by bisection
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            plan_chunk_rows(64, 3, memory_limit=mid, n_samples=len(y))
            hi = mid
        except ResourceLimitError:
            lo = mid + 1
    need = lo
    limit = need + spectra_bytes(64) // 2  # a plain run fits; with the d x d sums it does not
    res = ncinspect.analyze(h, y, spectra=True, memory_limit=limit)
    assert res.metrics["nc1"] is not None
    for key in SPECTRA_KEYS:
        assert res.metrics[key] is None
        assert "leaves beside the chunks" in res.null_reasons[key]
    roomy = ncinspect.analyze(h, y, spectra=True, memory_limit=need + 2 * spectra_bytes(64))
    assert all(roomy.metrics[k] is not None for k in SPECTRA_KEYS)


def test_bootstrap_resamples_the_spectra_too():
    h, y, m = make_data(C=3, d=6, n=15, sigma=0.8)
    res = ncinspect.analyze(h, y, weights=m, spectra=True, bootstrap=8, seed=3)
    for key in SPECTRA_KEYS:
        iv = res.bootstrap["intervals"][key]
        assert iv["lo"] is not None and iv["lo"] <= iv["hi"], key
    # replicates resample within classes: the means stay C - 1 = 2 dimensional
    assert 1.0 < res.bootstrap["intervals"]["rank_effective_means"]["lo"] <= 2.0
    plain = ncinspect.analyze(h, y, weights=m, bootstrap=3)
    assert "rankme" not in plain.bootstrap["intervals"]


def test_meter_on_torch_tensors_equals_numpy():
    import torch  # an extra CI installs

    h, y, m = make_data(C=3, d=7, n=20, offset=0.5, seed=8)
    ref = ncinspect.analyze(h, y, weights=m, spectra=True).metrics
    meter = ncinspect.Meter(m, spectra=True)
    ht, yt = torch.from_numpy(h), torch.from_numpy(y)
    for _ in range(2):
        for a in range(0, len(y), 13):
            meter.update(ht[a : a + 13], yt[a : a + 13])
        if meter.pass_number == 1:
            meter.next_pass()
    got = meter.compute().metrics
    for key in SPECTRA_KEYS:
        assert got[key] == pytest.approx(ref[key], rel=1e-12), key


def test_meter_states_of_several_ranks_merge_with_their_spectra():
    from ncinspect.integrations.distributed import merge_meter_states

    h, y, m = make_data(C=3, d=7, n=20, offset=0.5, seed=9)
    ref = ncinspect.analyze(h, y, weights=m, spectra=True).metrics
    ranks = [ncinspect.Meter(m, spectra=True) for _ in range(2)]
    parts = [slice(0, 25), slice(25, None)]
    for meter, rows in zip(ranks, parts, strict=True):
        meter.update(h[rows], y[rows])
    ranks[0].merge(ranks[1]).next_pass()
    ranks[1].load_state_dict(ranks[0].state_dict())
    for meter, rows in zip(ranks, parts, strict=True):
        meter.update(h[rows], y[rows])
    states = [r.state_dict() for r in ranks]  # as gathered from every rank
    got = merge_meter_states(ranks[0], states).compute().metrics
    for key in SPECTRA_KEYS:
        assert got[key] == pytest.approx(ref[key], rel=1e-12), key
