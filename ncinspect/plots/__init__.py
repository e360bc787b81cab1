"""Figures from computed results (never from files): trajectories, geometry, samples, layers.

Every function takes :class:`~ncinspect.report.Report` / :class:`SnapshotResult` objects (or
lists of them), an optional ``ax``/``axes`` and a ``style`` (``paper``: 3.5 in / 7 in wide,
7 pt text; ``screen``), and returns the matplotlib Figure. Nothing here calls
``plt.show``; matplotlib is imported only when a figure is drawn. Save figures with
:func:`save_figure` for byte-identical, atomically written PDF/PNG/SVG files.

Kinds (see :data:`KINDS`):

- ``trajectory``: :func:`plot_trajectory`, metrics against epoch, runs overlaid;
- ``gram``: :func:`plot_gram`, cosine matrices of means and classifier beside the ETF;
- ``geometry``: :func:`plot_geometry`, per-class norms and the histogram of cosines;
- ``projection``: :func:`plot_projection`, features on the two leading between-class directions;
- ``spectrum``: :func:`plot_spectrum`, between-class eigenvalues and within-class variance;
- ``sqi``: :func:`plot_sqi`, true-class and wrong-class output distributions;
- ``layers``: :func:`plot_layers`, nc1, trace ratio and NCC accuracy against depth.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..report import SnapshotResult
from ..trajectory import has_layers, layer_profile, trajectory
from ._style import DOUBLE, FORMATS, SINGLE, STYLES, figure_bytes, plot_style, save_figure
from .geometry import plot_geometry, plot_gram, plot_spectrum
from .runs import LAYER_PANELS, TRAJECTORY_PANELS, Panel, plot_layers, plot_trajectory
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
    "Worst",
    "parse_classes",
    "pick_classes",
]

#: Kinds drawn once for all runs together (runs overlaid).
RUN_KINDS = ("trajectory", "layers")
#: Kinds drawn for one snapshot (the final training snapshot of each run).
SNAPSHOT_KINDS = ("gram", "geometry", "projection", "spectrum", "sqi")
KINDS = ("trajectory", "gram", "geometry", "projection", "spectrum", "sqi", "layers")


def needs_sample(kind: str) -> bool:
    """True for kinds that show individual samples (a seeded subsample must be read first)."""
    return kind in ("projection", "sqi")


def kind_allowed(kind: str, results: Iterable[SnapshotResult], *, sqi: bool = False) -> str | None:
    """None when the results of one run allow ``kind``, else the reason why not (one line).

    ``sqi`` (the square-loss output figure) is drawn only for a square-loss model (the
    snapshot's recorded ``loss``) unless ``sqi=True`` forces it.
    """
    results = list(results)
    if kind == "trajectory":
        train = trajectory(results)
        epochs = {r.epoch for r in train}
        return None if len(epochs) > 1 else "needs training snapshots at two or more epochs"
    if kind == "layers":
        if all(r.task != "classification" for r in results):
            return "regression snapshots: read nrc1 per layer in the report's layer table"
        if not has_layers(results):
            return "needs hidden-layer snapshots (layer_k)"
        return None if len(layer_profile(results)) > 1 else "needs several layers at one epoch"
    if kind not in SNAPSHOT_KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
    from ..trajectory import final_snapshot

    final = final_snapshot([r for r in results if r.task != "ood"])
    if final is None:
        return "no snapshot"
    if final.task == "regression":
        return "a regression snapshot has no classes (nrc1-nrc3 are in the trajectory figure)"
    if kind == "spectrum" and len(final.arrays.get("between_eigvals", ())) == 0:
        return "no between-class direction (all class means equal)"
    if kind == "projection" and len(final.arrays.get("basis", ())) == 0:
        return "no between-class direction (all class means equal)"
    if kind == "sqi" and final.metrics.get("sqi_eps1") is None:
        return "needs outputs or classifier weights"
    if kind == "sqi" and not final.shows_square_loss(sqi):
        if final.loss is None:
            return "loss not recorded: record metadata loss='square' or pass --sqi"
        from ..render.safe import plain

        return f"loss {plain(final.loss)!r} is not a square loss (--sqi draws it anyway)"
    return None
