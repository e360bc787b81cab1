"""docs/measure.md: every python example runs as printed (each block in a fresh namespace,
in a temporary folder), except blocks marked as needing torchrun."""

from __future__ import annotations

import os
import re

import pytest

DOC = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "measure.md")
NOT_RUN = "<!-- not run:"


def _blocks() -> list[tuple[int, str, bool]]:
    """(line, code, runnable) of every ```python block."""
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    out = []
    for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        before = text[: m.start()].rstrip().splitlines()
        marked = bool(before) and before[-1].startswith(NOT_RUN)
        out.append((text[: m.start()].count("\n") + 1, m.group(1), not marked))
    return out


BLOCKS = _blocks()


def test_the_page_has_the_examples_and_readme_links_it():
    runnable = [code for _, code, run in BLOCKS if run]
    assert any("ncinspect.Meter(" in c for c in runnable)
    assert any("measure(model" in c for c in runnable)
    assert any("NeuralCollapseCallback(" in c for c in runnable)
    assert any("ncinspect.integrations.transformers" in c for c in runnable)
    readme = os.path.join(os.path.dirname(DOC), os.pardir, "README.md")
    with open(readme, encoding="utf-8") as f:
        assert "(docs/measure.md)" in f.read()


@pytest.mark.parametrize("line", [line for line, _, run in BLOCKS if run])
def test_example_runs(line, tmp_path, monkeypatch, capsys):
    code = next(c for ln, c, _ in BLOCKS if ln == line)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the Transformers example downloads nothing
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    exec(compile(code, f"docs/measure.md:{line}", "exec"), {"__name__": "__docs__"})
    assert "nc1" in capsys.readouterr().out  # each example prints its nc1
