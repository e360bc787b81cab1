"""A file whose name starts with ``::`` (a GitHub Actions workflow command at the start of a
line: ``::error::``, ``::add-mask::``) never starts a line of ncinspect's output: the
headers that begin with the file's path show it as ``./::...``, the same file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ncinspect.cli import main
from ncinspect.text import line_start

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "synthetic.h5"
NAME = "::error title=pwned::x.h5"


def test_line_start_prefixes_only_workflow_commands():
    assert line_start("::add-mask::s.h5") == "./::add-mask::s.h5"
    assert line_start("  ::warning::s.h5") == "./  ::warning::s.h5"
    assert line_start("runs/a::b.h5") == "runs/a::b.h5"
    assert line_start("/abs/::x.h5") == "/abs/::x.h5"
    assert line_start(":one.h5") == ":one.h5"


@pytest.mark.parametrize(
    "args",
    [
        ["report", NAME],
        ["report", NAME, "--full"],
        ["info", NAME],
        ["check", NAME, "--max", "nc1=1e9"],
        ["check", NAME, "--max", "nc1=1e-9"],
        ["theory", NAME],
    ],
    ids=["report", "report-full", "info", "check-pass", "check-fail", "theory"],
)
def test_no_output_line_starts_a_workflow_command(tmp_path, monkeypatch, capsys, args):
    shutil.copy(SAMPLE, tmp_path / NAME)
    monkeypatch.chdir(tmp_path)
    code = main(args)
    out = capsys.readouterr()
    assert code in (0, 1, 3), out.err  # a failing check exits 1; theory may refuse (3)
    text = out.out + out.err
    assert NAME in text.replace("\n", "") or code == 3
    assert not [line for line in text.splitlines() if line.lstrip().startswith("::")]
