"""Several runs (seeds) of one experiment: per metric mean, standard deviation, n, 95% t-interval.

The snapshots of every run are matched by ``(split, layer, epoch)``. Every run must hold the
same set of those keys and the same classes (``n_classes_total`` and ``class_names``),
otherwise the runs are not repetitions of one experiment and :func:`aggregate` refuses them
with a message naming the mismatch. For each metric, the runs where it is defined (not null)
give ``n``, the ``mean``, the sample standard deviation ``std`` (ddof = 1) and the two-sided
95% Student-t interval ``mean -/+ t_{0.975, n-1} std / sqrt(n)`` (``ci_low``, ``ci_high``;
null for n < 2). Booleans (``interpolates``, ``etf_feasible``) are averaged as 0/1: the mean
is the fraction of runs where they hold.

This module is pure: it takes computed :class:`~ncinspect.results.report.Report` objects and never
reads files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .._version import __version__
from ..errors import InvalidDataError, UsageError
from .jsontext import dumps as json_text
from .report import (
    SCHEMA_VERSION,
    Report,
    SnapshotResult,
    csv_text,
    jsonable,
)

__all__ = ["STATS", "Stat", "AggregateSnapshot", "AggregateReport", "aggregate", "summarise"]

#: The fields of one aggregated metric, in CSV column order.
STATS = ("mean", "std", "n", "ci_low", "ci_high")
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Stat:
    """Mean, sample standard deviation, count and 95% t-interval of one metric over runs."""

    mean: float | None
    std: float | None
    n: int
    ci_low: float | None
    ci_high: float | None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in STATS}


def summarise(values: list[Any]) -> Stat:
    """:class:`Stat` of the non-null ``values`` (bools as 0/1). Exact two-pass moments."""
    xs = [float(v) for v in values if v is not None and not _nan(v)]
    n = len(xs)
    if n == 0:
        return Stat(None, None, 0, None, None)
    mean = math.fsum(xs) / n
    if n == 1:
        return Stat(mean, None, 1, None, None)
    spread = max(abs(x - mean) for x in xs)
    scale = spread if spread > 1e150 else 1.0  # squares of deviations above 1e154 overflow
    std = scale * math.sqrt(math.fsum(((x - mean) / scale) ** 2 for x in xs) / (n - 1))
    from scipy.stats import t

    half = float(t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * std / math.sqrt(n)
    return Stat(mean, std, n, mean - half, mean + half)


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


@dataclass
class AggregateSnapshot:
    """One ``(split, layer, epoch)`` over the runs: the runs' snapshot names and the stats."""

    split: str | None
    layer: str | None
    epoch: int | None
    names: list[str]
    n_classes_total: int | None
    metrics: dict[str, Stat] = field(default_factory=dict)
    #: every run's model was trained with the square loss (the SQI section applies)
    square_loss: bool = False
    #: "classification", "regression" or "ood" (the keys a snapshot reports follow it)
    task: str = "classification"
    #: "snapshot", or "layers" for the layer-wise law of one (epoch, split) (layer None)
    scope: str = "snapshot"

    @property
    def key(self) -> tuple:
        return (self.split, self.layer, self.epoch)

    def __getitem__(self, key: str) -> Stat:
        return self.metrics[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "layer": self.layer,
            "epoch": self.epoch,
            "snapshots": self.names,
            "n_runs": len(self.names),
            "n_classes_total": self.n_classes_total,
            "square_loss": self.square_loss,
            "task": self.task,
            **({"scope": self.scope} if self.scope != "snapshot" else {}),
            "metrics": {k: s.to_dict() for k, s in self.metrics.items()},
        }


