"""A :class:`~ncinspect.Meter`'s statistics as plain values and bytes (never pickle).

:func:`flatten` turns the mergeable pass objects of :mod:`ncinspect.stats` into a flat
``{name: array | number | str | None}`` mapping and :func:`unflatten` builds them back (only
the classes listed in ``_CLASSES``); :func:`pack` / :func:`unpack` turn such a mapping into
bytes and back (a JSON header, then the raw array bytes), which is what crosses process
boundaries in :func:`ncinspect.integrations.distributed.all_reduce_meter`. Every float64
keeps every bit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields, is_dataclass
from typing import Any

import numpy as np

from .arrays import is_tensor, to_host
from .errors import InvalidDataError
from .stats import FirstPass, Moments, SecondPass
from .stats_spectra import SpectraPass

__all__ = [
    "flatten",
    "unflatten",
    "pack",
    "unpack",
    "digest",
    "same_first",
    "check_same_means",
    "encode_state",
    "decode_state",
]

_CLASSES = {c.__name__: c for c in (FirstPass, SecondPass, Moments, SpectraPass)}
_MAGIC = b"NCMETER1"


def _leaf(value: Any) -> Any:
    if is_tensor(value):
        value = to_host(value, "meter state")
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value)
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise InvalidDataError(f"meter state: cannot carry a value of type {type(value).__name__}")


def flatten(obj: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
    """Add ``obj`` (a pass object, an array, a number or None) to ``out`` under ``prefix``."""
    if is_dataclass(obj) and not isinstance(obj, type):
        if type(obj).__name__ not in _CLASSES:
            raise InvalidDataError(f"meter state: cannot carry a {type(obj).__name__}")
        out[prefix + "@"] = type(obj).__name__
        for f in fields(obj):
            if f.init and not f.name.startswith("_"):
                flatten(getattr(obj, f.name), f"{prefix}.{f.name}", out)
        return out
    out[prefix] = _leaf(obj)
    return out


def unflatten(state: dict[str, Any], prefix: str) -> Any:
    """The object :func:`flatten` stored under ``prefix``."""
    name = state.get(prefix + "@")
    if name is None:
        if prefix not in state:
            raise InvalidDataError(f"meter state: {prefix!r} is missing")
        return state[prefix]
    cls = _CLASSES.get(name)
    if cls is None:
        raise InvalidDataError(f"meter state: {prefix!r} names an unknown class {name!r}")
    kwargs = {
        f.name: unflatten(state, f"{prefix}.{f.name}")
        for f in fields(cls)
        if f.init and not f.name.startswith("_")
    }
    return cls(**kwargs)


def pack(state: dict[str, Any]) -> bytes:
    """Bytes holding ``state``: magic, header length, JSON header, array bytes."""
    header, blobs, offset = [], [], 0
    for key, value in state.items():
        if isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise InvalidDataError(f"meter state: {key!r} has dtype {value.dtype}")
            raw = value.tobytes()
            header.append(
                {"k": key, "dtype": value.dtype.str, "shape": list(value.shape), "at": offset}
            )
            blobs.append(raw)
            offset += len(raw)
        else:
            header.append({"k": key, "v": value})
    head = json.dumps(header).encode()
    return _MAGIC + len(head).to_bytes(8, "little") + head + b"".join(blobs)


def unpack(data: bytes) -> dict[str, Any]:
    """The state :func:`pack` wrote."""
    data = bytes(data)
    if not data.startswith(_MAGIC) or len(data) < 16:
        raise InvalidDataError("meter state: these bytes are not a packed meter state")
    n = int.from_bytes(data[8:16], "little")
    header = json.loads(data[16 : 16 + n].decode())
    body = memoryview(data)[16 + n :]
    state: dict[str, Any] = {}
    for item in header:
        if "v" in item:
            state[item["k"]] = item["v"]
            continue
        dtype, shape = np.dtype(item["dtype"]), tuple(item["shape"])
        size = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        raw = body[item["at"] : item["at"] + size]
        state[item["k"]] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return state


def digest(arr: Any) -> str | None:
    """SHA-256 of an array's shape and float64 values (None for None)."""
    if arr is None:
        return None
    a = np.ascontiguousarray(to_host(arr, "weights"), dtype=np.float64)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()


def same_first(a: FirstPass | None, b: FirstPass | None) -> bool:
    """Whether two pass-1 statistics hold the same bits."""
    if a is None or b is None:
        return False
    return (
        a.sum_scale == b.sum_scale
        and np.array_equal(to_host(a.counts, "counts"), to_host(b.counts, "counts"))
        and np.array_equal(to_host(a.sums, "sums"), to_host(b.sums, "sums"))
    )


def check_same_means(first: FirstPass, again: FirstPass) -> None:
    """Pass 2's class means (``again``) must be pass 1's: the same rows, in any order."""
    a, b = first.class_means(), again.class_means()
    scale = max(float(np.nanmax(np.abs(a))) if a.size else 0.0, np.finfo(float).tiny)
    diff = np.nanmax(np.abs(a - b)) if a.size else 0.0
    if not diff <= 1e-9 * scale:
        raise InvalidDataError(
            "pass 2 saw other features than pass 1 (class means differ by "
            f"{diff / scale:.2g} relative): both passes must go over the same rows"
        )


def encode_state(
    pass_number: int,
    dtype: Any,
    seen2: Any,
    settings: dict[str, Any],
    first: FirstPass | None,
    second: SecondPass | None,
    first2: FirstPass | None,
) -> dict[str, Any]:
    """A meter's state (see :meth:`ncinspect.Meter.state_dict`)."""
    state = {
        "pass_number": pass_number,
        "dtype": None if dtype is None else np.dtype(dtype).str,
        "seen2": np.asarray(to_host(seen2, "seen2"), dtype=np.int64),
        **settings,
    }
    flatten(first, "first", state)
    flatten(second, "second", state)
    return flatten(first2, "first2", state)


def decode_state(state: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The passes of a state :func:`encode_state` wrote, checked against ``settings``."""
    state = dict(state)
    for key, mine in settings.items():
        if state.get(key) != mine:
            raise InvalidDataError(
                f"meter state: {key} is {state.get(key)!r} but this meter has {mine!r}: "
                "states load into a meter with the same classifier and settings"
            )
    if state.get("pass_number") not in (1, 2):
        raise InvalidDataError(f"meter state: pass_number {state.get('pass_number')!r}")
    first, second = unflatten(state, "first"), unflatten(state, "second")
    if state["pass_number"] == 2 and (first is None or second is None):
        raise InvalidDataError("meter state: pass 2 without the statistics of both passes")
    return {
        "pass_number": state["pass_number"],
        "first": first,
        "second": second,
        "first2": unflatten(state, "first2"),
        "seen2": np.asarray(state["seen2"], dtype=np.int64).copy(),
        "dtype": None if state["dtype"] is None else np.dtype(state["dtype"]),
    }
