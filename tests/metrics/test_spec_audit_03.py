"""Spec audit of the 0.3 sections of spec/metrics.md: spectral metrics, directional CDNV,
the layer-wise law and the OOD scores, against the independent reference of
tests/metrics/spec_audit_ref.py (written from the spec text), on arrays, HDF5 dumps and the
CLI's JSON, plus the spec's known answers."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main

from . import spec_audit_ref as R
from .test_spec_audit import SPECTRA_KEYS, assert_matches, make, simplex

# ---------------------------------------------------------------- spectral metrics


@pytest.mark.parametrize(
    "counts,d,center",
    [
        ([10, 10, 10], 5, "classes"),
        ([3, 2, 3], 12, "classes"),
        ([9, 4, 7, 2], 6, "samples"),
        ([4, 4, 4, 4, 4, 4, 4], 3, "classes"),
    ],
)
def test_spectra_against_the_reference(counts, d, center):
    rng = np.random.default_rng(sum(counts) * d)
    H, y, W, b = make(rng, counts, d)
    H = H + 5.0  # a common offset: rankme sees the uncentred matrix
    m = ncinspect.analyze(H, y, weights=W, center=center, spectra=True).metrics
    assert set(SPECTRA_KEYS) <= set(m)
    assert_matches(m, R.reference_spectra(H, y, center=center))
    N = len(y)
    assert 1 <= m["rank_effective"] <= min(d, N - 1) + 1e-12


def test_spectra_are_opt_in():
    rng = np.random.default_rng(1)
    H, y, W, b = make(rng, [5, 5], 3)
    m = ncinspect.analyze(H, y, weights=W).metrics
    assert not set(SPECTRA_KEYS) & set(m)


@pytest.mark.parametrize("C,d", [(3, 4), (4, 6)])
def test_spectra_simplex_known_answers(C, d):
    """Isotropic classes on an exact simplex ETF: Sigma_T has eigenvalues s^2 + r^2/(C-1)
    (C-1 times) and s^2 (d-C+1 times); the means' singular values are all equal."""
    rng = np.random.default_rng(C + d)
    r, t = 1.3, 0.4
    H, y, M = simplex(C, d, r, t, rng)
    N = len(y)
    m = ncinspect.analyze(H, y, spectra=True).metrics
    s2 = t * t / d
    lt = np.array([s2 + r * r / (C - 1)] * (C - 1) + [s2] * (d - C + 1))
    assert math.isclose(m["rank_effective_means"], C - 1, rel_tol=1e-12)
    assert math.isclose(m["rank_effective_within"], d, rel_tol=1e-12)
    assert math.isclose(m["rank_effective"], R.eff_rank(np.sqrt(lt)), rel_tol=1e-12)
    assert math.isclose(m["stable_rank"], lt.sum() / lt[0], rel_tol=1e-12)
    # mu_G = hbar = 0 here: the uncentred singular values are sqrt(N l_k)
    p = np.sqrt(N * lt) / np.sqrt(N * lt).sum() + 1e-7
    assert math.isclose(m["rankme"], math.exp(-(p * np.log(p)).sum()), rel_tol=1e-12)
    # a fully collapsed snapshot (every row its class mean): rank_effective <= C - 1
    Hc = M[y]
    mc = ncinspect.analyze(Hc, y, spectra=True).metrics
    assert mc["rank_effective"] <= C - 1 + 1e-9
    assert math.isclose(mc["rank_effective"], C - 1, rel_tol=1e-9)


@pytest.mark.parametrize("a", [0.5, 1.0, 2.3])
def test_alpha_req_exact_power_law(a):
    """Features with Sigma_T = R diag(k^-a) R^T exactly give alpha_req = a."""
    rng = np.random.default_rng(int(a * 10))
    N, d = 40, 6
    lam = np.arange(1, d + 1, dtype=np.float64) ** -a
    X = rng.normal(size=(N, d))
    X -= X.mean(axis=0)
    Q, _ = np.linalg.qr(X)  # N x d orthonormal columns, orthogonal to 1
    Rot, _ = np.linalg.qr(rng.normal(size=(d, d)))
    H = math.sqrt(N) * Q @ np.diag(np.sqrt(lam)) @ Rot.T + 0.25
    y = np.arange(N) % 4
    m = ncinspect.analyze(H, y, spectra=True).metrics
    assert math.isclose(m["alpha_req"], a, rel_tol=1e-9)
    assert math.isclose(m["stable_rank"], lam.sum(), rel_tol=1e-9)
    assert_matches(m, R.reference_spectra(H, y), rtol=1e-9)


