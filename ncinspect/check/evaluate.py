"""Evaluation of check rules on analysed snapshots: one :class:`Outcome` per rule and
target (threshold rules) or trajectory (trend rules).

By default the rules apply to the classifier's layer only (the penultimate features, the
snapshots whose ``layer`` is None): hidden-layer snapshots (``layer_k``) have no classifier,
so NC3, NC4, SQI and the classifier's accuracy are undefined there. ``layer="all"`` or a layer
name gates hidden layers on purpose.

A rule on a value that is undefined (``None``, e.g. NC3 without weights) fails with the
reason the snapshot recorded for it (``null_reasons``); it never passes silently.
This module holds the logic only; :mod:`ncinspect.render.check` formats the results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..metrics.nulls import null_message
from ..metrics.registry import lookup
from ..results.report import jsonable
from ..results.trajectory import group_trajectories, repeated_epoch
from ..text import cut
from .rules import PER_CLASS_PREFIX, Rule, is_extra_metric, num_text

__all__ = [
    "LAYER_CHOICES",
    "Outcome",
    "CheckResult",
    "evaluate",
    "layer_label",
    "select_last",
    "select_layer",
    "trajectories",
]

#: Layer selections besides a layer name: every layer, or the classifier's (``layer`` None).
LAYER_CHOICES = ("penultimate", "all")
#: The aggregate metric whose null reason explains an undefined per-class value.
_PER_CLASS_REASON = {
    "var": "nc1",
    "mean_norm": "nc1",
    "weight_norm": "nc2_equinorm_weights",
    "duality_cos": "nc3_duality_cos",
    "ncc_agreement": "nc4_ncc_mismatch",
    "accuracy_classifier": "accuracy_classifier",
}


@dataclass
class Outcome:
    """The verdict of one rule on one snapshot (or, for trend rules, one trajectory)."""

    rule: Rule
    target: str
    passed: bool
    value: Any
    message: str
    bound: Any = None
    epoch: int | None = None
    split: str | None = None
    layer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.to_dict(),
            "target": self.target,
            "passed": self.passed,
            "value": self.value,
            "bound": self.bound,
            "message": self.message,
            "epoch": self.epoch,
            "split": self.split,
            "layer": self.layer,
        }


@dataclass
class CheckResult:
    """Every outcome of a check run, with what was checked."""

    file: str | None
    outcomes: list[Outcome]
    rules: list[Rule]
    snapshot: str = "last"
    config: str | None = None
    layer: str = "penultimate"
    #: snapshots of the file left out and why (an incomplete snapshot, ...): shown, in JSON
    #: under ``notes`` when there are any
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    def to_dict(self) -> dict[str, Any]:
        n_failed = len(self.failures)
        return jsonable(
            {
                "schema_version": 1,
                "file": self.file,
                "config": self.config,
                "snapshot": self.snapshot,
                "layer": self.layer,
                "passed": self.passed,
                "summary": {
                    "rules": len(self.rules),
                    "checks": len(self.outcomes),
                    "passed": len(self.outcomes) - n_failed,
                    "failed": n_failed,
                },
                "results": [o.to_dict() for o in self.outcomes],
                **({"notes": list(self.notes)} if self.notes else {}),
            }
        )


def trajectories(items: Iterable[Any]) -> list[list[Any]]:
    """Items (snapshots or results) grouped by (split, layer), each group ordered by epoch.

    The grouping of :func:`ncinspect.results.trajectory.group_trajectories` (which only reads
    ``split``, ``layer`` and ``epoch``, so dump snapshots work too): items without an epoch
    keep their file order after those with one.
    """
    return list(group_trajectories(items).values())


def select_last(items: Iterable[Any]) -> list[Any]:
    """The last epoch of each (split, layer) group (the last in file order when none has one)."""
    out = []
    for group in trajectories(items):
        dated = [s for s in group if s.epoch is not None]
        out.append(dated[-1] if dated else group[-1])
    return out


def split_label(split: str | None) -> str:
    """The split as a message names it: ``not recorded`` for a snapshot without one."""
    return "not recorded" if split is None else split


def layer_label(layer: str | None) -> str:
    """``penultimate`` for the classifier's layer (``None``), else the layer's name."""
    return "penultimate" if layer is None else layer


def select_layer(
    items: Iterable[Any], layer: str = "penultimate", *, among: Iterable[Any] | None = None
) -> list[Any]:
    """The items (snapshots or results) of ``layer``.

    ``"penultimate"``: the classifier's layer (``item.layer`` None, or the one layer every
    item names: :func:`ncinspect.results.trajectory.classifier_layer`); ``"all"``: every item; any
    other string: the layer of that name (``"layer_1"``). ``among``: the items whose
    classifier's layer counts (default ``items``; a selection gives the whole file's).
    """
    from ..results.trajectory import classifier_layer

    items = list(items)
    if layer == "all":
        return items
    pool = items if among is None else list(among)
    want = classifier_layer(pool) if layer == "penultimate" else layer
    return [s for s in items if s.layer == want]


def _null_reason(res, key: str) -> str:
    """``key: null (why)`` from the reason the result recorded for ``key``."""
    return null_message(res.null_reasons, key)


def _fmt(value: Any) -> str:
    """A measured value with enough digits to compare with a bound."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _two(a: Any, b: Any) -> tuple[str, str]:
    """``a`` and ``b`` with enough digits to tell them apart (a change in the 16th digit
    would otherwise read ``0.0166054 -> 0.0166054``)."""
    if isinstance(a, float) and isinstance(b, float) and a != b and _fmt(a) == _fmt(b):
        return repr(a), repr(b)
    return _fmt(a), _fmt(b)


