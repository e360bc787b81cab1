"""What a dump group's path and attributes say about its snapshot (spec/dump-format.md):
the epoch, the split and the layer, each from the nearest group that records it (as an
attribute or as a path component such as ``epoch_0010``, ``test``, ``layer_2``)."""

from __future__ import annotations

import re
from typing import Any

from .tree import Node

__all__ = [
    "nearest",
    "layer_of",
    "is_layer_part",
    "parse_epoch",
    "as_epoch",
    "epoch_of",
    "split_part",
    "split_of",
    "is_ood",
    "natural_key",
]

_SPLITS = {"train", "test", "val", "valid", "validation", "eval", "holdout"}
_EPOCH_RE = re.compile(r"^(?:epoch|ep)_?(\d+)$", re.IGNORECASE)
_LAYER_RE = re.compile(r"^layer_?\d+$", re.IGNORECASE)
#: an integer as text: one sign at most, then decimal digits (of any script: int() reads
#: them); not ``str.isdigit``, which holds for superscripts (``\u00b2``) and circled digits
#: that int() refuses (an ``epoch`` attribute ``"\u00b2"`` or ``"+-5"`` made every command
#: exit 4)
_INT_RE = re.compile(r"[+-]?\d+\Z")


def natural_key(name: str) -> tuple:
    """Sort key that orders ``classifier.10`` after ``classifier.6``."""
    # the odd parts are the digit runs ``\d`` matched (decimal digits of any script, which
    # int() reads); ``str.isdigit`` also holds for superscripts and circled digits, which
    # int() refuses: a state-dict name ``fc1\u00b22.weight`` made every command exit 4
    return tuple(
        (1, int(part), "") if i % 2 else (0, 0, part)
        for i, part in enumerate(re.split(r"(\d+)", name))
    )


def nearest(node: Node, key: str, parse_component) -> Any:
    """The value of ``key`` for ``node``: walking from the node up to the root, the first group
    that has the ``key`` attribute or a path component that ``parse_component`` recognises."""
    for anc in node.ancestors():
        value = anc.attrs.get(key)
        if value is not None:
            return value
        name = anc.path.rstrip("/").rsplit("/", 1)[-1]
        parsed = parse_component(name) if name else None
        if parsed is not None:
            return parsed
    return None


def is_layer_part(part: str) -> bool:
    """Whether a path component names a layer (``layer_2``, ``layer3``)."""
    return bool(_LAYER_RE.match(part))


def layer_of(node: Node) -> str | None:
    value = nearest(node, "layer", lambda part: part if _LAYER_RE.match(part) else None)
    return None if value is None else str(value)


def parse_epoch(part: str) -> int | None:
    m = _EPOCH_RE.match(part)
    return int(m.group(1)) if m and len(m.group(1)) < 30 else None


def as_epoch(value: Any) -> int | None:
    """An ``epoch`` attribute as an int: integers and integral finite floats; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) < 30 and _INT_RE.match(value.strip()):
        return int(value)
    return None


def epoch_of(node: Node) -> int | None:
    for anc in node.ancestors():  # nearest first; non-integer metadata falls back to names
        epoch = as_epoch(anc.attrs.get("epoch"))
        if epoch is not None:
            return epoch
        name = anc.path.rstrip("/").rsplit("/", 1)[-1]
        if name and parse_epoch(name) is not None:
            return parse_epoch(name)
    return None


_OOD_PART_RE = re.compile(r"^ood(?:_.+)?$", re.IGNORECASE)


def split_part(part: str) -> str | None:
    """A path component naming a split (``train``, ``test``, ..., ``ood``, ``ood_<name>``)."""
    if part.lower() in _SPLITS:
        return part.lower()
    return part if _OOD_PART_RE.match(part) else None


def split_of(node: Node) -> str | None:
    value = nearest(node, "split", split_part)
    return None if value is None else str(value)


def is_ood(split: str | None) -> bool:
    """True for the ``ood`` and ``ood_<name>`` splits (case-insensitive)."""
    return split is not None and _OOD_PART_RE.match(str(split)) is not None
