"""The forward hook on a classifier module and the per-batch plumbing shared by
:func:`~ncinspect.integrations.torch.capture` and :func:`~ncinspect.integrations.torch.measure`:
resolve the classifier, split a batch into inputs and labels, move inputs to the model,
run one batch and collect what the classifier saw. torch is imported only when they run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..arrays import to_host
from ..errors import UsageError

__all__ = [
    "ClassifierHook",
    "torch_module",
    "resolve_module",
    "split_batch",
    "to_model",
    "model_device_dtype",
    "forward_batch",
    "forward_hooked",
    "check_max_batches",
]

_LABEL_KEYS = ("labels", "label", "y", "targets", "target")


def check_max_batches(value: Any) -> int | None:
    """``max_batches`` as an int >= 1 (or None), or a :class:`UsageError`: a string, a float
    or NaN was compared with the batch index (a TypeError, or every batch read), and 0 or a
    negative number wrote an empty snapshot."""
    import numbers

    from ..text import clip

    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UsageError(f"max_batches must be an integer >= 1 (or None), got {clip(repr(value))}")
    return int(value)


def torch_module():
    try:
        import torch
    except ImportError:
        raise UsageError(
            "ncinspect.integrations.torch needs PyTorch: pip install 'ncinspect[torch]'"
        ) from None
    return torch


class ClassifierHook:
    """A forward hook on a classifier module: its input is the features, its output the
    outputs (logits) of every sample that passes through it.

    Parameters
    ----------
    module : torch.nn.Module
        The classifier (usually an ``nn.Linear``), e.g. ``model.fc``.
    callback : callable, optional
        Called as ``callback(features, outputs)`` after each forward call of the module,
        with detached tensors of shapes (rows, d) and (rows, C) (a sequence model's
        (B, T, d) input is flattened to (B*T, d)).

    Notes
    -----
    Use as a context manager (the hook is removed on exit) or call :meth:`attach` and
    :meth:`remove`. Without a callback the calls are collected until :meth:`pop`.
    """

    def __init__(self, module: Any, callback: Callable[[Any, Any], None] | None = None):
        if not hasattr(module, "register_forward_hook"):
            raise UsageError(
                f"ClassifierHook: {type(module).__name__} is not a torch.nn.Module "
                "(give the classifier module or its name in the model)"
            )
        self.module = module
        self.callback = callback
        self.calls = 0
        self._handle = None
        self._pending: list[tuple[Any, Any]] = []

    def attach(self) -> ClassifierHook:
        if self._handle is None:
            self._handle = self.module.register_forward_hook(self._hook)
        return self

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def __enter__(self) -> ClassifierHook:
        return self.attach()

    def __exit__(self, *exc) -> None:
        self.remove()

    def _hook(self, module, inputs, output) -> None:
        if not inputs:
            raise UsageError(f"ClassifierHook: {type(module).__name__} was called without input")
        h = inputs[0]
        out = output[0] if isinstance(output, (tuple, list)) else output
        h, out = h.detach(), out.detach()
        if h.ndim != 2:
            h = h.reshape(-1, h.shape[-1])
        if out.ndim != 2:
            out = out.reshape(-1, out.shape[-1])
        self.calls += 1
        if self.callback is not None:
            self.callback(h, out)
        else:
            self._pending.append((h, out))

    def pop(self) -> tuple[Any, Any] | None:
        """The (features, outputs) collected since the last pop, concatenated; None if the
        module was not called."""
        if not self._pending:
            return None
        torch = torch_module()
        hs, outs = zip(*self._pending, strict=True)
        self._pending.clear()
        if len(hs) == 1:
            return hs[0], outs[0]
        return torch.cat(hs), torch.cat(outs)


def resolve_module(model: Any, classifier: Any) -> tuple[Any, str]:
    if isinstance(classifier, str):
        try:
            return model.get_submodule(classifier), classifier
        except AttributeError:
            names = [n for n, _ in model.named_modules() if n][:12]
            raise UsageError(
                f"capture: the model has no submodule {classifier!r}; its modules: "
                f"{', '.join(names)}"
            ) from None
    for name, mod in model.named_modules():
        if mod is classifier:
            return classifier, name or type(classifier).__name__
    raise UsageError(
        f"capture: the classifier {type(classifier).__name__} is not a module of the model"
    )


def split_batch(
    batch: Any, batch_fn: Callable | None, labels_optional: bool = False
) -> tuple[Any, Any]:
    """``(inputs, labels)`` of a batch; labels None for an unlabelled OOD batch."""
    if batch_fn is not None:
        return batch_fn(batch)
    if isinstance(batch, Mapping):
        keys = [k for k in _LABEL_KEYS if k in batch]
        if not keys and labels_optional:
            return batch, None
        if not keys:
            raise UsageError(
                f"capture: a batch is a dict with keys {sorted(map(str, batch))} but none of "
                f"{', '.join(_LABEL_KEYS)}; pass batch_fn=lambda b: (inputs, labels)"
            )
        inputs = {k: v for k, v in batch.items() if k != keys[0]}
        return inputs, batch[keys[0]]
    if isinstance(batch, (tuple, list)) and len(batch) >= 2:
        return batch[0], batch[1]
    if labels_optional:  # an OOD loader may yield the inputs alone (or a 1-tuple)
        return (batch[0] if isinstance(batch, (tuple, list)) and batch else batch), None
    raise UsageError(
        f"capture: cannot find the labels in a batch of type {type(batch).__name__}; loaders "
        "yield (inputs, labels, ...) or a dict with 'labels'; else pass batch_fn="
    )


def to_model(x: Any, device: Any, dtype: Any) -> Any:
    """Inputs on the model's device; floating inputs in the model's floating dtype."""
    torch = torch_module()
    if isinstance(x, torch.Tensor):
        if dtype is not None and x.is_floating_point() and x.dtype != dtype:
            return x.to(device=device, dtype=dtype, non_blocking=True)
        return x.to(device, non_blocking=True) if device is not None else x
    if isinstance(x, Mapping):
        return {k: to_model(v, device, dtype) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(to_model(v, device, dtype) for v in x)
    return x


def model_device_dtype(model: Any) -> tuple[Any, Any]:
    for p in model.parameters():
        return p.device, (p.dtype if p.is_floating_point() else None)
    return None, None


def forward_hooked(
    model: Any,
    hook: ClassifierHook,
    name: str,
    inputs: Any,
    device: Any,
    dtype: Any,
    *,
    give: str = "the module",
) -> tuple[Any, Any]:
    """Run ``inputs`` (moved to the model's device and dtype) through ``model``: the
    (features, outputs) its hooked classifier saw; a clear error when it was not called
    (``give`` names what the user should pass instead)."""
    inputs = to_model(inputs, device, dtype)
    if isinstance(inputs, Mapping):
        model(**inputs)
    else:
        model(inputs)
    got = hook.pop()
    if got is None:
        raise UsageError(
            f"the classifier {name!r} was not called by the model's forward; give "
            f"{give} whose input is the penultimate features"
        )
    return got


def forward_batch(
    model: Any,
    hook: ClassifierHook,
    name: str,
    batch: Any,
    i: int,
    batch_fn: Callable | None,
    device: Any,
    dtype: Any,
    *,
    labels_optional: bool = False,
) -> tuple[Any, Any, Any]:
    """Run one batch through ``model``: the (features, outputs) its classifier saw and the
    batch's labels, one entry per row (None for an unlabelled OOD batch)."""
    torch = torch_module()
    inputs, labels = split_batch(batch, batch_fn, labels_optional=labels_optional)
    h, out = forward_hooked(model, hook, name, inputs, device, dtype)
    if labels is None:
        return h, out, None
    if not isinstance(labels, torch.Tensor):
        labels = to_host(labels, f"labels of batch {i}")
    if labels.ndim > 1 and labels.shape[0] != h.shape[0]:
        labels = labels.reshape(-1)  # (B, T) tokens of a sequence model
    if labels.ndim == 0 or labels.shape[0] != h.shape[0]:
        raise UsageError(
            f"batch {i} has labels of shape {tuple(labels.shape)} but the classifier "
            f"{name!r} saw {h.shape[0]} rows"
        )
    return h, out, labels