def _pair(a: Any, b: Any) -> str:
    return " -> ".join(_two(a, b))


def _where(res) -> dict[str, Any]:
    return {"epoch": res.epoch, "split": res.split, "layer": res.layer}


def _threshold_outcome(rule: Rule, res) -> Outcome:
    ok = (lambda v: v <= rule.bound) if rule.kind == "max" else (lambda v: v >= rule.bound)
    op, bad = ("<=", ">") if rule.kind == "max" else (">=", "<")
    base = {"rule": rule, "target": res.name, "bound": rule.bound, **_where(res)}
    key = rule.per_class_key
    if key is None:
        value = res.metrics.get(rule.metric)
        if value is None:
            return Outcome(passed=False, value=None, message=_null_reason(res, rule.metric), **base)
        passed = bool(ok(value))
        message = f"{rule.metric} = {_fmt(value)} {op if passed else bad} {num_text(rule.bound)}"
        return Outcome(passed=passed, value=value, message=message, **base)
    rows = res.per_class
    if not rows:
        return Outcome(
            passed=False,
            value=None,
            **base,
            message=f"{rule.metric}: no per-class values for this snapshot",
        )
    # class names from the file, cut in a message (a sentence: what JSON keeps whole are names)
    undefined = [cut(str(r.get("class"))) for r in rows if r.get(key) is None]
    if undefined:
        agg = _PER_CLASS_REASON.get(key)
        why = _null_reason(res, agg) if agg and res.metrics.get(agg) is None else "undefined"
        classes = ", ".join(undefined[:10])
        return Outcome(
            passed=False,
            value=None,
            **base,
            message=f"{rule.metric} undefined for class(es) {classes}: {why}",
        )
    pick = min if rule.kind == "min" else max
    worst = pick(rows, key=lambda r: r[key])
    value = worst[key]
    passed = bool(ok(value))
    return Outcome(
        passed=passed,
        value=value,
        **base,
        message=f"worst class {cut(str(worst.get('class')))}: {key} = {_fmt(value)} "
        f"{op if passed else bad} {num_text(rule.bound)}",
    )


