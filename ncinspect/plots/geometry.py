"""One snapshot's class geometry: Gram (cosine) matrices, norms and cosines, the spectrum."""

from __future__ import annotations

import numpy as np

from ..analysis.projection import cosine_matrix, etf_cosine, pairwise_cosines, row_norms
from ..results.report import SnapshotResult
from ._style import (
    CLASS_TICK_LIMIT,
    DOUBLE,
    SINGLE,
    direction_text,
    hide_class_ticks,
    log_axis,
    new_figure,
    plot_style,
    snapshot_title,
)
from .subset import pick_classes

__all__ = ["centred_means", "classifier_rows", "plot_gram", "plot_geometry", "plot_spectrum"]

_CMAP = "RdBu_r"  # diverging ColorBrewer map, readable with colour-vision deficiencies
_MEANS, _WEIGHTS = "#0072B2", "#D55E00"  # Okabe-Ito blue / vermillion


def centred_means(result: SnapshotResult) -> np.ndarray:
    """``M~``: the class means minus the global mean (rows of empty classes stay NaN)."""
    return np.asarray(result.arrays.means) - np.asarray(result.arrays.global_mean)


def classifier_rows(result: SnapshotResult, *, centered: bool = False) -> np.ndarray | None:
    """The classifier W as stored, or with its mean row removed (``centered``); None if absent."""
    w = result.arrays.weights
    if w is None:
        return None
    w = np.asarray(w, dtype=np.float64)
    return w - w.mean(axis=0) if centered else w


def _subset_note(rows, n_total: int) -> str:
    return "" if rows is None else f", {len(rows)} of {n_total} classes"


def plot_gram(
    result: SnapshotResult,
    *,
    centered_weights: bool = False,
    classes=None,
    ax=None,
    style: str = "paper",
):
    """Cosine matrices of the centred class means and of the classifier rows, beside the ETF.

    Parameters
    ----------
    result : SnapshotResult
        One snapshot's analysis (``result.arrays`` holds the means and W).
    centered_weights : bool
        Remove the mean classifier row first (what ``etf_error_weights_centered`` measures;
        the one to watch for bias-free networks).
    classes : list of int, ``Worst(k)`` or str, optional
        Show only these class rows (``"0-9"``, ``"worst:10"``: the ten classes with the
        largest ``v_c / ||mu_c - mu_G||^2``); for C >= 100 a full matrix is unreadable.
        Means are still centred on the mean of every class, W on the mean of every row.
    ax : sequence of Axes, optional
        Two (means, ETF) or three (means, classifier, ETF) axes; default a new figure
    style : {"paper", "screen"}

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    The figure is 7 in wide (two columns) with W and 3.5 in (one column) without.
    All panels share one colour scale on [-1, 1]; the simplex ETF has 1 on the diagonal and
    ``-1/(C-1)`` elsewhere, which is also marked on the colour bar. Per-class tick labels are
    hidden above 20 classes.
    """
    axes = ax
    C_all = result.n_classes
    rows = pick_classes(result, classes)
    names = list(result.class_names) if rows is None else [result.class_names[r] for r in rows]
    C = len(names)
    mats, etf = _gram_matrices(result, rows, C, centered_weights)
    narrow = len(mats) == 2  # no W: two panels, one column wide; titles on two lines
    with plot_style(style):
        fig, axes = _gram_axes(axes, len(mats), C, names, style)
        _draw_gram(fig, axes, mats, etf, names, rows)
        sep = "\n" if narrow else "; "
        fig.suptitle(
            f"Gram matrices (cosines), {snapshot_title(result)}{_subset_note(rows, C_all)}"
            f"{sep}black bar: ETF -1/(C-1)"
        )
    return fig


