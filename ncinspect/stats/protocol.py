"""Declared-reduction pass states: every field says how two states combine, the rest follows.

A pass state is a dataclass whose fields are arrays of one array namespace (numpy, torch on
any device, CuPy, JAX, ``array-api-strict``), each declared with :func:`declare`::

    @dataclass
    class Counts(Declared):
        counts: Any = declare("sum", ("C",), "int64")
        first_bad: Any = declare("min", (), "int64")

From the declarations alone come :meth:`Declared.empty` (the identity of every reduction),
:meth:`Declared.merge`, :meth:`Declared.to_host` / :meth:`Declared.from_host` (plain numpy
arrays, no pickle; at most two device-to-host copies, one per dtype) and
:meth:`Declared.all_reduce` (``torch.distributed`` collectives on the states' device, no host
round trip). No state class writes its own merge, and nothing keeps a table of classes.

Reductions
----------
``"sum"``: added. ``"max"`` / ``"min"``: elementwise extremes (identity -inf/+inf, or the
int64 extremes). ``"equal"``: the same on both sides (checked at merge; an error otherwise).
``"moments"``: float64 ``[..., 3]``: ``[count, mean, m2]`` of scalars, merged by Chan et al.'s
formula (exact when a side is empty); across processes these are gathered and folded in
rank order. Every function here is arithmetic on the arrays' device: nothing reads a value
except the ``"equal"`` check, which runs at merge time, never per batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from ..errors import InvalidDataError

__all__ = [
    "REDUCTIONS",
    "NUMPY",
    "Spec",
    "declare",
    "Declared",
    "fold_moments",
    "merge_moments",
    "namespace_of",
    "placed",
    "merged",
    "collective_device",
]

REDUCTIONS = ("sum", "max", "min", "equal", "moments")
_I64 = np.iinfo(np.int64)


@dataclass(frozen=True)
class Spec:
    """One field's declaration: its reduction, shape (ints or dimension names) and dtype."""

    reduce: str
    shape: tuple = ()
    dtype: str = "float64"

    def __post_init__(self):
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"reduction {self.reduce!r} is not one of {REDUCTIONS}")
        if self.dtype not in ("float64", "int64"):
            raise ValueError(f"dtype {self.dtype!r}: declared fields are float64 or int64")
        if self.reduce == "moments" and (self.shape[-1:] != (3,) or self.dtype != "float64"):
            raise ValueError("a 'moments' field is float64 [..., 3]: [count, mean, m2]")

    def fill(self) -> float | int:
        """The identity of the reduction (what an empty state holds)."""
        if self.reduce == "max":
            return -math.inf if self.dtype == "float64" else int(_I64.min)
        if self.reduce == "min":
            return math.inf if self.dtype == "float64" else int(_I64.max)
        return 0


def declare(reduce: str, shape: tuple = (), dtype: str = "float64") -> Any:
    """A dataclass field declared with a reduction (see the module notes)."""
    return field(default=None, metadata={"ncinspect": Spec(reduce, tuple(shape), dtype)})


class _Numpy:
    """The few array-API functions the states call, for numpy arrays (any numpy >= 1.24,
    without array-api-compat): numpy states stay on the host, where numpy computes."""

    __name__ = "numpy"
    float64, int64, bool = np.float64, np.int64, np.bool_
    concat = staticmethod(np.concatenate)
    reshape = staticmethod(np.reshape)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)
    where = staticmethod(np.where)
    stack = staticmethod(np.stack)
    ones_like = staticmethod(np.ones_like)
    zeros_like = staticmethod(np.zeros_like)
    all = staticmethod(np.all)
    sum = staticmethod(np.sum)
    max = staticmethod(np.max)
    min = staticmethod(np.min)

    @staticmethod
    def full(shape, fill, dtype=None, device=None):
        return np.full(shape, fill, dtype=dtype)

    @staticmethod
    def clip(x, min=None, max=None):  # noqa: A002 - the array API's names
        return np.clip(x, min, max)

    @staticmethod
    def asarray(x, dtype=None, device=None):
        return np.asarray(x, dtype=dtype)


NUMPY = _Numpy()


def namespace_of(x: Any) -> Any:
    """The namespace of a state's arrays: :data:`NUMPY` for numpy, else array-api-compat's."""
    if isinstance(x, (np.ndarray, np.generic)):
        return NUMPY
    import array_api_compat

    return array_api_compat.array_namespace(x)


def _in_host_memory(x: Any) -> bool:
    """numpy arrays and CPU torch tensors: reading them is no device transfer."""
    if isinstance(x, (np.ndarray, np.generic)):
        return True
    dev = getattr(x, "device", None)
    return getattr(dev, "type", None) == "cpu" and type(x).__module__.startswith("torch")


