"""Aggregated runs (seeds) as rich tables: mean, std, n and the 95% t-interval per metric."""

from __future__ import annotations

from ..results.aggregate import AggregateReport, AggregateSnapshot
from .layout import column, message, no_split, show
from .safe import markup
from .table import fmt

__all__ = ["aggregate_table", "render_aggregate", "final_snapshots"]


def final_snapshots(agg: AggregateReport, *, every: bool = False) -> list[AggregateSnapshot]:
    """The last epoch of each (split, layer), or every snapshot with ``every``."""
    if every:
        return list(agg.snapshots)
    last: dict[tuple, AggregateSnapshot] = {}
    for snap in agg.snapshots:
        key = (snap.split, snap.layer)
        if key not in last or (snap.epoch or 0) >= (last[key].epoch or 0):
            last[key] = snap
    return list(last.values())


def _title(snap: AggregateSnapshot, n_files: int) -> str:
    parts = [f"split {markup(snap.split)}"]
    if snap.layer is not None:
        parts.append(f"layer {markup(snap.layer)}")
    parts.append(f"epoch {snap.epoch}")
    return f"[bold]{', '.join(parts)}[/bold]  ({n_files} runs)"


def aggregate_table(snap: AggregateSnapshot, n_files: int, *, sqi: bool = False):
    """One snapshot's metrics over the runs: mean, std, n and the 95% interval.

    The square-loss section is left out unless every run is a square-loss model or ``sqi``.
    """
    from rich.table import Table

    from ..results.report import square_loss_keys

    hidden = set() if sqi or snap.square_loss else set(square_loss_keys())

    table = Table(title=_title(snap, n_files), title_justify="left")
    no_split(table)
    column(table, "metric", "key")
    column(table, "mean", "value", justify="right")
    column(table, "std", "value", justify="right")
    column(table, "n", "value", justify="right")
    column(table, "95% interval", "value", justify="right")
    for key, stat in snap.metrics.items():
        if stat.n == 0 or key in hidden:
            continue
        interval = "n/a" if stat.ci_low is None else f"[{fmt(stat.ci_low)}, {fmt(stat.ci_high)}]"
        table.add_row(key, fmt(stat.mean), fmt(stat.std), str(stat.n), interval)
    return table


def render_aggregate(
    agg: AggregateReport, console, *, every: bool = False, sqi: bool = False
) -> None:
    """Print the aggregated tables (the last epoch of each split and layer by default)."""
    files = ", ".join(markup(f) for f in agg.files if f)
    message(console, f"aggregate of {len(agg.files)} runs: {files}")
    for snap in final_snapshots(agg, every=every):
        if not any(stat.n for stat in snap.metrics.values()):
            continue  # an OOD set: it reports no metric of its own
        show(console, aggregate_table(snap, len(agg.files), sqi=sqi))
    if not every:
        message(
            console,
            "note: the last epoch of each split and layer is shown; --json/--csv hold every "
            "epoch (mean, std, n, 95% t-interval per metric)",
        )
