"""Tables and figures of the weight-decay sweep: one row per run, and the headline over seeds.

:func:`write_sweep` writes one row per run (``sweep.json``, ``sweep.csv``, ``sweep.md``,
``sweep.png``); :func:`write_headline` the summary over seeds: per lambda and metric the
mean and the two-sided 95% Student-t interval over the seeds
(:func:`ncinspect.results.aggregate.summarise`), the factor per seed of the headline metric
(lambda = 0 over lambda > 0), and the trajectory figure with 95% bands
(:func:`ncinspect.results.aggregate.aggregate` of each lambda's dumps drawn by
:func:`ncinspect.plots.plot_trajectory`, the figure ``ncinspect plot --aggregate`` draws).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from .weight_decay import HEADLINE_METRIC, SWEEP_METRICS, SWEEP_THEORY, factors

__all__ = [
    "sweep_columns",
    "sweep_markdown",
    "write_sweep",
    "headline_summary",
    "headline_markdown",
    "write_headline",
]


def sweep_columns(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a flat table (one row per run): metrics, residuals, layer norms."""
    depth = max((len(r["layer_norms_sq"] or []) for r in rows), default=0)
    header = [
        "weight_decay",
        "seed",
        "Lambda",
        *(k for k, _ in SWEEP_METRICS),
        "test_accuracy",
        *(f"theory_{k}" for k, _ in SWEEP_THEORY),
        *(f"norm_sq_W{i + 1}" for i in range(depth)),
        "seconds",
    ]
    table = []
    for r in rows:
        norms = list(r["layer_norms_sq"] or []) + [None] * depth
        table.append(
            [
                r["weight_decay"],
                r.get("seed"),
                r["Lambda"],
                *(r["metrics"][k] for k, _ in SWEEP_METRICS),
                r["test_accuracy"],
                *(r["theory"][k] for k, _ in SWEEP_THEORY),
                *norms[:depth],
                r["seconds"],
            ]
        )
    return header, table


def _md(value: Any) -> str:
    from ..render.table import fmt

    if isinstance(value, float) and 0 < abs(value) < 1e-3:
        return f"{value:.1e}"
    return fmt(value)


def _several_seeds(rows: Sequence[dict[str, Any]]) -> bool:
    return len({r.get("seed") for r in rows}) > 1


def sweep_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Two Markdown tables: NC metrics against lambda, and theory residuals with layer norms.

    One line per run; with several seeds the first column is ``lambda (seed s)``.
    """
    seeds = _several_seeds(rows)

    def first(r: dict[str, Any]) -> str:
        return _md(r["weight_decay"]) + (f" (seed {r['seed']})" if seeds else "")

    out = [
        "| lambda | " + " | ".join(t for _, t in SWEEP_METRICS) + " | test acc | time (s) |",
        "| --- " * (len(SWEEP_METRICS) + 3) + "|",
    ]
    for r in rows:
        cells = [
            first(r),
            *(_md(r["metrics"][k]) for k, _ in SWEEP_METRICS),
            _md(r["test_accuracy"]),
            f"{r['seconds']:.1f}" if r["seconds"] else "n/a",
        ]
        out.append("| " + " | ".join(cells) + " |")
    out += [
        "",
        "Relative errors of the theory (n/a: lambda = 0, where they do not apply).",
        "",
        "| lambda | " + " | ".join(t for _, t in SWEEP_THEORY) + " | ||W_l||_F^2 |",
        "| --- " * (len(SWEEP_THEORY) + 2) + "|",
    ]
    for r in rows:
        norms = ", ".join(f"{v:.3g}" for v in r["layer_norms_sq"] or [])
        theory = [
            ("n/a" if r["weight_decay"] == 0 else _md(r["theory"][k])) for k, _ in SWEEP_THEORY
        ]
        out.append("| " + " | ".join([first(r), *theory, norms]) + " |")
    return "\n".join(out) + "\n"


def _mean_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per lambda holding the mean over its seeds (for the sweep figure)."""
    summary = headline_summary(rows)
    out = []
    for s in summary["runs"]:
        out.append(
            {
                "weight_decay": s["weight_decay"],
                "metrics": {k: v["mean"] for k, v in s["metrics"].items()},
                "theory": {k: v["mean"] for k, v in s["theory"].items()},
                "test_accuracy": s["test_accuracy"]["mean"],
                "layer_norms_sq": [v["mean"] for v in s["layer_norms_sq"]],
            }
        )
    return out


