"""A PyTorch Lightning callback that measures neural collapse while the model trains::

    import lightning.pytorch as pl
    from ncinspect.integrations.lightning import NeuralCollapseCallback

    trainer = pl.Trainer(
        max_epochs=30,
        logger=pl.loggers.CSVLogger("logs"),            # or TensorBoard, W&B, ...
        callbacks=[NeuralCollapseCallback("fc", every_n_epochs=5, dump="run.h5")],
    )
    trainer.fit(model, train_loader, val_loader)

Every ``every_n_epochs`` epochs, at the end of the training epoch, the callback runs
:func:`ncinspect.integrations.torch.measure` (two passes, a forward hook on the named
classifier module, ``eval()`` and ``no_grad``, the model's state restored) over the training
loader and the validation loader(s), and logs every metric with a number through each of the
trainer's loggers as ``nc/<split>/<key>`` (``nc/train/nc1``, ``nc/val/nc2_equinorm``, ...),
at the trainer's global step, with the epoch. The values are also put in
``trainer.callback_metrics`` (so ``ModelCheckpoint(monitor="nc/val/nc1")`` works) and the
results kept in :attr:`NeuralCollapseCallback.results`. Null metrics are not logged; their
reasons are in the results' ``null_reasons``.

Under DDP each rank measures its shard and the meters are merged with
:func:`ncinspect.integrations.distributed.all_reduce_meter`: every rank logs the numbers of
the whole data set. Both passes must see the same rows: a training loader with random
augmentation gives other features in pass 2, which is an error; give ``loaders=`` a loader
without augmentation then.

What the theory needs is recorded with every measurement (in each result's ``meta`` and in
the dump's snapshot metadata): ``epoch`` (epochs completed: ``epoch_0010`` after the 10th
epoch, as ``report`` reads it), ``step`` (the global step), ``loss`` (``loss=``, or what the
module says: a ``loss``/``loss_type`` hyperparameter, or a ``loss_fn``/``criterion``/``loss``
attribute such as ``torch.nn.CrossEntropyLoss()``), ``learning_rate`` and ``weight_decay``
read from the optimiser's parameter groups, ``optimizer``, and the user's ``dump_meta``.
``layers=`` measures hidden layers too (:func:`ncinspect.integrations.torch.measure`), and
``log_figures=True`` logs the Gram heatmap and the trajectory as images to the loggers that
take images (TensorBoard, W&B, ...).

Needs ``lightning`` (``pip install 'ncinspect[lightning]'``); ``pytorch_lightning`` works too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..errors import UsageError

try:
    from lightning.pytorch import Callback
except ImportError:  # the older package name
    try:
        from pytorch_lightning import Callback
    except ImportError:
        raise ImportError(
            "ncinspect.integrations.lightning needs Lightning: pip install 'ncinspect[lightning]'"
        ) from None

__all__ = ["NeuralCollapseCallback", "loss_kind", "optimizer_meta"]

#: metadata keys the callback sets itself
_OWN_KEYS = ("epoch", "split", "step", "layer", "layer_index", "module")


class NeuralCollapseCallback(Callback):
    """Measure neural collapse every ``every_n_epochs`` epochs and log it (module notes).

    Parameters
    ----------
    classifier : str or torch.nn.Module
        The last layer of the LightningModule, by name (``"fc"``, ``"model.head"``) or itself.
    every_n_epochs : int
        Measure after every ``every_n_epochs``-th completed epoch (``every_n_epochs``,
        ``2 * every_n_epochs``, ... epochs done), and never in between.
    train, val : bool
        Measure the trainer's training loader and its validation loader(s).
    loaders : mapping of split name -> loader, optional
        Measure these instead of the trainer's loaders (e.g. a training set without
        augmentation: ``{"train": plain_train_loader, "test": test_loader}``).
    dump : path, optional
        Also write each measurement's features, labels and classifier to this HDF5 dump, as
        snapshot ``<split>/epoch_<epochs completed:04d>`` with the recorded metadata (and
        ``<split>/epoch_<...>/layer_<k>`` per hooked layer). Under DDP the path must hold
        ``{rank}`` (one file per rank).
    prefix : str
        Logged names are ``f"{prefix}{split}/{key}"`` (``f"{prefix}{split}/{layer}/{key}"``
        for a hooked layer).
    batch_fn, max_batches
        As for :func:`ncinspect.integrations.torch.capture`.
    layers, pool
        Hidden layers to measure as well, as for :func:`ncinspect.integrations.torch.measure`
        (module names, or a mapping name -> module; ``pool="avg"`` for CNN maps).
    loss : str, optional
        The kind of training loss (``"cross_entropy"``, ``"square"``, ...); default what the
        module says (:func:`loss_kind`), else not recorded.
    dump_meta : mapping, or callable ``(trainer, pl_module) -> mapping``, optional
        Metadata of your own, recorded with every measurement (may not set ``epoch``,
        ``split``, ``step``, ``layer``, ``layer_index`` or ``module``).
    log_figures : bool
        Also log the Gram heatmap of each measured split and its trajectory so far as
        images, to each logger that takes images (``log_image`` as W&B's, or a TensorBoard
        ``SummaryWriter``); CSV loggers get the scalars only. Drawn on global rank 0.
    **options
        Passed to :class:`~ncinspect.Meter` (``center``, ``per_class``, ``min_class_count``,
        ``precision``, ``ignore_index``: rows with this label, e.g. padding, left out on the
        device, without a read of the labels on the host).
    """

    def __init__(
        self,
        classifier: Any = "fc",
        *,
        every_n_epochs: int = 1,
        train: bool = True,
        val: bool = True,
        loaders: Mapping[str, Iterable[Any]] | None = None,
        dump: str | os.PathLike | None = None,
        prefix: str = "nc/",
        batch_fn: Callable[[Any], tuple[Any, Any]] | None = None,
        max_batches: int | None = None,
        layers: Any = None,
        pool: str | None = None,
        loss: str | None = None,
        dump_meta: Mapping[str, Any] | Callable[[Any, Any], Mapping[str, Any]] | None = None,
        log_figures: bool = False,
        **options: Any,
    ):
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int):
            raise UsageError(f"every_n_epochs must be an integer >= 1, got {every_n_epochs!r}")
        if every_n_epochs < 1:
            raise UsageError(f"every_n_epochs must be an integer >= 1, got {every_n_epochs!r}")
        from .hook import check_max_batches

        max_batches = check_max_batches(max_batches)
        bad = {"snapshot"} & set(options)
        if bad:
            raise UsageError(f"NeuralCollapseCallback: {sorted(bad)} are set by the callback")
        if loss is not None and not isinstance(loss, str):
            raise UsageError(f"loss must name the loss (a str, e.g. 'cross_entropy'), got {loss!r}")
        if dump_meta is not None and not (callable(dump_meta) or isinstance(dump_meta, Mapping)):
            raise UsageError(
                "dump_meta must be a mapping or a callable (trainer, module) -> mapping"
            )
        if isinstance(dump_meta, Mapping):
            _check_user_meta(dump_meta)
        self.classifier, self.every_n_epochs = classifier, every_n_epochs
        self.train, self.val, self.loaders = train, val, loaders
        self.dump, self.prefix = dump, prefix
        self.batch_fn, self.max_batches, self.options = batch_fn, max_batches, options
        self.layers, self.pool, self.loss = layers, pool, loss
        self.dump_meta, self.log_figures = dump_meta, log_figures
        #: (epochs completed, split, SnapshotResult) of the penultimate layer
        self.results: list[tuple[int, str, Any]] = []
        #: (epochs completed, split, layer name, SnapshotResult) of each hooked layer
        self.layer_results: list[tuple[int, str, str, Any]] = []

    def _splits(self, trainer: Any) -> list[tuple[str, Any]]:
        if self.loaders is not None:
            return list(self.loaders.items())
        out = []
        if self.train and trainer.train_dataloader is not None:
            out.append(("train", trainer.train_dataloader))
        vals = trainer.val_dataloaders if self.val else None
        if isinstance(vals, (list, tuple)):
            out += [(f"val_{i}" if len(vals) > 1 else "val", v) for i, v in enumerate(vals)]
        elif vals is not None:
            out.append(("val", vals))
        return out

    def _dump_path(self, trainer: Any) -> str | None:
        if self.dump is None:
            return None
        path = os.fspath(self.dump)
        if trainer.world_size > 1:
            if "{rank}" not in path:
                raise UsageError(
                    f"NeuralCollapseCallback: with {trainer.world_size} processes the dump "
                    "path must hold '{rank}' (one file per rank), e.g. 'run-{rank}.h5'"
                )
            path = path.replace("{rank}", str(trainer.global_rank))
        return path

    def run_meta(self, trainer: Any, pl_module: Any) -> dict[str, Any]:
        """What is recorded with a measurement now: epochs completed, global step, loss
        kind, the optimiser's learning rate and weight decay, the user's metadata."""
        meta: dict[str, Any] = {
            "epoch": trainer.current_epoch + 1,
            "step": int(trainer.global_step),
        }
        loss = self.loss if self.loss is not None else loss_kind(pl_module)
        if loss is not None:
            meta["loss"] = loss
        meta.update(optimizer_meta(getattr(trainer, "optimizers", None) or []))
        user = self.dump_meta(trainer, pl_module) if callable(self.dump_meta) else self.dump_meta
        if user:
            _check_user_meta(user)
            meta.update(user)
        return meta

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        done = trainer.current_epoch + 1  # epochs completed
        if done % self.every_n_epochs:
            return
        meta = self.run_meta(trainer, pl_module)
        from .layers import check_names, merge_logged

        values: dict[str, float] = {}
        measured = []
        splits = self._splits(trainer)
        check_names([str(split) for split, _ in splits], "NeuralCollapseCallback splits")
        for split, loader in splits:
            new = self.measure_split(trainer, pl_module, split, loader, meta)
            merge_logged(values, new, f"split {split!r}")
            measured.append(split)
        if values:  # one row per measurement in row-wise loggers (CSVLogger)
            # the loggers' own ``epoch`` column is Lightning's (0-based, as its other rows)
            for logger in trainer.loggers:
                logger.log_metrics(
                    {**values, "epoch": trainer.current_epoch}, step=trainer.global_step
                )
        if self.log_figures and measured and trainer.is_global_zero:
            self._log_figures(trainer, measured)

    def measure_split(
        self,
        trainer: Any,
        pl_module: Any,
        split: str,
        loader: Iterable[Any],
        meta: Mapping[str, Any] | int | None = None,
    ) -> dict[str, float]:
        """Measure one loader now: the values to log (also put in ``callback_metrics``);
        the results are appended to :attr:`results` (and :attr:`layer_results`).
        ``meta`` is :meth:`run_meta`'s (default: taken now)."""
        import torch

        from .distributed import all_reduce_meter
        from .layers import merge_logged
        from .torch import measure

        if meta is None or isinstance(meta, int):  # the 0.2 signature passed the epoch
            meta = self.run_meta(trainer, pl_module)
        meta = {**meta, "split": split}
        dump = self._dump_path(trainer)
        dump_args = {}
        if dump is not None:
            dump_args = {
                "dump": dump,
                "snapshot": f"{split}/epoch_{meta['epoch']:04d}",
                "dump_meta": meta,
            }
        distributed = trainer.world_size > 1 and torch.distributed.is_initialized()
        got = measure(
            pl_module,
            self.classifier,
            loader,
            device=pl_module.device,
            batch_fn=self.batch_fn,
            max_batches=self.max_batches,
            reduce=all_reduce_meter if distributed else None,
            layers=self.layers,
            pool=self.pool,
            **dump_args,
            **self.options,
        )
        named = got if isinstance(got, dict) else {"penultimate": got}
        values: dict[str, float] = {}
        for name, result in named.items():
            result.epoch, result.split = meta["epoch"], split
            result.meta.update({k: v for k, v in meta.items() if k not in ("epoch", "split")})
            where = f"{self.prefix}{split}/" + ("" if name == "penultimate" else f"{name}/")
            merge_logged(
                values,
                {
                    f"{where}{key}": float(value)
                    for key, value in result.metrics.items()
                    if isinstance(value, (int, float)) and value is not None
                },
                f"split {split!r}, layer {name!r}",
            )
            if name == "penultimate":
                self.results.append((meta["epoch"], split, result))
            else:
                self.layer_results.append((meta["epoch"], split, name, result))
        for key, value in values.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        return values

    def _log_figures(self, trainer: Any, splits: list[str]) -> None:
        """The Gram heatmap of each split's latest measurement and its trajectory so far, as
        images, to each logger that takes images."""
        import matplotlib.pyplot as plt

        from ..plots import plot_gram, plot_trajectory

        step = trainer.global_step
        for split in splits:
            history = [r for _, s, r in self.results if s == split]
            if not history:
                continue
            figures = {"gram": plot_gram(history[-1])}
            figures["trajectory"] = plot_trajectory(history, style="screen", title=split)
            for kind, fig in figures.items():
                image = figure_image(fig)
                plt.close(fig)
                for logger in trainer.loggers:
                    log_image(logger, f"{self.prefix}{split}/{kind}", image, step)


