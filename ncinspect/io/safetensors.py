"""safetensors reader: tensors named like the other containers' arrays, ``/`` as group separator.

A safetensors file is an 8-byte little-endian header length, a JSON header (name -> dtype,
shape, byte offsets, plus an optional ``__metadata__`` string -> string map) and the raw
tensor bytes. Tensors are read with the ``safetensors`` package's numpy API
(``safe_open(..., framework="np")``), never through torch, and row ranges are sliced without
reading the rest. bfloat16 tensors, which numpy cannot hold, are read from their bytes and
widened to float32 (exact: a bfloat16 value is the upper half of a float32); so are the
float8 types E4M3 and E5M2.

Metadata: a ``__metadata__`` key ``K`` sets metadata ``K`` of the root group and ``G/K`` of
group ``G``; each value is parsed as JSON where it parses (``"10"`` -> 10, ``'["a", "b"]'``
-> a list) and kept as text otherwise. A key ``meta`` (or ``G/meta``) holding a JSON object
sets several keys at once, as the NPZ ``meta`` member does.
"""

from __future__ import annotations

import json
import math
import os
import struct
from typing import Any

import numpy as np

from ..errors import UnreadableFileError, UnsupportedDtypeError
from ..text import clip
from .paths import shown
from .sources import ArraySource, refuse_unholdable
from .tree import Node, Placed, loads_json, refuse_dotdot, split_name

__all__ = ["read_safetensors_tree", "is_safetensors", "MAX_HEADER"]

MAX_HEADER = 100 << 20  #: the largest JSON header accepted (the format's own limit)

