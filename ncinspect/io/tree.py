"""A container-neutral group tree: what the HDF5 and NPZ readers both produce."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .sources import ArraySource

__all__ = [
    "Node",
    "plain",
    "IN_PROGRESS",
    "unfinished",
    "split_name",
    "Placed",
    "loads_json",
    "MAX_JSON_DEPTH",
    "lookalike_of",
    "refuse_lookalike_names",
    "refuse_lookalikes",
]

#: the deepest nesting of JSON read from a file (a header, a metadata value); deeper is refused
#: before parsing (it would exhaust the recursion of the parser or of every later step)
MAX_JSON_DEPTH = 64
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)

#: the attribute a group carries while ncinspect's :class:`~ncinspect.DumpWriter` writes it;
#: deleted last, after a flush, when the snapshot is complete (spec/dump-format.md, Writing)
IN_PROGRESS = "ncinspect_in_progress"


@dataclass
class Node:
    """A group: its arrays, its metadata and its child groups."""

    path: str
    arrays: dict[str, ArraySource] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)
    parent: Node | None = None
    #: the group carries :data:`IN_PROGRESS`: its writer had not finished it
    in_progress: bool = False
    #: names of the group's links that lead nowhere (HDF5 dangling soft links): never read,
    #: but a role's name among them beside another name of that role is an ambiguity
    dangling: set[str] = field(default_factory=set)

    def child_path(self, name: str) -> str:
        """The path of this node's child ``name``."""
        return f"{self.path.rstrip('/')}/{name}"

    def child(self, name: str) -> Node:
        if name not in self.children:
            self.children[name] = Node(self.child_path(name), parent=self)
        return self.children[name]

    def walk(self):
        """Yield this node and every descendant, depth first, children in sorted order."""
        stack = [self]
        while stack:  # iterative: files nested thousands of groups deep are fine
            node = stack.pop()
            yield node
            stack.extend(node.children[name] for name in sorted(node.children, reverse=True))

    def ancestors(self):
        """Yield this node, then its parent, up to the root."""
        node: Node | None = self
        while node is not None:
            yield node
            node = node.parent

    def lookup(self, relpath: str) -> ArraySource | None:
        """The array at ``relpath`` (may contain ``/``) below this node, or None."""
        parts = [p for p in relpath.split("/") if p]
        node = self
        for p in parts[:-1]:
            node = node.children.get(p)
            if node is None:
                return None
        return node.arrays.get(parts[-1]) if parts else None


def json_depth(text: str) -> int:
    """How deeply ``[`` and ``{`` nest in JSON ``text`` (outside strings), without parsing it."""
    import numpy as np

    bare = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    b = np.frombuffer(bare, dtype=np.uint8)
    step = ((b == 91) | (b == 123)).astype(np.int64) - ((b == 93) | (b == 125))
    return int(np.cumsum(step).max(initial=0))


def loads_json(text: str, where: str) -> Any:
    """``json.loads(text)`` of text from a file, refused (UnreadableFileError naming
    ``where``) when nested deeper than :data:`MAX_JSON_DEPTH` or when an object holds one key
    twice; ``ValueError`` for text that is not JSON, as ``json.loads`` raises it."""
    from ..errors import UnreadableFileError

    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise UnreadableFileError(
            f"{where} is JSON nested {depth} levels deep (more than {MAX_JSON_DEPTH}); "
            "refused without parsing it"
        )
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _one_value_per_key(pairs, where))
    except RecursionError:  # a parser with less stack than the bound assumes
        raise UnreadableFileError(f"{where} is JSON nested too deeply") from None


def _one_value_per_key(pairs: list[tuple[str, Any]], where: str) -> dict[str, Any]:
    """A JSON object as a dict, refused when one key appears twice in it (``json.loads``
    keeps the last silently, other readers the first: which value is meant is unknown)."""
    from ..errors import UnreadableFileError
    from ..text import clip

    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise UnreadableFileError(
            f"{where}: key {clip(twice)!r} appears twice in one JSON object; ncinspect does "
            "not pick one"
        )
    return out


def unfinished(node: Node, being_written: bool) -> str | None:
    """Why the snapshot at ``node`` is skipped: it or a group above it carries the writer's
    :data:`IN_PROGRESS` marker (its writer had not finished it); None when none does."""
    marked = next((a.path for a in node.ancestors() if a.in_progress), None)
    if marked is None:
        return None
    where = "" if marked == node.path else f" (group {marked})"
    if being_written:
        return f"it is being written (its writer has not finished it{where} yet)"
    return (
        f"it is incomplete (its writer did not finish it{where}: the program writing it "
        "stopped mid-write, or still writes it)"
    )


def split_name(name: str) -> tuple[str, ...]:
    """The group path of a flat container's member name: ``/`` separates groups; empty and
    ``.`` components mean nothing, so ``features``, ``/features``, ``./features`` and
    ``features/`` all name the same array."""
    return tuple(p for p in name.split("/") if p and p != ".")


