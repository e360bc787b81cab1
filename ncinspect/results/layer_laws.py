"""The layer-wise law of each (epoch, split) of a report: its layers' positions and nc1, and the
fit of :func:`ncinspect.metrics.layer_law.fit_layer_law` (spec/metrics.md "Layer-wise law")."""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..metrics.layer_law import fit_layer_law
from ..metrics.nulls import null_warnings
from ..metrics.registry import LAW_KEYS

__all__ = ["LAW_KEYS", "LayerLaw", "layer_laws", "law_position", "law_columns"]

_LAYER_K = re.compile(r"layer_(\d+)")


@dataclass(repr=False)
class LayerLaw:
    """The law of one (epoch, split): ``metrics`` holds :data:`LAW_KEYS` (None where
    undefined, with ``null_reasons``), ``layers`` the fitted layers in position order
    (``{"layer", "position", "nc1"}``; ``layer`` None for the penultimate one) and
    ``notes`` the layers left out.

    It reads like a snapshot result where the checks and tables need one (``name``,
    ``epoch``, ``split``, ``layer`` None, ``metrics``, ``null_reasons``, ``metric_keys``),
    with ``scope == "layers"``.
    """

    epoch: int | None
    split: str | None
    metrics: dict[str, Any]
    null_reasons: dict[str, str] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    layer: None = None
    task: str = "classification"
    scope: str = "layers"
    per_class: None = None
    bootstrap: None = None

    @property
    def name(self) -> str:
        epoch = "-" if self.epoch is None else self.epoch
        return f"layers (epoch {epoch}, split {self.split or 'train'})"

    def metric_keys(self) -> list[str]:
        return list(LAW_KEYS)

    @property
    def warnings(self) -> list[str]:
        return [*self.notes, *null_warnings(self.null_reasons)]

    def __repr__(self) -> str:
        vals = " ".join(f"{k}={self.metrics.get(k)}" for k in LAW_KEYS)
        from ..text import cut, plain

        # the name holds the split from the file: cut and escaped as every repr shows names
        return f"<LayerLaw {plain(cut(self.name))}: {vals}>"

    def to_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "split": self.split,
            "metrics": {k: self.metrics.get(k) for k in LAW_KEYS},
            "layers": self.layers,
            "warnings": self.warnings,
        }


def law_position(layer: str | None, meta: dict[str, Any]) -> int | float | None:
    """The position of a hidden layer: k of ``layer_<k>``, else its ``layer_index`` metadata
    (a number), else None (left out). The penultimate layer (``layer`` None) is placed by
    :func:`layer_laws`."""
    m = _LAYER_K.fullmatch(layer or "")
    if m:
        return int(m.group(1))
    index = meta.get("layer_index")
    if isinstance(index, numbers.Real) and not isinstance(index, bool):
        return int(index) if float(index).is_integer() else float(index)
    return None


def layer_laws(results: Iterable[Any]) -> list[LayerLaw]:
    """One :class:`LayerLaw` per (epoch, split) of the classification snapshots that has a
    hidden-layer snapshot, in order of first appearance.

    Positions: ``layer_<k>`` is k; another name takes its ``layer_index`` metadata or is
    left out with a note; the penultimate layer (no ``layer``) is K + 1, K the largest
    position of the hidden layers of that (epoch, split).
    """
    groups: dict[tuple, list[Any]] = {}
    for res in results:
        if getattr(res, "task", "classification") == "classification":
            groups.setdefault((res.epoch, res.split), []).append(res)
    laws = []
    for (epoch, split), members in groups.items():
        if all(r.layer is None for r in members):
            continue
        placed, notes = [], []
        for r in members:
            if r.layer is None:
                continue
            pos = law_position(r.layer, r.meta)
            if pos is None:
                notes.append(
                    f"layer {r.layer!r} left out of the layer-wise law: name it layer_<k> or "
                    "record its position as metadata layer_index"
                )
            else:
                placed.append((pos, r))
        top = max((p for p, _ in placed), default=0)
        placed += [(top + 1, r) for r in members if r.layer is None]
        placed.sort(key=lambda t: t[0])
        fit = fit_layer_law(
            [p for p, _ in placed],
            [r.metrics.get("nc1") for _, r in placed],
            [r.layer or "penultimate" for _, r in placed],
        )
        layers = [{"layer": r.layer, "position": p, "nc1": r.metrics.get("nc1")} for p, r in placed]
        laws.append(LayerLaw(epoch, split, fit.values, fit.null_reasons, layers, notes + fit.notes))
    return laws


def law_columns(results: Iterable[Any]) -> tuple[list[str], Callable[[Any], list[Any]]]:
    """The CSV columns of the law (:data:`LAW_KEYS`; none without hidden layers) and a
    function giving a snapshot's values: those of its (epoch, split)'s law."""
    results = list(results)
    laws = {(law.epoch, law.split): law for law in layer_laws(results)}
    keys = list(LAW_KEYS) if laws else []

    def values(res: Any) -> list[Any]:
        law = laws.get((res.epoch, res.split))
        return [None if law is None else law.metrics.get(k) for k in keys]

    return keys, values
