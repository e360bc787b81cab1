"""Write dumps: :class:`DumpWriter` appends snapshots to an HDF5 file batch by batch.

A trainer or evaluation loop never has to hold all N x d features in memory::

    with DumpWriter("run.h5") as w:
        w.write("labels", y_train)                      # once, inherited by every snapshot
        snap = w.snapshot("epoch_0010", epoch=10, split="train", weight_decay=5e-4)
        for xb in batches:
            snap.append(features=penultimate(xb), outputs=model(xb))
        snap.write(weights=W_last, bias=b_last)

The file is flushed after each batch and each snapshot, so a program that stops half way
(Ctrl-C, a crash) leaves a readable file holding the snapshots written so far. Dumps are
written in place (they are appended to); the reports ncinspect writes are atomic instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import UnreadableFileError, UsageError

__all__ = ["DumpWriter", "SnapshotWriter"]

_DEFAULT_CHUNK_BYTES = 1 << 20  # ~1 MiB HDF5 chunks: good for row-chunked reads


def _attr_value(value: Any) -> Any:
    """Convert a metadata value to something HDF5 attributes hold natively."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, str, np.integer, np.floating)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "iufb":
        return value
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            return np.array(value, dtype=object).astype(_str_dtype())
        if all(isinstance(v, (int, float, np.integer, np.floating)) for v in value) and value:
            return np.asarray(value)
    # Anything else (dicts, mixed lists, None) is stored as JSON text with a marker prefix.
    return "json:" + json.dumps(value, sort_keys=True, default=str)


def _str_dtype():
    import h5py

    return h5py.string_dtype()


def _as_rows(name: str, array: Any) -> np.ndarray:
    arr = np.asarray(array)
    if arr.dtype.kind in "US":
        arr = arr.astype(object)
    if arr.dtype.kind == "O" and name != "labels":
        raise UsageError(f"DumpWriter: array {name!r} has dtype object; expected numbers")
    return arr