class Placed:
    """The arrays of a flat container (NPZ, safetensors) placed in the tree by name: two
    member names that resolve to the same array path are refused, naming both."""

    def __init__(self, root: Node, where_file: str):
        self.root, self.where_file = root, where_file
        self.seen: dict[tuple[str, ...], str] = {}

    def node_of(self, raw: str, parts: tuple[str, ...]) -> Node:
        """The group node holding ``parts[-1]``; refuses a second ``raw`` of the same parts,
        and a name with a ``..`` component."""
        from ..errors import AmbiguousArrayError
        from .paths import shown

        refuse_dotdot(raw, parts, f"{self.where_file}:/{shown('/'.join(parts))}")
        if parts in self.seen:
            raise AmbiguousArrayError(
                f"{self.where_file}:/{shown('/'.join(parts))}: two members of the file "
                f"resolve to this name ({shown(self.seen[parts])!r} and {shown(raw)!r}); "
                "ncinspect does not pick one: rename or drop one of them"
            )
        self.seen[parts] = raw
        node = self.root
        for p in parts[:-1]:
            node = node.child(p)
        return node


def refuse_dotdot(raw: str, parts: tuple[str, ...], where: str) -> None:
    """Refuse a flat container's name with a ``..`` component (``../features``,
    ``a/../a/features``): read as a path it names another group's array (or one above the
    file's root), read literally a group called ``..``; ncinspect does not pick one."""
    from ..errors import AmbiguousArrayError
    from .paths import shown

    if ".." in parts:
        raise AmbiguousArrayError(
            f"{where}: the name {shown(raw)!r} has a '..' component, which may mean the group "
            "above or a group named '..'; ncinspect does not pick one: rename it"
        )


def _odd(name: str) -> bool:
    """Whether ``name`` may look like another name: non-ASCII, or blanks around it (an
    ASCII name without them is its own :func:`~ncinspect.io.class_names.shown_key`)."""
    return not name.isascii() or name != name.strip()


def _escaped(name: str) -> str:
    """A name quoted with every non-ASCII character escaped (``'e\\u0301'`` beside
    ``'\\xe9'``): two names that look the same are told apart in the message."""
    from ..text import elide
    from .paths import MAX_SHOWN

    return ascii(elide(name, MAX_SHOWN))


def refuse_lookalike_names(root: Node, where_file: str, *, nodes: list[Node] | None = None) -> None:
    """Refuse two names of one group (arrays and child groups together; metadata keys apart)
    that look the same: they differ only in characters that show nothing (zero-width spaces,
    a BOM, bidirectional marks), blanks around them or Unicode normalisation (precomposed
    and decomposed ``é``), the rule class names follow
    (:func:`~ncinspect.io.class_names.shown_key`). ``features`` beside ``features`` + a
    zero-width space is read as ``features`` while both show alike in every listing; a
    group ``é`` spelled both ways gives two snapshots of one shown name. One
    :class:`~ncinspect.errors.AmbiguousArrayError` naming both, for every container.
    ``nodes``: ``root``'s walk, when the caller has made it already."""
    from .paths import shown

    for node in root.walk() if nodes is None else nodes:
        names = [*node.arrays, *node.children]
        keys = [k for k in node.attrs if isinstance(k, str)]
        if not any(_odd(n) for n in names) and not any(_odd(k) for k in keys):
            continue  # the screen refuse_lookalikes begins with: no message to form
        where = f"{where_file}:{shown(node.path)}"
        refuse_lookalikes(names, where, "names")
        refuse_lookalikes(keys, where, "metadata keys")


def refuse_lookalikes(names: list[str], where: str, kind: str = "names") -> None:
    """The rule of :func:`refuse_lookalike_names` for the names of one container (``where``
    names it in the message): an :class:`~ncinspect.errors.AmbiguousArrayError` for the
    first two that look the same."""
    if not any(_odd(n) for n in names):
        return
    from ..errors import AmbiguousArrayError
    from .class_names import shown_key

    first: dict[str, str] = {}
    for name in names:
        other = first.setdefault(shown_key(name), name)
        if other != name:
            raise AmbiguousArrayError(
                f"{where}: the {kind} {_escaped(other)} and {_escaped(name)} look the same "
                "(they differ only in invisible characters, blanks around them or Unicode "
                "normalisation); ncinspect does not pick one: rename one of them"
            )


def lookalike_of(name: str, names: list[str]) -> str | None:
    """The first of ``names`` that is not ``name`` but looks the same (the rule of
    :func:`refuse_lookalike_names`), or None: said when ``name`` is missing."""
    from .class_names import shown_key

    key = shown_key(name)
    return next((n for n in names if n != name and _odd(n) and shown_key(n) == key), None)


def plain(value: Any) -> Any:
    """JSON-safe plain data: anything that is not a number, text, list or dict becomes text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, complex):
        return str(value)
    type_name = type(value).__name__
    if "Reference" in type_name:
        return f"<HDF5 {type_name}>"
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."
