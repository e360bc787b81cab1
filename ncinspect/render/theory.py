"""Rich tables for the theory diagnostics: quantity, predicted, measured, relative error."""

from __future__ import annotations

from ..report import Report, SnapshotResult
from ..results import TheoryLine
from .layout import column, message, show
from .safe import markup as escape
from .table import fmt

__all__ = ["theory_table", "render_theory"]


def _header(res: SnapshotResult, file: str | None) -> str:
    th = res.theory
    c = {} if th is None else th.constants
    consts = "  ".join(
        f"{name}={fmt(c.get(key))}"
        for key, name in (
            ("weight_decay", "lambda"),
            ("kappa", "kappa"),
            ("n_samples", "N"),
            ("Lambda", "Lambda"),
            ("n_classes", "C"),
            ("depth", "L"),
        )
    )
    tags = "  ".join(
        f"{k}={escape(v)}" for k, v in (("epoch", res.epoch), ("split", res.split)) if v is not None
    )
    worst = "  ".join(
        f"{label} {fmt(None if th is None else getattr(th, key))}"
        for key, label in (
            ("max_rel_error_critical", "max rel. error: critical-point identities"),
            ("max_rel_error_closed_forms", "closed forms"),
        )
    )
    return "\n".join(
        p
        for p in (
            f"[bold]{escape(file or '<arrays>')}[/bold]  snapshot [bold]{escape(res.name)}[/bold]"
            f"  {tags}",
            consts,
            worst,
        )
        if p
    )


def _cells(line: TheoryLine) -> tuple[str, str, str]:
    status = line.status
    if status == "missing":
        return "[yellow]missing[/yellow]", "", ""
    if status == "not_applicable":  # the measured value may still be shown (e.g. layer norms)
        return "[dim]n/a[/dim]", fmt(line.measured) if line.measured is not None else "", ""
    return fmt(line.predicted), fmt(line.measured), fmt(line.rel_error)


def _note(line: TheoryLine) -> str:
    if line.status == "missing":
        return f"[yellow]missing: {escape(', '.join(line.missing))}[/yellow]"
    if line.status == "not_applicable":
        return "does not apply (lambda = 0)"
    return escape(line.note or "")


def theory_table(res: SnapshotResult, file: str | None = None):
    """The theory table of one snapshot (``res.theory`` must be set)."""
    from rich.table import Table

    table = Table(title=_header(res, file), title_justify="left")
    column(table, "group", "key", style="cyan", no_wrap=True)
    column(table, "quantity", "key", no_wrap=True)
    column(table, "predicted", "value", justify="right")
    column(table, "measured", "value", justify="right")
    column(table, "rel. error", "value", justify="right")
    column(table, "note", "text", style="dim")
    last = None
    for line in [] if res.theory is None else res.theory.lines:
        group = line.group
        if last is not None and group != last:
            table.add_section()
        table.add_row(
            escape(group) if group != last else "",
            escape(line.quantity),
            *_cells(line),
            _note(line),
        )
        last = group
    return table


def render_theory(report: Report, console, *, skipped: list[str] = ()) -> None:
    """Print one theory table per snapshot, then its notes and how to record missing keys.

    Tables are fitted to ``console.width`` (no number cut); notes are whole lines when piped.
    """
    for res in report:
        show(console, theory_table(res, report.file))
        th = res.theory
        for note in [] if th is None else th.notes:
            message(console, f"[yellow]note[/yellow] {escape(note)}")
        for key, how in ({} if th is None else th.missing).items():
            message(console, f"[yellow]missing: {escape(key)}[/yellow] ({escape(how)})")
    for line in skipped:
        message(console, f"[dim]{escape(line)}[/dim]")
