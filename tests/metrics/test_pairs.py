"""The class-pair sweep (ncinspect.metrics.pairs): one sweep of the tiles gives every pair
statistic, equal to the formulas written directly over the C x C matrices of the spec, the
same bits on any number of threads, and the known answers of an exact simplex ETF."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from ncinspect.metrics import pairs as P
from ncinspect.metrics.linalg import pairwise_upper
from ncinspect.stats.passes import Moments

ROOT = Path(__file__).resolve().parents[2]


def close(a, b, rtol, atol=0.0):
    assert a is not None and b is not None
    assert abs(a - b) <= atol + rtol * abs(b), (a, b)


def _direct(M, W, var, counts):
    """Spec/metrics.md written directly over all pairs c < c' (full C x C matrices)."""
    C = M.shape[0]
    iu = np.triu_indices(C, k=1)
    out = {}
    for name, v in (("means", M), ("weights", W)):
        u = v / np.linalg.norm(v, axis=1)[:, None]
        cos = (u @ u.T)[iu]
        dist = np.linalg.norm(u[:, None, :] - u[None, :, :], axis=2)[iu]  # ||u_c - u_c'||
        out[f"equiangular_{name}"] = np.std(cos)
        out[f"maxangle_{name}"] = np.mean(np.abs(cos + 1.0 / (C - 1)))
        out[f"gnc2_log_{name}"] = np.var(np.log(1.0 / dist))
        out[f"gnc2_dist_{name}"] = np.var(dist)
        out[f"gnc2_energy_{name}"] = np.mean(np.log(1.0 / dist))
    d2 = np.sum((M[:, None, :] - M[None, :, :]) ** 2, axis=2)[iu]  # ||mu_c - mu_c'||^2
    vs = (var[:, None] + var[None, :])[iu]
    out["cdnv"] = np.mean(vs / (2 * d2))
    out["cdnv_exp2"] = np.mean(vs / (2 * d2**2))
    minority = counts < counts.max() / 2
    wm = W[minority] / np.linalg.norm(W[minority], axis=1)[:, None]
    out["minority"] = np.mean((wm @ wm.T)[np.triu_indices(wm.shape[0], k=1)])
    return out


def _swept(M, W, var, counts, pool=map):
    p = P.class_pairs(M, W, counts, cdnv=(var, M), map=pool)
    out = {}
    for name, s in (("means", p.means), ("weights", p.weights)):
        eq, ma = P.cosine_values(s)
        log, dist, energy = P.hyperspherical_values(s)
        out.update({f"equiangular_{name}": eq, f"maxangle_{name}": ma})
        out.update({f"gnc2_log_{name}": log, f"gnc2_dist_{name}": dist})
        out[f"gnc2_energy_{name}"] = energy
    out["cdnv"], out["cdnv_exp2"] = P.cdnv_values(p.cdnv, p.cdnv_scale)
    out["minority"] = p.weights.minority_sum / p.weights.minority_count
    return out, p


def _data(C=53, d=6, seed=0):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((C, d))
    W = M + 0.3 * rng.standard_normal((C, d))
    var = rng.random(C) + 0.1
    counts = rng.integers(1, 20, C)
    return M, W, var, counts


@pytest.mark.parametrize("block", [256, 8, 5, 1])
def test_sweep_equals_the_direct_formulas(monkeypatch, block):
    monkeypatch.setattr(P, "PAIR_BLOCK", block)  # one tile, several, odd edges, one row
    M, W, var, counts = _data()
    got, _ = _swept(M, W, var, counts)
    want = _direct(M, W, var, counts)
    for key, value in want.items():
        close(got[key], value, rtol=1e-12, atol=1e-15)


def test_one_tile_is_the_direct_upper_triangle_bit_for_bit():
    """Up to PAIR_BLOCK classes the sweep is the direct formula over the upper triangle:
    the same operations in the same order, so the same bits as the pre-sweep kernels."""
    M, W, var, counts = _data(C=40)
    units, _ = P.unit_rows(M)
    (cos,) = list(pairwise_upper(units))
    cos = np.clip(cos, -1.0, 1.0)
    dist = np.sqrt(np.maximum(2.0 - 2.0 * cos, 0.0))
    p = P.pair_sweep([units]).units[0]
    assert p.cos == Moments.of(cos)
    assert p.abs_sum == float(np.abs(cos + 1.0 / 39).sum())
    assert p.dist == Moments.of(dist)
    assert p.log == Moments.of(-np.log(dist))


