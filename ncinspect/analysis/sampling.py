"""Read a reproducible subsample of a snapshot's rows for figures (projection, SQI outputs).

The metrics never need this: they come from the full passes of :mod:`ncinspect.analysis`.
Figures that show individual samples (features projected on the between-class directions,
the distribution of outputs) use a seeded subsample, read in row chunks by
:func:`ncinspect.engines.local.read_rows` and reduced with the pure functions of
:mod:`ncinspect.analysis.projection`. The arrays are set on ``SnapshotResult.arrays`` (its
``sample_*`` fields, see :data:`SAMPLE_KEYS`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import numpy as np

from ..engines.local import plan_chunk_rows, read_rows
from ..results.report import SnapshotResult
from .api import prepare_snapshot
from .projection import output_split, project, subsample_indices

__all__ = ["SAMPLE_KEYS", "DEFAULT_SAMPLE_SIZE", "sample_arrays", "sample_snapshot", "sample_file"]

DEFAULT_SAMPLE_SIZE = 2000  #: rows drawn for per-sample figures

#: Keys added to ``SnapshotResult.arrays`` by :func:`sample_snapshot`.
SAMPLE_KEYS = (
    "sample_index",  # (n,) row indices in the snapshot, increasing
    "sample_codes",  # (n,) class codes 0..C-1
    "sample_proj",  # (n, k) coordinates along the k <= 2 leading between-class directions
    "sample_true_out",  # (n,) f_{y_i}(x_i)            (only with outputs or weights)
    "sample_wrong_out",  # (n (C-1),) f_c(x_i), c != y_i (only with outputs or weights)
)


def sample_arrays(
    features: np.ndarray,
    codes: np.ndarray,
    result: SnapshotResult,
    *,
    outputs: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The ``sample_*`` arrays from subsampled rows and the geometry in ``result.arrays``.

    Parameters
    ----------
    features : (n, d) array
        The subsampled feature rows.
    codes : (n,) int array
        Their class codes: rows of W (``result.arrays.class_index`` maps the present
        classes, in the order of ``result.class_names``, to them).
    result : SnapshotResult
        The analysis of the snapshot (its ``arrays`` give mu_G, the basis, W and b).
    outputs : (n, C) array, optional
        Stored network outputs of these rows; default ``W h + b`` when W is known.

    Returns
    -------
    dict
        ``sample_codes`` (the position of each row's class in ``result.class_names``, -1
        for a class left out as absent), ``sample_proj`` and, when outputs are available,
        ``sample_true_out`` and ``sample_wrong_out`` (over every output).
    """
    arrs = result.arrays
    h = np.asarray(features, dtype=np.float64)
    codes = np.asarray(codes, dtype=np.int64)
    basis = np.asarray(arrs.basis)[:2]
    index = arrs.class_index
    if index is None:
        positions = codes
    else:
        lut = np.full(int(max(codes.max(initial=-1), max(index, default=-1))) + 1, -1, np.int64)
        lut[np.asarray(index, dtype=np.int64)] = np.arange(len(index))
        positions = lut[codes]
    out = {
        "sample_codes": positions,
        "sample_proj": project(h, basis, origin=arrs.global_mean),
    }
    w = arrs.weights if arrs.weights_all is None else arrs.weights_all
    b = arrs.bias if arrs.bias_all is None else arrs.bias_all
    if outputs is None and w is not None:
        outputs = h @ np.asarray(w).T
        if b is not None:
            outputs = outputs + np.asarray(b)
    if outputs is not None:
        out["sample_true_out"], out["sample_wrong_out"] = output_split(outputs, codes)
    return out


def sample_snapshot(
    snap,
    result: SnapshotResult,
    *,
    size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    chunk_rows: int | None = None,
    class_names=None,
) -> dict[str, np.ndarray]:
    """Draw ``size`` rows of ``snap`` with a seeded generator and reduce them for figures.

    Parameters
    ----------
    snap : Snapshot
        The snapshot ``result`` was computed from (its dump must be open).
    result : SnapshotResult
        Its analysis.
    size : int
        Rows drawn (all rows when the snapshot has fewer).
    seed : int
        Seed of the subsample; the same seed gives the same rows and the same figure.
    chunk_rows : int, optional
        Rows per read (default from :func:`ncinspect.engines.local.plan_chunk_rows`).

    Returns
    -------
    dict
        The :data:`SAMPLE_KEYS` arrays (outputs keys only when outputs or W are known).
    """
    prep = prepare_snapshot(snap, class_names)
    rows = chunk_rows or plan_chunk_rows(prep.n_features, prep.n_classes)
    index = subsample_indices(prep.n_samples, size, seed=seed)
    h = read_rows(prep.features, index, rows)
    outs = None if prep.outputs is None else read_rows(prep.outputs, index, rows)
    arrays = sample_arrays(h, prep.codes[index], result, outputs=outs)
    arrays["sample_index"] = index
    return arrays


def sample_file(
    path: str | os.PathLike,
    results: Iterable[SnapshotResult],
    *,
    keys: dict[str, str] | None = None,
    size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
    allow_external: bool = False,
    class_names=None,
) -> None:
    """Add the ``sample_*`` arrays to each of ``results`` (snapshots of the dump ``path``, or
    of an open :class:`~ncinspect.dump.Dump`, which stays open).

    The dump is opened once, read-only; each result is matched to its snapshot by name.
    """
    from ..dump import opened

    results = list(results)
    if not results:
        return
    with opened(path, keys=keys, allow_external=allow_external) as dump:
        by_name = {s.name: s for s in dump.snapshots}
        for res in results:
            res.arrays.update(
                sample_snapshot(
                    by_name[res.name], res, size=size, seed=seed, class_names=class_names
                )
            )
