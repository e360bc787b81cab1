"""The array namespace of the statistics layer: one lookup at the entry, then the same code.

:func:`get_namespace` returns the array-API namespace of the arrays a statistic is asked
for (numpy, torch on any device, CuPy, JAX, ``array-api-strict``...), always a namespace:
numpy arrays (and anything that is not an array-API object: lists, scalars, h5py datasets
read to numpy) get numpy's own (:func:`numpy_namespace`: the ``numpy`` module, an array-API
namespace from numpy 2 on), without ``array-api-compat``, which is imported only when an
array is not a numpy array. :func:`is_numpy` tells the kernels to take their numpy fast
paths.

The kernels of :mod:`ncinspect.stats.xp` then compute on the arrays' device in float64 and
hand back small host numpy arrays (per-class sums, scatter traces, counts): the merged
statistics and every result are plain numpy and floats, whatever the input library.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Any

import numpy as np

from ..arrays import to_host
from ..errors import UnsupportedDtypeError, UsageError
from ..text import clip

__all__ = [
    "PRECISIONS",
    "check_precision",
    "get_namespace",
    "device_of",
    "host",
    "on_device",
    "device_batch",
    "meter_batch",
    "batch_dtype",
    "numpy_namespace",
    "is_numpy",
    "scatter_add",
    "take_rows",
    "check_float64_states",
    "product32",
    "torch_upload",
    "DENSE_MAX_C",
]

DENSE_MAX_C = 1024  #: the largest C scatter-added by a dense indicator (unknown libraries)
STAGE_MAX_BYTES = 1 << 20  #: host tensors up to this size go to a GPU through pinned memory

#: ``"float64"``: every product and sum in float64 (the default, equal to the numpy path
#: to rounding); ``"float32"``: the large matrix products in float32, accumulated in float64
PRECISIONS = ("float64", "float32")


def check_precision(precision: str) -> str:
    """``precision`` when it is one of :data:`PRECISIONS` and can run here: float32 runs the
    namespace kernel, which on numpy before 2.0 needs array-api-compat's wrapper."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be 'float64' or 'float32', got {precision!r}")
    if precision == "float32" and numpy_namespace() is np and not _NUMPY2:
        raise UsageError(
            f"precision 'float32' needs numpy >= 2 or array-api-compat (numpy {np.__version__} "
            "here): pip install 'ncinspect[array-api]'"
        )
    return precision


def _is_numpy_like(x: Any) -> bool:
    return x is None or isinstance(x, (np.ndarray, np.generic, int, float, bool, list, tuple))


def get_namespace(*arrays: Any) -> Any:
    """The array-API namespace of ``arrays``: :func:`numpy_namespace` when they are all
    numpy (or plain, or not array-API objects: read on the host), else the library's.

    Torch tensors that require grad are fine (the kernels detach them, see :func:`detach`).

    Raises
    ------
    UnsupportedDtypeError
        Arrays of different libraries, or a non-numpy array while ``array-api-compat`` is
        not installed (the ``array-api`` extra).
    """
    foreign = [a for a in arrays if not _is_numpy_like(a)]
    if not foreign:
        return numpy_namespace()
    try:
        import array_api_compat
    except ImportError as exc:
        raise UnsupportedDtypeError(
            f"arrays of type {type(foreign[0]).__name__} need array-api-compat: "
            "pip install 'ncinspect[array-api]' (or pass numpy arrays)"
        ) from exc
    if not all(array_api_compat.is_array_api_obj(a) for a in foreign):
        return numpy_namespace()  # h5py datasets, memmaps and such: read on the host
    try:
        xp = array_api_compat.array_namespace(*foreign)
    except TypeError as exc:
        raise UnsupportedDtypeError(
            f"arrays of different libraries in one call ({exc}); pass them from one library"
        ) from exc
    if array_api_compat.is_numpy_namespace(xp):
        return numpy_namespace()
    return xp


