"""Spec audit: every NC1-NC4, SQI, per-class and generalized key of spec/metrics.md against an
independent float64 reference written from the spec text (tests/metrics/spec_audit_ref.py),
on inputs made the way users make them (arrays, HDF5 and NPZ dumps, the CLI's JSON)."""

from __future__ import annotations

import json
import math

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main

from . import spec_audit_ref as R

RTOL = 1e-10

# every key of spec/metrics.md's sections "Metrics" and "Generalized metrics" (without OOD)
SPEC_KEYS = """nc1 nc1_trace_ratio nc1_cdnv nc2_equinorm_means nc2_equinorm_weights
nc2_equiangular_means nc2_equiangular_weights nc2_maxangle_means nc2_maxangle_weights
etf_error_means etf_error_weights etf_error_weights_centered nc3_self_duality
nc3_duality_etf_error nc3_duality_cos nc4_ncc_mismatch accuracy_classifier accuracy_ncc
sqi_eps1 sqi_eps2 sqi_delta sqi_ratio sqi_spread mse interpolates gnc2_log_means
gnc2_dist_means gnc2_energy_log_means gnc2_log_weights gnc2_dist_weights
gnc2_energy_log_weights unc3_uniform_duality bias_collapse nc1_cdnv_exp2 of_error_weights
of_error_means of_error_duality etf_feasible etf_error_floor seli_error_weights
seli_error_means seli_error_logits minority_collapse nc1_cdnv_directional""".split()
SPECTRA_KEYS = (
    "rank_effective rank_effective_within rank_effective_means rankme stable_rank alpha_req".split()
)
PER_CLASS_KEYS = "n var mean_norm weight_norm duality_cos ncc_agreement accuracy_classifier".split()


def assert_matches(got: dict, ref: dict, rtol: float = RTOL, atol: float = 1e-14) -> None:
    bad = []
    for key, want in ref.items():
        assert key in got, f"{key} missing from the result"
        have = got[key]
        if want is None or isinstance(want, bool) or have is None:
            if have != want:
                bad.append((key, have, want))
        elif not math.isclose(have, want, rel_tol=rtol, abs_tol=atol):
            bad.append((key, have, want))
    assert not bad, f"(key, ncinspect, reference): {bad}"


def make(rng, counts, d, sep=2.0, n_rows=None):
    """Features of len(counts) classes (counts[c] rows of class c, shuffled), a classifier
    with n_rows rows (default len(counts)) and a bias."""
    C = len(counts)
    rows = C if n_rows is None else n_rows
    y = np.concatenate([np.full(k, c) for c, k in enumerate(counts)]).astype(np.int64)
    rng.shuffle(y)
    centres = sep * rng.normal(size=(rows, d))
    H = rng.normal(size=(len(y), d)) + centres[y]
    return H, y, rng.normal(size=(rows, d)), rng.normal(size=rows)


CASES = [  # (counts, d, center)
    ([10, 10, 10], 5, "classes"),
    ([12, 5, 3, 9], 6, "classes"),
    ([12, 5, 3, 9], 6, "samples"),
    ([20, 2, 2, 7, 1], 4, "classes"),  # imbalanced, a one-sample class, minority collapse
    ([3, 4, 3, 5, 4, 3, 3], 3, "classes"),  # C > d + 1: etf_error_floor > 0
]