def fold_moments(xp: Any, a: Any, rows: Any) -> Any:
    """``[..., 3]`` moments ``a`` with the ``(k, ..., 3)`` moments ``rows`` merged in, all at
    once (the parallel form of Chan et al., about a shift: ``a``'s mean, or the first row's
    when ``a`` is empty, so that one row merged onto nothing is that row, bit for bit).
    Arithmetic only: no value is read on the host."""
    na, ma, qa = a[..., 0], a[..., 1], a[..., 2]
    nb, mb, qb = rows[..., 0], rows[..., 1], rows[..., 2]
    n = na + xp.sum(nb, axis=0)
    shift = xp.where(na > 0, ma, mb[0, ...])
    dev_b = mb - shift
    mean = shift + (na * (ma - shift) + xp.sum(nb * dev_b, axis=0)) / xp.clip(n, min=1.0)
    da, db = ma - mean, mb - mean
    m2 = qa + xp.sum(qb, axis=0) + na * da * da + xp.sum(nb * db * db, axis=0)
    return xp.stack([n, mean, m2], axis=-1)


def merge_moments(xp: Any, a: Any, b: Any) -> Any:
    """Two ``[..., 3]`` arrays of ``[count, mean, m2]`` merged (Chan et al.); an empty side
    gives the other side exactly. Arithmetic only: no value is read on the host."""
    na, ma, qa = a[..., 0], a[..., 1], a[..., 2]
    nb, mb, qb = b[..., 0], b[..., 1], b[..., 2]
    n = na + nb
    safe = xp.clip(n, min=1.0)  # n itself where n > 0 (counts are whole numbers)
    delta = mb - ma
    both = xp.stack([n, ma + delta * nb / safe, qa + qb + delta * delta * na * nb / safe], axis=-1)
    return xp.where((na == 0)[..., None], b, xp.where((nb == 0)[..., None], a, both))


