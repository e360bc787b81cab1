"""A Hugging Face Transformers ``TrainerCallback`` that measures neural collapse at each
evaluation::

    from transformers import Trainer, TrainingArguments
    from ncinspect.integrations.transformers import NeuralCollapseCallback

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val)
    nc = NeuralCollapseCallback(dump="run.h5").attach(trainer)
    trainer.train()        # every evaluation also logs nc/eval/nc1, nc/eval/nc2_..., ...

At each evaluation (``on_evaluate``) the callback runs two passes of the evaluation loader
through the model (``eval()``, ``torch.no_grad()``, the model's train/eval state restored),
a forward hook on the classifier head feeding its input to a :class:`~ncinspect.Meter` with
the head's ``weight`` and ``bias``: the statistics are reduced batch by batch on the model's
device, no N x d array reaches the host.

- **Sequence classification** (``task="classification"``): the head is the module whose
  output is the model's logits (found by one probing forward call: the last module with a 2-D
  ``weight`` whose output is the logits, e.g. ``classifier`` of BERT, ``out_proj`` of
  RoBERTa's head); its input, one row per sample, is measured against the batch's labels.
  Token-level labels (token classification) are flattened; rows labelled ``ignore_index``
  (-100) are dropped: on the host for host labels, by the Meter's ``ignore_index`` on the
  device for labels already there (no read of the mask, :class:`~ncinspect.Meter`).
- **Causal language models** (``task="causal_lm"``): the LM head
  (``model.get_output_embeddings()``) is the classifier, C is the vocabulary size; the hidden
  state at position t is measured against the token at t + 1 (the next-token labels, shifted
  as the model's loss shifts them), rows whose next-token label is ``ignore_index`` (padding)
  are dropped. Tokens that never occur are absent classes (spec/metrics.md): the class-level
  metrics are over the present tokens, the decisions take the argmax over the whole vocabulary.
  Without ``labels`` in a batch the labels are its ``input_ids`` (``attention_mask`` zeros
  dropped).

``task="auto"`` (default) takes ``causal_lm`` for a model whose class name ends with
``ForCausalLM`` or ``LMHeadModel``, else ``classification``.

The values (every metric with a number) are logged through the Trainer's own logging,
``trainer.log`` (so ``state.log_history``, W&B, TensorBoard, MLflow and every ``report_to``
integration get them), as ``nc/<split>/<key>`` where ``split`` is the evaluation's metric
prefix (``eval``, or ``eval_<name>`` for a dict of evaluation sets); they are also added to
the metrics dict that ``trainer.evaluate()`` returns. The callback needs the Trainer for
that: :meth:`NeuralCollapseCallback.attach` adds it and remembers the Trainer. Null metrics
are not logged; their reasons are in the results' ``null_reasons``
(:attr:`NeuralCollapseCallback.results`).

``dump=`` also writes each measurement's features, labels and classifier to an HDF5 dump, as
snapshot ``<split>/step_<global step:07d>`` with ``step``, ``split``, ``loss`` and
``trainer_epoch`` (the Trainer's fractional epoch; the integer ``epoch`` of the dump format
is not written, so snapshots sort by step) metadata, as the Lightning callback does.

Needs ``transformers`` and ``torch`` (``pip install 'ncinspect[transformers]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import UsageError
from ..stats.namespace import torch_upload
from .hf_heads import find_head, loss_of, split_of
from .hook import (
    ClassifierHook,
    check_max_batches,
    forward_hooked,
    model_device_dtype,
    resolve_module,
    split_batch,
)

try:
    from transformers import TrainerCallback
except ImportError:
    raise ImportError(
        "ncinspect.integrations.transformers needs Hugging Face Transformers: "
        "pip install 'ncinspect[transformers]'"
    ) from None

__all__ = ["NeuralCollapseCallback", "find_head"]

_TASKS = ("auto", "classification", "causal_lm")


class NeuralCollapseCallback(TrainerCallback):
    """Measure neural collapse at each evaluation of a ``transformers.Trainer`` (module notes).

    Parameters
    ----------
    classifier : str or torch.nn.Module, optional
        The classifier head (its input is measured). Default: the LM head
        (``get_output_embeddings()``) of a causal LM, else the module whose output is the
        logits.
    task : {"auto", "classification", "causal_lm"}
    eval : bool
        Measure the Trainer's evaluation loader at each evaluation (default True).
    train : bool
        Also measure the Trainer's training loader at each evaluation (the whole loader
        unless ``max_batches``; default False).
    loaders : mapping of split name -> loader, optional
        Measure these at each evaluation instead of the Trainer's loaders; batches as the
        Trainer's (dicts holding ``labels``).
    dump : path, optional
        Also write each measurement to this HDF5 dump (module notes). Under DDP the path must
        hold ``{rank}`` (one file per rank).
    prefix : str
        Logged names are ``f"{prefix}{split}/{key}"``.
    ignore_index : int
        Label of the rows to drop (padding), -100 as in Transformers' losses.
    max_batches : int, optional
        Measure at most this many batches of each loader.
    batch_fn : callable, optional
        ``batch_fn(batch) -> (inputs, labels)`` for batches without a ``labels`` key.
    trainer : transformers.Trainer, optional
        The Trainer whose ``log`` the values go through (or call :meth:`attach`).
    **options
        Passed to :class:`~ncinspect.Meter` (``center``, ``per_class``, ``min_class_count``,
        ``precision``).
    """

    def __init__(
        self,
        classifier: Any = None,
        *,
        task: str = "auto",
        eval: bool = True,
        train: bool = False,
        loaders: Mapping[str, Iterable[Any]] | None = None,
        dump: str | os.PathLike | None = None,
        prefix: str = "nc/",
        ignore_index: int = -100,
        max_batches: int | None = None,
        batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
        trainer: Any = None,
        **options: Any,
    ):
        if task not in _TASKS:
            raise UsageError(f"task must be one of {', '.join(_TASKS)}, got {task!r}")
        bad = {"dump", "snapshot", "dump_meta", "weights", "bias", "n_classes"} & set(options)
        if bad:
            raise UsageError(f"NeuralCollapseCallback: {sorted(bad)} are set by the callback")
        max_batches = check_max_batches(max_batches)
        self.classifier, self.task = classifier, task
        self.eval, self.train, self.loaders = eval, train, loaders
        self.dump, self.prefix, self.ignore_index = dump, prefix, ignore_index
        self.max_batches, self.batch_fn, self.options = max_batches, batch_fn, options
        self.trainer = trainer
        self._step_done: int | None = None
        #: (global step, split, SnapshotResult) of every measurement
        self.results: list[tuple[int, str, Any]] = []

    def attach(self, trainer: Any) -> NeuralCollapseCallback:
        """Add this callback to ``trainer`` (once) and log through it; returns self."""
        self.trainer = trainer
        if self not in trainer.callback_handler.callbacks:
            trainer.add_callback(self)
        return self

    # -- Trainer events ------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._check_attached()

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        self._check_attached()
        split = split_of(metrics)
        step = int(getattr(state, "global_step", 0) or 0)
        first = self._step_done != step  # a dict of eval sets calls on_evaluate once per set
        self._step_done = step
        loaders: list[tuple[str, Iterable[Any]]] = []
        if self.loaders is not None:
            if first:  # once per evaluation, not once per eval set
                loaders = list(self.loaders.items())
        else:
            if self.eval and kwargs.get("eval_dataloader") is not None:
                loaders.append((split, kwargs["eval_dataloader"]))
            train = kwargs.get("train_dataloader") if self.train and first else None
            if train is None and self.train and first:  # trainer.evaluate() outside train()
                if getattr(self.trainer, "train_dataset", None) is not None:
                    train = self.trainer.get_train_dataloader()
            if train is not None:
                loaders.append(("train", train))
        from .layers import check_names, merge_logged

        check_names([str(name) for name, _ in loaders], "NeuralCollapseCallback splits")
        values: dict[str, float] = {}
        for name, loader in loaders:
            merge_logged(values, self.measure_split(model, name, loader, state), f"split {name!r}")
        if values:
            if metrics is not None:
                metrics.update(values)  # what trainer.evaluate() returns
            self.trainer.log(dict(values))
        return control

    # -- measuring -----------------------------------------------------------------------
    def measure_split(self, model: Any, split: str, loader: Iterable[Any], state: Any = None):
        """Measure one loader now: the values to log; the result is appended to
        :attr:`results`."""
        import torch

        from ..meter.meter import Meter
        from .distributed import all_reduce_meter

        task = self._task(model)
        module, name = self._head(model, task, loader)
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        step = int(getattr(state, "global_step", 0) or 0)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        distributed = distributed and torch.distributed.get_world_size() > 1
        meter = Meter(
            weights=weight,
            bias=bias,
            ignore_index=self.ignore_index,  # rows of device labels are dropped there
            **self._dump_args(split, step, state, model, task),
            **self.options,
        )
        device, dtype = model_device_dtype(model)
        modes = {m: m.training for m in model.modules()}
        try:
            model.eval()
            with torch.no_grad(), ClassifierHook(module) as hook:
                for pass_number in (1, 2):
                    for i, batch in enumerate(loader):
                        if self.max_batches is not None and i >= self.max_batches:
                            break
                        h, y = self._rows(model, hook, name, batch, i, task, device, dtype)
                        if h.shape[0]:
                            meter.update(h, y)
                    if distributed:
                        all_reduce_meter(meter)
                    if pass_number == 1:
                        meter.next_pass()
        finally:
            for m, training in modes.items():
                m.training = training
        result = meter.compute()
        result.split = split
        self.results.append((step, split, result))
        return {
            f"{self.prefix}{split}/{key}": float(value)
            for key, value in result.metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }

    def _rows(self, model, hook, name, batch, i, task, device, dtype):
        """The (features, labels) rows of one batch, on the model's device: the head's input,
        labels flattened (shifted by one for a causal LM), ``ignore_index`` rows dropped.

        Labels that come on the host (a DataLoader's) are masked there, the kept rows taken
        from the features by an index sent without waiting (``torch_upload``) and the labels
        left on the host (the Meter sends them the same way): nothing waits for the device.
        Labels already on the device (batches placed there, as Accelerate's loaders do) are
        not masked at all: every row goes to the Meter, made with ``ignore_index``, which
        leaves the ignored rows out of its sums on the device (no read of the mask)."""
        import torch

        inputs, labels = self._split(batch, task)
        give = "classifier= the module"
        h = forward_hooked(model, hook, name, inputs, device, dtype, give=give)[0]
        labels = torch.as_tensor(labels)
        if task == "causal_lm":
            if labels.ndim != 2 or h.shape[0] != labels.numel():
                raise UsageError(
                    f"batch {i}: a causal LM needs (batch, tokens) labels matching the LM head's "
                    f"{h.shape[0]} rows, got labels of shape {tuple(labels.shape)}"
                )
            b, t = labels.shape
            h = h.reshape(b, t, -1)[:, :-1].reshape(-1, h.shape[-1])
            labels = labels[:, 1:].reshape(-1)  # position t predicts token t + 1
        else:
            labels = labels.reshape(-1)
            if labels.shape[0] != h.shape[0]:
                raise UsageError(
                    f"batch {i} has {labels.shape[0]} labels but the classifier {name!r} saw "
                    f"{h.shape[0]} rows; give classifier= the head whose input holds one row "
                    "per label"
                )
        if not _on_host(labels):  # the Meter leaves the ignored rows out, on the device
            return h, labels.to(h.device, non_blocking=True)
        keep = labels != self.ignore_index
        if not bool(keep.all()):  # a host read: free
            index = torch.nonzero(keep).reshape(-1)
            if h.device.type != "cpu":
                index = torch_upload(index, h.device)
            h, labels = h.index_select(0, index), labels[keep]
        return h, labels  # host labels: the Meter sends them on without waiting

    def _split(self, batch, task):
        if self.batch_fn is not None:
            return self.batch_fn(batch)
        if task == "causal_lm" and isinstance(batch, Mapping) and "labels" not in batch:
            if "input_ids" not in batch:
                raise UsageError(
                    f"a causal-LM batch has keys {sorted(map(str, batch))} but neither "
                    "'labels' nor 'input_ids'; pass batch_fn=lambda b: (inputs, labels)"
                )
            import torch

            labels = torch.as_tensor(batch["input_ids"])
            if "attention_mask" in batch:  # by value, not by a mask index (no read on a device)
                pad = torch.as_tensor(batch["attention_mask"], device=labels.device) == 0
                labels = labels.masked_fill(pad, self.ignore_index)
            return dict(batch), labels
        return split_batch(batch, None)

    def _task(self, model) -> str:
        if self.task != "auto":
            return self.task
        kind = type(model).__name__
        return "causal_lm" if kind.endswith(("ForCausalLM", "LMHeadModel")) else "classification"

    def _head(self, model, task, loader):
        if self.classifier is not None:
            return resolve_module(model, self.classifier)
        cached = getattr(self, "_found", None)
        if cached is not None and cached[0] is model:
            return cached[1], cached[2]
        module, name = find_head(model, task, loader, batch_fn=self.batch_fn)
        self._found = (model, module, name)
        return module, name

    def _dump_args(self, split, step, state, model, task) -> dict[str, Any]:
        if self.dump is None:
            return {}
        import torch

        path = os.fspath(self.dump)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            if world > 1:
                if "{rank}" not in path:
                    raise UsageError(
                        f"NeuralCollapseCallback: with {world} processes the dump path must "
                        "hold '{rank}' (one file per rank), e.g. 'run-{rank}.h5'"
                    )
                path = path.replace("{rank}", str(torch.distributed.get_rank()))
        meta: dict[str, Any] = {"step": step, "split": split}
        epoch = getattr(state, "epoch", None)
        if isinstance(epoch, (int, float)):  # fractional mid-epoch: not the integer ``epoch``
            meta["trainer_epoch"] = float(epoch)
        loss = loss_of(model, task)
        if loss is not None:
            meta["loss"] = loss
        return {"dump": path, "snapshot": f"{split}/step_{step:07d}", "dump_meta": meta}

    def _check_attached(self) -> None:
        if self.trainer is None:
            raise UsageError(
                "NeuralCollapseCallback logs through the Trainer: use "
                "NeuralCollapseCallback(...).attach(trainer) (or pass trainer=)"
            )


def _on_host(labels: Any) -> bool:
    """Whether a batch's labels lie in host memory (a DataLoader's): masking them there reads
    nothing from a device."""
    return labels.device.type == "cpu"
