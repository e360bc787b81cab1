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
:class:`~ncinspect.results.report.SnapshotResult` that ``analyze()`` gives on those features.

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

from ..errors import NCInspectError, UsageError
from ..io.writer import DumpWriter
from .hook import (
    ClassifierHook,
    check_max_batches,
    forward_batch,
    model_device_dtype,
    resolve_module,
    torch_module,
)
from .layers import (
    LayerHooks,
    layer_meta,
    layer_meters,
    layer_rows,
    open_layer_snapshots,
    resolve_layers,
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
        The HDF5 file (opened with ``mode``), or an open :class:`~ncinspect.DumpWriter`.
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
    outputs, max_batches
        Record the classifier's outputs too (default True); stop after ``max_batches``.
    layers, pool
        Hidden layers too (names, modules, or a mapping name -> module; input side first):
        layer ``k`` is written to ``<snapshot>/layer_<k>``, flattened or ``pool="avg"`` /
        ``"max"`` over a CNN map's spatial dimensions (:mod:`~ncinspect.integrations.layers`).

    Returns
    -------
    Captured
        The file, snapshot and sizes written.
    """
    torch_module()  # the install hint before any file is touched
    module, name = resolve_module(model, classifier)
    hooked = resolve_layers(model, layers)
    ood = isinstance(split, str) and (split == "ood" or split.startswith("ood_"))
    max_batches = check_max_batches(max_batches)  # before the file is touched
    writer = dump if isinstance(dump, DumpWriter) else DumpWriter(dump, mode)
    meta = {"epoch": epoch, "split": split, "loss": loss, **meta}
    opened: list = []
    try:
        snap = writer.snapshot(snapshot, append=append, replace=replace, **meta)
        opened.append(snap)
        layer_snaps = open_layer_snapshots(writer, hooked, snapshot, append, replace, meta)
        opened.extend(layer_snaps)
        names = [snap.name, *(s.name for s in layer_snaps)]  # read while the file is open
        run = _Run(model, module, name, LayerHooks(hooked, pool), batch_fn, max_batches)
        n_rows, d, C = run.write(loader, snap, layer_snaps, outputs, ood)
        notes = [] if ood else _write_classifier(snap, module, name, d)
        snap.finish()  # marked complete last, after its rows and classifier are flushed
    except BaseException:
        # stopped half way (a loader error, Ctrl-C): what was written stays marked in
        # progress, also through a normal close of a writer the caller owns
        for part in opened:
            part.abandon()
        raise
    finally:
        if writer is not dump:
            writer.close()
    if n_rows == 0:
        notes.append("the loader yielded no batches; the snapshot holds no rows")
    return Captured(writer.path, names[0], n_rows, d, C, notes, names[1:])


@dataclass
class _Run:
    """One walk of a loader through the model: the hooks, the batch plumbing."""

    model: Any
    module: Any
    name: str
    layer_hooks: LayerHooks
    batch_fn: Callable[[Any], tuple[Any, Any]] | None
    max_batches: int | None
    device: Any = None

    def __post_init__(self) -> None:
        self.max_batches = check_max_batches(self.max_batches)

    def batches(self, loader, hook, dtype, ood: bool = False):
        """``(features, outputs, labels, layer_rows)`` of each batch of ``loader`` (up to
        ``max_batches``); labels may be None for an out-of-distribution set."""
        for i, batch in enumerate(loader):
            if self.max_batches is not None and i >= self.max_batches:
                break
            self.layer_hooks.clear()
            h, out, labels = forward_batch(
                self.model,
                hook,
                self.name,
                batch,
                i,
                self.batch_fn,
                self.device,
                dtype,
                labels_optional=ood,
            )
            yield h, out, labels, layer_rows(self.layer_hooks, h.shape[0], i)

    def write(self, loader, snap, layer_snaps, outputs: bool, ood: bool):
        """Append every batch to ``snap`` and the layers' snapshots: ``(rows, d, C)``."""
        torch = torch_module()
        device, dtype = model_device_dtype(self.model)
        self.device = device
        with _eval_mode(self.model), torch.no_grad(), ClassifierHook(self.module) as hook:
            with self.layer_hooks:
                batches = self.batches(loader, hook, dtype, ood)
                return _append_rows(snap, batches, outputs, layer_snaps)

    def feed(self, loader, meters, reduce) -> None:
        """Both passes of ``loader`` into ``meters`` (the classifier's input first, then one
        per hooked layer), ``reduce`` on each meter after each pass."""
        torch = torch_module()
        _, dtype = model_device_dtype(self.model)
        with _eval_mode(self.model), torch.no_grad(), ClassifierHook(self.module) as hook:
            with self.layer_hooks:
                for pass_number in (1, 2):
                    for h, _, labels, rows in self.batches(loader, hook, dtype):
                        if isinstance(labels, torch.Tensor):
                            labels = labels.to(h.device, non_blocking=True)
                        for k, (meter, features) in enumerate(zip(meters, [h, *rows], strict=True)):
                            with self.naming(k):
                                meter.update(features, labels)
                    # the hooked layers first (input side first), then the classifier's
                    # input: a divergence is named at the first layer it reaches
                    for k in [*range(1, len(meters)), 0]:
                        if reduce is not None:
                            reduce(meters[k])
                        if pass_number == 1:
                            with self.naming(k):
                                meters[k].next_pass()

    def compute(self, meters) -> list[Any]:
        """Each meter's result, an error naming the layer it comes from."""
        out: list[Any] = [None] * len(meters)
        for k in [*range(1, len(meters)), 0]:  # input side first, as the passes end
            with self.naming(k):
                out[k] = meters[k].compute()
        return out

    @contextmanager
    def naming(self, k: int):
        """With hooked layers, a package error of meter ``k`` names its layer (0: the
        classifier's input): "features: 240 row(s) ... hold NaN/Inf" alone does not say
        which layer diverged."""
        try:
            yield
        except NCInspectError as exc:
            layers = self.layer_hooks.layers
            if not layers or getattr(exc, "_ncinspect_layer", False):
                raise
            from ..text import clip

            if k == 0:
                where = f"the classifier's input ({clip(self.name)!r})"
            else:
                where = f"layer {clip(layers[k - 1][0])!r} (layer_{k})"
            named = type(exc)(f"{where}: {exc}")
            named._ncinspect_layer = True
            raise named from None


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


def _append_rows(
    snap, batches, outputs: bool, layer_snaps=()
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
        ``n_classes`` (for a classifier without a (C, d) weight), ``ignore_index`` (rows
        with this label are left out, on the device: also those of hooked layers).

    Returns
    -------
    SnapshotResult or dict
        What :func:`ncinspect.analyze` returns for the same features, labels and classifier.
        With ``layers``: a dict ``{name: SnapshotResult}`` of the hooked layers in order
        (``result.layer == "layer_<k>"``, ``result.meta["layer_index"] == k``), then the
        classifier's input under ``"penultimate"``.
    """
    from ..meter.meter import Meter

    torch = torch_module()
    module, name = resolve_module(model, classifier)
    hooked = resolve_layers(model, layers)
    run = _Run(model, module, name, LayerHooks(hooked, pool), batch_fn, max_batches)
    run.device = model_device_dtype(model)[0] if device is None else torch.device(device)
    weight, bias = _classifier_of(module, name, options)
    writer = _layers_writer(options) if hooked else None
    try:
        meter = Meter(weights=weight, bias=bias, **options)
        meters = [meter, *layer_meters(meter, hooked, options)]
        run.feed(loader, meters, reduce)
        results = run.compute(meters)
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


def _classifier_of(module, name: str, options: dict[str, Any]) -> tuple[Any, Any]:
    """The classifier's (C, d) ``weight`` and its ``bias``; ``(None, None)`` with
    ``n_classes=`` for a module without such a weight."""
    weight = getattr(module, "weight", None)
    if weight is None or getattr(weight, "ndim", 0) != 2:
        if "n_classes" not in options:
            raise UsageError(
                f"measure: the classifier {name!r} has no (C, d) weight; give n_classes= to "
                "measure without a classifier"
            )
        return None, None
    return weight, getattr(module, "bias", None)


def _layers_writer(options: dict[str, Any]) -> DumpWriter | None:
    """With ``layers=`` and a dump path: one open writer for every layer's meter, put in
    ``options["dump"]`` (returned, for the caller to close); None otherwise."""
    from ..io.writer import SnapshotWriter

    dump = options.get("dump")
    if dump is None or isinstance(dump, DumpWriter):
        return None
    if isinstance(dump, SnapshotWriter):
        raise UsageError(
            "measure: layers= writes one snapshot per layer; give dump= a path or a "
            "DumpWriter, not a SnapshotWriter"
        )
    writer = options["dump"] = DumpWriter(dump, "a")
    return writer
