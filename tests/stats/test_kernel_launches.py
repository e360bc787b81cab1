"""The kernels one ``Meter.update`` launches on an accelerator: a fixed number per layout.

On a GPU every aten operation that is not a view is a kernel launch, with a fixed cost of a
few microseconds; at 256 rows that cost, not the arithmetic, is the latency of a batch
(issue 21: ``update`` on 256 rows within 1 ms). Torch CPU tensors are sent through the
namespace kernel that device arrays take (``stats.device.on_host`` says False, as for
``tests/stats/conftest.py``'s "torch-kernel"), and a ``TorchDispatchMode`` counts what one
update dispatches. The count must not grow with the rows or the classes (no loop over
either in Python), and stays within the budget measured when the kernel was made lean
(``benchmarks/bench_device.py`` prints it on the device at hand).
"""

from __future__ import annotations

import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ncinspect
from ncinspect.stats import device as stats_device

#: aten operations that make a view: no kernel on a GPU
VIEWS = {
    "alias", "as_strided", "detach", "expand", "lift_fresh", "permute", "reshape", "select",
    "slice", "squeeze", "t", "transpose", "unsqueeze", "view", "_reshape_alias",
}  # fmt: skip

#: (pass 1, pass 2) kernels of one update: the scores layout (C < d, own NCC centres),
#: the direct layout (C >= d), and the float32 products with their float64 recheck. Pass 2
#: grew by 3 (15 in float32) in the tenth stop: the rows of zeros, whose logits are b
#: exactly, go to the first largest b (stats/xp.py decisions), and float32's recheck decides
#: the classifier again from W h + b itself (stats/device.py SecondState._recheck)
BUDGET = {"scores": (23, 97), "direct": (23, 97), "float32": (23, 187)}


class Kernels(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in VIEWS:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def kernels(monkeypatch, rows: int, d: int, C: int, precision: str) -> tuple:
    """(pass 1, pass 2) :class:`Kernels` of one update of ``rows`` rows."""
    monkeypatch.setattr(stats_device, "on_host", lambda xp, h: False)
    g = torch.Generator().manual_seed(rows * 1000 + C)
    w, b = torch.randn(C, d, generator=g), torch.randn(C, generator=g)
    h = torch.randn(rows, d, generator=g)
    y = torch.arange(rows) % C  # every class present
    meter = ncinspect.Meter(weights=w, bias=b, precision=precision)
    counted = []
    for _ in range(2):
        meter.update(h, y)  # first use: the constants placed on the device
        with Kernels() as k:
            meter.update(h, y)
        counted.append(k.ops)
        if meter.pass_number == 1:
            meter.next_pass()
    meter.compute()  # the passes were consistent (the same rows twice each)
    return tuple(counted)


CASES = {  # layout: (d, C, precision)
    "scores": (64, 10, "float64"),
    "direct": (16, 40, "float64"),
    "float32": (64, 10, "float32"),
}


@pytest.mark.parametrize("layout", sorted(CASES))
def test_kernels_per_update_do_not_grow_with_rows_or_classes(monkeypatch, layout):
    d, C, precision = CASES[layout]
    base = kernels(monkeypatch, 64, d, C, precision)
    more_rows = kernels(monkeypatch, 640, d, C, precision)
    more_classes = kernels(monkeypatch, 640, d, C + 5, precision)
    for p in range(2):
        assert sum(more_rows[p].values()) == sum(base[p].values()), (p, more_rows[p], base[p])
        assert sum(more_classes[p].values()) == sum(base[p].values()), (p, more_classes[p])


@pytest.mark.parametrize("layout", sorted(CASES))
def test_kernels_per_update_within_budget(monkeypatch, layout):
    d, C, precision = CASES[layout]
    counted = kernels(monkeypatch, 256, d, C, precision)
    for p, (ops, budget) in enumerate(zip(counted, BUDGET[layout], strict=True)):
        n = sum(ops.values())
        assert n <= budget, (
            f"{layout}: pass {p + 1} launches {n} kernels per update (budget {budget}): "
            f"{dict(ops.most_common())}"
        )


def test_the_count_sees_every_kernel(monkeypatch):
    """The probe counts: a pass-2 update makes its products and scatter-adds."""
    _, second = kernels(monkeypatch, 64, 64, 10, "float64")
    assert second["mm"] >= 2 and second["index_add_"] >= 4
    assert sum(second.values()) > 50
