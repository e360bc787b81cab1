"""Bootstrap intervals for one snapshot: resample samples within each class, B replicates.

Replicate ``b`` draws, for every class c with ``n_c`` samples, ``n_c`` samples of that class
with replacement (the multinomial counts ``k_i``, summing to ``n_c`` within each class, of
a within-class bootstrap). Each replicate is the snapshot with row i taken ``k_i`` times, so
every metric of the replicate is exactly the metric of that re-weighted data set: both passes
run again on it (class counts are unchanged; class means, the between-class eigenbasis,
the within-class scatter, the NCC and classifier decisions and the output sums are
recomputed), with the same kernels as one report. Nothing is approximated; the cost is one
report's computation per replicate (see docs/bootstrap.md). The interval of a metric is the
percentile interval: the 2.5% and 97.5% quantiles of its B replicate values.

What stays fixed across replicates: the classifier (W, b), the class set and counts, the
``center`` and ``min_class_count`` conventions, and NCC centres given from elsewhere (the
train split's means for a test split, or ``ncc_centres=``): the interval describes the
sampling of this snapshot's rows only.

Randomness comes only from ``numpy.random.Generator(seed)``: the same data, B and seed give
the same intervals, bit for bit, whatever the chunking of the point estimate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ResourceLimitError, UsageError

__all__ = ["bootstrap_prepared", "check_bootstrap", "LEVEL", "METHOD"]

LEVEL = 0.95
MAX_REPLICATES = 10_000  #: the most bootstrap replicates (``--bootstrap``'s range too)
METHOD = "percentile"
RESAMPLING = "samples within each class, with replacement (class counts fixed)"


def check_bootstrap(replicates: Any, seed: Any) -> None:
    """Usage errors for a bootstrap request (``replicates`` None means off)."""
    if replicates is None:
        return
    if isinstance(replicates, bool) or not isinstance(replicates, (int, np.integer)):
        raise UsageError(f"bootstrap must be an integer number of replicates, got {replicates!r}")
    if replicates < 2:
        raise UsageError(f"bootstrap needs at least 2 replicates, got {replicates}")
    if replicates > MAX_REPLICATES:  # each costs about one analysis: beyond, it never ends
        raise UsageError(f"bootstrap takes at most {MAX_REPLICATES} replicates, got {replicates}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise UsageError(f"seed must be an integer in [0, 2**63 - 1], got {seed!r}")


def _class_members(codes: np.ndarray, n_classes: int) -> list[np.ndarray]:
    """Row indices of each class, in row order."""
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=n_classes))
    return np.split(order, bounds[:-1])


def _draw(rng: np.random.Generator, members: list[np.ndarray]) -> np.ndarray:
    """Sorted row indices of one replicate: ``n_c`` draws with replacement in each class."""
    parts = [m[rng.integers(0, m.size, m.size)] for m in members if m.size]
    return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def _check_memory(prep, memory_limit: int | None) -> None:
    """A replicate holds the stored features, one resampled float64 copy and its buffers."""
    if memory_limit is None:
        return
    n, d = prep.n_samples, prep.n_features
    need = n * d * (prep.features.dtype.itemsize + 8 * 3) + 24 * n
    if need > memory_limit:
        from ..budget import fmt_bytes

        raise ResourceLimitError(
            f"--bootstrap holds the snapshot's features in memory (N = {n}, d = {d}): it needs "
            f"about {fmt_bytes(need)}, more than --memory-limit {fmt_bytes(memory_limit)}"
        )


def bootstrap_prepared(
    prep,
    analyse: Callable[[Any], dict[str, Any]],
    *,
    replicates: int,
    seed: int = 0,
    metric_keys: list[str] | None = None,
    memory_limit: int | None = None,
) -> dict[str, Any]:
    """Percentile intervals of every metric of a prepared classification snapshot.

    Parameters
    ----------
    prep : :class:`~ncinspect.inputs.Prepared`
        The validated inputs (features are read once, whole, in their stored dtype).
    analyse : callable
        ``analyse(prepared) -> metrics``: the two passes and the metrics of one replicate's
        :class:`~ncinspect.inputs.Prepared` (``analyze`` passes its own, with the ``center``,
        NCC centres and ``min_class_count`` of the point estimate, held fixed).
    replicates : int
        B, the number of bootstrap replicates (>= 2).
    seed : int
        Seed of the ``numpy.random.Generator`` that draws the replicates.
    metric_keys : list of str, optional
        The keys to give intervals for (default: those of the replicates); a key that the
        replicates do not compute (e.g. nc5 from an OOD snapshot) is null with a reason.

    Returns
    -------
    dict
        ``{"B", "seed", "level", "method", "resampling", "intervals": {key: {"lo", "hi"}},
        "reasons": {key: why}}``; ``lo``/``hi`` are null where a replicate left the metric
        undefined or the metric is not a number (the reason says which).

    Notes
    -----
    The interval is ``[q_0.025, q_0.975]`` of the B replicate values (numpy's default
    linear quantile). Each replicate runs the two passes on the resampled rows: its cost is
    that of one report on the snapshot.
    """
    from ..io.sources import MemorySource

    check_bootstrap(replicates, seed)
    _check_memory(prep, memory_limit)
    rng = np.random.Generator(np.random.PCG64(seed))
    features = prep.features.read_all()
    outputs = None if prep.outputs is None else np.asarray(prep.outputs.read_all(), np.float64)
    members = _class_members(prep.codes, prep.n_classes)
    values: dict[str, list[Any]] = {}
    for _ in range(int(replicates)):
        idx = _draw(rng, members)
        rep = dataclasses.replace(
            prep,
            features=MemorySource(features[idx], prep.features.where),
            codes=prep.codes[idx],
            outputs=None if outputs is None else MemorySource(outputs[idx], prep.outputs.where),
        )
        for key, value in analyse(rep).items():
            values.setdefault(key, []).append(value)
    keys = list(metric_keys) if metric_keys is not None else list(values)
    intervals: dict[str, dict[str, float | None]] = {}
    reasons: dict[str, str] = {}
    for key in keys:
        lo, hi, why = _percentile_interval(values.get(key), int(replicates))
        intervals[key] = {"lo": lo, "hi": hi}
        if why:
            reasons[key] = why
    return {
        "B": int(replicates),
        "seed": int(seed),
        "level": LEVEL,
        "method": METHOD,
        "resampling": RESAMPLING,
        "intervals": intervals,
        "reasons": reasons,
    }


def _percentile_interval(vals: list[Any] | None, replicates: int):
    """``(lo, hi, reason)`` of one metric's replicate values."""
    if vals is None:
        return None, None, "not computed from this snapshot's rows (not resampled)"
    if any(isinstance(v, (bool, np.bool_)) for v in vals):
        return None, None, "a yes/no value: no interval"
    missing = sum(1 for v in vals if v is None or not np.isfinite(float(v)))
    if missing:
        return None, None, f"undefined in {missing} of {replicates} replicates"
    arr = np.asarray(vals, dtype=np.float64)
    tail = (1.0 - LEVEL) / 2.0 * 100.0
    lo, hi = np.percentile(arr, [tail, 100.0 - tail])
    return float(lo), float(hi), None
