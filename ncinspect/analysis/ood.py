"""OOD snapshots (split ``ood`` / ``ood_<name>``): reported without metrics of their own;
their feature mean gives ``nc5_ood_orthogonality`` on the in-distribution snapshots of the
same epoch and layer (:mod:`ncinspect.metrics.ood`), and their per-row scores against the ID
snapshot of that epoch and layer (its ``test`` split when there is one, else ``train``) the
``ood_auroc_*`` / ``ood_fpr95_*`` keys on it (:mod:`ncinspect.metrics.ood_scores`). Rows are
walked by the engine (``engine.run`` of the passes of :mod:`ncinspect.engines.passes`),
never here: the ID rows' scores ride the ID snapshot's pass 2, and an OOD set's rows are
read once for its sum and its scores when no snapshot selected before needs its sum.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..inputs import check_batch, check_finite_rows
from ..io.sources import ArraySource, as_source
from ..metrics.nulls import null_warnings
from ..metrics.ood import (
    NC5_KEY,
    FeatureSum,
    class_mean_bounds,
    is_ood_split,
    nc5_key,
    ood_orthogonality,
    ood_partners,
)
from ..results.report import SnapshotResult

__all__ = ["OODSets", "add_nc5", "add_nc5_arrays", "ood_feature_sum", "ood_result"]


def ood_feature_sum(
    features: ArraySource, *, rows: int, engine: Any = None, progress=None, scorer=None
):
    """Count and sum of an OOD snapshot's feature rows (one walk of the engine); with an
    ID snapshot's ``scorer``, ``(sum, scores)``: its rows' OOD scores in the same walk."""
    from ..engines.local import LocalEngine
    from ..engines.passes import FeatureSumRows, ScoreRows

    feats = as_source(features, "ood features")
    check_batch(np, feats, what="OOD features")
    engine = engine if hasattr(engine, "run") else LocalEngine()
    d = int(feats.shape[1]) if len(feats.shape) == 2 else 1
    passes = [FeatureSumRows(d)] + ([] if scorer is None else [ScoreRows(scorer, d)])
    total, *scores = engine.run(passes, {"features": feats}, rows, progress=progress)
    check_finite_rows(total, feats.where)
    return total if scorer is None else (total, scores[0])


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
            f"their mean gives {nc5_key(snap.split)} of {used}, and their rows' scores the "
            "ood_auroc_*/ood_fpr95_* keys of its test split (else train)"
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
    bounds = class_mean_bounds(res.class_counts, res.arrays.class_var)
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
            found[split] = ood_orthogonality(
                means, ok, total.mean, ood_bound=total.mean_bound(), class_bound=bounds
            )
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
        # (epoch, layer) -> its ID / OOD snapshots in file order: a file of many snapshots
        # looks its pairs up, it does not scan every snapshot for each one
        self._ids_at: dict[tuple, list] = {}
        for s in self.ids:
            if not is_ood_split(s.split):
                self._ids_at.setdefault((s.epoch, s.layer), []).append(s)
        self._ood_at: dict[tuple, list] = {}
        for s in self.ood:
            self._ood_at.setdefault((s.epoch, s.layer), []).append(s)
        self.selected = selected
        self.kinds = kinds
        self.chunk_rows, self.memory_limit, self.engine = chunk_rows, memory_limit, engine
        self._sums: dict[str, FeatureSum] = {}
        self._scores: dict[str, Any] = {}  #: rows' scores read with a sum, until used
        self._fused = self._plan_fused()

    def _partners(self, snap) -> list:
        """:func:`ood_partners` of ``snap`` among the dump's OOD snapshots."""
        return ood_partners(snap, self._ood_at.get((snap.epoch, snap.layer), ()))

    def _firsts(self, snap) -> list:
        """The partners of ``snap`` that nc5 and the scores use: the first of each split."""
        firsts: dict[str, Any] = {}
        for o in self._partners(snap):
            firsts.setdefault(o.split, o)
        return list(firsts.values())

    def _plan_fused(self) -> dict[str, str]:
        """OOD snapshot -> the scored ID snapshot whose walk over it reads its sum and its
        rows' scores at once: a set of that snapshot's width whose sum no ID snapshot
        selected before it needs (an OOD snapshot's own entry does not read it first)."""
        needed: set[str] = set()
        plan: dict[str, str] = {}
        if not self.ood:
            return plan
        for s in self.selected:
            if self.kinds[s.name] != "classification":
                continue
            firsts = self._firsts(s)
            if self.scored_against(s):
                width = tuple(s.features.shape[1:])
                for o in firsts:
                    if o.name not in needed and tuple(o.features.shape[1:]) == width:
                        plan[o.name] = s.name
            needed.update(o.name for o in firsts)
        return plan

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

    def feature_sum(self, snap, progress=None, scorer=None) -> FeatureSum:
        """The sum of OOD snapshot ``snap`` (read once); with ``scorer``, its rows' scores
        are read in the same walk and kept for :meth:`add_scores`."""
        if snap.name not in self._sums:
            from ..engines.local import plan_chunk_rows

            shape = snap.features.shape
            d = int(shape[1]) if len(shape) == 2 else 1
            rows = self.chunk_rows or plan_chunk_rows(d, 1, memory_limit=self.memory_limit)
            kw = dict(rows=rows, engine=self.engine, progress=progress)
            if scorer is None:
                self._sums[snap.name] = ood_feature_sum(snap.features, **kw)
            else:
                out = ood_feature_sum(snap.features, scorer=scorer, **kw)
                self._sums[snap.name], self._scores[snap.name] = out
        return self._sums[snap.name]

    def result(self, snap, progress=None) -> SnapshotResult:
        if snap.name not in self._fused:  # else read with its rows' scores
            self.feature_sum(snap, progress)
        partners = [
            s.name
            for s in self.ids
            if s.epoch == snap.epoch and s.layer == snap.layer and not is_ood_split(s.split)
        ]
        return ood_result(snap, partners)

    def add_nc5(self, res: SnapshotResult, snap, progress=None, alpha: float = 0.0) -> None:
        """The nc5 keys on ``res``; the OOD sets scored against ``snap`` whose sums are not
        read yet are read with their rows' scores (``alpha``: of ``nci``)."""
        if not self.ood:  # (before the import: asked of every snapshot of every file)
            return
        from .scores import scorer_of

        fuse = {o.name for o in self._partners(snap) if self._fused.get(o.name) == snap.name}
        scorer = scorer_of(res, alpha) if fuse else None
        sets: dict[str, FeatureSum] = {}
        for o in self._partners(snap):
            if o.split in sets:
                res.warnings.append(
                    f"two '{o.split}' snapshots of epoch {snap.epoch} and this layer; "
                    f"{nc5_key(o.split)} uses the first"
                )
                continue
            sets[o.split] = self.feature_sum(o, progress, scorer if o.name in fuse else None)
        add_nc5(res, sets, self.splits)

    def scored_against(self, snap) -> bool:
        """Whether the OOD sets of ``snap``'s epoch and layer are scored against ``snap``:
        the ID snapshot of its ``test`` split when there is one, else ``train`` (else the
        one without a split)."""
        same = self._ids_at.get((snap.epoch, snap.layer), ())
        for split in ("test", "train", None):
            pick = [s for s in same if s.split == split]
            if pick:
                return pick[0].name == snap.name
        return False

    def scoring_work(self) -> list:
        """The snapshots read once more for the OOD scores: the OOD sets scored against
        the ID snapshots among ``selected`` whose sums are read apart (the ID rows' scores
        ride their pass 2)."""
        if not self.ood:  # nothing to score (and no pairing to look up per snapshot)
            return []
        work = []
        for s in self.selected:
            if self.kinds[s.name] == "classification" and self.scored_against(s):
                width = tuple(s.features.shape[1:])
                for o in self._firsts(s):
                    if o.name not in self._fused and tuple(o.features.shape[1:]) == width:
                        work.append(o)
        return work

    def id_rider(self, snap, alpha: float):
        """``riders`` for the passes of ID snapshot ``snap``: its rows' OOD scores riding
        pass 2 when OOD sets are scored against it (else None)."""
        if not self.ood or not self.scored_against(snap) or not self._partners(snap):
            return None
        from .scores import id_scores_rider

        return id_scores_rider(alpha)

    def add_scores(
        self, res: SnapshotResult, snap, prep, alpha: float, progress=None, ids=None
    ) -> None:
        """The OOD-score keys on ``res`` when the OOD sets are scored against ``snap``
        (``ids``: its rows' scores when they rode its pass 2, else read here)."""
        if not self.ood or not self.scored_against(snap):
            return
        from ..engines.local import plan_chunk_rows
        from .scores import add_scores, row_scores, scorer_of

        scorer = scorer_of(res, alpha)
        d, engine = prep.n_features, self.engine
        rows = self.chunk_rows or plan_chunk_rows(
            d, prep.n_classes, memory_limit=self.memory_limit, n_samples=prep.n_samples
        )
        partners = self._partners(snap)
        if ids is not None:
            ids = check_finite_rows(ids, prep.features.where)
        elif scorer is not None and partners:
            ids = row_scores(prep.features, scorer, rows=rows, engine=engine, progress=progress)
        scored, reasons = {}, {}
        for o in partners:
            if o.split in scored or o.split in reasons:
                continue  # the first of two same-split sets, as nc5
            if tuple(o.features.shape[1:]) != (d,):
                reasons[o.split] = f"the '{o.split}' features have another width d"
            elif ids is not None and o.name in self._scores:
                scored[o.split] = self._scores.pop(o.name)  # read with its sum
            elif ids is not None:
                scored[o.split] = row_scores(
                    o.features, scorer, rows=rows, engine=engine, progress=progress
                )
        add_scores(res, scorer, ids, scored, self.splits, reasons)


