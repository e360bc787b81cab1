"""OOD detection scores: per-row scores of ID and OOD rows (passes of the engine's walks) and
the ``ood_auroc_<s>`` / ``ood_fpr95_<s>`` keys they give on the ID result.

The scores (:mod:`ncinspect.metrics.ood_scores`) use the ID result's ``mu_G``, the basis of
its centred means and its classifier. Key names follow nc5's: split ``ood`` gives
``ood_auroc_ncspan``, split ``ood_<name>`` gives ``ood_auroc_ncspan_<name>``, and a file
with one named set only gives the plain keys too. Rows are walked by the engine
(``engine.run``), never here; N floats per score are held, never N x d.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import UsageError
from ..inputs import check_finite_rows
from ..io.sources import as_source
from ..metrics.nulls import MetricValues, null_warnings
from ..metrics.ood import NC5_KEY, nc5_key
from ..metrics.ood_scores import OOD_SCORES, OODScorer, RowScores, auroc, fpr95
from ..results.report import SnapshotResult

__all__ = [
    "check_alpha",
    "scorer_of",
    "scorer_of_geometry",
    "id_scores_rider",
    "row_scores",
    "score_keys",
    "add_scores",
]

_STATS = (("ood_auroc", auroc), ("ood_fpr95", fpr95))


def check_alpha(alpha: Any) -> float:
    """``nci_alpha`` as a float (a finite number, else a UsageError)."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value) or isinstance(alpha, bool):
        raise UsageError(f"nci_alpha (--nci-alpha) must be a finite number, got {alpha!r}")
    return value


def scorer_of(res: SnapshotResult, alpha: float = 0.0) -> OODScorer | None:
    """The scorer of an ID result (None when it has no global mean)."""
    a = res.arrays
    if a.global_mean is None:
        return None
    return OODScorer(a.global_mean, a.basis, a.weights_all, a.bias_all, float(alpha))


def scorer_of_geometry(geom, alpha: float = 0.0) -> OODScorer | None:
    """The scorer of an ID snapshot from the geometry of its pass 1 (what :func:`scorer_of`
    reads from its result: the same arrays), so that its rows' scores ride its pass 2."""
    if geom.global_mean is None:
        return None
    return OODScorer(geom.global_mean, geom.basis, geom.weights, geom.bias, float(alpha))


def id_scores_rider(alpha: float = 0.0):
    """``riders(first, geom)`` for :func:`~ncinspect.engines.local.run_passes`: the OOD
    scores of the ID rows as a pass of the pass-2 walk (none without a global mean), so
    the ID rows are not read once more for them."""
    from ..engines.passes import ScoreRows

    def riders(first, geom) -> list:
        scorer = scorer_of_geometry(geom, alpha)
        return [] if scorer is None else [ScoreRows(scorer, geom.global_mean.shape[0])]

    return riders


def row_scores(
    features, scorer: OODScorer, *, rows: int, engine: Any = None, where: str = "features",
    progress=None,
) -> RowScores:  # fmt: skip
    """The per-row scores of ``features`` (an ArraySource or array), one engine pass."""
    from ..engines.local import LocalEngine
    from ..engines.passes import ScoreRows

    src = as_source(features, where)
    engine = engine if hasattr(engine, "run") else LocalEngine()
    d = int(src.shape[1]) if len(src.shape) == 2 else 1
    (out,) = engine.run([ScoreRows(scorer, d)], {"features": src}, rows, progress=progress)
    return check_finite_rows(out, src.where)


def score_keys(split: str) -> list[str]:
    """The AUROC and FPR95 keys of OOD split ``split`` (``..._<name>`` for a named set)."""
    suffix = nc5_key(split)[len(NC5_KEY) :]
    return [f"{stat}_{s}{suffix}" for stat, _ in _STATS for s in OOD_SCORES]


def _values(scorer, ids: RowScores, ood: RowScores | None, why: str | None, suffix: str):
    """AUROC and FPR95 of each score between ID rows ``ids`` and OOD rows ``ood``."""
    out = MetricValues({})
    for s in OOD_SCORES:
        keys = [f"{stat}_{s}{suffix}" for stat, _ in _STATS]
        reason = why
        if reason is None and s not in scorer.names():
            reason = "no classifier W in the in-distribution snapshot"
        elif reason is None and (ids.undefined.get(s, 0) or ood.undefined.get(s, 0)):
            reason = (
                f"{s} is undefined on {ids.undefined.get(s, 0)} ID and "
                f"{ood.undefined.get(s, 0)} OOD row(s) (h = mu_G, or a zero classifier row)"
            )
        if reason is not None:
            out.set_all(keys, None, reason)
            continue
        pos, neg = ids.array(s), ood.array(s)
        for key, (_, fn) in zip(keys, _STATS, strict=True):
            out.set(key, fn(pos, neg), "no rows")
    return out


def add_scores(
    res: SnapshotResult,
    scorer: OODScorer | None,
    ids: RowScores | None,
    sets: dict[str, RowScores | None],
    all_splits: list[str],
    reasons: dict[str, str] | None = None,
) -> None:
    """Put the OOD-score keys of every split of ``all_splits`` on the ID result ``res``.

    ``sets`` maps the splits scored against ``res`` to their rows' scores; ``reasons``
    says why a split has none (default: no partner of this epoch and layer).
    """
    reasons = reasons or {}
    values, layer = MetricValues({}), res.layer or "penultimate"
    found: dict[str, MetricValues] = {}
    for split in all_splits:
        suffix = nc5_key(split)[len(NC5_KEY) :]
        ood = sets.get(split)
        why = None
        if scorer is None:
            why = "no class means"
        elif ood is None:  # checked before ids: without a partner the ID rows are not scored
            why = reasons.get(
                split, f"no '{split}' snapshot of epoch {res.epoch} and layer {layer}"
            )
        elif ids is None:
            why = "no class means"
        found[split] = _values(scorer, ids, ood, why, suffix)
        _merge(values, found[split])
    named = [s for s in all_splits if s.lower() != "ood"]
    if "ood" not in [s.lower() for s in all_splits] and len(named) == 1:  # as nc5 does
        suffix = nc5_key(named[0])[len(NC5_KEY) :]
        for key, value in found[named[0]].values.items():
            values.set(key[: len(key) - len(suffix)], value, found[named[0]].null_reasons.get(key))
    res.metrics.update(values.values)
    res.null_reasons.update(values.null_reasons)
    res.warnings.extend(null_warnings(values.null_reasons))


def _merge(into: MetricValues, other: MetricValues) -> None:
    for key, value in other.values.items():
        into.set(key, value, other.null_reasons.get(key))
