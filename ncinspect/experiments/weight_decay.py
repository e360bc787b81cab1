"""The weight-decay sweep: the same network on the same data for several lambda (incl. 0).

One dump per lambda and seed (``wd_<lambda>.h5``, or ``wd_<lambda>_seed<s>.h5`` when seeds
are given; written by :func:`ncinspect.train.fit`), then the final training snapshot of each
is analysed (NC metrics) and checked against the theory
(:func:`ncinspect.theory.theory_file`). :func:`sweep_weight_decay` returns one row per
run; :mod:`ncinspect.experiments.tables` renders them::

    from ncinspect.train import TrainConfig
    from ncinspect.experiments import sweep_weight_decay, write_sweep, write_headline
    rows = sweep_weight_decay(TrainConfig(), [0, 2e-3], "runs/", seeds=range(5))
    write_sweep(rows, "runs/")       # one row per run: sweep.json/.csv/.md/.png
    write_headline(rows, "runs/")    # mean and 95% interval over the seeds, banded figure

Every setting but ``weight_decay`` (and ``seed``, when seeds are given) comes from the
:class:`~ncinspect.train.TrainConfig` passed in; nothing here has defaults of its own. The
command line is ``ncinspect sweep`` (:mod:`ncinspect.cli.sweep`).

This is the paper's central experiment (spec/theory.md, claim 5): weight decay is necessary
for neural collapse in deep bias-free ReLU networks trained with the square loss.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..metrics.registry import COMPACT_METRICS, short_title

__all__ = [
    "SWEEP_METRICS",
    "SWEEP_THEORY",
    "HEADLINE_METRIC",
    "HEADLINE_WEIGHT_DECAY",
    "dump_name",
    "sweep_row",
    "sweep_weight_decay",
    "factors",
]

#: NC metrics reported per lambda (key, short title); the titles are the registry's.
SWEEP_METRICS: tuple[tuple[str, str], ...] = tuple(
    (key, short_title(key)) for key in (*COMPACT_METRICS, "sqi_eps1", "sqi_eps2")
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
#: The metric whose per-seed factor (lambda = 0 over lambda > 0) the headline reports:
#: NC2 of the classifier, the centred rows' distance to the simplex ETF.
HEADLINE_METRIC = "etf_error_weights_centered"
#: The weight decay of the README's headline experiment (every other setting is the
#: TrainConfig default). On seed 4, the hardest of seeds 0-4, the centred classifier's ETF
#: error ends at 0.099 with 2e-3 (the trainer's default), 0.072 with 5e-3 and 0.061 with
#: 6e-3; 7e-3 drifts away from the ETF (0.19 at 3000 epochs) and 1e-2 falls to W = 0.
HEADLINE_WEIGHT_DECAY = 6e-3


def dump_name(weight_decay: float, seed: int | None = None) -> str:
    """``wd_<lambda>.h5`` (one seed) or ``wd_<lambda>_seed<s>.h5`` (seeds given)."""
    tail = "" if seed is None else f"_seed{int(seed)}"
    return f"wd_{float(weight_decay) + 0.0:g}{tail}.h5"  # + 0.0: -0 is lambda = 0, wd_0


def _final_train_snapshot(path: str) -> str:
    from ..dump import open_dump

    with open_dump(path) as dump:
        snaps = [s for s in dump.snapshots if s.split in (None, "train") and s.layer is None]
        return max(snaps, key=lambda s: s.epoch or 0).name


def sweep_row(
    path: str | os.PathLike,
    *,
    weight_decay: float | None = None,
    seed: int | None = None,
    seconds: float | None = None,
    test_accuracy: float | None = None,
) -> dict[str, Any]:
    """NC metrics and theory residuals of the final training snapshot of one dump.

    Parameters
    ----------
    path : str or PathLike
        A dump written by :func:`ncinspect.train.fit` (or any dump with the theory keys).
    weight_decay, seed, seconds, test_accuracy : optional
        Recorded in the row (weight_decay and seed default to the dump's metadata).

    Returns
    -------
    dict
        ``weight_decay``, ``seed``, ``Lambda``, ``dump``, ``snapshot``, ``epoch``,
        ``seconds``, ``test_accuracy``, ``layer_norms_sq``, ``metrics`` (SWEEP_METRICS keys)
        and ``theory`` (SWEEP_THEORY line key -> relative error; None where not applicable).
    """
    from ..theory import theory_file

    path = os.fspath(path)
    name = _final_train_snapshot(path)
    report, _ = theory_file(path, snapshot=name)
    res = report[0]
    lines = {ln.key: ln for ln in res.theory.lines}
    wd = res.theory.constants["weight_decay"] if weight_decay is None else weight_decay
    if test_accuracy is None:
        test_accuracy = res.meta.get("test_accuracy")
    if seed is None:
        seed = res.meta.get("seed")
    return {
        "weight_decay": wd,
        "seed": None if seed is None else int(seed),
        "Lambda": res.theory.constants["Lambda"],
        "dump": path,
        "snapshot": name,
        "epoch": res.epoch,
        "seconds": seconds,
        "test_accuracy": test_accuracy,
        "layer_norms_sq": res.theory.layer_norms_sq,
        "metrics": {k: res.metrics.get(k) for k, _ in SWEEP_METRICS},
        "theory": {k: lines[k].rel_error if k in lines else None for k, _ in SWEEP_THEORY},
    }


def sweep_weight_decay(
    config,
    weight_decays: Sequence[float],
    out_dir: str | os.PathLike,
    *,
    seeds: Iterable[int] | None = None,
    data=None,
    callback: Callable[[float, dict[str, Any]], None] | None = None,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Train ``config`` once per weight decay (and seed) and collect the results.

    Parameters
    ----------
    config : ncinspect.train.TrainConfig
        Every setting but ``weight_decay`` (which each run replaces) and, with ``seeds``,
        ``seed``.
    weight_decays : sequence of float
        The lambda values, e.g. ``[0, 1e-4, 5e-4, 1e-3, 5e-3]``.
    out_dir : str or PathLike
        Folder for the dumps (created if needed): ``wd_<lambda>.h5`` without ``seeds``,
        ``wd_<lambda>_seed<s>.h5`` with them.
    seeds : iterable of int, optional
        Repeat the sweep for each seed (each seed draws its own data, initialisation and
        batch order; within a seed every lambda sees the same). Default: ``config.seed`` once.
    data : ncinspect.train.Dataset, optional
        The data (default: the one ``config`` names, generated once per seed). Not allowed
        with ``seeds``, whose runs draw their own.
    callback : callable, optional
        Called with ``(weight_decay, row)`` after each run, in the order of the runs.
    jobs : int
        Runs trained at once, each in its own process (1: one after the other in this
        process). The runs are independent, so the dumps and rows do not depend on it.

    Returns
    -------
    list of dict
        One :func:`sweep_row` per run, seed by seed, lambda in the order given.
    """
    if seeds is not None and data is not None:
        raise ValueError("give seeds or data, not both: each seed draws its own data")
    check_dump_names(weight_decays)
    runs = (
        [(config, None)]
        if seeds is None
        else [(dataclasses.replace(config, seed=int(s)), int(s)) for s in seeds]
    )
    tasks = [
        (
            dataclasses.replace(base, weight_decay=float(wd) + 0.0),  # -0 is lambda = 0
            os.path.join(os.fspath(out_dir), dump_name(float(wd), seed)),
            data,
        )
        for base, seed in runs
        for wd in weight_decays
    ]
    os.makedirs(out_dir, exist_ok=True)
    if jobs <= 1 or len(tasks) < 2:
        results = map(_run_one, tasks)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawned, not forked: a forked child inherits the parent's HDF5 library state, and
        # a long --jobs sweep then failed inside h5py on a garbled HDF5 error message
        spawn = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(int(jobs), len(tasks)), mp_context=spawn)
        results = pool.map(_run_one, tasks)  # results in task order, whatever finishes first
    rows = []
    try:
        for (cfg, _, _), row in zip(tasks, results, strict=True):
            rows.append(row)
            if callback is not None:
                callback(cfg.weight_decay, row)
    finally:
        if jobs > 1 and len(tasks) >= 2:
            pool.shutdown(cancel_futures=True)
    return rows


