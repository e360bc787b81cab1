"""Snapshots that are not classification snapshots: regression dumps and OOD features.

- A **regression snapshot** (float ``targets`` (N, t) that are not one-hot, or any targets
  when the metadata says ``task = "regression"``) reports nrc1-nrc3
  (:mod:`ncinspect.metrics.regression`) and nothing of NC1-NC4.
- An **OOD snapshot** (split ``ood`` / ``ood_<name>``) is reported without metrics of its
  own; its feature mean gives ``nc5_ood_orthogonality`` on the in-distribution snapshots of
  the same epoch and layer (:mod:`ncinspect.metrics.ood`).

Rows are walked by the engine (``engine.reduce_rows``: in this process or on Dask), never here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .errors import InvalidDataError, ShapeMismatchError
from .inputs import _check_finite, _check_numeric
from .io.sources import ArraySource, as_source
from .metrics.nulls import null_warnings
from .metrics.ood import NC5_KEY, FeatureSum, is_ood_split, nc5_key, ood_orthogonality, ood_partners
from .metrics.regression import (
    RegressionFirstPass,
    RegressionSecondPass,
    compute_regression_metrics,
    regression_geometry,
)
from .report import SnapshotResult

__all__ = [
    "snapshot_kind",
    "RegressionPrepared",
    "prepare_regression",
    "analyze_regression",
    "analyze_regression_snapshot",
    "ood_feature_sum",
    "ood_result",
    "add_nc5",
    "add_nc5_arrays",
    "OODSets",
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
    if len(feats.shape) != 2:
        raise ShapeMismatchError(
            f"{feats.where}: features must be 2-D (N, d), got shape {feats.shape}"
        )
    _check_numeric(feats, "features")
    N, d = feats.shape
    if N == 0 or d == 0:
        raise InvalidDataError(f"{feats.where}: features are empty (shape {feats.shape})")
    if tsrc is None:
        raise InvalidDataError(f"{feats.where}: a regression snapshot needs targets (N, t)")
    _check_numeric(tsrc, "targets")
    if len(tsrc.shape) not in (1, 2) or tsrc.shape[0] != N:
        raise ShapeMismatchError(
            f"{tsrc.where}: targets must have shape (N,) or (N, t) with N = {N} "
            f"(the rows of {feats.where}), got {tsrc.shape}"
        )
    y = np.asarray(tsrc.read_all(), dtype=np.float64)
    y = y.reshape(N, -1)
    if y.shape[1] == 0:
        raise ShapeMismatchError(f"{tsrc.where}: targets have no columns (shape {tsrc.shape})")
    _check_finite(y, tsrc.where)
    w = None
    if weights is not None:
        wsrc = as_source(weights, "weights")
        _check_numeric(wsrc, "weights")
        w = np.asarray(wsrc.read_all(), dtype=np.float64)
        _check_finite(w, wsrc.where)
        if w.ndim != 2 or w.shape != (y.shape[1], d):
            raise ShapeMismatchError(
                f"{wsrc.where}: regression weights must have shape (t, d) = "
                f"({y.shape[1]}, {d}) (targets' columns, features' width), got {w.shape}"
            )
    return RegressionPrepared(feats, y, w)


def _first_chunk(row0, h, y):
    return RegressionFirstPass.of_chunk(row0, h, y)


def _second_chunk(geom, row0, h):
    return RegressionSecondPass.of_chunk(geom, h)


def run_regression(
    prep: RegressionPrepared,
    *,
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    progress=None,
    engine: Any = None,
) -> SnapshotResult:
    """Both regression passes over ``prep`` and the :class:`SnapshotResult` (name ``/``)."""
    from .engines.local import LocalEngine, plan_chunk_rows

    engine = engine if hasattr(engine, "reduce_rows") else LocalEngine()
    rows = chunk_rows or plan_chunk_rows(
        prep.n_features, prep.n_features // 4 + prep.n_targets, memory_limit=memory_limit
    )
    first = engine.reduce_rows(
        _first_chunk, [prep.features], rows, row_arrays=[prep.targets], progress=progress
    )
    if first.n_nonfinite:
        raise InvalidDataError(
            f"{prep.features.where}: {first.n_nonfinite} row(s) hold NaN/Inf values, "
            f"first at row {first.first_nonfinite_row}"
        )
    geom = regression_geometry(first, prep.n_targets, prep.weights)
    second = engine.reduce_rows(
        partial(_second_chunk, geom), [prep.features], rows, progress=progress
    )
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
    from .engines.local import is_dask

    if engine is None and is_dask(features):
        from .engines.dask import DaskEngine

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


# ------------------------------------------------------------------------------------------
# OOD
# ------------------------------------------------------------------------------------------
def _sum_chunk(row0, h):
    return FeatureSum.of_chunk(row0, h)


def ood_feature_sum(
    features: ArraySource, *, rows: int, engine: Any = None, progress=None
) -> FeatureSum:
    """Count and sum of an OOD snapshot's feature rows (one pass through the engine)."""
    from .engines.local import LocalEngine

    feats = as_source(features, "ood features")
    if len(feats.shape) != 2 or feats.shape[0] == 0:
        raise ShapeMismatchError(
            f"{feats.where}: OOD features must be 2-D (N, d) with N > 0, got {feats.shape}"
        )
    _check_numeric(feats, "features")
    engine = engine if hasattr(engine, "reduce_rows") else LocalEngine()
    total = engine.reduce_rows(_sum_chunk, [feats], rows, progress=progress)
    if total.n_nonfinite:
        raise InvalidDataError(
            f"{feats.where}: {total.n_nonfinite} row(s) hold NaN/Inf values, "
            f"first at row {total.first_nonfinite_row}"
        )
    return total