@pytest.mark.parametrize("counts,d,center", CASES)
def test_every_key_against_the_reference(counts, d, center):
    rng = np.random.default_rng(sum(counts) + d)
    H, y, W, b = make(rng, counts, d)
    res = ncinspect.analyze(H, y, weights=W, bias=b, center=center, per_class=True)
    assert set(SPEC_KEYS) <= set(res.metrics)
    assert_matches(res.metrics, R.reference_metrics(H, y, W, b, center=center))
    got = json.loads(res.to_json())
    assert got["center"] == center
    ref_rows = R.reference_per_class(H, y, W, b, center=center)
    assert [row["class"] for row in got["per_class"]] == [r["cls"] for r in ref_rows]
    for have, want in zip(got["per_class"], ref_rows, strict=True):
        assert set(PER_CLASS_KEYS) <= set(have)
        assert_matches(have, {k: want[k] for k in PER_CLASS_KEYS})


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int16])
def test_stored_dtypes_accumulate_in_float64(dtype):
    rng = np.random.default_rng(5)
    H, y, W, b = make(rng, [8, 9, 7], 4)
    Hs = (H * 8).astype(dtype) if dtype == np.int16 else H.astype(dtype)
    W32, b32 = W.astype(np.float32), b.astype(np.float32)
    res = ncinspect.analyze(Hs, y, weights=W32, bias=b32, spectra=True)
    # the reference on the exactly widened stored values
    H64 = Hs.astype(np.float64)
    ref = R.reference_metrics(H64, y, W32.astype(np.float64), b32.astype(np.float64))
    assert_matches(res.metrics, ref)
    assert_matches(res.metrics, R.reference_spectra(H64, y))


def test_absent_classes_use_present_rows_and_decide_over_all_rows():
    rng = np.random.default_rng(7)
    C, d = 6, 4
    y = np.array([0, 2, 3, 5] * 6 + [0, 2, 5])
    rng.shuffle(y)
    centres = 2 * rng.normal(size=(C, d))
    H = rng.normal(size=(len(y), d)) + centres[y]
    W, b = rng.normal(size=(C, d)), rng.normal(size=C)
    W[1] = 3 * centres[1]  # an absent row that wins some decisions: argmax over every row
    res = ncinspect.analyze(H, y, weights=W, bias=b, spectra=True)
    ref = R.reference_metrics(H, y, W, b)
    assert ref["accuracy_classifier"] < 1
    assert_matches(res.metrics, ref)
    assert_matches(res.metrics, R.reference_spectra(H, y))
    got = json.loads(res.to_json())
    assert (got["n_classes"], got["n_classes_total"]) == (4, 6)
    assert sum("absent" in w for w in res.warnings) == 1


def test_stored_outputs_feed_sqi_but_nc4_uses_w():
    rng = np.random.default_rng(8)
    H, y, W, b = make(rng, [6, 7, 5], 4)
    F = rng.normal(size=(len(y), 3))
    res = ncinspect.analyze(H, y, weights=W, bias=b, outputs=F)
    assert_matches(res.metrics, R.reference_metrics(H, y, W, b, outputs=F))


def test_exact_sqi_and_interpolation():
    """Outputs exactly t(y_i) (SQI holds): delta 0, ratio 1, spread 0; and one-hot outputs
    interpolate."""
    rng = np.random.default_rng(9)
    H, y, W, b = make(rng, [5, 5, 5, 5], 3)
    eps1, eps2 = 0.375, 0.125  # eps1 = (C - 1) eps2
    T = np.full((len(y), 4), eps2)
    T[np.arange(len(y)), y] = 1 - eps1
    m = ncinspect.analyze(H, y, weights=W, bias=b, outputs=T).metrics
    assert math.isclose(m["sqi_eps1"], eps1, rel_tol=1e-14)
    assert math.isclose(m["sqi_eps2"], eps2, rel_tol=1e-14)
    assert abs(m["sqi_delta"]) < 1e-15 and math.isclose(m["sqi_ratio"], 1.0, rel_tol=1e-14)
    assert m["sqi_spread"] < 1e-15 and m["interpolates"] is False
    onehot = np.eye(4)[y] + 1e-4
    m = ncinspect.analyze(H, y, weights=W, outputs=onehot).metrics
    assert m["interpolates"] is True and m["sqi_ratio"] is not None
    m = ncinspect.analyze(H, y, weights=W, outputs=np.eye(4)[y]).metrics
    assert m["sqi_eps2"] == 0 and m["sqi_ratio"] is None and m["mse"] == 0