class SnapshotWriter:
    """Appends row batches and stores arrays and metadata of one snapshot group."""

    def __init__(self, writer: DumpWriter, group):
        self._writer = writer
        self._group = group

    @property
    def name(self) -> str:
        return self._group.name

    def append(self, **batches: Any) -> None:
        """Append a batch of rows to per-sample arrays (``features``, ``labels``, ``outputs``...).

        Each keyword names a dataset in this snapshot; its first axis grows by the batch size.
        Batches of the same call must have the same number of rows.
        """
        rows = {name: _as_rows(name, b) for name, b in batches.items() if b is not None}
        lengths = {name: (a.shape[0] if a.ndim else None) for name, a in rows.items()}
        if any(n is None for n in lengths.values()) or len(set(lengths.values())) > 1:
            raise UsageError(f"DumpWriter.append: batches have different numbers of rows {lengths}")
        for name, arr in rows.items():
            self._append_one(name, arr)
        self._writer.flush()

    def _append_one(self, name: str, arr: np.ndarray) -> None:
        g = self._group
        if arr.dtype.kind == "O":
            dtype = _str_dtype()
            arr = arr.astype(str).astype(object)
        else:
            dtype = arr.dtype
        if name not in g:
            row_bytes = max(
                1,
                int(np.prod(arr.shape[1:], dtype=np.int64))
                * max(1, np.dtype(dtype).itemsize if arr.dtype.kind != "O" else 16),
            )
            chunk_rows = max(1, min(65536, _DEFAULT_CHUNK_BYTES // row_bytes))
            g.create_dataset(
                name,
                shape=(0,) + arr.shape[1:],
                maxshape=(None,) + arr.shape[1:],
                dtype=dtype,
                chunks=(chunk_rows,) + arr.shape[1:],
                compression=self._writer.compression,
            )
        ds = g[name]
        if ds.shape[1:] != arr.shape[1:]:
            raise UsageError(
                f"DumpWriter.append: {self.name}/{name} has rows of shape {ds.shape[1:]}, "
                f"got a batch with rows of shape {arr.shape[1:]}"
            )
        n0 = ds.shape[0]
        ds.resize(n0 + arr.shape[0], axis=0)
        ds[n0:] = arr

    def write(self, **arrays: Any) -> None:
        """Store whole arrays (``weights``, ``bias``, ``params/W1``, ...), replacing any."""
        for name, value in arrays.items():
            if value is None:
                continue
            self._writer._write_array(self._group, name, value)
        self._writer.flush()

    def write_params(self, params: Sequence[Any] | Mapping[str, Any]) -> None:
        """Store every layer's weight matrix as ``params/W1`` .. ``params/WL``, input side first."""
        items = (
            params.items()
            if isinstance(params, Mapping)
            else ((f"W{i + 1}", p) for i, p in enumerate(params))
        )
        self.write(**{f"params/{k}": v for k, v in items})

    def set_meta(self, **meta: Any) -> None:
        """Set metadata attributes of this snapshot (epoch, split, loss, ...)."""
        self._writer.set_meta(self._group.name, **meta)


class DumpWriter:
    """Create or append to an HDF5 dump that ncinspect (and h5py) can read.

    Parameters
    ----------
    path : str or PathLike
        The HDF5 file to write.
    mode : {"a", "w", "x"}
        ``"a"`` (default) appends to an existing file or creates it, ``"w"`` truncates,
        ``"x"`` fails if the file exists.
    compression : {None, "gzip", "lzf"}, keyword-only
        HDF5 filter for the datasets written (``"gzip"`` makes small sample dumps smaller).

    Notes
    -----
    Use it as a context manager. Every append and write is flushed, so an interrupted
    program leaves the snapshots written so far readable. Values accepted are anything
    ``numpy.asarray`` accepts (call ``.detach().cpu().numpy()`` on torch tensors first if
    they live on a GPU).
    """

    def __init__(self, path: str | os.PathLike, mode: str = "a", *, compression: str | None = None):
        import h5py

        if mode not in ("a", "w", "x"):
            raise UsageError(f"DumpWriter mode must be 'a', 'w' or 'x', got {mode!r}")
        self.path = os.fspath(path)
        self.compression = compression
        try:
            self._file = h5py.File(self.path, mode)
        except OSError as exc:
            raise UnreadableFileError(f"{self.path}: cannot open for writing ({exc})") from None

    # context manager -------------------------------------------------------------------
    def __enter__(self) -> DumpWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._file.id.valid:
            self._file.close()

    def flush(self) -> None:
        self._file.flush()

    # writing ---------------------------------------------------------------------------
    def snapshot(self, name: str, **meta: Any) -> SnapshotWriter:
        """Create (or open) the snapshot group ``name`` and set its metadata."""
        group = self._file.require_group(name.strip("/") or "/")
        if meta:
            self.set_meta(group.name, **meta)
        return SnapshotWriter(self, group)

    def write(self, name: str, array: Any, *, group: str = "/") -> None:
        """Store one whole array, e.g. ``labels`` at the top so every snapshot inherits them."""
        self._write_array(self._file.require_group(group), name, array)
        self.flush()

    def set_meta(self, group: str = "/", **meta: Any) -> None:
        """Set metadata attributes on ``group`` (inherited by the snapshots below it)."""
        attrs = self._file.require_group(group).attrs
        for key, value in meta.items():
            if value is None:
                continue
            attrs[key] = _attr_value(value)
        self.flush()

    def _write_array(self, group, name: str, value: Any) -> None:
        arr = _as_rows(name, value)
        if name in group:
            del group[name]
        kw = {"compression": self.compression} if self.compression and arr.ndim else {}
        if arr.dtype.kind == "O":
            group.create_dataset(
                name, data=arr.astype(str).astype(object), dtype=_str_dtype(), **kw
            )
        else:
            group.create_dataset(name, data=arr, **kw)
