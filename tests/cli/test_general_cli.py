"""The generalized metrics everywhere a metric appears: JSON, CSV, tables, check rules."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from rich.console import Console

import ncinspect
from ncinspect import DumpWriter
from ncinspect.cli import main
from ncinspect.metrics.general import GENERAL_KEYS
from ncinspect.render.table import render_report

C, D = 12, 4  # d < C - 1: no simplex ETF


def _features(epoch, centres, y):
    rng = np.random.default_rng(epoch)
    return centres[y] + (2.0 / (1 + epoch)) * rng.standard_normal((len(y), centres.shape[1]))


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    path = tmp_path_factory.mktemp("general") / "g.h5"
    rng = np.random.default_rng(0)
    centres = 3.0 * rng.standard_normal((C, D))
    y = np.repeat(np.arange(C), [40] * 6 + [8] * 6)  # six minority classes
    with DumpWriter(path, "w") as w:
        w.write("labels", y)
        for ep in (0, 5, 10):
            snap = w.snapshot(f"epoch_{ep}", epoch=ep)
            snap.append(features=_features(ep, centres, y))
            snap.write(weights=centres)
    return str(path)


def test_json_has_every_general_key(dump, capsys):
    assert main(["report", dump, "--json", "-", "-q"]) == 0
    snaps = json.loads(capsys.readouterr().out)["snapshots"]
    for snap in snaps:
        assert set(GENERAL_KEYS) <= set(snap["metrics"])
        assert snap["metrics"]["etf_feasible"] is False
        assert snap["metrics"]["etf_error_floor"] == pytest.approx(
            np.sqrt(2 - 2 * np.sqrt(D / (C - 1)))
        )
        assert snap["metrics"]["minority_collapse"] is not None
        assert snap["metrics"]["seli_error_weights"] is not None


def test_csv_columns(dump, capsys):
    assert main(["report", dump, "--csv", "-", "-q"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 3
    for key in GENERAL_KEYS:
        assert key in rows[0] and rows[0][key] != "", key


def test_check_rule_on_a_general_metric(dump, capsys):
    values = [ncinspect.analyze_file(dump)[i].metrics["gnc2_log_means"] for i in range(3)]
    assert main(["check", dump, "--max", f"gnc2_log_means={max(values) * 1.01}"]) == 0
    assert main(["check", dump, "--max", f"gnc2_log_means={min(values) * 0.99}"]) == 1
    capsys.readouterr()
    assert main(["check", dump, "--max", "gnc2_log_mean=1"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'gnc2_log_means'" in err


def _text(report, **kw) -> str:
    console = Console(width=160, record=True, force_terminal=False)
    render_report(report, console, **kw)
    return console.export_text()


def _row(lines, key):
    return next(i for i, ln in enumerate(lines) if f" {key} " in ln)


def test_table_without_etf_leads_with_uniformity(dump):
    rep = ncinspect.analyze_file(dump, snapshot="epoch_10")
    text = _text(rep, compact=False)
    assert "No simplex ETF exists: d = 4 < C - 1 = 11" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("│")]  # table rows only
    keys = ("gnc2_log_means", "unc3_uniform_duality", "nc1", "etf_error_means", "etf_error_floor")
    at = {k: _row(lines, k) for k in keys}
    assert at["gnc2_log_means"] < at["unc3_uniform_duality"] < at["nc1"]
    assert at["etf_error_floor"] == at["etf_error_means"] + 1
    compact = _text(ncinspect.analyze_file(dump), compact=True)
    header = next(ln for ln in compact.splitlines() if "GNC2 log" in ln)
    assert header.index("GNC2 log") < header.index("nc1")
    assert header.index("ETF means") < header.index("ETF floor")


def test_table_with_etf_keeps_the_usual_order():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 20)
    res = ncinspect.analyze(rng.standard_normal((60, 5)) + 3 * np.eye(3, 5)[y], y)
    text = _text(ncinspect.Report(None, [res]), compact=False)
    assert "No simplex ETF" not in text
    lines = [ln for ln in text.splitlines() if ln.startswith("│")]
    assert _row(lines, "nc1") < _row(lines, "gnc2_log_means")
