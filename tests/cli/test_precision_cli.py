"""``--precision float32`` on report / check / plot: nc1 within the bound of
docs/array-api.md, decisions identical to float64 (near ties decided again), the precision
recorded in the JSON, a bad value a usage error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ncinspect import DumpWriter, analyze_file
from ncinspect.cli import main

ROOT = Path(__file__).resolve().parents[2]
DECISION_KEYS = ("accuracy_ncc", "accuracy_classifier", "nc4_ncc_mismatch")


def _report(path, tmp_path, *extra) -> dict:
    out = tmp_path / f"r{len(list(tmp_path.iterdir()))}.json"
    args = ["report", str(path), "--json", str(out), "-q", "--per-class", *extra]
    assert main(args) == 0
    return json.loads(out.read_text())


def _gamma(d: int) -> float:
    """docs/array-api.md: g = (d + 2) u / (1 - (d + 2) u), u = 2^-24."""
    u = 2.0**-24
    return (d + 2) * u / (1 - (d + 2) * u)


@pytest.mark.parametrize("dump", ["synthetic", "trained_wd"])
def test_float32_within_the_documented_bound_and_same_decisions(dump, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = f"sample_data/{dump}.h5"
    r64 = _report(path, tmp_path)
    r32 = _report(path, tmp_path, "--precision", "float32")
    assert "precision" not in r64["conventions"]  # the default JSON is unchanged
    assert r32["conventions"]["precision"].startswith("float32")
    exact = analyze_file(path)  # float64: the traces the bound is made of
    moved = 0.0
    for s64, s32, res in zip(r64["snapshots"], r32["snapshots"], exact, strict=True):
        m64, m32 = s64["metrics"], s32["metrics"]
        for key in DECISION_KEYS:
            assert m32[key] == m64[key], (s64["name"], key)
        for row64, row32 in zip(s64["per_class"], s32["per_class"], strict=True):
            assert row32["ncc_agreement"] == row64["ncc_agreement"]
            assert row32["accuracy_classifier"] == row64["accuracy_classifier"]
        eig = res.arrays.between_eigvals  # of Sigma_B, the kept pairs
        tr_w = m64["nc1_trace_ratio"] * float(eig.sum())
        g = _gamma(s64["n_features"])
        bound = (2 * g + g * g) * tr_w * float(np.sum(1.0 / eig)) / s64["n_classes"]
        assert abs(m32["nc1"] - m64["nc1"]) <= bound, (s64["name"], m32["nc1"], m64["nc1"])
        moved = max(moved, abs(m32["nc1"] - m64["nc1"]))
        for key in ("nc1_trace_ratio", "nc1_cdnv", "nc2_equiangular_means"):  # float64 in both
            assert m32[key] == pytest.approx(m64[key], rel=1e-12)
    assert moved > 0  # the float32 products were really used


def test_near_ties_get_the_float64_decisions(tmp_path):
    """Rows 1e-9 (relative) off the midpoint of two class means, where float32 scores err
    by ~1e-7: plain float32 scores decide 30 of these 60 rows otherwise (checked by hand
    with numpy); through the float64 recheck every decision is that of float64."""
    rng = np.random.default_rng(0)
    d, C = 24, 4
    centres = 10.0 * rng.standard_normal((C, d))
    centres[3] = 300.0 / np.sqrt(d)  # far: the rows at the midpoint stay nearest to 0 or 1
    y = np.repeat(np.arange(C), 200)
    h = centres[y] + rng.standard_normal((y.size, d))
    mu = np.array([h[y == c].mean(axis=0) for c in range(C)])  # the class means of 0 and 1
    k = 60  # rows of class 3 at the midpoint of mu_0 and mu_1, nudged by +-1e-9
    side = np.where(np.arange(k) % 2 == 0, 1.0, -1.0)[:, None]
    ties = (mu[0] + mu[1]) / 2 + 1e-9 * side * (mu[1] - mu[0])
    h = np.vstack([h, ties])
    y = np.concatenate([y, np.full(k, 3)])
    path = tmp_path / "ties.h5"
    with DumpWriter(str(path), "w") as w:
        w.write("labels", y)
        snap = w.snapshot("/")
        snap.append(features=h)  # float64: the ties survive storage
        snap.write(weights=mu + 0.1 * rng.standard_normal(mu.shape), bias=np.zeros(C))
    r64 = _report(path, tmp_path)["snapshots"][0]
    r32 = _report(path, tmp_path, "--precision", "float32")["snapshots"][0]
    for key in DECISION_KEYS:
        assert r32["metrics"][key] == r64["metrics"][key]
    assert r64["per_class"][3]["ncc_agreement"] < 0.9  # the tie rows go to 0 and 1
    for row64, row32 in zip(r64["per_class"], r32["per_class"], strict=True):
        assert row32["ncc_agreement"] == row64["ncc_agreement"]
        assert row32["accuracy_classifier"] == row64["accuracy_classifier"]


def test_check_and_plot_take_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    path = "sample_data/synthetic.h5"
    out = tmp_path / "check.json"
    args = ["check", path, "--precision", "float32", "--format", "json", "-o", str(out)]
    assert main([*args, "--min", "accuracy_ncc=0.5"]) == 0  # the last epoch's: 0.947
    assert json.loads(out.read_text())
    figs = tmp_path / "figs"
    assert main(["plot", path, "-o", str(figs), "-q", "--precision", "float32"]) == 0
    assert any(figs.iterdir())


@pytest.mark.parametrize("command", ["report", "check", "plot"])
def test_a_bad_precision_is_a_usage_error(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    args = [command, "sample_data/synthetic.h5", "--precision", "float16"]
    if command == "check":
        args += ["--max", "nc1=10"]
    if command == "plot":
        args += ["-o", str(tmp_path / "figs")]
    assert main(args) == 2
    assert "float16" in capsys.readouterr().err
    assert not (tmp_path / "figs").exists()


def test_aggregate_json_records_the_precision(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    out = tmp_path / "agg.json"
    runs = ["sample_data/trained_wd.h5", "sample_data/trained_wd0.h5"]
    args = ["report", *runs, "--aggregate", "--json", str(out), "-q", "-s", "/test/*"]
    assert main([*args, "--precision", "float32"]) == 0
    assert json.loads(out.read_text())["conventions"]["precision"] == "float32"
    assert main(args) == 0
    assert "precision" not in json.loads(out.read_text())["conventions"]
