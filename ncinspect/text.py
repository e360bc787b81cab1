"""Text shown to people: names from a file made safe to show, and numbers in a compact form.

A dump is someone else's file: its group names, array names, class names and attribute
values may hold rich markup (``[bold red]``, ``[/red]``), terminal control sequences (ANSI
escapes that clear the screen or move the cursor), line breaks, bidirectional overrides or
unpaired surrogates (undecodable bytes). Every renderer passes such text through
:func:`plain` (for plain-text outputs and messages) or :func:`markup` (inside rich markup)
before it reaches a terminal or a log, :func:`xml_text` before it goes into XML and
:func:`mpl_text` before it goes into a figure (where ``$...$`` would be parsed as math),
and every CSV cell through :func:`csv_cell` (a cell that a spreadsheet would run as a formula
is neutralised). :func:`cut` caps a name shown to people (the JSON keeps it whole).

Unsafe characters are not dropped silently but shown as escapes (``\\x1b``, ``\\u202e``), so
two names that differ only in them stay distinguishable.

:func:`fmt` is the one compact human form of a metric value used by every renderer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "plain",
    "markup",
    "xml_text",
    "mpl_text",
    "fmt",
    "clip",
    "clip_line",
    "MAX_ECHO",
    "MAX_LINE",
    "csv_cell",
    "csv_text",
    "cut",
    "line_start",
    "starts_workflow_command",
    "no_workflow_command",
    "json_safe",
]

MAX_ECHO = 160  #: longest user value (glob, path, name, metadata value) echoed in a message
MAX_LINE = 4000  #: longest error line the CLI prints (a last guard over :data:`MAX_ECHO`)

# C0 controls (tab and newline included: a name is one line), DEL, C1 controls, the Unicode
# bidirectional embeddings/overrides/isolates, line and paragraph separators, and surrogates
# (which cannot be encoded to UTF-8 and would crash the output stream).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

# characters XML 1.0 forbids in a document (after plain() only U+FFFE and U+FFFF remain)
_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


# what rich.markup would read as a tag, with the backslashes before it
_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")
_TRAILING_BACKSLASHES = re.compile(r"\\+$")


def _escape_char(m: re.Match) -> str:
    code = ord(m.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# What a GitHub Actions runner reads *anywhere* in a line of a job's log as a workflow
# command of the legacy form ``##[name]data`` (``##[add-mask]``, ``##[stop-commands]``,
# ``##[error]``...: actions/runner ActionCommand.TryParse looks for the prefix with IndexOf,
# not only at the start of the line as for ``::name::``). The runner's string search may be
# culture-sensitive, which skips default-ignorable code points, so ``#``, zero-width space,
# ``#``, ``[`` is caught too.
_IGNORABLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
_V1_COMMAND = re.compile(f"#[{_IGNORABLE}]*#[{_IGNORABLE}]*\\[")


def no_workflow_command(text: str, bracket: str = "\\x5b") -> str:
    """``text`` with the ``[`` of every legacy GitHub Actions workflow command prefix
    (``##[``, also with invisible characters between) shown as ``bracket`` (``\\x5b``, as
    :func:`plain` shows escapes; JSON text passes ``\\u005b``, the same string once parsed),
    so that no line ncinspect prints or writes runs ``##[add-mask]``, ``##[stop-commands]``
    or ``##[error]`` in a CI log."""
    if "#" not in text or "[" not in text:
        return text
    return _V1_COMMAND.sub(lambda m: m.group()[:-1] + bracket, text)


def json_safe(text: str) -> str:
    """JSON text with no legacy workflow command prefix (:func:`no_workflow_command`): a
    ``[`` after ``##`` can only be inside a string, where ``\\u005b`` is the same character
    once parsed, so the data is unchanged (a ``cat report.json`` in a CI log runs nothing)."""
    return no_workflow_command(text, "\\u005b")


def plain(value: Any) -> str:
    """``str(value)`` with every control or invisible-direction character shown as an escape.

    Newlines and tabs are escaped too: one name or message is one line. The ``[`` of a
    legacy GitHub Actions workflow command prefix (``##[``, :func:`no_workflow_command`) is
    shown as ``\\x5b``: a CI log runs no command from a name.
    """
    return no_workflow_command(
        _UNSAFE.sub(_escape_char, value if isinstance(value, str) else str(value))
    )


def elide(text: str, limit: int) -> str:
    """``text`` cut to at most about ``limit`` characters, its middle replaced by a marker
    that says how many characters were left out (head and tail stay: paths end in names)."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(f"...[{len(text)} chars left out]..."), 2)
    marker = f"...[{len(text) - keep} chars left out]..."
    head = keep - keep // 3
    return f"{text[:head]}{marker}{text[len(text) - keep // 3 :]}"


def clip(value: Any, limit: int = MAX_ECHO) -> str:
    """A value from the user or a file, fit to echo in a one-line message: :func:`plain`
    (control characters escaped) and at most about ``limit`` characters (:func:`elide`).

    Every message that quotes a glob, path, array or group name, class name or metadata value
    passes it through this (``repr``-style quotes go around the result, not into it)."""
    return elide(plain(value), limit)


_LONG_WORD = re.compile(rf"\S{{{MAX_ECHO + 1},}}")


def clip_line(message: Any, limit: int = MAX_LINE, echoed: Iterable[str] = ()) -> str:
    """A whole message as one bounded line: the CLI's last guard, so that no error line grows
    with its input even where a value was echoed without :func:`clip`. Each of ``echoed``
    (the command line's own values: paths, keys, globs) longer than :data:`MAX_ECHO` is
    clipped where the message quotes it (as given, or as the absolute path or folder of it:
    a path of words, ``a b/c d/...``, has spaces the next rule does not cut at); then every
    run of more than :data:`MAX_ECHO` characters without a space is elided to that length,
    and the whole line to ``limit`` (long lists of valid choices stay readable)."""
    text = plain(message)
    for value in _echo_forms(echoed):
        if value in text:
            text = text.replace(value, clip(value))
    text = _LONG_WORD.sub(lambda m: elide(m.group(), MAX_ECHO), text)
    return elide(text, limit)


def _echo_forms(values: Iterable[str]) -> list[str]:
    """The long forms in which a message may quote the command-line values ``values``
    (plain text: each as given, its absolute path, its folder, and each of these as Python's
    ``repr`` writes it between its quotes, the form click's messages use: ``No such command
    'x'``, ``'x' is not one of ...``), longest first."""
    import os

    forms = set()
    for value in values:
        if not isinstance(value, str) or len(value) <= MAX_ECHO:
            continue
        for form in (value, os.path.dirname(value)):
            spelled = [form]
            try:
                spelled.append(os.path.abspath(form))
            except (ValueError, OSError):  # NUL in the value: no path
                pass
            for each in spelled:
                forms.add(plain(each))
                forms.add(plain(repr(each)[1:-1]))
    return sorted((f for f in forms if len(f) > MAX_ECHO), key=len, reverse=True)


def markup(value: Any, limit: int | None = None) -> str:
    """:func:`plain` text, then escaped so that rich shows it literally (no markup parsed,
    no emoji code replaced).

    Shown text only: cut to ``limit`` characters (default :data:`TEXT_LIMIT`) by :func:`cut`,
    so that no value from a file (a 10 MB class name) makes a table slow or huge."""
    raw = value if isinstance(value, str) else str(value)
    text = _TAG.sub(
        lambda m: f"{m.group(1) * 2}\\{m.group(2)}", plain(cut(raw, limit or TEXT_LIMIT))
    )
    # rich halves a run of backslashes that ends right before a tag, so a run at the end of
    # the text (where a closing tag may follow) is doubled as well
    text = _TRAILING_BACKSLASHES.sub(lambda m: m.group() * 2, text)
    # rich replaces emoji codes (``:thumbs_up:``, ``:warning:``) in each run of text between
    # two tags, and has no escape for them: every colon gets a run of its own (a null style,
    # shown as nothing), so no code forms in the name or across it and the text beside it
    # (a run of backslashes before a colon is doubled: it now ends right before a tag)
    return _COLON.sub(lambda m: m.group(1) * 2 + "[none]:[/none]", text) if ":" in text else text


_COLON = re.compile(r"(\\*):")


def xml_text(value: Any) -> str:
    """:func:`plain` text without any character that XML 1.0 forbids (for JUnit reports)."""
    return _XML_ILLEGAL.sub(_escape_char, plain(value))


def mpl_text(value: Any, limit: int | None = None) -> str:
    """:func:`plain` text for a matplotlib label: every ``$`` shown literally (no mathtext),
    cut to ``limit`` characters (default :data:`NAME_LIMIT`; :func:`cut` says the cut)."""
    raw = value if isinstance(value, str) else str(value)
    return plain(cut(raw, limit or NAME_LIMIT)).replace("$", r"\$")


def fmt(value: Any) -> str:
    """A compact human form of a metric value ('n/a' for undefined)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e4:
            return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


# what spreadsheet programs read as the start of a formula (OWASP, "CSV Injection"): = + - @,
# tab and carriage return, and every form that folds to one of the four under Unicode's
# compatibility normalisation (full-width ＝, small ﹦, superscript ⁼ ...); checked after any
# leading characters that show nothing, which some programs strip or ignore first
_FORMULA_START = frozenset("=+-@\t\r")
# what shows nothing at the start of a cell: whitespace, control and format characters (zero-
# width spaces and joiners, the BOM, bidirectional marks, the soft hyphen, tag characters),
# combining marks with nothing to combine with (variation selectors, the grapheme joiner) and
# the Hangul fillers
_INVISIBLE = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Mn", "Me", "Zs", "Zl", "Zp"))
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
# a decimal number in ASCII digits (``\d`` alone would also take ``-١٢`` or ``-１``, which no
# spreadsheet reads as a number: they stay text, and get the quote)
_NUMBER = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def _starts_formula(text: str) -> bool:
    """Whether ``text``'s first character that shows something (or its very first one) starts
    a formula in a spreadsheet program."""
    import unicodedata

    for ch in text:
        if ch in _FORMULA_START or unicodedata.normalize("NFKC", ch)[:1] in _FORMULA_START:
            return True
        if not (ch.isspace() or ch in _FILLERS or unicodedata.category(ch) in _INVISIBLE):
            return False
    return False


def csv_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet program runs as a formula.

    Numbers (and text that is exactly a decimal number, ``-0.5``, ``1e-3``) stay as they are:
    a negative number is a number, not a formula. Any other text whose first character (or
    first after leading characters that show nothing: blanks, control and format characters,
    lone combining marks) is ``=``, ``+``, ``-``, ``@``, a tab or a carriage return (or a form
    that folds to one of them: ``＝ ﹦ ⁼ ＋ ﹢ － ﹣ ＠ ﹫``) is prefixed with a single quote, as
    OWASP recommends; the quote shows in the cell, so the text stays visible and unexecuted.
    So is every part of the text after a semicolon, a tab, a line feed or a carriage return:
    where a spreadsheet program splits cells or rows there (the list separator of many
    locales is ";", a tab-separated import, a reader that takes quotes only at the start of
    a cell), each part starts a cell of its own (``a;=1+1`` -> ``a;'=1+1``).
    ``None`` is an empty cell.
    """
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    # a lone surrogate (a file name of bytes that are not UTF-8, as Python decodes argv)
    # cannot be written as UTF-8: shown as its escape, as JSON writes it (0.2-0.5: exit 4)
    text = _SURROGATE.sub(_escape_char, text)
    text = _neutralised(text)
    if any(c in text for c in _CELL_BREAKS):
        parts = _CELL_BREAK.split(text)  # text, separator, text, separator, ...
        text = "".join(p if i % 2 or i == 0 else _neutralised(p) for i, p in enumerate(parts))
    return text


_SURROGATE = re.compile("[\ud800-\udfff]")
_CELL_BREAKS = ";\t\n\r"
_CELL_BREAK = re.compile("([;\t\n\r])")


def _neutralised(text: str) -> str:
    """``text``, prefixed with a single quote when it starts a formula (not a number)."""
    if _starts_formula(text) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


#: the most characters of one name (class, split, layer, group) a rendered output shows
NAME_LIMIT = 200
#: the most characters of a class name on a figure's axis or legend (the cut is said)
LABEL_LIMIT = 24
#: the most characters of any other text from a file (a warning naming it) a table shows
TEXT_LIMIT = 2000


def line_start(path: Any) -> str:
    """A file path shown at the start of an output line: one that begins (after blanks) with
    ``::``, which a GitHub Actions runner reads there as a workflow command (``::error``,
    ``::add-mask::``), is shown as ``./`` + it, the same file. Other text unchanged."""
    text = str(path)
    return "./" + text if starts_workflow_command(text) else text


# blanks (which the runner trims) and default-ignorable characters (which a culture-sensitive
# StartsWith skips) before "::", also between its two colons
_V2_COMMAND = re.compile(f"[\\s{_IGNORABLE}]*:[{_IGNORABLE}]*:")


def starts_workflow_command(text: str) -> bool:
    """Whether a line starting with ``text`` starts a GitHub Actions workflow command
    (``::name::``) as the runner reads it: after blanks, also with zero-width or other
    default-ignorable characters before or between the colons."""
    return _V2_COMMAND.match(text) is not None


def cut(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` cut to about ``limit`` characters when longer, ending in an ellipsis and its
    whole length (``abc… (10,000,000 chars)``): the cut is said where it is shown."""
    if len(text) <= limit:
        return text
    tail = f"\u2026 ({len(text):,} chars)"
    return text[: max(1, limit - len(tail))] + tail


_CSV_QUOTED = ',"\n\r;\t'


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    """CSV text of ``header`` and ``rows`` (None as an empty cell, ``\\n`` line ends).

    The one CSV writer of ncinspect (report, aggregate, sweep): every cell passes
    :func:`csv_cell`, so text from a file never starts a formula."""

    def field(value: Any) -> str:
        text = str(csv_cell(value))
        # quoted as the csv module quotes (minimal), and also for a carriage return, which
        # the csv module leaves bare when the line ends in "\n" (a row then splits in two);
        # for a semicolon or a tab, the separators a spreadsheet program uses in many locales
        # (Excel opens a .csv with the locale's list separator, ";" in most of Europe), so
        # that a reader that honours quotes keeps the cell whole (csv_cell has neutralised
        # each part after one for the readers that do not: OWASP, take care of the field
        # separators too); and for a cell that starts (after blanks) with "::", which a
        # GitHub Actions runner reads as a workflow command at the start of a line (a CSV on
        # stdout, or cat in a CI log): the quote is the same cell to a CSV reader
        if any(c in text for c in _CSV_QUOTED) or starts_workflow_command(text):
            return '"' + text.replace('"', '""') + '"'
        return text

    def line(cells: list[Any]) -> str:
        if len(cells) == 1 and csv_cell(cells[0]) == "":
            return '""\n'  # a row of one empty cell is not an empty line
        return ",".join(field(v) for v in cells) + "\n"

    return line(list(header)) + "".join(line(list(row)) for row in rows)