def _gram_matrices(result: SnapshotResult, rows, C: int, centered_weights: bool):
    """``(title, cosine matrix)`` of the centred means, of W when present and of the simplex
    ETF over the ``C`` shown classes; and the ETF cosine."""
    take = (lambda a: a) if rows is None else (lambda a: a[rows])
    mats = [("centred class means", cosine_matrix(take(centred_means(result))))]
    w = classifier_rows(result, centered=centered_weights)
    if w is not None:
        name = "classifier rows, centred" if centered_weights else "classifier rows"
        mats.append((name, cosine_matrix(take(w))))
    etf = etf_cosine(result.n_classes)  # a subset of ETF vertices keeps the cosine of all C
    ideal = np.full((C, C), etf)
    np.fill_diagonal(ideal, 1.0)
    brk = "\n" if len(mats) == 1 else " "
    mats.append((f"simplex ETF{brk}(off-diagonal {etf:.3g})", ideal))
    return mats, etf


def _gram_axes(axes, n: int, C: int, names: list, style: str):
    """The figure and the ``n`` axes of the Gram panels: those given, or a new figure."""
    if axes is not None:
        axes = list(np.ravel(axes))
        return axes[0].figure, axes
    width = DOUBLE if n == 3 else SINGLE  # two-column, or one-column without W
    long_names = C <= CLASS_TICK_LIMIT and max(len(str(name)) for name in names) > 3
    height = (width - 1.0) / n + 1.0 + (0.5 if long_names else 0.0)
    fig, grid = new_figure(width, height, style=style, ncols=n)
    return fig, list(grid.ravel())


def _draw_gram(fig, axes, mats, etf: float, names: list, rows) -> None:
    """Each matrix on its axes, on one colour scale with the ETF cosine marked on its bar."""
    C = len(names)
    im = None
    for i, (ax, (title, mat)) in enumerate(zip(axes, mats, strict=False)):
        im = ax.imshow(mat, cmap=_CMAP, vmin=-1.0, vmax=1.0, interpolation="nearest")
        ax.set_title(title)
        ax.grid(False)
        hide_class_ticks(ax, C, names=names if rows is None or C <= CLASS_TICK_LIMIT else None)
        ax.set_xlabel("class" if rows is None else "class (subset)")
        if i:
            ax.tick_params(axis="y", labelleft=False)
    axes[0].set_ylabel("class")
    cbar = fig.colorbar(im, ax=axes, shrink=0.9, aspect=25)
    cbar.set_label("cosine")
    cbar.ax.axhline(etf, color="black", linewidth=1.2)


def plot_geometry(
    result: SnapshotResult,
    *,
    centered_weights: bool = False,
    ax=None,
    style: str = "paper",
    bins: int = 40,
):
    """Per-class norms (relative to their mean) and the histogram of pairwise cosines.

    Parameters
    ----------
    result : SnapshotResult
    centered_weights : bool
        Remove the mean classifier row first (as ``etf_error_weights_centered`` does).
    ax : sequence of two Axes, optional
    style : {"paper", "screen"}
    bins : int
        Histogram bins (over the range of the cosines and the ETF value).

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    Left: ``||mu_c - mu_G|| / mean_c ||mu_c - mu_G||`` and ``||w_c|| / mean_c ||w_c||`` per
    class (equinorm: all equal to 1); their spread is ``nc2_equinorm_*``. Right: the
    C(C-1)/2 pairwise cosines (equiangularity: all equal to ``-1/(C-1)``, the dashed line).
    """
    axes = ax
    C = result.n_classes
    series = [("centred means", centred_means(result), _MEANS, "o")]
    w = classifier_rows(result, centered=centered_weights)
    if w is not None:
        name = "classifier rows, centred" if centered_weights else "classifier rows"
        series.append((name, w, _WEIGHTS, "s"))
    etf = etf_cosine(C)
    with plot_style(style):
        if axes is None:
            fig, grid = new_figure(DOUBLE, 2.4, style=style, ncols=2)
            axes = list(grid.ravel())
        else:
            axes = list(np.ravel(axes))
            fig = axes[0].figure
        cos_all = _norms_panel(axes[0], series, C, result.class_names)
        _cosines_panel(axes[1], cos_all, etf, bins, C)
        fig.suptitle(f"class geometry, {snapshot_title(result)}")
    return fig


