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

:func:`all_reduce_meter` reduces the pass states where they live, field by field, by the
reduction each field declares (:mod:`ncinspect.stats.protocol`): ``all_reduce`` for sums and
extremes, ``all_gather`` of the 3-number output moments (folded in rank order), as
torchmetrics does; no state makes a host round trip (NCCL reduces CUDA states on the GPU,
gloo CPU tensors). Only two small checks read a value: the ranks' settings and, in pass 2,
their shared pass 1 must be the same. A rank that saw no batch (or no row of a class: an
absent class is fine) takes part with empty states.

:func:`merge_meter_states` merges :meth:`Meter.state_dict` mappings (e.g. gathered by hand
as :func:`ncinspect.meter.state.pack` bytes) in the given order.

Needs torch (``pip install 'ncinspect[torch]'``), imported only when these functions run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UsageError
from ..meter.meter import Meter
from ..stats.device import FirstState, SecondState
from ..stats.protocol import NUMPY

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
        part = meter.sibling().load_state_dict(state)
        merged = part if merged is None else merged.merge(part)
    return meter.load_state_dict(merged.state_dict())


def _digest_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "little")


def _n_features(meter: Meter) -> int:
    """d: the classifier's columns, else the features seen (0 before any batch)."""
    if meter.weights is not None:
        return int(meter.weights.shape[1])
    state = meter.first if meter.pass_number == 2 else meter.pass_state()
    return 0 if state is None else int(state.sums.shape[1])


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
    if dist.get_world_size(group) == 1:
        return meter
    if getattr(meter, "spectra", False) and meter.pass_number == 2:
        raise UsageError(  # they are not in the declared pass state: never per rank only
            "all_reduce_meter: a Meter(spectra=True) holds d x d sums outside its pass state; "
            "gather the ranks' state_dict() and use merge_meter_states instead"
        )
    device = torch.device("cpu")
    if dist.get_backend(group) == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    # what must be equal on every rank: settings, pass, and in pass 2 pass 1 itself; and
    # the feature count d, which a rank without a batch learns here
    settings = json.dumps({"pass": meter.pass_number, **meter._settings()}, sort_keys=True)
    shared = ""
    if meter.pass_number == 2:
        first = meter.first
        shared = hashlib.sha256(first.counts.tobytes() + first.sums.tobytes()).hexdigest()
    d = _n_features(meter)
    keys = [_digest_int(settings), _digest_int(shared), d]
    check = torch.tensor(keys + [-k for k in keys], dtype=torch.int64, device=device)
    dist.all_reduce(check, op=dist.ReduceOp.MAX, group=group)
    hi, lo = check[:3].tolist(), (-check[3:]).tolist()
    if hi[0] != lo[0]:
        raise UsageError(
            "all_reduce_meter: the ranks' meters differ in pass or settings (classifier, "
            "classes, center, min_class_count, precision)"
        )
    if hi[1] != lo[1]:
        from ..errors import InvalidDataError

        raise InvalidDataError(
            "all_reduce_meter: meters in pass 2 must share pass 1 (all-reduce pass 1 before "
            "next_pass() on every rank)"
        )
    if hi[2] == 0:
        return meter  # no rank saw a batch
    if lo[2] not in (0, hi[2]):
        from ..errors import InvalidDataError

        raise InvalidDataError(
            f"all_reduce_meter: the ranks' features have d = {lo[2]} and {hi[2]}"
        )
    state = meter.pass_state()
    if state is None:  # this rank saw no batch: it takes part with an empty state
        C, d = meter.n_classes, hi[2]
        if meter.pass_number == 1:
            state = FirstState.new(NUMPY, None, C, d)
        else:
            geom = meter.geometry
            rank, pairs = geom.basis.shape[0], geom.pair_reason is None
            state = SecondState.new(NUMPY, None, C, d, rank, pairs)
    meter.set_pass_state(state.all_reduce(group))
    return meter
