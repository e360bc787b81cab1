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

from .analyze_build import (
    bootstrap_intervals,
    build_result,
    check_options,
    notes_for,
    prepare_snapshot,
)
from .arrays import to_host
from .bootstrap import check_bootstrap
from .engines.local import (
    LocalEngine,
    Passes,
    Progress,
    expect,
    is_dask,
    plan_chunk_rows,
    plan_for,
    run_passes,
)
from .errors import UsageError
from .inputs import Prepared, prepare
from .report import Report, SnapshotResult
from .stats import FirstPass

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
        Integer or one-hot labels (label k is row k of ``weights``, in [0, C)) or string
        labels (matched by name to ``class_names``). Without weights (or outputs) the
        classes are the distinct label values in increasing order.
    weights, bias, outputs : array-like (C, d), (C,) and (N, C), optional
        The classifier (for NC3, NC4, SQI; rows without samples are absent classes, left
        out of the class-level metrics) and outputs for SQI (default ``W h + b``).
    center : {"classes", "samples"}
        Global mean: mean of class means (default, as Papyan et al.) or sample mean.
    per_class : bool
        Also return per-class values.
    ncc_means : array-like (C, d), optional
        Class centres for the NCC decisions (e.g. train means for test features).
    class_names : list, optional
        The class order (name of each row of ``weights``): needed for string labels with a
        classifier (else every W-dependent metric is null).
    min_class_count : int
        Classes with fewer samples are treated as absent (their samples left out).
    chunk_rows, memory_limit, progress, engine : optional
        Rows per chunk or a memory budget in bytes; a callable told the rows done after
        each chunk; where the passes run (a Dask array input selects
        :class:`ncinspect.engines.dask.DaskEngine`, with its chunks).
    loss, ood_features : optional
        The training loss (metadata ``loss``: shows the square-loss section or not); OOD
        features (M, d), or a dict of named sets, for the ``nc5_ood_orthogonality`` keys.
    bootstrap, seed : int, optional
        B within-class replicates (seeded) for 95% percentile intervals of every metric
        (``result.bootstrap``; :mod:`ncinspect.bootstrap`; each costs about one analysis).

    Returns
    -------
    SnapshotResult
        ``result.metrics[key]`` for every key; ``result.warnings`` says why any is None.
    """
    check_options(center, min_class_count)
    check_bootstrap(bootstrap, seed)
    engine, features, labels, outputs = _engine_for(engine, features, labels, outputs)
    prep = prepare(
        features, labels, weights=weights, bias=bias, outputs=outputs, class_names=class_names
    )
    centres = None if ncc_means is None else to_host(ncc_means, "ncc_means")
    options = dict(chunk_rows=chunk_rows, memory_limit=memory_limit, engine=engine)
    res = _arrays_result(
        prep, centres, per_class, center, min_class_count, progress=progress, **options
    )
    _add_extras(res, loss, ood_features, chunk_rows, engine)
    if bootstrap is not None:
        res.bootstrap = bootstrap_intervals(
            prep, res, centres, center, min_class_count, bootstrap, seed, memory_limit
        )
    return res


def _arrays_result(
    prep: Prepared, centres, per_class: bool, center: str, min_class_count: int, **options
) -> SnapshotResult:
    """Both passes over checked inputs and their result; NCC scores against ``centres``
    ("given"), or the rows' own class means when None ("own")."""
    expect(options["progress"], 2 * prep.n_samples, 2 * prep.features.nbytes)
    p = run_passes(
        prep, center=center, ncc_centres=centres, min_class_count=min_class_count, **options
    )
    label = "own" if centres is None else "given"
    return build_result(
        prep, p.first, p.geom, p.second, per_class=per_class, center=center, ncc_label=label
    )


def _add_extras(res: SnapshotResult, loss, ood_features, chunk_rows, engine) -> None:
    """The recorded loss and the nc5 keys of OOD feature sets, when given."""
    if loss is not None:
        res.meta["loss"] = str(loss)
    if ood_features is not None:
        from .analyze_ood import add_nc5_arrays

        add_nc5_arrays(res, ood_features, chunk_rows=chunk_rows, engine=engine)


def _engine_for(engine: Any, features: Any, labels: Any, outputs: Any):
    """The engine for these arrays (Dask arrays select the Dask engine) and the arrays as
    it reads them."""
    if engine is None and any(is_dask(v) for v in (features, labels, outputs)):
        from .engines.dask import DaskEngine

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
) -> SnapshotResult:
    """:func:`analyze` for a :class:`~ncinspect.dump.Snapshot` (file must be open).

    ``ncc_centres`` are the class centres NCC scores against (default the snapshot's own
    class means), named ``ncc_label`` in the result; ``passes`` are the statistics when
    already computed (by :func:`~ncinspect.engines.local.run_passes` with these options).
    """
    check_options(center, min_class_count)
    return _snapshot_result(
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
    )