def test_alpha_req_null_below_three_eigenvalues():
    rng = np.random.default_rng(3)
    H, y, W, b = make(rng, [6, 6, 6], 2)
    res = ncinspect.analyze(H, y, spectra=True)
    assert res.metrics["alpha_req"] is None
    assert any("alpha_req" in w for w in res.warnings)


def test_spectra_beyond_the_budget_are_null_naming_it():
    rng = np.random.default_rng(4)
    H, y, W, b = make(rng, [30, 30], 400)
    res = ncinspect.analyze(H, y, spectra=True, memory_limit=4 << 20)
    for key in SPECTRA_KEYS:
        assert res.metrics[key] is None
        reason = [w for w in res.warnings if key in w]
        assert reason and ("budget" in reason[0] or "memory" in reason[0]), reason


def test_spectra_from_a_dump_and_the_cli(tmp_path):
    rng = np.random.default_rng(5)
    H, y, W, b = make(rng, [8, 6, 9], 5)
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = H, y, W
    ref = R.reference_spectra(H, y)
    assert_matches(ncinspect.analyze_file(path, spectra=True)[0].metrics, ref)
    out = tmp_path / "s.json"
    assert main(["report", str(path), "--spectra", "--json", str(out), "-q"]) == 0
    assert_matches(json.loads(out.read_text())["snapshots"][0]["metrics"], ref)


# ---------------------------------------------------------------- directional CDNV


def test_directional_cdnv_extremes():
    """Two classes whose spread lies only along the separating axis: q = v and the
    directional value equals nc1_cdnv; spread only across it: 0."""
    mu0, mu1 = np.array([0.0, 0.0, 0.0]), np.array([2.0, 0.0, 0.0])
    along = np.array([[0.5, 0, 0], [-0.5, 0, 0], [0.25, 0, 0], [-0.25, 0, 0]])
    across = np.array([[0, 0.5, 0], [0, -0.5, 0], [0, 0, 0.25], [0, 0, -0.25]])
    y = np.array([0] * 4 + [1] * 4)
    m = ncinspect.analyze(np.vstack([mu0 + along, mu1 + along]), y).metrics
    assert math.isclose(m["nc1_cdnv_directional"], m["nc1_cdnv"], rel_tol=1e-14)
    m = ncinspect.analyze(np.vstack([mu0 + across, mu1 + across]), y).metrics
    assert m["nc1_cdnv_directional"] == 0 and m["nc1_cdnv"] > 0


def test_directional_cdnv_with_absent_and_one_sample_classes():
    rng = np.random.default_rng(6)
    y = np.array([0, 0, 0, 2, 2, 3, 5, 5, 5, 5])
    H = rng.normal(size=(10, 4)) + 3 * rng.normal(size=(6, 4))[y]
    W = rng.normal(size=(6, 4))
    m = ncinspect.analyze(H, y, weights=W).metrics
    ref = R.reference_metrics(H, y, W)
    assert_matches(m, {"nc1_cdnv_directional": ref["nc1_cdnv_directional"]})


def test_directional_cdnv_beyond_the_budget_is_null_naming_it():
    rng = np.random.default_rng(7)
    C = 300
    y = np.repeat(np.arange(C), 2)
    H = rng.normal(size=(2 * C, 3)) + 4 * rng.normal(size=(C, 3))[y]
    res = ncinspect.analyze(H, y, memory_limit=2 << 20)
    assert res.metrics["nc1_cdnv_directional"] is None
    reason = [w for w in res.warnings if "nc1_cdnv_directional" in w]
    assert reason and ("budget" in reason[0] or "memory" in reason[0] or "MiB" in reason[0])


# ---------------------------------------------------------------- layer-wise law


