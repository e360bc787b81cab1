"""Shared look of every figure: styles, palettes, sizes, axis labels, deterministic saving."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..metrics.registry import DIRECTION_WORDS, direction_of

__all__ = [
    "STYLES",
    "FORMATS",
    "SINGLE",
    "DOUBLE",
    "OKABE_ITO",
    "PETROFF10",
    "plot_style",
    "new_figure",
    "run_colors",
    "snapshot_title",
    "class_colors",
    "class_markers",
    "CLASS20",
    "CLASS_MARKERS",
    "CLASS_KEY_LIMIT",
    "metric_label",
    "direction_text",
    "hide_class_ticks",
    "log_axis",
    "figure_bytes",
    "freeze_layout",
    "save_figure",
    "RUN_MARKERS",
    "run_markers",
    "CLASS_TICK_LIMIT",
]

SINGLE = 3.5  #: one-column width (inches)
DOUBLE = 7.0  #: two-column width (inches)
FORMATS = ("pdf", "png", "svg")
CLASS_TICK_LIMIT = 20  #: above this many classes, per-class tick labels are hidden

#: Okabe & Ito (2008), colour-blind-safe qualitative palette (black moved last): runs.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
#: Marker of each run (cycled), so runs with identical values stay distinguishable.
RUN_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
#: Classes when C <= 20: matplotlib's tab10 hues, then ten more chosen greedily for the
#: largest CIELAB distance to those before (light tints left out, they vanish on white): every
#: pair differs by Delta E*ab >= 27 (tests/plots/test_newcomer_figures.py measures it).
CLASS20 = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#000000",
    "#000075",
    "#f032e6",
    "#004d00",
    "#ff1493",
    "#b8860b",
    "#00c2a0",
    "#911eb4",
    "#800000",
    "#7b68ee",
)
#: Marker of each class (cycled, up to 20 classes): neighbours differ in shape as well.
CLASS_MARKERS = ("o", "s", "^", "D", "v")
#: Up to this many classes each has its own colour, marker and legend entry; beyond, the
#: colour is a viridis ramp of the class index (neighbouring classes look alike, and the
#: colour bar says so).
CLASS_KEY_LIMIT = len(CLASS20)
#: Petroff (2021) accessible 10-colour cycle.
PETROFF10 = (
    "#3f90da",
    "#ffa90e",
    "#bd1f01",
    "#94a4a2",
    "#832db6",
    "#a96b59",
    "#e76300",
    "#b9ac70",
    "#717581",
    "#92dadd",
)

_BASE_RC: dict[str, Any] = {
    "pdf.fonttype": 42,  # TrueType fonts embedded (editable, accepted by journals)
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "ncinspect",  # stable element ids in SVG
    "font.family": "DejaVu Sans",
    "axes.prop_cycle": None,  # set below
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.4,
    "legend.frameon": False,
    "image.cmap": "viridis",
    "savefig.bbox": None,  # constrained layout already fits; keeps sizes exact
}

#: rcParams per style: ``paper`` for 3.5 in / 7 in journal columns, ``screen`` for slides.
STYLES: dict[str, dict[str, Any]] = {
    "paper": {
        "font.size": 7,
        "axes.titlesize": 7,
        "axes.labelsize": 7,
        "xtick.labelsize": 6,
        "ytick.labelsize": 6,
        "legend.fontsize": 6,
        "lines.linewidth": 1.0,
        "lines.markersize": 2.5,
        "axes.linewidth": 0.5,
        "xtick.major.width": 0.5,
        "ytick.major.width": 0.5,
        "savefig.dpi": 300,
        "figure.dpi": 100,
    },
    "screen": {
        "font.size": 11,
        "axes.titlesize": 11,
        "axes.labelsize": 11,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "legend.fontsize": 9,
        "lines.linewidth": 1.8,
        "lines.markersize": 4,
        "savefig.dpi": 150,
        "figure.dpi": 100,
    },
}
_SCALE = {"paper": 1.0, "screen": 16.0 / 7.0}  # figure sizes: screen is a 16 in wide slide


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {sorted(STYLES)}, got {style!r}")


@contextlib.contextmanager
def plot_style(style: str = "paper") -> Iterator[None]:
    """Context in which figures get the rcParams of ``style`` (``paper`` or ``screen``)."""
    import matplotlib as mpl
    from cycler import cycler

    _check_style(style)
    rc = dict(_BASE_RC, **STYLES[style])
    rc["axes.prop_cycle"] = cycler(color=list(OKABE_ITO))
    with mpl.rc_context(rc):
        yield


def new_figure(
    width: float, height: float, *, style: str = "paper", nrows: int = 1, ncols: int = 1, **kwargs
):
    """A figure of ``width`` x ``height`` inches (paper sizes; scaled up for ``screen``)."""
    import matplotlib.pyplot as plt

    scale = _SCALE[style]
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(width * scale, height * scale),
        layout="constrained",
        squeeze=False,
        **kwargs,
    )
    return fig, axes


def snapshot_title(result) -> str:
    """A short name of a snapshot for figure titles: its path, plus the epoch if not in it."""
    from ..render.safe import mpl_text

    parts = [mpl_text(result.name)]
    if result.epoch is not None and "epoch" not in result.name:
        parts.append(f"epoch {result.epoch}")
    return "  ".join(parts)


def run_colors(n: int) -> list[str]:
    """Colours of ``n`` runs: Okabe-Ito, cycled beyond 8 runs."""
    return [OKABE_ITO[i % len(OKABE_ITO)] for i in range(n)]


def run_markers(n: int) -> list[str]:
    """Markers of ``n`` runs (cycled beyond 8 runs)."""
    return [RUN_MARKERS[i % len(RUN_MARKERS)] for i in range(n)]


def class_colors(n: int) -> list:
    """Colours of ``n`` classes: :data:`CLASS20` for up to 20, evenly spaced viridis beyond."""
    if n <= len(CLASS20):
        return list(CLASS20[:n])
    import matplotlib

    cmap = matplotlib.colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 1.0, n)]


def class_markers(n: int) -> list[str]:
    """Markers of ``n`` classes: cycled :data:`CLASS_MARKERS` up to 20 classes, else dots."""
    if n <= CLASS_KEY_LIMIT:
        return [CLASS_MARKERS[i % len(CLASS_MARKERS)] for i in range(n)]
    return ["o"] * n


def direction_text(key: str) -> str:
    """The direction of metric ``key`` in words (``"lower is better"``; "" when none)."""
    return DIRECTION_WORDS.get(direction_of(key), "")


def metric_label(key: str, name: str | None = None) -> str:
    """Axis label ``name`` with the metric's direction, e.g. ``"nc1 (lower is better)"``."""
    direction = direction_text(key)
    name = name or key
    return f"{name} ({direction})" if direction else name


