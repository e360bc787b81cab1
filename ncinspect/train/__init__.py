"""The bundled numpy trainer: deep bias-free ReLU networks, square loss, weight decay.

Readable in one sitting: :mod:`.model` (forward and backward side by side), :mod:`.optim`
(SGD with momentum, schedules), :mod:`.data` (Gaussian classes, mnist1d, user files),
:mod:`.config` (one dataclass) and :mod:`.loop` (``fit``, writing dumps)::

    from ncinspect.train import TrainConfig, fit
    hist = fit(TrainConfig(epochs=500, weight_decay=5e-3), dump="run.h5")
"""

from __future__ import annotations

from .config import TrainConfig
from .data import Dataset, from_file, gaussian, load_dataset, mnist1d
from .loop import History, evaluate, fit
from .model import forward, init_params, objective_and_grads

__all__ = [
    "TrainConfig",
    "fit",
    "History",
    "evaluate",
    "Dataset",
    "gaussian",
    "mnist1d",
    "from_file",
    "load_dataset",
    "forward",
    "init_params",
    "objective_and_grads",
]
