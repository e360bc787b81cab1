"""Metrics against depth: the per-layer snapshots of one epoch ("intermediate" collapse)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..results.layer_laws import layer_laws
from ..results.trajectory import layer_profile, series
from ._style import log_axis, new_figure, plot_style, run_colors
from .panels import LAYER_PANELS
from .runs import as_runs, figure_legend, run_look, run_title

__all__ = ["plot_layers"]


def plot_layers(
    runs,
    *,
    labels: Sequence[str] | None = None,
    epoch: int | None = None,
    split: str = "train",
    ax=None,
    style: str = "paper",
):
    """nc1, trace ratio and NCC accuracy against depth (``layer_k`` snapshots, then the last).

    Parameters
    ----------
    runs : Report, list of SnapshotResult, or a list of either
    labels : list of str, optional
    epoch : int, optional
        The epoch shown (default each run's last epoch with layer snapshots).
    split : str
        ``"train"`` (default) or another split name.
    ax : sequence of three Axes, optional
    style : {"paper", "screen"}

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Depth k is the ``k`` of ``layer_k``; the classifier's layer (the penultimate features,
    no ``layer``) is drawn one deeper than the deepest hidden layer. Line gids are
    ``"<label>|<metric>|layers"``; the nc1 panel adds the fitted layer-wise law (He & Su
    2023; dashed, gid ``"<label>|nc1|law"``), with its rate and r for a single run. The
    split and epoch are the figure title; the runs' legend (several runs) is below the panels.
    """
    runs = as_runs(runs, labels)
    profiles = [
        (label, layer_profile(results, split=split, epoch=epoch)) for label, results in runs
    ]
    if not any(len(p) > 1 for _, p in profiles):
        raise ValueError("no run has snapshots of several layers at one epoch")
    axes = ax
    colors = run_colors(len(runs))
    with plot_style(style):
        if axes is None:
            fig, grid = new_figure(
                7.0, 2.2 + (0.25 if len(runs) > 1 else 0), style=style, ncols=len(LAYER_PANELS)
            )
            axes = list(grid.ravel())
        else:
            axes = list(np.ravel(axes))
            fig = axes[0].figure
        depths_all: dict[int, str] = {}
        for one, panel in zip(axes, LAYER_PANELS, strict=False):
            key = panel.lines[0][0]
            for i, (label, prof) in enumerate(profiles):
                if not prof:
                    continue
                depths = np.array([d for d, _ in prof], dtype=np.float64)
                _, y = series([r for _, r in prof], key)
                (line,) = one.plot(
                    depths, y, color=colors[i], label=label, **run_look(i, len(profiles))
                )
                line.set_gid(f"{label}|{key}|layers")
                _law_line(one, key, prof, colors[i], label, len(profiles) == 1)
                for d, r in prof:
                    depths_all.setdefault(d, f"{d} (penult.)" if r.layer is None else str(d))
            if panel.log:
                log_axis(one)
            if panel.upper is not None:
                one.set_ylim(top=panel.upper)
            one.set_title(panel.title)
            one.set_ylabel(panel.y_label)
            one.set_xlabel("layer (depth)")
            ticks = sorted(depths_all)
            one.set_xticks(ticks, [depths_all[t] for t in ticks])
        shown = sorted({str(r.epoch) for _, prof in profiles for _, r in prof})
        runs_text = f"{run_title(runs)}: " if len(runs) > 1 or labels else ""
        fig.suptitle(f"{runs_text}{split} split, epoch {', '.join(shown)}")
        figure_legend(fig, runs, colors, loc="outside lower center")  # the title is on top
    return fig


def _law_line(ax, key: str, prof, color, label: str, annotate: bool) -> None:
    """The fitted law of one profile's (epoch, split) on the nc1 panel (nothing on another
    panel, or when the law is null)."""
    laws = layer_laws([r for _, r in prof]) if key == "nc1" else []
    if not laws or laws[0].metrics.get("layer_rate") is None:
        return
    law = laws[0]
    pos = np.array([row["position"] for row in law.layers], dtype=np.float64)
    slope = np.log(law.metrics["layer_rate"])
    fitted = np.exp(law.metrics["layer_law_intercept"] + slope * pos)
    (line,) = ax.plot(pos, fitted, color=color, linestyle="--", linewidth=0.9, alpha=0.8)
    line.set_gid(f"{label}|nc1|law")
    if annotate:
        r = law.metrics.get("layer_law_r")
        r_text = "n/a" if r is None else f"{r:.3f}"
        ax.text(
            0.98, 0.97, f"law: rate {law.metrics['layer_rate']:.3g}, r {r_text}",
            transform=ax.transAxes, fontsize="small", color=color, ha="right", va="top",
        )  # fmt: skip
