"""JSON output on every sample dump is unchanged by refactoring.

``tests/golden/`` holds the JSON written by the release before the 0.2
re-housing (``report`` with default options, ``report --per-class --center
samples`` and ``theory``) for each dump in ``sample_data/``. The first test
demands byte identity (the re-housing must not move a single bit); the second
compares every number to 1e-12 relative, the standard an exact speed-up must
meet when it reorders float64 sums.

``tests/golden/identity/`` holds, for the cases where an exact speed-up moved last bits
(within 1e-12 of the release values), the JSON of the current code: the byte-identity test
compares against it when present, the 1e-12 test always against the release values.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ncinspect.cli import main

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
IDENTITY = GOLDEN / "identity"

CASES = []
for dump in ("synthetic", "trained_wd", "trained_wd0", "regression"):
    CASES.append((f"report_{dump}", ["report", f"sample_data/{dump}.h5"]))
    CASES.append(
        (
            f"report_{dump}_pc",
            ["report", f"sample_data/{dump}.h5", "--per-class", "--center", "samples"],
        )
    )
for dump in ("trained_wd", "trained_wd0"):
    CASES.append((f"theory_{dump}", ["theory", f"sample_data/{dump}.h5"]))


def _run(args, tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(ROOT)
    out = tmp_path / "out.json"
    extra = ["-q"] if args[0] == "report" else []
    assert main([*args, "--json", str(out), *extra]) == 0
    return out.read_text()


def _normalise(text: str) -> str:
    data = json.loads(text)
    data.pop("ncinspect_version", None)
    return json.dumps(data, sort_keys=True, indent=2)


@pytest.mark.parametrize("name,args", CASES, ids=[c[0] for c in CASES])
def test_json_byte_identical(name, args, tmp_path, monkeypatch):
    got = _run(args, tmp_path, monkeypatch)
    basis = IDENTITY / f"{name}.json"
    want = (basis if basis.exists() else GOLDEN / f"{name}.json").read_text()
    assert _normalise(got) == _normalise(want)


def _compare(got, want, where="$"):
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), where
        for k in want:
            _compare(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _compare(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, (int, float)), where
        assert math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-300), (where, got, want)
    else:
        assert got == want, (where, got, want)


@pytest.mark.parametrize("name,args", CASES, ids=[c[0] for c in CASES])
def test_json_values_within_1e12(name, args, tmp_path, monkeypatch):
    got = json.loads(_run(args, tmp_path, monkeypatch))
    want = json.loads((GOLDEN / f"{name}.json").read_text())
    got.pop("ncinspect_version", None)
    want.pop("ncinspect_version", None)
    _compare(got, want)