@pytest.mark.parametrize("C", [1, 2, 3, 4, 7, 40, 256])
def test_one_tile_sweep_is_the_tile_kernels_bit_for_bit(C):
    """Up to PAIR_BLOCK classes the sweep takes every set's values as rows of one array
    (:func:`_one_tile`): the same bits as the tile kernels merged onto zeros
    (``_block_row``), with coincident, zero and float32 rows, a minority and CDNV alone."""
    rng = np.random.default_rng(C)
    M = rng.standard_normal((C, 6))
    W = rng.standard_normal((C, 6)).astype(np.float32)
    if C >= 4:
        M[2], W[3], M[3] = M[0], W[1], 0.0  # a zero distance each, a zero row
    var = rng.random(C)
    (mu, _), (wu, _) = P.unit_rows(M), P.unit_rows(W)
    minority = rng.random(C) < 0.5
    for units, masks, cdnv in (
        ([mu, wu], [None, minority], (var, M)),
        ([None, wu], [None, np.ones(C, bool)], (var * 1e-300, M * 1e-200)),
        ([], None, (var, M)),
        ([mu], None, None),
    ):
        got = P.pair_sweep(units, minority=masks, cdnv=cdnv)
        plan, scale = P.SweepPlan.of(units, masks, cdnv)
        want = P._block_row(plan, 0, 1)
        assert repr((got.units, got.cdnv)) == repr(want) and got.cdnv_scale == scale


def test_thread_count_changes_no_bit(monkeypatch):
    monkeypatch.setattr(P, "PAIR_BLOCK", 16)
    M, W, var, counts = _data(C=301, d=5, seed=3)
    results = []
    for threads in (1, 2, 4):
        with ThreadPoolExecutor(threads) as pool:
            results.append(_swept(M, W, var, counts, pool.map)[1])
    assert results[0] == results[1] == results[2]  # dataclass equality: every float exact


def test_report_json_byte_identical_for_1_2_4_threads(monkeypatch, tmp_path):
    from ncinspect.cli import main

    monkeypatch.setattr(P, "PAIR_BLOCK", 3)  # the 10 classes of the dump in 4 x 4 tiles
    monkeypatch.chdir(ROOT)
    texts = []
    for threads in (1, 2, 4):
        out = tmp_path / f"t{threads}.json"
        args = ["report", "sample_data/synthetic.h5", "--json", str(out), "-q"]
        assert main([*args, "--threads", str(threads)]) == 0
        data = json.loads(out.read_text())
        data.pop("ncinspect_version", None)
        texts.append(json.dumps(data, sort_keys=True))
    assert texts[0] == texts[1] == texts[2]
    metrics = json.loads(texts[0])["snapshots"][-1]["metrics"]
    assert metrics["nc1_cdnv"] is not None and metrics["gnc2_log_means"] is not None


def test_exact_simplex_etf_known_answers(monkeypatch):
    monkeypatch.setattr(P, "PAIR_BLOCK", 7)
    C = 20
    etf = np.eye(C) - np.full((C, C), 1.0 / C)  # rows: a simplex ETF in d = C dimensions
    var = np.full(C, 0.25)
    counts = np.array([10] + [1] * (C - 1))  # every class but the first is a minority
    got, _ = _swept(etf, 3.0 * etf, var, counts)
    for name in ("means", "weights"):
        assert got[f"equiangular_{name}"] == pytest.approx(0.0, abs=1e-15)
        assert got[f"maxangle_{name}"] == pytest.approx(0.0, abs=1e-15)
        assert got[f"gnc2_log_{name}"] == pytest.approx(0.0, abs=1e-15)
        assert got[f"gnc2_dist_{name}"] == pytest.approx(0.0, abs=1e-15)
        close(got[f"gnc2_energy_{name}"], -0.5 * np.log(2 * C / (C - 1)), rtol=1e-14)
    # ||e_c - e_c'||^2 = 2: cdnv = (v + v) / (2 * 2), cdnv_exp2 = (v + v) / (2 * 4)
    close(got["cdnv"], 0.125, rtol=1e-14)
    close(got["cdnv_exp2"], 0.0625, rtol=1e-14)
    close(got["minority"], -1.0 / (C - 1), rtol=1e-13)


