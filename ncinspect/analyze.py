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

from .arrays import to_host
from .bootstrap import bootstrap_prepared, check_bootstrap
from .engines.local import (
    LocalEngine,
    Progress,
    expect,
    is_dask,
    plan_chunk_rows,
    plan_for,
    run_passes,
)
from .errors import InvalidDataError, UsageError
from .inputs import Prepared, prepare
from .metrics import compute_metrics
from .report import Report, SnapshotResult
from .stats import FirstPass, Geometry, SecondPass

__all__ = [
    "analyze",
    "analyze_snapshot",
    "analyze_file",
    "plan_chunk_rows",
    "run_passes",
    "LocalEngine",
]


def build_result(
    prep: Prepared,
    first: FirstPass,
    geom: Geometry,
    second: SecondPass,
    *,
    per_class: bool,
    center: str,
    ncc_label: str,
    extra_warnings: list[str] = (),
) -> SnapshotResult:
    """The :class:`SnapshotResult` of merged pass statistics (used by the engines' callers
    and by :class:`ncinspect.Meter`)."""
    from .engines.threads import one_blas_thread

    with one_blas_thread():
        values = compute_metrics(
            first, second, geom, per_class=per_class, classifier_reason=prep.classifier_reason
        )
    table = values.per_class
    rows = np.flatnonzero(geom.present)  # the present classes: what the result describes
    names = [prep.class_names[c] for c in rows.tolist()]
    if table is not None:
        table = [{"class": name, **row} for name, row in zip(names, table, strict=True)]
    counts = first.counts[rows]
    within = geom.squared(second.proj_sq) / max(int(counts.sum()), 1)
    w, b = geom.weights, geom.bias
    return SnapshotResult(
        name="/",
        n_samples=prep.n_samples,
        n_features=prep.n_features,
        n_classes=int(rows.size),
        n_classes_total=int(prep.n_classes_total or prep.n_classes),
        metrics=values.values,
        null_reasons=values.null_reasons,
        warnings=[*prep.notes, *extra_warnings, *values.warnings],
        per_class=table,
        dtype=str(prep.features.dtype),
        class_names=names,
        class_counts=counts.tolist(),
        center=center,
        ncc_means=ncc_label,
        arrays={
            "means": geom.means[rows],
            "global_mean": geom.global_mean,
            "weights": None if w is None else w[rows],
            "bias": None if b is None else b[rows],
            "between_eigvals": geom.squared(geom.eigvals) / max(rows.size, 1),  # of Sigma_B
            "within_along": within,  # v_k^T Sigma_W v_k
            "basis": geom.basis,
            "class_var": geom.squared(second.class_sq[rows]) / np.maximum(counts, 1),
            # the classifier's code space: class k is row k of W (absent rows included)
            "class_index": rows,
            "weights_all": w,
            "bias_all": b,
            "means_all": geom.means,
            "class_counts_all": first.counts,
        },
    )


def _check_center(center: str) -> None:
    if center not in ("classes", "samples"):
        raise UsageError(f"center must be 'classes' or 'samples', got {center!r}")