def log_axis(ax, axis: str = "y") -> None:
    """Log scale with plain tick labels (0.02, 0.05, 0.1) on majors and on 2x/5x minors."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    target = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    label = FuncFormatter(lambda v, _: f"{v:.2g}")
    target.set_major_locator(LogLocator(base=10.0, numticks=6))
    target.set_major_formatter(label)
    target.set_minor_locator(LogLocator(base=10.0, subs=(2.0, 5.0), numticks=6))
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    few_decades = lo > 0 and hi / lo < 30
    target.set_minor_formatter(label if few_decades else FuncFormatter(lambda v, _: ""))


def hide_class_ticks(ax, n_classes: int, *, axis: str = "both", names=None) -> None:
    """Per-class ticks: labelled up to :data:`CLASS_TICK_LIMIT` classes, a few indices beyond.

    Names longer than three characters are written vertically on the x axis.
    """
    from matplotlib.ticker import MaxNLocator

    from ..render.safe import mpl_text
    from ..text import LABEL_LIMIT

    labels = [mpl_text(n, LABEL_LIMIT) for n in (names if names is not None else range(n_classes))]
    for which in ("x", "y") if axis == "both" else (axis,):
        target = ax.xaxis if which == "x" else ax.yaxis
        if n_classes <= CLASS_TICK_LIMIT:
            target.set_ticks(range(n_classes))
            target.set_ticklabels(labels)
            if which == "x" and max(map(len, labels)) > 3:
                ax.tick_params(axis="x", labelrotation=90)
        else:
            target.set_major_locator(MaxNLocator(nbins=5, integer=True))


def freeze_layout(fig) -> None:
    """Run the figure's layout engine once and then switch it off (positions stay fixed).

    A constrained layout is recomputed at every draw, and each run starts from the positions
    the previous one left, so without this the bytes of a file depend on which formats were
    saved before it. Idempotent: a figure without a layout engine is left as it is.
    """
    if fig.get_layout_engine() is None:
        return
    with quiet_glyphs():
        fig.draw_without_rendering()
    fig.set_layout_engine("none")


@contextlib.contextmanager
def quiet_glyphs() -> Iterator[None]:
    """Drawing without matplotlib's "Glyph N (\\N{...}) missing from font(s)" warnings: a
    class or file name from the dump in characters the font lacks (CJK, emoji) printed two
    stderr lines per character and draw, outside the command's one-line messages (a file
    of 1,000 such classes: thousands of lines); the figure shows the font's box instead."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        yield


def figure_bytes(fig, fmt: str, *, dpi: float = 300) -> bytes:
    """The figure encoded as ``fmt`` (pdf/png/svg) with fixed metadata: same figure, same bytes.

    Notes
    -----
    The layout is computed once and then frozen (:func:`freeze_layout`), so a file does not
    depend on the formats saved before it (the figure keeps that layout afterwards).
    PDF: no CreationDate/ModDate; SVG: no Date and a fixed ``svg.hashsalt``; PNG: a fixed
    Software entry. Fonts are embedded as TrueType (``pdf.fonttype`` 42) in PDF and drawn as
    paths in SVG.
    """
    import matplotlib as mpl

    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    metadata = {
        "pdf": {"CreationDate": None, "ModDate": None, "Producer": "ncinspect (matplotlib)"},
        "svg": {"Date": None, "Creator": "ncinspect (matplotlib)"},
        "png": {"Software": "ncinspect (matplotlib)"},
    }[fmt]
    buf = io.BytesIO()
    rc = {
        "svg.hashsalt": "ncinspect",
        "pdf.fonttype": 42,
        "ps.fonttype": 42,
        "svg.fonttype": "path",
    }
    freeze_layout(fig)
    with mpl.rc_context(rc), quiet_glyphs():
        fig.savefig(buf, format=fmt, metadata=metadata, dpi=dpi)
    return buf.getvalue()


def save_figure(
    fig, path: str | os.PathLike, fmt: str | None = None, *, dpi: float = 300, inputs=()
) -> str:
    """Write ``fig`` to ``path`` atomically (temporary file in the same folder, then rename).

    The format is ``fmt`` or the suffix of ``path``; ``dpi`` applies to PNG (and to
    rasterised scatter points in PDF/SVG). ``inputs``: files the figure must never replace
    (see :mod:`ncinspect.io.atomic`). Returns the path written.
    """
    from ..io.atomic import write_output

    path = os.fspath(path)
    fmt = fmt or os.path.splitext(path)[1].lstrip(".").lower()
    write_output(path, figure_bytes(fig, fmt, dpi=dpi), inputs=inputs)
    return path
