"""Bootstrap intervals (--bootstrap B --seed S): what a replicate is, determinism, outputs."""

from __future__ import annotations

import csv
import io
import json

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main


def _data(seed=0, C=3, d=4, n=30, imbalanced=False):
    rng = np.random.default_rng(seed)
    mu = 2.0 * rng.standard_normal((C, d))
    counts = [n + (9 * c if imbalanced else 0) for c in range(C)]
    y = np.concatenate([np.full(k, c) for c, k in enumerate(counts)])
    h = mu[y] + rng.standard_normal((y.size, d))
    w = mu + 0.7 * rng.standard_normal((C, d))
    return h, y, w


def _reference_replicates(h, y, w, B, seed, **kw):
    """The documented procedure, written out: replicate b draws, class by class in class
    order, n_c row positions of that class with ``Generator.integers(0, n_c, n_c)``, and
    analyses the rows taken (sorted) with :func:`ncinspect.analyze`."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in range(w.shape[0])]
    out = []
    for _ in range(B):
        idx = np.sort(
            np.concatenate([m[rng.integers(0, m.size, m.size)] for m in members if m.size])
        )
        out.append(ncinspect.analyze(h[idx], y[idx], weights=w, **kw).metrics)
    return out


@pytest.mark.parametrize("imbalanced", [False, True])
def test_intervals_are_percentiles_of_reanalysed_resamples(imbalanced):
    h, y, w = _data(imbalanced=imbalanced)
    B, seed = 25, 7
    res = ncinspect.analyze(h, y, weights=w, bootstrap=B, seed=seed)
    reps = _reference_replicates(h, y, w, B, seed)
    boot = res.bootstrap
    assert boot["B"] == B and boot["seed"] == seed and boot["method"] == "percentile"
    assert boot["level"] == 0.95
    assert set(boot["intervals"]) == set(res.metric_keys())
    for key in (
        "nc1",
        "nc1_cdnv",
        "nc2_equinorm_means",
        "etf_error_means",
        "nc3_self_duality",
        "nc4_ncc_mismatch",
        "accuracy_classifier",
        "sqi_eps1",
        "gnc2_log_means",
    ):
        vals = np.array([r[key] for r in reps], dtype=float)
        lo, hi = np.percentile(vals, [2.5, 97.5])
        assert res.interval(key) == pytest.approx((lo, hi), rel=1e-12, abs=1e-15), key


def test_classifier_only_metrics_have_no_sampling_width():
    h, y, w = _data()
    res = ncinspect.analyze(h, y, weights=w, bootstrap=10, seed=1)
    for key in (
        "nc2_equinorm_weights",
        "etf_error_weights",
        "etf_error_weights_centered",
        "gnc2_log_weights",
    ):
        lo, hi = res.interval(key)
        assert lo == pytest.approx(res.metrics[key], rel=1e-12)
        assert hi == pytest.approx(res.metrics[key], rel=1e-12)
    # a sample-dependent metric does vary
    lo, hi = res.interval("nc1")
    assert hi > lo


def test_same_seed_same_intervals_other_seed_other_intervals_chunking_irrelevant():
    h, y, w = _data(seed=3)
    a = ncinspect.analyze(h, y, weights=w, bootstrap=12, seed=5)
    b = ncinspect.analyze(h, y, weights=w, bootstrap=12, seed=5, chunk_rows=7)
    c = ncinspect.analyze(h, y, weights=w, bootstrap=12, seed=6)
    assert json.dumps(a.to_dict()["bootstrap"]) == json.dumps(b.to_dict()["bootstrap"])
    assert a.bootstrap["intervals"]["nc1"] != c.bootstrap["intervals"]["nc1"]


def test_undefined_and_boolean_metrics_are_null_with_a_reason():
    h, y, w = _data()
    res = ncinspect.analyze(h, y, weights=w, bootstrap=5, seed=0)
    assert res.interval("etf_feasible") == (None, None)
    assert "yes/no" in res.bootstrap["reasons"]["etf_feasible"]
    assert res.interval("minority_collapse") == (None, None)  # balanced: null in every replicate
    assert "undefined in 5 of 5" in res.bootstrap["reasons"]["minority_collapse"]
    plain = ncinspect.analyze(h, y, weights=w)
    assert plain.bootstrap is None and "bootstrap" not in plain.to_dict()


@pytest.mark.parametrize("bad", [1, 0, -3, 2.5, True])
def test_bad_replicate_counts_are_usage_errors(bad):
    h, y, w = _data()
    with pytest.raises(ncinspect.errors.UsageError):
        ncinspect.analyze(h, y, weights=w, bootstrap=bad)


def test_fixed_ncc_centres_and_class_counts_stay_fixed():
    h, y, w = _data(imbalanced=True)
    centres = np.array([h[y == c].mean(0) for c in range(3)]) + 0.3
    res = ncinspect.analyze(h, y, weights=w, ncc_centres=centres, bootstrap=15, seed=2)
    reps = _reference_replicates(h, y, w, 15, 2, ncc_centres=centres)
    vals = [r["nc4_ncc_mismatch"] for r in reps]
    assert res.interval("nc4_ncc_mismatch") == pytest.approx(
        tuple(np.percentile(vals, [2.5, 97.5]))
    )


@pytest.fixture
def dump(tmp_path):
    h, y, w = _data(C=4, d=5, n=20)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for ep in (1, 4):
            g = f.create_group(f"epoch_{ep:04d}")
            g["features"] = (h * (1 + 1 / ep)).astype(np.float32)
            g["weights"] = w
            g.attrs["epoch"] = ep
    return path


def test_cli_bootstrap_json_csv_and_table(dump, tmp_path, capsys):
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    args = ["report", str(dump), "--bootstrap", "10", "--seed", "4", "-q"]
    assert main([*args, "--json", str(js), "--csv", str(cs)]) == 0
    data = json.loads(js.read_text())
    for snap in data["snapshots"]:
        boot = snap["bootstrap"]
        assert boot["B"] == 10 and boot["seed"] == 4 and boot["method"] == "percentile"
        iv = boot["intervals"]["nc1"]
        assert iv["lo"] <= iv["hi"]
    again = tmp_path / "again.json"
    assert main([*args, "--json", str(again)]) == 0
    assert again.read_text() == js.read_text()  # same seed: byte-identical
    rows = list(csv.DictReader(io.StringIO(cs.read_text())))
    assert float(rows[0]["nc1_lo"]) == data["snapshots"][0]["bootstrap"]["intervals"]["nc1"]["lo"]
    assert rows[0]["bootstrap_B"] == "10" and rows[0]["etf_feasible_lo"] == ""
    capsys.readouterr()
    assert main([*args, "--snapshot", "epoch_0004", "--full"]) == 0
    out = capsys.readouterr().out
    assert "95% interval (B=10)" in out
    lo = data["snapshots"][1]["bootstrap"]["intervals"]["nc1"]["lo"]
    from ncinspect.render.table import fmt

    assert fmt(lo) in out


def test_cli_bootstrap_usage_errors(dump, tmp_path, capsys):
    import shutil

    other = tmp_path / "run2.h5"
    shutil.copy(dump, other)
    assert main(["report", str(dump), "--bootstrap", "1"]) == 2
    capsys.readouterr()
    assert main(["report", str(dump), str(other), "--aggregate", "--bootstrap", "5"]) == 2
    assert "--aggregate" in capsys.readouterr().err


def test_default_is_off(dump, tmp_path):
    js = tmp_path / "r.json"
    assert main(["report", str(dump), "--json", str(js), "-q"]) == 0
    assert all("bootstrap" not in s for s in json.loads(js.read_text())["snapshots"])