def simplex(C, d, r, t, rng):
    """An exact simplex ETF of radius r in R^d (d >= C) rotated at random, with rows
    mu_c +- t e_k for every axis k (isotropic classes, Sigma_W = (t^2/d) I)."""
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    M = (np.eye(C) - 1.0 / C) * r * math.sqrt(C / (C - 1))  # rows of norm r
    M = np.hstack([M, np.zeros((C, d - C))]) @ Q.T
    H, y = [], []
    for c in range(C):
        for k in range(d):
            for s in (1, -1):
                H.append(M[c] + s * t * Q[:, k])
                y.append(c)
    return np.array(H), np.array(y), M


@pytest.mark.parametrize("C,d", [(3, 4), (5, 5), (4, 7)])
def test_simplex_etf_known_answers(C, d):
    rng = np.random.default_rng(C * 10 + d)
    r, t = 1.7, 0.3
    H, y, M = simplex(C, d, r, t, rng)
    W = 0.5 * M  # self-dual classifier
    m = ncinspect.analyze(H, y, weights=W).metrics
    s2 = t * t / d
    zero = """etf_error_means etf_error_weights etf_error_weights_centered nc2_equinorm_means
    nc2_equinorm_weights nc2_equiangular_means nc2_equiangular_weights nc2_maxangle_means
    nc2_maxangle_weights nc3_self_duality nc3_duality_etf_error gnc2_log_means gnc2_dist_means
    gnc2_log_weights gnc2_dist_weights unc3_uniform_duality bias_collapse nc4_ncc_mismatch
    etf_error_floor""".split()
    for key in zero:
        assert abs(m[key]) < 1e-12, (key, m[key])
    assert abs(m["nc3_duality_cos"] - 1) < 1e-12
    energy = -0.5 * math.log(2 * C / (C - 1))
    assert math.isclose(m["gnc2_energy_log_means"], energy, rel_tol=1e-12)
    assert math.isclose(m["gnc2_energy_log_weights"], energy, rel_tol=1e-12)
    assert math.isclose(m["nc1"], s2 * (C - 1) ** 2 / (r * r * C), rel_tol=1e-12)
    assert math.isclose(m["nc1_trace_ratio"], d * s2 / (r * r), rel_tol=1e-12)
    cdnv = t * t * (C - 1) / (2 * r * r * C)
    assert math.isclose(m["nc1_cdnv"], cdnv, rel_tol=1e-12)
    assert math.isclose(m["nc1_cdnv_directional"], cdnv / d, rel_tol=1e-12)
    dist2 = 2 * r * r * C / (C - 1)
    assert math.isclose(m["nc1_cdnv_exp2"], t * t / dist2**2, rel_tol=1e-12)
    assert m["etf_feasible"] is True
    assert m["accuracy_classifier"] == 1 and m["accuracy_ncc"] == 1
    # ETF means: the uncentred means are centred here (mu_G = 0), Gram ∝ E, not ∝ I
    E = R.etf_matrix(C)
    want_of = R.fro(E / R.fro(E) - np.eye(C) / math.sqrt(C))
    for key in ("of_error_means", "of_error_weights", "of_error_duality"):
        assert math.isclose(m[key], want_of, rel_tol=1e-12)


@pytest.mark.parametrize("C,d", [(6, 2), (9, 3), (5, 3), (4, 3)])
def test_etf_floor_and_feasibility(C, d):
    rng = np.random.default_rng(C + d)
    H, y, W, b = make(rng, [4] * C, d)
    res = ncinspect.analyze(H, y, weights=W)
    m = res.metrics
    feasible = d >= C - 1
    # C > d + 1 cannot hold a simplex ETF: a warning, the values still computed
    assert any("simplex ETF" in w for w in res.warnings) is (C > d + 1)
    assert m["etf_error_means"] is not None and m["nc3_self_duality"] is not None
    assert m["etf_feasible"] is feasible
    floor = 0.0 if feasible else math.sqrt(2 - 2 * math.sqrt(d / (C - 1)))
    assert math.isclose(m["etf_error_floor"], floor, rel_tol=1e-14, abs_tol=1e-300)
    assert m["etf_error_means"] >= floor - 1e-12


