"""Fit a rich table to the terminal width without ever cutting a number.

The table builders mark each column with a role (:func:`column`):

- ``key``: identifies a row (snapshot, metric, class); repeated in every part when a table
  is split; may wrap when nothing else helps (a name, never a number);
- ``value``: a number or a short code; never cut, never wrapped;
- ``text``: prose (meaning, note); wraps at spaces.

:func:`fit` tries, in order: the table as built; prose columns narrowed; key columns
narrowed; the value columns split over several tables (key columns repeated); and, when
even one value column does not fit beside the keys, one line per value ("one metric per
line"). A table's title is printed as lines of its own, above the table, so it never wraps
at the table's width. :func:`show` prints the result; :func:`message` prints a warning or
note as one whole line when the output is not a terminal (CI logs are never hard-wrapped).
"""

from __future__ import annotations

import functools
from typing import Any

from .plaintable import text_cells

__all__ = ["column", "fit", "show", "message", "cell_width", "no_split", "ROLES"]

ROLES = ("key", "value", "text")
_MIN_TEXT = 20  # prose narrower than this reads badly: split or go one value per line
_MIN_KEY = 12  # a key column (a name) may wrap down to this


def column(table, header: str, role: str, *, min_width: int | None = None, **kwargs) -> None:
    """``table.add_column(header, **kwargs)`` and record the column's role for :func:`fit`.

    ``min_width`` (for ``key``/``text`` columns) is the narrowest the column may become.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    if role == "value":
        kwargs.setdefault("no_wrap", True)
    table.add_column(header, **kwargs)
    col = table.columns[-1]
    col._nc_role = role
    col._nc_min = min_width


def no_split(table, *, inline: bool = True):
    """Never split ``table`` into parts; too narrow, it goes one row per line instead.

    ``inline``: such a line holds the keys and the values side by side (for self-explaining
    values like a metric's value and direction) rather than ``header: value`` lines.
    """
    table._nc_split = False
    table._nc_inline = inline
    return table


def _role(col) -> str:
    role = getattr(col, "_nc_role", None)
    if role:
        return role
    if col.justify == "right":
        return "value"
    return "key" if col.no_wrap else "text"


def _text(cell: Any):
    from rich.text import Text

    if isinstance(cell, Text):
        return cell
    return Text.from_markup(str(cell)) if cell is not None else Text("")


def _plain(cell: Any) -> str:
    """The text of ``cell`` as shown (markup and emoji codes applied)."""
    if type(cell) is str:
        if "[" not in cell and ":" not in cell:
            return cell  # nothing to parse (most cells: numbers, names)
        return _markup_plain(cell)
    return _text(cell).plain


@functools.lru_cache(maxsize=4096)
def _markup_plain(cell: str) -> str:
    """The text of the markup ``cell`` (a pure function of it): labels and marks repeated
    by the tables of many snapshots are parsed once."""
    return _text(cell).plain


def cell_width(cell: Any) -> int:
    """Terminal cells of the widest line of ``cell`` (a markup string or a rich Text)."""
    text = _plain(cell)
    if "\n" not in text:
        return text_cells(text)
    return max(text_cells(line) for line in text.split("\n"))


def _longest_word(cell: Any) -> int:
    return max((text_cells(w) for w in _plain(cell).split()), default=0)


class _Col:
    def __init__(self, col):
        self.col = col
        self.role = _role(col)
        self.cells = list(col._cells)
        body = max((cell_width(c) for c in self.cells), default=0)
        self.natural = max(body, cell_width(col.header))
        self.body = body
        if self.role == "value":
            # a header may wrap at its spaces; the numbers never
            self.min = max(body, _longest_word(col.header), 1)
        elif self.role == "key":
            floor = getattr(col, "_nc_min", None) or _MIN_KEY
            self.min = min(self.natural, max(floor, _longest_word(col.header)))
        else:
            floor = getattr(col, "_nc_min", None) or _MIN_TEXT
            self.min = min(self.natural, floor)


def _overhead(n: int, table) -> int:
    """Cells a table of ``n`` columns spends on borders and padding."""
    pad = table.padding[1] + table.padding[3] if hasattr(table, "padding") else 2
    edges = (n + 1) if table.show_edge and table.box else (n - 1 if table.box else 0)
    return n * pad + max(edges, 0)


def _widths(cols: list[_Col], width: int, table, fold_keys: bool = True) -> list[int] | None:
    """Column widths that fit ``width``, shrinking text then key columns; None if impossible."""
    room = width - _overhead(len(cols), table)
    widths = [c.natural for c in cols]
    for role in ("text", "key") if fold_keys else ("text",):
        excess = sum(widths) - room
        if excess <= 0:
            break
        for i, c in sorted(enumerate(cols), key=lambda ic: -ic[1].natural):
            if c.role != role or excess <= 0:
                continue
            cut = min(excess, widths[i] - c.min)
            widths[i] -= cut
            excess -= cut
    if sum(widths) > room:
        return None
    # give what is left to the prose columns (they wrap less)
    spare = room - sum(widths)
    texts = [i for i, c in enumerate(cols) if c.role == "text"]
    for i in texts:
        extra = min(spare, cols[i].natural - widths[i])
        widths[i] += extra
        spare -= extra
    return widths


def _rebuild(table, cols: list[_Col], widths: list[int]):
    """A copy of ``table`` with only ``cols`` (fixed ``widths``) and no title."""
    from rich.table import Table

    new = Table(
        box=table.box,
        show_header=table.show_header,
        show_edge=table.show_edge,
        show_lines=table.show_lines,
        padding=table.padding,
        header_style=table.header_style,
        row_styles=table.row_styles,
        style=table.style,
        border_style=table.border_style,
        pad_edge=table.pad_edge,
    )
    for c, w in zip(cols, widths, strict=True):
        src = c.col
        new.add_column(
            src.header,
            justify=src.justify,
            vertical=src.vertical,
            style=src.style,
            header_style=src.header_style,
            # the widths leave room for every value: nothing needs cutting, names may fold
            no_wrap=c.role == "key" and w >= c.body,
            overflow="fold",
            width=w,
        )
    for r, row in enumerate(table.rows):
        new.add_row(*(c.cells[r] for c in cols), style=row.style, end_section=row.end_section)
    return new


def _title_lines(table) -> list:
    from rich.text import Text

    if not table.title:
        return []
    title = table.title
    text = title if isinstance(title, Text) else Text.from_markup(str(title))
    return list(text.split("\n"))


def _one_per_line(table, cols: list[_Col]) -> list:
    """The rows as lines: the keys, then ``header: value`` for every other non-empty cell."""
    from rich.text import Text

    out = []
    keys = [c for c in cols if c.role == "key"]
    others = [c for c in cols if c.role != "key"]
    inline = getattr(table, "_nc_inline", False)
    for r, row in enumerate(table.rows):
        if inline:
            first = [_text(c.cells[r]) for c in cols if c.role != "text"]
            line = Text("  ").join(t.split("\n")[0] for t in first if t.plain)
            out.append(line)
            rest = [t.split("\n")[1:] for t in first] + [
                [_text(c.cells[r])] for c in cols if c.role == "text"
            ]
            for extra in (x for group in rest for x in group):
                if extra.plain.strip():
                    out.append(Text.assemble("    ", extra))
            if row.end_section:
                out.append(Text(""))
            continue
        head = Text("  ").join(_text(c.cells[r]) for c in keys if _text(c.cells[r]).plain)
        if head.plain:
            head.stylize("bold")
            out.append(head)
        for c in others:
            value = _text(c.cells[r])
            if not value.plain.strip():
                continue
            header = _text(c.col.header).plain.replace("\n", " ")
            out.append(Text.assemble("    ", (f"{header}: ", "dim"), value))
        if row.end_section:
            out.append(Text(""))
    return out


class _Part:
    """Columns of a table at fixed widths: one table of :func:`fit`'s result, before it is
    built as a rich table (:meth:`rebuild`) or drawn as plain text."""

    def __init__(self, table, cols: list[_Col], widths: list[int]):
        self.table, self.cols, self.widths = table, cols, widths

    def rebuild(self):
        return _rebuild(self.table, self.cols, self.widths)

    def columns(self) -> list:
        """``(column, cells, width)`` of each column, as :func:`plain_table` takes them."""
        return [(c.col, c.cells, w) for c, w in zip(self.cols, self.widths, strict=True)]


def fit(table, width: int) -> list:
    """Renderables that show ``table`` within ``width`` terminal cells, every number whole.

    The title comes first, as lines of its own (never cut at the table's width).
    """
    return [p.rebuild() if isinstance(p, _Part) else p for p in _fitted(table, width)]


def _fitted(table, width: int) -> list:
    """:func:`fit`'s result with each table still a :class:`_Part`."""
    cols = [_Col(c) for c in table.columns]
    lines = _title_lines(table)
    splittable = getattr(table, "_nc_split", True)
    # whole names first (splitting the table rather than folding a name), then folded names
    for fold in (False, True):
        widths = _widths(cols, width, table, fold)
        if widths is not None:
            return [*lines, _Part(table, cols, widths)]
        if splittable:
            parts = _split(cols, width, table, fold)
            if parts:
                return [*lines, *parts]
    return [*lines, *_one_per_line(table, cols)]


def _split(cols: list[_Col], width: int, table, fold: bool) -> list | None:
    """The table as several tables (keys repeated, values split), or None if one won't fit."""
    keys = [c for c in cols if c.role == "key"]
    rest = [c for c in cols if c.role != "key"]
    parts: list[list[_Col]] = []
    current: list[_Col] = []
    for c in rest:
        if _widths([*keys, *current, c], width, table, fold) is not None:
            current.append(c)
            continue
        if not current or _widths([*keys, c], width, table, fold) is None:
            return None
        parts.append(current)
        current = [c]
    if current:
        parts.append(current)
    order = {id(c): i for i, c in enumerate(cols)}
    tables = []
    for part in parts:
        chosen = sorted([*keys, *part], key=lambda c: order[id(c)])
        tables.append(_Part(table, chosen, _widths(chosen, width, table, fold)))
    return tables


def show(console, table) -> None:
    """Print ``table`` fitted to ``console.width`` (see :func:`fit`)."""
    with Printer(console) as out:
        out.show(table)


class Printer:
    """Prints tables (fitted, :func:`show`) and message lines (:func:`message`) on
    ``console``; what is only text (:func:`_plain_line`, :func:`plaintable.plain_table`) is
    joined and printed at once when something else comes, when :data:`PENDING_CHARS` wait,
    at :meth:`flush` or at the end of a ``with`` block. A report of many snapshots prints
    thousands of tables and lines, and each ``console.print`` costs tens of microseconds
    whatever it prints."""

    #: characters of plain text held before they are printed
    PENDING_CHARS = 1 << 18

    def __init__(self, console):
        self.console = console
        self.plain = _plain_console(console)  # asked once (a terminal's size each time)
        self.pending: list[str] = []
        self.chars = 0

    def __enter__(self) -> Printer:
        return self

    def __exit__(self, *exc) -> None:
        self.flush()

    def show(self, table) -> None:
        from . import plaintable

        for part in _fitted(table, self.console.width):
            if isinstance(part, _Part):
                text = plaintable.plain_table(self.console, part.table, part.columns())
                if text is not None:  # the characters rich prints, without its work per cell
                    self._hold(text)
                    continue
                part = part.rebuild()
            line = _plain_line(self.console, part) if self.plain else None
            if line is not None:
                self._hold(line)
            else:
                self.flush()
                _print(self.console, part)

    def message(self, text: str) -> None:
        line = _plain_line(self.console, text) if self.plain else None
        if line is not None:
            self._hold(line)
            return
        self.flush()
        self.console.print(text, soft_wrap=not self.console.is_terminal, highlight=False)

    def _hold(self, text: str) -> None:
        self.pending.append(text)
        self.chars += len(text)
        if self.chars >= self.PENDING_CHARS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            from rich.segment import Segment, Segments

            text, self.pending, self.chars = "".join(self.pending), [], 0
            self.console.print(Segments([Segment(text)]), crop=False)


def _plain_console(console) -> bool:
    """Whether ``console`` shows no styles (no colour system, no recording) and wraps
    nothing (not a terminal): what it prints of plain text is that text."""
    return not console.is_terminal and console.color_system is None and not console.record


def _plain_line(console, text) -> str | None:
    """The characters rich prints for a line of markup (or a plain rich Text) with
    ``soft_wrap=True`` on a :func:`_plain_console`, when they are only text: printable
    lines, markup and emoji codes applied; else None (rich prints it itself)."""
    from rich.text import Text

    from . import plaintable

    if isinstance(text, Text):
        if text.end != "\n" or text.justify not in (None, "default", "left"):
            return None
        lines = text.plain.split("\n")
        if not all(line.isprintable() for line in lines):
            return None
    elif type(text) is str:
        lines = plaintable.plain_cell_lines(console, text)
        if lines is None:
            return None
    else:
        return None
    return "\n".join(lines) + "\n"


def _print(console, renderable) -> None:
    from rich.text import Text

    if isinstance(renderable, Text):
        # a line of text: whole in logs, wrapped at spaces by a terminal
        console.print(renderable, soft_wrap=not console.is_terminal)
    else:
        console.print(renderable)


def message(console, text: str) -> None:
    """Print a one-line message (markup): one whole line when the output is not a terminal."""
    with Printer(console) as out:
        out.message(text)