def add_nc5_arrays(
    res: SnapshotResult,
    ood_features: Any,
    *,
    chunk_rows=None,
    engine=None,
    prep=None,
    alpha=0.0,
    ids=None,
):
    """The nc5 keys of :func:`ncinspect.analyze` from in-memory OOD feature arrays (and,
    with the ID inputs ``prep``, the OOD scores' keys, ``nci`` with ``alpha``; ``ids``: the
    ID rows' scores when they rode pass 2, else read here)."""
    from ..engines.local import is_dask, plan_chunk_rows
    from .scores import add_scores, check_alpha, row_scores, scorer_of

    alpha = check_alpha(alpha)
    sets = ood_features if isinstance(ood_features, dict) else {"ood": ood_features}
    scorer = None if prep is None else scorer_of(res, alpha)
    sums: dict[str, FeatureSum] = {}
    srcs: dict[str, Any] = {}
    scored, reasons = {}, {}
    for name, feats in sets.items():
        split = "ood" if str(name) == "ood" else f"ood_{name}"
        if is_dask(feats):
            from ..engines.dask import DaskEngine, DaskSource

            engine = engine if hasattr(engine, "wrap") else DaskEngine()
            feats = DaskSource(feats, f"ood_features[{name!r}]")
        src = as_source(feats, f"ood_features[{name!r}]")
        d = src.shape[1] if len(src.shape) == 2 else 1
        rows = chunk_rows or plan_chunk_rows(d, 1)
        if prep is not None and src.shape[1:] != (prep.n_features,):
            reasons[split] = f"the '{split}' features have another width d"
        if scorer is None or split in reasons:
            sums[split] = ood_feature_sum(src, rows=rows, engine=engine)
        else:  # its sum and its rows' scores in one walk
            sums[split], scored[split] = ood_feature_sum(
                src, rows=rows, engine=engine, scorer=scorer
            )
        srcs[split] = src
    add_nc5(res, sums, list(sums))
    if prep is None:
        return
    if ids is not None:
        ids = check_finite_rows(ids, prep.features.where)
    elif scorer is not None:
        rows = chunk_rows or plan_chunk_rows(prep.n_features, prep.n_classes)
        ids = row_scores(prep.features, scorer, rows=rows, engine=engine)
    add_scores(res, scorer, ids, scored, list(srcs), reasons)
