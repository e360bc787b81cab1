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
    LayerHooks,
    forward_batch,
    model_device_dtype,
    resolve_layers,
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
    #: the snapshot of each hooked layer (``layers=``), in order: ``<snapshot>/layer_<k>``
    layer_snapshots: list[str] = field(default_factory=list)


def layer_snapshot(snapshot: str, k: int) -> str:
    """The group of the ``k``-th hooked layer (1-based) under ``snapshot``: ``<snapshot>/layer_<k>``
    (spec/dump-format.md: the penultimate layer, ``snapshot`` itself, has no ``layer``)."""
    return f"{snapshot.rstrip('/')}/layer_{k}"


def layer_meta(name: str, k: int) -> dict[str, Any]:
    """The metadata of the ``k``-th hooked layer's snapshot: ``layer = "layer_<k>"``, its
    position ``layer_index = k`` and the hooked ``module``'s name."""
    return {"layer": f"layer_{k}", "layer_index": k, "module": name}


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
    layers: Any = None,
    pool: str | None = None,
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
    layers : str, module, list of either, or mapping name -> module, optional
        Hidden layers to record as well, input side first: the output of the ``k``-th one
        (1-based) is written to ``<snapshot>/layer_<k>`` with its own labels and metadata
        ``layer = "layer_<k>"``, ``layer_index = k`` and ``module`` (its name), beside the
        snapshot's metadata; the penultimate layer (the classifier's input) is ``snapshot``.
    pool : {None, "flatten", "avg", "max"}
        How a layer output of more than two dimensions becomes one row per sample:
        flattened (default), or averaged / maxed over every dimension after the channels (a
        CNN's ``(N, C, H, W)`` map -> ``(N, C)``). See :class:`~.hook.LayerHooks`.

    Returns
    -------
    Captured
        The file, snapshot and sizes written.
    """
    torch = torch_module()
    module, name = resolve_module(model, classifier)
    hooked = resolve_layers(model, layers)
    layer_hooks = LayerHooks(hooked, pool)
    device, dtype = model_device_dtype(model)
    ood = isinstance(split, str) and (split == "ood" or split.startswith("ood_"))
    writer = dump if isinstance(dump, DumpWriter) else DumpWriter(dump, mode)
    try:
        meta = {"epoch": epoch, "split": split, "loss": loss, **meta}
        snap = writer.snapshot(snapshot, append=append, replace=replace, **meta)
        snap_name = snap.name  # read while the file is open
        layer_snaps = [
            writer.snapshot(
                layer_snapshot(snapshot, k),
                append=append,
                replace=replace,
                **{**meta, **layer_meta(layer_name, k)},
            )
            for k, (layer_name, _) in enumerate(hooked, 1)
        ]
        layer_names = [s.name for s in layer_snaps]
        with _eval_mode(model), torch.no_grad(), ClassifierHook(module) as hook, layer_hooks:
            batches = _forward(
                model, hook, name, loader, batch_fn, device, dtype, ood, max_batches, layer_hooks
            )
            n_rows, d, C = _append_rows(snap, batches, outputs, layer_snaps, hooked)
        notes = [] if ood else _write_classifier(snap, module, name, d)
    finally:
        if writer is not dump:
            writer.close()
    if n_rows == 0:
        notes.append("the loader yielded no batches; the snapshot holds no rows")
    return Captured(writer.path, snap_name, n_rows, d, C, notes, layer_names)


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


def _forward(
    model, hook, name, loader, batch_fn, device, dtype, ood: bool, max_batches, layer_hooks
):
    """``(features, outputs, labels, layer_rows)`` of each batch of ``loader`` (up to
    ``max_batches``); labels may be None for an out-of-distribution set."""
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        layer_hooks.clear()
        h, out, labels = forward_batch(
            model, hook, name, batch, i, batch_fn, device, dtype, labels_optional=ood
        )
        yield h, out, labels, _layer_rows(layer_hooks, h.shape[0], i)


def _layer_rows(layer_hooks: LayerHooks, n: int, i: int) -> list[Any]:
    """Each hooked layer's rows of batch ``i``, checked to be one row per sample."""
    rows = layer_hooks.pop() if layer_hooks.layers else []
    for (layer_name, _), r in zip(layer_hooks.layers, rows, strict=True):
        if r.shape[0] != n:
            raise UsageError(
                f"batch {i}: the layer {layer_name!r} gave {r.shape[0]} rows but the classifier "
                f"saw {n}; hook layers whose output has one row per sample (pool= reduces "
                "the other dimensions)"
            )
    return rows


def _append_rows(
    snap, batches, outputs: bool, layer_snaps=(), hooked=()
) -> tuple[int, int | None, int | None]:
    """Append each batch's rows to ``snap`` (and each hooked layer's rows to its snapshot);
    ``(rows, d, C)`` written (d, C None if none)."""
    n_rows = 0
    d = C = None
    for h, out, labels, rows in batches:
        if labels is None:  # an unlabelled out-of-distribution batch
            snap.append(features=h, outputs=out if outputs else None)
        else:
            snap.append(features=h, labels=labels, outputs=out if outputs else None)
        for layer, r in zip(layer_snaps, rows, strict=True):
            if labels is None:
                layer.append(features=r)
            else:
                layer.append(features=r, labels=labels)
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
    layers: Any = None,
    pool: str | None = None,
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
        Called with each meter after each pass, e.g.
        :func:`ncinspect.integrations.distributed.all_reduce_meter` under DDP.
    layers, pool
        Hidden layers to measure as well, as for :func:`capture`: each hooked module's
        output (flattened, or pooled with ``pool="avg"``) feeds its own
        :class:`~ncinspect.Meter` (no classifier, the classifier's classes), on the device,
        so no layer's rows are kept. With ``dump``, layer ``k`` is written to
        ``<snapshot>/layer_<k>`` with ``layer``, ``layer_index`` and ``module`` metadata.
    **options
        Passed to :class:`~ncinspect.Meter`: ``center``, ``per_class``,
        ``min_class_count``, ``precision``, ``dump``, ``snapshot``, ``dump_meta``,
        ``n_classes`` (for a classifier without a (C, d) weight).

    Returns
    -------
    SnapshotResult or dict
        What :func:`ncinspect.analyze` returns for the same features, labels and classifier.
        With ``layers``: a dict ``{name: SnapshotResult}`` of the hooked layers in order
        (``result.layer == "layer_<k>"``, ``result.meta["layer_index"] == k``), then the
        classifier's input under ``"penultimate"``.
    """
    from ..meter import Meter

    torch = torch_module()
    module, name = resolve_module(model, classifier)
    hooked = resolve_layers(model, layers)
    layer_hooks = LayerHooks(hooked, pool)
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
    writer = None
    if hooked and options.get("dump") is not None:
        from ..io.writer import SnapshotWriter

        if isinstance(options["dump"], SnapshotWriter):
            raise UsageError(
                "measure: layers= writes one snapshot per layer; give dump= a path or a "
                "DumpWriter, not a SnapshotWriter"
            )
        if not isinstance(options["dump"], DumpWriter):  # one writer for every layer's meter
            writer = options["dump"] = DumpWriter(options["dump"], "a")
    try:
        meter = Meter(weights=weight, bias=bias, **options)
        meters = [meter, *_layer_meters(meter, hooked, options)]
        modes = {m: m.training for m in model.modules()}
        try:
            model.eval()
            with torch.no_grad(), ClassifierHook(module) as hook, layer_hooks:
                for pass_number in (1, 2):
                    for i, batch in enumerate(loader):
                        if max_batches is not None and i >= max_batches:
                            break
                        layer_hooks.clear()
                        h, _, labels = forward_batch(
                            model, hook, name, batch, i, batch_fn, device, dtype
                        )
                        rows = _layer_rows(layer_hooks, h.shape[0], i)
                        if isinstance(labels, torch.Tensor):
                            labels = labels.to(h.device, non_blocking=True)
                        for m, features in zip(meters, [h, *rows], strict=True):
                            m.update(features, labels)
                    for m in meters:
                        if reduce is not None:
                            reduce(m)
                        if pass_number == 1:
                            m.next_pass()
        finally:
            for m, training in modes.items():
                m.training = training
        results = [m.compute() for m in meters]
    finally:
        if writer is not None:
            writer.close()
    if not hooked:
        return results[0]
    out = {}
    for k, ((layer_name, _), result) in enumerate(zip(hooked, results[1:], strict=True), 1):
        meta = layer_meta(layer_name, k)
        result.layer = meta["layer"]
        result.meta.update(meta)
        out[layer_name] = result
    out["penultimate"] = results[0]
    return out


def _layer_meters(meter, hooked, options: dict[str, Any]) -> list[Any]:
    """One :class:`~ncinspect.Meter` per hooked layer: no classifier, the classes of
    ``meter``, the same settings; with a dump, writing ``<snapshot>/layer_<k>``."""
    from ..meter import Meter

    shared = {
        key: options[key]
        for key in ("center", "per_class", "min_class_count", "precision")
        if key in options
    }
    out = []
    for k, (layer_name, _) in enumerate(hooked, 1):
        dump_args = {}
        if options.get("dump") is not None:
            snapshot = options.get("snapshot", "/")
            dump_args = {
                "dump": options["dump"],
                "snapshot": layer_snapshot(snapshot, k),
                "dump_meta": {**(options.get("dump_meta") or {}), **layer_meta(layer_name, k)},
            }
        out.append(Meter(n_classes=meter.n_classes, **shared, **dump_args))
    return out
