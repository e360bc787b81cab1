"""The classifier head of a Hugging Face Transformers model and the rows it is measured on:
finding the head whose output is the logits, the next-token labels of a causal LM, the
evaluation's split name and the model's training loss. torch is imported only when they run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import UsageError
from .hook import model_device_dtype, resolve_module, split_batch, to_model

__all__ = ["find_head", "split_of", "loss_of"]


def find_head(
    model: Any, task: str, loader: Iterable[Any] | None = None, *, batch_fn: Callable | None = None
) -> tuple[Any, str]:
    """The classifier head of a Transformers model and its name.

    A causal LM's head is ``model.get_output_embeddings()``. Otherwise one batch of
    ``loader`` is run through the model with a hook on every module holding a 2-D ``weight``;
    the head is the last of them whose output is the model's logits.
    """
    import torch

    if task == "causal_lm":
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if head is None:
            raise UsageError(
                f"{type(model).__name__} has no output embeddings (LM head); give classifier="
            )
        return resolve_module(model, head)
    if loader is None:
        raise UsageError("find_head needs a batch to find the module whose output is the logits")
    seen: list[tuple[str, Any]] = []
    handles = []

    def hook(name):
        def record(module, inputs, output):
            out = output[0] if isinstance(output, (tuple, list)) else output
            seen.append((name, out))

        return record

    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if isinstance(w, torch.Tensor) and w.ndim == 2:
            handles.append(mod.register_forward_hook(hook(name)))
    device, dtype = model_device_dtype(model)
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        batch = next(iter(loader), None)
        if batch is None:
            raise UsageError("the loader is empty: no batch to find the classifier head with")
        inputs, _ = batch_fn(batch) if batch_fn is not None else split_batch(batch, None)
        inputs = to_model(inputs, device, dtype)
        with torch.no_grad():
            out = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    logits = getattr(out, "logits", None)
    if logits is None:
        logits = out[0] if isinstance(out, (tuple, list)) else out
    for name, got in reversed(seen):
        if got is logits or (
            isinstance(got, torch.Tensor) and got.shape == logits.shape and torch.equal(got, logits)
        ):
            return resolve_module(model, name)
    raise UsageError(
        f"no module of {type(model).__name__} with a 2-D weight outputs the logits (e.g. a head "
        "that pools tokens after its last layer); give classifier= the head module"
    )


def split_of(metrics: Mapping[str, Any] | None) -> str:
    """The evaluation's metric prefix: ``eval`` or ``eval_<name>`` (from ``<prefix>_runtime``
    or ``<prefix>_loss``)."""
    for suffix in ("_runtime", "_loss"):
        for key in metrics or {}:
            if isinstance(key, str) and key.endswith(suffix) and len(key) > len(suffix):
                return key[: -len(suffix)]
    return "eval"


def loss_of(model: Any, task: str) -> str | None:
    """The training loss Transformers uses for this head: cross-entropy for a causal LM and
    for single-label classification (integer labels, the only ones measured), else unknown."""
    if task == "causal_lm":
        return "cross_entropy"
    config = getattr(model, "config", None)
    problem = getattr(config, "problem_type", None)
    if problem == "single_label_classification" or (
        problem is None and (getattr(config, "num_labels", 0) or 0) > 1
    ):
        return "cross_entropy"
    return None