def test_coinciding_and_zero_rows_are_flagged():
    M, W, var, counts = _data(C=12)
    M[5] = M[2] = np.eye(6)[0]  # equal means, cos exactly 1: CDNV, GNC2 undefined; NC2 not
    W[7] = 0.0
    p = P.class_pairs(M, W, counts, cdnv=(var, M))
    assert p.means_ok and p.means.coincide and p.cdnv.coincide
    log_var, dist_var, energy = P.hyperspherical_values(p.means)
    assert log_var is None and energy is None  # log(1/0); the distances' variance is defined
    assert dist_var is not None and dist_var > 0
    assert P.cdnv_values(p.cdnv, p.cdnv_scale) == (None, None)
    assert P.cosine_values(p.means)[0] > 0
    assert not p.weights_ok
    assert p.minority_ok == bool(~P.minority_classes(counts)[7])


def test_power_of_two_scales_are_exact():
    M, W, var, counts = _data(C=30)
    base = P.class_pairs(M, W, counts, cdnv=(var, M))
    s = 2.0**300
    big = P.class_pairs(M * s, W * s, counts, cdnv=(var * s * s, M * s))
    assert big.means == base.means and big.weights == base.weights
    assert P.cdnv_values(big.cdnv, big.cdnv_scale)[0] == P.cdnv_values(base.cdnv, 1.0)[0]
    exp2 = P.cdnv_values(big.cdnv, big.cdnv_scale)[1]
    assert exp2 == P.cdnv_values(base.cdnv, 1.0)[1] / s / s


def test_several_default_tiles_equal_the_direct_formulas():
    """C = 600 at the default PAIR_BLOCK: 3 x 3 tiles through the leaner multi-tile kernels
    (reordered sums, the same value per pair), against the spec written directly."""
    assert P.PAIR_BLOCK < 600 <= 3 * P.PAIR_BLOCK
    M, W, var, counts = _data(C=600, d=16, seed=7)
    got, p = _swept(M, W, var, counts)
    want = _direct(M, W, var, counts)
    for key, value in want.items():
        close(got[key], value, rtol=1e-12, atol=1e-15)
    k = np.count_nonzero(P.minority_classes(counts))
    assert p.weights.minority_count == k * (k - 1) // 2


@pytest.mark.parametrize("pair", [(5, 590), (300, 301)])  # across tiles; in a diagonal tile
def test_coinciding_rows_are_flagged_across_tiles(pair):
    M, W, var, counts = _data(C=600, d=16, seed=8)
    M[pair[0]] = M[pair[1]] = 3.0 * np.eye(16)[0]  # exact products: D = 0 exactly
    W[pair[1]] = 2.0 * W[pair[0]]  # the same direction: distance 0 between unit rows
    p = P.class_pairs(M, W, counts, cdnv=(var, M))
    assert p.means.coincide and p.weights.coincide and p.cdnv.coincide
    log_var, dist_var, energy = P.hyperspherical_values(p.means)
    assert log_var is None and energy is None  # log(1/0); the distances' variance is defined
    assert dist_var is not None and dist_var > 0
    assert P.cdnv_values(p.cdnv, p.cdnv_scale) == (None, None)
    M2, W2, var2, counts2 = _data(C=600, d=16, seed=8)
    q = P.class_pairs(M2, W2, counts2, cdnv=(var2, M2))
    assert not (q.means.coincide or q.weights.coincide or q.cdnv.coincide)


@pytest.mark.parametrize("block, C", [(32, 301), (256, 600)])
def test_sums_do_not_depend_on_where_the_buffers_lie(monkeypatch, block, C):
    """Some BLAS reductions (dasum) sum in an order set by the address of the array: the
    sweep's must not, or a report would change with the allocator (and the threads)."""
    monkeypatch.setattr(P, "PAIR_BLOCK", block)
    M, W, var, counts = _data(C=C, d=16, seed=9)
    seen = []
    for off in range(8):

        def buffers(plan, off=off):
            n = plan.block * plan.block
            return tuple(np.empty(n + 8)[off : off + n] for _ in range(3))

        def factor(plan, which, rows, cols, off=off):  # the products' factors as well
            bufs = plan.local.__dict__.setdefault("offset_factors", {})
            if (which, rows, cols) not in bufs:
                buf = np.empty(rows * cols + 8)[off : off + rows * cols]
                bufs[which, rows, cols] = buf.reshape(rows, cols)
            return bufs[which, rows, cols]

        monkeypatch.setattr(P.SweepPlan, "buffers", buffers)
        monkeypatch.setattr(P.SweepPlan, "factor", factor)
        seen.append(_swept(M, W, var, counts)[1])
    assert all(s == seen[0] for s in seen)


