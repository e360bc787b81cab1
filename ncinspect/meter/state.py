"""A :class:`~ncinspect.Meter`'s statistics as plain values and bytes (never pickle).

:func:`encode_state` lays a meter's settings and the declared fields of its pass states
(:mod:`ncinspect.stats.device`, derived from the declarations of
:mod:`ncinspect.stats.protocol`: no class table, no hand-written layout) out as a flat
``{name: array | number | str | None}`` mapping and :func:`decode_state` builds the host
states back; :func:`pack` / :func:`unpack` turn such a mapping into
bytes and back (a JSON header, then the raw array bytes), which is what crosses process
boundaries in :func:`ncinspect.integrations.distributed.all_reduce_meter`. Every float64
keeps every bit.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..arrays import to_host
from ..errors import InvalidDataError
from ..stats.passes import FirstPass
from ..stats.protocol import NUMPY, Declared

__all__ = [
    "pack",
    "unpack",
    "digest",
    "same_first",
    "check_same_means",
    "encode_state",
    "decode_state",
]

_MAGIC = b"NCMETER1"
_FORMAT = 2  #: the layout of state_dict(): declared fields of the device pass states


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
    try:
        header = json.loads(data[16 : 16 + n].decode())
        body = memoryview(data)[16 + n :]
        state: dict[str, Any] = {}
        for item in header:
            if "v" in item:
                state[item["k"]] = item["v"]
                continue
            dtype, shape, at = np.dtype(item["dtype"]), tuple(item["shape"]), item["at"]
            if dtype.kind not in "biuf" or not all(_count(v) for v in (*shape, at)):
                raise ValueError(f"{item['k']!r}: dtype {dtype}, shape {shape}, offset {at}")
            size = dtype.itemsize * math.prod(shape)
            if at + size > len(body):
                raise ValueError(f"{item['k']!r} needs {size} bytes from {at}, past the end")
            raw = body[at : at + size]
            state[item["k"]] = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidDataError(f"meter state: the packed bytes are damaged ({exc})") from None
    return state


def _count(value: Any) -> bool:
    """A non-negative int from JSON (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


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
    settings: dict[str, Any],
    first: Declared | None,
    second: Declared | None,
) -> dict[str, Any]:
    """A meter's state (see :meth:`ncinspect.Meter.state_dict`): its settings, then every
    declared field of its pass states as ``"first.<field>"`` / ``"second.<field>"``."""
    state = {
        "format": _FORMAT,
        "pass_number": pass_number,
        "dtype": None if dtype is None else np.dtype(dtype).str,
        **settings,
    }
    for prefix, part in (("first", first), ("second", second)):
        state[prefix] = None if part is None else type(part).__name__
        if part is not None:
            for key, value in part.to_host().items():
                state[f"{prefix}.{key}"] = value
    return state


def decode_state(state: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """The passes of a state :func:`encode_state` wrote (host states), checked against
    ``settings`` and the fields the states declare."""
    from ..stats.device import FirstState, SecondState
    from ..text import clip

    if not isinstance(state, Mapping):
        raise InvalidDataError(f"meter state: expected a mapping, got {type(state).__name__}")
    state = dict(state)
    if not _same(state.get("format"), _FORMAT):
        raise InvalidDataError(
            f"meter state: format {clip(repr(state.get('format')))}, this version reads {_FORMAT!r}"
        )
    for key, mine in settings.items():
        if not _same(state.get(key), mine):
            raise InvalidDataError(
                f"meter state: {key} is {clip(repr(state.get(key)))} but this meter has "
                f"{clip(repr(mine))}: states load into a meter with the same classifier and "
                "settings"
            )
    if not any(_same(state.get("pass_number"), n) for n in (1, 2)):
        raise InvalidDataError(
            f"meter state: pass_number {clip(repr(state.get('pass_number')))}, expected 1 or 2"
        )
    dtype = state.get("dtype")
    if dtype is not None:
        try:
            dtype = np.dtype(dtype) if isinstance(dtype, str) else None
        except TypeError:
            dtype = None
        if dtype is None or dtype.kind != "f":
            raise InvalidDataError(
                f"meter state: dtype {clip(repr(state.get('dtype')))} is not a float dtype"
            )
    got = {}
    C = settings["n_classes"]
    for prefix, cls in (("first", FirstState), ("second", SecondState)):
        name = state.get(prefix)
        if name is None:
            got[prefix] = None
            continue
        if not _same(name, cls.__name__):
            raise InvalidDataError(
                f"meter state: {prefix!r} holds a {clip(repr(name))}, not a {cls.__name__}"
            )
        fields = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        got[prefix] = cls.from_host(fields, NUMPY, C=C)
    if state["pass_number"] == 2 and got["first"] is None:
        raise InvalidDataError("meter state: pass 2 without the statistics of pass 1")
    if got["first"] is not None and got["second"] is not None:
        if got["first"].sums.shape[1] != got["second"].resid.shape[1]:
            raise InvalidDataError("meter state: the two passes have other feature counts")
    return {
        "pass_number": int(state["pass_number"]),
        "first": got["first"],
        "second": got["second"],
        "dtype": dtype,
    }


def _same(value: Any, mine: Any) -> bool:
    """Whether a value read from a state equals this meter's, whatever its type (an array
    where a number belongs compares unequal instead of raising)."""
    if isinstance(mine, bool) or isinstance(value, bool):
        return type(value) is type(mine) and value == mine
    if isinstance(value, np.ndarray) or isinstance(mine, np.ndarray):
        return (
            isinstance(value, np.ndarray)
            and isinstance(mine, np.ndarray)
            and value.shape == mine.shape
            and bool(np.array_equal(value, mine))
        )
    if isinstance(value, (np.generic)):
        value = value.item()
    if type(value) is not type(mine) and not (
        isinstance(value, (int, float)) and isinstance(mine, (int, float))
    ):
        return False
    try:
        return bool(value == mine)
    except (TypeError, ValueError):
        return False
