"""Any array in, a host numpy array out: the one conversion every public entry uses.

:func:`to_host` accepts numpy arrays, torch tensors (requiring grad, on any device, in
bfloat16 or float16), JAX/CuPy/... arrays through ``__array__`` or DLPack, and plain
sequences and scalars. It never imports torch: tensors are recognised by duck typing
(``.detach``, ``.cpu``, ``.numpy`` and a ``torch.*`` dtype name). Low-precision float types
numpy lacks (bfloat16, float8) become float32, which holds every one of their values exactly;
float16 stays float16 (numpy has it, and it is exact too). The analysis later accumulates
everything in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import UnsupportedDtypeError

__all__ = ["to_host", "host_dtype", "is_tensor", "type_name"]

# dtypes numpy has no native type for, converted exactly to float32 on the way in
# (bfloat16 and the float8/6/4 formats, e.g. float8_e4m3fn; never float64 or float16)
_NARROW_PREFIXES = ("float8_", "float6_", "float4_")


def _narrow(name: str) -> bool:
    """bfloat16 or a float8/6/4 format: held exactly by float32, not by numpy."""
    return name == "bfloat16" or name.startswith(_NARROW_PREFIXES)


def type_name(value: Any) -> str:
    t = type(value)
    mod = t.__module__
    return t.__qualname__ if mod == "builtins" else f"{mod}.{t.__qualname__}"


def is_tensor(value: Any) -> bool:
    """A torch tensor (or Parameter), recognised without importing torch."""
    return (
        hasattr(value, "detach")
        and hasattr(value, "cpu")
        and hasattr(value, "numpy")
        and str(getattr(value, "dtype", "")).startswith("torch.")
    )


def _tensor_to_numpy(t: Any) -> np.ndarray:
    t = t.detach()
    if str(getattr(t, "layout", "torch.strided")) != "torch.strided":
        t = t.to_dense()  # sparse layouts
    dtype = str(t.dtype).removeprefix("torch.")
    if _narrow(dtype):
        t = t.float()  # exact: every bfloat16 / float8 value is a float32 value
    t = t.cpu()
    if hasattr(t, "resolve_conj"):
        t = t.resolve_conj()
    if hasattr(t, "resolve_neg"):
        t = t.resolve_neg()
    return t.numpy()


def _exact_numpy(arr: np.ndarray) -> np.ndarray:
    """ml_dtypes arrays (JAX's bfloat16, float8) as float32; everything else unchanged."""
    if arr.dtype.kind == "V" and _narrow(arr.dtype.name):
        return arr.astype(np.float32)
    return arr


def _from_dlpack(value: Any) -> np.ndarray:
    try:
        return np.from_dlpack(value)
    except (BufferError, RuntimeError, TypeError, ValueError):
        # a producer on another device may still copy to the host when asked (DLPack 1.0)
        return np.from_dlpack(value, device="cpu", copy=True)


def to_host(value: Any, where: str) -> np.ndarray:
    """``value`` as a numpy array in host memory.

    Parameters
    ----------
    value
        A numpy array, torch tensor, any object exposing ``__array__`` or ``__dlpack__``,
        or a (nested) sequence or scalar numpy can convert.
    where : str
        The array's role or location, used in the error message.

    Raises
    ------
    UnsupportedDtypeError
        (exit code 3) with one line naming ``where`` and the object's type, when the value
        cannot be turned into an array.
    """
    if isinstance(value, np.ma.MaskedArray):
        value = _unmasked(value, where)
    if isinstance(value, np.ndarray):
        return _exact_numpy(value)
    errors: list[str] = []
    attempts = []
    if is_tensor(value):
        attempts.append(_tensor_to_numpy)
    if hasattr(value, "__array__"):
        attempts.append(np.asarray)
    if hasattr(value, "__dlpack__"):
        attempts.append(_from_dlpack)
    if callable(getattr(value, "get", None)) and hasattr(value, "__cuda_array_interface__"):
        attempts.append(lambda v: np.asarray(v.get()))  # CuPy-style device arrays
    if not attempts:
        attempts.append(_plain)
    for convert in attempts:
        try:
            arr = convert(value)
        except Exception as exc:  # noqa: BLE001 - foreign libraries raise anything
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            continue
        if isinstance(arr, np.ndarray):
            return _exact_numpy(arr)
    reason = "; ".join(errors) or "no array interface"
    raise UnsupportedDtypeError(
        f"{where}: cannot convert a value of type {type_name(value)} to an array ({reason}); "
        "pass a numpy array, "
        "a torch tensor or any object with __array__ or __dlpack__"
    )


def _unmasked(value: np.ma.MaskedArray, where: str) -> np.ndarray:
    """The values of a masked array that masks nothing; one that masks values is refused
    (:class:`InvalidDataError`): numpy's own conversion drops the mask, and the masked
    values (fill, padding, invalid rows) would be analysed as data."""
    from .errors import InvalidDataError

    mask = np.ma.getmaskarray(value)
    if mask.any():
        first = tuple(int(i) for i in np.argwhere(mask)[0])
        raise InvalidDataError(
            f"{where}: a masked array with {int(mask.sum())} masked value(s), first at index "
            f"{first}; ncinspect reads every value: drop the masked rows or fill them first "
            "(array.filled(value), or the rows array[~array.mask.any(axis=1)])"
        )
    return np.asarray(value.data)


def _plain(value: Any) -> np.ndarray:
    """Lists, tuples and scalars; refuses objects numpy would only wrap as one opaque item."""
    if isinstance(value, (list, tuple)) and any(is_tensor(v) for v in value):
        return np.stack([_tensor_to_numpy(v) for v in value])
    arr = np.asarray(value)
    if arr.dtype.kind == "O" and arr.ndim == 0:
        raise TypeError("not an array, sequence or number")
    return arr


def host_dtype(value: Any) -> np.dtype:
    """The numpy dtype :func:`to_host` gives ``value``, without converting all of it."""
    if is_tensor(value) and getattr(value, "ndim", 0) >= 1:
        return to_host(value[:0], "value").dtype
    return to_host(value, "value").dtype