_DTYPES = {
    "F64": "<f8",
    "F32": "<f4",
    "F16": "<f2",
    "I64": "<i8",
    "I32": "<i4",
    "I16": "<i2",
    "I8": "i1",
    "U64": "<u8",
    "U32": "<u4",
    "U16": "<u2",
    "U8": "u1",
    "BOOL": "?",
    "C64": "<c8",  # read, then refused by the dtype check like any complex array
}
_WIDENED = {"BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1}  # -> float32, exactly; bytes per value
_ITEMSIZE = {**_WIDENED, "F8_E8M0": 1}


def _f8_table(kind: str) -> np.ndarray:
    """float32 value of each of the 256 bit patterns of a float8 type."""
    bits = np.arange(256, dtype=np.uint16)
    if kind == "F8_E5M2":  # the upper byte of a float16
        return (bits << 8).view(np.float16).astype(np.float32)
    sign = np.where(bits & 0x80, -1.0, 1.0)
    exp = (bits >> 3) & 0xF
    man = (bits & 0x7).astype(np.float64)
    value = np.where(exp == 0, man / 8 * 2.0**-6, (1 + man / 8) * 2.0 ** (exp.astype(float) - 7))
    value = np.where((exp == 0xF) & (man == 7), np.nan, value)  # E4M3FN: no inf, one NaN
    return (sign * value).astype(np.float32)


def is_safetensors(head: bytes, size: int) -> bool:
    """Whether a file starting with ``head`` (at least 9 bytes) of ``size`` bytes looks like
    safetensors: a header length that fits the file, then a JSON object."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= min(MAX_HEADER, size - 8) and head[8:9] == b"{"


#: bytes parsing a header takes per byte of it, at most (measured: a 71 MB header of 1.2
#: million entries peaked 890 MB above the interpreter, here and in the safetensors package)
HEADER_COST = 16


def _read_header(path: str, memory_limit: int | None = None) -> tuple[dict, int]:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(MAX_HEADER, size - 8):
            raise UnreadableFileError(
                f"{path}: safetensors header length {n} does not fit the file ({size} bytes)"
            )
        if memory_limit is not None:
            from ..budget import fmt_bytes, read_bound
            from ..errors import ResourceLimitError

            bound = read_bound(memory_limit)
            if HEADER_COST * n > bound:
                raise ResourceLimitError(
                    f"{path}: its safetensors header of {fmt_bytes(n)} takes about "
                    f"{fmt_bytes(HEADER_COST * n)} to parse, over the "
                    f"{fmt_bytes(bound)} the memory limit leaves; refused before parsing"
                )
        raw = f.read(n)
    try:
        header = loads_json(raw.decode("utf-8"), f"{path}: safetensors header")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableFileError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise UnreadableFileError(f"{path}: safetensors header must be a JSON object")
    data_size = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        here = f"{path}:/{shown(name)}"  # a tensor name from the file: shown bounded
        try:
            begin, end = (int(v) for v in info["data_offsets"])
            shape = tuple(int(s) for s in info["shape"])
            dtype = str(info["dtype"])
        except (KeyError, TypeError, ValueError):
            raise UnreadableFileError(
                f"{here}: malformed safetensors header entry {clip(repr(info))}"
            ) from None
        itemsize = np.dtype(_DTYPES[dtype]).itemsize if dtype in _DTYPES else _ITEMSIZE.get(dtype)
        if min(shape, default=0) < 0:
            raise UnreadableFileError(f"{here}: negative dimension in shape {clip(shape)}")
        count = math.prod(shape)  # a Python int: a huge declared shape cannot overflow
        if not (0 <= begin <= end <= data_size):
            raise UnreadableFileError(
                f"{here}: tensor bytes {begin}:{end} lie outside the file "
                f"(data section of {data_size} bytes)"
            )
        if itemsize is not None and end - begin != count * itemsize:
            raise UnreadableFileError(
                f"{here}: {end - begin} bytes for shape {clip(shape)} of {clip(dtype)}"
            )
        refuse_unholdable(shape, itemsize or 1, here)  # (0, 2**64 - 1): numpy's ValueError
    return header, 8 + n


class SafetensorsSource(ArraySource):
    """One tensor of a safetensors file, read in row ranges."""

    def __init__(self, path: str, name: str, info: dict, data_start: int, where: str):
        self.path = path
        self.name = name
        self.where = where
        self.st_dtype = str(info["dtype"])
        self.shape = tuple(int(s) for s in info["shape"])
        self._begin = data_start + int(info["data_offsets"][0])
        if self.st_dtype in _DTYPES:
            self.dtype = np.dtype(_DTYPES[self.st_dtype])
        elif self.st_dtype in _WIDENED:
            self.dtype = np.dtype(np.float32)
        else:  # not a numeric type ncinspect reads; refused when (and only if) it is used
            self.dtype = np.dtype(f"V{_ITEMSIZE.get(self.st_dtype, 1)}")
            #: how a refusal names the dtype (numpy's ``|V1`` says nothing of the file's)
            self.shown_dtype = f"{clip(self.st_dtype, 40)} (safetensors)"

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        if self.st_dtype in _WIDENED:
            return self._read_widened(start, stop)
        if self.st_dtype not in _DTYPES:
            raise UnsupportedDtypeError(
                f"{self.where}: safetensors dtype {clip(self.st_dtype)} is not supported; "
                "save the tensor as float32"
            )
        from safetensors import safe_open

        if self.shape:
            a, b, _ = slice(start, stop).indices(self.shape[0])
            if b <= a or 0 in self.shape:  # no values: nothing to ask the library for
                return np.empty((max(0, b - a),) + self.shape[1:], dtype=self.dtype)
        try:
            with safe_open(self.path, framework="np") as f:
                if not self.shape:
                    return np.asarray(f.get_tensor(self.name))
                return np.asarray(f.get_slice(self.name)[a:b])
        except Exception as exc:  # noqa: BLE001 - the package raises its own error types
            text = str(exc).strip().splitlines()
            raise UnreadableFileError(
                f"{self.where}: cannot read tensor ({text[0] if text else type(exc).__name__})"
            ) from None

    def _read_widened(self, start: int, stop: int | None) -> np.ndarray:
        size = _WIDENED[self.st_dtype]
        count = int(np.prod(self.shape, dtype=np.int64))
        if self.shape:
            a, b, _ = slice(start, stop).indices(self.shape[0])
            row = int(np.prod(self.shape[1:], dtype=np.int64))
            offset, count, shape = a * row, max(0, b - a) * row, (max(0, b - a),) + self.shape[1:]
        else:
            offset, shape = 0, ()
        with open(self.path, "rb") as f:
            f.seek(self._begin + size * offset)
            buf = f.read(size * count)
        if len(buf) != size * count:
            raise UnreadableFileError(f"{self.where}: file is truncated")
        if size == 1:
            return _f8_table(self.st_dtype)[np.frombuffer(buf, dtype=np.uint8)].reshape(shape)
        bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)


def _meta_value(text: Any, where: str) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return loads_json(text, where)
    except ValueError:  # not JSON (free text), or integers beyond Python's digit limit
        return text


def read_safetensors_tree(path: str, notes: list[str], *, memory_limit: int | None = None) -> Node:
    """Build the group tree of a safetensors file (under ``memory_limit``, a header that
    would take more than the limit leaves to parse is refused before parsing)."""
    try:
        from safetensors import safe_open
    except ImportError:
        raise UnreadableFileError(
            f"{path}: is a safetensors file; reading it needs the safetensors package "
            "(pip install 'ncinspect[safetensors]')"
        ) from None
    header, data_start = _read_header(path, memory_limit)
    try:
        with safe_open(path, framework="np") as f:
            names = set(f.keys())
            metadata = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001 - the package raises its own error types
        raise UnreadableFileError(
            f"{path}: not a readable safetensors file ({clip(exc, 400)})"
        ) from None
    root = Node("/")
    placed = Placed(root, path)
    # in the order the tensors are stored
    order = sorted(names, key=lambda k: (int(header[k]["data_offsets"][0]), k))
    for name in order:
        parts = split_name(name)
        if not parts:
            continue
        node = placed.node_of(name, parts)
        where = f"{path}:/{'/'.join(parts)}"
        node.arrays[parts[-1]] = SafetensorsSource(path, name, header[name], data_start, where)
    keys: dict[tuple[str, ...], str] = {}

    def claim(spelled: tuple[str, ...], key: str) -> None:
        if spelled in keys:  # two spellings of one metadata key: neither is picked
            raise UnreadableFileError(
                f"{path}: __metadata__ keys {shown(keys[spelled])!r} and {shown(key)!r} name "
                "the same value; ncinspect does not pick one"
            )
        keys[spelled] = key

    for key, text in sorted(metadata.items()):
        refuse_dotdot(key, split_name(key), f"{path}: __metadata__")
        group, _, attr = key.rpartition("/")
        node = root
        for p in split_name(group):
            node = node.child(p)
        value = _meta_value(text, f"{path}: __metadata__ value {shown(key)!r}")
        if attr == "meta" and isinstance(value, dict):
            # a key of a ``meta`` object and a key of its own (``epoch`` beside
            # ``meta = {"epoch": 7}``) are two spellings of one value too
            for inner in value:
                claim((*split_name(group), inner), f"{key} ({shown(inner)})")
            node.attrs.update(value)
        else:
            claim((*split_name(group), attr), key)
            node.attrs[attr] = value
    return root
