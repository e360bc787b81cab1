"""Hostile round five, class 2 (CSV formula injection): a formula behind characters that show
nothing, or spelled with a form that folds to ``= + - @``.

Round four quoted a formula behind a fixed list of invisible characters; the class is wider.
Behind a soft hyphen, the Arabic letter mark, a tag character, a variation selector or the
combining grapheme joiner (nothing to combine with), a Hangul filler or a braille blank, a
formula was written bare; and ``﹦`` (small), ``⁼`` (superscript), ``₌`` (subscript) equals
and the small ``﹢ ﹣ ﹫``, which fold to ``= + - @`` under Unicode's compatibility
normalisation as the full-width forms round three quoted do, were not looked at. Now every
leading character of a category that shows nothing (control, format, unassigned, lone
combining marks, separators) is looked past and each character is folded before the test.
"""

from __future__ import annotations

import csv
import io
import json

import h5py
import pytest

from ncinspect.cli import main
from ncinspect.text import csv_cell, csv_text

from ..helpers import make_data

SHOW_NOTHING = [
    "\u00ad",
    "\u061c",
    "\U000e0001",
    "\U000e0041",
    "\ufe0f",
    "\u034f",
    "\u3164",
    "\u115f",
    "\uffa0",
    "\u2800",
    "\U0001d173",
    "\u00ad\u200b \u00a0",
]
FOLDS = ["\ufe66", "\u207c", "\u208c", "\ufe62", "\u207a", "\ufe63", "\ufe6b"]


@pytest.mark.parametrize("lead", SHOW_NOTHING)
@pytest.mark.parametrize("formula", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(1)"])
def test_a_formula_behind_characters_that_show_nothing_is_quoted(lead, formula):
    value = lead + formula
    assert csv_cell(value) == "'" + value
    (row,) = list(csv.reader(io.StringIO(csv_text(["name"], [[value]]))))[1:]
    assert row == ["'" + value]


@pytest.mark.parametrize("start", FOLDS)
def test_a_formula_spelled_with_a_folding_form_is_quoted(start):
    value = start + 'HYPERLINK("http://x")'
    assert csv_cell(value) == "'" + value
    assert csv_cell("\u200b" + value) == "'\u200b" + value


@pytest.mark.parametrize("lead", SHOW_NOTHING)
def test_text_and_numbers_are_unchanged(lead):
    assert csv_cell(lead + "cat") == lead + "cat"
    assert csv_cell("cat" + lead + "=1") == "cat" + lead + "=1"  # not at the start
    assert csv_cell(-1.5) == -1.5 and csv_cell("-1e-3") == "-1e-3"
    assert csv_cell("\u00e9=1") == "\u00e9=1"  # a letter shows: no formula


def test_report_csv_quotes_such_splits_and_layers(tmp_path):
    h, y, m = make_data(C=3, d=4, n=10)
    names = ["\u00ad=1+1", "\ufe66cmd|' /C calc'!A0", "\U000e0001@SUM(1)"]
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for e, name in enumerate(names):
            g = f.create_group(f"epoch_{e}")
            g["features"], g["weights"] = h * (1 + e), m
            g.attrs["split"], g.attrs["layer"] = name, names[(e + 1) % 3]
    table = tmp_path / "t.csv"
    rc = main(["report", str(path), "-q", "--csv", str(table), "--json", str(tmp_path / "r.json")])
    assert rc == 0
    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["split"] for r in rows) == sorted("'" + n for n in names)
    assert sorted(r["layer"] for r in rows) == sorted("'" + n for n in names)
    # the JSON keeps the names as they are
    doc = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert sorted(s["split"] for s in doc["snapshots"]) == sorted(names)
