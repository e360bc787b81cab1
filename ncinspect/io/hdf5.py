"""HDF5 reader: walks groups read-only and builds the container-neutral tree."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from ..errors import UnreadableFileError
from .sources import H5Source
from .tree import Node

__all__ = ["open_h5", "read_h5_tree", "decode_attr"]


def decode_attr(value: Any) -> Any:
    """Turn an HDF5 attribute value into plain Python (JSON-friendly) data."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if value.startswith("json:"):
            try:
                return json.loads(value[5:])
            except json.JSONDecodeError:
                return value
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [decode_attr(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def open_h5(path: str, notes: list[str] | None = None):
    """Open ``path`` read-only. A file locked by a writer (e.g. a training run dumping into
    it) is opened without the lock, with a note: the writer flushes after every batch, so
    the snapshots it has finished are readable; the one being written may be incomplete."""
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "lock" in str(exc).lower():
            try:
                handle = h5py.File(path, "r", locking=False)
            except OSError:
                pass
            else:
                if notes is not None:
                    notes.append(
                        f"{path}: the file is open for writing elsewhere (a running trainer?); "
                        "read without a lock, so the snapshot being written may be incomplete"
                    )
                return handle
        raise UnreadableFileError(f"{path}: not a readable HDF5 file ({exc})") from None


def read_h5_tree(h5file, path: str) -> Node:
    """Build the group tree of an open HDF5 file."""
    import h5py

    def fill(group, node: Node) -> None:
        try:
            node.attrs.update({k: decode_attr(v) for k, v in group.attrs.items()})
            items = sorted(group.items())
        except (OSError, RuntimeError, KeyError) as exc:
            raise UnreadableFileError(f"{path}:{group.name}: cannot read group ({exc})") from None
        for name, obj in items:
            if isinstance(obj, h5py.Group):
                fill(obj, node.child(name))
            elif isinstance(obj, h5py.Dataset):
                node.arrays[name] = H5Source(obj, f"{path}:{obj.name}")

    root = Node("/")
    fill(h5file, root)
    return root
