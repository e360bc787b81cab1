"""Rich tables for reports: one detailed table per snapshot, or a compact trajectory table."""

from __future__ import annotations

from typing import Any

from ..metrics import PER_CLASS_KEYS
from ..metrics.nulls import applicable_warnings
from ..metrics.registry import (
    COMPACT_METRICS,
    DIRECTION_ARROWS,
    LAYER_METRICS,
    REGRESSION_LAYER_METRICS,
    REGRESSION_REGISTRY,
    compact_columns,
    direction_of,
    metric_rows,
    no_etf_note,
)
from ..metrics.registry import columns as columns_of
from ..results.report import Report, SnapshotResult, square_loss_keys
from ..results.trajectory import (
    group_trajectories,
    has_layers,
    layer_profile,
    repeated_epoch,
    split_rank,
)
from ..text import NAME_LIMIT, fmt, line_start
from .intervals import interval_text, interval_title
from .law import law_table
from .layout import Printer, column, no_split
from .safe import markup

__all__ = [
    "fmt",
    "snapshot_table",
    "compact_table",
    "layer_table",
    "render_report",
    "per_class_table",
    "COMPACT_KEYS",
    "LAYER_KEYS",
    "change_text",
]

#: Metrics shown as columns when several snapshots are reported together (key, short title).
COMPACT_KEYS = columns_of(COMPACT_METRICS)

#: Columns of the per-layer table (metrics against depth: "intermediate" collapse).
LAYER_KEYS = columns_of(LAYER_METRICS)


def _info_rows(res: SnapshotResult) -> list[tuple[str, str, str, str]]:
    """(key, group, direction, meaning) of the metrics of one result (its task's keys)."""
    return metric_rows(res.task, res.metrics)


def extra_compact_columns(report) -> tuple[tuple[str, str], ...]:
    """Columns added to :data:`COMPACT_KEYS` for the nc5 keys and regression snapshots present."""
    from ..metrics.ood import NC5_KEY

    nc5 = sorted({k for res in report for k in res.metrics if k.startswith(NC5_KEY)})
    cols = columns_of(nc5)
    if any(res.task == "regression" for res in report):
        cols += columns_of([m.key for m in REGRESSION_REGISTRY])
    return cols


def _name(text: Any) -> str:
    """A name from the file as rich markup: shown literally, control characters escaped, cut
    to :data:`ncinspect.text.NAME_LIMIT` characters (the cut said; the JSON keeps it whole)."""
    return markup(text, NAME_LIMIT)


def _classes(res: SnapshotResult) -> str:
    """``C`` of the header: present classes, and the classifier's rows when some are absent."""
    total = getattr(res, "n_classes_total", None) or res.n_classes
    return str(res.n_classes) if total == res.n_classes else f"{res.n_classes} of {total}"


def _header(res: SnapshotResult, file: str | None) -> str:
    counts = res.class_counts or [0]
    sizes = f"C={_classes(res)}  dtype={_name(res.dtype)}  class sizes {min(counts)}..{max(counts)}"
    if res.task != "classification":  # regression: t targets; OOD: features only
        t = (res.regression or {}).get("n_targets")
        sizes = (f"t={t}  " if t is not None else "") + f"dtype={_name(res.dtype)}  task={res.task}"
    parts = [
        f"[bold]{_name(line_start(file or '<arrays>'))}[/bold]  "
        f"snapshot [bold]{_name(res.name)}[/bold]",
        f"N={res.n_samples}  d={res.n_features}  {sizes}",
    ]
    tags = [
        f"{k}={_name(v)}"
        for k, v in (("epoch", res.epoch), ("split", res.split), ("layer", res.layer))
        if v is not None
    ]
    if res.ncc_centres != "own":
        tags.append(f"ncc_centres={_name(res.ncc_centres)}")
    if tags:
        parts.append("  ".join(tags))
    return "\n".join(parts)


def _shown_keys(results, sqi: bool) -> set[str]:
    """Metric keys hidden from the tables: the square-loss section unless some result shows it."""
    if any(r.shows_square_loss(sqi) for r in results):
        return set()
    return set(square_loss_keys())


