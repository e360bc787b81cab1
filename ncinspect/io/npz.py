"""NPZ reader: a flat zip of ``.npy`` members whose names use ``/`` as the group separator.

Members stored uncompressed (``numpy.savez``) are streamed: their raw bytes are located in
the zip file and rows are read by offset. Compressed members (``numpy.savez_compressed``)
cannot be sought, so they are read whole, with a note about the memory that takes. Nothing
is ever unpickled: object arrays are refused.
"""

from __future__ import annotations

import json
import struct
import zipfile

import numpy as np

from ..errors import UnreadableFileError, UnsupportedDtypeError
from .sources import ArraySource
from .tree import Node

__all__ = ["read_npz_tree"]

_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # zip local file header (30 bytes)


class NpzMemberSource(ArraySource):
    """One ``.npy`` member of an NPZ file."""

    def __init__(self, path: str, info: zipfile.ZipInfo, where: str, notes: list[str]):
        self.path = path
        self.info = info
        self.where = where
        self._notes = notes
        self._whole: np.ndarray | None = None
        with zipfile.ZipFile(path) as zf, zf.open(info) as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            except ValueError as exc:
                raise UnreadableFileError(f"{where}: not a valid .npy member ({exc})") from None
            header_len = f.tell()
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.fortran = fortran
        self.needs_pickle = self.dtype.hasobject
        self._data_offset: int | None = None
        if info.compress_type == zipfile.ZIP_STORED and not fortran and not self.needs_pickle:
            with open(path, "rb") as raw:
                raw.seek(info.header_offset)
                fields = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
                if fields[0] != b"PK\x03\x04":
                    raise UnreadableFileError(f"{where}: corrupt zip local header")
                name_len, extra_len = fields[-2], fields[-1]
                self._data_offset = (
                    info.header_offset + _LOCAL_HEADER.size + name_len + extra_len + header_len
                )

    def _check_pickle(self) -> None:
        if self.needs_pickle:
            raise UnsupportedDtypeError(
                f"{self.where}: member holds Python objects ({self.dtype}) that would need "
                "unpickling; ncinspect never loads pickles; save numeric or string arrays"
            )

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        self._check_pickle()
        if self._data_offset is not None and self.shape:
            n = self.shape[0]
            start, stop, _ = slice(start, stop).indices(n)
            row_bytes = self.dtype.itemsize * int(np.prod(self.shape[1:], dtype=np.int64))
            count = max(0, stop - start)
            with open(self.path, "rb") as raw:
                raw.seek(self._data_offset + start * row_bytes)
                buf = raw.read(count * row_bytes)
            if len(buf) != count * row_bytes:
                raise UnreadableFileError(f"{self.where}: file is truncated (rows {start}:{stop})")
            return np.frombuffer(buf, dtype=self.dtype).reshape((count,) + self.shape[1:])
        if self._whole is None:
            if self.nbytes > (64 << 20):
                self._notes.append(
                    f"{self.where} is compressed and is read whole into memory "
                    f"({self.nbytes / 2**20:.0f} MiB); store it uncompressed (numpy.savez) "
                    "to stream it"
                )
            try:
                with zipfile.ZipFile(self.path) as zf, zf.open(self.info) as f:
                    self._whole = np.lib.format.read_array(f, allow_pickle=False)
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
                raise UnreadableFileError(f"{self.where}: cannot read member ({exc})") from None
        if self._whole.ndim == 0:
            return self._whole
        return self._whole[start:stop]


def _read_meta(source: NpzMemberSource) -> dict:
    source._check_pickle()
    value = source.read_all()
    text = value.item() if value.ndim == 0 else None
    if isinstance(text, bytes):
        text = text.decode()
    if not isinstance(text, str):
        raise UnreadableFileError(f"{source.where}: meta must be a 0-d string array holding JSON")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableFileError(f"{source.where}: meta is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise UnreadableFileError(f"{source.where}: meta JSON must be an object")
    return meta


def read_npz_tree(path: str, notes: list[str]) -> Node:
    """Build the group tree of an NPZ file."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnreadableFileError(f"{path}: not a readable NPZ file ({exc})") from None
    root = Node("/")
    with zf:
        infos = zf.infolist()
    for info in infos:
        if info.is_dir():
            continue
        name = info.filename
        if not name.endswith(".npy"):
            continue
        parts = [p for p in name[: -len(".npy")].split("/") if p]
        if not parts:
            continue
        node = root
        for p in parts[:-1]:
            node = node.child(p)
        where = f"{path}:/{'/'.join(parts)}"
        source = NpzMemberSource(path, info, where, notes)
        if parts[-1] == "meta":
            node.attrs.update(_read_meta(source))
        else:
            node.arrays[parts[-1]] = source
    return root