def _layered_file(path, nc1_scale, rng, C=3, d=4, t0=0.5, extra=None, skip=()):
    """One epoch: layer_1..layer_K (K = len(nc1_scale) - 1, less the positions in skip) and
    the penultimate snapshot, each a simplex ETF whose within-class spread scales nc1 by
    nc1_scale[l] exactly; ``extra``: layers named otherwise, {name: (scale, layer_index)}."""
    H0, y, M = simplex(C, d, 1.0, t0, rng)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        g = f.create_group("epoch_0007")
        K = len(nc1_scale) - 1
        for k in range(K + 1):
            if k + 1 in skip:
                continue
            Hk = M[y] + math.sqrt(nc1_scale[k]) * (H0 - M[y])
            grp = g.create_group(f"layer_{k + 1}") if k < K else g
            grp["features"] = Hk
        g["weights"] = M
        for name, (scale, index) in (extra or {}).items():
            grp = g.create_group(name)
            grp["features"] = M[y] + math.sqrt(scale) * (H0 - M[y])
            grp.attrs["layer"] = name
            if index is not None:
                grp.attrs["layer_index"] = index
    return y


def _law(path, tmp_path, capsys=None):
    out = tmp_path / "law.json"
    assert main(["report", str(path), "--json", str(out), "-q"]) == 0
    return json.loads(out.read_text())


def test_geometric_layer_sequence_gives_the_rate(tmp_path):
    rng = np.random.default_rng(8)
    rho, A = 0.4, 3.0
    scales = [A * rho**l for l in range(1, 6)]  # positions 1..4 and the penultimate 5
    path = tmp_path / "layers.h5"
    _layered_file(path, scales, rng)
    j = _law(path, tmp_path)
    (entry,) = j["layers"]
    law = entry["metrics"]
    nc1 = [row["nc1"] for row in entry["layers"]]
    assert [row["position"] for row in entry["layers"]] == [1, 2, 3, 4, 5]
    assert law["layer_law_layers"] == 5
    assert math.isclose(law["layer_rate"], rho, rel_tol=1e-10)
    assert math.isclose(law["layer_law_r"], -1.0, rel_tol=1e-12)
    slope, intercept, r = R.least_squares(range(1, 6), np.log(nc1))
    assert math.isclose(law["layer_law_intercept"], intercept, rel_tol=1e-10)
    # intercept = log(nc1 at l = 0): the scale of layer 1's nc1 divided by rho
    assert math.isclose(math.exp(law["layer_law_intercept"]), nc1[0] / rho, rel_tol=1e-10)


def test_random_layers_against_the_reference_and_layer_index(tmp_path):
    rng = np.random.default_rng(9)
    scales = [1.0, 0.3, 0.5, 0.05]
    path = tmp_path / "layers.h5"
    # layer_2 is written as "block_x" with layer_index 2; "block_y" has no index: left out
    _layered_file(
        path, scales, rng, extra={"block_x": (0.01, 2), "block_y": (0.2, None)}, skip=(2,)
    )
    j = _law(path, tmp_path)
    (entry,) = j["layers"]
    pos = {row["layer"]: row["position"] for row in entry["layers"]}
    assert pos == {"layer_1": 1, "block_x": 2, "layer_3": 3, None: 4}
    assert any(
        "block_y" in w for w in entry["warnings"] + sum((s["warnings"] for s in j["snapshots"]), [])
    )
    by_name = {s["layer"]: s["metrics"]["nc1"] for s in j["snapshots"]}
    xs = [row["position"] for row in entry["layers"]]
    zs = [math.log(by_name[row["layer"]]) for row in entry["layers"]]
    slope, intercept, r = R.least_squares(xs, zs)
    law = entry["metrics"]
    assert law["layer_law_layers"] == len(xs) == 4
    assert math.isclose(law["layer_rate"], math.exp(slope), rel_tol=1e-10)
    assert math.isclose(law["layer_law_intercept"], intercept, rel_tol=1e-10, abs_tol=1e-12)
    assert math.isclose(law["layer_law_r"], r, rel_tol=1e-10)


def test_layer_law_null_cases_have_reasons(tmp_path):
    rng = np.random.default_rng(10)
    path = tmp_path / "two.h5"
    _layered_file(path, [1.0, 0.5], rng)  # layer_1 and the penultimate: 2 layers
    (entry,) = _law(path, tmp_path)["layers"]
    assert entry["metrics"]["layer_rate"] is None and entry["warnings"]
    # layer_2 fully collapsed onto integer class means: every sum is exact, nc1 = 0 exactly
    M = np.array([[2.0, -1, -1, 0], [-1, 2, -1, 0], [-1, -1, 2, 0]])
    y = np.repeat(np.arange(3), 4)
    path = tmp_path / "zero.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for k, noise in ((1, 0.5), (2, 0.0), (3, 0.25), (None, 0.125)):
            g = f.require_group("epoch_0001" if k is None else f"epoch_0001/layer_{k}")
            g["features"] = M[y] + noise * rng.normal(size=(12, 4))
    j = _law(path, tmp_path)
    assert [s["metrics"]["nc1"] for s in j["snapshots"] if s["layer"] == "layer_2"] == [0.0]
    (entry,) = j["layers"]
    for key in ("layer_rate", "layer_law_intercept", "layer_law_r"):
        assert entry["metrics"][key] is None
    assert entry["warnings"]


