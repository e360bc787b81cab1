"""Hostile round six, CSV (issue 22 item 2): a formula that starts *inside* a cell.

OWASP's CSV injection page asks to neutralise the first character of every cell *and* to
"take care of the field separator (e.g. ',' or ';') and quotes": Excel opens a ``.csv`` with
the locale's list separator (``;`` in most of Europe), a tab-separated import splits at tabs,
and a reader that takes quotes only at the start of a cell splits a quoted cell at its
semicolons and line breaks. Round five neutralised the start of each cell only, so a
snapshot, split or layer named ``x;=1+1;`` was written as the cell ``x;=1+1;``, which such a
reader takes as ``x``, ``=1+1``: a formula. Now every part after a semicolon, tab, line feed
or carriage return is neutralised as a cell's start is, and such cells are quoted.

Also: text that is a number in other digits (``-١٢``, ``-１``) is not a number to a
spreadsheet and keeps its quote; a cell that starts with ``::`` is quoted (a runner reads
``::command::`` at the start of a line of a CSV on stdout); a CSV on stdout shows the ``[``
of a ``##[`` as ``\\x5b`` (a CSV file keeps its cells).
"""

from __future__ import annotations

import csv
import io
import re

import h5py
import pytest

from ncinspect.cli import main
from ncinspect.text import csv_cell, csv_text

from ..helpers import make_data

INSIDE = [
    "x;=1+1;",
    "x;=cmd|' /C calc'!A0;",
    "a; @SUM(A1)",
    "a;+1+2",
    "a;-2+3",
    "a\t=1+1",
    'a\n=HYPERLINK("http://x")',
    "a\r=1",
    "a\r\n@x",
    "a;\u200b=1",
    "a;\uff1d1",
    "a;;=1",
    "=1;=2",
]
NUMBERS_INSIDE = ["a;-1", "a;+2.5", "a;-1e-3"]
SPLITTERS = [";", "\t"]


def _formula(cell: str) -> bool:
    """Would a spreadsheet program run ``cell`` (a cell as its reader split it)?"""
    import unicodedata

    for ch in cell:
        if ch in "=+-@\t\r" or unicodedata.normalize("NFKC", ch)[:1] in "=+-@":
            try:
                float(cell)
                return False
            except ValueError:
                return True
        if not (ch.isspace() or unicodedata.category(ch) in ("Cf", "Cc", "Mn")):
            return False
    return False


def _naive_cells(text: str, sep: str) -> list[str]:
    """Cells as a reader sees them that splits rows at line breaks and cells at ``sep``,
    taking quotes only where a cell starts with one (Excel with a ``;`` list separator)."""
    cells = []
    for line in re.split("\r\n|\n|\r", text):
        for cell in line.split(sep):
            cells.append(cell[1:] if cell.startswith('"') else cell)
    return cells


@pytest.mark.parametrize("value", INSIDE)
@pytest.mark.parametrize("sep", SPLITTERS)
def test_a_formula_after_a_separator_inside_a_cell_is_neutralised(value, sep):
    text = csv_text(["file", "name", "x"], [["run.h5", value, -0.5]])
    for cell in _naive_cells(text, sep):
        assert not _formula(cell), (value, cell)
    for delimiter in (",", ";", "\t"):  # readers that honour quotes
        for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
            assert not any(_formula(c) for c in row), (value, delimiter, row)
    (row,) = list(csv.reader(io.StringIO(text, newline="")))[1:]
    assert row[0] == "run.h5" and row[2] == "-0.5"  # one row, numbers stay numbers
    assert row[1].replace("'", "") == value.replace("'", "")  # nothing dropped


@pytest.mark.parametrize("value", NUMBERS_INSIDE)
def test_a_number_after_a_separator_stays_as_it_is(value):
    assert csv_cell(value) == value


@pytest.mark.parametrize("value", ["-\u0661\u0662", "-\uff11", "+\u0967", "-1\u0662"])
def test_numbers_in_other_digits_are_not_numbers(value):
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["::error::x", "  ::add-mask::y", "\u00a0::warning::z"])
def test_a_cell_starting_a_workflow_command_is_quoted(value):
    text = csv_text([value], [[value]])
    assert not [ln for ln in text.splitlines() if ln.lstrip().startswith("::")]
    assert [value, value] == [r[0] for r in csv.reader(io.StringIO(text))]


def _dump(path, names) -> None:
    h, y, m = make_data(C=3, d=5, n=10)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for i, name in enumerate(names):
            g = f.create_group(name.replace("/", "|"))
            g.attrs["epoch"] = i
            g.attrs["split"] = "x;=1+1;"
            g.attrs["layer"] = "l\t@SUM(A1)"
            g["features"] = h * (1 + i)
            g["weights"] = m


@pytest.mark.parametrize("sep", SPLITTERS)
def test_report_and_aggregate_csv_under_a_semicolon_or_tab_reader(tmp_path, capsys, sep):
    names = ["a;=cmd|' /C calc'!A0;", "b\n-2+3", "c\r+1+1"]
    _dump(tmp_path / "s1.h5", names)
    _dump(tmp_path / "s2.h5", names)
    r, a = tmp_path / "r.csv", tmp_path / "a.csv"
    assert main(["report", str(tmp_path / "s1.h5"), "--csv", str(r), "-q"]) == 0
    argv = ["report", str(tmp_path / "s1.h5"), str(tmp_path / "s2.h5"), "--aggregate"]
    assert main([*argv, "--csv", str(a), "-q"]) == 0
    capsys.readouterr()
    for out in (r, a):
        text = out.read_text(encoding="utf-8")
        for cell in _naive_cells(text, sep):
            assert not _formula(cell), (out.name, cell)
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert len({len(row) for row in rows}) == 1  # no row split or merged


def test_csv_on_stdout_runs_no_legacy_workflow_command(tmp_path, capsys):
    """``report --csv -`` in a CI log: no ``##[``; the same report to a file keeps it."""
    _dump(tmp_path / "w.h5", ["ep ##[add-mask]s", "ep2 ##[stop-commands]t"])
    assert main(["report", str(tmp_path / "w.h5"), "--csv", "-"]) == 0
    out = capsys.readouterr().out
    assert "##[" not in out and "##\\x5badd-mask]s" in out
    assert main(["report", str(tmp_path / "w.h5"), "--csv", str(tmp_path / "w.csv"), "-q"]) == 0
    assert "ep ##[add-mask]s" in (tmp_path / "w.csv").read_text(encoding="utf-8")


def test_a_file_name_that_is_not_utf8_is_written_as_escapes(tmp_path, capsys):
    """A file name of bytes that are not UTF-8 (Python decodes them to lone surrogates) made
    ``report --csv`` exit 4 (UnicodeEncodeError); JSON writes such a name as ``\\udcff``,
    and so does the CSV now."""
    import os

    name = os.fsdecode(b"\xff\xfe-run.h5")
    _dump(tmp_path / name, ["ep0", "ep1"])
    out = tmp_path / "r.csv"
    assert main(["report", str(tmp_path / name), "--csv", str(out), "-q"]) == 0
    capsys.readouterr()
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"), newline="")))
    assert rows[1][0].endswith("\\udcff\\udcfe-run.h5")
    assert csv_cell("\udcff") == "\\udcff" and csv_cell("=\udcff") == "'=\\udcff"