def analyze(
    features: Any,
    labels: Any,
    *,
    weights: Any = None,
    bias: Any = None,
    outputs: Any = None,
    center: str = "classes",
    per_class: bool = False,
    ncc_means: Any = None,
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
) -> SnapshotResult:
    """Every neural-collapse metric of spec/metrics.md for one set of features.

    Parameters
    ----------
    features : array-like (N, d)
        Last-layer features (float16/32/64 or ints; accumulated in float64).
    labels : array-like (N,) or (N, C)
        Integer, string or one-hot labels. Integer labels (one-hot columns) are row indices
        of ``weights``: label k is row k, and every label must lie in [0, C). String labels
        are matched by name to ``class_names``. Without weights (or outputs) the classes are
        the distinct label values in increasing order.
    weights : array-like (C, d), optional
        Classifier rows (needed for NC3, NC4, SQI). Rows without samples are absent
        classes: left out of the class-level metrics, still taking decisions.
    bias : array-like (C,), optional
    outputs : array-like (N, C), optional
        Network outputs for the SQI section (default ``W h + b``).
    center : {"classes", "samples"}
        Global mean: mean of class means (default, as Papyan et al.) or sample mean.
    per_class : bool
        Also return per-class values.
    ncc_means : array-like (C, d), optional
        Class centres for the NCC decisions (e.g. train means for test features).
    class_names : list, optional
        The class order: the name of each row of ``weights``. Needed when labels are
        strings and a classifier is given (else every W-dependent metric is null); with
        integer labels, the names reported for the classes.
    min_class_count : int
        Classes with fewer samples are treated as absent (their samples left out).
    chunk_rows, memory_limit : int, optional
        Rows per chunk, or a memory budget in bytes from which it is derived.
    progress : callable, optional
        Called with the number of rows done after each chunk of each pass.
    engine : object, optional
        Where the passes run (default in this process). A Dask array as ``features`` (or
        ``outputs``) selects :class:`ncinspect.engines.dask.DaskEngine`, whose chunks are
        then the Dask chunks.
    loss : str, optional
        The loss the model was trained with (``"square"``, ``"cross_entropy"``, ...), kept
        as metadata ``loss``: it decides whether the square-loss section (``sqi_*``, ``mse``,
        ``interpolates``) is shown in tables and plots (the values are always computed).
    ood_features : array-like (M, d) or dict of them, optional
        Features of out-of-distribution data for ``nc5_ood_orthogonality``; a dict
        ``{name: array}`` gives ``nc5_ood_orthogonality_<name>`` per set (name ``"ood"``
        gives the plain key), as for dumps with ``ood_<name>`` splits.
    bootstrap : int, optional
        B: also give a 95% percentile interval for every metric from B replicates that
        resample the samples within each class (``result.bootstrap``; see
        :mod:`ncinspect.bootstrap`). Each replicate costs about one analysis. Default off.
    seed : int
        Seed of the ``numpy.random.Generator`` drawing the bootstrap replicates.

    Returns
    -------
    SnapshotResult
        ``result.metrics[key]`` for every key; ``result.warnings`` says why any is None.

    Examples
    --------
    >>> res = ncinspect.analyze(H, y, weights=W)       # doctest: +SKIP
    >>> res.metrics["nc1"]                              # doctest: +SKIP
    """
    _check_center(center)
    check_bootstrap(bootstrap, seed)
    if engine is None and any(is_dask(v) for v in (features, labels, outputs)):
        from .engines.dask import DaskEngine

        engine = DaskEngine()
    if engine is not None and hasattr(engine, "wrap"):
        features, labels, outputs = engine.wrap(features, labels, outputs)
    _check_min_count(min_class_count)
    prep = prepare(
        features, labels, weights=weights, bias=bias, outputs=outputs, class_names=class_names
    )
    if ncc_means is not None:
        ncc_means = to_host(ncc_means, "ncc_means")
    expect(progress, 2 * prep.n_samples, 2 * prep.features.nbytes)
    first, geom, second = run_passes(
        prep,
        center=center,
        ncc_means=ncc_means,
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        progress=progress,
        engine=engine,
        min_class_count=min_class_count,
    )
    res = build_result(
        prep,
        first,
        geom,
        second,
        per_class=per_class,
        center=center,
        ncc_label="own" if ncc_means is None else "given",
    )
    if loss is not None:
        res.meta["loss"] = str(loss)
    if ood_features is not None:
        from .analyze_ext import add_nc5_arrays

        add_nc5_arrays(res, ood_features, chunk_rows=chunk_rows, engine=engine)
    if bootstrap is not None:
        res.bootstrap = bootstrap_prepared(
            prep,
            _replicate_metrics(center, ncc_means, min_class_count),
            replicates=bootstrap,
            seed=seed,
            metric_keys=res.metric_keys(),
            memory_limit=memory_limit,
        )
    return res