# ---------------------------------------------------------------- OOD scores and NC5


def _ref_ood(H_id, y_id, W, b, H_ood, alpha=0.0, center="classes"):
    present, n, mu, muG, Mt = R.class_stats(H_id, y_id, center)
    si = R.ood_scores(H_id, W, b, mu, muG, Mt, alpha)
    so = R.ood_scores(H_ood, W, b, mu, muG, Mt, alpha)
    out = {}
    for s in ("ncspan", "nci", "maxlogit"):
        out[f"ood_auroc_{s}"] = R.auroc(si[s], so[s]) if W is not None or s == "ncspan" else None
        out[f"ood_fpr95_{s}"] = R.fpr95(si[s], so[s]) if W is not None or s == "ncspan" else None
    muo = np.asarray(H_ood, dtype=np.float64).mean(axis=0)
    out["nc5_ood_orthogonality"] = float(np.mean([abs(R._cos(m, muo)) for m in mu]))
    return out


@pytest.mark.parametrize(
    "n_id,alpha,center",
    [(20, 0.0, "classes"), (21, 0.3, "samples"), (60, 0.0, "classes"), (100, 0.0, "classes")],
)
def test_ood_scores_against_the_reference(n_id, alpha, center):
    rng = np.random.default_rng(n_id)
    C, d = 3, 5
    y = np.arange(n_id) % C
    H = rng.normal(size=(n_id, d)) + 2 * rng.normal(size=(C, d))[y]
    W, b = rng.normal(size=(C, d)), rng.normal(size=C)
    Ho = rng.normal(size=(13, d)) + 0.5
    res = ncinspect.analyze(
        H, y, weights=W, bias=b, ood_features=Ho, nci_alpha=alpha, center=center
    )
    assert_matches(res.metrics, _ref_ood(H, y, W, b, Ho, alpha, center))


def test_ood_scores_ties_count_one_half():
    rng = np.random.default_rng(11)
    y = np.array([0, 1] * 10)
    H = np.array([[1.0], [3.0]])[y] + rng.normal(size=(20, 1))
    W = np.array([[1.0], [-1.0]])
    Ho = rng.normal(size=(9, 1))
    res = ncinspect.analyze(H, y, weights=W, ood_features=Ho)
    ref = _ref_ood(H, y, W, None, Ho)
    assert ref["ood_auroc_ncspan"] == 0.5  # d = 1: every row lies in span(M~)
    assert_matches(res.metrics, ref)


def test_ood_without_classifier_nulls_nci_and_maxlogit():
    rng = np.random.default_rng(12)
    H, y, W, b = make(rng, [7, 8, 6], 4)
    Ho = rng.normal(size=(10, 4))
    res = ncinspect.analyze(H, y, ood_features=Ho)
    ref = _ref_ood(H, y, None, None, Ho)
    assert_matches(res.metrics, ref)
    for key in ("ood_auroc_nci", "ood_fpr95_nci", "ood_auroc_maxlogit", "ood_fpr95_maxlogit"):
        assert any(key in w for w in res.warnings), key