def _seli_anchor(counts, d, rng):
    """The spec's SELI anchor: W = U L^{1/2} R^T, the class-c features all equal to the
    class-c column of R L^{1/2} V^T (so the class mean is that column)."""
    C = len(counts)
    labels = np.concatenate([np.full(k, c) for c, k in enumerate(counts)])
    Y = np.eye(C)[labels].T
    Z = Y - np.ones((C, C)) @ Y / C
    U, L, Vt = np.linalg.svd(Z, full_matrices=False)
    U, L, Vt = U[:, : C - 1], L[: C - 1], Vt[: C - 1]
    Rm, _ = np.linalg.qr(rng.normal(size=(d, C - 1)))
    W = U @ np.diag(np.sqrt(L)) @ Rm.T
    Hs = (Rm @ np.diag(np.sqrt(L)) @ Vt).T  # row i: sample i's features
    return Hs, labels, W


@pytest.mark.parametrize("counts", [[40, 20, 10, 5, 5], [100, 3, 3, 3, 50, 7, 1], [6, 6, 6]])
def test_seli_anchor_is_zero_and_matches_reference(counts):
    rng = np.random.default_rng(len(counts))
    d = len(counts) + 1
    H, y, W = _seli_anchor(counts, d, rng)
    m = ncinspect.analyze(H, y, weights=W).metrics
    ref = R.reference_metrics(H, y, W)
    for key in ("seli_error_weights", "seli_error_means", "seli_error_logits"):
        assert abs(ref[key]) < 1e-9 and abs(m[key]) < 1e-9, (key, m[key], ref[key])
    if len(set(counts)) > 1:
        assert m["etf_error_weights"] > 0.05
    # generic (non-anchor) imbalanced features: the three distances against the reference
    H2, y2, W2, b2 = make(rng, counts, d)
    got = ncinspect.analyze(H2, y2, weights=W2, bias=b2).metrics
    ref2 = R.reference_metrics(H2, y2, W2, b2)
    assert_matches(
        got,
        {
            k: ref2[k]
            for k in (
                "seli_error_weights",
                "seli_error_means",
                "seli_error_logits",
                "minority_collapse",
            )
        },
    )


def test_seli_equals_etf_type_errors_on_balanced_data():
    rng = np.random.default_rng(11)
    H, y, W, b = make(rng, [7, 7, 7, 7], 5)
    m = ncinspect.analyze(H, y, weights=W).metrics
    _, _, mu, _, _ = R.class_stats(H, y)
    assert math.isclose(m["seli_error_weights"], R.etf_error(W, W), rel_tol=1e-10)
    assert math.isclose(m["seli_error_means"], R.etf_error(mu, mu), rel_tol=1e-10)
    assert math.isclose(m["seli_error_logits"], R.etf_error(W, mu), rel_tol=1e-10)


def _write_h5(path, H, y, W, b, meta=None):
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"], f["bias"] = H, y, W, b
        for k, v in (meta or {}).items():
            f.attrs[k] = v


def _write_npz(path, H, y, W, b):
    np.savez(path, features=H, labels=y, weights=W, bias=b)


@pytest.mark.parametrize("fmt", ["h5", "npz"])
def test_dump_and_cli_json_match_the_reference(tmp_path, capsys, fmt):
    rng = np.random.default_rng(12)
    H, y, W, b = make(rng, [9, 4, 6, 8], 5, n_rows=5)  # row 4 absent
    path = tmp_path / f"flat.{fmt}"
    (_write_h5 if fmt == "h5" else _write_npz)(path, H.astype(np.float32), y, W, b)
    H = H.astype(np.float32).astype(np.float64)
    ref = R.reference_metrics(H, y, W, b)
    res = ncinspect.analyze_file(path)[0]
    assert_matches(res.metrics, ref)
    out = tmp_path / "r.json"
    assert main(["report", str(path), "--json", str(out), "-q"]) == 0
    snap = json.loads(out.read_text())["snapshots"][0]
    assert set(SPEC_KEYS) <= set(snap["metrics"])
    assert_matches(snap["metrics"], ref)
    # every null carries its reason in warnings
    for key, value in snap["metrics"].items():
        if value is None:
            assert any(key in w for w in snap["warnings"]), key


