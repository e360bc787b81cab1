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

:func:`measure` runs the same hook over a loader twice and feeds a :class:`~ncinspect.Meter`
instead of a file: ``measure(model, "fc", loader, device="cuda")`` returns the
:class:`~ncinspect.report.SnapshotResult` that ``analyze()`` gives on those features.

:class:`ClassifierHook` is the reusable part: it attaches to any module and hands each
forward call's (features, outputs) to a callback, in the loader loop or anywhere else.

Needs torch (``pip install 'ncinspect[torch]'``); torch is imported only when these
functions run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..io.writer import DumpWriter
from .hook import (
    ClassifierHook,
    forward_batch,
    model_device_dtype,
    resolve_module,
    torch_module,
)

__all__ = ["ClassifierHook", "Captured", "capture", "measure"]


@dataclass
class Captured:
    """What :func:`capture` wrote."""

    file: str
    snapshot: str
    n_samples: int
    n_features: int | None
    n_classes: int | None
    notes: list[str] = field(default_factory=list)


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
    torch = torch_module()
    module, name = resolve_module(model, classifier)
    device, dtype = model_device_dtype(model)
    ood = isinstance(split, str) and (split == "ood" or split.startswith("ood_"))
    writer = dump if isinstance(dump, DumpWriter) else DumpWriter(dump, mode)
    try:
        snap = writer.snapshot(
            snapshot, append=append, replace=replace, epoch=epoch, split=split, loss=loss, **meta
        )
        snap_name = snap.name  # read while the file is open
        with _eval_mode(model), torch.no_grad(), ClassifierHook(module) as hook:
            batches = _forward(model, hook, name, loader, batch_fn, device, dtype, ood, max_batches)
            n_rows, d, C = _append_rows(snap, batches, outputs)
        notes = [] if ood else _write_classifier(snap, module, name, d)
        snap.finish()  # marked complete last, after its rows and classifier are flushed
    finally:
        if writer is not dump:
            writer.close()
    if n_rows == 0:
        notes.append("the loader yielded no batches; the snapshot holds no rows")
    return Captured(writer.path, snap_name, n_rows, d, C, notes)


@contextmanager
def _eval_mode(model):
    """``model.eval()`` inside the block; every module's train/eval state restored after."""
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        yield
    finally:
        for m, training in modes.items():
            m.training = training


def _forward(model, hook, name, loader, batch_fn, device, dtype, ood: bool, max_batches):
    """``(features, outputs, labels)`` of each batch of ``loader`` (up to ``max_batches``);
    labels may be None for an out-of-distribution set."""
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        yield forward_batch(
            model, hook, name, batch, i, batch_fn, device, dtype, labels_optional=ood
        )


def _append_rows(snap, batches, outputs: bool) -> tuple[int, int | None, int | None]:
    """Append each batch's rows to ``snap``; ``(rows, d, C)`` written (d, C None if none)."""
    n_rows = 0
    d = C = None
    for h, out, labels in batches:
        if labels is None:  # an unlabelled out-of-distribution batch
            snap.append(features=h, outputs=out if outputs else None)
        else:
            snap.append(features=h, labels=labels, outputs=out if outputs else None)
        n_rows += h.shape[0]
        d, C = h.shape[1], out.shape[1]
    return n_rows, d, C


def _write_classifier(snap, module, name: str, d: int | None) -> list[str]:
    """Write the classifier's (C, d) weight and its bias; a note when it has none.

    An OOD snapshot never calls this: it holds features only and pairs with the ID
    snapshot's W."""
    weight = getattr(module, "weight", None)
    bias = getattr(module, "bias", None)
    if weight is not None and weight.ndim == 2 and (d is None or weight.shape[1] == d):
        snap.write(weights=weight, bias=bias)
        return []
    return [f"the classifier {name!r} has no (C, d) weight; weights and bias not written"]


def measure(
    model: Any,
    classifier: Any,
    loader: Iterable[Any],
    *,
    device: Any = None,
    batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
    max_batches: int | None = None,
    reduce: Callable[[Any], Any] | None = None,
    **options: Any,
):
    """The neural-collapse metrics of ``model`` over ``loader``, without writing features.

    Two passes of ``loader`` through ``model`` (``eval()``, ``torch.no_grad()``, the model's
    train/eval state restored afterwards), a :class:`ClassifierHook` on ``classifier`` feeding
    its inputs to a :class:`~ncinspect.Meter` with the classifier's ``weight`` and ``bias``.

    Parameters
    ----------
    model, classifier, batch_fn, max_batches
        As for :func:`capture` (``classifier`` is the module or its name, e.g. ``"fc"``).
    loader : iterable
        Batches ``(inputs, labels, ...)``; it is iterated twice and must yield the same rows
        both times (any order; no random augmentation).
    device : torch.device or str, optional
        Where the batches go (default: the device of the model's parameters); the features
        are measured there.
    reduce : callable, optional
        Called with the meter after each pass, e.g.
        :func:`ncinspect.integrations.distributed.all_reduce_meter` under DDP.
    **options
        Passed to :class:`~ncinspect.Meter`: ``center``, ``per_class``,
        ``min_class_count``, ``precision``, ``dump``, ``snapshot``, ``dump_meta``,
        ``n_classes`` (for a classifier without a (C, d) weight).

    Returns
    -------
    SnapshotResult
        What :func:`ncinspect.analyze` returns for the same features, labels and classifier.
    """
    from ..meter import Meter

    torch = torch_module()
    module, name = resolve_module(model, classifier)
    own_device, dtype = model_device_dtype(model)
    device = own_device if device is None else torch.device(device)
    weight = getattr(module, "weight", None)
    if weight is None or getattr(weight, "ndim", 0) != 2:
        if "n_classes" not in options:
            raise UsageError(
                f"measure: the classifier {name!r} has no (C, d) weight; give n_classes= to "
                "measure without a classifier"
            )
        weight = None
    bias = getattr(module, "bias", None) if weight is not None else None
    meter = Meter(weights=weight, bias=bias, **options)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad(), ClassifierHook(module) as hook:
            for pass_number in (1, 2):
                for i, batch in enumerate(loader):
                    if max_batches is not None and i >= max_batches:
                        break
                    h, _, labels = forward_batch(
                        model, hook, name, batch, i, batch_fn, device, dtype
                    )
                    if isinstance(labels, torch.Tensor):
                        labels = labels.to(h.device, non_blocking=True)
                    meter.update(h, labels)
                if reduce is not None:
                    reduce(meter)
                if pass_number == 1:
                    meter.next_pass()
    finally:
        for m, training in modes.items():
            m.training = training
    return meter.compute()
