"""Figures of individual samples (a seeded subsample): projected features and outputs (SQI).

They need the ``sample_*`` arrays that :func:`ncinspect.analysis.sampling.sample_snapshot` adds to a
:class:`~ncinspect.results.report.SnapshotResult`.
"""

from __future__ import annotations

import numpy as np

from ..analysis.projection import project
from ..render.safe import mpl_text
from ..results.report import SnapshotResult
from ..text import LABEL_LIMIT
from ._style import (
    CLASS_KEY_LIMIT,
    PETROFF10,
    SINGLE,
    class_colors,
    class_markers,
    log_axis,
    new_figure,
    plot_style,
    snapshot_title,
)
from .subset import pick_classes

__all__ = ["plot_projection", "plot_sqi"]

_LEGEND_CLASSES = CLASS_KEY_LIMIT  #: above this many classes the legend becomes a colour bar


def _need(result: SnapshotResult, *keys: str) -> None:
    missing = [k for k in keys if getattr(result.arrays, k) is None]
    if missing:
        raise ValueError(
            f"{result.name}: no {', '.join(missing)} in result.arrays; add a subsample with "
            "ncinspect.analysis.sampling.sample_snapshot first"
        )


def plot_projection(result: SnapshotResult, *, classes=None, ax=None, style: str = "paper"):
    """Sampled features on the two leading between-class directions, coloured by class.

    Parameters
    ----------
    result : SnapshotResult
        With ``sample_proj`` and ``sample_codes`` (see :mod:`ncinspect.analysis.sampling`).
    classes : list of int, ``Worst(k)`` or str, optional
        Draw only these class rows (``"0-9"``, ``"worst:10"``); the plane stays the one of
        every class. For C >= 100 a subset keeps the figure readable.
    ax : Axes, optional
    style : {"paper", "screen"}

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Coordinates are ``(h_i - mu_G) . v_k`` for the leading eigenvectors ``v_1, v_2`` of
    Sigma_B. Class means are drawn as large outlined markers, classifier rows ``w_c`` as
    arrows from the origin (projected on the same plane and scaled so that the longest has
    the length of the farthest projected mean). Scatter gid ``class|<c>``; mean markers gid
    ``means``.
    """
    _need(result, "sample_proj", "sample_codes")
    arrs = result.arrays
    proj = np.asarray(arrs.sample_proj, dtype=np.float64)
    codes = np.asarray(arrs.sample_codes)
    k = proj.shape[1]
    basis = np.asarray(arrs.basis)[:k]
    picked = pick_classes(result, classes)
    rows = np.arange(result.n_classes) if picked is None else picked
    C = len(rows)
    pad = (lambda a: np.column_stack([a, np.zeros(len(a))])) if k == 1 else (lambda a: a)
    proj2 = pad(proj)
    means2 = pad(project(np.asarray(arrs.means)[rows], basis, origin=arrs.global_mean))
    colors, markers = class_colors(C), class_markers(C)
    with plot_style(style):
        if ax is None:
            fig, grid = new_figure(SINGLE, 3.2, style=style)
            ax = grid[0, 0]
        fig = ax.figure
        shown = _scatter_classes(ax, result, proj2, codes, rows, colors, markers)
        for j in range(C):  # one marker per class: matplotlib takes one per call
            ax.scatter(
                means2[j : j + 1, 0],
                means2[j : j + 1, 1],
                s=30 if C <= _LEGEND_CLASSES else 12,
                color=colors[j],
                marker=markers[j],
                edgecolors="black",
                linewidths=0.7,
                zorder=3,
                gid="means",
            )
        if arrs.weights is not None:
            w2 = pad(np.asarray(arrs.weights, dtype=np.float64)[rows] @ basis.T)
            _classifier_arrows(ax, w2, means2, colors)
        ax.set_xlabel("between-class direction v₁")
        ax.set_ylabel("between-class direction v₂" if k > 1 else "(rank 1: no v₂)")
        ax.set_aspect("equal", adjustable="datalim")
        of = "" if picked is None else f", {C} of {result.n_classes} classes"
        ax.set_title(f"features on v₁, v₂ ({shown} samples{of})\n{snapshot_title(result)}")
        _class_key(fig, ax, C, picked)
    return fig


def _scatter_classes(ax, result: SnapshotResult, proj2, codes, rows, colors, markers) -> int:
    """The sampled points of each class in ``rows`` (gid ``class|<c>``); how many are shown."""
    C = len(rows)
    size = (4 if len(codes) <= 2000 else 2) * (2 if C <= _LEGEND_CLASSES else 1)
    shown = 0
    for j, c in enumerate(rows):
        sel = codes == c
        shown += int(sel.sum())
        if sel.any():
            ax.scatter(
                proj2[sel, 0],
                proj2[sel, 1],
                s=size,
                color=colors[j],
                marker=markers[j],
                alpha=0.5,
                linewidths=0,
                rasterized=True,
                gid=f"class|{c}",
                label=mpl_text(result.class_names[c], LABEL_LIMIT)
                if C <= _LEGEND_CLASSES
                else None,
            )
    return shown


