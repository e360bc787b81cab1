"""JSON text of a report: ``json.dumps(value, sort_keys=True, indent=2, allow_nan=False)``,
byte for byte, written faster for plain data.

With ``indent`` the standard library encodes in Python, one generator per container and
a chain of type checks per value: about a fifth of a millisecond per snapshot of a report.
:func:`dumps` walks the same data once, with the same type checks in the same order, the
same string escaping (the library's own C function) and the same number text (``int`` and
``float`` reprs), and hands anything else (a key that is not text, a NaN or infinity, a
type JSON does not know, a reference cycle) to ``json.dumps`` itself, so errors and their
messages are the library's. ``tests/results/test_jsontext.py`` holds the two to the same
text.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

__all__ = ["dumps"]

_INF = float("inf")


class _Other(Exception):
    """Something :func:`dumps` leaves to ``json.dumps``."""


def dumps(value: Any) -> str:
    """``json.dumps(value, sort_keys=True, indent=2, allow_nan=False)``, with the ``[`` of a
    GitHub Actions ``##[command]`` inside a string written ``\\u005b`` (the same string once
    parsed: :func:`ncinspect.text.json_safe`), so the text in a CI log runs no command."""
    from ..text import json_safe

    parts: list[str] = []
    try:
        _encode(value, parts, 0)
    except (_Other, RecursionError):
        return json_safe(json.dumps(value, sort_keys=True, indent=2, allow_nan=False))
    return json_safe("".join(parts))


def _encode(o: Any, parts: list[str], level: int) -> None:
    # the order of json.encoder's checks: str, None, True, False, int, float, list, dict
    if isinstance(o, str):
        parts.append(encode_basestring_ascii(o))
    elif o is None:
        parts.append("null")
    elif o is True:
        parts.append("true")
    elif o is False:
        parts.append("false")
    elif isinstance(o, int):
        parts.append(int.__repr__(o))
    elif isinstance(o, float):
        if o != o or o == _INF or o == -_INF:
            raise _Other  # allow_nan=False: the library raises its own ValueError
        parts.append(float.__repr__(o))
    elif isinstance(o, (list, tuple)):
        _encode_list(o, parts, level)
    elif isinstance(o, dict):
        _encode_dict(o, parts, level)
    else:
        raise _Other


def _encode_list(items, parts: list[str], level: int) -> None:
    if not items:
        parts.append("[]")
        return
    inner = "\n" + "  " * (level + 1)
    parts.append("[" + inner)
    between = "," + inner
    for i, item in enumerate(items):
        if i:
            parts.append(between)
        _encode(item, parts, level + 1)
    parts.append("\n" + "  " * level + "]")


def _encode_dict(mapping: dict, parts: list[str], level: int) -> None:
    if not mapping:
        parts.append("{}")
        return
    for key in mapping:
        if not isinstance(key, str):
            raise _Other  # numbers, True/False/None as keys: the library's conversions
    inner = "\n" + "  " * (level + 1)
    parts.append("{" + inner)
    between = "," + inner
    first = True
    for key in sorted(mapping):
        # the key's text, its value's (plain floats, text and None, most of a report's
        # leaves, inline: the same text as _encode's) and the separator in one string
        head = (
            encode_basestring_ascii(key) + ": "
            if first
            else between + encode_basestring_ascii(key) + ": "
        )
        first = False
        value = mapping[key]
        kind = type(value)
        if kind is float and value - value == 0.0:  # finite (NaN and infinities: _encode)
            parts.append(head + float.__repr__(value))
        elif kind is str:
            parts.append(head + encode_basestring_ascii(value))
        elif value is None:
            parts.append(head + "null")
        else:
            parts.append(head)
            _encode(value, parts, level + 1)
    parts.append("\n" + "  " * level + "}")
