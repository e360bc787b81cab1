"""Run the theory diagnostics on snapshots, files or arrays (the analysis layer of ``theory``).

Reads what a :class:`~ncinspect.dump.Snapshot` holds (``params/W1..WL``, ``weights``,
``outputs``, metadata ``weight_decay``, ``kappa``, ``n_samples``, ``Lambda``). The sums over
samples (``sum_i r_i h_i^T`` and ``sum_i <r_i, f(x_i)>``: C x d accumulators, never N x d)
ride pass 2 of the analysis (:class:`~ncinspect.stats.theory.TheoryPass`), so the training
rows are read twice, as for ``report``, on any engine. Everything goes with the class means
and SQI numbers of the analysis to :func:`ncinspect.theory.theory_diagnostics`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..analysis.api import analyze_snapshot
from ..analysis.build import build_result, check_options, prepare_snapshot
from ..arrays import to_host
from ..blas import hold_one_blas_thread
from ..engines.local import run_passes
from ..errors import ShapeMismatchError
from ..inputs import Prepared, check_dtype, check_finite, prepare
from ..results.parts import TheoryResult
from ..results.report import Report, SnapshotResult
from ..stats.theory import TheoryPass
from ..text import clip
from .constants import Constants, resolve_constants
from .context import layer_norms_sq
from .diagnostics import theory_diagnostics

__all__ = [
    "BIAS_NOTE",
    "analyze_theory",
    "theory_file",
    "theory_arrays",
    "read_params",
    "theory_applies",
]

_PARAM_RE = re.compile(r"^W(\d+)$")
#: the note of a snapshot whose classifier has a nonzero bias (the identities are bias-free)
BIAS_NOTE = "the dump has a nonzero bias: the identities assume a bias-free network"


def read_params(snap) -> tuple[list[np.ndarray] | None, list[str]]:
    """``[W_1, ..., W_L]`` from a snapshot's ``params`` group (None if absent) and notes.

    Names ``W1``, ``W2``, ... are ordered by their number; other names by name, with a note.
    Raises :class:`~ncinspect.errors.ShapeMismatchError` when consecutive shapes do not chain.
    """
    if not snap.params:
        return None, []
    notes = []
    names = list(snap.params)
    if all(_PARAM_RE.match(n) for n in names):
        names.sort(key=lambda n: int(_PARAM_RE.match(n).group(1)))
    else:
        names.sort()
        notes.append(f"params are not named W1..WL ({', '.join(names)}); using name order")
    arrays = [_param(snap.params[n].read_all(), snap.params[n].where, n) for n in names]
    for i, (name, w) in enumerate(zip(names, arrays, strict=True)):
        where = snap.params[name].where
        if w.ndim != 2:
            raise ShapeMismatchError(f"{where}: layer weights must be 2-D (out, in), got {w.shape}")
        if i and w.shape[1] != arrays[i - 1].shape[0]:
            raise ShapeMismatchError(
                f"{where}: shape {w.shape} does not chain with {names[i - 1]} "
                f"{arrays[i - 1].shape} (expected {w.shape[0]} x {arrays[i - 1].shape[0]})"
            )
    return arrays, notes


def _param(array: Any, where: str, name: str) -> np.ndarray:
    """One layer's weights as float64: numbers (complex ones were cast to their real part, a
    bool matrix to 0/1, with only numpy's ComplexWarning) and finite, else one line naming
    the array."""
    array = np.asarray(array)
    check_dtype(array.dtype, where, f"layer weights {name}", kinds="iuf")
    out = np.asarray(array, dtype=np.float64)
    check_finite(out, where)
    return out


def theory_applies(snap) -> str | None:
    """None when the identities concern ``snap`` (a train-split, penultimate-layer classification
    snapshot); else why not."""
    if snap.split not in (None, "train"):
        return f"split {snap.split!r}: the identities concern the training set"
    if snap.layer is not None:
        return f"layer {snap.layer!r}: the identities concern the penultimate layer"
    from ..analysis.regression import snapshot_kind

    if snapshot_kind(snap) == "regression":  # read as the report reads it, not as labels
        return "a regression snapshot: the identities concern classifiers"
    return None


def _last_layer(prep: Prepared, params, notes: list[str], where: str):
    """``W_L``: the last of ``params`` (checked against the dump's weights) or the weights."""
    last = prep.weights
    if params is not None:
        C, d = prep.n_classes, prep.n_features
        if params[-1].shape != (C, d):
            raise ShapeMismatchError(
                f"{where}: the last layer has shape {params[-1].shape}, "
                f"expected (C, d) = ({C}, {d})"
            )
        if last is not None and not np.allclose(last, params[-1], rtol=1e-6, atol=0):
            notes.append("weights differ from the last of params; using params")
        last = params[-1]
    return last


def _diagnose(
    prep: Prepared,
    result: SnapshotResult,
    sums: TheoryPass | None,
    constants: Constants,
    params: list[np.ndarray] | None,
    notes: list[str],
    *,
    initial: tuple[list[float], str] | None,
    where: str = "params",
) -> TheoryResult:
    last = _last_layer(prep, params, notes, where)
    missing = []
    if prep.outputs is None:
        missing.append("outputs")
        if prep.weights is not None:
            notes.append(
                "no stored outputs: using W_L h" + (" + b" if prep.bias is not None else "")
            )
    if prep.bias is not None and np.any(prep.bias != 0):
        notes.append(BIAS_NOTE)
    m, arrays = result.metrics, result.arrays
    out = theory_diagnostics(
        # every row of W: an absent class leaves a NaN mean, which the closed forms report
        means=arrays.means_all if arrays.means_all is not None else arrays.means,
        class_counts=list(
            result.class_counts if arrays.class_counts_all is None else arrays.class_counts_all
        ),
        constants=constants,
        sums=sums,
        params=params,
        last_layer=last,
        eps1=m.get("sqi_eps1"),
        eps2=m.get("sqi_eps2"),
        sqi_spread=m.get("sqi_spread"),
        mse=m.get("mse"),
        interpolates=m.get("interpolates"),
        initial_layer_norms=initial[0] if initial else None,
        initial_name=initial[1] if initial else None,
        missing=missing if sums is None else (),
    )
    out.notes[:0] = notes
    return out


def analyze_theory(
    snap,
    result: SnapshotResult,
    sums: TheoryPass | None,
    *,
    initial: tuple[list[float], str] | None = None,
    prepared: Prepared | None = None,
) -> TheoryResult:
    """The theory section of one snapshot (its file must be open).

    Parameters
    ----------
    snap : Snapshot
        A train-split, penultimate-layer snapshot (see :func:`theory_applies`).
    result : SnapshotResult
        Its analysis (:func:`ncinspect.analyze_snapshot`): class means, SQI numbers.
    sums : TheoryPass or None
        The sums over its rows (``run_passes(..., theory=True).theory``).
    initial : (layer norms, name), optional
        ``||W_l||_F^2`` of the earliest snapshot of the run, for the conservation lines.
    prepared : Prepared, optional
        The snapshot's validated inputs, when already built.

    Returns
    -------
    TheoryResult
        As :func:`ncinspect.theory.theory_diagnostics`, with the dump's notes prepended.
    """
    prep = prepared or prepare_snapshot(snap)
    params, notes = read_params(snap)
    name = f"{snap.file}:{snap.name.rstrip('/')}"
    constants = resolve_constants(snap.meta, where=name)
    return _diagnose(
        prep, result, sums, constants, params, notes, initial=initial, where=f"{name}/params"
    )


class _InitialNorms:
    """The layer norms of the earliest snapshot with params of each (split, layer), for the
    later snapshots of that trajectory; each trajectory's first snapshot is found once and its
    params read once (a file of S snapshots: S, not S x S, comparisons)."""

    def __init__(self, snaps) -> None:
        self.first: dict[tuple, Any] = {}
        for s in snaps:
            if s.params and s.epoch is not None:
                key = (s.split, s.layer)
                if key not in self.first or s.epoch < self.first[key].epoch:
                    self.first[key] = s  # the first of the earliest epoch, as min() picks
        self.norms: dict[str, list[float]] = {}

    def of(self, snap) -> tuple[list[float], str] | None:
        """Layer norms of the earliest snapshot (same split and layer) with params, if
        earlier than ``snap``."""
        first = self.first.get((snap.split, snap.layer))
        if first is None or snap.epoch is None or first.epoch >= snap.epoch:
            return None
        if first.name not in self.norms:
            params, _ = read_params(first)
            self.norms[first.name] = layer_norms_sq(params)
        return list(self.norms[first.name]), first.name


def theory_file(
    path: str | os.PathLike,
    *,
    snapshot: str | None = None,
    keys: dict[str, str] | None = None,
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    allow_external: bool = False,
    class_names: Any = None,
    engine: Any = None,
) -> tuple[Report, list[str]]:
    """Analyse and run the theory diagnostics on every train/penultimate snapshot of a dump.

    Parameters
    ----------
    path : str or PathLike
        The dump (HDF5 or NPZ).
    snapshot : str, optional
        Glob on snapshot paths (comma-separated for several); default all.
    keys : dict, optional
        Explicit array names by role.
    chunk_rows, memory_limit : int, optional
        Row chunking, as in :func:`ncinspect.analyze_file`.
    allow_external : bool
        As for :func:`ncinspect.analyze_file`.
    class_names : list, optional
        The class order (name of each row of W), as in :func:`ncinspect.analyze_file`.
    engine : object, optional
        Where the two passes run (default in this process; e.g.
        :class:`ncinspect.engines.dask.DaskEngine`).

    Returns
    -------
    (Report, skipped)
        A report whose snapshots carry ``theory`` sections, and one line per selected snapshot
        the identities do not concern (test splits, hidden layers).
    """
    from ..analysis.file import snapshot_workers, worker_engine
    from ..dump import open_dump
    from ..engines.processes import forked_map

    check_options(chunk_rows=chunk_rows, memory_limit=memory_limit)  # before any work
    skipped, applies = [], []
    with open_dump(path, keys=keys, allow_external=allow_external) as dump:
        initial_norms = _InitialNorms(dump.snapshots)
        for snap in dump.select(snapshot):
            why = theory_applies(snap)
            if why is None:
                applies.append(snap)
            else:
                skipped.append(f"{snap.name}: skipped ({why})")
        run_engine = engine

        def setup(progress) -> None:  # in a worker: no threads (the cores are the workers')
            nonlocal run_engine
            run_engine = worker_engine(engine)
            hold_one_blas_thread()

        def one(i: int, progress=None) -> SnapshotResult:
            snap = applies[i]
            prep = prepare_snapshot(snap, class_names)
            passes = run_passes(
                prep,
                chunk_rows=chunk_rows,
                memory_limit=memory_limit,
                engine=run_engine,
                theory=True,
            )
            res = analyze_snapshot(snap, prepared=prep, passes=passes)
            initial = initial_norms.of(snap)
            res.theory = analyze_theory(snap, res, passes.theory, initial=initial, prepared=prep)
            return res

        # many small snapshots: on worker processes, as analyze_file (the same bytes out)
        workers = snapshot_workers(applies, engine, memory_limit)
        if workers:

            def describe(lo: int, hi: int) -> str:
                first, last = applies[lo].name, applies[hi - 1].name
                return f"{dump.path}: snapshots {clip(first)} to {clip(last)}"

            results = list(forked_map(one, len(applies), workers, setup=setup, describe=describe))
        else:
            results = [one(i) for i in range(len(applies))]
    return Report(os.fspath(path), results), skipped


def theory_arrays(
    features: Any,
    labels: Any,
    params: Sequence[Any],
    *,
    outputs: Any = None,
    weight_decay: float | None = None,
    kappa: float | None = None,
    n_samples: int | None = None,
    Lambda: float | None = None,
    initial_params: Sequence[Any] | None = None,
    chunk_rows: int | None = None,
) -> SnapshotResult:
    """Metrics and theory diagnostics of in-memory training arrays.

    Parameters
    ----------
    features : (N, d) array
        Penultimate features of the training set.
    labels : (N,) array
    params : sequence of arrays
        ``[W_1, ..., W_L]``, shapes (out, in); ``W_L`` is the classifier.
    outputs : (N, C) array, optional
        Network outputs (default ``W_L h``).
    weight_decay, kappa, n_samples, Lambda : optional
        The objective's constants (N defaults to the number of rows).
    initial_params : sequence of arrays, optional
        The weights at initialisation, for the conservation lines when lambda = 0.

    Returns
    -------
    SnapshotResult
        With ``result.theory`` set.
    """
    params = [
        _param(to_host(p, f"params/W{i + 1}"), f"params/W{i + 1}", f"W{i + 1}")
        for i, p in enumerate(params)
    ]
    prep = prepare(features, labels, weights=params[-1], outputs=outputs)
    meta = {
        "weight_decay": weight_decay,
        "kappa": kappa,
        "n_samples": prep.n_samples if n_samples is None else n_samples,
        "Lambda": Lambda,
    }
    passes = run_passes(prep, chunk_rows=chunk_rows, theory=True)
    res = build_result(
        prep,
        passes.first,
        passes.geom,
        passes.second,
        per_class=False,
        center="classes",
        ncc_label="own",
    )
    if initial_params:
        initial_params = [to_host(p, f"initial_params[{i}]") for i, p in enumerate(initial_params)]
    initial = (layer_norms_sq(initial_params), "initial_params") if initial_params else None
    constants = resolve_constants(meta, where="theory_arrays")
    res.theory = _diagnose(prep, res, passes.theory, constants, params, [], initial=initial)
    return res
