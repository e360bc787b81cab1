"""A small real torch model for the tests: an MLP trained for a few epochs on CPU on
Gaussian classes. Imported by the torch tests (which fail, not skip, without torch)."""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn

torch.set_num_threads(1)  # tiny model: threads only add overhead on a shared machine


class MLP(nn.Module):
    """``features(x)`` are the penultimate activations; ``fc`` is the classifier."""

    def __init__(self, d_in: int, width: int, d: int, C: int):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, width), nn.ReLU(), nn.Linear(width, d), nn.ReLU())
        self.fc = nn.Linear(d, C)

    def features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.fc(self.features(x))


def gaussian_classes(C=4, n=60, d_in=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((C, d_in))
    y = np.repeat(np.arange(C), n)
    x = centres[y] + rng.standard_normal((len(y), d_in))
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y)


@functools.lru_cache(maxsize=4)
def trained_mlp(C=4, n=60, d_in=8, width=32, d=16, epochs=5, seed=0):
    """``(model, x, y)``: the model trained for ``epochs`` epochs of minibatch SGD (cached:
    callers must not change the model)."""
    torch.manual_seed(seed)
    x, y = gaussian_classes(C, n, d_in, seed)
    model = MLP(d_in, width, d, C)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(32):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model, x, y


def loader(x, y, batch_size=37):
    """A plain torch DataLoader over ``(x, y)`` in a fixed order."""
    ds = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)


def direct_arrays(model, x):
    """Features, outputs, weights and bias computed directly, as float64 numpy."""
    with torch.no_grad():
        h = model.features(x)
        out = model.fc(h)
    return (
        h.double().numpy(),
        out.double().numpy(),
        model.fc.weight.detach().double().numpy(),
        model.fc.bias.detach().double().numpy(),
    )