@pytest.mark.parametrize(
    "C, pair, seed", [(40, (3, 17), 1), (600, (300, 301), 2), (600, (5, 590), 3)]
)
def test_equal_means_of_any_values_are_flagged(C, pair, seed):
    """Two classes with the same mean, of values whose products round: the product formula
    can leave ~1e-15 for their distance, and CDNV / GNC2 would be 1e15-size numbers. The
    distances near 0 come from the rows' differences: exactly 0, so the metrics are null."""
    M, W, var, counts = _data(C=C, d=16, seed=seed)
    M[pair[1]] = M[pair[0]]
    W[pair[1]] = W[pair[0]]
    p = P.class_pairs(M, W, counts, cdnv=(var, M))
    assert p.means.coincide and p.weights.coincide and p.cdnv.coincide
    log_var, dist_var, energy = P.hyperspherical_values(p.means)
    assert log_var is None and energy is None  # log(1/0); the distances' variance is defined
    assert dist_var is not None and dist_var > 0
    assert P.hyperspherical_values(p.weights)[0::2] == (None, None)
    assert P.cdnv_values(p.cdnv, p.cdnv_scale) == (None, None)


@pytest.mark.parametrize("C, pair", [(40, (3, 17)), (600, (5, 590)), (600, (300, 301))])
def test_close_means_keep_their_digits(C, pair):
    """Two means 1e-7 apart (of norm ~4): the product formula's squared distance keeps about
    two digits; the sweep's (from the difference) matches the direct formula to 1e-9."""
    M, W, var, counts = _data(C=C, d=16, seed=4)
    rng = np.random.default_rng(5)
    M[pair[1]] = M[pair[0]] + 1e-7 * rng.standard_normal(16)
    W[pair[1]] = W[pair[0]] + 1e-7 * rng.standard_normal(16)
    got, _ = _swept(M, W, var, counts)
    want = _direct(M, W, var, counts)
    for key in ("cdnv", "cdnv_exp2", "gnc2_log_means", "gnc2_energy_means", "gnc2_log_weights"):
        close(got[key], want[key], rtol=1e-9)


def test_pair_sums_do_not_depend_on_blas_threads():
    """The multi-tile kernels sum by BLAS ddot, which OpenBLAS splits over its threads above
    10,000 values: the sweep caps BLAS to one thread, so a direct call (no engine around it)
    gives the same bits at any BLAS thread count."""
    from threadpoolctl import threadpool_limits

    from ncinspect.metrics.kernels import pairwise_cosine_stats

    M, W, var, counts = _data(C=700, d=16, seed=11)
    got = []
    for n in (1, 2):
        with threadpool_limits(limits=n, user_api="blas"):
            got.append((pairwise_cosine_stats(M), _swept(M, W, var, counts)[0]))
    assert got[0] == got[1]


@pytest.mark.parametrize("pair", [(5, 590), (300, 301)])  # across tiles; in a diagonal tile
def test_cdnv_where_a_reciprocal_would_overflow(pair):
    """Off the diagonal the multi-tile CDNV sums read ``(v + v') * (1 / D)``; two means
    at D = 2^-1040 (1 / D overflows) with small variances have a finite CDNV: the
    tile divides directly, as the formula does, and CDNV stays finite and exact."""
    M, W, var, counts = _data(C=600, d=16, seed=12)
    e = np.eye(16)
    M[pair[0]], M[pair[1]] = 2.0**-520 * e[0], 2.0**-520 * (e[0] + e[1])  # D = 2^-1040
    var[list(pair)] = 2.0**-60
    got, p = _swept(M, W, var, counts)
    assert not p.cdnv.coincide
    with np.errstate(divide="ignore"):  # D^2 underflows: the reference's exp2 is inf
        want = _direct(M, W, var, counts)
    assert np.isfinite(got["cdnv"]) and got["cdnv"] > 1e280
    close(got["cdnv"], want["cdnv"], rtol=1e-12)


def test_cdnv_tile_sums_equal_the_pairwise_terms():
    """One off-diagonal tile of the multi-tile kernel against its pairs written out:
    ``sum (v + v') / (2 D)`` and ``sum (v + v') / (2 D^2)`` with D from the differences."""
    rng = np.random.default_rng(13)
    C, d = 40, 16
    cen = rng.standard_normal((C, d)) * 0.25
    var = rng.random(C)
    var[3] = 0.0  # a one-row class
    plan = P.SweepPlan([], [], var, cen)
    plan.fast, plan.block = True, 20
    plan.ones = np.ones(400)
    plan.var_half = var * 0.5
    got = P._cdnv_tile_fast(plan, 0, 20, 20, 40, None)
    D = ((cen[:20, None, :] - cen[None, 20:, :]) ** 2).sum(axis=2)
    vs = var[:20, None] + var[None, 20:]
    assert got.count == 400 and not got.coincide
    close(got.total1, float((vs / (2 * D)).sum()), rtol=1e-13)
    close(got.total2, float((vs / (2 * D * D)).sum()), rtol=1e-13)


