"""Snapshots: named views of one features/labels/weights/bias/outputs set plus metadata.

:func:`open_dump` recognises the container by content, builds its group tree and resolves
snapshots as spec/dump-format.md says: any group holding ``features`` (or an alias) is a
snapshot; ``labels`` are inherited from the nearest ancestor; ``weights``, ``bias``,
``outputs`` and ``params`` are inherited only from an ancestor of the same layer; metadata
is merged from the root down.
"""

from __future__ import annotations

import contextlib
import fnmatch
import numbers
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    AmbiguousArrayError,
    MissingArrayError,
    NCInspectError,
    UnreadableFileError,
    UsageError,
)
from .io.detect import detect_format
from .io.names import as_epoch, epoch_of, is_ood, layer_of, natural_key, split_of
from .io.paths import shown
from .io.sources import ArraySource
from .io.tree import Node, refuse_lookalike_names, unfinished
from .text import clip

__all__ = ["ALIASES", "Snapshot", "Dump", "open_dump", "detect_format"]

ROLES = ("features", "labels", "weights", "bias", "outputs")

#: Names accepted on read for each array role, canonical name first.
ALIASES: dict[str, tuple[str, ...]] = {
    "features": ("features", "H", "feats", "embeddings", "penultimate"),
    "labels": ("labels", "y", "targets", "label"),
    "weights": ("weights", "W", "classifier.weight", "fc.weight", "head.weight"),
    "bias": ("bias", "b", "classifier.bias", "fc.bias", "head.bias"),
    "outputs": ("outputs", "logits"),
}

_LIVE_RETRIES = 3  #: reads again of a file a writer holds open, when one read fails
_LIVE_WAIT = 0.1  #: seconds before the first of them (then twice, three times as long)

#: prefixes that wrapped PyTorch modules add to state-dict names, ignored when matching
#: aliases (DistributedDataParallel / DataParallel, torch.compile)
_MODULE_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class Snapshot:
    """One analysable set of arrays in a dump.

    Arrays are :class:`~ncinspect.io.sources.ArraySource` objects read lazily in row chunks;
    the file must stay open (inside ``with open_dump(...)``) while they are read.
    """

    file: str
    name: str
    features: ArraySource
    labels: ArraySource | None  # None only for an OOD snapshot (split ood / ood_<name>)
    weights: ArraySource | None = None
    bias: ArraySource | None = None
    outputs: ArraySource | None = None
    params: dict[str, ArraySource] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    #: the class order (name of each row of W), inherited like labels; or None
    class_names: ArraySource | None = None
    epoch: int | None = None
    split: str | None = None
    layer: str | None = None
    notes: list[str] = field(default_factory=list)


