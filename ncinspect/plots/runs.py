"""Metrics against epoch, several runs overlaid (the panels are in panels.py; metrics against
depth in layers.py)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..results.report import Report, SnapshotResult
from ..results.trajectory import CLASSIFIER, classifier_layer, is_train, series, trajectory
from ._style import log_axis, new_figure, plot_style, run_colors, run_markers
from .panels import (
    CLASSIFIER_STYLE,
    LAYER_PANELS,
    TEST_STYLE,
    TRAIN_STYLE,
    TRAJECTORY_PANELS,
    Panel,
)

__all__ = [
    "Panel",
    "TRAJECTORY_PANELS",
    "LAYER_PANELS",
    "as_runs",
    "available_panels",
    "plot_trajectory",
    "run_look",
    "figure_legend",
    "run_title",
]


Run = tuple[str, list[SnapshotResult]]
#: Legend of the line styles (grey samples), in the order of TRAIN/TEST/CLASSIFIER_STYLE.
_STYLES = (
    ("train split", TRAIN_STYLE),
    ("test split", TEST_STYLE),
    ("classifier rows (any split)", CLASSIFIER_STYLE),
)


def _default_label(report: Report | None, i: int) -> str:
    if report is not None and report.file:
        from ..render.safe import mpl_text

        return mpl_text(os.path.splitext(os.path.basename(report.file))[0])
    return f"run {i + 1}"


def as_runs(runs, labels: Sequence[str] | None = None) -> list[Run]:
    """Normalise ``runs`` to ``[(label, results), ...]``.

    ``runs`` is one :class:`Report`, one list of :class:`SnapshotResult`, one
    :class:`~ncinspect.results.aggregate.AggregateReport` (several seeds: drawn as their mean with a
    95% band), or a list of these (several runs). Labels default to the report's file name
    (without suffix), "mean of N runs" or "run i".
    """
    from ..results.aggregate import AggregateReport

    if isinstance(runs, (Report, AggregateReport)) or (
        isinstance(runs, (list, tuple)) and runs and isinstance(runs[0], SnapshotResult)
    ):
        runs = [runs]
    out: list[Run] = []
    for i, run in enumerate(runs):
        if isinstance(run, AggregateReport):
            out.append((f"mean of {len(run.files)} runs", run.views("mean")))
            continue
        report = run if isinstance(run, Report) else None
        results = list(run)
        out.append((_default_label(report, i), results))
    if labels is not None:
        labels = list(labels)
        if len(labels) != len(out):
            raise ValueError(f"{len(labels)} label(s) given for {len(out)} run(s)")
        out = [(label, results) for label, (_, results) in zip(labels, out, strict=True)]
    return out


def _split_results(results: list[SnapshotResult], split: str, layer=CLASSIFIER):
    if layer is CLASSIFIER:  # the classifier's layer: None, or the one every snapshot names
        layer = classifier_layer(results)
    if split == "train":
        return trajectory(results, split="train", layer=layer)
    others = [r.split for r in results if not is_train(r) and r.layer == layer]
    if not others:
        return []
    want = "test" if "test" in others else others[0]
    return trajectory(results, split=want, layer=layer)


def _has_values(values: np.ndarray, log: bool) -> bool:
    ok = np.isfinite(values)
    if log:
        ok &= values > 0
    return bool(ok.any())


def _panel_data(runs: list[Run], panel: Panel):
    """[(run index, line spec, x, y)] of the series with at least one plottable value."""
    data = []
    for i, (_, results) in enumerate(runs):
        for spec in panel.lines:
            key, split = spec[0], spec[1]
            x, y = series(_split_results(results, split), key)
            if y.size and _has_values(y, panel.log):
                data.append((i, spec, x, y))
    return data


_RUN_ALPHA = 0.85  #: lines of several runs are slightly transparent, so overlaps blend


def run_look(i: int, n: int) -> dict:
    """Marker, size and transparency of run ``i`` of ``n``.

    Each run has its own marker; earlier runs get wider lines and larger markers (drawn
    below the later ones), so a run whose values equal another's still shows around it.
    """
    import matplotlib as mpl

    grow = 1.0 + 0.7 * (n - 1 - i) / max(n - 1, 1)  # 1.7 for the first run, 1 for the last
    return {
        "marker": run_markers(n)[i],
        "markersize": mpl.rcParams["lines.markersize"] * grow,
        "linewidth": mpl.rcParams["lines.linewidth"] * grow,
        "alpha": _RUN_ALPHA if n > 1 else 1.0,
    }


def _epoch_ticks(ax) -> None:
    """Three to four labelled epoch ticks (integers), whatever the epochs recorded: more
    overlap in a four-column grid of narrow panels."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(nbins=3, integer=True, min_n_ticks=3))