def ood_result(snap, partners: list[str]) -> SnapshotResult:
    """The report entry of an OOD snapshot: no metrics of its own, a note saying where it went."""
    shape = snap.features.shape
    used = ", ".join(partners) if partners else "no in-distribution snapshot of this epoch/layer"
    res = SnapshotResult(
        name=snap.name,
        n_samples=int(shape[0]) if shape else 0,
        n_features=int(shape[1]) if len(shape) > 1 else 0,
        n_classes=0,
        metrics={},
        warnings=[
            f"out-of-distribution features ({snap.split}): no metrics of their own; "
            f"their mean gives {nc5_key(snap.split)} of {used}"
        ],
        dtype=str(snap.features.dtype),
        epoch=snap.epoch,
        split=snap.split,
        layer=snap.layer,
        meta=dict(snap.meta),
        file=snap.file,
        task="ood",
    )
    return res


def add_nc5(res: SnapshotResult, sets: dict[str, FeatureSum], all_splits: list[str]) -> None:
    """Put the nc5 keys on an in-distribution result.

    ``sets`` maps the OOD splits paired with ``res`` (same epoch and layer) to their feature
    sums; ``all_splits`` are the OOD splits of the whole file: a key for each (null with a
    reason when this snapshot has no partner of that split), and ``nc5_ood_orthogonality``
    for split ``ood``, or for the only OOD set of a file with one named set.
    """
    present = np.asarray(res.class_counts, dtype=np.int64) > 0
    means = res.arrays.means
    layer = res.layer or "penultimate"
    reasons: dict[str, str] = {}
    found: dict[str, tuple[float | None, str | None]] = {}
    for split in all_splits:
        total = sets.get(split)
        if total is None:
            found[split] = None, f"no '{split}' snapshot of epoch {res.epoch} and layer {layer}"
        elif means is None:
            found[split] = None, "no class means"
        elif total.mean.shape[0] != means.shape[1]:
            found[split] = None, f"the '{split}' features have another width d"
        else:
            ok = present & np.isfinite(means).all(axis=1)
            found[split] = ood_orthogonality(means, ok, total.mean)
    keys = {nc5_key(split): split for split in all_splits}
    if NC5_KEY not in keys and len(all_splits) == 1:
        keys[NC5_KEY] = all_splits[0]
    for key, split in keys.items():
        value, why = found[split]
        res.metrics[key] = value
        if value is None:
            reasons[key] = why or "undefined"
    if NC5_KEY not in keys:
        res.metrics[NC5_KEY] = None
        reasons[NC5_KEY] = f"{len(all_splits)} named OOD sets: read the keys {NC5_KEY}_<name>"
    res.null_reasons.update(reasons)
    res.warnings.extend(null_warnings(reasons))


