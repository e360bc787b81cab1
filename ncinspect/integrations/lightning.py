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

Needs ``lightning`` (``pip install 'ncinspect[lightning]'``); ``pytorch_lightning`` works too.
"""

from __future__ import annotations

import os
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

__all__ = ["NeuralCollapseCallback"]


class NeuralCollapseCallback(Callback):
    """Measure neural collapse every ``every_n_epochs`` epochs and log it (module notes).

    Parameters
    ----------
    classifier : str or torch.nn.Module
        The last layer of the LightningModule, by name (``"fc"``, ``"model.head"``) or itself.
    every_n_epochs : int
        Measure after epochs ``every_n_epochs - 1``, ``2 * every_n_epochs - 1``, ... (and
        never in between).
    train, val : bool
        Measure the trainer's training loader and its validation loader(s).
    loaders : mapping of split name -> loader, optional
        Measure these instead of the trainer's loaders (e.g. a training set without
        augmentation: ``{"train": plain_train_loader, "test": test_loader}``).
    dump : path, optional
        Also write each measurement's features, labels and classifier to this HDF5 dump, as
        snapshot ``<split>/epoch_<epoch:04d>`` with ``epoch`` and ``split`` metadata. Under
        DDP the path must hold ``{rank}`` (one file per rank).
    prefix : str
        Logged names are ``f"{prefix}{split}/{key}"``.
    batch_fn, max_batches
        As for :func:`ncinspect.integrations.torch.capture`.
    **options
        Passed to :class:`~ncinspect.Meter` (``center``, ``per_class``, ``min_class_count``,
        ``precision``).
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
        **options: Any,
    ):
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int):
            raise UsageError(f"every_n_epochs must be an integer >= 1, got {every_n_epochs!r}")
        if every_n_epochs < 1:
            raise UsageError(f"every_n_epochs must be an integer >= 1, got {every_n_epochs!r}")
        bad = {"dump", "snapshot", "dump_meta"} & set(options)
        if bad:
            raise UsageError(f"NeuralCollapseCallback: {sorted(bad)} are set by the callback")
        self.classifier, self.every_n_epochs = classifier, every_n_epochs
        self.train, self.val, self.loaders = train, val, loaders
        self.dump, self.prefix = dump, prefix
        self.batch_fn, self.max_batches, self.options = batch_fn, max_batches, options
        self.results: list[tuple[int, str, Any]] = []  #: (epoch, split, SnapshotResult)

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

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs:
            return
        values: dict[str, float] = {}
        for split, loader in self._splits(trainer):
            values.update(self.measure_split(trainer, pl_module, split, loader, epoch))
        if values:  # one row per measurement in row-wise loggers (CSVLogger)
            for logger in trainer.loggers:
                logger.log_metrics({**values, "epoch": epoch}, step=trainer.global_step)

    def measure_split(
        self, trainer: Any, pl_module: Any, split: str, loader: Iterable[Any], epoch: int
    ) -> dict[str, float]:
        """Measure one loader now: the values to log (also put in ``callback_metrics``);
        the result is appended to :attr:`results`."""
        import torch

        from .distributed import all_reduce_meter
        from .torch import measure

        dump = self._dump_path(trainer)
        dump_args = {}
        if dump is not None:
            dump_args = {
                "dump": dump,
                "snapshot": f"{split}/epoch_{epoch:04d}",
                "dump_meta": {"epoch": epoch, "split": split},
            }
        distributed = trainer.world_size > 1 and torch.distributed.is_initialized()
        result = measure(
            pl_module,
            self.classifier,
            loader,
            device=pl_module.device,
            batch_fn=self.batch_fn,
            max_batches=self.max_batches,
            reduce=all_reduce_meter if distributed else None,
            **dump_args,
            **self.options,
        )
        result.epoch, result.split = epoch, split
        self.results.append((epoch, split, result))
        values = {
            f"{self.prefix}{split}/{key}": float(value)
            for key, value in result.metrics.items()
            if isinstance(value, (int, float)) and value is not None
        }
        for key, value in values.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        return values