def detach(x: Any) -> Any:
    """A torch tensor without its autograd graph (other arrays unchanged)."""
    return x.detach() if hasattr(x, "detach") and hasattr(x, "requires_grad") else x


def device_of(x: Any) -> Any:
    if isinstance(x, (np.ndarray, np.generic)):
        return "cpu"
    import array_api_compat

    return array_api_compat.device(x)


def host(x: Any) -> np.ndarray:
    """A (small) device array copied to host numpy."""
    return to_host(detach(x), "statistics")


def on_device(xp: Any, arr: np.ndarray | None, device: Any, dtype: Any = None) -> Any:
    """Host numpy ``arr`` as an ``xp`` array on ``device`` (``None`` stays ``None``)."""
    if arr is None:
        return None
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # shared read-only (a memo's): a CPU tensor would alias it
        arr = arr.copy()
    if _library(xp) == "torch" and device is not None and str(device) != "cpu":  # blocking
        out = torch_upload(xp.asarray(arr), device)  # copies wait for the device's stream
    else:
        out = xp.asarray(arr, device=device)
    return out if dtype is None or out.dtype == dtype else xp.astype(out, dtype)


def device_batch(xp: Any, features: Any, labels: Any, n_classes: int) -> tuple[Any, Any]:
    """A batch of ``xp`` features and its labels, checked where they live.

    Returns the features (detached) and the labels (detached, their own dtype) on the
    features' device; host labels are moved there. Only what needs no value is checked
    here (numeric 2-D features, one numeric label per row): whether the labels are integers
    in ``[0, n_classes)`` and the rows finite is counted on the device by
    :mod:`ncinspect.stats.device` and reported at the end of the pass, so a batch never
    waits for the device.
    """
    from ..input_checks import check_batch

    h = detach(features)
    check_batch(xp, h, empty_ok=True)
    y = labels
    is_torch = _library(xp) == "torch"
    if get_namespace(labels) is not xp:  # host labels (or another library): to h's device
        host_y = to_host(labels, "labels")
        y = xp.asarray(host_y) if is_torch else xp.asarray(host_y, device=device_of(h))
    y = detach(y)
    if device_of(y) != device_of(h):  # e.g. CPU labels of CUDA features
        y = _to_device(xp, y, device_of(h), is_torch)
    if not xp.isdtype(y.dtype, ("real floating", "integral", "bool")):
        raise UnsupportedDtypeError(
            f"labels have dtype {y.dtype}: the Meter takes integer labels (rows of W)"
        )
    check_batch(xp, h, y, empty_ok=True)
    return h, y


_FLOAT64_OK: dict[tuple[str, str], str | None] = {}


