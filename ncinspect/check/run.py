"""``run_check``: open a dump, analyse the snapshots the rules need, evaluate the rules."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from ..metrics.registry import LAW_KEYS
from ..results.layer_laws import layer_laws
from ..text import clip
from .evaluate import CheckResult, Outcome, evaluate, layer_label, select_last, select_layer
from .rules import Rule

__all__ = ["run_check"]


def needs_spectra(rules) -> bool:
    """Whether a rule names a spectral metric (the analysis then runs with ``spectra``)."""
    from ..metrics.registry import SPECTRA_REGISTRY

    keys = {m.key for m in SPECTRA_REGISTRY}
    return any(r.metric in keys for r in rules)


def skipped_notes(report) -> list[str]:
    """The snapshots the reader skipped (incomplete, being written), once each: said in the
    check's output, never dropped silently."""
    return list(dict.fromkeys(w for r in report for w in r.warnings if " skipped: " in w))


def is_law_metric(name: str) -> bool:
    """A key of the layer-wise law (one value per epoch and split, not per snapshot)."""
    return name in LAW_KEYS


def run_check(
    path: str | os.PathLike,
    rules: Sequence[Rule],
    *,
    snapshot: str | None = "last",
    layer: str | None = "penultimate",
    keys: dict[str, str] | None = None,
    config: str | None = None,
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    engine: Any = None,
    allow_external: bool = False,
    class_names: Any = None,
    min_class_count: int = 1,
) -> CheckResult:
    """Analyse the snapshots of a dump that ``rules`` need and evaluate them.

    Parameters
    ----------
    path : str or PathLike
        The dump (HDF5 or NPZ).
    rules : sequence of Rule
        At least one.
    snapshot : str
        ``"last"`` (default: the last epoch of each split and layer), ``"all"``, or a glob on
        snapshot paths (comma-separated for several). With ``"last"``, trend rules still see
        every snapshot of each trajectory; with a glob they see the matching ones.
    layer : str
        ``"penultimate"`` (default: the classifier's layer, snapshots without a ``layer``),
        ``"all"``, or a hidden layer's name (``"layer_1"``). Every rule, trends included,
        sees only these snapshots. A rule that needs the classifier (NC3, NC4, SQI, the
        classifier's accuracy) fails on a hidden layer, which has no weights.
    keys : dict, optional
        Explicit array names by role, as for :func:`~ncinspect.analysis.analyze_file`.
    config : str, optional
        The configuration file the rules came from (recorded in the result).
    chunk_rows, memory_limit, engine, class_names, min_class_count : optional
        As for :func:`~ncinspect.analysis.analyze_file`.
    allow_external : bool
        As for :func:`~ncinspect.analysis.analyze_file`.

    Raises
    ------
    UsageError
        No rules; a pattern that matches no snapshot; no selected snapshot of ``layer``.
    """
    from ..analysis.api import analyze_file

    if not rules:
        raise UsageError(
            "no rules to check: give --max/--min/--decreasing/... or a config file "
            "(ncinspect.toml [check] or pyproject.toml [tool.ncinspect.check])"
        )
    snapshot = snapshot or "last"
    layer = layer or "penultimate"
    law_rules = [r for r in rules if is_law_metric(r.metric)]
    rules_ = [r for r in rules if not is_law_metric(r.metric)]
    chosen: dict[str, set[str]] = {}

    def choose(dump) -> list:
        """The snapshots the rules need, chosen on the file ``analyze_file`` has open."""
        chosen["rules"] = _snapshot_names(dump, rules_, snapshot, layer, False)
        chosen["law"] = _snapshot_names(dump, law_rules, snapshot, "all", True)
        wanted = chosen["rules"] | chosen["law"]
        return [s for s in dump.snapshots if s.name in wanted]

    report = analyze_file(
        path,
        snapshot=choose,
        keys=keys,
        per_class=any(r.per_class_key for r in rules),
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        engine=engine,
        allow_external=allow_external,
        class_names=class_names,
        min_class_count=min_class_count,
        spectra=needs_spectra(rules),
        arrays="last",  # the rules read metrics: no snapshot's class-level arrays are kept
    )
    names, law_names = chosen["rules"], chosen["law"]
    return CheckResult(
        file=os.fspath(path),
        outcomes=_outcomes(rules, report, names, law_names, snapshot),
        rules=list(rules),
        snapshot=snapshot,
        config=config,
        notes=skipped_notes(report),
        layer=layer,
    )


def _outcomes(rules, report, names: set[str], law_names: set[str], snapshot: str) -> list:
    """The rules' outcomes in their order: the law's rules on the law of each (epoch, split)
    of ``law_names``, the others on the snapshots ``names``."""
    results = [r for r in report.snapshots if r.name in names]
    targets = select_last(results) if snapshot == "last" else results
    laws = layer_laws(r for r in report.snapshots if r.name in law_names)
    law_targets = select_last(laws) if snapshot == "last" else laws
    outcomes = []
    for rule in rules:
        if is_law_metric(rule.metric) and not laws:  # never a silent pass
            why = "no layer-wise law: no epoch has hidden-layer snapshots (layer_<k>)"
            outcomes.append(Outcome(rule, report.file or "", False, None, f"{rule.metric}: {why}"))
        elif is_law_metric(rule.metric):
            outcomes += evaluate([rule], laws, targets=law_targets)
        else:
            outcomes += evaluate([rule], results, targets=targets)
    return outcomes


def _snapshot_names(dump, rules: Sequence[Rule], snapshot: str, layer: str, law: bool) -> set[str]:
    """The names of the snapshots of the open ``dump`` the rules look at (``snapshot`` and
    ``layer``; ``law``: every layer of the (epoch, split) pairs the law rules look at)."""
    if not rules:
        return set()
    needs_trajectory = any(r.is_trend for r in rules)
    pattern = None if snapshot in ("last", "all") else snapshot
    pool = dump.select(pattern)
    chosen = select_layer(pool, layer, among=dump.snapshots)
    if not chosen:
        have = ", ".join(dict.fromkeys(clip(layer_label(s.layer), 60) for s in pool))
        raise UsageError(
            f"{dump.path}: no {'' if pattern is None else 'matching '}snapshot of "
            f"layer {clip(repr(layer))}; layers there: {have} (choose one with --layer, or all)"
        )
    if snapshot == "last" and not needs_trajectory:
        chosen = select_last(chosen)
        if law:  # every layer of the last epoch of each split
            last: dict = {}
            for s in chosen:
                if s.epoch is not None:
                    last[s.split] = max(last.get(s.split, s.epoch), s.epoch)
            chosen = [s for s in pool if last.get(s.split, s.epoch) == s.epoch]
    return {s.name for s in chosen}
