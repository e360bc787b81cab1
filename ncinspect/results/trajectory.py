"""Organise snapshot results into trajectories (by epoch) and layer profiles (by depth).

A trajectory is the snapshots of one split and layer ordered by epoch (spec/dump-format.md).
These helpers only sort and select :class:`~ncinspect.results.report.SnapshotResult` objects; the
tables and figures share them so that both show the same snapshots.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from .report import SnapshotResult

__all__ = [
    "TRAIN_SPLITS",
    "is_train",
    "classifier_layer",
    "group_trajectories",
    "repeated_epoch",
    "split_rank",
    "trajectory",
    "final_snapshot",
    "layer_depth",
    "layer_profile",
    "has_layers",
    "series",
]

TRAIN_SPLITS = (None, "train")  #: splits treated as the training set
_LAYER_NUM = re.compile(r"(\d+)")


def is_train(res: SnapshotResult) -> bool:
    """True for a snapshot of the training split (``split`` is ``"train"`` or unset)."""
    return res.split in TRAIN_SPLITS


def _epoch_key(res: SnapshotResult) -> tuple:
    return (res.epoch is None, res.epoch if res.epoch is not None else 0)


def group_trajectories(
    results: Iterable[SnapshotResult],
) -> dict[tuple[str | None, str | None], list[SnapshotResult]]:
    """Snapshots grouped by ``(split, layer)``, each by epoch: the training split's groups
    first, then the test split's, then the others', each in order of first appearance.

    Snapshots without an epoch keep their file order after those with one.
    """
    groups: dict[tuple[str | None, str | None], list[SnapshotResult]] = {}
    for res in results:
        groups.setdefault((res.split, res.layer), []).append(res)
    order = sorted(groups, key=lambda key: split_rank(key[0]))  # stable: file order within
    return {key: sorted(groups[key], key=_epoch_key) for key in order}


def repeated_epoch(members: Iterable[Any]) -> tuple[Any, Any] | None:
    """The first two snapshots of one trajectory that hold the same epoch (``epoch_1`` and
    ``ep1``, or two runs in one file without a split telling them apart), else None.

    Such a trajectory has no order: a change or trend across it would compare whichever
    snapshot sorted first, so callers say so instead of picking one."""
    seen: dict[int, Any] = {}
    for res in members:
        if res.epoch is None:
            continue
        if res.epoch in seen:
            return seen[res.epoch], res
        seen[res.epoch] = res
    return None


def split_rank(split: str | None) -> int:
    """Where a split's rows go in tables: the training split first, then test, then others
    (in the order they appear)."""
    return 0 if split in TRAIN_SPLITS else 1 if split == "test" else 2


def _has_classifier(item: Any) -> bool:
    arrays = getattr(item, "arrays", None)  # a result; a dump snapshot holds .weights itself
    weights = getattr(arrays, "weights", None) if arrays is not None else None
    if arrays is not None and getattr(arrays, "had_weights", False):
        return True  # released (ResultArrays.release): it had them
    return weights is not None or getattr(item, "weights", None) is not None


def classifier_layer(items: Iterable[Any]) -> str | None:
    """The layer the classifier reads (the penultimate features) among ``items`` (results
    or dump snapshots): ``None`` (no ``layer``) when some item has none; else the one layer
    they all carry (a dump whose snapshots are named ``layer = "block4"``); else, of the
    layers with classifier weights (all when none has), the deepest (``layer_k``'s k), the
    last seen on a tie."""
    items = list(items)
    layers = list(dict.fromkeys(r.layer for r in items))
    if not layers or None in layers:
        return None
    if len(layers) == 1:
        return layers[0]
    with_w = [lay for lay in layers if any(_has_classifier(r) for r in items if r.layer == lay)]
    pool = with_w or layers
    deepest = max(layer_depth(lay, 0) for lay in pool)
    return [lay for lay in pool if layer_depth(lay, 0) == deepest][-1]


#: ``layer`` of :func:`trajectory` meaning the classifier's layer (:func:`classifier_layer`)
CLASSIFIER = object()


def trajectory(
    results: Iterable[SnapshotResult],
    *,
    split: str | None = "train",
    layer: Any = CLASSIFIER,
) -> list[SnapshotResult]:
    """The snapshots of one split (``"train"`` also matches an unset split) and layer, by epoch.

    ``layer`` defaults to the classifier's layer (:func:`classifier_layer`): ``None`` in a
    dump with hidden layers, the one layer named when every snapshot names it."""
    results = list(results)
    if layer is CLASSIFIER:
        layer = classifier_layer(results)
    want = TRAIN_SPLITS if split in TRAIN_SPLITS else (split,)
    return sorted((r for r in results if r.split in want and r.layer == layer), key=_epoch_key)


def final_snapshot(results: Iterable[SnapshotResult]) -> SnapshotResult | None:
    """The last-epoch training snapshot of the classifier's layer (else the last snapshot)."""
    results = list(results)
    train = trajectory(results)
    if train:
        return train[-1]
    top = classifier_layer(results)
    penult = [r for r in results if r.layer == top]
    pool = sorted(penult or results, key=_epoch_key)
    return pool[-1] if pool else None


def layer_depth(layer: str | None, deepest: int) -> int:
    """Depth of a layer name: ``layer_k`` -> k; the classifier's layer (None) -> ``deepest + 1``."""
    if layer is None:
        return deepest + 1
    m = _LAYER_NUM.search(layer)
    return int(m.group(1)) if m else deepest + 1


def has_layers(results: Iterable[SnapshotResult]) -> bool:
    """True when some snapshot belongs to a hidden layer (``layer`` is set)."""
    return any(r.layer is not None for r in results)


def layer_profile(
    results: Iterable[SnapshotResult], *, split: str | None = "train", epoch: int | None = None
) -> list[tuple[int, SnapshotResult]]:
    """(depth, result) for every layer of one split at one epoch (default the last), by depth.

    The classifier's layer (``layer`` None, the penultimate features) comes last, one deeper
    than the deepest numbered hidden layer.
    """
    want = TRAIN_SPLITS if split in TRAIN_SPLITS else (split,)
    pool = [r for r in results if r.split in want]
    if not pool:
        return []
    if epoch is None:
        epochs = [r.epoch for r in pool if r.epoch is not None]
        epoch = max(epochs) if epochs else None
    at = [r for r in pool if r.epoch == epoch]
    nums = [int(m.group(1)) for r in at if r.layer and (m := _LAYER_NUM.search(r.layer))]
    deepest = max(nums, default=0)
    return sorted(((layer_depth(r.layer, deepest), r) for r in at), key=lambda t: t[0])


def series(
    results: Iterable[SnapshotResult], key: str, *, x: str = "epoch"
) -> tuple[np.ndarray, np.ndarray]:
    """(x, values) of metric ``key`` over ``results``; undefined values become NaN.

    ``x`` is ``"epoch"`` (the snapshot's epoch, else its position) or ``"index"``.
    """
    results = list(results)
    xs = [r.epoch if (x == "epoch" and r.epoch is not None) else i for i, r in enumerate(results)]
    ys = [_number(r.metrics.get(key)) for r in results]
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _number(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return float("nan")
    return float(value)