def test_string_labels_without_class_order_null_w_keys_with_reason():
    rng = np.random.default_rng(13)
    H, y, W, b = make(rng, [5, 6, 7], 4)
    names = np.array(["cat", "dog", "emu"])
    res = ncinspect.analyze(H, names[y], weights=W, bias=b, spectra=True)
    assert_matches(res.metrics, R.reference_spectra(H, y))  # W-free: computed
    ref = R.reference_metrics(H, y, W, b)
    w_free = R.reference_metrics(H, y)
    for key in ref:
        if key in w_free:
            assert res.metrics[key] is not None, key
        else:
            assert res.metrics[key] is None, key
    assert any("class_names" in w for w in res.warnings)
    # with the class order (here deliberately not alphabetical) every key is the reference's
    order = ["emu", "cat", "dog"]
    perm = np.array([order.index(n) for n in names])  # label name -> row of W
    res = ncinspect.analyze(H, names[y], weights=W, bias=b, class_names=order)
    assert_matches(res.metrics, R.reference_metrics(H, perm[y], W, b))


def test_undefined_cases_are_null_with_reasons():
    rng = np.random.default_rng(14)
    H, y, W, b = make(rng, [1, 1, 1], 3)
    res = ncinspect.analyze(H, y, weights=W, bias=b)
    for key in ("nc1", "nc1_trace_ratio", "nc1_cdnv", "nc1_cdnv_exp2", "nc1_cdnv_directional"):
        assert res.metrics[key] is None and any(key in w for w in res.warnings), key
    H, y, W, b = make(rng, [6, 6], 3)
    res = ncinspect.analyze(H, y)  # no W
    for key in ("nc3_self_duality", "nc4_ncc_mismatch", "etf_error_weights", "bias_collapse"):
        assert res.metrics[key] is None and any(key in w for w in res.warnings), key
    assert_matches(res.metrics, R.reference_metrics(H, y))  # the W-free keys still computed
    W3 = np.vstack([W, W[:1]])  # one present class of three rows: C < 2
    res = ncinspect.analyze(H, np.zeros(len(y), np.int64), weights=W3)
    for key in ("nc1", "etf_error_means", "nc3_self_duality", "gnc2_log_means"):
        assert res.metrics[key] is None and any(key in w for w in res.warnings), key


def test_ncc_ties_go_to_the_lowest_index():
    # (0, 2) is in both classes, exactly between the two centres, and its logits tie:
    # both decisions take class 0
    H = np.array([[-1.0, 0], [-1, 1], [-1, -1], [0, 2], [1, 0], [1, 1], [1, -1], [0, 2]])
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    W = np.array([[-1.0, 0.0], [1.0, 0.0]])
    res = ncinspect.analyze(H, y, weights=W)
    ref = R.reference_metrics(H, y, W)
    assert ref["accuracy_ncc"] == ref["accuracy_classifier"] == 7 / 8
    assert_matches(res.metrics, ref)


def _split_file(path, H, y, Ht, yt, W, b):
    with h5py.File(path, "w") as f:
        for split, HH, yy in (("train", H, y), ("test", Ht, yt)):
            g = f.create_group(f"{split}/epoch_0002")
            g.attrs["split"] = split
            g["features"], g["labels"], g["weights"], g["bias"] = HH, yy, W, b


def test_ncc_centres_from_train_for_the_test_split(tmp_path):
    rng = np.random.default_rng(15)
    H, y, W, b = make(rng, [8, 9, 7], 4, sep=1.0)
    Ht, yt, _, _ = make(rng, [6, 5, 6], 4, sep=1.0)
    _, _, mu_train, _, _ = R.class_stats(H, y)
    path = tmp_path / "split.h5"
    _split_file(path, H, y, Ht, yt, W, b)
    ref_train = R.reference_metrics(Ht, yt, W, b, ncc_means=mu_train)
    ref_own = R.reference_metrics(Ht, yt, W, b)
    assert ref_train["accuracy_ncc"] != ref_own["accuracy_ncc"]  # the choice shows
    report = ncinspect.analyze_file(path, ncc_centres="train")
    test = report["/test/epoch_0002"]
    assert_matches(test.metrics, ref_train)
    assert json.loads(test.to_json())["ncc_means"].startswith("train")
    assert_matches(report["/train/epoch_0002"].metrics, R.reference_metrics(H, y, W, b))
    assert_matches(ncinspect.analyze_file(path)["/test/epoch_0002"].metrics, ref_own)
    res = ncinspect.analyze(Ht, yt, weights=W, bias=b, ncc_centres=mu_train)
    assert_matches(res.metrics, ref_train)