class OODSets:
    """The OOD snapshots of a dump, their feature sums (each computed once) and the pairing."""

    def __init__(self, snaps, kinds, selected, chunk_rows=None, memory_limit=None, engine=None):
        self.ood = [s for s in snaps if kinds[s.name] == "ood"]
        self.splits = list(dict.fromkeys(s.split for s in self.ood))
        self.ids = [s for s in snaps if kinds[s.name] == "classification"]
        self.selected = selected
        self.kinds = kinds
        self.chunk_rows, self.memory_limit, self.engine = chunk_rows, memory_limit, engine
        self._sums: dict[str, FeatureSum] = {}

    def _partners(self, snap) -> list:
        return ood_partners(snap, self.ood)

    def unselected_work(self) -> list:
        """OOD snapshots read only because a selected snapshot pairs with them."""
        names = {s.name for s in self.selected}
        out = {}
        for s in self.selected:
            if self.kinds[s.name] == "classification":
                for o in self._partners(s):
                    if o.name not in names:
                        out[o.name] = o
        return list(out.values())

    def feature_sum(self, snap, progress=None) -> FeatureSum:
        if snap.name not in self._sums:
            from .engines.local import plan_chunk_rows

            shape = snap.features.shape
            d = int(shape[1]) if len(shape) == 2 else 1
            rows = self.chunk_rows or plan_chunk_rows(d, 1, memory_limit=self.memory_limit)
            self._sums[snap.name] = ood_feature_sum(
                snap.features, rows=rows, engine=self.engine, progress=progress
            )
        return self._sums[snap.name]

    def result(self, snap, progress=None) -> SnapshotResult:
        self.feature_sum(snap, progress)
        partners = [
            s.name
            for s in self.ids
            if s.epoch == snap.epoch and s.layer == snap.layer and not is_ood_split(s.split)
        ]
        return ood_result(snap, partners)

    def add_nc5(self, res: SnapshotResult, snap, progress=None) -> None:
        if not self.ood:
            return
        sets: dict[str, FeatureSum] = {}
        for o in self._partners(snap):
            if o.split in sets:
                res.warnings.append(
                    f"two '{o.split}' snapshots of epoch {snap.epoch} and this layer; "
                    f"{nc5_key(o.split)} uses the first"
                )
                continue
            sets[o.split] = self.feature_sum(o, progress)
        add_nc5(res, sets, self.splits)


def add_nc5_arrays(res: SnapshotResult, ood_features: Any, *, chunk_rows=None, engine=None):
    """The nc5 keys of :func:`ncinspect.analyze` from in-memory OOD feature arrays."""
    from .engines.local import is_dask, plan_chunk_rows

    sets = ood_features if isinstance(ood_features, dict) else {"ood": ood_features}
    sums: dict[str, FeatureSum] = {}
    for name, feats in sets.items():
        split = "ood" if str(name) == "ood" else f"ood_{name}"
        if is_dask(feats):
            from .engines.dask import DaskEngine, DaskSource

            engine = engine if hasattr(engine, "wrap") else DaskEngine()
            feats = DaskSource(feats, f"ood_features[{name!r}]")
        src = as_source(feats, f"ood_features[{name!r}]")
        d = src.shape[1] if len(src.shape) == 2 else 1
        rows = chunk_rows or plan_chunk_rows(d, 1)
        sums[split] = ood_feature_sum(src, rows=rows, engine=engine)
    add_nc5(res, sums, list(sums))
