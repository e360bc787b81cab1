"""Figure planning: which figures some runs allow, the file each is saved to, and drawing it.

One table (:data:`FIGURE_KINDS`) says for every kind how it is drawn: once for all runs
together (runs overlaid) or once per run from its final training snapshot, whether it shows
individual samples (a seeded subsample must be read first) and which drawing options it
takes. The command line only parses its options, calls :func:`plan_figures` and
:func:`draw_figure`, and writes the files.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..errors import InvalidDataError
from ..results.report import SnapshotResult
from ..results.trajectory import final_snapshot, has_layers, layer_profile, trajectory
from ..text import clip
from .geometry import plot_geometry, plot_gram, plot_spectrum
from .layers import plot_layers
from .runs import available_panels, plot_trajectory
from .samples import plot_projection, plot_sqi
from .subset import pick_classes

__all__ = [
    "FigureKind",
    "FIGURE_KINDS",
    "KINDS",
    "RUN_KINDS",
    "SNAPSHOT_KINDS",
    "Figure",
    "Plan",
    "needs_sample",
    "kind_allowed",
    "plan_figures",
    "draw_figure",
    "unique_slugs",
]


@dataclass(frozen=True)
class FigureKind:
    """One kind of figure.

    ``overlay``: drawn once for all runs (their reports overlaid); otherwise once per run,
    from its final training snapshot. ``sample``: shows individual samples. ``options``:
    the keyword options of ``draw`` that the caller passes through (``centered_weights``,
    ``classes``).
    """

    name: str
    draw: Callable
    overlay: bool = False
    sample: bool = False
    options: tuple[str, ...] = ()


#: Every figure kind, in the order figures are planned and files listed.
FIGURE_KINDS: tuple[FigureKind, ...] = (
    FigureKind("trajectory", plot_trajectory, overlay=True),
    FigureKind("gram", plot_gram, options=("centered_weights", "classes")),
    FigureKind("geometry", plot_geometry, options=("centered_weights",)),
    FigureKind("projection", plot_projection, sample=True, options=("classes",)),
    FigureKind("spectrum", plot_spectrum),
    FigureKind("sqi", plot_sqi, sample=True),
    FigureKind("layers", plot_layers, overlay=True),
)
_BY_NAME = {k.name: k for k in FIGURE_KINDS}

KINDS = tuple(k.name for k in FIGURE_KINDS)
#: Kinds drawn once for all runs together (runs overlaid).
RUN_KINDS = tuple(k.name for k in FIGURE_KINDS if k.overlay)
#: Kinds drawn for one snapshot (the final training snapshot of each run).
SNAPSHOT_KINDS = tuple(k.name for k in FIGURE_KINDS if not k.overlay)


def _kind(name: str) -> FigureKind:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown kind {clip(repr(name))}; expected one of {KINDS}") from None


def needs_sample(kind: str) -> bool:
    """True for kinds that show individual samples (a seeded subsample must be read first)."""
    return _kind(kind).sample


def kind_allowed(kind: str, results: Iterable[SnapshotResult], *, sqi: bool = False) -> str | None:
    """None when the results of one run allow ``kind``, else the reason why not (one line).

    ``sqi`` (the square-loss output figure) is drawn only for a square-loss model (the
    snapshot's recorded ``loss``) unless ``sqi=True`` forces it.
    """
    results = list(results)
    if kind == "trajectory":
        train = trajectory(results)
        epochs = {r.epoch for r in train}
        if len(epochs) < 2:
            return "needs training snapshots at two or more epochs"
        if not available_panels([("", results)]):
            return NO_METRIC_VALUES
        return None
    if kind == "layers":
        if all(r.task != "classification" for r in results):
            return "regression snapshots: read nrc1 per layer in the report's layer table"
        if not has_layers(results):
            return "needs hidden-layer snapshots (layer_k)"
        return None if len(layer_profile(results)) > 1 else "needs several layers at one epoch"
    if kind not in SNAPSHOT_KINDS:
        raise ValueError(f"unknown kind {clip(repr(kind))}; expected one of {KINDS}")
    final = final_snapshot([r for r in results if r.task != "ood"])
    if final is None:
        return "no snapshot"
    if final.task == "regression":
        return "a regression snapshot has no classes (nrc1-nrc3 are in the trajectory figure)"
    if final.n_classes < 2:
        return f"needs two or more classes with samples, the snapshot has {final.n_classes}" + (
            " (--min-class-count leaves the others out)" if final.n_classes_total else ""
        )
    if kind == "spectrum" and not _has_rows(final.arrays.between_eigvals):
        return "no between-class direction (all class means equal)"
    if kind == "projection" and not _has_rows(final.arrays.basis):
        return "no between-class direction (all class means equal)"
    if kind == "sqi" and final.metrics.get("sqi_eps1") is None:
        return "needs outputs or classifier weights"
    if kind == "sqi" and not final.shows_square_loss(sqi):
        if final.loss is None:
            return "loss not recorded: record metadata loss='square' or pass --sqi"
        from ..render.safe import plain

        return f"loss {plain(final.loss)!r} is not a square loss (--sqi draws it anyway)"
    return None


#: why a figure of metrics cannot be drawn when no snapshot defines any
NO_METRIC_VALUES = (
    "no metric is defined in any snapshot (are all classes left out by --min-class-count?)"
)


def _has_rows(values) -> bool:
    """Whether an array of a result is there and not empty."""
    return values is not None and len(values) > 0


def _slug(text: str) -> str:
    """ASCII file-name part of a label: accents dropped, other characters runs of '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text).strip("-.") or "run"


def unique_slugs(labels: Sequence[str]) -> list[str]:
    """One file-name part per label, distinct even on case-insensitive file systems.

    A label whose slug was taken by an earlier one (in file order) gets ``-2``, ``-3``, ...:
    ``wd``, ``wd?`` -> ``wd``, ``wd-2``; ``λ``, ``μ`` -> ``run``, ``run-2``.
    """
    used: set[str] = set()
    out = []
    for label in labels:
        base = cand = _slug(label)
        k = 2
        while cand.lower() in used:
            cand, k = f"{base}-{k}", k + 1
        used.add(cand.lower())
        out.append(cand)
    return out


@dataclass(frozen=True)
class Figure:
    """One figure to draw: its kind, the runs it shows (indices) and its file stem."""

    kind: str
    runs: tuple[int, ...]
    stem: str

    def paths(self, out_dir: str, formats: Sequence[str], prefix: str = "") -> list[str]:
        """The files the figure is saved to, one per format, inside ``out_dir``."""
        return [os.path.join(out_dir, f"{prefix}{self.stem}.{fmt}") for fmt in formats]


@dataclass(frozen=True)
class Plan:
    """The figures of some runs, and each run's final training snapshot."""

    figures: list[Figure]
    finals: list[SnapshotResult | None]

    @property
    def sampled_runs(self) -> list[int]:
        """Runs whose final snapshot needs a seeded subsample (projection, sqi)."""
        return sorted({i for f in self.figures if needs_sample(f.kind) for i in f.runs})

    def check_classes(self, classes) -> None:
        """Raise ValueError when a class subset cannot be drawn from a snapshot it concerns."""
        for fig in self.figures:
            if "classes" in _kind(fig.kind).options:
                pick_classes(self.finals[fig.runs[0]], classes)


def plan_figures(
    names: Sequence[str],
    runs: Sequence[Sequence[SnapshotResult]],
    *,
    kinds: Sequence[str] = (),
    sqi: bool = False,
    slugs: Sequence[str] | None = None,
    note: Callable[[str], None] | None = None,
) -> Plan:
    """The figures the results of ``runs`` (one list per run, named ``names``) allow.

    With ``kinds`` (asked for explicitly), a run that does not allow a kind is reported
    through ``note`` (``"kind: name: why"``) and a kind no run allows raises
    InvalidDataError; without, every kind the data allow is planned. Per-run figures of
    several runs are named ``kind-slug`` (``slugs``, default :func:`unique_slugs` of
    ``names``); overlaid ones ``kind``.
    """
    wanted = list(dict.fromkeys(kinds)) if kinds else list(KINDS)
    slugs = list(slugs) if slugs is not None else unique_slugs(names)
    single = len(runs) == 1
    figures: list[Figure] = []
    first_reason: dict[str, str] = {}  # why each kind was not planned (for the first run)
    for kind in wanted:
        reasons = [kind_allowed(kind, run, sqi=sqi) for run in runs]
        ok = [i for i, why in enumerate(reasons) if why is None]
        if not ok:
            first_reason[kind] = str(reasons[0])
        if kinds:
            for i, why in enumerate(reasons):
                if why is not None and note is not None:
                    note(f"{kind}: {names[i]}: {why}")
            if not ok:
                raise InvalidDataError(f"{', '.join(names)}: cannot draw {kind}: {reasons[0]}")
        if not ok:
            continue
        if _kind(kind).overlay:
            figures.append(Figure(kind, tuple(ok), kind))
        else:
            figures += [Figure(kind, (i,), kind if single else f"{kind}-{slugs[i]}") for i in ok]
    if not figures:  # nothing at all to draw: said, not an empty folder and exit 0
        why = "; ".join(f"{kind}: {reason}" for kind, reason in first_reason.items())
        raise InvalidDataError(f"{', '.join(names)}: no figure can be drawn ({why})")
    return Plan(figures, [final_snapshot(run) for run in runs])


def draw_figure(
    fig: Figure, plan: Plan, reports: Sequence, *, legend: Sequence[str], style: str, **options
):
    """Draw one planned figure; return the matplotlib Figure.

    Overlaid kinds draw ``reports`` of their runs with ``legend`` labels (one per run);
    per-run kinds the run's final snapshot. ``options`` (``centered_weights``, ``classes``)
    go to the kinds that take them.
    """
    kind = _kind(fig.kind)
    if kind.overlay:
        return kind.draw(
            [reports[i] for i in fig.runs], labels=[legend[i] for i in fig.runs], style=style
        )
    (i,) = fig.runs
    extra = {k: v for k, v in options.items() if k in kind.options}
    return kind.draw(plan.finals[i], style=style, **extra)