class _Names:
    """The names one role may have, indexed so that a group is asked only about the names
    that can be in it (a group holds few arrays; a role has up to ~30 names)."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        #: first path component -> the names (with their position) that start with it
        self.first: dict[str, list[tuple[int, str]]] = {}
        for i, name in enumerate(names):
            parts = [p for p in name.split("/") if p]
            if parts:
                self.first.setdefault(parts[0], []).append((i, name))

    def present(self, node: Node) -> list[tuple[str, ArraySource]]:
        """``(name, array)`` of every name found below ``node``, in the order of the names."""
        first, arrays, children = self.first, node.arrays, node.children
        if len(arrays) + len(children) <= len(first):
            keys = [key for key in (*arrays, *children) if key in first]
        else:  # a group of many members (the root of thousands of snapshots): ask the names
            keys = [key for key in first if key in arrays or key in children]
        if not keys:
            return []
        hits = {hit for key in keys for hit in first[key]}
        found = [(i, name, node.lookup(name)) for i, name in sorted(hits)]
        return [(name, src) for _, name, src in found if src is not None]

    def dangling(self, node: Node) -> list[str]:
        """The names of the role that are links to nothing below ``node`` (HDF5 dangling
        soft links: a ``features`` that points at a deleted dataset)."""
        out = []
        for name in self.names:
            *groups, last = [p for p in name.split("/") if p] or [""]
            where: Node | None = node
            for part in groups:
                where = where.children.get(part) if where is not None else None
            if where is not None and last in where.dangling:
                out.append(name)
        return out


def spellings(name: str) -> list[str]:
    """``name`` and every spelling of it with some of its dots stored as group separators
    (``fc.weight``, ``fc/weight``; ``module.fc.weight``, ``module/fc.weight``, ...), the
    name itself first: each names the same state-dict entry. A name of more than 4 dots
    has two spellings, all dots or none."""
    dots = [i for i, c in enumerate(name) if c == "."]
    if len(dots) > 4:
        return [name, name.replace(".", "/")]
    out = []
    for mask in range(1 << len(dots)):
        chars = list(name)
        for bit, i in enumerate(dots):
            if mask >> bit & 1:
                chars[i] = "/"
        out.append("".join(chars))
    return out


def _timed_out(exc: Exception) -> bool:
    from .io.probe import ProbeTimeout

    return isinstance(exc, ProbeTimeout)


class Dump:
    """An open dump file: its group tree and its snapshots. Use as a context manager."""

    _has_dangling = False  #: the HDF5 tree holds a link to nothing (set when it is read)

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        keys: dict[str, str] | None = None,
        allow_external: bool = False,
        memory_limit: int | None = None,
    ):
        self.path = os.fspath(path)
        self.allow_external = bool(allow_external)
        self.memory_limit = memory_limit
        self.being_written = False
        self._broken: list[tuple[str, str, str]] = []  # unreadable while being written
        self.keys = {k: v for k, v in (keys or {}).items() if v}
        unknown = set(self.keys) - set(ROLES)
        if unknown:
            raise UsageError(f"unknown array role(s) {sorted(unknown)}; expected one of {ROLES}")
        self.format = detect_format(self.path)
        self._h5 = None
        for attempt in range(_LIVE_RETRIES + 1):
            self.notes: list[str] = []
            self._broken.clear()
            self._names: dict[str, _Names] = {}  # the names of each role, indexed for _find
            self._of_node: dict[tuple[int, str], str | None] = {}  # layer/split of each group
            #: what _find gave for each (group, role): the groups above the snapshots are
            #: asked about each inherited role once per snapshot below them
            self._found: dict[tuple[int, str], ArraySource | None] = {}
            try:
                self._open()
                break
            except UsageError:
                raise
            except NCInspectError as exc:
                # a file a writer holds open can be read between two of its metadata writes
                # (HDF5 without SWMR): read it again before calling it broken (not after the
                # probe's child ran out of time: the whole allowance was waited already)
                if not self.being_written or attempt == _LIVE_RETRIES or _timed_out(exc):
                    raise
                time.sleep(_LIVE_WAIT * (attempt + 1))

    def _open(self) -> None:
        """Read the file's tree and resolve its snapshots (the handle closed on failure)."""
        if self.format == "hdf5":
            from .io.probe import start_probe

            probe = start_probe(
                self.path, allow_external=self.allow_external, memory_limit=self.memory_limit
            )
            try:
                self._read_h5(probe)
            finally:
                if probe is not None:
                    probe.close()
        elif self.format == "safetensors":
            from .io.safetensors import read_safetensors_tree

            self.tree = read_safetensors_tree(self.path, self.notes, memory_limit=self.memory_limit)
        else:
            from .io.npz import read_npz_tree

            self.tree = read_npz_tree(self.path, self.notes, memory_limit=self.memory_limit)
        nodes = list(self.tree.walk())  # one walk (each sorts every group's children)
        # HDF5 links to nothing: asked about by _find only when the file has any
        self._has_dangling = self.format == "hdf5" and any(n.dangling for n in nodes)
        try:  # a refused file is not left open (the caller gets no object to close)
            refuse_lookalike_names(self.tree, self.path, nodes=nodes)
            self._check_explicit_keys()
            self.snapshots = self._resolve(nodes)
        except BaseException:
            self.close()
            raise

    def _read_h5(self, probe) -> None:
        """Open the HDF5 file and walk its tree, each step after the probe's child has
        taken it without hanging or crashing (:mod:`ncinspect.io.probe`); the child's end
        is waited for before anything else reads the file."""
        from .io.h5file import open_for_writing as _open_for_writing
        from .io.hdf5 import open_h5, read_h5_tree

        if probe is not None:
            probe.step()  # the child has opened the file
        self._h5 = open_h5(self.path, self.notes)
        try:
            self.being_written = _open_for_writing(self._h5, self.notes)
            self.tree = read_h5_tree(
                self._h5,
                self.path,
                allow_external=self.allow_external,
                notes=self.notes,
                memory_limit=self.memory_limit,
                broken=self._broken if self.being_written else None,
                step=None if probe is None else probe.step,
            )
            if probe is not None:
                probe.finish()
        except Exception:
            self.close()
            raise

    def __enter__(self) -> Dump:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._h5 is not None:
            try:
                self._h5.close()
            finally:
                self._h5 = None

    # resolution -------------------------------------------------------------------------
    def _layer(self, node: Node) -> str | None:
        """:func:`layer_of` ``node``, worked out once per group (asked many times per
        snapshot: for each role inherited and each group above it)."""
        key = (id(node), "layer")
        if key not in self._of_node:
            self._of_node[key] = layer_of(node)
        return self._of_node[key]

    def _split(self, node: Node) -> str | None:
        """:func:`split_of` ``node``, worked out once per group."""
        key = (id(node), "split")
        if key not in self._of_node:
            self._of_node[key] = split_of(node)
        return self._of_node[key]

    def _names_for(self, role: str) -> tuple[str, ...]:
        if role in self.keys:
            return (self.keys[role],)
        names = ALIASES[role]
        # a wrapped module's state dict prefixes every name (module.fc.weight), and a
        # compiled model wrapped again both (module._orig_mod.fc.weight)
        prefixes = _MODULE_PREFIXES + tuple(
            a + b for a in _MODULE_PREFIXES for b in _MODULE_PREFIXES if a != b
        )
        names = names + tuple(p + n for p in prefixes for n in names)
        # dotted state-dict names may also be stored as nested groups, at any of their
        # dots (classifier/weight, module.fc/weight): every spelling is the same array
        return tuple(dict.fromkeys(s for n in names for s in spellings(n)))

    def _find(self, node: Node, role: str) -> ArraySource | None:
        key = (id(node), role)  # the tree outlives the resolution: ids are not reused
        if key in self._found:
            return self._found[key]
        found = self._found[key] = self._lookup(node, role)
        return found

    def _lookup(self, node: Node, role: str) -> ArraySource | None:
        names = self._names.get(role)
        if names is None:
            names = self._names[role] = _Names(self._names_for(role))
        found = names.present(node)
        if found and self._has_dangling:
            broken = names.dangling(node)
            if broken:  # a name of the role leads nowhere: which one was meant is unknown
                raise AmbiguousArrayError(
                    f"{self.path}:{node.path}: {found[0][0]!r} is present as {role} and "
                    f"{clip(broken[0])!r} beside it is a link to nothing (dangling) or to "
                    "a named datatype, not an array; "
                    "ncinspect does not pick one: remove the link or choose with "
                    f"--{role}-key"
                )
        if len(found) > 1:
            names = " and ".join(repr(n) for n, _ in found)
            raise AmbiguousArrayError(
                f"{self.path}:{node.path}: both {names} are present as {role}; "
                f"choose one with --{role}-key"
            )
        return found[0][1] if found else None

    def _inherit(self, node: Node, role: str, *, same_layer: bool) -> ArraySource | None:
        layer = self._layer(node)
        for anc in node.ancestors():
            src = self._find(anc, role)
            if src is not None:
                if same_layer and self._layer(anc) != layer:
                    return None
                return src
        return None

    def _class_names(self, node: Node) -> ArraySource | None:
        """The nearest ``class_names`` array of ``node`` or an ancestor (inherited like labels)."""
        for anc in node.ancestors():
            src = anc.arrays.get("class_names")
            if src is not None:
                return src
        return None

    def _params(self, node: Node) -> dict[str, ArraySource]:
        layer = self._layer(node)
        for anc in node.ancestors():
            group = anc.children.get("params")
            if group is not None and group.arrays:
                if self._layer(anc) != layer:
                    return {}
                return dict(group.arrays)
        return {}

    def _incomplete(self, snap: Snapshot, node: Node) -> str | None:
        """Why ``snap`` is not complete yet (an object of it or of a group above it that
        could not be opened, row counts that disagree, rows not written yet), or None.
        Only asked of a file a writer holds open."""
        above = {anc.path for anc in node.ancestors()}
        roles = {name.split("/")[0] for names in ALIASES.values() for name in names}
        for group, name, reason in self._broken:
            if group in above and (not name or group == node.path or name in roles):
                return f"{group.rstrip('/')}/{name} cannot be read yet: {reason}"
        n = snap.features.shape[0] if snap.features.shape else 0
        for role in ("labels", "outputs"):
            src = getattr(snap, role)
            rows = src.shape[0] if src is not None and src.shape else None
            if src is not None and rows != n:
                return f"{role} have {rows} rows, features {n}"
        for src in (snap.features, snap.labels, snap.outputs, snap.weights, snap.bias):
            check = getattr(src, "check", None)
            if check is not None:
                try:
                    check()
                except UnreadableFileError as exc:
                    return str(exc)
        return None

    def _resolve(self, nodes: list[Node]) -> list[Snapshot]:
        """The snapshots of the groups ``nodes`` (the tree's walk, in its order)."""
        snaps: list[Snapshot] = []
        incomplete: list[str] = []
        for node in nodes:
            features = self._find(node, "features")
            if features is None:
                if node.in_progress:  # a snapshot begun but killed before its first rows
                    problem = unfinished(node, self.being_written)
                    incomplete.append(problem)
                    self.notes.append(f"{self.path}: snapshot {node.path} skipped: {problem}")
                continue
            labels = self._inherit(node, "labels", same_layer=False)
            if labels is None and self.being_written and not is_ood(self._split(node)):
                incomplete.append("no labels yet")
                self.notes.append(
                    f"{self.path}: snapshot {node.path} skipped: it is being written "
                    "(no labels yet)"
                )
                continue
            if is_ood(self._split(node)):  # OOD sets need no labels; others' rows are not theirs
                rows = features.shape[:1]
                if labels is not None and labels.shape[:1] != rows:
                    labels = None
            elif labels is None:
                raise MissingArrayError(
                    f"{self.path}:{node.path}: no labels for the features here or in any parent "
                    f"group (tried {self._tried('labels')}); the file holds: "
                    f"{self.describe_arrays()}; name the labels array with --labels-key"
                )
            weights = self._inherit(node, "weights", same_layer=True)
            bias = self._inherit(node, "bias", same_layer=True)
            outputs = self._inherit(node, "outputs", same_layer=True)
            if weights is None and "weights" not in self.keys and len(features.shape) == 2:
                found = self._classifier_fallback(node, features.shape[1], outputs)
                if found is not None:
                    weights, pair_bias = found
                    if pair_bias is not None and "bias" not in self.keys:
                        bias = pair_bias
            meta: dict[str, Any] = {}
            for anc in reversed(list(node.ancestors())):
                meta.update(anc.attrs)
            epoch = epoch_of(node)
            self._note_epoch(node, meta, epoch)
            snap = Snapshot(
                file=self.path,
                name=node.path,
                features=features,
                labels=labels,
                weights=weights,
                bias=bias,
                outputs=outputs,
                params=self._params(node),
                meta=meta,
                class_names=self._class_names(node),
                epoch=epoch,
                split=self._split(node),
                layer=self._layer(node),
                notes=self.notes,
            )
            reason = self._incomplete(snap, node) if self.being_written else None
            problem = unfinished(node, self.being_written)  # the writer's marker first
            if problem is None and reason is not None:
                problem = f"it is being written ({reason})"
            if problem is not None:
                incomplete.append(reason or problem)
                self.notes.append(f"{self.path}: snapshot {node.path} skipped: {problem}")
                continue
            snaps.append(snap)
        if not snaps and incomplete:
            now = "is being written and has no complete snapshot yet" if self.being_written else ""
            raise UnreadableFileError(
                f"{self.path}: the file {now or 'has no complete snapshot'} ({incomplete[0]})"
            )
        self._refuse_lookalike_values(snaps)
        if not snaps:
            raise MissingArrayError(
                f"{self.path}: no features array found (tried {self._tried('features')} in "
                f"every group); the file holds: {self.describe_arrays()}; name the features "
                "array with --features-key (and the others with --labels-key, --weights-key, "
                "--bias-key, --outputs-key)"
            )
        return snaps

    def _refuse_lookalike_values(self, snaps: list[Snapshot]) -> None:
        """Two splits or two layers whose names look the same (``test`` and ``test`` + a
        zero-width space, blanks around one, two Unicode normalisations) would be two
        trajectories, or two layers of the depth table, shown under one name: refused,
        naming both and a snapshot of each (the rule of
        :func:`~ncinspect.io.tree.refuse_lookalike_names`)."""
        from .io.class_names import shown_key

        for what in ("split", "layer"):
            first: dict[str, tuple[str, str]] = {}
            for snap in snaps:
                value = getattr(snap, what)
                if value is None:
                    continue
                value = str(value)
                key = value if value.isascii() and value == value.strip() else shown_key(value)
                seen = first.setdefault(key, (value, snap.name))
                if seen[0] != value:
                    raise AmbiguousArrayError(
                        f"{self.path}: the {what}s {ascii(clip(seen[0]))} (snapshot "
                        f"{clip(seen[1])}) and {ascii(clip(value))} (snapshot {clip(snap.name)}) "
                        "look the same (they differ only in invisible characters, blanks around "
                        "them or Unicode normalisation); ncinspect does not pick one: rename one"
                    )

    def _tried(self, role: str) -> str:
        if role in self.keys:
            return repr(self.keys[role])
        return ", ".join(ALIASES[role]) + " (also with a module. prefix)"

    def _note_epoch(self, node: Node, meta: dict[str, Any], epoch: int | None) -> None:
        """A note when the metadata ``epoch`` is not an integer (2.5, true, NaN, a list): it
        is not used, and the snapshot's epoch comes from its path or is none, which the
        report would otherwise show without saying why."""
        value = meta.get("epoch")
        if value is None or as_epoch(value) is not None:
            return
        then = "no epoch" if epoch is None else f"epoch {epoch} from its path"
        note = (
            f"{self.path}: snapshot {node.path}: metadata epoch={clip(repr(value), 60)} "
            f"is not an integer; ignored ({then})"
        )
        if note not in self.notes:
            self.notes.append(note)

    def _classifier_fallback(self, node: Node, d: int, outputs: ArraySource | None):
        """The classifier of a PyTorch state dict whose names match no alias: the last
        ``*.weight`` of shape (C, d), with d the features' width (and its ``*.bias`` of shape
        (C,) when there is one), in the nearest group of the snapshot's layer that has one.
        Returns ``(weights, bias or None)`` or None; the choice is recorded in the notes."""
        layer = self._layer(node)
        C_out = outputs.shape[1] if outputs is not None and len(outputs.shape) == 2 else None
        for anc in node.ancestors():
            if self._layer(anc) != layer:
                return None
            candidates = []
            for name, src in anc.arrays.items():
                if not name.endswith(".weight") or len(src.shape) != 2:
                    continue
                C = src.shape[0]
                if src.shape[1] != d or C < 2 or (C_out is not None and C != C_out):
                    continue
                bias = anc.arrays.get(name[: -len("weight")] + "bias")
                if bias is not None and tuple(bias.shape) != (C,):
                    continue
                candidates.append((natural_key(name), name, src, bias))
            if candidates:
                _, name, src, bias = max(candidates, key=lambda c: c[0])
                self._refuse_other_spellings(anc, name)
                also = f" with {bias.where} as its bias" if bias is not None else ""
                of = f"the last of {len(candidates)}" if len(candidates) > 1 else "the one"
                note = (
                    f"{src.where}: taken as the classifier weights{also} (no array is named "
                    f"weights or an alias; {of} *.weight of shape (C, d = {d}) in name order); "
                    "choose another with --weights-key"
                )
                if note not in self.notes:
                    self.notes.append(note)
                return src, bias
        return None

    def _refuse_other_spellings(self, node: Node, name: str) -> None:
        """The fallback's ``*.weight`` (and its ``*.bias``) must be the only spelling of its
        state-dict name in ``node``: ``l.weight`` beside ``l/weight`` is one entry stored
        twice, and ncinspect does not pick one."""
        for one in (name, name[: -len("weight")] + "bias"):
            for other in spellings(one)[1:]:
                if node.lookup(other) is not None:
                    raise AmbiguousArrayError(
                        f"{self.path}:{node.path}: both {clip(one)!r} and {clip(other)!r} are "
                        "present (one state-dict name spelled two ways); choose one with "
                        "--weights-key / --bias-key"
                    )

    def _check_explicit_keys(self) -> None:
        """A name given with --<role>-key must exist somewhere: a typo is an error, not a null."""
        for role, name in self.keys.items():
            if not any(node.lookup(name) is not None for node in self.tree.walk()):
                raise MissingArrayError(
                    f"{self.path}: --{role}-key {clip(repr(name))} names no array in the file; "
                    f"the file holds: {self.describe_arrays()}"
                )

    def describe_arrays(self, limit: int = 12) -> str:
        items = []
        for node in self.tree.walk():
            for name, src in sorted(node.arrays.items()):
                # escaped like every name a message quotes: a zero-width space in a listed
                # name would hide why --features-key 'feats' names no array
                items.append(f"{shown(node.path.rstrip('/') + '/' + name)} {src.shape}")
        if not items:
            return "no arrays"
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    def select(self, pattern: str | None = None) -> list[Snapshot]:
        """Snapshots whose path matches the glob ``pattern`` (all when None)."""
        if not pattern:
            return list(self.snapshots)
        pats = [p.strip() for p in pattern.split(",") if p.strip()]
        # a pattern without a wildcard (a name, or glob.escape of one: `check` asks for the
        # snapshots it needs by name) is a set lookup: thousands of names against thousands
        # of snapshots stay linear
        names, bare, globs = set(), set(), []
        for p in pats:
            if _is_literal(p):
                names.add(_unescape(p))
                bare.add(_unescape(p.lstrip("/")))
            else:
                globs.append(p)
        _check_globs(globs)
        out = [
            s
            for s in self.snapshots
            if s.name in names
            or s.name.lstrip("/") in bare
            or any(
                fnmatch.fnmatchcase(s.name, p)
                or fnmatch.fnmatchcase(s.name.lstrip("/"), p.lstrip("/"))
                for p in globs
            )
        ]
        if not out:
            names = ", ".join(clip(s.name, 60) for s in self.snapshots[:10])
            raise UsageError(
                f"{clip(self.path)}: no snapshot matches {clip(repr(pattern))}; snapshots: {names}"
            )
        return out


