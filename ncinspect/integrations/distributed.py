"""Merge :class:`~ncinspect.Meter` statistics across the processes of a ``torch.distributed``
group (DDP, Lightning, ``torchrun``)::

    from ncinspect.integrations.distributed import all_reduce_meter

    for x, y in loader:               # each rank sees its shard (DistributedSampler)
        meter.update(features(x), y)
    all_reduce_meter(meter)           # every rank now holds the class sums of all ranks
    meter.next_pass()
    for x, y in loader:
        meter.update(features(x), y)
    all_reduce_meter(meter)
    result = meter.compute()          # the same on every rank

Each rank's statistics travel as bytes (:func:`ncinspect.meter_state.pack`: a JSON header and
the raw float64 arrays, no pickle) through ``all_gather``, and every rank merges them in rank
order, so all ranks hold bit-identical statistics: those of :meth:`Meter.merge` over the
ranks' meters, equal to one process seeing every row to the rounding of float64 sums.
Works with any backend (gloo on CPU; NCCL moves the bytes through the current CUDA device).

Needs torch (``pip install 'ncinspect[torch]'``), imported only when these functions run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UsageError
from ..meter import Meter
from ..meter_state import pack, unpack

__all__ = ["all_reduce_meter", "merge_meter_states"]


def merge_meter_states(meter: Meter, states: Sequence[Mapping[str, Any]]) -> Meter:
    """Load into ``meter`` the merge, in the given order, of several meters' states.

    Each state is a :meth:`Meter.state_dict` of a meter with the same classifier and
    settings, in the same pass (in pass 2 they must share pass 1). Returns ``meter``.
    """
    if not states:
        raise UsageError("merge_meter_states: no state to merge")
    merged = None
    for state in states:
        part = Meter(
            weights=meter.weights,
            bias=meter.bias,
            n_classes=meter.n_classes,
            center=meter.center,
            per_class=meter.per_class,
            min_class_count=meter.min_class_count,
        )
        part.first, part.geometry = meter.first, meter.geometry  # kept when pass 1 is shared
        part.load_state_dict(state)
        merged = part if merged is None else merged.merge(part)
    return meter.load_state_dict(merged.state_dict())


def all_reduce_meter(meter: Meter, group: Any = None) -> Meter:
    """Merge ``meter`` with the meters of every rank of ``group`` (default: the world).

    Call it on every rank at the end of each pass (before :meth:`Meter.next_pass` and before
    :meth:`Meter.compute`). Returns ``meter``, holding the statistics of all ranks.
    """
    try:
        import torch
        import torch.distributed as dist
    except ImportError:
        raise UsageError("all_reduce_meter needs PyTorch: pip install 'ncinspect[torch]'") from None
    if not (dist.is_available() and dist.is_initialized()):
        raise UsageError(
            "all_reduce_meter: torch.distributed is not initialised (init_process_group first)"
        )
    world = dist.get_world_size(group)
    if world == 1:
        return meter
    device = torch.device("cpu")
    if dist.get_backend(group) == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    data = pack(meter.state_dict())
    size = torch.tensor([len(data)], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(size) for _ in range(world)]
    dist.all_gather(sizes, size, group=group)
    longest = int(max(int(s.item()) for s in sizes))
    buf = torch.zeros(longest, dtype=torch.uint8)
    buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    buf = buf.to(device)
    bufs = [torch.empty_like(buf) for _ in range(world)]
    dist.all_gather(bufs, buf, group=group)
    states = [
        unpack(b[: int(s.item())].cpu().numpy().tobytes()) for b, s in zip(bufs, sizes, strict=True)
    ]
    return merge_meter_states(meter, states)
