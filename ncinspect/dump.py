"""Snapshots: named views of one features/labels/weights/bias/outputs set plus metadata.

:func:`open_dump` recognises the container by content, builds its group tree and resolves
snapshots as spec/dump-format.md says: any group holding ``features`` (or an alias) is a
snapshot; ``labels`` are inherited from the nearest ancestor; ``weights``, ``bias``,
``outputs`` and ``params`` are inherited only from an ancestor of the same layer; metadata
is merged from the root down.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import AmbiguousArrayError, MissingArrayError, UnreadableFileError, UsageError
from .io.sources import ArraySource
from .io.tree import Node

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

_SPLITS = {"train", "test", "val", "valid", "validation", "eval", "holdout"}
_EPOCH_RE = re.compile(r"^(?:epoch|ep)_?(\d+)$", re.IGNORECASE)
_LAYER_RE = re.compile(r"^layer_?\d+$", re.IGNORECASE)

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: prefixes that wrapped PyTorch modules add to state-dict names, ignored when matching
#: aliases (DistributedDataParallel / DataParallel, torch.compile)
_MODULE_PREFIXES = ("module.", "_orig_mod.")


def _torch_pickle_error(path: str) -> UnreadableFileError:
    return UnreadableFileError(
        f"{path}: is a PyTorch pickle (torch.save); ncinspect never unpickles files. Convert it "
        "where you trust it, in two lines: `import torch; from safetensors.torch import "
        "save_file` then `save_file({k: v.detach().contiguous() for k, v in "
        f"torch.load({os.path.basename(path)!r}, weights_only=True).items()}}, "
        "'dump.safetensors')`; or write the dump with ncinspect.DumpWriter"
    )


def _zip_holds_pickle(path: str) -> bool:
    """A zip whose members include ``data.pkl``: what torch.save (and torch.jit.save) write."""
    import zipfile

    from .io.npz import ZIP_ERRORS

    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except ZIP_ERRORS:  # the NPZ reader reports what is wrong with the archive
        return False
    return any(n == "data.pkl" or n.endswith("/data.pkl") for n in names) and not any(
        n.endswith(".npy") for n in names
    )


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


def detect_format(path: str) -> str:
    """Return ``"hdf5"``, ``"npz"`` or ``"safetensors"`` from the file's content (not its
    suffix). PyTorch pickles (``torch.save``: a zip holding ``data.pkl``, or a bare pickle)
    are recognised and refused, never loaded."""
    from .io.paths import check_input_file
    from .io.safetensors import is_safetensors

    check_input_file(path)  # a FIFO or device is refused before open() could block on it
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(16)
            if size == 0:
                raise UnreadableFileError(f"{path}: file is empty (0 bytes)")
            if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
                if _zip_holds_pickle(path):
                    raise _torch_pickle_error(path)
                return "npz"
            if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
                raise _torch_pickle_error(path)  # pickle protocol 2-5 header
            if is_safetensors(head, size):
                return "safetensors"
            offset = 0
            while offset + 8 <= size:  # HDF5 superblock at 0, 512, 1024, 2048, ...
                f.seek(offset)
                if f.read(8) == _HDF5_SIGNATURE:
                    return "hdf5"
                offset = 512 if offset == 0 else offset * 2
    except FileNotFoundError:
        raise UnreadableFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableFileError(f"{path}: is a directory, not a dump file") from None
    except PermissionError:
        raise UnreadableFileError(f"{path}: permission denied") from None
    except OSError as exc:
        raise UnreadableFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    raise UnreadableFileError(
        f"{path}: not an HDF5 or NPZ (or safetensors) dump (starts with bytes {head[:8]!r}; "
        "expected the HDF5 signature, a zip archive or a safetensors header)"
    )


def _natural_key(name: str) -> tuple:
    """Sort key that orders ``classifier.10`` after ``classifier.6``."""
    return tuple(
        (1, int(part), "") if part.isdigit() else (0, 0, part) for part in re.split(r"(\d+)", name)
    )


def _open_for_writing(h5file, notes: list[str]) -> bool:
    """True when a writer holds the file open: in another process (the lock was held, see
    :func:`ncinspect.io.hdf5.open_h5`) or in this one (HDF5 then shares the writer's handle)."""
    import h5py

    if any(n.endswith("the snapshot being written may be incomplete") for n in notes):
        return True
    try:
        return h5file.id.get_intent() & h5py.h5f.ACC_RDWR != 0
    except (OSError, RuntimeError, ValueError):
        return False


def _nearest(node: Node, key: str, parse_component) -> Any:
    """The value of ``key`` for ``node``: walking from the node up to the root, the first group
    that has the ``key`` attribute or a path component that ``parse_component`` recognises."""
    for anc in node.ancestors():
        value = anc.attrs.get(key)
        if value is not None:
            return value
        name = anc.path.rstrip("/").rsplit("/", 1)[-1]
        parsed = parse_component(name) if name else None
        if parsed is not None:
            return parsed
    return None


def _layer_of(node: Node) -> str | None:
    value = _nearest(node, "layer", lambda part: part if _LAYER_RE.match(part) else None)
    return None if value is None else str(value)


def _parse_epoch(part: str) -> int | None:
    m = _EPOCH_RE.match(part)
    return int(m.group(1)) if m and len(m.group(1)) < 30 else None


def _as_epoch(value: Any) -> int | None:
    """An ``epoch`` attribute as an int: integers and integral finite floats; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit() and len(value) < 30:
        return int(value)
    return None


def _epoch_of(node: Node) -> int | None:
    for anc in node.ancestors():  # nearest first; non-integer metadata falls back to names
        epoch = _as_epoch(anc.attrs.get("epoch"))
        if epoch is not None:
            return epoch
        name = anc.path.rstrip("/").rsplit("/", 1)[-1]
        if name and _parse_epoch(name) is not None:
            return _parse_epoch(name)
    return None


_OOD_PART_RE = re.compile(r"^ood(?:_.+)?$", re.IGNORECASE)


def _split_part(part: str) -> str | None:
    """A path component naming a split (``train``, ``test``, ..., ``ood``, ``ood_<name>``)."""
    if part.lower() in _SPLITS:
        return part.lower()
    return part if _OOD_PART_RE.match(part) else None


def _split_of(node: Node) -> str | None:
    value = _nearest(node, "split", _split_part)
    return None if value is None else str(value)


def _is_ood(split: str | None) -> bool:
    from .metrics.ood import is_ood_split

    return is_ood_split(split)


class Dump:
    """An open dump file: its group tree and its snapshots. Use as a context manager."""

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
        self.notes: list[str] = []
        self._h5 = None
        if self.format == "hdf5":
            from .io.hdf5 import open_h5, read_h5_tree
            from .io.probe import probe_hdf5

            probe_hdf5(self.path, allow_external=self.allow_external, memory_limit=memory_limit)
            self._h5 = open_h5(self.path, self.notes)
            try:
                self.being_written = _open_for_writing(self._h5, self.notes)
                self.tree = read_h5_tree(
                    self._h5,
                    self.path,
                    allow_external=self.allow_external,
                    notes=self.notes,
                    memory_limit=memory_limit,
                    broken=self._broken if self.being_written else None,
                )
            except Exception:
                self.close()
                raise
        elif self.format == "safetensors":
            from .io.safetensors import read_safetensors_tree

            self.tree = read_safetensors_tree(self.path, self.notes)
        else:
            from .io.npz import read_npz_tree

            self.tree = read_npz_tree(self.path, self.notes, memory_limit=memory_limit)
        self._check_explicit_keys()
        self.snapshots = self._resolve()

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
    def _names_for(self, role: str) -> tuple[str, ...]:
        if role in self.keys:
            return (self.keys[role],)
        names = ALIASES[role]
        # a wrapped module's state dict prefixes every name (module.fc.weight)
        names = names + tuple(p + n for p in _MODULE_PREFIXES for n in names)
        # dotted state-dict names may also be stored as nested groups (classifier/weight)
        return names + tuple(n.replace(".", "/") for n in names if "." in n)

    def _find(self, node: Node, role: str) -> ArraySource | None:
        found = [(n, node.lookup(n)) for n in self._names_for(role)]
        found = [(n, s) for n, s in found if s is not None]
        if len(found) > 1:
            names = " and ".join(repr(n) for n, _ in found)
            raise AmbiguousArrayError(
                f"{self.path}:{node.path}: both {names} are present as {role}; "
                f"choose one with --{role}-key"
            )
        return found[0][1] if found else None

    def _inherit(self, node: Node, role: str, *, same_layer: bool) -> ArraySource | None:
        layer = _layer_of(node)
        for anc in node.ancestors():
            src = self._find(anc, role)
            if src is not None:
                if same_layer and _layer_of(anc) != layer:
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
        layer = _layer_of(node)
        for anc in node.ancestors():
            group = anc.children.get("params")
            if group is not None and group.arrays:
                if _layer_of(anc) != layer:
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

    def _resolve(self) -> list[Snapshot]:
        snaps: list[Snapshot] = []
        incomplete: list[str] = []
        for node in self.tree.walk():
            features = self._find(node, "features")
            if features is None:
                continue
            labels = self._inherit(node, "labels", same_layer=False)
            if labels is None and self.being_written and not _is_ood(_split_of(node)):
                incomplete.append("no labels yet")
                self.notes.append(
                    f"{self.path}: snapshot {node.path} skipped: it is being written "
                    "(no labels yet)"
                )
                continue
            if _is_ood(_split_of(node)):  # OOD sets need no labels; others' rows are not theirs
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
                epoch=_epoch_of(node),
                split=_split_of(node),
                layer=_layer_of(node),
                notes=self.notes,
            )
            problem = self._incomplete(snap, node) if self.being_written else None
            if problem is not None:
                incomplete.append(problem)
                self.notes.append(
                    f"{self.path}: snapshot {node.path} skipped: it is being written ({problem})"
                )
                continue
            snaps.append(snap)
        if not snaps and incomplete:
            raise UnreadableFileError(
                f"{self.path}: the file is being written and has no complete snapshot yet "
                f"({incomplete[0]})"
            )
        if not snaps:
            raise MissingArrayError(
                f"{self.path}: no features array found (tried {self._tried('features')} in "
                f"every group); the file holds: {self.describe_arrays()}; name the features "
                "array with --features-key (and the others with --labels-key, --weights-key, "
                "--bias-key, --outputs-key)"
            )
        return snaps

    def _tried(self, role: str) -> str:
        if role in self.keys:
            return repr(self.keys[role])
        return ", ".join(ALIASES[role]) + " (also with a module. prefix)"

    def _classifier_fallback(self, node: Node, d: int, outputs: ArraySource | None):
        """The classifier of a PyTorch state dict whose names match no alias: the last
        ``*.weight`` of shape (C, d), with d the features' width (and its ``*.bias`` of shape
        (C,) when there is one), in the nearest group of the snapshot's layer that has one.
        Returns ``(weights, bias or None)`` or None; the choice is recorded in the notes."""
        layer = _layer_of(node)
        C_out = outputs.shape[1] if outputs is not None and len(outputs.shape) == 2 else None
        for anc in node.ancestors():
            if _layer_of(anc) != layer:
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
                candidates.append((_natural_key(name), name, src, bias))
            if candidates:
                _, name, src, bias = max(candidates, key=lambda c: c[0])
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

    def _check_explicit_keys(self) -> None:
        """A name given with --<role>-key must exist somewhere: a typo is an error, not a null."""
        for role, name in self.keys.items():
            if not any(node.lookup(name) is not None for node in self.tree.walk()):
                raise MissingArrayError(
                    f"{self.path}: --{role}-key {name!r} names no array in the file; "
                    f"the file holds: {self.describe_arrays()}"
                )

    def describe_arrays(self, limit: int = 12) -> str:
        items = []
        for node in self.tree.walk():
            for name, src in sorted(node.arrays.items()):
                items.append(f"{node.path.rstrip('/')}/{name} {src.shape}")
        if not items:
            return "no arrays"
        more = f" and {len(items) - limit} more" if len(items) > limit else ""
        return ", ".join(items[:limit]) + more

    def select(self, pattern: str | None = None) -> list[Snapshot]:
        """Snapshots whose path matches the glob ``pattern`` (all when None)."""
        if not pattern:
            return list(self.snapshots)
        pats = [p.strip() for p in pattern.split(",") if p.strip()]
        out = [
            s
            for s in self.snapshots
            if any(
                fnmatch.fnmatchcase(s.name, p)
                or fnmatch.fnmatchcase(s.name.lstrip("/"), p.lstrip("/"))
                for p in pats
            )
        ]
        if not out:
            names = ", ".join(s.name for s in self.snapshots[:10])
            raise UsageError(f"{self.path}: no snapshot matches {pattern!r}; snapshots: {names}")
        return out


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
    return Dump(path, keys=keys, allow_external=allow_external, memory_limit=memory_limit)