def check_dump_names(weight_decays: Iterable[float]) -> None:
    """Refuse two weight decays whose dumps would have one name (``1e-3`` and ``0.001``, or
    ``0.001`` and ``0.0010000001``, both ``wd_0.001.h5``), naming both: the later run would
    replace the earlier one's dump (or, with ``jobs``, write into it at the same time) and
    two rows would name one file."""
    from ..errors import UsageError

    seen: dict[str, float] = {}
    for wd in weight_decays:
        name = dump_name(float(wd), None)
        if name in seen:
            raise UsageError(
                f"weight decays {seen[name]!r} and {float(wd)!r} would both write {name} "
                "(one dump per lambda, named by its %g form); give distinct values"
            )
        seen[name] = float(wd)


def _run_one(task) -> dict[str, Any]:
    """Train one (config, dump path, data or None) and measure its final snapshot."""
    from ..train import fit, load_dataset

    cfg, path, data = task
    start = time.perf_counter()
    hist = fit(cfg, load_dataset(cfg) if data is None else data, dump=path)
    seconds = time.perf_counter() - start
    return sweep_row(
        path,
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        seconds=seconds,
        test_accuracy=hist.last("test_accuracy"),
    )


def factors(
    rows: Sequence[dict[str, Any]], key: str = HEADLINE_METRIC, *, theory: bool = False
) -> list[dict[str, Any]]:
    """Per seed and lambda > 0: the value of ``key`` without weight decay over its value with.

    Parameters
    ----------
    rows : sequence of dict
        From :func:`sweep_weight_decay`; each seed needs a lambda = 0 row.
    key : str
        A key of ``row["metrics"]`` (or of ``row["theory"]`` with ``theory=True``).

    Returns
    -------
    list of dict
        ``seed``, ``weight_decay``, ``without`` (the lambda = 0 value), ``with`` and
        ``factor = without / with``, None where either value is undefined or ``with`` is 0.
        Seeds without a lambda = 0 row are left out.
    """
    part = "theory" if theory else "metrics"
    zero = {r["seed"]: r[part].get(key) for r in rows if r["weight_decay"] == 0}
    out = []
    for r in rows:
        if r["weight_decay"] == 0 or r["seed"] not in zero:
            continue
        without, value = zero[r["seed"]], r[part].get(key)
        ok = without is not None and value is not None and value != 0
        out.append(
            {
                "seed": r["seed"],
                "weight_decay": r["weight_decay"],
                "without": without,
                "with": value,
                "factor": without / value if ok else None,
            }
        )
    return out