def test_ood_from_a_dump_pairs_with_the_test_split(tmp_path):
    rng = np.random.default_rng(13)
    C, d = 3, 4
    y, yt = np.arange(15) % C, np.arange(12) % C
    W, b = rng.normal(size=(C, d)), rng.normal(size=C)
    centres = 2 * rng.normal(size=(C, d))
    H, Ht = rng.normal(size=(15, d)) + centres[y], rng.normal(size=(12, d)) + centres[yt]
    Ho, Hf = rng.normal(size=(7, d)), rng.normal(size=(6, d)) + 1.0
    path = tmp_path / "ood.h5"
    with h5py.File(path, "w") as f:
        for split, HH, yy in (("train", H, y), ("test", Ht, yt)):
            g = f.create_group(f"{split}/epoch_0003")
            g.attrs["split"] = split
            g["features"], g["labels"], g["weights"], g["bias"] = HH, yy, W, b
        f["ood/epoch_0003/features"] = Ho
        f["ood_far/epoch_0003/features"] = Hf
    out = tmp_path / "ood.json"
    assert main(["report", str(path), "--json", str(out), "-q"]) == 0
    snaps = {s["name"]: s for s in json.loads(out.read_text())["snapshots"]}
    test, train = snaps["/test/epoch_0003"]["metrics"], snaps["/train/epoch_0003"]["metrics"]
    assert_matches(test, _ref_ood(Ht, yt, W, b, Ho))
    far = {k + "_far": v for k, v in _ref_ood(Ht, yt, W, b, Hf).items()}
    assert_matches(test, far)
    # NC5 on every ID snapshot of the epoch, the scores on the test split only
    assert_matches(
        train, {"nc5_ood_orthogonality": _ref_ood(H, y, W, b, Ho)["nc5_ood_orthogonality"]}
    )
    assert "ood_auroc_ncspan" not in train
    assert snaps["/ood/epoch_0003"]["metrics"] == {}


def test_ood_keys_without_a_partner_are_null_with_the_partner_reason(tmp_path):
    """An ID snapshot of an epoch with no OOD snapshot: every OOD key is null, and the
    reason is the missing partner (spec: "no OOD partner of the epoch and layer"), not a
    made-up "no class means" (the snapshot has class means)."""
    rng = np.random.default_rng(17)
    C, d = 3, 4
    y = np.arange(12) % C
    path = tmp_path / "o.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for ep in (1, 2):
            f[f"epoch_{ep:04d}/features"] = rng.normal(size=(12, d)) + rng.normal(size=(C, d))[y]
            f[f"epoch_{ep:04d}/weights"] = rng.normal(size=(C, d))
        f["ood/epoch_0001/features"] = rng.normal(size=(5, d))
    out = tmp_path / "o.json"
    assert main(["report", str(path), "--json", str(out), "-q"]) == 0
    snaps = {s["name"]: s for s in json.loads(out.read_text())["snapshots"]}
    first = snaps["/epoch_0001"]
    H1 = np.asarray(h5py.File(path)["epoch_0001/features"])
    W1 = np.asarray(h5py.File(path)["epoch_0001/weights"])
    Ho = np.asarray(h5py.File(path)["ood/epoch_0001/features"])
    assert_matches(first["metrics"], _ref_ood(H1, y, W1, None, Ho))  # split-less ID: scored
    second = snaps["/epoch_0002"]
    keys = [f"ood_{st}_{s}" for st in ("auroc", "fpr95") for s in ("ncspan", "nci", "maxlogit")]
    for key in keys + ["nc5_ood_orthogonality"]:
        assert second["metrics"][key] is None
        (reason,) = [w for w in second["warnings"] if key in w]
        assert "no 'ood' snapshot of epoch 2" in reason, reason


def test_layer_law_in_csv_and_as_a_check_rule(tmp_path, capsys):
    rng = np.random.default_rng(18)
    good, bad = tmp_path / "good.h5", tmp_path / "bad.h5"
    _layered_file(good, [3 * 0.4**l for l in range(1, 6)], rng)
    _layered_file(bad, [1.0, 0.3, 0.5, 0.6], rng)
    assert main(["check", str(good), "--max", "layer_law_r=-0.95"]) == 0
    assert main(["check", str(bad), "--max", "layer_law_r=-0.95"]) == 1
    out = tmp_path / "g.csv"
    assert main(["report", str(good), "--csv", str(out), "-q"]) == 0
    import csv

    rows = list(csv.DictReader(out.open()))
    assert rows and all(math.isclose(float(r["layer_rate"]), 0.4, rel_tol=1e-10) for r in rows)
    assert all(int(r["layer_law_layers"]) == 5 for r in rows)


@pytest.mark.parametrize("spread", [1e-5, 1e-7])
def test_strong_collapse_keeps_the_digits_of_within_class_values(spread):
    """Numerics: within-class quantities come from centred values, so at nc1 ~ 1e-10 ..
    1e-14 they keep their digits (the reference forms the residuals explicitly)."""
    rng = np.random.default_rng(21)
    C, d = 4, 6
    y = np.repeat(np.arange(C), 6)
    H = rng.normal(size=(C, d))[y] + spread * rng.normal(size=(len(y), d))
    W = rng.normal(size=(C, d))
    m = ncinspect.analyze(H, y, weights=W, spectra=True).metrics
    ref = R.reference_metrics(H, y, W)
    ref.update(R.reference_spectra(H, y))
    keys = "nc1 nc1_trace_ratio nc1_cdnv nc1_cdnv_exp2 nc1_cdnv_directional".split()
    keys += "rank_effective_within rank_effective_means stable_rank".split()
    assert m["nc1"] < 1e-9
    assert_matches(m, {k: ref[k] for k in keys}, rtol=1e-12, atol=0)


