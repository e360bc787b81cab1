"""Check rules on several runs (seeds): on the mean, or on a bound of the 95% t-interval.

``--max nc1=0.01`` applies to the mean over the runs; ``--max-upper nc1=0.01`` to the upper
end of the 95% interval (the gate passes only when the runs show, with 95% confidence, that
the mean is below the bound); ``--min-lower accuracy_classifier=0.9`` to the lower end. Trend
rules run on the trajectory of the means. Per-class rules are not aggregated.

Each aggregated snapshot becomes a result view (:meth:`AggregateReport.views`) whose
``metrics`` hold the statistic a rule reads, so :func:`ncinspect.check.evaluate` applies
the rules unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from ..metrics.registry import LAW_KEYS
from ..results.aggregate import AggregateReport
from ..text import clip
from .evaluate import CheckResult, evaluate, select_last, select_layer
from .rules import THRESHOLD_KINDS, Rule, parse_threshold

__all__ = ["BOUND_KINDS", "BoundRule", "parse_bound", "check_aggregate", "check_runs"]

#: ``max_upper``: upper end of the 95% interval <= bound; ``min_lower``: lower end >= bound.
BOUND_KINDS = {"max_upper": ("max", "ci_high"), "min_lower": ("min", "ci_low")}


@dataclasses.dataclass(frozen=True)
class BoundRule(Rule):
    """A threshold rule on a statistic of the runs (``mean``, ``ci_high`` or ``ci_low``)."""

    stat: str = "mean"

    @property
    def key(self) -> tuple[str, str]:
        return f"{self.kind}:{self.stat}", self.metric

    @property
    def text(self) -> str:
        if self.stat == "mean":
            return f"mean {super().text}"
        end = "upper" if self.stat == "ci_high" else "lower"
        return f"95% {end} bound of {super().text}"

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "stat": self.stat}


def parse_bound(kind: str, spec: str) -> BoundRule:
    """``max_upper``/``min_lower`` (or ``max``/``min`` on the mean) from ``METRIC=VALUE``."""
    base_kind, stat = BOUND_KINDS.get(kind, (kind, "mean"))
    if base_kind not in THRESHOLD_KINDS:
        raise UsageError(f"unknown bound kind {clip(repr(kind))}")
    base = parse_threshold(base_kind, spec)
    if base.per_class_key:
        raise UsageError(f"--{kind.replace('_', '-')} {spec}: per-class rules are not aggregated")
    return BoundRule(base.kind, base.metric, bound=base.bound, stat=stat)


def check_aggregate(
    agg: AggregateReport,
    rules: Sequence[Rule],
    *,
    snapshot: str = "last",
    layer: str = "penultimate",
    config: str | None = None,
) -> CheckResult:
    """Evaluate ``rules`` on the aggregated runs ``agg``.

    Plain threshold rules and trend rules read the means; :class:`BoundRule` rules read the
    statistic they name. ``snapshot`` is ``"last"`` (the last epoch of each split and layer)
    or ``"all"``; ``layer`` as for :func:`ncinspect.check.run_check`.
    """
    if not rules:
        raise UsageError("no rules to check: give --max/--min/--max-upper/--min-lower/...")
    if snapshot not in ("last", "all"):
        raise UsageError("with --aggregate, --snapshot is last or all")
    if any(r.per_class_key for r in rules):
        raise UsageError("per-class rules are not aggregated; check each run on its own")
    outcomes = []
    for stat in ("mean", "ci_high", "ci_low"):
        for law in (False, True):  # the layer-wise law: its own rows (every layer fitted)
            mine = [
                r
                for r in rules
                if getattr(r, "stat", "mean") == stat and (r.metric in LAW_KEYS) == law
            ]
            if not mine:
                continue
            views = agg.law_views(stat) if law else select_layer(agg.views(stat), layer)
            if not views:
                what = f"snapshot of layer {clip(repr(layer))}"
                what = "layer-wise law (no hidden layers)" if law else what
                raise UsageError(f"no aggregated {what}")
            targets = select_last(views) if snapshot == "last" else views
            outcomes += evaluate(mine, views, targets=targets)
    return CheckResult(
        file=", ".join(f for f in agg.files if f),
        outcomes=outcomes,
        rules=list(rules),
        snapshot=snapshot,
        config=config,
        layer=layer,
    )


def check_runs(
    files: Sequence[str],
    rules: Sequence[Rule],
    *,
    max_upper: Sequence[str] = (),
    min_lower: Sequence[str] = (),
    snapshot: str = "last",
    layer: str = "penultimate",
    config: str | None = None,
    **analyze_options: Any,
) -> CheckResult:
    """``check --aggregate``: analyse every run, aggregate, evaluate ``rules`` on the means
    and the ``--max-upper``/``--min-lower`` specs on the interval's bounds.

    ``analyze_options`` go to :func:`ncinspect.analysis.analyze_file` for each file.
    """
    from ..analysis.api import analyze_file
    from ..results.aggregate import aggregate

    on_mean = [BoundRule(r.kind, r.metric, bound=r.bound) if not r.is_trend else r for r in rules]
    bounds = [parse_bound("max_upper", s) for s in max_upper]
    bounds += [parse_bound("min_lower", s) for s in min_lower]
    from .run import needs_spectra

    spectra = needs_spectra(rules)  # the rules read metrics: the last epoch's arrays at most
    reports = [analyze_file(f, spectra=spectra, arrays="last", **analyze_options) for f in files]
    return check_aggregate(
        aggregate(reports), [*on_mean, *bounds], snapshot=snapshot, layer=layer, config=config
    )
