"""The plain-text table path (render/plaintable.py) prints exactly what rich prints: random
tables at many widths, real reports (sections, bold edges, intervals under values, a
merged meaning column), and it steps aside whenever rich must draw (colour, wrapping,
tabs and control characters, non-text cells)."""

from __future__ import annotations

import io
import random

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

import ncinspect.render.plaintable as plaintable
from ncinspect.analysis.api import analyze
from ncinspect.render.layout import column, fit, show
from ncinspect.render.table import render_report
from ncinspect.results.report import Report

from ..helpers import make_data

WORDS = [
    "a",
    "bb",
    "ccc dd",
    "[dim]x[/dim]",
    "é",
    "日本語",
    "nan",
    "-1.5e-3",
    "",
    "x\ny",
    " lead",
    "trail ",
    ":smile:",
    "[green]x0.5[/green]",
    "\\[escaped]",
    "a_very_long_snapshot_name_number_one",
    "some prose that can wrap at its spaces and goes on for a while",
    "tab\tbed",
    "ctl\x1b[0m",
    None,
]


def _console(width, **kw):
    buf = io.StringIO()
    return buf, Console(file=buf, width=width, highlight=False, soft_wrap=False, **kw)


def _both(monkeypatch, draw, width):
    """(rich's text, the fast path's text, tables the fast path drew) of ``draw(console)``."""
    outs, real = [], plaintable.plain_table
    for fast in (False, True):
        drawn = []

        def counted(console, table, *part, real=real, drawn=drawn, fast=fast):
            text = real(console, table, *part) if fast else None
            drawn.append(text is not None)
            return text

        monkeypatch.setattr(plaintable, "plain_table", counted)
        buf, console = _console(width)
        draw(console)
        outs.append((buf.getvalue(), sum(drawn)))
    monkeypatch.undo()
    (slow, _), (quick, n) = outs
    return slow, quick, n


def _random_table(rng):
    table = Table(title="T" if rng.random() < 0.5 else None, show_lines=rng.random() < 0.2)
    n = rng.randint(1, 6)
    for c in range(n):
        role = rng.choice(["key", "value", "text"])
        header = f"{rng.choice([w for w in WORDS if w])}{c}"
        column(table, header, role, justify=rng.choice(["left", "right"]))
    for _ in range(rng.randint(0, 6)):
        cells = [rng.choice(WORDS) for _ in range(n)]
        table.add_row(*cells, end_section=rng.random() < 0.3, style=rng.choice([None, "bold"]))
    return table


def test_random_tables_print_as_rich_does(monkeypatch):
    rng = random.Random(0)
    drawn = 0
    for _ in range(300):
        table, width = _random_table(rng), rng.choice([12, 20, 40, 80, 200])
        slow, quick, n = _both(monkeypatch, lambda con, t=table: show(con, t), width)
        assert quick == slow
        drawn += n
    assert drawn > 50  # the fast path is taken (not always stepping aside)


def _report(n_snapshots=3, bootstrap=None):
    results = []
    for e in range(n_snapshots):
        h, y, m = make_data(C=4, d=8, n=20, seed=e)
        res = analyze(h, y, weights=m, per_class=True, bootstrap=bootstrap, seed=e)
        res.name, res.epoch = f"/epoch_{e}", e
        results.append(res)
    return Report("run.h5", results)


@pytest.mark.parametrize("width", [60, 80, 120, 1000])
@pytest.mark.parametrize("compact", [True, False])
def test_reports_print_as_rich_does(monkeypatch, width, compact):
    report = _report(3, bootstrap=20 if width == 120 else None)
    slow, quick, n = _both(
        monkeypatch, lambda con: render_report(report, con, compact=compact, per_class=True), width
    )
    assert quick == slow
    assert n >= 1
    assert "epoch_0" in quick


def test_coloured_console_is_left_to_rich():
    table = Table()
    column(table, "k", "key")
    table.add_row("[bold]x[/bold]")
    (part,) = fit(table, 80)
    _, con = _console(80, color_system="truecolor", force_terminal=True)
    assert plaintable.plain_table(con, part) is None
    _, con = _console(80, color_system=None)
    assert plaintable.plain_table(con, part) is not None
    _, con = _console(80, color_system=None, record=True)
    assert plaintable.plain_table(con, part) is None


class _Str(str):
    pass


@pytest.mark.parametrize("cell", ["tab\there", "esc\x1b[31m", Text("rich text"), _Str("sub")])
def test_cells_rich_must_draw_step_aside(cell):
    table = Table()
    column(table, "k", "key")
    table.add_row(cell)
    (part,) = fit(table, 80)
    _, con = _console(80, color_system=None)
    assert plaintable.plain_table(con, part) is None


def test_a_cell_wider_than_its_column_is_left_to_rich():
    table = Table()
    column(table, "name", "key")
    column(table, "note", "text")
    table.add_row("n" * 30, "word " * 30)
    (part,) = fit(table, 60)  # the note wraps
    _, con = _console(60, color_system=None)
    assert plaintable.plain_table(con, part) is None
