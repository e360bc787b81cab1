"""HDF5 reader: walks groups read-only and builds the container-neutral tree.

The walk never leaves the file unless the caller opts in (``allow_external``): every link is
looked at (``H5Lget_info``) before anything follows it, so an external link, a dataset whose
raw data live in another file (``external=``) or a virtual dataset is refused while the tree
is built, before any data or attribute of it is read, even when no snapshot uses it. Soft
links are resolved one path component at a time with the same checks; a group reached a
second time (a hard or soft link back to it, a link cycle) is listed once. The walk is
iterative, so deeply nested files are fine. Attributes declared larger than
:data:`ATTR_LIMIT` bytes are skipped with a note instead of being read.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ExternalDataError, UnreadableFileError
from .h5file import READ_ERRORS, first_line, open_h5
from .paths import check_input_file, shown
from .sources import H5Source, h5_dtype, memory_type
from .tree import IN_PROGRESS, Node, loads_json, plain

__all__ = [
    "open_h5",
    "read_h5_tree",
    "decode_attr",
    "ATTR_LIMIT",
    "READ_ERRORS",
    "MetadataMemoryError",
]

ATTR_LIMIT = 1 << 20  #: bytes one attribute may declare; larger ones are skipped with a note
MAX_ATTRS = 4096  #: attributes read per group; the rest are skipped with a note
MAX_SOFT_DEPTH = 16  #: soft links followed in a row before giving up (a cycle)
#: characters the paths of every object of one file may add up to (see _Walker.count_path)
MAX_PATH_CHARS = 32 << 20
#: soft links one resolution may follow in all (libhdf5's own default, ``H5L_NUM_LINKS``)
MAX_SOFT_LINKS = 16

_IN_PROGRESS_RAW = IN_PROGRESS.encode()

_OPT_IN = "pass --allow-external (allow_external=True) to follow it"


def decode_attr(value: Any) -> Any:
    """Turn an HDF5 attribute value into plain Python (JSON-friendly) data."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        if value.startswith("json:"):
            try:
                return plain(loads_json(value[5:], "attribute"))
            except (ValueError, RecursionError, UnreadableFileError):
                return value  # bad JSON, ints beyond the digit limit, nested too deeply: text
        return value
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "OSU":
            return [decode_attr(v) for v in value.tolist()]
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if type(value).__name__ == "Empty":  # h5py.Empty: an attribute with no value
        return None
    return plain(value)


