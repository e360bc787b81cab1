"""A fitted rich table drawn as plain text, character for character as rich draws it.

Printing a rich ``Table`` costs tens of microseconds per cell (every cell is parsed as
markup, wrapped, padded and cropped as segments), which is most of ``ncinspect report`` and
``ncinspect info`` on a file with thousands of snapshots. When the console shows no styles
(no colour system: output to a file, a pipe, a CI log) and every cell fits its column
without wrapping, the table is only text: borders from the table's own box, each cell's
plain text justified in its width. :func:`plain_table` draws exactly that, or returns None
whenever rich would do anything more (a cell to wrap, tabs or control characters, a
non-text cell, options the tables of ncinspect never use), and the caller prints the rich
table instead. ``tests/render/test_plaintable.py`` holds the two to the same text.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["plain_table", "plain_cell_lines", "text_cells"]


def plain_cell_lines(console, cell: Any) -> list[str] | None:
    """The lines of ``cell`` as rich shows them (markup and emoji codes applied), or None
    when the cell is not a plain string of printable lines."""
    if cell is None:
        return [""]
    if type(cell) is not str:
        return None
    text = cell
    if "[" in text or ":" in text:  # markup or an emoji code: rich's own parse
        text = _rendered(console, cell)
    lines = text.split("\n")
    for line in lines:
        if not line.isprintable():
            return None
    return lines


@functools.lru_cache(maxsize=4096)
def _rendered(console, cell: str) -> str:
    """``console``'s text of the markup ``cell``: the tables of a report of many snapshots
    repeat their labels and marks (a theory table per snapshot), so each is parsed once."""
    return console.render_str(cell, highlight=False).plain


def _simple_frame(console, table) -> bool:
    """Whether the console shows no styles and ``table``'s frame is one
    :func:`plain_table` draws (what a table fitted by layout.fit keeps of the original)."""
    return (
        console.color_system is None
        and not console.record
        and table.box is not None
        and table.show_edge
        and table.show_header
        and table.padding[0] == 0
        and table.padding[2] == 0
    )


def _simple_table(table) -> bool:
    """Whether ``table``'s other options are the defaults (what layout.fit's tables have)."""
    return (
        not table.show_footer
        and not table.leading
        and not table.collapse_padding
        and not table.expand
        and table.width is None
        and not table.title
        and not table.caption
    )


def text_cells(line: str) -> int:
    """Terminal cells of one line of text, as rich counts them: its length when it is
    printable ASCII (one cell a character: most cells, numbers and names), else rich's
    ``cell_len``."""
    if line.isascii() and line.isprintable():
        return len(line)
    from rich.cells import cell_len

    return cell_len(line)


def _justify(line: str, width: int, justify: str) -> str | None:
    if justify == "right":
        line = line.rstrip()
        n = text_cells(line)
        return None if n > width else " " * (width - n) + line
    n = text_cells(line)
    return None if n > width else line + " " * (width - n)


def _column_cells(console, col, cells, width: int, left: int, right: int):
    """Each cell of one column (header first) as padded lines; None if one needs rich."""
    if col.vertical != "top" or col.justify not in ("left", "right", "default"):
        return None
    out = []
    for cell in (col.header, *cells):
        lines = plain_cell_lines(console, cell)
        if lines is None:
            return None
        shaped = []
        for line in lines:
            text = _justify(line, width, col.justify)
            if text is None:  # rich would wrap or fold it
                return None
            shaped.append(" " * left + text + " " * right)
        out.append(shaped)
    return out


def plain_table(console, table, part: list | None = None) -> str | None:
    """The text rich prints for ``table`` (a table of fixed column widths, as
    :func:`~ncinspect.render.layout.fit` builds it) on ``console``, or None when rich
    must draw it itself.

    ``part``: ``(column, cells, width)`` of the columns to draw instead of ``table``'s own,
    with its rows, box and padding: the text of the table layout.fit would rebuild from
    them (no title, the other options at their defaults)."""
    if part is None:
        if not _simple_table(table):
            return None
        part = [(col, col._cells, col.width) for col in table.columns]
        safe = _pick(table.safe_box, console.safe_box)
    else:
        safe = console.safe_box
    if not part or not _simple_frame(console, table):
        return None
    _, pad_right, _, pad_left = table.padding
    n = len(part)
    widths, columns = [], []
    for c, (col, cells, width) in enumerate(part):
        if width is None:
            return None
        left = pad_left if (table.pad_edge or c) else 0
        right = pad_right if (table.pad_edge or c < n - 1) else 0
        if width + left + right < 1:
            return None
        lines = _column_cells(console, col, cells, width, left, right)
        if lines is None:
            return None
        widths.append(width + left + right)
        columns.append(lines)
    if sum(widths) + n + 1 > console.width:  # rich would narrow the columns
        return None
    box = table.box.substitute(console.options, safe=safe)
    return _draw(box, widths, columns, table.rows, table.show_lines)


def _pick(value, default) -> bool:
    return default if value is None else value


def _draw(box, widths: list[int], columns: list, rows, show_lines: bool) -> str:
    """The table's lines: top, header, its rule, the rows (section rules between), bottom."""
    edges = (
        (box.head_left, box.head_right, box.head_vertical),
        (box.mid_left, box.mid_right, box.mid_vertical),
        (box.foot_left, box.foot_right, box.foot_vertical),
    )
    blank = [" " * w for w in widths]
    out = [box.get_top(widths)]
    total = len(rows) + 1
    for r in range(total):
        cells = [col[r] for col in columns]
        height = max(len(c) for c in cells)
        if r == 0:  # the header row is aligned to the bottom
            cells = [[blank[i]] * (height - len(c)) + c for i, c in enumerate(cells)]
        else:
            cells = [c + [blank[i]] * (height - len(c)) for i, c in enumerate(cells)]
        left, right, divider = edges[0 if r == 0 else (2 if r == total - 1 else 1)]
        for k in range(height):
            out.append(left + divider.join(c[k] for c in cells) + right)
        if r == 0:
            out.append(box.get_row(widths, "head", edge=True))
        elif r < total - 1 and (show_lines or rows[r - 1].end_section):
            out.append(box.get_row(widths, "row", edge=True))
    out.append(box.get_bottom(widths))
    return "\n".join(out) + "\n"
