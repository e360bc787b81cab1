"""A metric that does not apply to the data (minority_collapse on balanced classes) is not a
warning: its structured reason stays in JSON and ``--verbose`` prints it; a real defect (a
zero classifier row among minority classes) keeps its own reason and stays a warning."""

from __future__ import annotations

import json

import h5py
import numpy as np

import ncinspect
from ncinspect.cli import main
from ncinspect.metrics.nulls import MINORITY_NONE, applicable_warnings

from ..helpers import make_data


def _dump(path, h, y, w):
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, w
    return path


def test_balanced_snapshot_prints_no_minority_warning(tmp_path, capsys):
    h, y, m = make_data(C=4, d=6, n=15)
    path = _dump(tmp_path / "run.h5", h, y, m)
    assert main(["report", str(path), "-q"]) == 0
    assert "minority_collapse: null" not in capsys.readouterr().out  # the row shows n/a
    assert main(["report", str(path), "-q", "--verbose"]) == 0
    assert f"minority_collapse: null ({MINORITY_NONE})" in capsys.readouterr().out
    out = tmp_path / "r.json"
    assert main(["report", str(path), "--json", str(out), "-q"]) == 0
    snap = json.loads(out.read_text())["snapshots"][0]
    assert snap["metrics"]["minority_collapse"] is None
    assert f"minority_collapse: null ({MINORITY_NONE})" in snap["warnings"]


def test_zero_minority_row_stays_a_warning():
    rng = np.random.default_rng(0)
    counts = [40, 40, 10, 10]  # classes 2 and 3 are minorities
    y = np.repeat(np.arange(4), counts)
    w = rng.standard_normal((4, 6))
    w[3] = 0.0
    h = w[y] + 0.1 * rng.standard_normal((len(y), 6)) + rng.standard_normal((4, 6))[y]
    res = ncinspect.analyze(h, y, weights=w)
    assert res.metrics["minority_collapse"] is None
    why = res.null_reasons["minority_collapse"]
    assert why != MINORITY_NONE and "zero classifier row" in why
    shown = applicable_warnings(res.warnings, res.null_reasons)
    assert any(w_.startswith("minority_collapse") for w_ in shown)


def test_applicable_warnings_keeps_shared_reasons():
    """A line is hidden only when every key on it is a not-applicable null."""
    reasons = {"minority_collapse": MINORITY_NONE, "nc1": "x"}
    lines = [f"minority_collapse: null ({MINORITY_NONE})", "nc1: null (x)", "a note"]
    assert applicable_warnings(lines, reasons) == ["nc1: null (x)", "a note"]
    shared = {"minority_collapse": "no W", "nc3_self_duality": "no W"}
    line = ["minority_collapse, nc3_self_duality: null (no W)"]
    assert applicable_warnings(line, shared) == line
