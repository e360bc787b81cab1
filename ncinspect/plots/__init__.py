"""Figures from computed results (never from files): trajectories, geometry, samples, layers.

Every function takes :class:`~ncinspect.results.report.Report` / :class:`SnapshotResult` objects (or
lists of them), an optional ``ax``/``axes`` and a ``style`` (``paper``: 3.5 in / 7 in wide,
7 pt text; ``screen``), and returns the matplotlib Figure. Nothing here calls
``plt.show``; matplotlib is imported only when a figure is drawn. Save figures with
:func:`save_figure` for byte-identical, atomically written PDF/PNG/SVG files.

Kinds (one table, :data:`FIGURE_KINDS` in plan.py; :func:`plan_figures` plans the figures
of some runs and :func:`draw_figure` draws one):

- ``trajectory``: :func:`plot_trajectory`, metrics against epoch, runs overlaid;
- ``gram``: :func:`plot_gram`, cosine matrices of means and classifier beside the ETF;
- ``geometry``: :func:`plot_geometry`, per-class norms and the histogram of cosines;
- ``projection``: :func:`plot_projection`, features on the two leading between-class directions;
- ``spectrum``: :func:`plot_spectrum`, between-class eigenvalues and within-class variance;
- ``sqi``: :func:`plot_sqi`, true-class and wrong-class output distributions;
- ``layers``: :func:`plot_layers`, nc1, trace ratio and NCC accuracy against depth.
"""

from __future__ import annotations

from ._style import DOUBLE, FORMATS, SINGLE, STYLES, figure_bytes, plot_style, save_figure
from .geometry import plot_geometry, plot_gram, plot_spectrum
from .layers import plot_layers
from .panels import LAYER_PANELS, TRAJECTORY_PANELS, Panel
from .plan import (
    FIGURE_KINDS,
    KINDS,
    RUN_KINDS,
    SNAPSHOT_KINDS,
    Figure,
    FigureKind,
    Plan,
    draw_figure,
    kind_allowed,
    needs_sample,
    plan_figures,
    unique_slugs,
)
from .runs import plot_trajectory
from .samples import plot_projection, plot_sqi
from .subset import Worst, parse_classes, pick_classes
from .sweep import plot_sweep

__all__ = [
    "KINDS",
    "RUN_KINDS",
    "SNAPSHOT_KINDS",
    "FORMATS",
    "STYLES",
    "SINGLE",
    "DOUBLE",
    "Panel",
    "TRAJECTORY_PANELS",
    "LAYER_PANELS",
    "plot_trajectory",
    "plot_layers",
    "plot_gram",
    "plot_geometry",
    "plot_spectrum",
    "plot_projection",
    "plot_sqi",
    "plot_sweep",
    "plot_style",
    "figure_bytes",
    "save_figure",
    "kind_allowed",
    "needs_sample",
    "FigureKind",
    "FIGURE_KINDS",
    "Figure",
    "Plan",
    "plan_figures",
    "draw_figure",
    "unique_slugs",
    "Worst",
    "parse_classes",
    "pick_classes",
]