def _replicate_metrics(center: str, ncc_means, min_class_count: int):
    """The metrics of one bootstrap replicate (in memory, this process): both passes with
    the point estimate's conventions, NCC centres given from elsewhere held fixed."""

    def metrics_of(rep: Prepared) -> dict[str, Any]:
        first, geom, second = run_passes(
            rep, center=center, ncc_means=ncc_means, min_class_count=min_class_count
        )
        res = build_result(
            rep, first, geom, second, per_class=False, center=center, ncc_label="bootstrap"
        )
        return res.metrics

    return metrics_of


def prepare_snapshot(snap, class_names: Any = None) -> Prepared:
    """Validated inputs of a :class:`~ncinspect.dump.Snapshot`.

    The class order is ``class_names`` when given, else the snapshot's ``class_names``
    array (inherited like labels), else its ``class_names`` metadata.
    """
    where = "class_names"
    if class_names is None and getattr(snap, "class_names", None) is not None:
        src = snap.class_names
        if len(src.shape) != 1:
            raise InvalidDataError(
                f"{src.where}: class_names must be 1-D (one name per row of W), got {src.shape}"
            )
        class_names, where = src.read_all(), src.where
    elif class_names is None:
        meta = snap.meta.get("class_names")
        if isinstance(meta, list):
            class_names, where = meta, f"{snap.file}:{snap.name} metadata class_names"
    return prepare(
        snap.features,
        snap.labels,
        weights=snap.weights,
        bias=snap.bias,
        outputs=snap.outputs,
        class_names=class_names,
        class_names_where=where,
    )


def _check_min_count(k: Any) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"min_class_count must be an integer >= 1, got {k!r}")


def analyze_snapshot(
    snap,
    *,
    center: str = "classes",
    per_class: bool = False,
    ncc_means: np.ndarray | None = None,
    ncc_label: str = "own",
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    progress: Progress | None = None,
    prepared: Prepared | None = None,
    engine: Any = None,
    class_names: Any = None,
    min_class_count: int = 1,
) -> SnapshotResult:
    """:func:`analyze` for a :class:`~ncinspect.dump.Snapshot` (file must be open)."""
    _check_center(center)
    _check_min_count(min_class_count)
    prep = prepared or prepare_snapshot(snap, class_names)
    first, geom, second = run_passes(
        prep,
        center=center,
        ncc_means=ncc_means,
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        progress=progress,
        engine=engine,
        min_class_count=min_class_count,
    )
    res = build_result(
        prep,
        first,
        geom,
        second,
        per_class=per_class,
        center=center,
        ncc_label=ncc_label,
        extra_warnings=_notes_for(snap),
    )
    res.name, res.epoch, res.split, res.layer = snap.name, snap.epoch, snap.split, snap.layer
    res.meta, res.file = dict(snap.meta), snap.file
    return res


def _notes_for(snap) -> list[str]:
    """The reader's notes (e.g. a compressed NPZ member read whole) about this snapshot's arrays."""
    wheres = [
        s.where
        for s in (snap.features, snap.labels, snap.weights, snap.bias, snap.outputs)
        if s is not None
    ]
    whole_file = f"{snap.file}: "
    return [
        n
        for n in dict.fromkeys(snap.notes)
        if n.startswith(whole_file) or any(n.startswith(w) for w in wheres)
    ]


def _train_partner(snap, snaps):
    """The train snapshot of the same epoch and layer as a non-train ``snap`` (or None)."""
    if snap.split in (None, "train"):
        return None
    for other in snaps:
        if (
            other is not snap
            and other.split == "train"
            and other.epoch == snap.epoch
            and other.layer == snap.layer
        ):
            return other
    return None


