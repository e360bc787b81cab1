"""Text shown to people: names from a file made safe to show, and numbers in a compact form.

A dump is someone else's file: its group names, array names, class names and attribute
values may hold rich markup (``[bold red]``, ``[/red]``), terminal control sequences (ANSI
escapes that clear the screen or move the cursor), line breaks, bidirectional overrides or
unpaired surrogates (undecodable bytes). Every renderer passes such text through
:func:`plain` (for plain-text outputs and messages) or :func:`markup` (inside rich markup)
before it reaches a terminal or a log, :func:`xml_text` before it goes into XML and
:func:`mpl_text` before it goes into a figure (where ``$...$`` would be parsed as math).

Unsafe characters are not dropped silently but shown as escapes (``\\x1b``, ``\\u202e``), so
two names that differ only in them stay distinguishable.

:func:`fmt` is the one compact human form of a metric value used by every renderer.
"""

from __future__ import annotations

import re
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


def plain(value: Any) -> str:
    """``str(value)`` with every control or invisible-direction character shown as an escape.

    Newlines and tabs are escaped too: one name or message is one line.
    """
    return _UNSAFE.sub(_escape_char, value if isinstance(value, str) else str(value))


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


def clip_line(message: Any, limit: int = MAX_LINE) -> str:
    """A whole message as one bounded line: the CLI's last guard, so that no error line grows
    with its input even where a value was echoed without :func:`clip`. Every run of more than
    :data:`MAX_ECHO` characters without a space is elided to that length, then the whole line
    to ``limit`` (long lists of valid choices stay readable)."""
    text = _LONG_WORD.sub(lambda m: elide(m.group(), MAX_ECHO), plain(message))
    return elide(text, limit)


def markup(value: Any) -> str:
    """:func:`plain` text, then escaped so that rich shows it literally (no markup parsed)."""
    text = _TAG.sub(lambda m: f"{m.group(1) * 2}\\{m.group(2)}", plain(value))
    # rich halves a run of backslashes that ends right before a tag, so a run at the end of
    # the text (where a closing tag may follow) is doubled as well
    return _TRAILING_BACKSLASHES.sub(lambda m: m.group() * 2, text)


def xml_text(value: Any) -> str:
    """:func:`plain` text without any character that XML 1.0 forbids (for JUnit reports)."""
    return _XML_ILLEGAL.sub(_escape_char, plain(value))


def mpl_text(value: Any) -> str:
    """:func:`plain` text for a matplotlib label: every ``$`` shown literally (no mathtext)."""
    return plain(value).replace("$", r"\$")


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