class _Walker:
    def __init__(
        self,
        h5file,
        path: str,
        allow_external: bool,
        notes: list[str],
        memory_limit: int | None = None,
    ):
        import h5py

        from ..budget import chunk_bound

        self.max_read = chunk_bound(memory_limit)
        self.memory_limit = memory_limit
        self.broken: list[tuple[str, str, str]] | None = None
        self.step = None  # called before each group (see read_h5_tree)
        self.probing = False  # the probe's child: every read made, values not decoded
        self.explicit = memory_limit is not None
        self.h5py = h5py
        self.file = h5file
        self.path = path
        self.allow_external = allow_external
        self.notes = notes
        self.seen: dict[Any, str] = {}  # group id -> the tree path it was listed under
        self.path_chars = 0  # characters of the paths of every object listed so far
        self.shown_path = shown(path)  # the start of every message (formed once)
        try:  # open read-only, by no writer of this process (HDF5 would share its handle)
            self.fixed_extent = h5file.id.get_intent() == h5py.h5f.ACC_RDONLY
        except READ_ERRORS:
            self.fixed_extent = False

    def where(self, node_path: str, name: str = "") -> str:
        full = f"{node_path.rstrip('/')}/{name}" if name else node_path
        return f"{self.shown_path}:{shown(full)}"

    # links ---------------------------------------------------------------------------
    def follow(
        self,
        gid,
        raw: bytes,
        where: str,
        depth: int = 0,
        listed: bool = False,
        hops: list[int] | None = None,
    ):
        """The object (a low-level h5py id) the link ``raw`` of the group ``gid`` points to,
        or None when it points to nothing. External links are refused unless allowed; soft
        links are resolved one component at a time with the same checks. ``listed``: the
        name came from iterating the group (it exists; asked only when its link is not)."""
        h5l, h5o = self.h5py.h5l, self.h5py.h5o
        links = gid.links
        if listed:
            try:
                kind = links.get_info(raw).type
            except READ_ERRORS:
                if not links.exists(raw):
                    return None
                raise
        else:
            if not links.exists(raw):
                return None
            kind = links.get_info(raw).type
        if kind == h5l.TYPE_HARD:
            return self.wrap(h5o.open(gid, raw))
        if kind == h5l.TYPE_SOFT:
            hops = [0] if hops is None else hops
            hops[0] += 1
            if hops[0] > MAX_SOFT_LINKS:
                raise UnreadableFileError(
                    f"{where}: resolving it follows more than {MAX_SOFT_LINKS} soft links "
                    "(links that name other links several times over, or a link cycle)"
                )
            return self.resolve(gid, links.get_val(raw), where, depth + 1, hops)
        if kind == h5l.TYPE_EXTERNAL:
            filename, target = links.get_val(raw)
            if not self.allow_external:
                raise ExternalDataError(
                    f"{where}: is an external link to {shown(os.fsdecode(filename))}:"
                    f"{shown(os.fsdecode(target))}; ncinspect reads only the file it is given "
                    f"({_OPT_IN})"
                )
            self.check_external_file(os.fsdecode(filename), where, "external link target")
            try:
                return self.wrap(h5o.open(gid, raw))
            except READ_ERRORS:
                return None
        self.notes.append(f"{where}: a link of unknown type {kind}; skipped")
        return None

    def resolve(self, base, target: bytes, where: str, depth: int, hops: list[int] | None = None):
        """The object the path ``target`` names from the group ``base``, one component at a
        time. ``hops``: the soft links the resolution has followed so far, all paths and
        depths together (as libhdf5 counts them): a soft link whose path names another
        link 50 times, that one's path the next 50 times, five deep, made 50**5 lookups."""
        hops = [0] if hops is None else hops
        if depth > MAX_SOFT_DEPTH:
            raise UnreadableFileError(
                f"{where}: more than {MAX_SOFT_DEPTH} soft links in a row (a link cycle?)"
            )
        cur = self.file.id if target.startswith(b"/") else base
        for part in (p for p in target.split(b"/") if p and p != b"."):
            if not isinstance(cur, self.h5py.h5g.GroupID):
                return None
            cur = self.follow(cur, part, where, depth, hops=hops)
            if cur is None:
                return None
        return cur

    def wrap(self, oid):
        """``oid``: a GroupID, a DatasetID, or another id (a named datatype: not data)."""
        return oid

    def check_external_file(self, name: str, where: str, what: str) -> None:
        """With the opt-in: the file another file points to must be a regular file (never a
        FIFO or device, which would hang or never end). Every place HDF5 may look is checked."""
        base = os.path.dirname(os.path.abspath(self.path))
        candidates = [name] if os.path.isabs(name) else []
        for stem in dict.fromkeys((name, os.path.basename(name))):
            if not os.path.isabs(stem):
                candidates += [os.path.join(base, stem), os.path.abspath(stem)]
        for prefix_var in ("HDF5_EXT_PREFIX", "HDF5_VDS_PREFIX"):
            for prefix in filter(None, os.environ.get(prefix_var, "").split(os.pathsep)):
                candidates.append(os.path.join(prefix, os.path.basename(name)))
        existing = [c for c in dict.fromkeys(candidates) if os.path.lexists(c)]
        if not existing:
            raise UnreadableFileError(f"{where}: its {what} {shown(name)} does not exist")
        for cand in existing:
            check_input_file(cand, f"{where}: {what}")

    # datasets ------------------------------------------------------------------------
    def check_dataset(self, dsid, where: str) -> tuple[int, tuple[int, ...] | None, int]:
        """Refuse the dataset ``dsid`` (a DatasetID) when its values live outside the file
        (unless allowed); returns what its creation property list says of its storage,
        ``(layout, chunk shape or None, external file count)`` (:class:`H5Source` keeps it)."""
        h5d = self.h5py.h5d
        dcpl = dsid.get_create_plist()
        layout = dcpl.get_layout()
        if layout == h5d.VIRTUAL:
            sources = [
                (
                    os.fsdecode(dcpl.get_virtual_filename(i)),
                    os.fsdecode(dcpl.get_virtual_dsetname(i)),
                )
                for i in range(dcpl.get_virtual_count())
            ]
            listed = ", ".join(f"{shown(f, 60)}:{shown(d, 60)}" for f, d in sources[:3])
            if not self.allow_external:
                raise ExternalDataError(
                    f"{where}: is a virtual dataset whose values live in {listed or 'no source'}"
                    f"{' and more' if len(sources) > 3 else ''}; ncinspect reads only data "
                    f"stored in the file it is given ({_OPT_IN})"
                )
            if not sources:
                raise UnreadableFileError(f"{where}: virtual dataset without sources (all fill)")
            for filename, dsetname in sources:
                self.check_virtual_source(filename, dsetname, where)
            return layout, None, 0
        n_external = dcpl.get_external_count()
        if n_external:
            files = [dcpl.get_external(i) for i in range(n_external)]
            name0 = shown(os.fsdecode(files[0][0]))
            if not self.allow_external:
                raise ExternalDataError(
                    f"{where}: its raw data are stored outside the file, in {name0}"
                    f"{f' and {n_external - 1} more file(s)' if n_external > 1 else ''}; "
                    f"ncinspect reads only data stored in the file it is given ({_OPT_IN})"
                )
            held = 0
            for raw_name, offset, size in files:
                name = os.fsdecode(raw_name)
                self.check_external_file(name, where, "external storage file")
                path = name if os.path.isabs(name) else os.path.abspath(name)
                if os.path.exists(path):
                    held += max(0, min(size, os.path.getsize(path) - offset))
            need = int(np.prod(dsid.shape or (), dtype=np.int64)) * dsid.dtype.itemsize
            if held < need:
                raise UnreadableFileError(
                    f"{where}: its external storage files hold {held} of the {need} bytes "
                    "its shape declares"
                )
        chunks = dcpl.get_chunk() if layout == h5d.CHUNKED else None
        if chunks and self.memory_limit is not None and dcpl.get_nfilters():
            self.reserve_chunk(dsid, chunks)
        return layout, chunks, n_external

    def reserve_chunk(self, dsid, chunks) -> None:
        """Under a process limit: a filtered (compressed) chunk is inflated whole by libhdf5
        for any read of it, its stored bytes beside: that moment is reserved, so that the
        plan leaves room for it (``--memory-limit 290MiB`` peaked at 384 MiB on one 190 MiB
        gzip chunk, the plan's buffers on top of it)."""
        from ..budget import reserve_read

        inflated = int(np.prod(chunks, dtype=np.int64)) * dsid.dtype.itemsize
        try:
            count = dsid.get_num_chunks()
            stored = -(-dsid.get_storage_size() // count) if count else 0
        except READ_ERRORS:
            stored = inflated
        reserve_read(self.memory_limit, inflated + min(2 * stored, inflated))

    def check_virtual_source(self, filename: str, dsetname: str, where: str) -> None:
        missing = f"{where}: virtual dataset source {shown(filename)}:{shown(dsetname)}"
        if filename == ".":
            obj = self.resolve(self.file.id, dsetname.encode(), where, 0)
            if not isinstance(obj, self.h5py.h5d.DatasetID):
                raise UnreadableFileError(f"{missing} is missing (its values would be fill)")
            return
        base = os.path.dirname(os.path.abspath(self.path))
        path = filename if os.path.isabs(filename) else os.path.join(base, filename)
        if not os.path.lexists(path) and not os.path.isabs(filename):
            path = os.path.abspath(filename)
        if not os.path.lexists(path):
            raise UnreadableFileError(f"{missing} is missing (its values would be fill)")
        check_input_file(path, f"{where}: virtual dataset source")
        try:
            with self.h5py.File(path, "r") as src:
                sub = _Walker(src, path, False, [])
                obj = sub.resolve(src.id, dsetname.encode(), where, 0)
                if not isinstance(obj, self.h5py.h5d.DatasetID):
                    raise UnreadableFileError(f"{missing} is missing (its values would be fill)")
                sub.check_dataset(obj, f"{missing}")
        except ExternalDataError as exc:
            raise UnreadableFileError(f"{exc} (sources are not followed further)") from None
        except READ_ERRORS as exc:
            raise UnreadableFileError(f"{missing} is unreadable ({first_line(exc)})") from None

    # attributes ----------------------------------------------------------------------
    def attrs(self, oid, node_path: str) -> tuple[dict[str, Any], bool]:
        """The attributes of the object ``oid`` (a low-level id), and whether it carries
        the writer's :data:`IN_PROGRESS` marker (looked up by name when not all are read)."""
        h5a = self.h5py.h5a
        out: dict[str, Any] = {}
        marked = False
        count = h5a.get_num_attrs(oid)
        if count > MAX_ATTRS:
            self.notes.append(
                f"{self.where(node_path)}: {count} attributes; only the first {MAX_ATTRS} read"
            )
            marked = h5a.exists(oid, _IN_PROGRESS_RAW)
        for raw in self.attr_names(oid, min(count, MAX_ATTRS)):
            aid = h5a.open(oid, raw)
            if raw == _IN_PROGRESS_RAW:
                marked = True
            name = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else raw
            shape = aid.shape
            try:
                dtype = h5_dtype(aid.get_type())
                itemsize = dtype.itemsize
            except READ_ERRORS:
                self.notes.append(
                    f"{self.where(node_path)}: attribute {shown(name)!r} has an "
                    "unsupported type; skipped"
                )
                continue
            declared = int(np.prod(shape, dtype=np.int64)) * itemsize if shape else itemsize
            try:
                stored = aid.get_storage_size()
            except READ_ERRORS:  # h5py raises for a null (empty) attribute
                stored = 0
            if max(declared, stored) > ATTR_LIMIT:
                self.notes.append(
                    f"{self.where(node_path)}: attribute {shown(name)!r} declares "
                    f"{max(declared, stored)} bytes (over {ATTR_LIMIT}); skipped"
                )
                continue
            try:
                value = self.attr_value(oid, aid, raw, shape, dtype)
            except (MemoryError, *READ_ERRORS) as exc:
                if self.probing and is_allocation_failure(exc):
                    raise MetadataMemoryError(
                        f"{self.where(node_path)}: attribute {shown(name)!r} holds "
                        "variable-length values far larger than its declared size"
                    ) from None
                raise
            if dtype.hasobject:  # variable-length parts live in the file's heap, undeclared
                held = _held_bytes(value, ATTR_LIMIT - declared)
                if declared + held > ATTR_LIMIT:
                    self.notes.append(
                        f"{self.where(node_path)}: attribute {shown(name)!r} holds more than "
                        f"{ATTR_LIMIT} bytes of variable-length values (which its declared "
                        "size does not count); skipped"
                    )
                    del value
                    continue
            out[name] = value if self.probing else decode_attr(value)
        out.pop(IN_PROGRESS, None)  # the writer's marker is not metadata
        return out, marked

    def attr_names(self, oid, limit: int) -> list[bytes]:
        """The names of the first ``limit`` attributes of ``oid``, in name order, from one
        iteration (``H5Aiterate``, stopped at ``limit``). Opening attribute ``i`` by its
        index instead builds the table of every attribute of the object once per call when
        they are stored densely: 4096 opens of a group of 100,000 attributes took minutes
        (the probe refused a valid file as hanging)."""
        names: list[bytes] = []

        def take(name):
            names.append(name)
            return True if len(names) >= limit else None  # a value other than None stops

        if limit > 0:
            self.h5py.h5a.iterate(oid, take)
        return names

    def attr_value(self, oid, aid, raw, shape, dtype):
        """The value of the open attribute ``aid``: a number or an array of numbers read
        from it as h5py's ``attrs[name]`` reads them (a buffer of its dtype, then the item
        of a scalar), without opening it again; anything else (text, compound, empty, array
        types) through h5py's ``attrs[name]``."""
        if shape is None or dtype.kind not in "iuf" or dtype.subdtype is not None:
            return self.h5py.AttributeManager(_Bound(oid))[raw]
        arr = np.zeros(shape, dtype=dtype, order="C")
        aid.read(arr, mtype=memory_type(dtype))
        return arr[()] if arr.ndim == 0 else arr

    # the walk ------------------------------------------------------------------------
    def group(self, gid, node: Node) -> list[tuple[bytes, int]] | None:
        """Read the attributes of the group ``gid`` into ``node`` and list its links
        (sorted names); None when it cannot be read in a file a writer holds open."""
        try:
            attrs, node.in_progress = self.attrs(gid, node.path)
            node.attrs.update(attrs)
            names: list[bytes] = []
            gid.links.iterate(names.append)  # H5Literate: one call for the names
            names.sort()
        except READ_ERRORS as exc:
            if self.broken is None:
                raise
            self.broken.append((node.path, "", first_line(exc)))
            return None
        return names

    def count_path(self, node: Node, name: str) -> None:
        """Count the path of the object ``name`` of ``node`` before it is opened: every
        object the walk holds keeps its whole path (the tree's, and libhdf5's own for an
        open object), so groups nested deep with long names grow as the square of the
        depth (300 groups of 10,000-character names, a 3 MB file, took 1.4 GB). The paths
        of one walk may add up to :data:`MAX_PATH_CHARS` characters; more is refused."""
        self.path_chars += len(node.path) + 1 + len(name)
        if self.path_chars > MAX_PATH_CHARS:
            depth = node.path.count("/") + (node.path != "/")
            raise UnreadableFileError(
                f"{self.shown_path}:{shown(node.path)}: the paths of the file's groups and "
                f"arrays add up to more than {MAX_PATH_CHARS} characters (groups nested "
                f"{depth} deep here, names of up to {len(name)} characters); refused"
            )

    def build(self) -> Node:
        GroupID, DatasetID = self.h5py.h5g.GroupID, self.h5py.h5d.DatasetID
        root = Node("/")
        fid = self.file.id
        stack = [(fid, root)]
        self.seen[fid] = "/"
        step = self.step
        while stack:
            gid, node = stack.pop()
            if step is not None:
                step()  # one group: its attributes, its links, the objects they lead to
            names = self.group(gid, node)
            if names is None:
                continue
            children = []
            for raw in names:
                name = raw.decode("utf-8", "backslashreplace")
                self.count_path(node, name)
                where = "" if self.probing else self.where(node.path, name)  # for messages
                try:
                    obj = self.follow(gid, raw, where, listed=True)
                    if isinstance(obj, DatasetID):
                        layout = self.check_dataset(obj, where)
                        source = H5Source(
                            obj,
                            where,
                            max_read=self.max_read,
                            explicit=self.explicit,
                            layout=layout,
                            fixed_extent=self.fixed_extent,
                        )
                except READ_ERRORS as exc:
                    # a writer holds the file: what it is writing may not be readable yet
                    if self.broken is None:
                        raise
                    self.broken.append((node.path, name, first_line(exc)))
                    continue
                if obj is None:
                    self.notes.append(f"{where}: a link to nothing (dangling); skipped")
                    node.dangling.add(name)
                elif isinstance(obj, GroupID):
                    # one lookup of the group (h5py hashes an id under its lock at each call)
                    listed = len(self.seen)
                    first = self.seen.setdefault(obj, node.child_path(name))
                    if len(self.seen) == listed:  # listed before (under this path or another)
                        self.notes.append(
                            f"{where}: the same group as {shown(first)} (a second link or a "
                            "link cycle); listed once"
                        )
                        continue
                    children.append((obj, node.child(name)))
                elif isinstance(obj, DatasetID):
                    node.arrays[name] = source
                else:  # a named (committed) datatype: no values; as a role's name beside
                    # another of the role's names it is refused like a dangling link (it
                    # was skipped silently and the other name taken)
                    self.notes.append(f"{where}: a named datatype, not an array; skipped")
                    node.dangling.add(name)
            stack.extend(reversed(children))
        return root


class MetadataMemoryError(Exception):
    """The probe's child ran out of the memory it is allowed while reading metadata (a
    variable-length attribute whose values are far larger than it declares): the command
    refuses the file instead of making the same read (:mod:`ncinspect.io.probe`)."""


def is_allocation_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed allocation (Python's, or libhdf5's own message)."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return "alloc" in text or "h5mm" in text or "out of memory" in text


def _held_bytes(value: Any, cap: int) -> int:
    """Bytes of the text and sequences an attribute value read from variable-length types
    holds (counted until they pass ``cap``)."""
    total = 0
    stack = [value]
    while stack and total <= cap:
        v = stack.pop()
        if isinstance(v, (bytes, str)):
            total += len(v)
        elif isinstance(v, np.ndarray) and v.dtype.hasobject:
            stack.extend(v.ravel().tolist())
        elif isinstance(v, (np.ndarray, np.generic)) and not isinstance(v, np.void):
            total += v.nbytes
        elif isinstance(v, np.void):
            stack.append(v.item())
        elif isinstance(v, (tuple, list)):
            stack.extend(v)
        else:
            total += 8
    return total


class _Bound:
    """What h5py's AttributeManager needs of the object it reads from: its id."""

    __slots__ = ("id",)

    def __init__(self, oid):
        self.id = oid


def read_h5_tree(
    h5file,
    path: str,
    *,
    allow_external: bool = False,
    notes: list[str] | None = None,
    memory_limit: int | None = None,
    broken: list[tuple[str, str, str]] | None = None,
    step=None,
    probing: bool = False,
) -> Node:
    """Build the group tree of an open HDF5 file (see the module notes for what is refused).

    ``memory_limit`` bounds what one chunk of a dataset may decompress to (checked before
    the first read of it). With a ``broken`` list (for a file a writer holds open), objects
    that cannot be opened are left out and recorded there as ``(group path, name, reason)``
    (name ``""``: the group itself) instead of failing the walk. ``step()`` is called
    before each group is read, in the walk's order (the HDF5 probe paces the command's walk
    behind its child's with it, :class:`ncinspect.io.probe.Probe`); ``probing`` (the
    probe's child) makes every read of the walk but leaves attribute values undecoded
    (decoding reads nothing more: text and JSON are parsed in Python)."""
    walker = _Walker(h5file, path, allow_external, notes if notes is not None else [], memory_limit)
    walker.broken = broken
    walker.step = step
    walker.probing = probing
    try:
        return walker.build()
    except READ_ERRORS as exc:
        raise UnreadableFileError(
            f"{shown(path)}: cannot read the group tree ({first_line(exc)})"
        ) from None
    except RecursionError:
        raise UnreadableFileError(f"{shown(path)}: the group tree is nested too deeply") from None