def snapshot_table(
    res: SnapshotResult, file: str | None = None, *, sqi: bool = False, width: int | None = None
):
    """The detailed table of one snapshot: metrics grouped NC1..SQI with direction and meaning.

    Rows follow the metric registry (groups become sections). The square-loss section is left out
    unless the snapshot's loss is square or ``sqi`` forces it. Given a ``width`` narrower
    than the table, each metric's meaning goes under its name instead of a column of its own.
    """
    from rich.table import Table

    hidden = _shown_keys([res], sqi)
    rows = [info for info in _info_rows(res) if info[0] not in hidden]
    table = Table(title=_header(res, file), title_justify="left", show_lines=False)
    groups = [g for _, g, _, _ in rows]
    names = [k for k, *_ in rows]
    values = [fmt(res.metrics.get(k)) for k in names]
    fixed = max(map(len, groups), default=0) + max(map(len, names), default=0) + 10 + 8 + 16
    meanings = max((len(m) for *_, m in rows), default=0)
    merged = width is not None and fixed + meanings > width
    no_split(table)
    column(table, "group", "key", style="cyan", no_wrap=True)
    column(table, "metric", "key", min_width=max(map(len, names), default=6))
    column(table, "value", "value", justify="right")
    boot = res.bootstrap is not None
    if boot:
        column(table, interval_title(res), "value", justify="right")
    column(table, "better", "value")
    if not merged:
        column(table, "meaning", "text", style="dim")
    last_group = None
    for (key, group, direction, meaning), value in zip(rows, values, strict=True):
        if group != last_group and last_group is not None:
            table.add_section()
        # keys and groups may carry names from the file (an OOD set's name in an nc5 key)
        cells = [_name(group) if group != last_group else "", _name(key), value]
        if boot:
            cells.append(interval_text(res.interval(key), fmt))
        cells.append(DIRECTION_ARROWS.get(direction, ""))
        if merged:
            cells[1] = f"{_name(key)}\n[dim]{markup(meaning)}[/dim]"
        else:
            cells.append(f"[dim]{markup(meaning)}[/dim]")
        table.add_row(*cells)
        last_group = group
    present = sum(1 for n in res.class_counts if n > 0) or res.n_classes
    note = no_etf_note(res.metrics, res.n_features, present)
    if note:  # d < C - 1: the uniformity metrics lead the rows
        table.title = f"{table.title}\n[bold yellow]{markup(note)}[/bold yellow]"
    return table


def per_class_table(res: SnapshotResult):
    from rich.table import Table

    table = Table(title=f"per class: {_name(res.name)}", title_justify="left")
    keys = ["class", *PER_CLASS_KEYS]
    column(table, "class", "key")
    for k in PER_CLASS_KEYS:
        column(table, _name(k), "value", justify="right")
    for row in res.per_class or []:
        table.add_row(*(fmt(row.get(k)) if k != "class" else _name(row[k]) for k in keys))
    return table


def compact_table(
    report: Report, columns: tuple[tuple[str, str], ...] = COMPACT_KEYS, *, sqi: bool = False
):
    """One row per snapshot (a trajectory per split and layer, by epoch).

    The first and last rows of each trajectory are bold, followed by a row with their change
    (``x ratio`` or ``+difference``), green when the metric moved in its better direction
    (the registry) and red when it moved away. Square-loss columns (``mse``) are left out
    unless a snapshot's loss is square or ``sqi`` forces them.
    """
    from rich.table import Table

    table = Table(
        title=f"[bold]{_name(line_start(report.file or '<arrays>'))}[/bold]: "
        f"{len(report)} snapshots",
        title_justify="left",
    )
    hidden = _shown_keys(list(report), sqi)
    if columns is COMPACT_KEYS:
        columns = compact_columns(columns, [r.metrics for r in report])
        columns = columns + extra_compact_columns(report)
        if all(res.task != "classification" for res in report):
            columns = tuple(c for c in columns if c[0] not in dict(COMPACT_KEYS))
    columns = tuple((k, t) for k, t in columns if k not in hidden)
    keys = [k for k, _ in columns]
    column(table, "snapshot", "key", no_wrap=True)
    for col in ("epoch", "N"):
        column(table, col, "value", justify="right")
    for _, title in columns:
        column(table, _name(title), "value", justify="right")
    shown = [res for res in report if res.task != "ood"]  # OOD sets: a warning line each
    for g, members in enumerate(group_trajectories(shown).values()):
        if g:
            table.add_section()
        for i, res in enumerate(members):
            edge = i in (0, len(members) - 1) and len(members) > 1
            table.add_row(
                _name(res.name),
                fmt(res.epoch),
                str(res.n_samples),
                *(_value_cell(res, k) for k in keys),
                style="bold" if edge else None,
            )
        twice = repeated_epoch(members)
        if twice is not None:  # no order: a change would compare whichever sorted first
            table.add_row(
                f"no change: {_name(twice[0].name)} and {_name(twice[1].name)} are both "
                f"epoch {fmt(twice[0].epoch)}",
                style="italic",
            )
        elif len(members) > 1:
            a, b = members[0], members[-1]
            table.add_row(
                f"change {fmt(a.epoch)}->{fmt(b.epoch)}",
                "",
                "",
                *(change_text(a.metrics.get(k), b.metrics.get(k), direction_of(k)) for k in keys),
                style="italic",
            )
    return table


def _value_cell(res: SnapshotResult, key: str) -> str:
    """A compact-table cell: the value, and its bootstrap interval under it when computed."""
    value = fmt(res.metrics.get(key))
    iv = res.interval(key)
    return value if iv is None else f"{value}\n[dim]{interval_text(iv, fmt)}[/dim]"


