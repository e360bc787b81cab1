"""A container-neutral group tree: what the HDF5 and NPZ readers both produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .sources import ArraySource

__all__ = ["Node", "plain", "IN_PROGRESS"]

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

    def child(self, name: str) -> Node:
        if name not in self.children:
            path = f"{self.path.rstrip('/')}/{name}"
            self.children[name] = Node(path, parent=self)
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
