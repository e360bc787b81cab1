"""Snapshots that are not classification snapshots: regression dumps and OOD features.

Regression lives here, OOD features in :mod:`ncinspect.analysis.ood`.

- A **regression snapshot** (float ``targets`` (N, t) that are not one-hot, or any targets
  when the metadata says ``task = "regression"``) reports nrc1-nrc3
  (:mod:`ncinspect.metrics.regression`) and nothing of NC1-NC4.
- An **OOD snapshot** (split ``ood`` / ``ood_<name>``) is reported without metrics of its
  own; its feature mean gives ``nc5_ood_orthogonality`` on the in-distribution snapshots of
  the same epoch and layer (:mod:`ncinspect.metrics.ood`).

Rows are walked by the engine (``engine.run`` of the regression passes of
:mod:`ncinspect.engines.passes`: in this process, on threads, or on Dask), never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidDataError, ShapeMismatchError
from ..inputs import check_batch, check_finite, check_finite_rows, check_numeric
from ..io.sources import ArraySource, as_source
from ..metrics.ood import is_ood_split
from ..metrics.regression import compute_regression_metrics, regression_geometry
from ..results.report import SnapshotResult

__all__ = [
    "snapshot_kind",
    "RegressionPrepared",
    "prepare_regression",
    "analyze_regression",
    "analyze_regression_snapshot",
]


# ------------------------------------------------------------------------------------------
# which kind of snapshot
# ------------------------------------------------------------------------------------------
def _is_one_hot(values: np.ndarray) -> bool:
    v = np.asarray(values, dtype=np.float64)
    return bool(np.isin(v, (0.0, 1.0)).all() and np.all(v.sum(axis=1) == 1))


def snapshot_kind(snap) -> str:
    """``"ood"``, ``"regression"`` or ``"classification"`` for a dump snapshot.

    Regression: metadata ``task = "regression"`` with any labels-role array, or an array
    named ``targets`` of a float dtype that is (N, t) and not one-hot, or (N,) with a
    fractional value. OOD: split ``ood`` or ``ood_<name>``.
    """
    if is_ood_split(snap.split):
        return "ood"
    src = snap.labels
    if src is None:
        return "classification"
    if str(snap.meta.get("task", "")).lower() == "regression":
        return "regression"
    name = src.where.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    if name != "targets" or src.dtype.kind != "f" or len(src.shape) not in (1, 2):
        return "classification"
    values = np.asarray(src.read_all())
    if values.ndim == 2:
        return "classification" if _is_one_hot(values) else "regression"
    finite = values[np.isfinite(values)]
    return "regression" if np.any(finite != np.round(finite)) else "classification"


# ------------------------------------------------------------------------------------------
# regression
# ------------------------------------------------------------------------------------------
@dataclass
class RegressionPrepared:
    features: ArraySource
    targets: np.ndarray  # (N, t) float64
    weights: np.ndarray | None  # (t, d) float64

    @property
    def n_samples(self) -> int:
        return self.features.shape[0]

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    @property
    def n_targets(self) -> int:
        return self.targets.shape[1]


def prepare_regression(features: Any, targets: Any, weights: Any = None) -> RegressionPrepared:
    """Validate regression inputs: features (N, d), targets (N,) or (N, t), W (t, d)."""
    feats = as_source(features, "features")
    tsrc = as_source(targets, "targets")
    N, d = check_batch(np, feats)
    if tsrc is None:
        raise InvalidDataError(f"{feats.where}: a regression snapshot needs targets (N, t)")
    check_numeric(tsrc, "targets")
    if len(tsrc.shape) not in (1, 2) or tsrc.shape[0] != N:
        raise ShapeMismatchError(
            f"{tsrc.where}: targets must have shape (N,) or (N, t) with N = {N} "
            f"(the rows of {feats.where}), got {tsrc.shape}"
        )
    y = np.asarray(tsrc.read_all(), dtype=np.float64)
    y = y.reshape(N, -1)
    if y.shape[1] == 0:
        raise ShapeMismatchError(f"{tsrc.where}: targets have no columns (shape {tsrc.shape})")
    check_finite(y, tsrc.where)
    w = None
    if weights is not None:
        wsrc = as_source(weights, "weights")
        check_numeric(wsrc, "weights")
        w = np.asarray(wsrc.read_all(), dtype=np.float64)
        check_finite(w, wsrc.where)
        if w.ndim != 2 or w.shape != (y.shape[1], d):
            raise ShapeMismatchError(
                f"{wsrc.where}: regression weights must have shape (t, d) = "
                f"({y.shape[1]}, {d}) (targets' columns, features' width), got {w.shape}"
            )
    return RegressionPrepared(feats, y, w)


def run_regression(
    prep: RegressionPrepared,
    *,
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    progress=None,
    engine: Any = None,
) -> SnapshotResult:
    """Both regression passes over ``prep`` and the :class:`SnapshotResult` (name ``/``)."""
    from ..engines.local import LocalEngine, plan_chunk_rows
    from ..engines.passes import RegressionFirstRows, RegressionSecondRows

    engine = engine if hasattr(engine, "run") else LocalEngine()
    rows = chunk_rows or plan_chunk_rows(
        prep.n_features, prep.n_features // 4 + prep.n_targets, memory_limit=memory_limit
    )
    feats, d = {"features": prep.features}, prep.n_features
    (first,) = engine.run(
        [RegressionFirstRows(d, prep.n_targets)],
        feats,
        rows,
        row_arrays={"targets": prep.targets},
        progress=progress,
    )
    check_finite_rows(first, prep.features.where)
    geom = regression_geometry(first, prep.n_targets, prep.weights)
    (second,) = engine.run([RegressionSecondRows(geom, d)], feats, rows, progress=progress)
    values, extra = compute_regression_metrics(first, second, geom, prep.weights)
    arrays = {"target_covariance": first.target_covariance}
    if prep.weights is not None:
        arrays["weights"] = prep.weights
    if "feature_eigvals" in extra:
        arrays["feature_eigvals"] = np.asarray(extra["feature_eigvals"])
    res = SnapshotResult(
        name="/",
        n_samples=prep.n_samples,
        n_features=prep.n_features,
        n_classes=0,
        metrics=values.values,
        null_reasons=values.null_reasons,
        warnings=values.warnings,
        dtype=str(prep.features.dtype),
        arrays=arrays,
        task="regression",
    )
    res.regression = {"n_targets": prep.n_targets, "nrc3_gamma": extra["nrc3_gamma"]}
    return res


def analyze_regression(
    features: Any,
    targets: Any,
    *,
    weights: Any = None,
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    progress=None,
    engine: Any = None,
) -> SnapshotResult:
    """Neural regression collapse (nrc1, nrc2, nrc3) of features and float targets.

    Parameters
    ----------
    features : array-like (N, d)
    targets : array-like (N, t) or (N,)
        Float regression targets.
    weights : array-like (t, d), optional
        The last (bias-free or not) linear layer; nrc2 and nrc3 need it.
    chunk_rows, memory_limit, progress, engine
        As for :func:`ncinspect.analyze` (a Dask array as ``features`` selects the Dask engine).

    Returns
    -------
    SnapshotResult
        ``task == "regression"``; ``metrics`` holds ``nrc1``, ``nrc2``, ``nrc3``.
    """
    from ..engines.local import is_dask
    from .build import check_options

    check_options(chunk_rows=chunk_rows, memory_limit=memory_limit)  # before any work
    if engine is None and is_dask(features):
        from ..engines.dask import DaskEngine

        engine = DaskEngine()
    if engine is not None and hasattr(engine, "wrap"):
        features, targets, _ = engine.wrap(features, targets, None)
    prep = prepare_regression(features, targets, weights)
    return run_regression(
        prep, chunk_rows=chunk_rows, memory_limit=memory_limit, progress=progress, engine=engine
    )


def analyze_regression_snapshot(snap, **kwargs) -> SnapshotResult:
    """:func:`analyze_regression` for a dump snapshot (file open)."""
    prep = prepare_regression(snap.features, snap.labels, snap.weights)
    res = run_regression(prep, **kwargs)
    res.name, res.epoch, res.split, res.layer = snap.name, snap.epoch, snap.split, snap.layer
    res.meta, res.file = dict(snap.meta), snap.file
    return res
