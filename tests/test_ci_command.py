"""The README's test command is what .ci/run runs (torch pinned first, then the extras)."""

from __future__ import annotations

import os

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)


def test_readme_test_command_equals_ci():
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        ci = [ln.strip() for ln in f if ln.startswith("python -m p")]
    ci = [ln.replace(" --quiet", "") for ln in ci if "--upgrade pip" not in ln]
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    i = next(k for k, ln in enumerate(lines) if ln.startswith("# install and run the tests"))
    assert lines[i + 1] == " && ".join(ci)
    assert ci[0] == "python -m pip install torch==2.13.0"  # before any extra asks for torch
    assert "torch" in ci[1] and "safetensors" in ci[1] and ci[-1] == "python -m pytest -q"
    assert "array-api" in ci[1]  # the statistics tests run on array-api-compat backends
    assert "lightning" in ci[1]  # the Lightning callback's test logs through a CSVLogger