def _trend_outcome(rule: Rule, group: list[Any]) -> Outcome:
    # one snapshot before the window too: an epoch held twice across its edge makes the
    # window's content a pick as well
    twice = repeated_epoch(group[-(rule.last + 1) :] if rule.last else group)
    if rule.last:
        group = group[-rule.last :]
    first, last = group[0], group[-1]
    target = f"{first.name} .. {last.name}" if len(group) > 1 else first.name
    base = {
        "rule": rule,
        "target": target,
        "split": last.split,
        "layer": last.layer,
        "epoch": last.epoch,
    }

    def fail(message: str, value: Any = None) -> Outcome:
        return Outcome(passed=False, value=value, message=message, **base)

    need = rule.last or 2
    if len(group) < need:
        return fail(
            f"needs {need} snapshots in this trajectory (split {split_label(last.split)}, "
            f"layer {layer_label(last.layer)}), found {len(group)}"
        )
    undated = [s.name for s in group if s.epoch is None]
    if undated:
        return fail(f"snapshot(s) without an epoch cannot be ordered: {', '.join(undated[:5])}")
    if twice is not None:
        return fail(
            f"snapshots {cut(twice[0].name)} and {cut(twice[1].name)} are both epoch "
            f"{twice[0].epoch} of this trajectory (split {split_label(last.split)}, layer "
            f"{layer_label(last.layer)}): they cannot be ordered; select one with --snapshot"
        )
    values = [s.metrics.get(rule.metric) for s in group]
    for s in group:
        if s.metrics.get(rule.metric) is None:
            return fail(f"{s.name}: {_null_reason(s, rule.metric)}")
    sign = 1.0 if rule.kind in ("decreasing", "non_increasing") else -1.0
    if rule.kind in ("decreasing", "increasing"):
        passed = bool(sign * (values[-1] - values[0]) < 0)
        word = "fell" if values[-1] < values[0] else "rose" if values[-1] > values[0] else "stayed"
        return Outcome(
            passed=passed,
            value=values[-1],
            **{**base, "bound": values[0]},
            message=f"{rule.metric} {word} from {_two(values[0], values[-1])[0]} (epoch "
            f"{first.epoch}) to {_two(values[0], values[-1])[1]} (epoch {last.epoch})",
        )
    for i in range(1, len(group)):
        va, vb = values[i - 1], values[i]
        allowed = rule.atol + rule.rtol * abs(va)
        if sign * (vb - va) > allowed:
            return fail(
                f"{rule.metric} went the wrong way from epoch {group[i - 1].epoch} to "
                f"{group[i].epoch}: {_pair(va, vb)} (allowed {_fmt(allowed)})",
                vb,
            )
    return Outcome(
        passed=True,
        value=values[-1],
        **base,
        message=f"{rule.metric} monotone over epochs {first.epoch}..{last.epoch}: "
        f"{_fmt(values[0])} -> {_fmt(values[-1])}",
    )


def evaluate(
    rules: Sequence[Rule], results: Sequence[Any], *, targets: Sequence[Any] | None = None
) -> list[Outcome]:
    """Apply ``rules`` to analysed snapshots.

    Parameters
    ----------
    rules : sequence of Rule
    results : sequence of SnapshotResult
        Every analysed snapshot; trend rules run over each (split, layer) trajectory of them.
    targets : sequence of SnapshotResult, optional
        The snapshots the threshold rules apply to (default: all of ``results``).

    Returns
    -------
    list of Outcome
        Rule by rule, one per target (threshold rules) or per trajectory (trend rules).
    """
    targets = list(results) if targets is None else list(targets)
    groups = trajectories(results)
    out: list[Outcome] = []
    for rule in rules:
        # snapshots that do not report the metric (a regression snapshot for nc1, an OOD
        # snapshot for any) are not its targets, unless none reports it (then it fails)
        if rule.is_trend:
            mine = [g for g in groups if all(_reports(s, rule.metric) for s in g)]
            out += [_trend_outcome(rule, g) for g in (mine or groups)]
        else:
            mine = [res for res in targets if _reports(res, rule.metric)]
            out += [_threshold_outcome(rule, res) for res in (mine or targets)]
    return out


def _reports(res, metric: str) -> bool:
    """Does ``res`` report ``metric`` at all (nrc1 is not a metric of a classification
    snapshot, nc1 not one of a regression snapshot, an OOD snapshot has none)?"""
    if (spec := lookup(metric)) is not None and spec.scope == "layers":  # the law's rows only
        return getattr(res, "scope", "snapshot") == "layers"
    keys = getattr(res, "metric_keys", None)
    if keys is None:
        return True
    if metric.startswith(PER_CLASS_PREFIX):
        return getattr(res, "task", "classification") == "classification"
    return metric in keys() or (is_extra_metric(metric) and res.task == "classification")