def analyze_file(
    path: str | os.PathLike,
    *,
    snapshot: str | None = None,
    keys: dict[str, str] | None = None,
    center: str = "classes",
    per_class: bool = False,
    ncc_means: str = "own",
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    progress: Progress | None = None,
    engine: Any = None,
    allow_external: bool = False,
    class_names: Any = None,
    min_class_count: int = 1,
    bootstrap: int | None = None,
    seed: int = 0,
) -> Report:
    """Analyse every snapshot of a dump (HDF5 or NPZ); one result per snapshot.

    Parameters
    ----------
    path : str or PathLike
        The dump.
    snapshot : str, optional
        Glob on snapshot paths (comma-separated for several); default all.
    keys : dict, optional
        Explicit array names by role, e.g. ``{"features": "feats_l4"}``.
    ncc_means : {"train", "own"}
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
    Other parameters are those of :func:`analyze`.
    """
    from .dump import open_dump

    _check_center(center)
    _check_min_count(min_class_count)
    check_bootstrap(bootstrap, seed)
    if ncc_means not in ("train", "own"):
        raise UsageError(f"ncc_means must be 'train' or 'own', got {ncc_means!r}")
    from . import analyze_ext as ext

    results = []
    with open_dump(
        path, keys=keys, allow_external=allow_external, memory_limit=memory_limit
    ) as dump:
        selected = dump.select(snapshot)
        cache: dict[str, tuple[Prepared, FirstPass]] = {}
        kinds = {s.name: ext.snapshot_kind(s) for s in dump.snapshots}
        partners = {
            s.name: _train_partner(s, dump.snapshots) if ncc_means == "train" else None
            for s in selected
        }
        partners = {  # only classification snapshots use (and have) classification partners
            k: p if p and kinds[p.name] == kinds[k] == "classification" else None
            for k, p in partners.items()
        }
        oods = ext.OODSets(dump.snapshots, kinds, selected, chunk_rows, memory_limit, engine)
        # rows read: two passes per selected snapshot (one per OOD set), one (pass 1) per
        # train partner, one per OOD set paired with a selected snapshot
        work = [
            *(s for s in selected if kinds[s.name] != "ood"),
            *selected,
            *{p.name: p for p in partners.values() if p}.values(),
            *oods.unselected_work(),
        ]
        expect(
            progress,
            sum((s.features.shape or (0,))[0] for s in work),
            sum(s.features.nbytes for s in work),
        )

        def first_of(snap) -> tuple[Prepared, FirstPass]:
            if snap.name not in cache:
                prep = prepare_snapshot(snap, class_names)
                rows = chunk_rows or plan_for(prep, memory_limit)
                first = (engine or LocalEngine()).first_pass(prep, rows, progress)
                cache[snap.name] = (prep, first)
            return cache[snap.name]

        for snap in selected:
            if kinds[snap.name] == "regression":
                results.append(
                    ext.analyze_regression_snapshot(
                        snap,
                        chunk_rows=chunk_rows,
                        memory_limit=memory_limit,
                        progress=progress,
                        engine=engine,
                    )
                )
                if bootstrap is not None:
                    results[-1].warnings.append(
                        "bootstrap: no intervals for a regression snapshot (it has no classes "
                        "to resample within)"
                    )
                continue
            if kinds[snap.name] == "ood":
                results.append(oods.result(snap, progress))
                continue
            partner = partners[snap.name]
            centres, label, extra = None, "own", []
            if partner is not None:
                pprep, pfirst = first_of(partner)
                prep = prepare_snapshot(snap, class_names)
                if list(pprep.class_names) == list(prep.class_names):
                    centres = pfirst.class_means()
                    label = f"train:{partner.name}"
                else:
                    extra.append(
                        f"NCC uses this split's own means: {partner.name} has other classes"
                    )
            res = analyze_snapshot(
                snap,
                center=center,
                per_class=per_class,
                ncc_means=centres,
                ncc_label=label,
                chunk_rows=chunk_rows,
                memory_limit=memory_limit,
                progress=progress,
                engine=engine,
                class_names=class_names,
                min_class_count=min_class_count,
            )
            res.warnings[:0] = extra
            oods.add_nc5(res, snap, progress)
            if bootstrap is not None:
                res.bootstrap = bootstrap_prepared(
                    prepare_snapshot(snap, class_names),
                    _replicate_metrics(center, centres, min_class_count),
                    replicates=bootstrap,
                    seed=seed,
                    metric_keys=res.metric_keys(),
                    memory_limit=memory_limit,
                )
            results.append(res)
    return Report(os.fspath(path), results, center=center, ncc_means=ncc_means)
