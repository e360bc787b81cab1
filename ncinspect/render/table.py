"""Rich tables for reports: one detailed table per snapshot, or a compact trajectory table."""

from __future__ import annotations

from typing import Any

from ..metrics import METRIC_INFO
from ..report import Report, SnapshotResult

__all__ = ["fmt", "snapshot_table", "compact_table", "render_report", "COMPACT_KEYS"]

_DIRECTION = {"lower": "↓ lower", "higher": "↑ higher", "zero": "→ 0", "one": "→ 1", "info": ""}

#: Metrics shown as columns when several snapshots are reported together (key, short title).
COMPACT_KEYS = (
    ("nc1", "nc1"),
    ("nc1_trace_ratio", "trace ratio"),
    ("etf_error_means", "ETF means"),
    ("etf_error_weights_centered", "ETF W centred"),
    ("nc3_self_duality", "self-duality"),
    ("nc4_ncc_mismatch", "NCC mismatch"),
    ("accuracy_classifier", "accuracy"),
    ("mse", "mse"),
)


def fmt(value: Any) -> str:
    """A compact human form of a metric value ('n/a' for undefined)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if 1e-3 <= abs(value) < 1e4:
            return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1 else f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def _header(res: SnapshotResult, file: str | None) -> str:
    counts = res.class_counts or [0]
    parts = [
        f"[bold]{file or '<arrays>'}[/bold]  snapshot [bold]{res.name}[/bold]",
        f"N={res.n_samples}  d={res.n_features}  C={res.n_classes}  dtype={res.dtype}  "
        f"class sizes {min(counts)}..{max(counts)}",
    ]
    tags = [f"{k}={v}" for k, v in (("epoch", res.epoch), ("split", res.split),
                                   ("layer", res.layer)) if v is not None]
    if res.ncc_means != "own":
        tags.append(f"ncc_means={res.ncc_means}")
    if tags:
        parts.append("  ".join(tags))
    return "\n".join(parts)


def snapshot_table(res: SnapshotResult, file: str | None = None):
    """The detailed table of one snapshot: metrics grouped NC1..SQI with direction and meaning."""
    from rich.table import Table

    table = Table(title=_header(res, file), title_justify="left", show_lines=False)
    table.add_column("group", style="cyan", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("better", no_wrap=True)
    table.add_column("meaning", style="dim")
    last_group = None
    for key, group, direction, meaning in METRIC_INFO:
        if group != last_group and last_group is not None:
            table.add_section()
        table.add_row(group if group != last_group else "", key, fmt(res.metrics.get(key)),
                      _DIRECTION[direction], meaning)
        last_group = group
    return table


def per_class_table(res: SnapshotResult):
    from rich.table import Table

    table = Table(title=f"per class: {res.name}", title_justify="left")
    keys = ["class", "n", "var", "mean_norm", "weight_norm", "duality_cos", "ncc_agreement",
            "accuracy_classifier"]
    for k in keys:
        table.add_column(k, justify="right" if k != "class" else "left")
    for row in res.per_class or []:
        table.add_row(*(fmt(row.get(k)) if k != "class" else str(row[k]) for k in keys))
    return table


def compact_table(report: Report, columns: tuple[tuple[str, str], ...] = COMPACT_KEYS):
    """One row per snapshot (a trajectory); first and last rows and their change highlighted."""
    from rich.table import Table

    table = Table(title=f"[bold]{report.file or '<arrays>'}[/bold]: {len(report)} snapshots",
                  title_justify="left")
    keys = [k for k, _ in columns]
    for col in ("snapshot", "epoch", "N"):
        table.add_column(col, no_wrap=True, justify="left" if col == "snapshot" else "right")
    for _, title in columns:
        table.add_column(title, justify="right")
    groups: dict[tuple, list[SnapshotResult]] = {}
    for res in report:
        groups.setdefault((res.split, res.layer), []).append(res)
    first_group = True
    for members in groups.values():
        if not first_group:
            table.add_section()
        first_group = False
        for i, res in enumerate(members):
            edge = i in (0, len(members) - 1) and len(members) > 1
            table.add_row(
                res.name, fmt(res.epoch), str(res.n_samples),
                *(fmt(res.metrics.get(k)) for k in keys), style="bold" if edge else None,
            )
        if len(members) > 1:
            a, b = members[0], members[-1]
            table.add_row(f"change {a.epoch}->{b.epoch}", "", "",
                          *(_change(a.metrics.get(k), b.metrics.get(k)) for k in keys),
                          style="italic")
    return table


def _change(a: Any, b: Any) -> str:
    if not isinstance(a, float) or not isinstance(b, float) or isinstance(a, bool):
        return ""
    if a != 0 and b / a > 0:
        ratio = b / a
        colour = "green" if ratio < 1 else "red"
        return f"[{colour}]x{ratio:.3g}[/{colour}]"
    return f"{b - a:+.3g}"


def render_report(report: Report, console, *, per_class: bool = False, compact: bool | None = None):
    """Print a report: a detailed table per snapshot, or a compact table for many."""
    compact = len(report) > 1 if compact is None else compact
    if compact:
        console.print(compact_table(report))
        if per_class:
            for res in report:
                console.print(per_class_table(res))
    else:
        for res in report:
            console.print(snapshot_table(res, report.file))
            if per_class and res.per_class:
                console.print(per_class_table(res))
    seen: dict[str, list[str]] = {}
    for res in report:
        for w in res.warnings:
            seen.setdefault(w, []).append(res.name)
    for w, names in seen.items():
        where = names[0] if len(names) == 1 else f"{len(names)} snapshots ({names[0]}, ...)"
        console.print(f"[yellow]warning[/yellow] {where}: {w}", soft_wrap=True)
