"""Analyse arrays, snapshots and dumps: dispatch the two passes to an engine, build results.

``analyze`` is the array-level entry point; ``analyze_snapshot`` and ``analyze_file`` do the
same for dumps. The rows are walked by an engine (:mod:`ncinspect.engines.local` by default):
pass 1 accumulates per-class sums, pass 2 the within-class, decision and output statistics
given the means. Both passes are needed for exact values: NCC decisions and centred
within-class scatter need the final class means before any row can be scored, and a one-pass
E[hh^T] - mu mu^T form loses every digit at strong collapse.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..arrays import to_host
from ..blas import one_blas_thread
from ..engines.local import (
    LocalEngine,
    Passes,
    Progress,
    expect,
    is_dask,
    plan_chunk_rows,
    run_passes,
)
from ..errors import UsageError, refuse_removed
from ..inputs import NO_CLASS_ORDER_ARRAYS, Prepared, prepare
from ..results.report import Report, SnapshotResult
from ..text import clip
from .bootstrap import check_bootstrap
from .build import (
    bootstrap_intervals,
    build_result,
    check_options,
    passes_result,
    prepare_snapshot,
)
from .file import FileRun, LatestArrays, snapshot_result
from .scores import check_alpha, id_scores_rider

__all__ = [
    "analyze",
    "analyze_snapshot",
    "analyze_file",
    "build_result",
    "check_options",
    "prepare_snapshot",
    "plan_chunk_rows",
    "run_passes",
    "LocalEngine",
]


@refuse_removed(ncc_means='pass ncc_centres= (an array of centres, or "own")')
def analyze(
    features: Any,
    labels: Any,
    *,
    weights: Any = None,
    bias: Any = None,
    outputs: Any = None,
    center: str = "classes",
    per_class: bool = False,
    ncc_centres: Any = None,
    class_names: Any = None,
    min_class_count: int = 1,
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    progress: Progress | None = None,
    engine: Any = None,
    loss: str | None = None,
    ood_features: Any = None,
    bootstrap: int | None = None,
    seed: int = 0,
    spectra: bool = False,
    nci_alpha: float = 0.0,
) -> SnapshotResult:
    """Every neural-collapse metric of spec/metrics.md for one set of features.

    Parameters
    ----------
    features : array-like (N, d)
        Last-layer features (float16/32/64 or ints; accumulated in float64).
    labels : array-like (N,) or (N, C)
        Integer or one-hot labels (label k is row k of ``weights``, in [0, C)) or string
        labels (matched by name to ``class_names``). Without weights (or outputs) the
        classes are the distinct label values in increasing order.
    weights, bias, outputs : array-like (C, d), (C,) and (N, C), optional
        The classifier (for NC3, NC4, SQI; rows without samples are absent classes, left
        out of the class-level metrics) and outputs for SQI (default ``W h + b``).
    center, per_class : optional
        Global mean: mean of class means ("classes", default, as Papyan et al.) or sample
        mean ("samples"); whether to return per-class values too.
    ncc_centres : array-like (C, d) or "own", optional
        Class centres for the NCC decisions (e.g. train means for test features); the
        result's ``ncc_centres`` then says "given". Default (None or "own"): each class's own
        mean.
    class_names, min_class_count : optional
        The class order (name of each row of ``weights``): needed for string labels with a
        classifier (else every W-dependent metric is null); classes with fewer samples than
        ``min_class_count`` are treated as absent (their samples left out).
    chunk_rows, memory_limit, progress, engine : optional
        Rows per chunk or a memory budget in bytes; a callable told the rows done after
        each chunk; where the passes run (a Dask array input selects
        :class:`ncinspect.engines.dask.DaskEngine`, with its chunks).
    loss, ood_features, nci_alpha : optional
        The training loss (metadata ``loss``: shows the square-loss section or not); OOD
        features (M, d), or a dict of named sets, for the nc5 keys and the OOD scores'
        ``ood_auroc_*``/``ood_fpr95_*`` (``nci_alpha``: the alpha of ``nci``, default 0).
    bootstrap, seed, spectra : optional
        B within-class replicates (seeded) for 95% percentile intervals of every metric
        (``result.bootstrap``; :mod:`ncinspect.analysis.bootstrap`); ``spectra``: also the spectral
        metrics (d x d sums in pass 2, null beyond the memory budget).

    Returns
    -------
    SnapshotResult
        ``result.metrics[key]`` for every key; ``result.warnings`` says why any is None.
    """
    check_options(center, min_class_count, chunk_rows=chunk_rows, memory_limit=memory_limit)
    check_bootstrap(bootstrap, seed)
    engine, prep = _prepared(engine, features, labels, weights, bias, outputs, class_names)
    centres = _given_centres(ncc_centres)
    options = dict(chunk_rows=chunk_rows, memory_limit=memory_limit, engine=engine)
    options["spectra"] = spectra
    if ood_features is not None:  # the ID rows' OOD scores ride pass 2
        options["riders"] = id_scores_rider(check_alpha(nci_alpha))
    res, ids = _arrays_result(
        prep, centres, per_class, center, min_class_count, progress=progress, **options
    )
    opts = dict(prep=prep, nci_alpha=nci_alpha, ids=ids)
    _add_extras(res, loss, ood_features, chunk_rows, engine, **opts)
    if bootstrap is not None:
        res.bootstrap = bootstrap_intervals(
            prep, res, centres, center, min_class_count, bootstrap, seed, memory_limit
        )
    return res


def _prepared(engine, features, labels, weights, bias, outputs, class_names):
    """The engine for these arrays and the validated inputs as it reads them."""
    engine, features, labels, outputs = _engine_for(engine, features, labels, outputs)
    prep = _prepare_arrays(
        features, labels, weights=weights, bias=bias, outputs=outputs, class_names=class_names
    )
    return engine, prep


def _prepare_arrays(features: Any, labels: Any, **kw: Any) -> Prepared:
    """:func:`prepare` for arrays in memory: string labels without a class order point to
    ``class_names=`` (no dump to record them in)."""
    return prepare(features, labels, no_order_reason=NO_CLASS_ORDER_ARRAYS, **kw)


def _given_centres(ncc_centres: Any) -> np.ndarray | None:
    """The NCC centres given to :func:`analyze`, on the host, or None ("own"): each class's
    own mean."""
    if ncc_centres is None or (isinstance(ncc_centres, str) and ncc_centres == "own"):
        return None
    if isinstance(ncc_centres, str):
        raise UsageError(
            f"analyze(ncc_centres=) takes an array of centres or 'own', got {ncc_centres!r} "
            "('train' needs a dump: analyze_file(path, ncc_centres='train'))"
        )
    return to_host(ncc_centres, "ncc_centres")


def _arrays_result(
    prep: Prepared, centres, per_class: bool, center: str, min_class_count: int, **options
) -> tuple[SnapshotResult, Any]:
    """Both passes over checked inputs and their result; NCC scores against ``centres``
    ("given"), or the rows' own class means when None ("own"). With ``riders`` (the ID
    rows' OOD scores), also their statistic (else None)."""
    expect(options["progress"], 2 * prep.n_samples, 2 * prep.features.nbytes)
    p = run_passes(
        prep, center=center, ncc_centres=centres, min_class_count=min_class_count, **options
    )
    label = "own" if centres is None else "given"
    res = passes_result(
        prep,
        p,
        per_class=per_class,
        center=center,
        ncc_label=label,
        spectra=bool(options.get("spectra")),
        engine=options.get("engine"),
    )
    return res, (p.riders[0] if p.riders else None)


