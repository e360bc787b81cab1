"""One :func:`~ncinspect.analysis.analyze_file` run over the snapshots of an open dump.

Each selected snapshot is analysed by its kind (classification, regression, OOD); a
non-train split may score NCC with the class means of its train partner (same epoch and
layer), whose pass 1 is read once; OOD sets pair with the snapshots they are measured
against.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ..blas import hold_one_blas_thread
from ..engines.local import LocalEngine, Passes, expect, plan_for, run_passes
from ..inputs import Prepared
from ..results.report import SnapshotResult
from ..stats.passes import FirstPass
from ..text import clip
from .build import (
    bootstrap_intervals,
    notes_for,
    passes_result,
    prepare_snapshot,
)

__all__ = [
    "FileRun",
    "LatestArrays",
    "partners",
    "snapshot_result",
    "snapshot_workers",
    "train_partner",
    "worker_engine",
]

#: a file's snapshots go to worker processes only when each worker gets at least this many
#: (a fork and the results' trip back cost about what a few small snapshots do)
FORK_MIN_SNAPSHOTS = 32
#: ... and only when every one is this small (its features' float64 bytes): a larger snapshot
#: already keeps the cores busy with the engine's threads over its blocks
FORK_MAX_SNAPSHOT_BYTES = 8 << 20


def snapshot_workers(snaps, engine, memory_limit) -> int:
    """Worker processes worth forking for the snapshots ``snaps`` (0: this process reads
    them; :func:`ncinspect.engines.processes.fork_workers`): only on the local engine with no
    memory limit (a budget is one process's), and only for many small snapshots."""
    from ..engines.processes import fork_workers

    if (engine is not None and type(engine) is not LocalEngine) or memory_limit is not None:
        return 0
    for s in snaps:
        shape = s.features.shape or (0,)
        if 8 * shape[0] * (shape[1] if len(shape) > 1 else 1) > FORK_MAX_SNAPSHOT_BYTES:
            return 0
    return fork_workers(getattr(engine, "threads", None), len(snaps), FORK_MIN_SNAPSHOTS)


def worker_engine(engine) -> LocalEngine:
    """The engine of a worker process: the local one on one thread (the cores are the
    workers'), at ``engine``'s precision."""
    return LocalEngine(threads=1, precision=getattr(engine, "precision", "float64"))


def snapshot_result(
    snap, prep: Prepared, passes: Passes | None, *, per_class, ncc_label, **options
) -> SnapshotResult:
    """The result of one snapshot (options already checked); runs the passes if needed."""
    p = passes or run_passes(prep, **options)
    res = passes_result(
        prep,
        p,
        per_class=per_class,
        center=options.get("center", "classes"),
        ncc_label=ncc_label,
        spectra=bool(options.get("spectra")),
        extra_warnings=notes_for(snap),
        engine=options.get("engine"),
    )
    res.name, res.epoch, res.split, res.layer = snap.name, snap.epoch, snap.split, snap.layer
    res.meta, res.file = dict(snap.meta), snap.file
    return res


def train_partner(snap, snaps):
    """The train snapshot of the same epoch and layer as a non-train ``snap`` (or None): the
    first with split ``train``, else the first split-less one (an unset split is the
    training set, as in the dump format's run layout and every trajectory)."""
    if snap.split in (None, "train"):
        return None
    for split in ("train", None):
        for other in snaps:
            if (
                other is not snap
                and other.split == split
                and other.epoch == snap.epoch
                and other.layer == snap.layer
            ):
                return other
    return None


def partners(selected, snaps, kinds: dict[str, str], ncc_centres: str) -> dict[str, Any]:
    """The train partner of each selected snapshot (None: score NCC with its own means);
    only classification snapshots use (and have) classification partners."""
    first_train: dict = {}  # (epoch, layer) -> the first train snapshot: train_partner's pick
    if ncc_centres == "train":
        split_less: dict = {}
        for s in snaps:
            if s.split == "train":
                first_train.setdefault((s.epoch, s.layer), s)
            elif s.split is None:
                split_less.setdefault((s.epoch, s.layer), s)
        for key, s in split_less.items():
            first_train.setdefault(key, s)
    found = {
        s.name: None if s.split in (None, "train") else first_train.get((s.epoch, s.layer))
        for s in selected
    }
    return {
        k: p if p and kinds[p.name] == kinds[k] == "classification" else None
        for k, p in found.items()
    }


class FileRun:
    """One :func:`analyze_file` run over an open dump (options already checked)."""

    def __init__(self, dump, snapshot, ncc_centres: str, options: dict[str, Any]):
        from . import regression as ext
        from .ood import OODSets
        from .scores import check_alpha

        self.ext, self.options = ext, options
        self.class_names = options.pop("class_names")
        self.bootstrap = options.pop("bootstrap")
        self.nci_alpha = check_alpha(options.pop("nci_alpha", 0.0))
        self.progress = options["progress"]
        self.selected = snapshot(dump) if callable(snapshot) else dump.select(snapshot)
        self.kinds = {s.name: ext.snapshot_kind(s) for s in dump.snapshots}
        self.partners = partners(self.selected, dump.snapshots, self.kinds, ncc_centres)
        self.oods = OODSets(
            dump.snapshots,
            self.kinds,
            self.selected,
            options["chunk_rows"],
            options["memory_limit"],
            options["engine"],
        )
        self.cache: dict[str, tuple[Prepared, FirstPass]] = {}
        self.labels_seen: dict = {}  # the labels array the last snapshot read, encoded

    def announce(self) -> None:
        """Tell the progress callback the rows to read: two passes per selected snapshot
        (one per OOD set), one (pass 1) per train partner, one per OOD set paired with a
        selected snapshot."""
        selected, kinds = self.selected, self.kinds
        work = [
            *(s for s in selected if kinds[s.name] != "ood"),
            *selected,
            *{p.name: p for p in self.partners.values() if p}.values(),
            *self.oods.unselected_work(),
            *self.oods.scoring_work(),
        ]
        expect(
            self.progress,
            sum((s.features.shape or (0,))[0] for s in work),
            sum(s.features.nbytes for s in work),
        )

    def first_of(self, snap) -> tuple[Prepared, FirstPass]:
        """Inputs and pass 1 of a train partner (read once)."""
        if snap.name not in self.cache:
            prep = prepare_snapshot(snap, self.class_names, self.labels_seen)
            o = self.options
            rows = o["chunk_rows"] or plan_for(prep, o["memory_limit"])
            first = (o["engine"] or LocalEngine()).first_pass(prep, rows, self.progress)
            self.cache[snap.name] = (prep, first)
        return self.cache[snap.name]

    def results(self, per_class: bool, arrays: str = "all") -> Iterator[SnapshotResult]:
        """The result of each selected snapshot, in order: computed here, or, for a file of
        many small snapshots and more than one core, by worker processes forked from this
        one (:mod:`ncinspect.engines.processes`; the same numbers bit for bit, the same
        first error). ``arrays="last"``: a worker drops the arrays of every result a later
        epoch of its own range replaces (:class:`LatestArrays`) before sending them."""
        workers = self.fork_workers()
        if not workers:
            for snap in self.selected:
                yield self.result(snap, per_class)
            return
        from ..engines.processes import forked_map

        selected, engine = self.selected, self.options["engine"]

        def setup(progress) -> None:  # in a worker: its own rows, no threads
            self.progress = self.options["progress"] = progress
            self.options["engine"] = worker_engine(engine)
            hold_one_blas_thread()

        def work(i: int, progress) -> SnapshotResult:
            return self.result(selected[i], per_class)

        def finish(results: list[SnapshotResult]) -> None:
            kept = LatestArrays()
            for res in results:
                kept.add(res)

        def describe(lo: int, hi: int) -> str:
            first, last = selected[lo], selected[hi - 1]
            return f"{clip(first.file)}: snapshots {clip(first.name)} to {clip(last.name)}"

        yield from forked_map(
            work,
            len(selected),
            workers,
            progress=self.progress,
            setup=setup,
            finish=finish if arrays == "last" else None,
            describe=describe,
        )

    def fork_workers(self) -> int:
        """Worker processes for the selected snapshots (0: this process reads them): as
        :func:`snapshot_workers`, and never with an OOD set or a bootstrap (they read across
        snapshots)."""
        if self.bootstrap[0] is not None or "ood" in self.kinds.values():
            return 0
        return snapshot_workers(self.selected, self.options["engine"], self.options["memory_limit"])

    def result(self, snap, per_class: bool) -> SnapshotResult:
        o = self.options
        kind = self.kinds[snap.name]
        if kind == "regression":
            keep = ("chunk_rows", "memory_limit", "progress", "engine")
            res = self.ext.analyze_regression_snapshot(snap, **{k: o[k] for k in keep})
            if self.bootstrap[0] is not None:
                res.warnings.append(
                    "bootstrap: no intervals for a regression snapshot (it has no classes "
                    "to resample within)"
                )
            return res
        if kind == "ood":
            return self.oods.result(snap, self.progress)
        centres, label, extra = None, "own", []
        partner = self.partners[snap.name]
        if partner is not None:
            pprep, pfirst = self.first_of(partner)
        prep = prepare_snapshot(snap, self.class_names, self.labels_seen)
        if partner is not None:
            if list(pprep.class_names) == list(prep.class_names):
                centres, label = pfirst.class_means(), f"train:{partner.name}"
            else:
                extra.append(f"NCC uses this split's own means: {partner.name} has other classes")
        ride, passes = self.oods.id_rider(snap, self.nci_alpha), None
        if ride is not None:  # the ID rows' OOD scores ride pass 2
            passes = run_passes(prep, ncc_centres=centres, riders=ride, **o)
        res = snapshot_result(
            snap, prep, passes, per_class=per_class, ncc_label=label, ncc_centres=centres, **o
        )
        if centres is not None:
            extra += _unscored_classes(centres, res, partner.name)
        res.warnings[:0] = extra
        self.oods.add_nc5(res, snap, self.progress, self.nci_alpha)
        ids = passes.riders[0] if passes is not None and passes.riders else None
        self.oods.add_scores(res, snap, prep, self.nci_alpha, self.progress, ids=ids)
        replicates, seed = self.bootstrap
        if replicates is not None:
            c, k, m = o["center"], o["min_class_count"], o["memory_limit"]
            res.bootstrap = bootstrap_intervals(prep, res, centres, c, k, replicates, seed, m)
        return res


def _unscored_classes(centres, res: SnapshotResult, partner: str) -> list[str]:
    """A warning when NCC scores against another split's means and a class with samples
    here has none there: no centre can be nearest for its rows, which count as NCC errors
    (accuracy_ncc, nc4_ncc_mismatch and ncc_agreement say so only through this line)."""
    undefined = ~np.isfinite(np.asarray(centres, dtype=np.float64)).all(axis=1)
    counts = list(res.class_counts)
    names = list(res.class_names) if res.class_names else list(range(len(counts)))
    rows = [i for i in np.flatnonzero(undefined) if i < len(counts) and counts[i] > 0]
    if not rows:
        return []
    shown = ", ".join(clip(str(names[i]), 40) for i in rows[:5])
    more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
    n = sum(counts[i] for i in rows)
    return [
        f"NCC with the means of {clip(partner)}: class(es) {shown}{more} have no samples "
        f"there; their {n} row(s) here count as NCC errors"
    ]


class LatestArrays:
    """Keeps the class-level arrays of the results a report's figures can show: per (task,
    split, layer), those of the latest epoch (all of them on a tie) and every result
    without an epoch; an earlier epoch's are released once a later one arrives
    (:meth:`~ncinspect.results.parts.ResultArrays.release`). The figures read the last
    epoch of a trajectory (``final_snapshot``, ``last_classified``): what they show does not
    change, and a file of many snapshots holds the arrays of one epoch per trajectory."""

    def __init__(self) -> None:
        self._latest: dict[tuple, list[SnapshotResult]] = {}

    def add(self, res: SnapshotResult) -> None:
        if res.epoch is None:
            return
        held = self._latest.setdefault((res.task, res.split, res.layer), [])
        if held and held[0].epoch > res.epoch:
            res.arrays.release()
            return
        if held and held[0].epoch < res.epoch:
            for old in held:
                old.arrays.release()
            held.clear()
        held.append(res)