def _norms_panel(left, series, C: int, class_names) -> list:
    """Per-class norms relative to their mean, one series each; ``(name, pairwise cosines,
    colour)`` of each series for the cosine panel."""
    cos_all = []
    for name, vecs, color, marker in series:
        norms = row_norms(vecs)
        rel = norms / np.nanmean(norms)
        (line,) = left.plot(
            np.arange(C),
            rel,
            linestyle="none",
            marker=marker,
            color=color,
            label=name,
            markerfacecolor=color if marker == "o" else "none",
            markersize=3 if C <= CLASS_TICK_LIMIT else 1.5,
        )
        line.set_gid(f"norms|{name}")
        cos_all.append((name, pairwise_cosines(vecs), color))
    left.axhline(1.0, color="0.3", linewidth=0.6, linestyle=":")
    left.set_xlabel("class")
    left.set_ylabel("norm / mean norm (equal is collapsed)")
    left.set_title("per-class norms")
    hide_class_ticks(left, C, axis="x", names=class_names)
    left.legend(loc="best")
    return cos_all


def _cosines_panel(right, cos_all, etf: float, bins: int, C: int) -> None:
    """Histograms of the pairwise cosines (fractions of pairs), the ETF cosine dashed."""
    finite = np.concatenate([c[np.isfinite(c)] for _, c, _ in cos_all] + [np.array([etf])])
    lo, hi = float(finite.min()), float(finite.max())
    pad = max(0.02, 0.05 * (hi - lo))
    edges = np.linspace(max(-1.0, lo - pad), min(1.0, hi + pad), bins + 1)
    for name, cos, color in cos_all:
        cos = cos[np.isfinite(cos)]
        right.hist(
            cos,
            bins=edges,
            histtype="step",
            color=color,
            label=name,
            linewidth=1.0,
            weights=np.full(cos.size, 1.0 / max(cos.size, 1)),
        )
    right.axvline(
        etf,
        color="black",
        linestyle="--",
        linewidth=0.9,
        label=f"ETF -1/(C-1) = {etf:.3g}",
        gid="etf",
    )
    right.set_xlabel("pairwise cosine")
    right.set_ylabel("fraction of pairs")
    right.set_title(f"pairwise cosines ({C * (C - 1) // 2} pairs)")
    right.legend(loc="best")


def plot_spectrum(result: SnapshotResult, *, ax=None, style: str = "paper"):
    """Between-class eigenvalues and the within-class variance along the same directions.

    Parameters
    ----------
    result : SnapshotResult
    ax : Axes, optional
    style : {"paper", "screen"}

    Returns
    -------
    matplotlib.figure.Figure

    Notes
    -----
    For the kept eigenpairs ``(v_k, lambda_k)`` of Sigma_B the figure shows ``lambda_k`` and
    ``v_k^T Sigma_W v_k``; ``nc1 = (1/C) sum_k v_k^T Sigma_W v_k / lambda_k``, so the gap
    between the two curves is what NC1 measures, direction by direction.
    """
    between = np.asarray(result.arrays.between_eigvals, dtype=np.float64)
    within = np.asarray(result.arrays.within_along, dtype=np.float64)
    if between.size == 0:
        raise ValueError(f"{result.name}: no between-class direction (Sigma_B is 0)")
    k = np.arange(1, between.size + 1)
    with plot_style(style):
        if ax is None:
            fig, grid = new_figure(SINGLE, 2.5, style=style)
            ax = grid[0, 0]
        fig = ax.figure
        (lb,) = ax.plot(k, between, marker="o", color=_MEANS, label="between: eigenvalue of ΣB")
        (lw,) = ax.plot(
            k,
            within,
            marker="s",
            linestyle="--",
            color=_WEIGHTS,
            markerfacecolor="none",
            label="within: vₖᵀ ΣW vₖ",
        )
        lb.set_gid("between")
        lw.set_gid("within")
        log_axis(ax)
        ax.set_xlabel("between-class direction k")
        ax.set_ylabel("variance along vₖ")
        if between.size <= CLASS_TICK_LIMIT:
            ax.set_xticks(k)
        nc1 = result.metrics.get("nc1")
        nc1_text = "n/a" if nc1 is None else f"{nc1:.3g}"
        ax.set_title(
            f"spectrum, {snapshot_title(result)}; nc1 = {nc1_text} ({direction_text('nc1')})"
        )
        ax.legend(loc="best")
    return fig