def _add_extras(
    res: SnapshotResult,
    loss,
    ood_features,
    chunk_rows,
    engine,
    *,
    prep=None,
    nci_alpha=0.0,
    ids=None,
) -> None:
    """The recorded loss and the nc5 keys (and OOD scores) of OOD feature sets, when given."""
    if loss is not None:
        res.meta["loss"] = str(loss)
    if ood_features is not None:
        from .ood import add_nc5_arrays

        add_nc5_arrays(
            res,
            ood_features,
            chunk_rows=chunk_rows,
            engine=engine,
            prep=prep,
            alpha=nci_alpha,
            ids=ids,
        )


def _engine_for(engine: Any, features: Any, labels: Any, outputs: Any):
    """The engine for these arrays (Dask arrays select the Dask engine) and the arrays as
    it reads them."""
    if engine is None and any(is_dask(v) for v in (features, labels, outputs)):
        from ..engines.dask import DaskEngine

        engine = DaskEngine()
    if engine is not None and hasattr(engine, "wrap"):
        features, labels, outputs = engine.wrap(features, labels, outputs)
    return engine, features, labels, outputs


def analyze_snapshot(
    snap,
    *,
    center: str = "classes",
    per_class: bool = False,
    ncc_centres: np.ndarray | None = None,
    ncc_label: str = "own",
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    progress: Progress | None = None,
    prepared: Prepared | None = None,
    engine: Any = None,
    class_names: Any = None,
    min_class_count: int = 1,
    passes: Passes | None = None,
    spectra: bool = False,
) -> SnapshotResult:
    """:func:`analyze` for a :class:`~ncinspect.dump.Snapshot` (file must be open).

    ``ncc_centres`` are the class centres NCC scores against (default the snapshot's own
    class means), named ``ncc_label`` in the result; ``passes`` are the statistics when
    already computed (by :func:`~ncinspect.engines.local.run_passes` with these options);
    ``spectra`` adds the spectral metrics (see :func:`analyze`).
    """
    check_options(center, min_class_count, chunk_rows=chunk_rows, memory_limit=memory_limit)
    extra = {"spectra": True} if spectra else {}
    return snapshot_result(
        snap,
        prepared or prepare_snapshot(snap, class_names),
        passes,
        center=center,
        per_class=per_class,
        ncc_centres=ncc_centres,
        ncc_label=ncc_label,
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        progress=progress,
        engine=engine,
        min_class_count=min_class_count,
        **extra,
    )