def check_float64_states(xp: Any, device: Any) -> None:
    """Refuse, in one line, a device whose library cannot hold the Meter's float64 and int64
    states (Apple's MPS has no float64; JAX without ``jax_enable_x64`` makes float32 and
    int32 of them, with a warning): the library's own error came from deep inside, or
    none at all. Checked once per library and device."""
    key = (_library(xp), str(device))
    if key not in _FLOAT64_OK:
        why = None
        try:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # JAX warns of the narrowing it does
                made = [xp.zeros((1,), dtype=t, device=device) for t in (xp.float64, xp.int64)]
            if [a.dtype for a in made] != [xp.float64, xp.int64]:
                why = f"it makes {made[0].dtype} and {made[1].dtype} of them"
        except (TypeError, RuntimeError, ValueError) as exc:
            why = clip(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        _FLOAT64_OK[key] = why
    why = _FLOAT64_OK[key]
    if why is not None:
        hint = "; with JAX, jax.config.update('jax_enable_x64', True)" if key[0] == "jax" else ""
        lib = "" if key[0] == "other" else f" ({key[0]})"
        raise UnsupportedDtypeError(
            f"features on {device}{lib}: the Meter keeps float64 and int64 states on the "
            f"batches' device and this one cannot hold them ({why}); give the batches on a "
            f"device that can (the CPU: features.cpu()){hint}"
        )


def _to_device(xp: Any, y: Any, device: Any, is_torch: bool) -> Any:
    """Labels ``y`` moved to ``device`` without waiting for it (:func:`torch_upload`)."""
    if is_torch:
        if y.device.type == "cpu":
            return torch_upload(y, device)
        return y.to(device, non_blocking=True)  # another device's: ordered by torch
    import array_api_compat

    return array_api_compat.to_device(y, device)


def torch_upload(t: Any, device: Any, stage: bool | None = None) -> Any:
    """A CPU tensor ``t`` copied to ``device`` without the host waiting for the device.

    A blocking copy to a GPU waits for every kernel queued on its stream, and a
    non-blocking one from pageable memory may too (the driver stages it). ``stage`` (default:
    on CUDA): ``t`` is first copied into a fresh pinned buffer of torch's caching host
    allocator, which keeps it until the copy has run; the caller's buffer (pinned, say a
    DataLoader's, and written again once ``update`` returns) is read before this returns.
    Elsewhere, and for tensors over :data:`STAGE_MAX_BYTES` (a geometry's constants at a
    large C, sent once a pass, which the host allocator would keep pinned), a
    ``non_blocking`` copy: the driver reads pageable memory before it returns."""
    import torch

    if stage is None:
        small = t.numel() * t.element_size() <= STAGE_MAX_BYTES
        stage = small and torch.device(device).type == "cuda"
    if stage:
        staged = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
        staged.copy_(t)
        t = staged
    return t.to(device, non_blocking=True)


def meter_batch(
    features: Any,
    labels: Any,
    n_classes: int,
    weights: Any = None,
    ignore_index: int | None = None,
):
    """One batch of :class:`ncinspect.Meter`, checked: ``(xp, h, y, kept)``; ``xp`` is numpy
    for rows on the host (numpy ``h``, int64 ``y``).

    Device arrays: only what needs no value (dtype, shape, d) is checked here
    (:func:`device_batch`); their rows labelled ``ignore_index`` stay (the device states
    leave them out, :mod:`ncinspect.stats.device`) and ``kept`` is None. Host rows are checked
    at once (reading them costs nothing), after the rows labelled ``ignore_index`` are
    dropped: ``kept`` is then ``(indices of the rows kept in the batch as given, rows
    given)``, or None when none was dropped.
    """
    from ..errors import InvalidDataError
    from ..input_checks import check_batch

    _check_label_kind(labels)
    kept = None
    xp = get_namespace(features)
    if not is_numpy(xp) and str(getattr(features, "layout", "torch.strided")) == "torch.strided":
        h, y = device_batch(xp, features, labels, n_classes)
    else:
        xp, h, y = numpy_namespace(), to_host(features, "features"), to_host(labels, "labels")
        if y.dtype.kind not in "fiub":
            raise UnsupportedDtypeError(
                f"labels have dtype {y.dtype}: the Meter takes integer labels (rows of W)"
            )
        check_batch(np, h, y, empty_ok=True)
        if ignore_index is not None and y.size:
            skip = y == ignore_index
            if skip.any():
                kept = (np.flatnonzero(~skip), y.shape[0])
                h, y = h[kept[0]], y[kept[0]]
        if y.dtype.kind not in "iub" and y.size and not np.all(np.mod(y, 1) == 0):
            raise InvalidDataError("labels must be integers (row indices of the classifier)")
        # the range on the labels' own dtype: a uint64 or float label beyond int64 would
        # wrap in the cast and be named as another value
        if y.size and (y.min() < 0 or y.max() >= n_classes):
            bad = y[(y < 0) | (y >= n_classes)][0].item()
            shown = int(bad) if isinstance(bad, float) and math.isfinite(bad) else bad
            raise InvalidDataError(
                f"label {shown} is not in [0, {n_classes}) (rows of the classifier)"
            )
        y = y.astype(np.int64)
    if weights is not None and h.shape[1] != weights.shape[1]:
        raise InvalidDataError(
            f"features have d = {h.shape[1]} but weights have {weights.shape[1]} columns"
        )
    return xp, h, y, kept


def _check_label_kind(labels: Any) -> None:
    """String (or object) labels: say what to pass instead of a raw error of the array library."""
    kind = getattr(getattr(labels, "dtype", None), "kind", None)
    if kind is None and isinstance(labels, (list, tuple)):
        kind = np.asarray(labels).dtype.kind
    if kind in ("U", "S", "O"):
        raise UnsupportedDtypeError(
            f"labels have dtype {labels.dtype if hasattr(labels, 'dtype') else 'str'}: the "
            "Meter takes integer labels, the row of W (or 0..n_classes-1) of each sample; map "
            "names to rows first, e.g. rows = {name: i for i, name in enumerate(class_names)} "
            "with class_names in W's row order, then np.array([rows[n] for n in labels])"
        )


def batch_dtype(h: Any) -> np.dtype:
    """The numpy dtype of a batch as :func:`to_host` would give it (read from its name)."""
    if isinstance(h, np.ndarray):
        return h.dtype
    try:
        return np.dtype(str(h.dtype).rsplit(".", 1)[-1])
    except TypeError:  # bfloat16, float8: numpy has none, to_host gives float32 (exact)
        return np.dtype(np.float32)


_NUMPY2 = int(np.__version__.split(".", 1)[0]) >= 2


def numpy_namespace() -> Any:
    """numpy as an array-API namespace: the ``numpy`` module itself from numpy 2 on (its main
    namespace follows the standard); before, ``array-api-compat``'s wrapper when installed,
    else ``numpy`` (float64 then takes the numpy fast paths only, and
    :func:`check_precision` refuses float32)."""
    if _NUMPY2:
        return np
    try:
        from array_api_compat import numpy as xnp
    except ImportError:
        return np
    return xnp


def is_numpy(xp: Any) -> bool:
    """Whether ``xp`` is numpy (the module, array-api-compat's wrapper or the states' shim):
    the kernels' numpy fast paths apply."""
    return xp is np or getattr(xp, "__name__", "") in ("numpy", "array_api_compat.numpy")


def _library(xp: Any) -> str:
    if is_numpy(xp):  # numpy itself, array-api-compat's wrapper or the states' shim
        return "numpy"
    import array_api_compat as compat

    for name in ("torch", "numpy", "cupy", "jax"):
        if getattr(compat, f"is_{name}_namespace")(xp):
            return name
    return "other"


def take_rows(xp: Any, a: Any, index: Any) -> Any:
    """``xp.take(a, index, axis=0)`` for int64 indices known to be in range (never
    negative): torch's own ``index_select``, one kernel where array-api-compat's ``take``
    first wraps negative indices (three more, on every batch of a device pass)."""
    if _library(xp) == "torch":
        return a.index_select(0, index)
    return xp.take(a, index, axis=0)


def scatter_add(xp: Any, acc: Any, index: Any, values: Any) -> Any:
    """``acc`` with the rows of ``values`` added at rows ``index`` (int64, in range).

    May update ``acc`` in place (torch, CuPy): use the returned array.
    """
    lib = _library(xp)
    if lib == "torch":
        return acc.index_add_(0, index, values)
    if lib == "cupy":
        import cupyx

        if acc.dtype == xp.int64:  # cupyx.scatter_add refuses int64; uint64 adds the same bits
            u64 = xp.uint64
            cupyx.scatter_add(acc.view(u64), index, xp.astype(values, xp.int64).view(u64))
            return acc
        cupyx.scatter_add(acc, index, values)
        return acc
    if lib == "jax":
        return acc.at[index].add(values)
    if lib == "numpy":
        from .blocks import group_sum

        n = acc.shape[0]
        if values.ndim == 1:
            add = np.bincount(index, weights=values, minlength=n)
            return acc + add.astype(acc.dtype)
        return acc + group_sum(values, index, n)
    n = acc.shape[0]
    if n > DENSE_MAX_C:
        raise NotImplementedError(
            f"{getattr(xp, '__name__', xp)} has no scatter-add ncinspect knows, and C = {n} "
            f"is above {DENSE_MAX_C} for a dense indicator: pass torch, CuPy, JAX or numpy arrays"
        )
    classes = xp.arange(n, dtype=xp.int64, device=device_of(acc))
    ind = xp.astype(classes[:, None] == index[None, :], acc.dtype)  # (C, m)
    if values.ndim == 1:
        return acc + xp.reshape(ind @ xp.reshape(values, (-1, 1)), (n,))
    return acc + ind @ values


def product32(xp: Any, a: Any, b32: Any) -> Any:
    """``a @ b32`` as float64, the product of ``a`` rounded to float32 and the float32
    ``b32`` in IEEE float32 arithmetic: the unit round-off ``2**-24`` that the float32 bounds
    of :mod:`ncinspect.stats.xp` assume.

    Libraries round lower when asked to elsewhere: torch under ``torch.autocast`` (bfloat16
    or float16 products) and with TF32 allowed (``torch.set_float32_matmul_precision("high")``,
    ``allow_tf32``: 10-bit mantissas on NVIDIA GPUs since Ampere), JAX's default precision
    on GPUs and TPUs, CuPy with ``CUPY_TF32=1``. Here neither applies, per call, without a
    host synchronisation; the caller's settings are restored afterwards."""
    a32 = xp.astype(a, xp.float32)
    lib = _library(xp)
    if lib == "torch":
        with _ieee_float32(a32.device.type):
            out = a32 @ b32
    elif lib == "jax":
        import jax

        out = xp.matmul(a32, b32, precision=jax.lax.Precision.HIGHEST)
    elif lib == "cupy" and os.environ.get("CUPY_TF32", "0") not in ("", "0"):
        return xp.astype(a32, xp.float64) @ xp.astype(b32, xp.float64)  # the float32 values
    else:
        out = a32 @ b32
    return xp.astype(out, xp.float64)


_FP32_BACKENDS = {"cuda": ("cuda", "matmul"), "cpu": ("mkldnn", "matmul")}


@contextmanager
def _ieee_float32(device_type: str):
    """torch: float32 products on ``device_type`` in IEEE float32 inside the block (autocast
    off, TF32 off); every setting restored on exit."""
    import torch

    with _no_autocast(torch, device_type):
        backend = _FP32_BACKENDS.get(device_type)
        knob = None
        if backend is not None:
            knob = getattr(getattr(torch.backends, backend[0], None), backend[1], None)
        saved = _get_fp32(knob)
        if saved is None or saved[1] == saved[2]:  # nothing to change here
            yield
            return
        name, was, ieee = saved
        setattr(knob, name, ieee)
        try:
            yield
        finally:
            setattr(knob, name, was)


def _get_fp32(knob: Any) -> tuple[str, Any, Any] | None:
    """``(attribute, value now, IEEE value)`` of a torch matmul precision knob: the
    ``fp32_precision`` of torch >= 2.9, else cuBLAS's legacy ``allow_tf32``; None if none."""
    if knob is None:
        return None
    try:
        return "fp32_precision", knob.fp32_precision, "ieee"
    except (AttributeError, RuntimeError):
        pass
    try:
        return "allow_tf32", knob.allow_tf32, False
    except (AttributeError, RuntimeError):
        return None


@contextmanager
def _no_autocast(torch: Any, device_type: str):
    try:
        on = torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: the CUDA flag only, and the CPU flag
        on = torch.is_autocast_enabled() if device_type == "cuda" else False
        if device_type == "cpu":
            on = torch.is_autocast_cpu_enabled()
    except RuntimeError:  # a device autocast does not know (meta, ...): no autocast there
        on = False
    if not on:
        yield
        return
    with torch.autocast(device_type, enabled=False):
        yield
