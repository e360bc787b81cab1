"""Rich tables for the theory diagnostics: quantity, predicted, measured, relative error.

"measured" is the quantity as one number (a Frobenius norm, or the mean over rows, pairs or
layers that the note names); "rel. error" compares every entry, ``||measured - predicted|| /
||predicted||`` (for a mean over pairs: the RMS deviation over pairs divided by
|predicted|), so a mean can agree with the prediction while its entries scatter.
"""

from __future__ import annotations

from ..results.parts import TheoryLine
from ..results.report import Report, SnapshotResult
from ..text import line_start
from ..theory.run import BIAS_NOTE
from .layout import Printer, column
from .safe import markup as escape
from .table import fmt

__all__ = ["theory_table", "render_theory", "MEASURED", "REL_ERROR", "LEGEND"]

MEASURED = "measured (norm/mean)"
REL_ERROR = "rel. error (RMS)"
#: printed once under the tables: what the two columns are
LEGEND = (
    f"{MEASURED}: one number per quantity, a Frobenius norm or the mean over rows, pairs or "
    f"layers (the note says which); {REL_ERROR}: over every entry, ||measured - predicted|| / "
    "||predicted|| (for a mean over pairs: the RMS deviation over pairs / |predicted|), so a "
    "mean can match the prediction while the entries scatter"
)


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
            f"[bold]{escape(line_start(file or '<arrays>'))}[/bold]  "
            f"snapshot [bold]{escape(res.name)}[/bold]"
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


def theory_table(res: SnapshotResult, file: str | None = None, *, skip_missing: bool = False):
    """The theory table of one snapshot (``res.theory`` must be set); ``skip_missing`` leaves
    out the rows that lack an input (a network with biases, where recording them would not
    make the identities apply)."""
    from rich.table import Table

    table = Table(title=_header(res, file), title_justify="left")
    column(table, "group", "key", style="cyan", no_wrap=True)
    column(table, "quantity", "key", no_wrap=True)
    column(table, "predicted", "value", justify="right")
    column(table, MEASURED, "value", justify="right")
    column(table, REL_ERROR, "value", justify="right")
    column(table, "note", "text", style="dim")
    last = None
    for line in [] if res.theory is None else res.theory.lines:
        if skip_missing and line.status == "missing":
            continue
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
    with Printer(console) as out:
        _theory_lines(report, out, skipped)


def _theory_lines(report: Report, out: Printer, skipped) -> None:
    shown = 0
    for res in report:
        th = res.theory
        biased = th is not None and BIAS_NOTE in th.notes
        out.show(theory_table(res, report.file, skip_missing=biased))
        shown += 1
        if biased:  # once, instead of rows of "missing" and how to record them
            out.message(
                f"[yellow]note[/yellow] {escape(res.name)}: the classifier has a nonzero bias; "
                "the identities are for bias-free ReLU networks (spec/theory.md), so the rows "
                "that need lambda, kappa, N or the layer weights are left out (the JSON keeps "
                "them)",
            )
        for note in [] if th is None else th.notes:
            if note != BIAS_NOTE:
                out.message(f"[yellow]note[/yellow] {escape(note)}")
        for key, how in ({} if th is None or biased else th.missing).items():
            out.message(f"[yellow]missing: {escape(key)}[/yellow] ({escape(how)})")
    if shown:
        out.message(f"[dim]{escape(LEGEND)}[/dim]")
    for line in skipped:
        out.message(f"[dim]{escape(line)}[/dim]")