def write_sweep(
    rows: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    *,
    title: str | None = None,
    figure: bool = True,
) -> list[str]:
    """Write ``sweep.json``, ``sweep.csv``, ``sweep.md`` and ``sweep.png`` into ``out_dir``.

    With several seeds the tables have one row per run and the figure shows the mean over
    the seeds of each lambda.
    """
    from ..io.atomic import atomic_write
    from ..results.report import csv_text, jsonable

    out_dir = os.fspath(out_dir)
    written = []
    path = os.path.join(out_dir, "sweep.json")
    atomic_write(path, json.dumps(jsonable(list(rows)), sort_keys=True, indent=2) + "\n")
    written.append(path)
    header, table = sweep_columns(rows)
    path = os.path.join(out_dir, "sweep.csv")
    atomic_write(path, csv_text(header, [jsonable(row) for row in table]))
    written.append(path)
    path = os.path.join(out_dir, "sweep.md")
    atomic_write(path, sweep_markdown(rows))
    written.append(path)
    if figure:
        import matplotlib.pyplot as plt

        from ..plots import plot_sweep, save_figure

        several = _several_seeds(rows)
        shown = _mean_rows(rows) if several else rows
        if several:
            n = len({r["seed"] for r in rows})
            title = f"{title}, mean of {n} seeds" if title else f"mean of {n} seeds"
        fig = plot_sweep(shown, metrics=SWEEP_METRICS[:6], theory=SWEEP_THEORY, title=title)
        try:
            path = save_figure(fig, os.path.join(out_dir, "sweep.png"), dpi=150)
        finally:
            plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------------------
# the headline: mean and 95% interval over seeds, factor per seed
# --------------------------------------------------------------------------------------
def headline_summary(rows: Sequence[dict[str, Any]], key: str = HEADLINE_METRIC) -> dict[str, Any]:
    """Per lambda: mean, std, n and 95% t-interval over the seeds of every reported value.

    Returns
    -------
    dict
        ``runs``: one dict per lambda (in increasing order) with ``weight_decay``,
        ``seeds``, ``metrics`` / ``theory`` (key -> :class:`~ncinspect.results.aggregate.Stat` as a
        dict), ``test_accuracy`` and ``layer_norms_sq`` (one Stat per layer);
        ``metric`` (= ``key``), ``factors`` (:func:`~ncinspect.experiments.factors` of
        ``key``) and ``factor`` (their Stat per lambda > 0: weight decay -> dict).
    """
    from ..results.aggregate import summarise

    def stat(values: list[Any]) -> dict[str, Any]:
        return summarise(values).to_dict()

    runs = []
    for wd in sorted({r["weight_decay"] for r in rows}):
        group = [r for r in rows if r["weight_decay"] == wd]
        depth = max(len(r["layer_norms_sq"] or []) for r in group)
        runs.append(
            {
                "weight_decay": wd,
                "seeds": [r.get("seed") for r in group],
                "epoch": group[0]["epoch"],
                "metrics": {k: stat([r["metrics"][k] for r in group]) for k, _ in SWEEP_METRICS},
                "theory": {k: stat([r["theory"][k] for r in group]) for k, _ in SWEEP_THEORY},
                "test_accuracy": stat([r["test_accuracy"] for r in group]),
                "layer_norms_sq": [
                    stat([(r["layer_norms_sq"] or [None] * depth)[i] for r in group])
                    for i in range(depth)
                ],
            }
        )
    per_seed = factors(rows, key)
    factor = {
        wd: stat([f["factor"] for f in per_seed if f["weight_decay"] == wd])
        for wd in sorted({f["weight_decay"] for f in per_seed})
    }
    return {"runs": runs, "metric": key, "factors": per_seed, "factor": factor}