#: Bounds of the snapshot globs of one selection: fnmatch translates a glob in time
#: quadratic in its ``[`` (20,000 of them: ~15 s; a 10 MB glob in a TOML config: hours) and
#: compiles each glob once. Names without wildcards (set lookups) are not bounded.
MAX_GLOB_CHARS, MAX_GLOBS = 1_000, 1_000


def _check_globs(globs: list[str]) -> None:
    """A usage error for a selection of more than :data:`MAX_GLOBS` globs or a glob of more
    than :data:`MAX_GLOB_CHARS` characters, before fnmatch translates any."""
    if len(globs) > MAX_GLOBS:
        raise UsageError(
            f"{len(globs)} snapshot globs given; at most {MAX_GLOBS} globs with wildcards "
            "(names without wildcards are not limited)"
        )
    for glob in globs:
        if len(glob) > MAX_GLOB_CHARS:
            raise UsageError(
                f"snapshot glob {clip(repr(glob), 60)} has {len(glob)} characters; a glob with "
                f"wildcards has at most {MAX_GLOB_CHARS} (names without them are not limited)"
            )


#: a glob that matches one name only: no wildcard but one-character sets like ``[*]``
#: (what ``glob.escape`` writes; ``[!]`` is no set to fnmatch, so it is left to it)
_LITERAL = re.compile(r"(?:[^*?\[]|\[[^\]!]\])*")
_WILDCARD = re.compile(r"[*?\[]")
_ONE_CHAR_SET = re.compile(r"\[([^\]!])\]")