@pytest.mark.parametrize("C,d", [(3, 2), (5, 3), (6, 5)])
def test_ncspan_is_exactly_one_when_the_means_span_every_direction(C, d):
    """C - 1 >= d: span(M~) is all of R^d, P = I and ncspan = 1 on every row, so its AUROC
    is exactly 1/2 (all ties) and its FPR95 exactly 1; round-off in ||P r|| / ||r|| must not
    rank the rows (it gave AUROCs from 0.31 to 0.66 on such data)."""
    rng = np.random.default_rng(C * d)
    for _ in range(3):
        n_id = int(rng.integers(15, 60))
        y = np.arange(n_id) % C
        H = rng.integers(-2, 3, size=(n_id, d)) + 4.0 * rng.normal(size=(C, d))[y]
        W = rng.normal(size=(C, d))
        Ho = rng.integers(-2, 3, size=(int(rng.integers(5, 30)), d)).astype(np.float64)
        res = ncinspect.analyze(H, y, weights=W, ood_features=Ho)
        assert res.metrics["ood_auroc_ncspan"] == 0.5
        assert res.metrics["ood_fpr95_ncspan"] == 1.0
        assert_matches(res.metrics, _ref_ood(H, y, W, None, Ho))


def test_layer_law_r_is_null_when_nc1_agrees_to_round_off(tmp_path):
    """Layers that are scaled copies of one another have the same nc1 (it is scale-free), so
    log nc1 is constant and r = S_lz / sqrt(S_ll S_zz) is 0/0; nc1's last-ulp differences
    must not produce a correlation (it gave r = 0.05 here, -0.23 on another draw)."""
    rng = np.random.default_rng(22)
    y = np.arange(30) % 3
    H = rng.normal(size=(30, 5)) + rng.normal(size=(3, 5))[y]
    path = tmp_path / "scaled.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for k, scale in ((1, 3.0), (2, 0.7), (3, 11.0)):
            f[f"epoch_0001/layer_{k}/features"] = H * scale
        f["epoch_0001/features"] = H * 1.3
    (entry,) = _law(path, tmp_path)["layers"]
    nc1 = [row["nc1"] for row in entry["layers"]]
    assert max(nc1) - min(nc1) < 1e-13 * max(nc1)
    assert entry["metrics"]["layer_law_r"] is None
    assert any("layer_law_r" in w for w in entry["warnings"])
    assert math.isclose(entry["metrics"]["layer_rate"], 1.0, rel_tol=1e-12)


def test_every_engine_and_chunking_gives_the_reference():
    """Streaming (1, 3 rows a chunk), the in-loop Meter (any batch split, both passes) and
    the Dask engine give the reference's numbers for every key, 0.3 keys included."""
    rng = np.random.default_rng(24)
    H, y, W, b = make(rng, [12, 5, 9, 7], 6)
    Ho = rng.normal(size=(15, 6))
    ref = R.reference_metrics(H, y, W, b)
    ref.update(R.reference_spectra(H, y))
    with_ood = dict(ref, **_ref_ood(H, y, W, b, Ho))
    for rows in (1, 3):
        res = ncinspect.analyze(
            H, y, weights=W, bias=b, spectra=True, chunk_rows=rows, ood_features=Ho
        )
        assert_matches(res.metrics, with_ood)
    meter = ncinspect.Meter(weights=W, bias=b, spectra=True)
    for i in range(0, len(y), 5):
        meter.update(H[i : i + 5], y[i : i + 5])
    meter.next_pass()
    for i in range(0, len(y), 4):
        meter.update(H[i : i + 4], y[i : i + 4])
    assert_matches(meter.compute().metrics, ref)
    import dask.array as da  # the test extras install dask (never skipped)

    res = ncinspect.analyze(
        da.from_array(H, chunks=(5, 6)), y, weights=W, bias=b, spectra=True, ood_features=Ho
    )
    assert_matches(res.metrics, with_ood)
