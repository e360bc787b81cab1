"""CSV formula injection (issue 22 item 2): no cell of any CSV ncinspect writes starts a
spreadsheet formula; numbers, negative ones included, stay numbers."""

from __future__ import annotations

import csv
import io

import h5py
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.results.aggregate import aggregate
from ncinspect.results.report import csv_text
from ncinspect.text import csv_cell

from ..helpers import make_data

HOSTILE = [
    "=1+1",
    "=cmd|' /C calc'!A0",
    "+SUM(A1:A2)",
    "-2+3",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
    '\n=HYPERLINK("http://x")',
    "  =1",
    "\x00=1",
    "\uff1d1+1",  # full-width equals sign
    "\uff0bA1",
    "\uff0dA1",
    "\uff20A1",
    "-",
    "+",
    "@",
    "=",
]

SAFE_TEXT = ["train", "a=b", "layer_1", "", "x-1", "1e-3", "-1.5", "+2", "-.5e3", "0"]


def _dangerous(cell: str) -> bool:
    """Would a spreadsheet program read ``cell`` (as parsed back from the CSV) as a formula?"""
    stripped = cell.lstrip(" \t\r\n\x00")
    first = cell[:1]
    return first in ("=", "+", "-", "@", "\t", "\r") or stripped[:1] in (
        "=",
        "+",
        "-",
        "@",
        "\uff1d",
        "\uff0b",
        "\uff0d",
        "\uff20",
    )


def _numberlike(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return cell.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def _assert_safe(text: str) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(text)))
    for row in rows:
        for cell in row:
            assert not (_dangerous(cell) and not _numberlike(cell)), repr(cell)
    return rows


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_text_is_quoted_and_kept(value):
    out = csv_cell(value)
    # neutralised, nothing dropped (a part after a tab, CR or LF gets its own quote: round 6)
    assert out.startswith("'") and out.replace("'", "") == value.replace("'", "")
    if not any(c in value for c in "\t\r\n;"):
        assert out == "'" + value
    _assert_safe(csv_text([value], [[value]]))


@pytest.mark.parametrize("value", SAFE_TEXT)
def test_plain_text_and_number_text_are_unchanged(value):
    assert csv_cell(value) == value


@pytest.mark.parametrize("value", [-3, -0.5, 0, 2.5, -1e-300, True, float("-inf")])
def test_numbers_stay_numbers(value):
    assert csv_cell(value) is value
    (row,) = list(csv.reader(io.StringIO(csv_text(["x"], [[value]]))))[1:]
    assert row == [str(value)]  # a negative number is written as a number, no quote


def test_none_is_an_empty_cell():
    assert csv_text(["a", "b"], [[None, 1]]) == "a,b\n,1\n"


def _hostile_dump(path, names=("=1+1", "@SUM(A1)")) -> None:
    h, y, m = make_data(C=3, d=5, n=30)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for i, name in enumerate(names):
            g = f.create_group(name)
            g.attrs["epoch"] = i
            g.attrs["split"] = "+train|calc"
            g.attrs["free"] = "-cmd"
            g["features"] = h * (1 + i)
            g["weights"] = m
        layer = f.create_group(f"{names[0]}/layer_1")
        layer.attrs["layer"] = "-1+layer"
        layer["features"] = h


def test_report_csv_neutralises_names_split_and_layer(tmp_path, capsys):
    path = tmp_path / "=evil.h5"
    _hostile_dump(path)
    out = tmp_path / "r.csv"
    assert main(["report", str(path), "--csv", str(out), "-q"]) == 0
    rows = _assert_safe(out.read_text())
    cells = {c for row in rows for c in row}
    assert "'/=1+1" not in cells  # snapshot paths start with "/": harmless, kept as they are
    assert "'+train|calc" in cells and "'-1+layer" in cells
    assert any(c.endswith("=evil.h5") for c in cells)
    # the numbers are still numbers: every metric cell parses
    header, *body = rows
    col = header.index("nc1")
    assert all(_numberlike(r[col]) for r in body if r[col])


def test_report_csv_to_stdout_is_neutralised(tmp_path, capsys):
    path = tmp_path / "d.h5"
    _hostile_dump(path, names=("a", "b"))
    assert main(["report", str(path), "--csv", "-", "-q"]) == 0
    _assert_safe(capsys.readouterr().out)


def test_aggregate_csv_is_neutralised(tmp_path):
    reports = []
    for seed in (0, 1):
        path = tmp_path / f"run_seed{seed}.h5"
        _hostile_dump(path, names=("a", "b"))
        reports.append(ncinspect.analyze_file(path))
    rows = _assert_safe(aggregate(reports).to_csv())
    assert "'+train|calc" in {c for row in rows for c in row}


def test_sweep_csv_goes_through_the_one_writer(tmp_path):
    from ncinspect.experiments.tables import SWEEP_METRICS, SWEEP_THEORY, write_sweep

    row = {
        "weight_decay": 1e-3,
        "seed": 0,
        "Lambda": -0.25,
        "metrics": {k: -1.5 for k, _ in SWEEP_METRICS},
        "test_accuracy": 0.5,
        "theory": {k: "=evil()" for k, _ in SWEEP_THEORY},
        "layer_norms_sq": [1.0],
        "seconds": 1.0,
    }
    write_sweep([row], tmp_path, figure=False)
    rows = _assert_safe((tmp_path / "sweep.csv").read_text())
    header, body = rows[0], rows[1]
    assert body[header.index("Lambda")] == "-0.25"  # a negative number, not text
    assert "'=evil()" in body