@refuse_removed(ncc_means='pass ncc_centres="own" or "train"')
def analyze_file(
    path: str | os.PathLike,
    *,
    snapshot: str | Any | None = None,
    keys: dict[str, str] | None = None,
    center: str = "classes",
    per_class: bool = False,
    ncc_centres: str = "own",
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    progress: Progress | None = None,
    engine: Any = None,
    allow_external: bool = False,
    class_names: Any = None,
    min_class_count: int = 1,
    bootstrap: int | None = None,
    seed: int = 0,
    spectra: bool = False,
    nci_alpha: float = 0.0,
    arrays: str = "all",
) -> Report:
    """Analyse every snapshot of a dump (HDF5 or NPZ); one result per snapshot.

    Parameters
    ----------
    path : str, PathLike or Dump
        The dump, or one already open (:func:`~ncinspect.dump.open_dump`: its ``keys``,
        ``allow_external`` and memory budget are those it was opened with; it stays open), so
        that a caller reading the file again (the samples of a figure) walks it once.
    snapshot : str or callable, optional
        Glob on snapshot paths (comma-separated for several); default all. Or a function of
        the open :class:`~ncinspect.dump.Dump` returning the snapshots to analyse, in the
        dump's order (``ncinspect check`` chooses its snapshots so, on the one open file).
    keys : dict, optional
        Explicit array names by role, e.g. ``{"features": "feats_l4"}``.
    ncc_centres : {"own", "train"}
        For a non-train split, score NCC with the class means of the train snapshot of the
        same epoch and layer when the file has one (the literature's convention), or with
        the split's own means.
    engine : object, optional
        Where the passes run: in this process (default) or, e.g.,
        ``ncinspect.engines.dask.DaskEngine(scheduler="tcp://host:8786")``.
    allow_external : bool
        Follow HDF5 external links, external storage and virtual datasets (default: refuse
        them, see :func:`~ncinspect.dump.open_dump`).
    class_names : list, optional
        The class order (name of each row of W) for every snapshot; default the dump's
        ``class_names`` array or metadata.
    bootstrap, seed : int, optional
        Percentile intervals for every metric of each classification snapshot from
        ``bootstrap`` within-class replicates (see :func:`analyze`); NCC centres taken from
        the train split stay fixed. Regression and OOD snapshots get none.
    arrays : {"all", "last"}
        Which results keep their class-level arrays (``result.arrays``: the class means, W,
        the between-class basis; several C x d arrays each): every one (default), or only
        the last epoch of each (task, split, layer) and those without an epoch, the ones a
        figure of the report can show; the others are released
        (:meth:`~ncinspect.results.parts.ResultArrays.release`), so that a file of many
        snapshots of a large head does not hold them all (the CLI's choice).
    Other parameters are those of :func:`analyze` (``spectra`` for each classification
    snapshot, ``nci_alpha`` for the OOD scores of a file with OOD splits).
    """
    from ..dump import Dump, opened

    check_options(center, min_class_count, chunk_rows=chunk_rows, memory_limit=memory_limit)
    check_bootstrap(bootstrap, seed)
    if ncc_centres not in ("train", "own"):
        raise UsageError(f"ncc_centres must be 'own' or 'train', got {ncc_centres!r}")
    if arrays not in ("all", "last"):
        raise UsageError(f"arrays must be 'all' or 'last', got {clip(repr(arrays))}")
    options = dict(
        center=center,
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        progress=progress,
        engine=engine,
        min_class_count=min_class_count,
        class_names=class_names,
        bootstrap=(bootstrap, seed),
        nci_alpha=float(nci_alpha),
        **({"spectra": True} if spectra else {}),
    )
    if keys and isinstance(path, Dump):  # keys name arrays when a file is opened
        raise UsageError("keys apply when a dump is opened: give them to open_dump")
    with opened(path, keys=keys, allow_external=allow_external, memory_limit=memory_limit) as dump:
        run = FileRun(dump, snapshot, ncc_centres, options)
        run.announce()
        kept = LatestArrays() if arrays == "last" else None
        results = []
        with one_blas_thread():  # what every step caps to: set once for the run
            for res in run.results(per_class, arrays):
                results.append(res)
                if kept is not None:
                    kept.add(res)
    precision = getattr(engine, "precision", "float64")
    return Report(dump.path, results, center=center, ncc_centres=ncc_centres, precision=precision)
