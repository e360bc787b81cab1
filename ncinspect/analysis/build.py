"""Build results from merged pass statistics, and the validated inputs of a snapshot.

What :mod:`ncinspect.analysis` and :class:`ncinspect.Meter` share: the options check done
once at each public entry, the inputs of a :class:`~ncinspect.dump.Snapshot`, and the
:class:`~ncinspect.results.report.SnapshotResult` of pass 1, the geometry and pass 2.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from ..engines.local import Passes, run_passes
from ..engines.threads import Workers  # here, not per call: an import costs microseconds
from ..errors import InvalidDataError, UsageError
from ..inputs import Prepared, check_center, prepare
from ..metrics import compute_metrics
from ..results.parts import ResultArrays
from ..results.report import SnapshotResult
from ..stats.passes import FirstPass, Geometry, SecondPass
from ..text import clip
from .bootstrap import bootstrap_prepared

__all__ = [
    "add_spectra",
    "bootstrap_intervals",
    "replicate_metrics",
    "build_result",
    "check_center",
    "check_options",
    "notes_for",
    "passes_result",
    "prepare_snapshot",
    "result_arrays",
]


def check_options(
    center: str = "classes",
    min_class_count: Any = 1,
    *,
    chunk_rows: Any = None,
    memory_limit: Any = None,
) -> None:
    """Validate the options every analysis shares (once, at the public entry): a count that
    is not a positive integer (``chunk_rows=2.5``, ``memory_limit="1GB"``) is a UsageError
    naming it, not a TypeError from deep inside."""
    check_center(center)
    k = min_class_count
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise UsageError(f"min_class_count must be an integer >= 1, got {clip(repr(k))}")
    for name, value in (("chunk_rows", chunk_rows), ("memory_limit", memory_limit)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise UsageError(
                f"{name} must be an integer >= 1 (or None), got {clip(repr(value))}"
                + ("; memory_limit is a number of bytes" if name == "memory_limit" else "")
            )


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
    engine: Any = None,
    class_device: tuple[Any, Any] | None = None,
) -> SnapshotResult:
    """The :class:`SnapshotResult` of merged pass statistics (used by the engines' callers
    and by :class:`ncinspect.Meter`). The class-pair tiles of the metrics run on the
    ``threads`` of ``engine`` (every core when it names none; the values never depend on
    it), or on ``class_device = (xp, device)`` (a Meter's accelerator).
    """
    with Workers(getattr(engine, "threads", None)) as work:  # BLAS: one thread per worker
        values = compute_metrics(
            first,
            second,
            geom,
            per_class=per_class,
            classifier_reason=prep.classifier_reason,
            pair_map=work.map,
            class_device=class_device,
        )
    table = values.per_class
    rows = np.flatnonzero(geom.present)  # the present classes: what the result describes
    names = [prep.class_names[c] for c in rows.tolist()]
    if table is not None:
        table = [{"class": name, **row} for name, row in zip(names, table, strict=True)]
    counts = first.counts[rows]
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
        dtype=_dtype_name(prep.features.dtype),
        class_names=names,
        class_counts=counts.tolist(),
        center=center,
        ncc_centres=ncc_label,
        arrays=result_arrays(first, geom, second, rows),
    )


#: a dtype's name (str(dtype) costs microseconds: the same few dtypes, snapshot after snapshot)
_dtype_name = functools.lru_cache(maxsize=64)(str)


def passes_result(
    prep: Prepared,
    p: Passes,
    *,
    per_class: bool,
    center: str,
    ncc_label: str,
    spectra: bool = False,
    extra_warnings: list[str] = (),
    engine: Any = None,
) -> SnapshotResult:
    """:func:`build_result` of the merged passes ``p``, with the spectral keys when
    ``spectra`` was asked of them (:func:`add_spectra`)."""
    res = build_result(
        prep,
        p.first,
        p.geom,
        p.second,
        per_class=per_class,
        center=center,
        ncc_label=ncc_label,
        extra_warnings=extra_warnings,
        engine=engine,
    )
    if spectra:
        add_spectra(res, p.spectra, p.geom, p.first, p.spectra_reason)
    return res


def add_spectra(res: SnapshotResult, spec, geom: Geometry, first: FirstPass, reason=None) -> None:
    """Put the spectral keys on ``res`` from the d x d sums ``spec`` (a
    :class:`~ncinspect.stats.spectra.SpectraPass`, or None: null with ``reason``)."""
    from ..engines.threads import one_blas_thread
    from ..metrics.nulls import MetricValues, null_warnings
    from ..metrics.spectra import SPECTRA_KEYS, spectral_metrics

    if spec is None:
        values = MetricValues.of_keys(SPECTRA_KEYS)
        values.set_all(SPECTRA_KEYS, None, reason or "the d x d sums were not run")
    else:
        rows = np.flatnonzero(geom.present)
        with one_blas_thread():
            values = spectral_metrics(
                spec.scatter,
                spec.gram,
                spec.count,
                geom.means[rows] / geom.scale,
                first.counts[rows],
                geom.centred[rows],
            )
    res.metrics.update(values.values)
    reasons = {k: values.null_reasons[k] for k in SPECTRA_KEYS if k in values.null_reasons}
    res.null_reasons.update(reasons)
    res.warnings.extend(null_warnings(reasons))


def result_arrays(
    first: FirstPass, geom: Geometry, second: SecondPass, rows: np.ndarray
) -> ResultArrays:
    """The geometry of a result for figures; ``rows``: the present classes (rows of W)."""
    counts = first.counts[rows]
    w, b = geom.weights, geom.bias
    return ResultArrays(
        means=geom.means[rows],
        global_mean=geom.global_mean,
        weights=None if w is None else w[rows],
        bias=None if b is None else b[rows],
        between_eigvals=geom.squared(geom.eigvals) / max(rows.size, 1),  # of Sigma_B
        within_along=geom.squared(second.proj_sq) / max(int(counts.sum()), 1),  # v^T S_W v
        basis=geom.basis,
        class_var=geom.squared(second.class_sq[rows]) / np.maximum(counts, 1),
        # the classifier's code space: class k is row k of W (absent rows included)
        class_index=rows,
        weights_all=w,
        bias_all=b,
        means_all=geom.means,
        class_counts_all=first.counts,
    )


def prepare_snapshot(snap, class_names: Any = None, labels_seen: dict | None = None) -> Prepared:
    """Validated inputs of a :class:`~ncinspect.dump.Snapshot`.

    The class order is ``class_names`` when given, else the snapshot's ``class_names``
    array (inherited like labels), else its ``class_names`` metadata. ``labels_seen``: the
    labels read before in the same open dump (:func:`~ncinspect.inputs.prepare`).
    """
    where = "class_names"
    if class_names is None and getattr(snap, "class_names", None) is not None:
        src = snap.class_names
        if len(src.shape) != 1:
            raise InvalidDataError(
                f"{src.where}: class_names must be 1-D (one name per row of W), got {src.shape}"
            )
        class_names, where = src.read_all(), src.where
        _same_order(class_names, snap.meta.get("class_names"), where, snap)
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
        labels_seen=labels_seen,
    )


def _same_order(array: Any, meta: Any, where: str, snap) -> None:
    """Refuse a snapshot whose ``class_names`` array and ``class_names`` metadata both give
    the class order and disagree: the order says which row of W is which class, and the
    array silently won (a reversed order turned an accuracy of 1 into 1/3)."""
    if not isinstance(meta, list):
        return
    try:
        names = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.tolist()]
    except (UnicodeDecodeError, AttributeError):
        return  # the array's own check (prepare) says what is wrong with it
    if names != [str(v) for v in meta]:
        raise InvalidDataError(
            f"{where} ({clip(', '.join(names[:6]))}{', ...' if len(names) > 6 else ''}) and "
            f"{snap.file}:{snap.name} metadata class_names ({clip(', '.join(map(str, meta[:6])))}"
            f"{', ...' if len(meta) > 6 else ''}) give two class orders; ncinspect does not "
            "pick one: keep one of them"
        )


def notes_for(snap) -> list[str]:
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


def replicate_metrics(center: str, ncc_centres, min_class_count: int, spectra: bool = False):
    """The metrics of one bootstrap replicate (in memory, this process): both passes with
    the point estimate's conventions, NCC centres given from elsewhere held fixed (and the
    spectral metrics when the point estimate has them)."""

    def metrics_of(rep: Prepared) -> dict[str, Any]:
        opts = dict(ncc_centres=ncc_centres, min_class_count=min_class_count, spectra=spectra)
        p = run_passes(rep, center=center, **opts)
        kw = dict(per_class=False, center=center, ncc_label="bootstrap", spectra=spectra)
        return passes_result(rep, p, **kw).metrics

    return metrics_of


def bootstrap_intervals(
    prep, res, centres, center, min_class_count, replicates, seed, memory_limit
):
    """The bootstrap intervals of ``res`` (a classification result of ``prep``)."""
    return bootstrap_prepared(
        prep,
        replicate_metrics(center, centres, min_class_count, spectra="rankme" in res.metrics),
        replicates=replicates,
        seed=seed,
        metric_keys=res.metric_keys(),
        memory_limit=memory_limit,
    )
