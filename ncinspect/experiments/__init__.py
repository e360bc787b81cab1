"""Scripted studies built on the trainer, the analysis and the plots (a wing: nothing in the
spine imports it).

- :mod:`.weight_decay`: the weight-decay sweep (one dump per lambda and seed, rows of final
  NC metrics and theory residuals) and the headline experiment over several seeds;
- :mod:`.tables`: its Markdown/CSV/JSON tables and figures;
- :mod:`.critical_point`: data and settings that train to a critical point (the identities
  of spec/theory.md checked to 1e-6).
"""

from __future__ import annotations

from .critical_point import converged_config, gradient_norm, template_data
from .tables import headline_markdown, sweep_columns, sweep_markdown, write_headline, write_sweep
from .weight_decay import (
    SWEEP_METRICS,
    SWEEP_THEORY,
    dump_name,
    factors,
    sweep_row,
    sweep_weight_decay,
)

__all__ = [
    "SWEEP_METRICS",
    "SWEEP_THEORY",
    "dump_name",
    "factors",
    "sweep_row",
    "sweep_weight_decay",
    "sweep_columns",
    "sweep_markdown",
    "write_sweep",
    "headline_markdown",
    "write_headline",
    "template_data",
    "converged_config",
    "gradient_norm",
]