def _snapshot_result(
    snap, prep: Prepared, passes: Passes | None, *, per_class, ncc_label, **options
) -> SnapshotResult:
    """The result of one snapshot (options already checked); runs the passes if needed."""
    p = passes or run_passes(prep, **options)
    res = build_result(
        prep,
        p.first,
        p.geom,
        p.second,
        per_class=per_class,
        center=options.get("center", "classes"),
        ncc_label=ncc_label,
        extra_warnings=notes_for(snap),
    )
    res.name, res.epoch, res.split, res.layer = snap.name, snap.epoch, snap.split, snap.layer
    res.meta, res.file = dict(snap.meta), snap.file
    return res


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


def _partners(selected, snaps, kinds: dict[str, str], ncc_means: str) -> dict[str, Any]:
    """The train partner of each selected snapshot (None: score NCC with its own means);
    only classification snapshots use (and have) classification partners."""
    found = {s.name: _train_partner(s, snaps) if ncc_means == "train" else None for s in selected}
    return {
        k: p if p and kinds[p.name] == kinds[k] == "classification" else None
        for k, p in found.items()
    }


class _FileRun:
    """One :func:`analyze_file` run over an open dump (options already checked)."""

    def __init__(self, dump, snapshot, ncc_means: str, options: dict[str, Any]):
        from . import analyze_ext as ext
        from .analyze_ood import OODSets

        self.ext, self.options = ext, options
        self.class_names = options.pop("class_names")
        self.bootstrap = options.pop("bootstrap")
        self.progress = options["progress"]
        self.selected = dump.select(snapshot)
        self.kinds = {s.name: ext.snapshot_kind(s) for s in dump.snapshots}
        self.partners = _partners(self.selected, dump.snapshots, self.kinds, ncc_means)
        self.oods = OODSets(
            dump.snapshots,
            self.kinds,
            self.selected,
            options["chunk_rows"],
            options["memory_limit"],
            options["engine"],
        )
        self.cache: dict[str, tuple[Prepared, FirstPass]] = {}

    def announce(self) -> None:
        """Tell the progress callback the rows to read: two passes per selected snapshot
        (one per OOD set), one (pass 1) per train partner, one per OOD set paired with a
        selected snapshot."""
        selected, kinds = self.selected, self.kinds
        work = [
            *(s for s in selected if kinds[s.name] != "ood"),
            *selected,
            *{p.name: p for p in self.partners.values() if p}.values(),
            *self.oods.unselected_work(),
        ]
        expect(
            self.progress,
            sum((s.features.shape or (0,))[0] for s in work),
            sum(s.features.nbytes for s in work),
        )

    def first_of(self, snap) -> tuple[Prepared, FirstPass]:
        """Inputs and pass 1 of a train partner (read once)."""
        if snap.name not in self.cache:
            prep = prepare_snapshot(snap, self.class_names)
            o = self.options
            rows = o["chunk_rows"] or plan_for(prep, o["memory_limit"])
            first = (o["engine"] or LocalEngine()).first_pass(prep, rows, self.progress)
            self.cache[snap.name] = (prep, first)
        return self.cache[snap.name]

    def result(self, snap, per_class: bool) -> SnapshotResult:
        o = self.options
        kind = self.kinds[snap.name]
        if kind == "regression":
            keep = ("chunk_rows", "memory_limit", "progress", "engine")
            res = self.ext.analyze_regression_snapshot(snap, **{k: o[k] for k in keep})
            if self.bootstrap[0] is not None:
                res.warnings.append(
                    "bootstrap: no intervals for a regression snapshot (it has no classes "
                    "to resample within)"
                )
            return res
        if kind == "ood":
            return self.oods.result(snap, self.progress)
        centres, label, extra = None, "own", []
        partner = self.partners[snap.name]
        if partner is not None:
            pprep, pfirst = self.first_of(partner)
        prep = prepare_snapshot(snap, self.class_names)
        if partner is not None:
            if list(pprep.class_names) == list(prep.class_names):
                centres, label = pfirst.class_means(), f"train:{partner.name}"
            else:
                extra.append(f"NCC uses this split's own means: {partner.name} has other classes")
        res = _snapshot_result(
            snap, prep, None, per_class=per_class, ncc_label=label, ncc_centres=centres, **o
        )
        res.warnings[:0] = extra
        self.oods.add_nc5(res, snap, self.progress)
        replicates, seed = self.bootstrap
        if replicates is not None:
            c, k, m = o["center"], o["min_class_count"], o["memory_limit"]
            res.bootstrap = bootstrap_intervals(prep, res, centres, c, k, replicates, seed, m)
        return res


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

    check_options(center, min_class_count)
    check_bootstrap(bootstrap, seed)
    if ncc_means not in ("train", "own"):
        raise UsageError(f"ncc_means must be 'train' or 'own', got {ncc_means!r}")
    options = dict(
        center=center,
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        progress=progress,
        engine=engine,
        min_class_count=min_class_count,
        class_names=class_names,
        bootstrap=(bootstrap, seed),
    )
    with open_dump(
        path, keys=keys, allow_external=allow_external, memory_limit=memory_limit
    ) as dump:
        run = _FileRun(dump, snapshot, ncc_means, options)
        run.announce()
        results = [run.result(snap, per_class) for snap in run.selected]
    return Report(os.fspath(path), results, center=center, ncc_means=ncc_means)