def test_ncc_centres_from_a_split_less_train_run(tmp_path):
    """dump-format.md's typical run layout: the training snapshots carry no split (epoch
    groups at the top) and the test split lives under test/. ncinspect treats an unset split
    as the training set everywhere (trajectories, tables), so --ncc-centres train must take
    the split-less snapshot's means for test, not silently the test split's own."""
    rng = np.random.default_rng(16)
    H, y, W, b = make(rng, [8, 9, 7], 4, sep=1.0)
    Ht, yt, _, _ = make(rng, [6, 5, 6], 4, sep=1.0)
    _, _, mu_train, _, _ = R.class_stats(H, y)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"], f["epoch_0002/features"], f["epoch_0002/weights"] = y, H, W
        f["epoch_0002/bias"] = b
        f["test/labels"], f["test/epoch_0002/features"] = yt, Ht
        f["test/epoch_0002/weights"], f["test/epoch_0002/bias"] = W, b
    ref_train = R.reference_metrics(Ht, yt, W, b, ncc_means=mu_train)
    assert ref_train["accuracy_ncc"] != R.reference_metrics(Ht, yt, W, b)["accuracy_ncc"]
    out = tmp_path / "r.json"
    assert main(["report", str(path), "--ncc-centres", "train", "--json", str(out), "-q"]) == 0
    snaps = {s["name"]: s for s in json.loads(out.read_text())["snapshots"]}
    assert snaps["/test/epoch_0002"]["ncc_means"] == "train:/epoch_0002"
    assert_matches(snaps["/test/epoch_0002"]["metrics"], ref_train)
    assert snaps["/epoch_0002"]["ncc_means"] == "own"


@pytest.mark.parametrize("N,d,t", [(30, 5, 2), (25, 6, 3), (40, 4, 1)])
def test_regression_keys_against_the_reference(N, d, t, tmp_path):
    rng = np.random.default_rng(N + d + t)
    H = rng.normal(size=(N, d)) + 0.5
    A = rng.normal(size=(d, t))
    Y = H @ A + 0.3 * rng.normal(size=(N, t))
    W = A.T + 0.2 * rng.normal(size=(t, d))
    ref = R.reference_regression(H, Y, W)
    res = ncinspect.analyze_regression(H, Y, weights=W)
    assert_matches(res.metrics, {k: ref[k] for k in ("nrc1", "nrc2")})
    assert math.isclose(res.metrics["nrc3"], ref["nrc3"], rel_tol=1e-9, abs_tol=1e-13)
    assert res.metrics["nrc3"] <= ref["nrc3"] + 1e-13  # an exact minimum is never above
    for key in ("nc1", "nc3_self_duality", "nc4_ncc_mismatch"):  # nothing of NC1-NC4
        assert key not in res.metrics
    path = tmp_path / "reg.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["targets"], f["weights"] = H, Y, W
    got = ncinspect.analyze_file(path)[0]
    assert json.loads(got.to_json())["task"] == "regression"
    assert_matches(got.metrics, {k: ref[k] for k in ("nrc1", "nrc2")})
    assert math.isclose(got.metrics["nrc3"], ref["nrc3"], rel_tol=1e-9, abs_tol=1e-13)


def test_min_class_count_treats_small_classes_as_absent():
    rng = np.random.default_rng(17)
    H, y, W, b = make(rng, [6, 2, 8, 3], 4)
    res = ncinspect.analyze(H, y, weights=W, bias=b, min_class_count=3, spectra=True)
    keep = np.isin(y, [0, 2, 3])  # class 1 (2 samples) is absent: its rows take no part
    assert_matches(res.metrics, R.reference_metrics(H[keep], y[keep], W, b))
    assert_matches(res.metrics, R.reference_spectra(H[keep], y[keep]))
    assert json.loads(res.to_json())["n_classes"] == 3