def figure_image(fig: Any, dpi: float = 100):
    """A matplotlib figure as an (H, W, 3) uint8 array, drawn with Agg."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(dpi)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def log_image(logger: Any, key: str, image: Any, step: int) -> bool:
    """Log an (H, W, 3) image through ``logger`` if it takes images; True if it did."""
    if hasattr(logger, "log_image"):  # W&B, Neptune, ... (Lightning's image API)
        logger.log_image(key=key, images=[image], step=step)
        return True
    experiment = getattr(logger, "experiment", None)
    if hasattr(experiment, "add_image"):  # TensorBoard's SummaryWriter
        experiment.add_image(key, image, global_step=step, dataformats="HWC")
        return True
    return False  # CSVLogger and other scalar-only loggers


def _check_user_meta(meta: Mapping[str, Any]) -> None:
    own = sorted(set(map(str, meta)) & set(_OWN_KEYS))
    if own:
        raise UsageError(
            f"NeuralCollapseCallback: dump_meta may not set {own}; the callback records them"
        )


def _snake(name: str) -> str:
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def loss_kind(pl_module: Any) -> str | None:
    """The kind of loss ``pl_module`` says it trains with, or None.

    A string hyperparameter ``loss`` or ``loss_type`` (``self.save_hyperparameters()``), a
    string attribute ``loss_kind``, or a ``loss_fn`` / ``criterion`` / ``loss`` attribute
    that is a torch loss module (``CrossEntropyLoss`` -> ``"cross_entropy"``, ``MSELoss`` ->
    ``"mse"``) or a function (``torch.nn.functional.cross_entropy`` -> ``"cross_entropy"``).
    """
    hparams = getattr(pl_module, "hparams", None)
    if isinstance(hparams, Mapping):
        for key in ("loss", "loss_type"):
            if isinstance(hparams.get(key), str) and hparams[key].strip():
                return hparams[key]
    kind = getattr(pl_module, "loss_kind", None)
    if isinstance(kind, str) and kind.strip():
        return kind
    for attr in ("loss_fn", "criterion", "loss"):
        value = getattr(pl_module, attr, None)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str) and value.strip():
            return value
        cls = type(value).__name__
        if hasattr(value, "forward") and cls.endswith("Loss"):
            return _snake(cls[: -len("Loss")])
        name = getattr(value, "__name__", None)
        if callable(value) and isinstance(name, str) and ("loss" in name or "entropy" in name):
            return name
    return None


def optimizer_meta(optimizers: Iterable[Any]) -> dict[str, Any]:
    """``learning_rate``, ``weight_decay`` and ``optimizer`` of the optimisers now.

    One value when every parameter group agrees; with several groups the per-group values
    are also in ``learning_rate_groups`` / ``weight_decay_groups`` (and the single value is
    left out when they differ: no one number describes them).
    """
    optimizers = list(optimizers)
    groups = [g for opt in optimizers for g in getattr(opt, "param_groups", [])]
    if not groups:
        return {}
    meta: dict[str, Any] = {
        "optimizer": ", ".join(type(opt).__name__ for opt in optimizers),
    }
    for key, name in (("lr", "learning_rate"), ("weight_decay", "weight_decay")):
        values = [float(g[key]) for g in groups if key in g]
        if len(values) != len(groups):
            continue
        if len(set(values)) == 1:
            meta[name] = values[0]
        if len(groups) > 1:
            meta[f"{name}_groups"] = values
    return meta