class Declared:
    """Base of the declared pass states (a dataclass of declared array fields)."""

    #: the dimension names of the shapes, in the order :meth:`empty` takes them
    DIMS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def specs(cls) -> list[tuple[str, Spec]]:
        return [(f.name, f.metadata["ncinspect"]) for f in fields(cls) if "ncinspect" in f.metadata]

    @classmethod
    def empty(cls, xp: Any, device: Any = None, **dims: int):
        """A state of no rows on ``device``: every field the identity of its reduction."""
        values = {}
        for name, spec in cls.specs():
            shape = tuple(dims[s] if isinstance(s, str) else s for s in spec.shape)
            dtype = getattr(xp, spec.dtype)
            values[name] = xp.full(shape, spec.fill(), dtype=dtype, device=device)
        return cls(**values)

    @property
    def xp(self) -> Any:
        """The namespace of the state's arrays (:data:`NUMPY` for numpy)."""
        return namespace_of(getattr(self, self.specs()[0][0]))

    @property
    def device(self) -> Any:
        """The device of the state's arrays (None for numpy)."""
        first = getattr(self, self.specs()[0][0])
        return None if isinstance(first, (np.ndarray, np.generic)) else _device(first)

    @property
    def in_host_memory(self) -> bool:
        """The state's arrays are numpy or CPU tensors (reading them moves nothing)."""
        return _in_host_memory(getattr(self, self.specs()[0][0]))

    def settle(self) -> None:
        """Fold into the fields what a kernel keeps aside between batches (none here; see
        :class:`ncinspect.stats.device.SecondState`). :meth:`merge`, :meth:`to_host` and
        :meth:`all_reduce` call it before they read a field."""

    def merge(self, other: Declared) -> Declared:
        """This state and ``other`` (same class, namespace and device) combined."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge a {type(other).__name__} into a {type(self).__name__}")
        self.settle()
        other.settle()
        xp = self.xp
        out = {}
        for name, spec in self.specs():
            a, b = getattr(self, name), getattr(other, name)
            if spec.reduce == "sum":
                out[name] = a + b
            elif spec.reduce == "max":
                out[name] = xp.maximum(a, b)
            elif spec.reduce == "min":
                out[name] = xp.minimum(a, b)
            elif spec.reduce == "moments":
                out[name] = merge_moments(xp, a, b)
            else:  # "equal": read once, at merge time
                if a.shape != b.shape or not bool(xp.all(a == b)):
                    raise InvalidDataError(
                        f"{type(self).__name__}.{name} must be the same in the states merged"
                    )
                out[name] = a
        return type(self)(**out)

    def to_host(self) -> dict[str, np.ndarray]:
        """Every field as a host numpy array: one copy per dtype (the fields concatenated)."""
        from .namespace import host

        self.settle()
        xp = self.xp
        result: dict[str, np.ndarray] = {}
        if self.in_host_memory:  # no transfer to save: one copy
            for n, s in self.specs():
                result[n] = np.array(host(getattr(self, n)), dtype=s.dtype, copy=True)
            return result
        for dtype in ("float64", "int64"):
            names = [(n, s) for n, s in self.specs() if s.dtype == dtype]
            if not names:
                continue
            flat = xp.concat([xp.reshape(getattr(self, n), (-1,)) for n, _ in names])
            values = np.asarray(host(flat), dtype=dtype)
            k = 0
            for n, _ in names:
                shape = tuple(getattr(self, n).shape)
                size = int(np.prod(shape, dtype=np.int64))
                result[n] = values[k : k + size].reshape(shape).copy()
                k += size
        return result

    @classmethod
    def from_host(cls, state: Any, xp: Any = None, device: Any = None, **dims: int):
        """The state :meth:`to_host` gave, checked against the declarations, on ``device``.

        ``dims`` (optional) fixes the dimension names' sizes; a field of another shape or a
        missing field is an :class:`~ncinspect.errors.InvalidDataError`.
        """
        values, seen = {}, dict(dims)
        for name, spec in cls.specs():
            if name not in state:
                raise InvalidDataError(f"{cls.__name__} state: {name!r} is missing")
            arr = np.asarray(state[name])
            if arr.dtype.kind not in "biuf" or arr.ndim != len(spec.shape):
                raise InvalidDataError(
                    f"{cls.__name__} state: {name!r} has dtype {arr.dtype} and shape "
                    f"{arr.shape}, expected {spec.dtype} of {len(spec.shape)} dimension(s)"
                )
            for s, got in zip(spec.shape, arr.shape, strict=True):
                want = seen.setdefault(s, got) if isinstance(s, str) else s
                if got != want:
                    raise InvalidDataError(
                        f"{cls.__name__} state: {name!r} has shape {arr.shape}, which does "
                        f"not match the other fields ({s} = {want})"
                    )
            if np.dtype(spec.dtype).kind in "iu" and arr.dtype.kind == "f":
                whole = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0**63)
                if not whole.all():  # the cast would make up a count
                    raise InvalidDataError(
                        f"{cls.__name__} state: {name!r} holds values that are not integers"
                    )
            arr = np.array(arr, dtype=spec.dtype, order="C")  # a copy, 0-d kept 0-d
            values[name] = arr if xp is None or xp is NUMPY else xp.asarray(arr, device=device)
        return cls(**values)

    def all_reduce(self, group: Any = None) -> Declared:
        """This state reduced over the processes of a ``torch.distributed`` group.

        Torch states are reduced in place on their device (``all_reduce`` for sums and
        extremes, ``all_gather`` for moments, folded in rank order; "equal" fields are
        checked by an all-reduced min and max). States of other libraries travel as torch
        tensors on the group's device and come back as they were. Returns the new state.
        """
        import torch
        import torch.distributed as dist

        from .namespace import host

        self.settle()
        xp = self.xp
        first = getattr(self, self.specs()[0][0])
        device = collective_device(dist.get_backend(group), first)
        native = isinstance(first, torch.Tensor) and first.device == device
        ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
        world = dist.get_world_size(group)
        out = {}
        for name, spec in self.specs():
            value = getattr(self, name)
            t = value.clone() if native else torch.as_tensor(host(value), device=device)
            t = t.contiguous()
            if spec.reduce in ops:
                dist.all_reduce(t, op=ops[spec.reduce], group=group)
            elif spec.reduce == "moments":
                parts = [torch.empty_like(t) for _ in range(world)]
                dist.all_gather(parts, t, group=group)
                t = parts[0]
                for p in parts[1:]:
                    t = merge_moments(torch, t, p)
            else:  # "equal"
                lo, hi = t.clone(), t.clone()
                dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=group)
                dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=group)
                if not bool(torch.equal(lo, hi)):
                    raise InvalidDataError(
                        f"{type(self).__name__}.{name} differs between the processes"
                    )
            if native:
                out[name] = t
            else:
                back = np.array(host(t), dtype=spec.dtype, order="C")
                out[name] = back if xp is NUMPY else xp.asarray(back, device=_device(value))
        return type(self)(**out)


def collective_device(backend: Any, first: Any) -> Any:
    """The torch device a state whose first field is ``first`` travels on in a collective
    of ``backend``: where a torch state lies (a CUDA state on its GPU), the host for other
    libraries; NCCL reduces CUDA tensors only, so a host state goes to the current GPU."""
    import torch

    here = first.device if isinstance(first, torch.Tensor) else torch.device("cpu")
    if str(backend).lower() == "nccl" and here.type != "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return here


def _device(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


def placed(state: Declared, xp: Any, device: Any) -> Declared:
    """``state`` in namespace ``xp`` on ``device`` (itself when it is there already)."""
    if state.xp is xp and state.device == device:
        return state
    return type(state).from_host(state.to_host(), xp, device)


def merged(mine: Declared | None, theirs: Declared | None) -> Declared | None:
    """Two states (either may be None) merged where ``mine`` lives."""
    if theirs is None:
        return mine
    if mine is None:
        return type(theirs).from_host(theirs.to_host(), theirs.xp, theirs.device)  # a copy
    return mine.merge(placed(theirs, mine.xp, mine.device))
