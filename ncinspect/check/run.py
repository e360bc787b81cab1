"""``run_check``: open a dump, analyse the snapshots the rules need, evaluate the rules."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import Any

from ..errors import UsageError
from .evaluate import CheckResult, evaluate, layer_label, select_last, select_layer
from .rules import Rule

__all__ = ["run_check"]


def skipped_notes(report) -> list[str]:
    """The snapshots the reader skipped (incomplete, being written), once each: said in the
    check's output, never dropped silently."""
    return list(dict.fromkeys(w for r in report for w in r.warnings if " skipped: " in w))


def _names_pattern(names: Sequence[str]) -> str | None:
    """A glob matching exactly ``names`` (None, meaning all, when a name has a comma)."""
    if any("," in n for n in names):
        return None
    return ",".join(glob.escape(n) for n in names)


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
        Explicit array names by role, as for :func:`~ncinspect.analyze.analyze_file`.
    config : str, optional
        The configuration file the rules came from (recorded in the result).
    chunk_rows, memory_limit, engine, class_names, min_class_count : optional
        As for :func:`~ncinspect.analyze.analyze_file`.
    allow_external : bool
        As for :func:`~ncinspect.analyze.analyze_file`.

    Raises
    ------
    UsageError
        No rules; a pattern that matches no snapshot; no selected snapshot of ``layer``.
    """
    from ..analyze import analyze_file

    if not rules:
        raise UsageError(
            "no rules to check: give --max/--min/--decreasing/... or a config file "
            "(ncinspect.toml [check] or pyproject.toml [tool.ncinspect.check])"
        )
    snapshot = snapshot or "last"
    layer = layer or "penultimate"
    names = _snapshot_names(path, rules, snapshot, layer, keys, allow_external)
    report = analyze_file(
        path,
        snapshot=_names_pattern(sorted(names)),
        keys=keys,
        per_class=any(r.per_class_key for r in rules),
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        engine=engine,
        allow_external=allow_external,
        class_names=class_names,
        min_class_count=min_class_count,
    )
    results = [r for r in report.snapshots if r.name in names]
    targets = select_last(results) if snapshot == "last" else results
    return CheckResult(
        file=os.fspath(path),
        outcomes=evaluate(rules, results, targets=targets),
        rules=list(rules),
        snapshot=snapshot,
        config=config,
        notes=skipped_notes(report),
        layer=layer,
    )


def _snapshot_names(
    path: str | os.PathLike,
    rules: Sequence[Rule],
    snapshot: str,
    layer: str,
    keys: dict[str, str] | None,
    allow_external: bool,
) -> set[str]:
    """The names of the snapshots of ``path`` the rules look at (``snapshot`` and ``layer``)."""
    from ..dump import open_dump

    needs_trajectory = any(r.is_trend for r in rules)
    pattern = None if snapshot in ("last", "all") else snapshot
    with open_dump(path, keys=keys, allow_external=allow_external) as dump:
        pool = dump.select(pattern)
        chosen = select_layer(pool, layer, among=dump.snapshots)
        if not chosen:
            have = ", ".join(dict.fromkeys(layer_label(s.layer) for s in pool))
            raise UsageError(
                f"{os.fspath(path)}: no {'' if pattern is None else 'matching '}snapshot of "
                f"layer {layer!r}; layers there: {have} (choose one with --layer, or all)"
            )
        if snapshot == "last" and not needs_trajectory:
            chosen = select_last(chosen)
        return {s.name for s in chosen}