def _g(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value == 0:
        return "0"
    return f"{value:.2e}" if abs(value) < 1e-3 else f"{value:.3g}"


def _cell(s: dict[str, Any]) -> str:
    if s["mean"] is None:
        return "n/a"
    if s["ci_low"] is None:
        return _g(s["mean"])
    return f"{_g(s['mean'])} [{_g(s['ci_low'])}, {_g(s['ci_high'])}]"


def headline_markdown(summary: dict[str, Any]) -> str:
    """The summary as Markdown: metrics by lambda (mean [95% interval]), then the factors."""
    runs = summary["runs"]
    n = max((len(s["seeds"]) for s in runs), default=0)
    head = " | ".join(f"weight decay {_g(s['weight_decay'])}" for s in runs)
    out = [f"| metric (mean [95% interval], {n} seeds) | {head} |"]
    out.append("| --- " * (len(runs) + 1) + "|")
    for k, _ in SWEEP_METRICS:
        out.append(f"| `{k}` | " + " | ".join(_cell(s["metrics"][k]) for s in runs) + " |")
    out.append("| test accuracy | " + " | ".join(_cell(s["test_accuracy"]) for s in runs) + " |")
    out.append(
        "| layer norm spread | "
        + " | ".join(
            "n/a" if s["weight_decay"] == 0 else _cell(s["theory"]["layer_norm_spread"])
            for s in runs
        )
        + " |"
    )
    depth = max((len(s["layer_norms_sq"]) for s in runs), default=0)
    for i in range(depth):
        out.append(
            f"| `‖W_{i + 1}‖_F^2` | "
            + " | ".join(
                _cell(s["layer_norms_sq"][i]) for s in runs if i < len(s["layer_norms_sq"])
            )
            + " |"
        )
    key = summary["metric"]
    for wd, stat in summary["factor"].items():
        per = [f for f in summary["factors"] if f["weight_decay"] == wd]
        seeds = ", ".join(
            f"seed {f['seed']}: {_g(f['without'])} / {_g(f['with'])} = "
            + ("n/a" if f["factor"] is None else f"{f['factor']:.1f}x")
            for f in per
        )
        known = [f["factor"] for f in per if f["factor"] is not None]
        low = f"{min(known):.1f}x" if known else "n/a"
        out += [
            "",
            f"`{key}` without / with weight decay {_g(wd)}: mean factor {_cell(stat)}, "
            f"smallest {low} ({seeds}).",
        ]
    return "\n".join(out) + "\n"


def _runs_by_lambda(rows: Sequence[dict[str, Any]]) -> dict[float, list[str]]:
    groups: dict[float, list[str]] = {}
    for r in rows:
        groups.setdefault(r["weight_decay"], []).append(r["dump"])
    return dict(sorted(groups.items()))


def write_headline(
    rows: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    *,
    title: str | None = None,
    figure: bool = True,
) -> list[str]:
    """Write the summary over seeds: ``headline.json``, ``headline.md``, one
    ``aggregate_wd_<lambda>.json`` per lambda (what ``ncinspect report --aggregate --json``
    prints for its dumps) and ``trajectory.png`` (means with 95% bands).

    Needs two or more seeds per lambda.
    """
    from ..analysis.api import analyze_file
    from ..io.atomic import atomic_write
    from ..results.aggregate import aggregate
    from ..results.report import jsonable

    groups = _runs_by_lambda(rows)
    lone = [wd for wd, paths in groups.items() if len(paths) < 2]
    if lone:
        raise ValueError(f"the headline needs two or more seeds per lambda; {lone[0]:g} has one")
    out_dir = os.fspath(out_dir)
    summary = headline_summary(rows)
    written = []
    path = os.path.join(out_dir, "headline.json")
    atomic_write(path, json.dumps(jsonable(summary), sort_keys=True, indent=2) + "\n")
    written.append(path)
    path = os.path.join(out_dir, "headline.md")
    atomic_write(path, headline_markdown(summary))
    written.append(path)
    aggs = []
    for wd, paths in groups.items():
        agg = aggregate([analyze_file(p) for p in paths])
        aggs.append(agg)
        path = os.path.join(out_dir, f"aggregate_wd_{wd:g}.json")
        atomic_write(path, agg.to_json())
        written.append(path)
    if figure:
        import matplotlib.pyplot as plt

        from ..plots import plot_trajectory, save_figure

        labels = ["no weight decay" if wd == 0 else f"weight decay {_g(wd)}" for wd in groups]
        n = max(len(p) for p in groups.values())
        fig = plot_trajectory(
            aggs, labels=labels, title=title or f"mean and 95% interval over {n} seeds"
        )
        try:
            path = save_figure(fig, os.path.join(out_dir, "trajectory.png"), dpi=150)
        finally:
            plt.close(fig)
        written.append(path)
    return written
