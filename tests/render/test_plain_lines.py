"""Lines of text (render/layout.py's ``message`` and the titles ``show`` prints) go out as
plain characters on a console that shows no styles and wraps nothing: exactly what rich
prints for them, and rich prints them itself whenever it would do more (colour, a terminal
that wraps, tabs and control characters)."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.text import Text

import ncinspect.render.layout as layout

LINES = [
    "plain",
    "",
    "[bold]x[/bold] y",
    "a\\[b]",
    "long " * 60,
    "trailing   ",
    "  lead",
    "two\nlines",
    "end space \n next  ",
    "tab\there",
    "é 日本 wide",
    ":smile: emoji",
    "[yellow]note[/yellow] key: value",
    "[dim]" + "z" * 300 + "[/dim]",
    "x\u200by zero width",
    "\u0301 combining",
]


def _out(print_line, width: int, **console) -> str:
    buf = io.StringIO()
    con = Console(file=buf, width=width, highlight=False, soft_wrap=False, **console)
    print_line(con)
    return buf.getvalue()


@pytest.mark.parametrize("width", [40, 120])
@pytest.mark.parametrize("line", LINES)
def test_a_message_is_printed_as_rich_prints_it(line, width):
    fast = _out(lambda con: layout.message(con, line), width)
    assert fast == _out(lambda con: con.print(line, soft_wrap=True, highlight=False), width)


@pytest.mark.parametrize("width", [40, 120])
@pytest.mark.parametrize("line", [*LINES, "a\x1bb control"])
def test_a_title_line_is_printed_as_rich_prints_it(line, width):
    text = Text(line) if "\x1b" in line else Text.from_markup(line)
    fast = _out(lambda con: layout._print(con, text), width)
    assert fast == _out(lambda con: con.print(text, soft_wrap=True), width)


def test_the_plain_path_is_taken_only_where_rich_would_print_text_only():
    plain = Console(file=io.StringIO(), width=80)
    assert layout._plain_console(plain)
    assert layout._plain_line(plain, "[bold]x[/bold] y") == "x y\n"
    assert layout._plain_line(plain, "tab\there") is None  # rich expands tabs
    assert layout._plain_line(plain, Text("a\x1bb")) is None  # control characters
    assert layout._plain_line(plain, Text("x", justify="right")) is None
    coloured = Console(file=io.StringIO(), width=80, color_system="truecolor")
    terminal = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    recording = Console(file=io.StringIO(), width=80, record=True)
    for console in (coloured, terminal, recording):  # styles shown, lines wrapped, or kept
        assert not layout._plain_console(console)


def test_a_printer_prints_plain_and_rich_output_in_order():
    """Plain lines wait in the printer; a line rich must print (a tab) flushes them first."""
    buf = io.StringIO()
    con = Console(file=buf, width=80, highlight=False, soft_wrap=False)
    with layout.Printer(con) as out:
        out.message("one")
        out.message("two\tthree")
        out.message("[bold]four[/bold]")
        assert out.pending == ["four\n"]
    assert buf.getvalue() == "one\ntwo     three\nfour\n"


def test_a_printer_prints_what_it_holds_past_its_limit():
    buf = io.StringIO()
    con = Console(file=buf, width=80, highlight=False, soft_wrap=False)
    out = layout.Printer(con)
    out.PENDING_CHARS = 8
    out.message("abc")
    assert buf.getvalue() == "" and out.pending == ["abc\n"]
    out.message("defgh")  # 4 + 6 characters held: printed
    assert buf.getvalue() == "abc\ndefgh\n" and out.pending == []