@dataclass
class AggregateReport:
    """The aggregated snapshots of several runs, in the first run's snapshot order."""

    files: list[str | None]
    snapshots: list[AggregateSnapshot]
    center: str = "classes"
    ncc_centres: str = "own"
    precision: str = "float64"  #: of pass 2's products in the runs (recorded when not float64)
    #: the layer-wise law of each (epoch, split) over the runs (``scope`` "layers")
    laws: list[AggregateSnapshot] = field(default_factory=list)

    def __iter__(self):
        return iter(self.snapshots)

    def __len__(self) -> int:
        return len(self.snapshots)

    def __getitem__(self, i: int) -> AggregateSnapshot:
        return self.snapshots[i]

    def __repr__(self) -> str:
        return f"<AggregateReport of {len(self.files)} run(s): {len(self)} snapshot(s)>"

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "schema_version": SCHEMA_VERSION,
                "ncinspect_version": __version__,
                "aggregate": {
                    "files": self.files,
                    "n_runs": len(self.files),
                    "confidence": CONFIDENCE,
                    "interval": "two-sided Student t on the runs' values (ddof = 1)",
                },
                "conventions": {
                    "center": self.center,
                    "ncc_means": self.ncc_centres,
                    **({} if self.precision == "float64" else {"precision": self.precision}),
                },
                "snapshots": [s.to_dict() for s in self.snapshots],
                **({"layers": [s.to_dict() for s in self.laws]} if self.laws else {}),
            }
        )

    def to_json(self) -> str:
        return json_text(self.to_dict()) + "\n"

    def views(self, stat: str = "mean") -> list[SnapshotResult]:
        """One :class:`SnapshotResult` per aggregated snapshot whose ``metrics`` hold ``stat``
        (``"mean"``, ``"std"``, ``"ci_low"``, ``"ci_high"``) and whose ``arrays`` hold the
        interval's ends (``ci_low``/``ci_high``: metric -> value) for banded figures. A null
        statistic carries its reason in ``null_reasons`` (and, as text, in ``warnings``)."""
        return [_view(s, stat) for s in self.snapshots]

    def law_views(self, stat: str = "mean") -> list[SnapshotResult]:
        """:meth:`views` of the layer-wise law (each with ``scope`` "layers")."""
        out = []
        for law in self.laws:
            view = _view(law, stat)
            view.name = f"layers (epoch {law.epoch}, split {law.split or 'train'}) ({stat})"
            view.scope = "layers"
            out.append(view)
        return out

    def metric_keys(self) -> list[str]:
        keys: dict[str, None] = {}
        for s in self.snapshots:
            keys.update(dict.fromkeys(s.metrics))
        return list(keys)

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        """One row per aggregated snapshot; columns ``<metric>_<stat>`` for each stat."""
        keys = self.metric_keys()
        header = ["split", "layer", "epoch", "n_runs", *(f"{k}_{s}" for k in keys for s in STATS)]
        rows = []
        for snap in self.snapshots:
            row: list[Any] = [snap.split, snap.layer, snap.epoch, len(snap.names)]
            for k in keys:
                stat = snap.metrics.get(k)
                row += [None] * len(STATS) if stat is None else [getattr(stat, s) for s in STATS]
            rows.append(jsonable(row))
        return header, rows

    def to_csv(self) -> str:
        return csv_text(*self.csv_rows())


def _view(snap: AggregateSnapshot, stat: str) -> SnapshotResult:
    if stat not in STATS or stat == "n":
        raise ValueError(f"stat must be mean, std, ci_low or ci_high, got {stat!r}")
    metrics, reasons = {}, {}
    for key, s in snap.metrics.items():
        metrics[key] = getattr(s, stat)
        if metrics[key] is None:
            reasons[key] = (
                "undefined in every run"
                if s.n == 0
                else f"defined in {s.n} run(s): {stat} needs two"
            )
    res = SnapshotResult(
        name=f"{snap.split}/{snap.layer or 'penultimate'}/epoch {snap.epoch} ({stat})",
        n_samples=0,
        n_features=0,
        n_classes=snap.n_classes_total or 0,
        metrics=metrics,
        null_reasons=reasons,
        warnings=[f"{key}: null ({why})" for key, why in reasons.items()],
        arrays={
            "ci_low": {k: s.ci_low for k, s in snap.metrics.items()},
            "ci_high": {k: s.ci_high for k, s in snap.metrics.items()},
        },
    )
    res.epoch, res.split, res.layer = snap.epoch, snap.split, snap.layer
    res.task = snap.task
    return res


def _label(report: Report, i: int) -> str:
    return report.file or f"run {i + 1}"


