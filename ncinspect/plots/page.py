"""The figures of the HTML report page, as PNG bytes with their captions."""

from __future__ import annotations

from ..render.html import last_classified
from ..results.report import Report
from ..results.trajectory import group_trajectories

__all__ = ["page_figures"]


def page_figures(report: Report, *, dpi: float = 110) -> dict[str, tuple[bytes, str]]:
    """``{"trajectory": (png, caption), "gram": (png, caption)}`` for
    :func:`ncinspect.render.html.html_report`.

    The trajectory figure is drawn when some split has two or more epochs and a panel of
    the classifier's layer has data; the Gram figure
    of the last training snapshot (the 20 classes with the largest spread when C > 30).
    """
    import matplotlib.pyplot as plt

    from ._style import figure_bytes
    from .geometry import plot_gram
    from .runs import as_runs, available_panels, plot_trajectory
    from .subset import Worst

    out: dict[str, tuple[bytes, str]] = {}
    # drawn when some trajectory (of classification or of regression snapshots: nrc panels)
    # has two snapshots and some panel (the classifier's layer, whatever its name) has a
    # value: never an error for a file that is merely unusual
    longest = max(
        (
            len(members)
            for task in ("classification", "regression")
            for members in group_trajectories([r for r in report if r.task == task]).values()
        ),
        default=0,
    )
    if longest > 1 and available_panels(as_runs(report)):
        fig = plot_trajectory(report, style="screen")
        try:
            out["trajectory"] = (
                figure_bytes(fig, "png", dpi=dpi),
                "Metrics against epoch (every split and layer of the file).",
            )
        finally:
            plt.close(fig)
    last = last_classified(report)
    if last is not None and last.n_classes >= 2:
        classes = Worst(20) if last.n_classes > 30 else None
        fig = plot_gram(last, classes=classes, style="screen")
        what = "the 20 classes with the largest spread" if classes is not None else "every class"
        try:
            out["gram"] = (
                figure_bytes(fig, "png", dpi=dpi),
                "Cosines of the centred class means and of the classifier rows beside the "
                f"simplex ETF, {last.name} ({what}).",
            )
        finally:
            plt.close(fig)
    return out