def _classifier_arrows(ax, w2, means2, colors) -> None:
    """Projected classifier rows as arrows from the origin, the longest as long as the
    farthest projected mean (none when every row or mean projects to nothing)."""
    wlen = np.linalg.norm(w2, axis=1)
    mlen = np.nanmax(np.linalg.norm(means2, axis=1))
    if not (wlen.max() > 0 and np.isfinite(mlen)):
        return
    w2 = w2 * (mlen / wlen.max())
    for j in range(len(w2)):
        ax.annotate(
            "",
            xy=(w2[j, 0], w2[j, 1]),
            xytext=(0, 0),
            zorder=4,
            arrowprops={
                "arrowstyle": "-|>",
                "color": colors[j],
                "mutation_scale": 7,
                "linewidth": 0.8,
                "shrinkA": 0,
                "shrinkB": 0,
            },
        )


def _class_key(fig, ax, C: int, picked) -> None:
    """A class legend beside the axes for a few classes, else a colour bar of the index."""
    if C <= _LEGEND_CLASSES:
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            markerscale=2,
            title="class",
            handletextpad=0.2,
            ncol=1 if C <= 10 else 2,
            columnspacing=0.6,
        )
        return
    import matplotlib as mpl

    norm = mpl.colors.Normalize(0, C - 1)
    sm = mpl.cm.ScalarMappable(norm=norm, cmap=mpl.colormaps["viridis"])
    label = "class index" if picked is None else "class (position in the subset)"
    label += (
        f"\n{C} > {_LEGEND_CLASSES} classes: grouped by colour (neighbours look alike);"
        f"\n--classes picks up to {_LEGEND_CLASSES} for a legend"
    )
    fig.colorbar(sm, ax=ax, label=label, shrink=0.8)


def plot_sqi(result: SnapshotResult, *, ax=None, style: str = "paper", bins: int = 60):
    """Distributions of true-class and wrong-class outputs, with 1 - eps1 and eps2 marked.

    Parameters
    ----------
    result : SnapshotResult
        With ``sample_true_out`` and ``sample_wrong_out`` (see :mod:`ncinspect.analysis.sampling`).
    ax : Axes, optional
    style : {"paper", "screen"}
    bins : int

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Under symmetric quasi-interpolation every true-class output is ``1 - eps1`` and every
    wrong-class output ``eps2``; the dashed lines, each in the colour of its histogram, are
    those values from the report (all samples), the histograms a seeded subsample. Lines
    have gids ``1-eps1`` and ``eps2``.
    """
    _need(result, "sample_true_out", "sample_wrong_out")
    true = np.asarray(result.arrays.sample_true_out, dtype=np.float64)
    wrong = np.asarray(result.arrays.sample_wrong_out, dtype=np.float64)
    eps1, eps2 = result.metrics.get("sqi_eps1"), result.metrics.get("sqi_eps2")
    both = np.concatenate([true, wrong, [0.0, 1.0]])
    edges = np.linspace(float(both.min()), float(both.max()), bins + 1)
    c_true, c_wrong = PETROFF10[0], PETROFF10[1]
    with plot_style(style):
        if ax is None:
            fig, grid = new_figure(SINGLE, 2.4, style=style)
            ax = grid[0, 0]
        fig = ax.figure
        ax.hist(
            wrong,
            bins=edges,
            density=True,
            color=c_wrong,
            alpha=0.6,
            label=f"wrong class f_c, c≠y ({wrong.size})",
        )
        ax.hist(
            true,
            bins=edges,
            density=True,
            color=c_true,
            alpha=0.6,
            label=f"true class f_y ({true.size})",
        )
        if eps1 is not None:
            ax.axvline(
                1.0 - eps1,
                color=c_true,
                linestyle="--",
                linewidth=1.0,
                gid="1-eps1",
                label=f"1 - eps1 = {1.0 - eps1:.3g}",
            )
        if eps2 is not None:
            ax.axvline(
                eps2,
                color=c_wrong,
                linestyle="--",
                linewidth=1.0,
                gid="eps2",
                label=f"eps2 = {eps2:.3g}",
            )
        log_axis(ax)
        ax.set_xlabel("network output")
        ax.set_ylabel("density (log)")
        ax.set_title(f"outputs (SQI), {snapshot_title(result)}")
        ax.legend(loc="upper center")
    return fig