def _band(results: list[SnapshotResult], key: str):
    """(lower, upper) 95% ends of ``key`` along aggregated ``results`` (None if not such)."""
    if not results or results[0].arrays.ci_low is None:
        return None

    def ends(which: str) -> np.ndarray:
        vals = [getattr(r.arrays, which).get(key) for r in results]
        return np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)

    return ends("ci_low"), ends("ci_high")


def _draw_band(ax, results, key: str, x, color: str, log: bool, gid: str) -> None:
    band = _band(results, key)
    if band is None:
        return
    lo, hi = band
    if log:  # a band reaching zero or below is cut at the axis' floor, not dropped
        lo = np.where(lo > 0, lo, np.nan)
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        poly = ax.fill_between(x, lo, hi, where=ok, color=color, alpha=0.18, linewidth=0)
        poly.set_gid(gid)


def _draw_panel(ax, runs: list[Run], panel: Panel, colors: list[str], xlabel: str) -> None:
    data = _panel_data(runs, panel)
    for i, (key, split, _, ls), x, y in data:
        label = runs[i][0]
        _draw_band(
            ax,
            _split_results(runs[i][1], split),
            key,
            x,
            colors[i],
            panel.log,
            f"{label}|{key}|{split}|band",
        )
        (line,) = ax.plot(
            x,
            y,
            linestyle=ls,
            color=colors[i],
            label=label,
            markerfacecolor=colors[i] if ls == TRAIN_STYLE else "none",
            clip_on=panel.upper is None,  # markers at the fixed top (accuracy 1) stay whole
            **run_look(i, len(runs)),
        )
        line.set_gid(f"{label}|{key}|{split}")
    if panel.log:
        log_axis(ax)
    if panel.upper is not None:
        lo = min([float(np.nanmin(y)) for *_, y in data if np.isfinite(y).any()] or [0.0])
        span = panel.upper - min(lo, panel.upper)
        ax.set_ylim(min(lo, panel.upper) - 0.05 * max(span, 0.02), panel.upper)
    ax.set_title(panel.title)
    ax.set_ylabel(panel.y_label)
    ax.set_xlabel(xlabel)
    _epoch_ticks(ax)


