"""The table of the layer-wise law: one row per (epoch, split), columns from the registry."""

from __future__ import annotations

from ..metrics.registry import DIRECTION_ARROWS, LAW_REGISTRY
from ..results.layer_laws import layer_laws
from ..text import fmt
from .layout import column
from .safe import markup

__all__ = ["law_table"]


def law_table(report):
    """The layer-wise law (He & Su 2023) of each (epoch, split) with hidden layers: the
    columns of :data:`~ncinspect.metrics.registry.LAW_REGISTRY` and why a value is null
    (None when the report has no hidden-layer snapshots)."""
    from rich.table import Table

    laws = layer_laws(report)
    if not laws:
        return None
    table = Table(
        title=f"[bold]{markup(report.file or '<arrays>')}[/bold]: layer-wise law "
        "(log nc1 against layer)",
        title_justify="left",
    )
    column(table, "split", "key", no_wrap=True)
    column(table, "epoch", "value", justify="right")
    for m in LAW_REGISTRY:
        arrow = DIRECTION_ARROWS[m.direction].split(" ")[0]
        column(table, f"{m.label} {arrow}".strip(), "value", justify="right")
    column(table, "note", "text")
    for law in laws:
        table.add_row(
            markup(law.split or "train"),
            fmt(law.epoch),
            *(fmt(law.metrics.get(m.key)) for m in LAW_REGISTRY),
            markup("; ".join(law.warnings)),
        )
    return table