def _key_text(key: tuple) -> str:
    split, layer, epoch = key
    parts = [f"split {split}"]
    if layer is not None:
        parts.append(f"layer {layer}")
    parts.append(f"epoch {epoch}")
    return ", ".join(parts)


def _index(report: Report, label: str) -> dict[tuple, SnapshotResult]:
    out: dict[tuple, SnapshotResult] = {}
    for res in report:
        key = (res.split, res.layer, res.epoch)
        if key in out:
            raise InvalidDataError(
                f"{label}: snapshots {out[key].name} and {res.name} are both {_key_text(key)}; "
                "select one with --snapshot before aggregating"
            )
        out[key] = res
    return out


def _classes(res: SnapshotResult) -> tuple:
    return (res.n_classes_total or res.n_classes, tuple(str(c) for c in res.class_names))


def aggregate(reports: list[Report]) -> AggregateReport:
    """Aggregate the runs ``reports`` (at least two) snapshot by snapshot.

    Raises InvalidDataError when the runs hold different ``(split, layer, epoch)`` sets,
    different classes, or two snapshots with the same key in one run.
    """
    reports = list(reports)
    if len(reports) < 2:
        raise UsageError("--aggregate needs at least two runs (files)")
    labels = [_label(r, i) for i, r in enumerate(reports)]
    indices = [_index(r, lab) for r, lab in zip(reports, labels, strict=True)]
    first = indices[0]
    for idx, lab in zip(indices[1:], labels[1:], strict=True):
        missing = [k for k in first if k not in idx]
        extra = [k for k in idx if k not in first]
        if missing or extra:
            what = (
                f"has no {_key_text(missing[0])}, which {labels[0]} has"
                if missing
                else f"has {_key_text(extra[0])}, which {labels[0]} has not"
            )
            raise InvalidDataError(
                f"{lab}: {what}: runs to aggregate must hold the same epochs, splits and layers"
            )
        for key, res in first.items():
            if _classes(idx[key]) != _classes(res):
                raise InvalidDataError(
                    f"{lab}: {_key_text(key)} has classes {_classes(idx[key])[1][:5]} "
                    f"({_classes(idx[key])[0]} rows of W) but {labels[0]} has "
                    f"{_classes(res)[1][:5]} ({_classes(res)[0]}): runs to aggregate must "
                    "have the same classes"
                )
    snaps = []
    for key, res in first.items():
        group = [idx[key] for idx in indices]
        keys = list(dict.fromkeys(k for r in group for k in r.metric_keys()))
        snaps.append(
            AggregateSnapshot(
                split=key[0],
                layer=key[1],
                epoch=key[2],
                names=[r.name for r in group],
                n_classes_total=_classes(res)[0],
                metrics={k: summarise([r.metrics.get(k) for r in group]) for k in keys},
                square_loss=all(r.shows_square_loss() for r in group),
                task=res.task,
            )
        )
    for what in ("center", "precision", "ncc_centres"):  # one convention for every run
        seen = {str(getattr(r, what, "float64" if what == "precision" else None)) for r in reports}
        if len(seen) > 1:
            raise InvalidDataError(
                f"runs to aggregate were computed with different {what} ({', '.join(sorted(seen))})"
            )
    return AggregateReport(
        files=[r.file for r in reports],
        snapshots=snaps,
        center=reports[0].center,
        precision=getattr(reports[0], "precision", "float64"),
        ncc_centres=reports[0].ncc_centres,
        laws=_laws(reports),
    )


def _laws(reports: list[Report]) -> list[AggregateSnapshot]:
    """The layer-wise law of each (epoch, split) summarised over the runs (which hold the
    same snapshots, checked by :func:`aggregate`)."""
    from .layer_laws import LAW_KEYS, layer_laws

    runs = [{(law.epoch, law.split): law for law in layer_laws(r.snapshots)} for r in reports]
    out = []
    for key in runs[0]:
        group = [run[key] for run in runs if key in run]
        out.append(
            AggregateSnapshot(
                split=key[1],
                layer=None,
                epoch=key[0],
                names=[law.name for law in group],
                n_classes_total=None,
                metrics={k: summarise([law.metrics.get(k) for law in group]) for k in LAW_KEYS},
                scope="layers",
            )
        )
    return out