def _improved(a: float, b: float, direction: str) -> bool | None:
    """Did ``a -> b`` move toward the better end of a metric with this direction?"""
    if b == a or direction == "info":
        return None
    if direction == "lower":
        return b < a
    if direction == "higher":
        return b > a
    target = 0.0 if direction == "zero" else 1.0
    if abs(b - target) == abs(a - target):
        return None
    return abs(b - target) < abs(a - target)


def change_text(a: Any, b: Any, direction: str = "lower") -> str:
    """The change from ``a`` to ``b``: ``x ratio`` (same sign, a != 0) or ``+difference``.

    Coloured green when the move is toward the metric's better end (``direction`` as in
    the registry: lower, higher, zero, one), red when away; uncoloured for no change, for
    ``info`` metrics and for undefined values (empty text).
    """
    if not isinstance(a, float) or not isinstance(b, float) or isinstance(a, bool):
        return ""
    text = f"x{b / a:.3g}" if a != 0 and b / a > 0 else f"{b - a:+.3g}"
    better = _improved(a, b, direction)
    if better is None:
        return text
    colour = "green" if better else "red"
    return f"[{colour}]{text}[/{colour}]"


def layer_table(report: Report, columns: tuple[tuple[str, str], ...] = LAYER_KEYS):
    """Per-layer metrics against depth at the last epoch of each split (None without layers).

    Depth k is the ``k`` of ``layer_k``; the classifier's layer (penultimate features) is
    last. Shows whether collapse also happens in intermediate layers.
    """
    from rich.table import Table

    if columns is LAYER_KEYS and all(res.task == "regression" for res in report):
        columns = columns_of(REGRESSION_LAYER_METRICS)
    if not has_layers(report):
        return None
    splits = sorted(dict.fromkeys(res.split for res in report), key=split_rank)
    table = Table(
        title=f"[bold]{_name(report.file or '<arrays>')}[/bold]: metrics against depth",
        title_justify="left",
    )
    column(table, "split", "key", no_wrap=True)
    for col in ("epoch", "depth"):
        column(table, col, "value", justify="right")
    column(table, "layer", "key", no_wrap=True)
    for _, title in columns:
        column(table, _name(title), "value", justify="right")
    first = True
    for split in splits:
        profile = layer_profile(report, split=split or "train")
        if len(profile) < 2:
            continue
        if not first:
            table.add_section()
        first = False
        for depth, res in profile:
            table.add_row(
                _name(split or "train"),
                fmt(res.epoch),
                str(depth),
                _name(res.layer) if res.layer else "penultimate (classifier)",
                *(fmt(res.metrics.get(k)) for k, _ in columns),
            )
    return None if first else table


def render_report(
    report: Report,
    console,
    *,
    per_class: bool = False,
    compact: bool | None = None,
    sqi: bool = False,
    verbose: bool = False,
):
    """Print a report: a detailed table per snapshot, or a compact table for many.

    Tables are fitted to ``console.width`` (never a number cut; see :mod:`.layout`); the
    warnings follow, one whole line each (the same warning of several snapshots once).
    ``sqi`` shows the square-loss section whatever the recorded loss; ``verbose`` also
    prints the nulls of metrics that do not apply to the data (always in JSON).
    """
    with Printer(console) as out:
        compact = len(report) > 1 if compact is None else compact
        if compact:
            out.show(compact_table(report, sqi=sqi))
            for extra in (layer_table(report), law_table(report)):
                if extra is not None:
                    out.show(extra)
            if per_class:
                for res in report:
                    out.show(per_class_table(res))
        else:
            for res in sorted(report, key=lambda r: split_rank(r.split)):  # train, test, others
                out.show(snapshot_table(res, report.file, sqi=sqi, width=console.width))
                if per_class and res.per_class:
                    out.show(per_class_table(res))
        seen: dict[str, list[str]] = {}
        for res in report:
            for w in (
                res.warnings if verbose else applicable_warnings(res.warnings, res.null_reasons)
            ):
                seen.setdefault(w, []).append(res.name)
        notes: dict[str, list[str]] = {}
        for res in report:
            note = _loss_line(res, sqi)
            if note:
                notes.setdefault(note, []).append(res.name)
        for kind, found in (("warning", seen), ("note", notes)):
            for w, names in found.items():
                where = (
                    _name(names[0])
                    if len(names) == 1
                    else f"{len(names)} snapshots ({_name(names[0])}, ...)"
                )
                out.message(f"[yellow]{kind}[/yellow] {where}: {markup(w)}")


def _loss_line(res: SnapshotResult, sqi: bool) -> str | None:
    """The note about the square-loss section of one snapshot (None for a square loss)."""
    if res.square_loss:
        return None
    if sqi:
        what = "not recorded" if res.loss is None else f"{res.loss!r}, not a square loss"
        return f"loss {what}: the square-loss section is shown because of --sqi"
    return res.loss_note
