"""The weight-decay sweep figure: final NC metrics and theory residuals against lambda.

Takes precomputed rows (one per lambda, e.g. from
:func:`ncinspect.experiments.sweep_weight_decay`) and the series to draw; never reads files
and imports nothing from the experiments that make the rows.
"""

from __future__ import annotations

__all__ = ["plot_sweep"]

from collections.abc import Callable, Sequence
from typing import Any


def _x_positions(values: Sequence[float]) -> tuple[list[float], float | None]:
    """x of each lambda on a log axis, with lambda = 0 drawn a decade left of the smallest."""
    positive = [v for v in values if v > 0]
    zero_at = (min(positive) / 10.0 if positive else 1.0) if any(v == 0 for v in values) else None
    return [v if v > 0 else zero_at for v in values], zero_at


def _legend_below(ax, slot) -> None:
    """The legend of ``ax`` drawn in the (otherwise empty) axes ``slot`` under it."""
    slot.axis("off")
    handles, labels = ax.get_legend_handles_labels()
    slot.legend(handles, labels, loc="upper center", ncols=2, fontsize="small")


def _short(value: float) -> str:
    """Compact tick label of a weight decay: 0, 1e-4, 5e-3, 0.02 -> 2e-2."""
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.1e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


def _series(rows: Sequence[dict[str, Any]], get: Callable[[dict[str, Any]], Any]):
    import numpy as np

    y = np.array([np.nan if get(r) is None else get(r) for r in rows], dtype=float)
    return y


def plot_sweep(
    rows: Sequence[dict[str, Any]],
    *,
    metrics: Sequence[tuple[str, str]] | None = None,
    theory: Sequence[tuple[str, str]] | None = None,
    title: str | None = None,
    style: str = "paper",
):
    """Final NC metrics, theory residuals, layer norms and accuracy against lambda.

    Parameters
    ----------
    rows : sequence of dict
        One per lambda, each with ``weight_decay``, ``metrics`` (key -> value, including
        ``accuracy_classifier``), ``theory`` (key -> relative error), ``layer_norms_sq`` and
        ``test_accuracy``, as :func:`ncinspect.experiments.sweep_row` makes them.
    metrics, theory : sequence of (key, title), optional
        The series of the first two panels; default every key of the first row's
        ``metrics`` / ``theory``, titled by the key.
    title : str, optional
        Figure title (e.g. the data set).
    style : {"paper", "screen"}

    Returns
    -------
    matplotlib.figure.Figure
        Four panels over a log lambda axis; lambda = 0 is drawn a decade left of the smallest
        positive lambda and labelled "0". Values <= 0 are left out of the log panels.
    """
    from ._style import DOUBLE, new_figure, plot_style

    rows = sorted(rows, key=lambda r: r["weight_decay"])
    if metrics is None:
        metrics = [(k, k) for k in rows[0]["metrics"]]
    if theory is None:
        theory = [(k, k) for k in rows[0]["theory"]]
    x, _ = _x_positions([r["weight_decay"] for r in rows])
    panels = _panels(rows, metrics, theory)
    labels = [_short(r["weight_decay"]) for r in rows]
    with plot_style(style):
        fig, axes = new_figure(
            DOUBLE,
            3.4,
            style=style,
            nrows=2,
            ncols=len(panels),
            gridspec_kw={"height_ratios": [3.0, 1.1]},
        )
        for ax, slot, panel in zip(axes[0], axes[1], panels, strict=True):
            _draw_panel(ax, slot, panel, rows, x, labels)
        axes[0][-1].set_ylim(0, 1.02)
        if title:
            fig.suptitle(title)
    return fig


def _panels(rows, metrics, theory):
    """``(title, log y axis, [(label, value of a row)])`` of the four panels."""
    depth = max(len(r["layer_norms_sq"] or []) for r in rows)

    def norm(i: int):
        return lambda r: (r["layer_norms_sq"] or [None] * depth)[i]

    return (
        (
            "NC metrics (train)",
            True,
            [(t, lambda r, k=k: r["metrics"][k]) for k, t in metrics],
        ),
        ("theory residuals", True, [(t, lambda r, k=k: r["theory"][k]) for k, t in theory]),
        ("layer norms ||W_l||_F²", True, [(f"||W{i + 1}||²", norm(i)) for i in range(depth)]),
        (
            "accuracy",
            False,
            [
                ("train", lambda r: r["metrics"]["accuracy_classifier"]),
                ("test", lambda r: r["test_accuracy"]),
            ],
        ),
    )


def _draw_panel(ax, slot, panel, rows, x: list[float], labels: list[str]) -> None:
    """One panel's series against lambda (values <= 0 left out of a log panel), its legend
    in ``slot`` below."""
    import numpy as np
    from matplotlib.ticker import NullLocator

    from ._style import log_axis

    name, log, series = panel
    for label, get in series:
        y = _series(rows, get)
        if log:
            y[y <= 0] = np.nan
        if not np.all(np.isnan(y)):
            ax.plot(x, y, marker="o", ms=3, lw=1, label=label)
    ax.set_title(name)
    ax.set_xscale("log")
    if log and ax.lines:
        log_axis(ax, "y")
    ax.set_xlabel("weight decay λ")
    ax.set_xticks(
        x,
        labels,
        rotation=0 if len(x) <= 3 else 45 if len(x) <= 5 else 90,
        fontsize="small" if len(x) > 5 else None,
    )
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(min(x) / 2, max(x) * 2)
    _legend_below(ax, slot)
