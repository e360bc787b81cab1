"""Hostile round four, class 2 (CSV formula injection): a formula behind invisible format
characters. Round three's writer looked past whitespace and control characters only, so
a cell ``\\u200b=HYPERLINK(...)`` (a zero-width space, a byte order mark, a word joiner, a
bidirectional mark or embedding first) was written bare; a program that strips or ignores
those characters sees the formula. Now such a cell is quoted too, and text that merely
starts with one of them is left as it is."""

from __future__ import annotations

import csv
import io

import pytest

from ncinspect.text import csv_cell, csv_text

INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u2060", "\ufeff", "\u180e"]
INVISIBLE += ["\u202a", "\u202e", "\u2066", "\u2069"]


@pytest.mark.parametrize("lead", INVISIBLE)
@pytest.mark.parametrize("formula", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(1)"])
def test_a_formula_behind_invisible_characters_is_quoted(lead, formula):
    value = lead + formula
    assert csv_cell(value) == "'" + value
    (row,) = list(csv.reader(io.StringIO(csv_text(["name"], [[value]]))))[1:]
    assert row == ["'" + value]


@pytest.mark.parametrize("lead", INVISIBLE)
def test_text_behind_invisible_characters_is_unchanged(lead):
    assert csv_cell(lead + "cat") == lead + "cat"
    assert csv_cell(-1) == -1 and csv_cell("-1") == "-1"