def test_outputs_without_a_classifier_decide_and_feed_sqi():
    rng = np.random.default_rng(18)
    H, y, W, b = make(rng, [6, 5, 7], 4)
    F = rng.normal(size=(len(y), 3))
    m = ncinspect.analyze(H, y, outputs=F).metrics
    # the reference with decisions argmax(F): a classifier whose logits are F
    ref = R.reference_metrics(H, y, W, b, outputs=F)
    cls = [R.argmax_low(f) for f in F]
    _, _, mu, _, _ = R.class_stats(H, y)
    ncc = [R.argmin_low([R._norm(h - c) ** 2 for c in mu]) for h in H]
    assert m["accuracy_classifier"] == sum(int(c == t) for c, t in zip(cls, y, strict=True)) / len(
        y
    )
    assert m["nc4_ncc_mismatch"] == sum(int(c != n) for c, n in zip(cls, ncc, strict=True)) / len(y)
    sqi = "sqi_eps1 sqi_eps2 sqi_delta sqi_ratio sqi_spread mse interpolates".split()
    assert_matches(m, {k: ref[k] for k in sqi})
    assert m["nc3_self_duality"] is None


def test_json_is_byte_identical_on_reruns(tmp_path):
    rng = np.random.default_rng(19)
    H, y, W, b = make(rng, [5, 6, 7], 4)
    path = tmp_path / "d.h5"
    _write_h5(path, H, y, W, b)
    outs = []
    for k in range(2):
        out = tmp_path / f"r{k}.json"
        assert (
            main(["report", str(path), "--json", str(out), "--spectra", "--per-class", "-q"]) == 0
        )
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]


@pytest.mark.parametrize("fmt", ["h5", "npz"])
def test_string_labels_with_class_names_recorded_in_the_dump(tmp_path, fmt):
    rng = np.random.default_rng(20)
    H, y, W, b = make(rng, [6, 7, 5], 4)
    order = ["zebra", "ant", "moth"]  # the rows of W: deliberately not alphabetical
    labels = np.array(order)[y]
    path = tmp_path / f"s.{fmt}"
    if fmt == "h5":
        with h5py.File(path, "w") as f:
            f["features"], f["weights"], f["bias"] = H, W, b
            f["labels"] = labels.astype("S")
            f.attrs["class_names"] = order
    else:
        meta = np.array(json.dumps({"class_names": order, "split": "train"}))
        np.savez(path, features=H, labels=labels, weights=W, bias=b, meta=meta)
    res = ncinspect.analyze_file(path)[0]
    assert_matches(res.metrics, R.reference_metrics(H, y, W, b))


def test_class_order_errors_are_bad_input(tmp_path, capsys):
    rng = np.random.default_rng(23)
    H, y, W, b = make(rng, [5, 5, 5], 4)
    path = tmp_path / "out_of_range.h5"
    _write_h5(path, H, np.where(y == 2, 3, y), W, b)  # label 3 with a 3-row W
    assert main(["report", str(path), "-q"]) == 3
    err = capsys.readouterr().err
    assert "labels" in err and str(path.name) in err
    names = tmp_path / "names.txt"
    names.write_text("zebra\nant\nmoth\n")
    path = tmp_path / "strings.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["weights"], f["bias"] = H, W, b
        f["labels"] = np.array(["zebra", "ant", "moth"])[y].astype("S")
    out = tmp_path / "r.json"
    assert main(["report", str(path), "--class-names", str(names), "--json", str(out), "-q"]) == 0
    assert_matches(
        json.loads(out.read_text())["snapshots"][0]["metrics"], R.reference_metrics(H, y, W, b)
    )
    names.write_text("zebra\nant\nwasp\n")  # "moth" is not in the class order
    assert main(["report", str(path), "--class-names", str(names), "-q"]) == 3