def _is_literal(pattern: str) -> bool:
    """Whether ``pattern`` matches :data:`_LITERAL`, in memory linear in its length (the
    regex's repeated group held ~140 bytes a character: 1.4 GB for a 10 MB name)."""
    return _WILDCARD.search(_ONE_CHAR_SET.sub("", pattern)) is None


def _unescape(pattern: str) -> str:
    """The one name a :data:`_LITERAL` pattern matches."""
    return _ONE_CHAR_SET.sub(lambda m: m.group(1), pattern)


def opened(source, **options):
    """A context giving an open :class:`Dump`: ``open_dump(source, **options)``, or
    ``source`` itself when it is one already (left open: whoever opened it closes it)."""
    if isinstance(source, Dump):
        return contextlib.nullcontext(source)
    return open_dump(source, **options)


def open_dump(
    path: str | os.PathLike,
    *,
    keys: dict[str, str] | None = None,
    allow_external: bool = False,
    memory_limit: int | None = None,
) -> Dump:
    """Open a dump (HDF5 or NPZ, recognised by content) read-only and resolve its snapshots.

    Parameters
    ----------
    path : str or PathLike
        The dump file.
    keys : dict, optional
        Explicit array names by role (``{"features": "penult_feats"}``) for dumps whose names
        are not in :data:`ALIASES`.
    allow_external : bool
        Follow HDF5 external links, external raw storage and virtual datasets (default
        False: a file that points outside itself is refused with
        :class:`~ncinspect.errors.ExternalDataError`, so a shared dump cannot make ncinspect
        read, and publish, other local files).
    memory_limit : int, optional
        Bytes one indivisible read (an HDF5 chunk, a compressed NPZ member) may decompress
        to (default: :func:`ncinspect.budget.read_bound`).
    """
    if memory_limit is not None and (
        isinstance(memory_limit, bool)
        or not isinstance(memory_limit, numbers.Integral)
        or memory_limit < 1
    ):
        from .text import clip

        raise UsageError(
            f"memory_limit must be an integer >= 1 (or None), got {clip(repr(memory_limit))}; "
            "memory_limit is a number of bytes"
        )
    return Dump(path, keys=keys, allow_external=allow_external, memory_limit=memory_limit)
