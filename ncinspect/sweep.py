"""The weight-decay sweep: the same network on the same data for several lambda (incl. 0).

One dump per lambda (``wd_<lambda>.h5``, written by :func:`ncinspect.train.fit`), then the
final training snapshot of each is analysed (NC metrics) and checked against the theory
(:func:`ncinspect.theory_run.theory_file`). :func:`sweep_weight_decay` returns one row per
lambda; :func:`sweep_markdown` and :func:`plot_sweep` render them::

    from ncinspect.sweep import sweep_config, sweep_weight_decay, plot_sweep
    rows = sweep_weight_decay(sweep_config(epochs=1000), [0, 1e-4, 1e-3, 5e-3], "sweep/")
    plot_sweep(rows)

:func:`sweep_config` spells out every training setting of the measured sweeps of
docs/experiments.md (:data:`SWEEP_SETTINGS`), so they do not follow later changes of the
:class:`~ncinspect.train.TrainConfig` defaults.

This is the paper's central experiment (spec/theory.md, claim 5): weight decay is necessary
for neural collapse in deep bias-free ReLU networks trained with the square loss.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "SWEEP_SETTINGS",
    "sweep_config",
    "SWEEP_METRICS",
    "SWEEP_THEORY",
    "sweep_weight_decay",
    "sweep_row",
    "sweep_columns",
    "sweep_markdown",
    "write_sweep",
    "template_data",
    "converged_config",
    "gradient_norm",
]

#: Every training setting of the sweeps measured in docs/experiments.md (all but
#: ``weight_decay``, which each run replaces), pinned here rather than taken from the
#: TrainConfig defaults: those changed later (separation 10, lr 0.01, width 128, 6000 epochs,
#: save_every 1000 since commit a0e4d08), and the documented tables need these values.
SWEEP_SETTINGS: dict[str, Any] = {
    "dataset": "gaussian",
    "n_classes": 10,  # gaussian: C
    "n_per_class": 100,  # gaussian: N = 1000 training samples
    "n_test_per_class": 100,
    "class_counts": None,  # balanced
    "input_dim": 32,
    "separation": 1.0,  # gaussian class-centre scale (the TrainConfig default is now 10)
    "noise": 1.0,
    "mnist1d_samples": 5000,  # mnist1d: 4000 train / 1000 test
    "depth": 4,
    "width": 128,
    "widths": None,
    "init_scale": 1.0,
    "dtype": "float64",
    "kappa": None,  # 1/(N C), so Lambda = lambda C
    "lr": 0.1,  # the TrainConfig default is now 0.01
    "momentum": 0.9,
    "batch_size": 100,
    "epochs": 1000,
    "schedule": "cosine",
    "step_every": 0,
    "gamma": 0.1,
    "lr_min": 0.0,
    "save_every": 1000,  # = epochs: one snapshot at 0 and one at the end (sweep_config)
    "features_dtype": None,
    "compression": None,
    "seed": 0,
    "task": "classification",  # the sweeps are classification runs
    "n_targets": 3,  # regression only (unused here)
    "target_map": "linear",  # regression only (unused here)
    "target_offset": 1.0,  # regression only (unused here)
}


def sweep_config(**overrides: Any):
    """The :class:`~ncinspect.train.TrainConfig` of the documented sweeps, with ``overrides``.

    Every field comes from :data:`SWEEP_SETTINGS` (not from the TrainConfig defaults) unless
    overridden; ``save_every`` follows ``epochs`` unless given, so each dump holds epoch 0 and
    the last epoch.

    Examples
    --------
    >>> sweep_config(dataset="gaussian", epochs=2000).separation
    1.0
    """
    from .train import TrainConfig

    settings = {**SWEEP_SETTINGS, **overrides}
    if "save_every" not in overrides:
        settings["save_every"] = max(1, int(settings["epochs"]))
    settings.setdefault("weight_decay", 0.0)
    return TrainConfig(**settings)


#: NC metrics reported per lambda (key, short title).
SWEEP_METRICS: tuple[tuple[str, str], ...] = (
    ("nc1", "nc1"),
    ("nc1_trace_ratio", "trace ratio"),
    ("etf_error_means", "ETF means"),
    ("etf_error_weights_centered", "ETF W centred"),
    ("nc3_self_duality", "self-duality"),
    ("nc4_ncc_mismatch", "NCC mismatch"),
    ("accuracy_classifier", "train acc"),
    ("mse", "mse"),
    ("sqi_eps1", "eps1"),
    ("sqi_eps2", "eps2"),
)
#: Theory residuals reported per lambda (line key, short title).
SWEEP_THEORY: tuple[tuple[str, str], ...] = (
    ("stationarity_last_layer", "stationarity"),
    ("layer_norm_spread", "norm spread"),
    ("classifier_closed_form", "W_L closed form"),
    ("classifier_centered", "W_L centred"),
    ("delta", "delta"),
    ("eps_sum", "eps1+eps2"),
)


def _dump_name(weight_decay: float) -> str:
    return f"wd_{weight_decay:g}.h5"


def _final_train_snapshot(path: str) -> str:
    from .dump import open_dump

    with open_dump(path) as dump:
        snaps = [s for s in dump.snapshots if s.split in (None, "train") and s.layer is None]
        return max(snaps, key=lambda s: s.epoch or 0).name


def sweep_row(
    path: str | os.PathLike,
    *,
    weight_decay: float | None = None,
    seconds: float | None = None,
    test_accuracy: float | None = None,
) -> dict[str, Any]:
    """NC metrics and theory residuals of the final training snapshot of one dump.

    Parameters
    ----------
    path : str or PathLike
        A dump written by :func:`ncinspect.train.fit` (or any dump with the theory keys).
    weight_decay, seconds, test_accuracy : optional
        Recorded in the row (weight_decay defaults to the dump's metadata).

    Returns
    -------
    dict
        ``weight_decay``, ``Lambda``, ``dump``, ``snapshot``, ``epoch``, ``seconds``,
        ``test_accuracy``, ``layer_norms_sq``, ``metrics`` (SWEEP_METRICS keys) and
        ``theory`` (SWEEP_THEORY line key -> relative error; None where not applicable).
    """
    from .theory_run import theory_file

    path = os.fspath(path)
    name = _final_train_snapshot(path)
    report, _ = theory_file(path, snapshot=name)
    res = report[0]
    lines = {ln["key"]: ln for ln in res.theory["lines"]}
    wd = res.theory["constants"]["weight_decay"] if weight_decay is None else weight_decay
    if test_accuracy is None:
        test_accuracy = res.meta.get("test_accuracy")
    return {
        "weight_decay": wd,
        "Lambda": res.theory["constants"]["Lambda"],
        "dump": path,
        "snapshot": name,
        "epoch": res.epoch,
        "seconds": seconds,
        "test_accuracy": test_accuracy,
        "layer_norms_sq": res.theory["layer_norms_sq"],
        "metrics": {k: res.metrics.get(k) for k, _ in SWEEP_METRICS},
        "theory": {k: lines[k]["rel_error"] if k in lines else None for k, _ in SWEEP_THEORY},
    }


def sweep_weight_decay(
    config,
    weight_decays: Sequence[float],
    out_dir: str | os.PathLike,
    *,
    data=None,
    callback: Callable[[float, dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Train ``config`` once per weight decay (same data, same seed) and collect the results.

    Parameters
    ----------
    config : ncinspect.train.TrainConfig
        Every setting but ``weight_decay`` (which each run replaces).
    weight_decays : sequence of float
        The lambda values, e.g. ``[0, 1e-4, 5e-4, 1e-3, 5e-3]``.
    out_dir : str or PathLike
        Folder for the dumps ``wd_<lambda>.h5`` (created if needed).
    data : ncinspect.train.Dataset, optional
        The data (default: the one ``config`` names, generated once from its seed).
    callback : callable, optional
        Called with ``(weight_decay, row)`` after each run.

    Returns
    -------
    list of dict
        One :func:`sweep_row` per lambda, in the order given.
    """
    from .train import fit, load_dataset

    os.makedirs(out_dir, exist_ok=True)
    data = load_dataset(config) if data is None else data
    rows = []
    for wd in weight_decays:
        cfg = dataclasses.replace(config, weight_decay=float(wd))
        path = os.path.join(os.fspath(out_dir), _dump_name(float(wd)))
        start = time.perf_counter()
        hist = fit(cfg, data, dump=path)
        seconds = time.perf_counter() - start
        row = sweep_row(
            path, weight_decay=float(wd), seconds=seconds, test_accuracy=hist.last("test_accuracy")
        )
        rows.append(row)
        if callback is not None:
            callback(float(wd), row)
    return rows


def sweep_columns(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a flat table (one row per lambda): metrics, residuals, layer norms."""
    depth = max((len(r["layer_norms_sq"] or []) for r in rows), default=0)
    header = [
        "weight_decay",
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
    from .render.table import fmt

    if isinstance(value, float) and 0 < abs(value) < 1e-3:
        return f"{value:.1e}"
    return fmt(value)


def sweep_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Two Markdown tables: NC metrics against lambda, and theory residuals with layer norms."""
    out = [
        "| lambda | " + " | ".join(t for _, t in SWEEP_METRICS) + " | test acc | time (s) |",
        "| --- " * (len(SWEEP_METRICS) + 3) + "|",
    ]
    for r in rows:
        cells = [
            _md(r["weight_decay"]),
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
        out.append("| " + " | ".join([_md(r["weight_decay"]), *theory, norms]) + " |")
    return "\n".join(out) + "\n"


def write_sweep(
    rows: Sequence[dict[str, Any]],
    out_dir: str | os.PathLike,
    *,
    title: str | None = None,
    figure: bool = True,
) -> list[str]:
    """Write ``sweep.json``, ``sweep.csv``, ``sweep.md`` and ``sweep.png`` into ``out_dir``."""
    import csv
    import io

    from .report import atomic_write, jsonable

    out_dir = os.fspath(out_dir)
    written = []
    path = os.path.join(out_dir, "sweep.json")
    atomic_write(path, json.dumps(jsonable(list(rows)), sort_keys=True, indent=2) + "\n")
    written.append(path)
    header, table = sweep_columns(rows)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in table:
        writer.writerow(["" if v is None else jsonable(v) for v in row])
    path = os.path.join(out_dir, "sweep.csv")
    atomic_write(path, buf.getvalue())
    written.append(path)
    path = os.path.join(out_dir, "sweep.md")
    atomic_write(path, sweep_markdown(rows))
    written.append(path)
    if figure:
        from .plots._style import save_figure
        from .plots.sweep import plot_sweep

        fig = plot_sweep(rows, title=title)
        path = save_figure(fig, os.path.join(out_dir, "sweep.png"), dpi=150)
        import matplotlib.pyplot as plt

        plt.close(fig)
        written.append(path)
    return written


# --------------------------------------------------------------------------------------
# a run that reaches a critical point (for checking the identities to 1e-6)
# --------------------------------------------------------------------------------------
def template_data(
    n_classes: int = 4, n_per_class: int = 10, *, symmetric: bool = True, seed: int = 0
):
    """Inputs constant within each class: class templates plus a shared offset vector.

    Parameters
    ----------
    n_classes, n_per_class : int
    symmetric : bool
        True: orthogonal templates of equal norm (``2 e_c``) and an offset orthogonal to them
        (``2 e_C``), so the classes are interchangeable and full-batch training converges to a
        critical point with class-symmetric outputs, where every closed form of
        spec/theory.md holds. False: random Gaussian templates and offset in 16 dimensions,
        whose critical points have class-constant but asymmetric outputs (the two exact
        identities hold, the closed forms do not). Full-batch training converges on these
        only for some seeds (seed 0 does, with :func:`converged_config`; others stall at a
        ReLU kink or fall to W = 0).
    seed : int
        Seeds the random templates (``symmetric=False``).

    Returns
    -------
    ncinspect.train.Dataset
        With an empty test split.
    """
    import numpy as np

    from .train import Dataset

    y = np.repeat(np.arange(n_classes), n_per_class)
    if symmetric:
        d = n_classes + 4
        templates, offset = 2.0 * np.eye(n_classes, d), 2.0 * np.eye(d)[n_classes]
    else:
        d = 16
        rng = np.random.default_rng(seed)
        templates = rng.standard_normal((n_classes, d))
        offset = 2 * rng.standard_normal(d)
    X = templates[y] + offset  # (N, d)
    return Dataset(X, y, X[:0], y[:0], name="templates" if symmetric else "random-templates")


def converged_config(n_samples: int, *, epochs: int = 8000, weight_decay: float = 1e-2):
    """Full-batch settings that take :func:`template_data` to a gradient norm below 1e-12.

    A 3-layer width-64 bias-free ReLU net, ``kappa = 1/N`` (so Lambda = lambda), heavy-ball
    gradient descent (lr 0.1, momentum 0.9, constant), init scale 0.5, float64. The layer
    norms balance at rate ~exp(-2 Lambda lr t / (1 - momentum)), hence lambda = 1e-2 rather
    than spec/theory.md's 1e-3 (which needs about ten times more steps).
    """
    from .train import TrainConfig

    return TrainConfig(
        depth=3,
        width=64,
        batch_size=0,
        weight_decay=weight_decay,
        kappa=1.0 / n_samples,
        lr=0.1,
        momentum=0.9,
        schedule="constant",
        epochs=epochs,
        save_every=epochs,
        init_scale=0.5,
        seed=0,
    )


def gradient_norm(params, data, config) -> float:
    """Euclidean norm of the full-batch gradient of the objective of ``config`` at ``params``."""
    import numpy as np

    from .train.loop import one_hot
    from .train.model import objective_and_grads

    N, C = data.X.shape[0], data.n_classes
    kappa = config.kappa if config.kappa is not None else 1.0 / (N * C)
    _, grads, _ = objective_and_grads(
        params, data.X, one_hot(data.y, C), kappa=kappa, weight_decay=config.weight_decay
    )
    return float(np.sqrt(sum(np.vdot(g, g) for g in grads)))
