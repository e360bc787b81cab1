"""SGD with (heavy-ball) momentum and the learning-rate schedules.

Weight decay is part of the objective (model.py), so the optimiser only sees gradients.
The update is PyTorch's ``torch.optim.SGD``: ``v <- mu v + g``, ``W <- W - lr v``
(with ``mu = 0`` it is plain gradient descent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import UsageError

__all__ = ["SGD", "learning_rate", "SCHEDULES"]

SCHEDULES = ("constant", "step", "cosine")


class SGD:
    """Minibatch (or full-batch) gradient descent with momentum, updating params in place."""

    def __init__(self, params: Sequence[np.ndarray], *, momentum: float = 0.0):
        self.params = list(params)
        self.momentum = float(momentum)
        self.velocity = [np.zeros_like(W) for W in self.params] if momentum else None

    def step(self, grads: Sequence[np.ndarray], lr: float) -> None:
        """One update with learning rate ``lr``; ``grads`` may be overwritten."""
        if self.velocity is None:
            for W, g in zip(self.params, grads, strict=True):
                W -= lr * g
            return
        for W, v, g in zip(self.params, self.velocity, grads, strict=True):
            v *= self.momentum
            v += g
            W -= lr * v


def learning_rate(
    schedule: str,
    lr: float,
    epoch: int,
    epochs: int,
    *,
    step_every: int = 0,
    gamma: float = 0.1,
    lr_min: float = 0.0,
) -> float:
    """The learning rate of epoch ``epoch`` (0-based) of ``epochs``.

    Parameters
    ----------
    schedule : {"constant", "step", "cosine"}
        ``constant``: lr. ``step``: ``lr * gamma ** (epoch // step_every)`` (``step_every``
        0 means a third of the epochs). ``cosine``: ``lr_min + (lr - lr_min) (1 + cos(pi t)) / 2``
        with ``t = epoch / epochs``.
    lr, epoch, epochs : number
    step_every, gamma, lr_min : keyword-only
        Schedule parameters.
    """
    if schedule == "constant":
        return lr
    if schedule == "step":
        every = step_every or max(1, epochs // 3)
        return lr * gamma ** (epoch // every)
    if schedule == "cosine":
        return lr_min + (lr - lr_min) * 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, epochs)))
    raise UsageError(f"unknown learning-rate schedule {schedule!r}; expected one of {SCHEDULES}")
