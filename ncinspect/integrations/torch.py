"""Capture a snapshot from a PyTorch model: a forward hook on the classifier, a data loader.

::

    from ncinspect.integrations.torch import capture

    capture(model, model.fc, train_loader, "run.h5", snapshot=f"epoch_{epoch:04d}",
            epoch=epoch, split="train", loss="cross_entropy")

The hook on the classifier module sees its input (the penultimate features) and its output
(the network outputs); the loader runs under ``eval()`` and ``torch.no_grad()``, each batch is
appended to the dump as soon as it is seen (memory stays bounded by one batch), and the
classifier's ``weight`` and ``bias`` are written at the end. The model's train/eval state is
restored afterwards, module by module. Tensors on any device and of any dtype are accepted
(bfloat16 is stored as float32, exactly).

:class:`ClassifierHook` is the reusable part: it attaches to any module and hands each
forward call's (features, outputs) to a callback, in the loader loop or anywhere else.

Needs torch (``pip install 'ncinspect[torch]'``); torch is imported only when these
functions run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..arrays import to_host
from ..errors import UsageError
from ..io.writer import DumpWriter

__all__ = ["ClassifierHook", "Captured", "capture"]

_LABEL_KEYS = ("labels", "label", "y", "targets", "target")


def _torch():
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
        torch = _torch()
        hs, outs = zip(*self._pending, strict=True)
        self._pending.clear()
        if len(hs) == 1:
            return hs[0], outs[0]
        return torch.cat(hs), torch.cat(outs)


@dataclass
class Captured:
    """What :func:`capture` wrote."""

    file: str
    snapshot: str
    n_samples: int
    n_features: int | None
    n_classes: int | None
    notes: list[str] = field(default_factory=list)


def _resolve_module(model: Any, classifier: Any) -> tuple[Any, str]:
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


def _split_batch(
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


def _to_model(x: Any, device: Any, dtype: Any) -> Any:
    """Inputs on the model's device; floating inputs in the model's floating dtype."""
    torch = _torch()
    if isinstance(x, torch.Tensor):
        if dtype is not None and x.is_floating_point() and x.dtype != dtype:
            return x.to(device=device, dtype=dtype, non_blocking=True)
        return x.to(device, non_blocking=True) if device is not None else x
    if isinstance(x, Mapping):
        return {k: _to_model(v, device, dtype) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_to_model(v, device, dtype) for v in x)
    return x


def _model_device_dtype(model: Any) -> tuple[Any, Any]:
    for p in model.parameters():
        return p.device, (p.dtype if p.is_floating_point() else None)
    return None, None


def capture(
    model: Any,
    classifier: Any,
    loader: Iterable[Any],
    dump: str | os.PathLike | DumpWriter,
    *,
    snapshot: str = "/",
    epoch: int | None = None,
    split: str | None = None,
    loss: str | None = None,
    mode: str = "a",
    append: bool = False,
    replace: bool = False,
    outputs: bool = True,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    max_batches: int | None = None,
    **meta: Any,
) -> Captured:
    """Run ``loader`` through ``model`` and write one snapshot of its classifier's inputs.

    Parameters
    ----------
    model : torch.nn.Module
        The network; it is called on each batch's inputs (``model(x)``, or ``model(**x)``
        for a dict), moved to the device and floating dtype of its parameters.
    classifier : torch.nn.Module or str
        The last layer (``model.fc``), or its name in ``model.named_modules()`` ("fc",
        "classifier.6", "lm_head"). Its input is recorded as ``features``, its output as
        ``outputs``, its ``weight`` / ``bias`` as ``weights`` / ``bias``.
    loader : iterable
        Batches ``(inputs, labels, ...)`` or dicts holding ``labels`` (or ``label``, ``y``,
        ``targets``); ``batch_fn(batch) -> (inputs, labels)`` for anything else.
    dump : path or DumpWriter
        The HDF5 file (opened with ``mode``, see :class:`~ncinspect.DumpWriter`), or an open
        writer (left open).
    snapshot : str
        The snapshot's group, e.g. ``"epoch_0010"`` or ``"test/epoch_0010"``; ``"/"`` for a
        flat file.
    epoch, split, loss : optional
        Metadata of the snapshot (``loss`` names the training loss, e.g.
        ``"cross_entropy"`` or ``"square"``); other keywords are stored as metadata too.
        ``split="ood"`` (or ``"ood_<name>"``) captures an out-of-distribution set: its
        batches may hold the inputs alone, no labels or weights are written, and the
        snapshot pairs with the in-distribution snapshot of the same epoch for
        ``nc5_ood_orthogonality``.
    mode, append, replace
        How an existing file or snapshot is treated; a snapshot written earlier is never
        doubled silently (see :meth:`ncinspect.DumpWriter.snapshot`).
    outputs : bool
        Also record the classifier's outputs (default True).
    max_batches : int, optional
        Stop after this many batches.

    Returns
    -------
    Captured
        The file, snapshot and sizes written.
    """
    torch = _torch()
    module, name = _resolve_module(model, classifier)
    device, dtype = _model_device_dtype(model)
    ood = isinstance(split, str) and (split == "ood" or split.startswith("ood_"))
    modes = {m: m.training for m in model.modules()}
    writer = dump if isinstance(dump, DumpWriter) else DumpWriter(dump, mode)
    notes: list[str] = []
    n_rows = 0
    d = C = None
    try:
        snap = writer.snapshot(
            snapshot, append=append, replace=replace, epoch=epoch, split=split, loss=loss, **meta
        )
        snap_name = snap.name  # read while the file is open
        model.eval()
        with torch.no_grad(), ClassifierHook(module) as hook:
            for i, batch in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                inputs, labels = _split_batch(batch, batch_fn, labels_optional=ood)
                inputs = _to_model(inputs, device, dtype)
                if isinstance(inputs, Mapping):
                    model(**inputs)
                else:
                    model(inputs)
                got = hook.pop()
                if got is None:
                    raise UsageError(
                        f"capture: the classifier {name!r} was not called by the model's "
                        "forward; give the module whose input is the penultimate features"
                    )
                h, out = got
                if labels is None:  # an unlabelled out-of-distribution batch
                    snap.append(features=h, outputs=out if outputs else None)
                    n_rows += h.shape[0]
                    d, C = h.shape[1], out.shape[1]
                    continue
                labels = to_host(labels, f"capture: labels of batch {i}")
                if labels.ndim > 1 and labels.shape[0] != h.shape[0]:
                    labels = labels.reshape(-1)  # (B, T) tokens of a sequence model
                if labels.ndim == 0 or labels.shape[0] != h.shape[0]:
                    raise UsageError(
                        f"capture: batch {i} has labels of shape {labels.shape} but the classifier "
                        f"{name!r} saw {h.shape[0]} rows"
                    )
                snap.append(features=h, labels=labels, outputs=out if outputs else None)
                n_rows += h.shape[0]
                d, C = h.shape[1], out.shape[1]
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        if ood:
            pass  # an OOD snapshot holds features only; it pairs with the ID snapshot's W
        elif weight is not None and weight.ndim == 2 and (d is None or weight.shape[1] == d):
            snap.write(weights=weight, bias=bias)
        else:
            notes.append(
                f"the classifier {name!r} has no (C, d) weight; weights and bias not written"
            )
    finally:
        for m, training in modes.items():
            m.training = training
        if writer is not dump:
            writer.close()
    if n_rows == 0:
        notes.append("the loader yielded no batches; the snapshot holds no rows")
    return Captured(writer.path, snap_name, n_rows, d, C, notes)