def test_unit_tile_from_minus_two_cos_is_bit_exact():
    """The multi-tile kernel's product forms -2 cos; every sum it takes from that (cosine
    moments, |cos + 1/(C-1)|, the minority sum, 2 - 2 cos) is the plain one's times a
    power of two: the same bits as the kernel written on the cosines themselves."""
    rng = np.random.default_rng(14)
    C, d, b = 64, 16, 32
    units, _ = P.unit_rows(rng.standard_normal((C, d)))
    units[40] = units[3]  # a cosine that rounds above 1 and a zero distance
    minority = rng.random(C) < 0.5
    plan = P.SweepPlan([units], [minority], None, None)
    plan.fast, plan.block = True, b
    plan.ones = np.ones(b * b)
    with np.errstate(divide="ignore", invalid="ignore"):  # as the sweep runs its tiles
        got = P._unit_tile_fast(plan, units, 0, 0, b, b, C, None)
    cos = np.clip(units[:b] @ units[b:].T, -1.0, 1.0)
    flat = cos.ravel()
    tmp = np.empty(b * b)
    want = P.UnitPairs(cos=P._moments_fast(flat, tmp, plan.ones))
    want.abs_sum = float(np.dot(np.abs(flat + 1.0 / (C - 1)), plan.ones))
    wa, wb = minority[:b].astype(float), minority[b:].astype(float)
    want.minority_sum = float(np.dot(wa @ cos, wb))
    want.minority_count = int(wa.sum()) * int(wb.sum())
    dist = np.sqrt(2.0 - 2.0 * flat)
    P.near_exact(dist, plan.near_unit, units, 0, b, b, None, squared=False)
    want.dist = P._moments_fast(dist, tmp, plan.ones)
    with np.errstate(divide="ignore", invalid="ignore"):  # log 0 = -inf: the mean is -inf
        m = P._moments_fast(np.log(dist), tmp, plan.ones)
    want.log, want.coincide = Moments(m.count, -m.mean, m.m2), True
    assert got.coincide
    assert repr(got.cos) == repr(want.cos) and got.abs_sum == want.abs_sum
    assert got.minority_sum == want.minority_sum
    assert got.minority_count == want.minority_count
    assert got.dist == want.dist and got.log.count == want.log.count


def _walk_close(a, b, path=""):
    """Every number of two JSON trees within 1e-12 (relative), everything else equal."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _walk_close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _walk_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= 1e-12 * abs(b) + 1e-300, (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_report_over_several_tiles_equals_one_tile(monkeypatch, tmp_path):
    """A report of C = 300 classes (2 x 2 tiles through the multi-tile kernels) against the
    same report swept as one tile (the direct formulas): every number within 1e-12."""
    from ncinspect import DumpWriter
    from ncinspect.cli import main

    rng = np.random.default_rng(15)
    C, d, n = 300, 16, 900
    means = rng.standard_normal((C, d))
    y = np.arange(n) % C
    path = tmp_path / "c300.h5"
    with DumpWriter(str(path), "w") as w:
        w.write("labels", y)
        snap = w.snapshot("/")
        snap.append(features=means[y] + 0.5 * rng.standard_normal((n, d)))
        snap.write(weights=means + 0.1 * rng.standard_normal((C, d)), bias=np.zeros(C))
    texts, default = [], P.PAIR_BLOCK
    for block in (default, 4 * default):
        monkeypatch.setattr(P, "PAIR_BLOCK", block)
        out = tmp_path / f"b{block}.json"
        assert main(["report", str(path), "--json", str(out), "-q"]) == 0
        data = json.loads(out.read_text())
        data.pop("ncinspect_version", None)
        texts.append(data)
    m = texts[0]["snapshots"][0]["metrics"]
    assert texts[0]["snapshots"][0]["n_classes"] == C > default
    assert m["nc1_cdnv"] is not None and m["gnc2_log_means"] is not None
    assert m["minority_collapse"] is None or isinstance(m["minority_collapse"], float)
    assert texts[0] != texts[1]  # the sums were reordered: not the same bits
    _walk_close(texts[0], texts[1])