def figure_legend(
    fig,
    runs: list[Run],
    colors: list[str],
    styles: Sequence[tuple[str, str]] = (),
    *,
    loc: str = "outside upper center",
) -> None:
    """One legend for all panels: runs by colour and marker, then series by line style (grey).

    Solid series have filled markers, dashed ones hollow markers.
    """
    from matplotlib.lines import Line2D

    handles, texts = [], []
    if len(runs) > 1:
        for i, c in enumerate(colors):
            look = run_look(i, len(runs))
            handles.append(
                Line2D(
                    [],
                    [],
                    color=c,
                    marker=look["marker"],
                    markersize=look["markersize"],
                    linewidth=look["linewidth"],
                )
            )
            texts.append(runs[i][0])
    for text, ls in styles:
        handles.append(
            Line2D(
                [],
                [],
                color="0.35",
                linestyle=ls,
                marker="o",
                markerfacecolor="0.35" if ls == TRAIN_STYLE else "none",
            )
        )
        texts.append(text)
    if handles:
        fig.legend(handles, texts, loc=loc, ncols=min(len(handles), 4))


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    ncols = min(n, max_cols)
    return -(-n // ncols), ncols


def available_panels(runs: list[Run], panels: Sequence[Panel] = TRAJECTORY_PANELS) -> list[Panel]:
    """The panels for which at least one run has a value."""
    return [p for p in panels if _panel_data(runs, p)]


def plot_trajectory(
    runs,
    *,
    labels: Sequence[str] | None = None,
    panels: Sequence[Panel] | None = None,
    ax=None,
    style: str = "paper",
    title: str | None = None,
):
    """Neural-collapse metrics against epoch, several runs overlaid in consistent colours.

    Parameters
    ----------
    runs : Report, list of SnapshotResult, or a list of either
        One run or several (e.g. with and without weight decay).
    labels : list of str, optional
        One label per run (legend); default the file names.
    panels : list of Panel, optional
        Default :data:`TRAJECTORY_PANELS`, keeping those with data.
    ax : Axes or sequence of Axes, optional
        One per panel; default a new
        7 in wide figure.
    style : {"paper", "screen"}
    title : str, optional
        Figure title; default the run labels (``"wd vs no-wd"``). ``""`` for none.

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The training trajectory is the train (or unlabelled) split of the classifier's layer;
    "test" lines use the first non-train split. Colour and marker are the run; line style
    has one meaning in every panel: solid with filled markers is the training split, dashed
    with hollow markers the test split, dotted the classifier rows (the same W for every
    split), all explained in one legend below the panels. Each y axis names its metric and
    its direction; the accuracy axes end at 1. With several runs the lines are slightly
    transparent and earlier runs have wider lines and larger markers, so a run
    whose values equal another's (e.g. accuracy 1 in both) stays visible. Each line's gid is
    ``"<label>|<metric>|<split>"``; its y data are the report's values (NaN where undefined).
    """
    runs = as_runs(runs, labels)
    panels = available_panels(runs, panels or TRAJECTORY_PANELS)
    if not panels:
        raise ValueError("no trajectory panel has data (no metric defined in any snapshot)")
    axes = ax
    colors = run_colors(len(runs))
    used = {spec[3] for p in panels for _, spec, _, _ in _panel_data(runs, p)}
    with plot_style(style):
        fig, axes, bottom = _panel_axes(axes, len(panels), len(runs), style)
        for one, panel in zip(axes, panels, strict=False):
            _draw_panel(one, runs, panel, colors, "epoch" if id(one) in bottom else "")
        figure_legend(
            fig,
            runs,
            colors,
            [(t, ls) for t, ls in _STYLES if ls in used],
            loc="outside lower center",
        )
        text = run_title(runs) if title is None else title
        if text:
            fig.suptitle(text)
    return fig


def _panel_axes(axes, n_panels: int, n_runs: int, style: str):
    """(figure, one axes per panel, ids of the axes that get an x label): a new 7 in wide
    grid, or the caller's axes."""
    if axes is None:
        nrows, ncols = _grid(n_panels)
        fig, grid = new_figure(
            7.0, 1.75 * nrows + 0.3 * (1 + (n_runs > 2)), style=style, nrows=nrows, ncols=ncols
        )
        flat = list(grid.ravel())
        for ax in flat[n_panels:]:
            ax.set_visible(False)
        axes = flat[:n_panels]
        return fig, axes, {id(ax) for j, ax in enumerate(axes) if j + ncols >= n_panels}
    axes = list(np.ravel(axes))
    if len(axes) < n_panels:
        raise ValueError(f"{n_panels} panels need as many axes, got {len(axes)}")
    return axes[0].figure, axes, {id(ax) for ax in axes}


def run_title(runs: list[Run]) -> str:
    """The runs' labels as a figure title: ``"a"``, ``"a vs b"``, ``"a, b vs c"``."""
    names = [label for label, _ in runs]
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} vs {names[-1]}"


def one_axes_argument(ax, axes):
    """``ax`` and its older name ``axes`` are one argument: give at most one."""
    if ax is not None and axes is not None:
        raise TypeError("give ax or axes, not both (they are the same argument)")
    return ax if ax is not None else axes
