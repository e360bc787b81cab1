"""Write dumps: :class:`DumpWriter` appends snapshots to an HDF5 file batch by batch.

A trainer or evaluation loop never has to hold all N x d features in memory::

    with DumpWriter("run.h5") as w:                     # mode="w" to replace an old file
        w.write("labels", y_train)                      # once, inherited by every snapshot
        with w.snapshot("epoch_0010", epoch=10, split="train", weight_decay=5e-4) as snap:
            for xb in batches:
                snap.append(features=penultimate(xb), outputs=model(xb))
            snap.write(weights=W_last, bias=b_last)
        # leaving the block marks the snapshot complete (or call snap.finish())

The file is flushed after each batch and each snapshot, so a program that stops half way
(Ctrl-C, a crash, ``kill -9``) leaves a readable file holding the snapshots written so far.
Each flush is a commit a kill cannot tear (:mod:`ncinspect.io.journal`): the file on disk is
always as one commit left it, even when the kill lands inside libhdf5's own writes.
A snapshot is marked complete only when its writer is done with it: while it is written its
group carries the attribute ``ncinspect_in_progress`` (:data:`IN_PROGRESS`), which is deleted,
after a flush of everything written to it, by :meth:`SnapshotWriter.finish`, by leaving its
``with`` block without an exception, by opening the next snapshot with the same writer (a
loop writes one after the other; a group above the new one is kept open only when the new one
is another layer of it, written together with it: ``<snapshot>/layer_<k>``), or by closing the
writer normally (:meth:`DumpWriter.close`, or leaving ``with DumpWriter(...)`` without an
exception). A ``with`` block left by an exception leaves its snapshot marked for good (the
program may catch the error and go on: neither the next snapshot nor a normal close completes
it), and a snapshot that :meth:`SnapshotWriter.keep_until_finish` (a meter's pass 1) is
completed only by its own ``finish()``. Rows or arrays written to a finished snapshot mark it
in progress again, so a
program that writes several snapshots at once should call ``finish()`` on each. Readers skip
a snapshot that still carries it (or sits below a group that does), with a note: a snapshot
whose writer was killed mid-write is never analysed as if it were complete. Dumps written by
other programs carry no such attribute and are complete as they are. Dumps are written in
place (they are appended to); the reports ncinspect writes are atomic instead.

A writer never doubles a snapshot: rows are appended freely to the snapshots this writer
created, but a snapshot that already holds arrays written by an earlier writer (a script run
a second time) is refused unless the caller opts in with ``snapshot(name, append=True)`` /
``mode="append"`` (add rows) or ``snapshot(name, replace=True)`` / ``mode="w"`` (start over).

Values may be anything :func:`ncinspect.arrays.to_host` accepts: numpy arrays, torch tensors
(requiring grad, on a GPU, in bfloat16), or objects with ``__array__`` or ``__dlpack__``.
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..arrays import is_tensor, to_host
from ..errors import UnreadableFileError, UsageError
from .journal import interrupts_deferred
from .tree import IN_PROGRESS

__all__ = ["DumpWriter", "SnapshotWriter", "IN_PROGRESS"]


_DEFAULT_CHUNK_BYTES = 1 << 20  # ~1 MiB HDF5 chunks: good for row-chunked reads


_MODES = {"a": "a", "append": "a", "w": "w", "replace": "w", "x": "x"}


#: the most bytes one metadata value may take: HDF5 keeps attributes in the group's object
#: header, whose messages hold at most 64 KiB (larger values belong in an array: ``write``)
MAX_ATTR_BYTES = 60_000

#: the longest metadata key, in UTF-8 bytes (a key and its value share one header message)
MAX_KEY_BYTES = 4096

_INT64 = (-(2**63), 2**63 - 1)


def _attr_value(value: Any, where: str) -> Any:
    """A metadata value as something an HDF5 attribute holds, read back as given: numbers
    (ints beyond int64/uint64 as JSON text), text (text with a NUL, a lone surrogate or the
    ``json:`` prefix as JSON text), bytes as UTF-8 text, arrays of numbers; anything else
    (dicts, mixed lists, None, arrays of text) as JSON text with the ``json:`` prefix, every
    array, tensor and numpy scalar inside converted whole (never ``str`` of an array, which
    numpy shortens with ``...``). A value that cannot be stored (a cycle, nesting deeper than
    readers take, more than :data:`MAX_ATTR_BYTES`) is a :class:`UsageError` naming it."""
    from .tree import MAX_JSON_DEPTH

    if is_tensor(value) or (isinstance(value, np.ndarray) and value.ndim == 0):
        value = to_host(value, where)
        if value.ndim == 0:
            value = value.item()
    if isinstance(value, np.generic):
        value = value.item() if not isinstance(value, np.integer) else value
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = _utf8(bytes(value), where)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return value
    if isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            return value
        if 0 <= value < 2**64:
            return np.uint64(value)
        return _json_text(value, where, MAX_JSON_DEPTH)
    if isinstance(value, float):
        return value
    if isinstance(value, str):
        return _json_text(value, where, MAX_JSON_DEPTH) if _needs_json(value) else value
    if isinstance(value, np.ndarray) and value.dtype.kind in "iufb" and value.dtype.names is None:
        if value.nbytes > MAX_ATTR_BYTES:
            raise _too_large(where, value.nbytes)
        return value
    if isinstance(value, (list, tuple)) and value:
        if all(isinstance(v, str) and not _needs_json(v) for v in value):
            arr = np.array(value, dtype=object).astype(_str_dtype())
            size = sum(len(v.encode()) + 16 for v in value)
            if size > MAX_ATTR_BYTES:
                raise _too_large(where, size)
            return arr
        if all(
            isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_))
            and (not isinstance(v, int) or _INT64[0] <= v <= _INT64[1])
            for v in value
        ):
            arr = np.asarray(value)
            if arr.nbytes > MAX_ATTR_BYTES:
                raise _too_large(where, arr.nbytes)
            return arr
    return _json_text(value, where, MAX_JSON_DEPTH)


def _needs_json(text: str) -> bool:
    """Text an HDF5 string attribute cannot hold as given, or that readers would decode
    (the ``json:`` prefix): a NUL (HDF5 ends the string there), a lone surrogate (not UTF-8)."""
    return text.startswith("json:") or "\x00" in text or not _is_utf8(text)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"DumpWriter: {where} is bytes that are not UTF-8 text ({exc.reason} at byte "
            f"{exc.start}); store bytes as an array of uint8 (np.frombuffer(value, np.uint8))"
        ) from None


def _too_large(where: str, size: int) -> UsageError:
    return UsageError(
        f"DumpWriter: {where} takes {size} bytes; a metadata value holds at most "
        f"{MAX_ATTR_BYTES} (HDF5 keeps attributes in the group's header): store it as an "
        "array with write(...)"
    )


def _jsonable(value: Any, where: str, depth: int, limit: int) -> Any:
    """``value`` as plain JSON data: arrays, tensors and numpy scalars whole, bytes as UTF-8
    text, sets sorted, dict keys as text (two keys of one text refused), other objects as
    ``str``; deeper than ``limit`` (readers keep deeper JSON as text) or a cycle refused."""
    if is_tensor(value):
        value = to_host(value, where)
    nested = depth + (value.ndim - 1 if isinstance(value, np.ndarray) else 0)
    if nested > limit and isinstance(value, (np.ndarray, Mapping, list, tuple, set, frozenset)):
        raise UsageError(
            f"DumpWriter: {where} is nested more than {limit} levels deep (or holds itself); "
            "readers keep deeper JSON as text: flatten it"
        )
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "c":
            return [_jsonable(v, where, depth + 1, limit) for v in value.ravel().tolist()]
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _utf8(bytes(value), where)
    if isinstance(value, complex):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = k if isinstance(k, str) else _jsonable(k, where, depth + 1, limit)
            key = key if isinstance(key, str) else json.dumps(key)
            if key in out:
                raise UsageError(
                    f"DumpWriter: {where} has two keys written {key!r} (a number and its "
                    "text?); JSON holds one: rename one of them"
                )
            out[key] = _jsonable(v, where, depth + 1, limit)
        return out
    if isinstance(value, (set, frozenset)):
        items = [_jsonable(v, where, depth + 1, limit) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where, depth + 1, limit) for v in value]
    return str(value)


def _json_text(value: Any, where: str, limit: int) -> str:
    """``"json:" + JSON`` of ``value`` (see :func:`_jsonable`), refused past the size bound."""
    data = _jsonable(value, where, 1, limit)
    try:
        text = "json:" + json.dumps(data, sort_keys=True)
    except (ValueError, RecursionError, TypeError) as exc:  # ints beyond the digit limit
        raise UsageError(f"DumpWriter: {where} cannot be stored as JSON ({exc})") from None
    if len(text) > MAX_ATTR_BYTES:
        raise _too_large(where, len(text))
    return text


def _near(names: dict[str, str], part: str) -> list[str]:
    """The name of ``names`` (shown key -> name) that ``part`` may equal or look like, if any."""
    from .class_names import shown_key

    other = names.get(shown_key(part))
    return [] if other is None else [other]


def _check_compression(compression: Any) -> Any:
    """``compression`` if h5py can apply it, else a UsageError (before anything is written:
    h5py would refuse it at the first dataset, with the snapshot already marked)."""
    import h5py

    if compression is None or compression in ("gzip", "lzf"):
        return compression
    if compression == "szip" and h5py.h5z.filter_avail(h5py.h5z.FILTER_SZIP):
        return compression
    if isinstance(compression, (int, np.integer)) and not isinstance(compression, bool):
        if 0 <= compression <= 9:
            return int(compression)  # a gzip level
    raise UsageError(
        f"DumpWriter compression must be None, 'gzip', 'lzf' or a gzip level 0-9, got "
        f"{compression!r}"[:300]
    )


def _str_dtype():
    import h5py

    return h5py.string_dtype()


def _as_rows(name: str, array: Any, where: str) -> np.ndarray:
    arr = to_host(array, where)
    if arr.dtype.kind in "US":
        arr = arr.astype(object)
    if arr.dtype.kind == "O" and name not in ("labels", "class_names"):
        raise UsageError(f"DumpWriter: {where} has dtype object; expected numbers")
    if arr.dtype.kind == "O":
        arr = _object_labels(arr, where)
    if arr.dtype.kind not in "biufUSO":
        raise UsageError(f"DumpWriter: {where} has dtype {arr.dtype}; expected numbers or strings")
    return arr


def _object_labels(arr: np.ndarray, where: str) -> np.ndarray:
    """An object array of labels or class names as what it holds: integers as int64 (as
    text they would be names, and a classifier's row order lost), text as text; a mix of
    kinds, or values that are neither (None, floats, objects: ``str`` would make up a class
    ``'None'``), is refused."""
    items = arr.ravel().tolist()
    if items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        if min(items) < -(2**63) or max(items) > 2**63 - 1:
            raise UsageError(f"DumpWriter: {where} holds integers beyond int64")
        return np.asarray(items, dtype=np.int64).reshape(arr.shape)
    if all(isinstance(v, (str, bytes)) for v in items):
        return arr
    kinds = sorted({type(v).__name__ for v in items})
    raise UsageError(
        f"DumpWriter: {where} holds values of the types {', '.join(kinds)}; labels and class "
        "names are all integers or all text (str() would make up names such as 'None')"
    )


def _unique_names(arr: np.ndarray, where: str) -> None:
    """Refuse class names that name two classes alike, before anything is written (a reader
    would refuse the dump; per-class results are keyed by name)."""
    from ..errors import InvalidDataError
    from .class_names import check_unique_names

    names = [
        v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
        for v in np.asarray(arr, dtype=object).ravel().tolist()
    ]
    try:
        check_unique_names(names, where)
    except InvalidDataError as exc:
        raise UsageError(f"DumpWriter: {exc}") from None


def _bad_char(text: str) -> str | None:
    """What makes ``text`` unfit for a name: a control character (HDF5 ends a name at a NUL;
    a newline splits every listing) or a lone surrogate (not UTF-8); None when fit."""
    import unicodedata

    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cc":
            return f"a control character ({ch!r})"
        if cat == "Cs":
            return f"a lone surrogate ({ch!r}, not UTF-8 text)"
    return None


def _check_part(part: str, siblings: list[str], what: str, shown_name: str) -> None:
    """Refuse one component of a group or array name, or a metadata key, that readers would
    read as another name, refuse beside another, or that HDF5 stores as something else:
    ``..`` (the group above, or a group called ``..``), a control character or a lone
    surrogate, blanks around it, characters that show nothing or a spelling that Unicode
    normalisation changes (unless the file holds that exact name already), and a look-alike
    of a name the group holds (readers refuse the two: the whole file would be unreadable)."""
    from ..text import clip
    from .class_names import shown_key

    if part == ".." and what != "metadata key":
        raise UsageError(
            f"DumpWriter: {what} {clip(shown_name)!r} has a '..' component, which readers "
            "take for the group above or a group named '..': name the group itself"
        )
    bad = _bad_char(part)
    if bad:
        raise UsageError(f"DumpWriter: {what} {clip(ascii(shown_name))} holds {bad}")
    if part in siblings:
        return
    other = next((n for n in siblings if n != part and shown_key(n) == shown_key(part)), None)
    if other is not None:
        raise UsageError(
            f"DumpWriter: {what} {clip(ascii(shown_name))} looks the same as "
            f"{clip(ascii(other))}, which the group holds already (they differ only in "
            "invisible characters, blanks around them or Unicode normalisation); readers "
            "refuse the two: use the name as written there, or another name"
        )
    if not shown_key(part):
        raise UsageError(f"DumpWriter: {what} {clip(ascii(shown_name))} is blank")
    if shown_key(part) != part:
        raise UsageError(
            f"DumpWriter: {what} {clip(ascii(shown_name))} has blanks around it, characters "
            f"that show nothing or a spelling Unicode normalisation changes; write "
            f"{clip(ascii(shown_key(part)))} (readers take such names for look-alikes)"
        )


class SnapshotWriter:
    """Appends row batches and stores arrays and metadata of one snapshot group."""

    def __init__(self, writer: DumpWriter, group, *, continued: bool = False):
        self._writer = writer
        self._group = group
        self._name = group.name
        self._names_ok: set[str] = set()  # array names already checked (append)
        self._continued = continued
        self.finished = False
        self.explicit = False  # True: only finish() completes it (keep_until_finish)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        if exc_type is None:
            self.finish()
        else:
            # the block stopped half way: its rows are a part of the data, and neither the
            # next snapshot nor a normal close of the writer (the caller caught the error
            # and went on) may mark it complete
            self.abandon()

    @interrupts_deferred
    def finish(self) -> None:
        """Mark this snapshot complete: flush what was written, then delete the
        :data:`IN_PROGRESS` attribute (the last write), then flush again. Idempotent; writing
        to the snapshot again marks it in progress until the next ``finish``."""
        if self.finished or not self._writer.is_open:
            return
        self._writer._live()  # not from a forked child
        open_snaps = self._writer._open_snaps
        if open_snaps.get(self._group.name, self) is not self:
            self.finished = True  # a newer writer of the same group owns the marker
            return
        self._writer.flush()
        if IN_PROGRESS in self._group.attrs:
            del self._group.attrs[IN_PROGRESS]
        self._writer.flush()
        self.finished = True
        open_snaps.pop(self._group.name, None)

    def keep_until_finish(self) -> SnapshotWriter:
        """Let only :meth:`finish` mark this snapshot complete: opening another snapshot
        and the writer's normal close leave it marked in progress. For a writer whose rows
        are whole only at a moment it alone knows (a meter's pass 1 ends at ``next_pass``):
        a program that drops it half way, or catches an error and goes on, cannot have its
        part of the rows marked complete. Returns the snapshot writer."""
        self.explicit = True
        return self

    def abandon(self) -> None:
        """Leave this snapshot marked in progress for good: its writer's normal close no
        longer finishes it (a meter whose pass 1 was reset before it ended: its rows are a
        part of the data, whoever owns the writer). Writing to it again marks it again."""
        open_snaps = self._writer._open_snaps
        if open_snaps.get(self._group.name) is self:
            del open_snaps[self._group.name]
        self.finished = True

    def _started(self) -> None:
        """Mark the snapshot in progress again (more rows or arrays after a finish)."""
        if self.finished:
            self._writer._mark_in_progress(self._group)
            self._writer._open_snaps[self._group.name] = self
            self.finished = False

    @property
    def name(self) -> str:
        return self._name

    @interrupts_deferred
    def append(self, **batches: Any) -> None:
        """Append a batch of rows to per-sample arrays (``features``, ``labels``, ``outputs``...).

        Each keyword names a dataset in this snapshot; its first axis grows by the batch size.
        Batches of the same call must have the same number of rows.
        """
        self._writer._live()
        for name in batches:
            if name not in self._names_ok:  # checked once per snapshot writer: a batch loop
                self._writer._check_name(self._group, name, "array name", array=True)
                self._names_ok.add(name)
        rows = {
            name: _as_rows(name, b, self._writer._where(self._group, name))
            for name, b in batches.items()
            if b is not None
        }
        lengths = {name: (a.shape[0] if a.ndim else None) for name, a in rows.items()}
        if any(n is None for n in lengths.values()) or len(set(lengths.values())) > 1:
            raise UsageError(f"DumpWriter.append: batches have different numbers of rows {lengths}")
        # every batch checked before any row is written
        held = {name: self._check_fits(name, arr) for name, arr in rows.items()}
        self._started()
        for name, arr in rows.items():
            self._append_one(name, arr, held[name])
        self._writer.flush()

    def _check_fits(self, name: str, arr: np.ndarray):
        """Refuse a batch that the array ``name`` already in the snapshot cannot take (text
        into numbers, rows of another shape), before any array of the call grows: a refused
        call never leaves some arrays longer than others."""
        ds = self._group.get(name)
        if ds is None:
            return None
        if not hasattr(ds, "dtype"):  # a group made there since the name was checked
            raise UsageError(f"DumpWriter.append: {self.name}/{name} is a group, not an array")
        if (ds.dtype.kind in "OSU") != (arr.dtype.kind in "OSU"):
            raise UsageError(
                f"DumpWriter.append: {self.name}/{name} holds "
                f"{'text' if ds.dtype.kind in 'OSU' else 'numbers'}, got a batch of "
                f"{'text' if arr.dtype.kind in 'OSU' else 'numbers'}"
            )
        if ds.shape[1:] != arr.shape[1:]:
            raise UsageError(
                f"DumpWriter.append: {self.name}/{name} has rows of shape {ds.shape[1:]}, "
                f"got a batch with rows of shape {arr.shape[1:]}"
            )
        return ds

    def _append_one(self, name: str, arr: np.ndarray, ds=None) -> None:
        """Append ``arr`` to the array ``name`` (``ds``: it, when it exists already)."""
        g = self._group
        if arr.dtype.kind == "O":
            dtype = _str_dtype()
            arr = arr.astype(str).astype(object)
        else:
            dtype = arr.dtype
        if ds is not None and not self._continued and ds.name not in self._writer._own:
            raise self._writer._doubling_error(g)
        if ds is None:
            row_bytes = max(
                1,
                int(np.prod(arr.shape[1:], dtype=np.int64))
                * max(1, np.dtype(dtype).itemsize if arr.dtype.kind != "O" else 16),
            )
            chunk_rows = max(1, min(65536, _DEFAULT_CHUNK_BYTES // row_bytes))
            g.create_dataset(
                name,
                shape=(0,) + arr.shape[1:],
                maxshape=(None,) + arr.shape[1:],
                dtype=dtype,
                chunks=(chunk_rows,) + arr.shape[1:],
                compression=self._writer.compression,
            )
            ds = g[name]
            self._writer._own.add(ds.name)
        if ds.shape[1:] != arr.shape[1:]:
            raise UsageError(
                f"DumpWriter.append: {self.name}/{name} has rows of shape {ds.shape[1:]}, "
                f"got a batch with rows of shape {arr.shape[1:]}"
            )
        n0 = ds.shape[0]
        ds.resize(n0 + arr.shape[0], axis=0)
        ds[n0:] = arr

    @interrupts_deferred
    def write(self, **arrays: Any) -> None:
        """Store whole arrays (``weights``, ``bias``, ``params/W1``, ...), replacing any."""
        self._writer._live()
        for name in arrays:
            self._writer._check_name(self._group, name, "array name", array=True)
        checked = {  # refused before the snapshot is marked in progress again
            name: self._writer._checked(self._group, name, value)
            for name, value in arrays.items()
            if value is not None
        }
        if checked:
            self._started()
        for name, arr in checked.items():
            self._writer._write_array(self._group, name, arr)
        self._writer.flush()

    def write_params(self, params: Sequence[Any] | Mapping[str, Any]) -> None:
        """Store every layer's weight matrix as ``params/W1`` .. ``params/WL``, input side first."""
        items = (
            params.items()
            if isinstance(params, Mapping)
            else ((f"W{i + 1}", p) for i, p in enumerate(params))
        )
        self.write(**{f"params/{k}": v for k, v in items})

    @interrupts_deferred
    def set_meta(self, **meta: Any) -> None:
        """Set metadata attributes of this snapshot (epoch, split, loss, ...)."""
        self._writer._live()
        self._writer.set_meta(self._group.name, **meta)


def _open_new(path: str):
    """Mode ``"w"`` over an existing regular file: a new file made beside it and renamed over
    it (the link, if ``path`` is one, kept), open for writing; None when ``path`` is no
    regular file yet or its folder takes no new file (then it is truncated in place, once
    its lock is held).

    Truncating in place emptied a dump that another process held open (a ``report`` reading
    it, a notebook): HDF5 truncates before it finds the other process's lock, so the
    command failed *and* the dump was lost; a reader of the old file now keeps reading it.
    """
    import stat
    import tempfile

    try:
        target = os.path.realpath(path)
        st = os.stat(target)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    try:
        fd, tmp = tempfile.mkstemp(
            prefix=".ncinspect-", suffix=".h5.tmp", dir=os.path.dirname(target) or "."
        )
    except OSError:
        return None
    os.close(fd)
    try:
        # (mkstemp made it empty: no O_TRUNC, which makes ext4 write the whole file out
        # when it is closed, its guard for programs that replace a file by truncating it)
        opened = _open_journaled(tmp, 0, "w")
    except BaseException:
        os.unlink(tmp)
        raise
    try:
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.replace(tmp, target)
    except BaseException:
        _close_journaled(*opened)
        os.unlink(tmp)
        raise
    return opened


def _open_journaled(path: str, flags: int, h5_mode: str):
    """``path`` opened for writing through a :class:`~ncinspect.io.journal.JournalFile`
    (its lock taken, a journal a killed writer left applied), as an ``h5py.File`` in
    ``h5_mode``: ``(file, journal)``. The file's state on disk is committed at once (a new
    file is whole)."""
    import h5py

    from .journal import JournalFile

    journal = JournalFile.open(path, flags)
    try:
        if h5_mode == "w" and journal.size:
            journal.truncate(0)
        handle = h5py.File(journal, h5_mode)
    except BaseException:
        journal.close()
        raise
    try:
        handle.flush()
        journal.commit()
    except BaseException:
        _close_journaled(handle, journal)
        raise
    return handle, journal


class _Shared:
    """A file open for writing in this process and the writers that share it: a second
    DumpWriter of an open file (two meters dumping into one file) writes through the same
    ``h5py.File`` and journal, as libhdf5 shared its handle between them; the last close
    closes it."""

    __slots__ = ("file", "journal", "writers", "pid", "__weakref__")

    def __init__(self, opened) -> None:
        self.file, self.journal = opened
        self.writers: weakref.WeakSet = weakref.WeakSet()  # the writers not closed yet
        self.pid = os.getpid()

    def leave(self, writer) -> None:
        """``writer`` is closed; the last one (writers dropped without a close are gone from
        the set) closes the file."""
        self.writers.discard(writer)
        if not self.writers:
            _close_journaled(self.file, self.journal)


#: (device, inode) -> the _Shared of a file this process writes (held by its writers only:
#: a writer dropped without a close lets it go, and the file is closed when it is collected)
_OPEN: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _shared(path: str) -> _Shared | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    shared = _OPEN.get((st.st_dev, st.st_ino))
    if shared is None or shared.pid != os.getpid() or not shared.file.id.valid:
        return None
    if shared.journal.failed is not None:  # its writers can write no more: refused at open
        return None
    return shared


def _register(opened) -> _Shared:
    shared = _Shared(opened)
    _OPEN[shared.journal.identity()] = shared
    return shared


def _open_existing(path: str, mode: str):
    """``path`` opened for writing in h5py's ``mode`` (``"a"``, ``"w"`` or ``"x"``) without a
    file made beside it: ``(file, journal)``."""
    if mode == "x":
        return _open_journaled(path, os.O_CREAT | os.O_EXCL, "w")
    if mode == "w":
        return _open_journaled(path, os.O_CREAT, "w")  # truncated once its lock is held
    try:  # "a": a new file, or the one there opened as it is
        return _open_journaled(path, os.O_CREAT | os.O_EXCL, "w")
    except FileExistsError:
        return _open_journaled(path, 0, "r+")


def _close_journaled(handle, journal) -> None:
    """Close an ``h5py.File`` of :func:`_open_journaled`: libhdf5 writes out what it holds,
    then that is committed, then the descriptor is closed."""
    try:
        handle.close()
        journal.commit(closing=True)
    finally:
        journal.close()


class DumpWriter:
    """Create or append to an HDF5 dump that ncinspect (and h5py) can read.

    Parameters
    ----------
    path : str or PathLike
        The HDF5 file to write.
    mode : {"a", "w", "x", "append"}
        ``"a"`` (default) creates the file or adds new snapshots to an existing one, and
        refuses to add rows to a snapshot written by an earlier writer; ``"w"`` (or
        ``"replace"``) replaces the file; ``"x"`` fails if the file exists; ``"append"`` is
        ``"a"`` that lets every snapshot of the file receive more rows (on purpose).
    compression : {None, "gzip", "lzf"}, keyword-only
        HDF5 filter for the datasets written (``"gzip"`` makes small sample dumps smaller).

    Notes
    -----
    Use it as a context manager. Every append and write is flushed and committed, so an
    interrupted program leaves the snapshots written so far readable. While it is open the
    writer holds the file's lock, as libhdf5's writers do: ncinspect's readers open the file
    beside it themselves; with h5py, pass ``locking=False``. Values accepted are anything
    :func:`ncinspect.arrays.to_host` accepts: numpy arrays, torch tensors (requiring grad,
    on any device, bfloat16 stored as float32), ``__array__`` or DLPack objects.
    """

    @interrupts_deferred
    def __init__(self, path: str | os.PathLike, mode: str = "a", *, compression: str | None = None):
        if not isinstance(mode, str) or mode not in _MODES:
            raise UsageError(
                f"DumpWriter mode must be 'a', 'w' (or 'replace'), 'x' or 'append', got {mode!r}"
            )
        try:
            self.path = os.fspath(path)
        except TypeError:
            raise UsageError(
                f"DumpWriter path must be a str or os.PathLike, got {type(path).__name__}"
            ) from None
        if isinstance(self.path, bytes):
            self.path = os.fsdecode(self.path)
        if "\x00" in self.path:
            raise UsageError("DumpWriter path holds a NUL character")
        self.mode = mode
        self.compression = _check_compression(compression)
        self._names: dict[str, dict[str, str]] = {}  # group -> {shown key: name} (look-alikes)
        self._pid = os.getpid()  # a forked child must not write through this writer
        self._own: set[str] = set()  # datasets created by this writer (free to grow)
        self._open_snaps: dict[str, SnapshotWriter] = {}  # snapshots not finished yet
        self._closed = False
        shared = _shared(self.path) if _MODES[mode] == "a" else None
        try:
            if shared is None:
                opened = _open_new(self.path) if _MODES[mode] == "w" else None
                shared = _register(opened or _open_existing(self.path, _MODES[mode]))
        except (OSError, ValueError) as exc:
            raise UnreadableFileError(f"{self.path}: cannot open for writing ({exc})") from None
        shared.writers.add(self)
        self._shared = shared
        self._file, self._journal = shared.file, shared.journal

    # context manager -------------------------------------------------------------------
    def __enter__(self) -> DumpWriter:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        # an exception leaves the snapshots it interrupted marked in progress
        self.close(finish=exc_type is None)

    @interrupts_deferred
    def close(self, *, finish: bool = True) -> None:
        """Close the file; with ``finish`` (the default) every snapshot still open is first
        marked complete (:meth:`SnapshotWriter.finish`); ``finish=False`` leaves them marked
        in progress (the program stopped half way through them)."""
        if os.getpid() != self._pid:
            # a forked child (a DataLoader worker): closing here would flush the child's copy
            # of HDF5's caches into the file the parent still writes; the parent closes it
            return
        if self._closed:
            return
        if not self._file.id.valid:  # (closed through h5py): the descriptor and lock go too
            self._closed = True
            self._journal.close()
            return
        try:
            if finish and self._journal.failed is None:
                for snap in list(self._open_snaps.values()):
                    if not snap.explicit:
                        snap.finish()
        finally:
            self._closed = True
            self._open_snaps.clear()
            self._shared.leave(self)

    @interrupts_deferred
    def flush(self) -> None:
        """Write out everything written so far and commit it: a kill from here on leaves
        the file as it is now (:mod:`ncinspect.io.journal`)."""
        self._live()
        self._file.flush()
        self._journal.commit()

    def _live(self) -> None:
        """Refuse to write through a closed writer (h5py would raise its own errors)."""
        if os.getpid() != self._pid:
            raise UsageError(
                f"DumpWriter: {self.path} was opened by process {self._pid} and is used in "
                f"process {os.getpid()}, forked from it (a DataLoader worker?): HDF5 keeps "
                "the file's state in the process that opened it, so what a child writes is "
                "lost or damages the file. Write from the process that opened the writer, or "
                "open a DumpWriter of another file in the child"
            )
        if not self.is_open:
            raise UsageError(
                f"DumpWriter: {self.path} is closed; open a new DumpWriter to write more"
            )

    @property
    def is_open(self) -> bool:
        """True until :meth:`close` (another writer of the file may keep it open)."""
        return not self._closed and self._file.id.valid

    def _check_name(self, start, name: Any, what: str, *, array: bool = False) -> None:
        """Refuse a group or array name (``/`` separates groups, from ``start``) that readers
        would read as another, or refuse beside a name the file holds (:func:`_check_part`)."""
        import h5py

        from ..text import clip
        from .class_names import shown_key

        if not isinstance(name, str):
            raise UsageError(f"DumpWriter: {what} must be a str, got {type(name).__name__}")
        parts = name.split("/")
        if array and parts[-1] in ("", "."):
            raise UsageError(
                f"DumpWriter: {what} {clip(ascii(name))} names no array (empty, or ending "
                "in '/' or '.')"
            )
        group = start if isinstance(start, h5py.Group) else None
        real = [p for p in parts if p not in ("", ".")]
        for i, part in enumerate(real):
            names = self._names.get(group.name) if group is not None else None
            if group is not None and names is None:
                names = self._names[group.name] = {}
                for n in group:
                    names.setdefault(shown_key(n), n)
            siblings = _near(names or {}, part)
            _check_part(part, siblings, what, name)
            if names is not None:
                names.setdefault(shown_key(part), part)
            nxt = group.get(part) if group is not None and part in group else None
            last = i == len(real) - 1
            if isinstance(nxt, h5py.Dataset) and not (last and array):
                raise UsageError(
                    f"DumpWriter: {what} {clip(ascii(name))}: {clip(ascii(nxt.name))} is an "
                    "array, not a group"
                )
            if isinstance(nxt, h5py.Group) and last and array:
                raise UsageError(
                    f"DumpWriter: {what} {clip(ascii(name))}: {clip(ascii(nxt.name))} is a "
                    "group (of arrays or snapshots), not an array: writing it would delete "
                    "everything below it"
                )
            group = nxt if isinstance(nxt, h5py.Group) else None

    # writing ---------------------------------------------------------------------------
    @interrupts_deferred
    def snapshot(
        self, name: str, *, append: bool = False, replace: bool = False, **meta: Any
    ) -> SnapshotWriter:
        """Create (or open) the snapshot group ``name`` and set its metadata.

        A snapshot that already holds arrays from an earlier writer (the same script run
        twice) is an error, so data are never doubled. ``append=True`` continues it (rows
        are added to its arrays); ``replace=True`` deletes its arrays (this writer's own
        too), ``params`` and metadata first. Snapshots this writer created and finished can
        be reopened freely. A snapshot left unfinished (still marked in progress: its
        writer was killed, a ``with`` block left it by an exception, a meter's pass 1 was
        reset) is refused even with ``append=True``: its rows are a part of the data, and
        only ``replace=True`` starts it over.

        Names are checked as readers read them: ``/`` separates groups; a ``..``
        component, a control character, a lone surrogate, blanks around a component,
        characters that show nothing, a spelling that Unicode normalisation changes (unless
        the file holds that exact name) and a look-alike of a name the group holds are
        refused (:class:`~ncinspect.errors.UsageError`), as are metadata keys of that kind
        and the writer's own marker as a key.
        """
        self._live()
        if append and replace:
            raise UsageError("DumpWriter.snapshot: append=True and replace=True exclude each other")
        self._check_name(self._file["/"], name, "snapshot name")
        key = name.strip("/") or "/"
        values = self._meta_values(key, meta)  # checked before anything is marked or deleted
        if isinstance(meta.get("class_names"), (list, tuple, np.ndarray)):  # before any write
            where = f"{self.path}:/{key.strip('/')} metadata class_names"
            _unique_names(meta["class_names"], where)
        group = self._file.get(key)
        continued = append or self.mode == "append"
        if group is not None:
            import h5py

            if not isinstance(group, h5py.Group):
                raise UsageError(
                    f"DumpWriter: {self._where(self._file['/'], key)} is an array, not a "
                    "snapshot group"
                )
            held = self._arrays(group)
            left = IN_PROGRESS in group.attrs and group.name not in self._open_snaps
            layers = self._layer_children(group) if replace else []
            if replace and (held or left or "params" in group or layers):
                # marked before the first deletion: a program killed half way through it
                # leaves a snapshot that readers skip, not one with some arrays missing.
                # Every array goes, this writer's own too (replace means start over)
                self._mark_in_progress(group)
                for ds_name in held:
                    self._own.discard(group[ds_name].name)
                    del group[ds_name]
                if "params" in group:
                    prefix = group["params"].name + "/"
                    self._own = {n for n in self._own if not n.startswith(prefix)}
                    del group["params"]
                self._names.pop(group.name, None)
                for attr in [a for a in group.attrs if a != IN_PROGRESS]:
                    del group.attrs[attr]
                # its hidden layers (``layer_<k>`` below it) were measured with the rows
                # just deleted: marked, so that they are skipped until written again (with
                # replace=True), never read beside the new rows as the same measurement
                for child in layers:
                    self._mark_in_progress(child)
            elif left and (held or "params" in group):
                # a snapshot its writer never finished (killed; a block left by an
                # exception; a meter reset half way): its rows are a part of the data, and
                # adding rows, or finishing it, would pass that part off as the whole
                raise self._unfinished_error(group)
            elif self._earlier_arrays(group) and not continued:
                raise self._doubling_error(group)
        self._finish_earlier("/" + key.strip("/"), meta.get("layer"))
        group = self._file.require_group(key)
        # marked in progress before anything else of it is written; finish() deletes it last
        self._mark_in_progress(group)
        if values:
            self._write_meta(group.name, values)
        snap = SnapshotWriter(self, group, continued=continued)
        self._open_snaps[group.name] = snap
        return snap

    def _finish_earlier(self, path: str, layer: Any = None) -> None:
        """Opening another snapshot finishes the ones opened before (a loop writes one
        snapshot after the other), except a group above ``path`` whose layer the new one is
        not (a snapshot whose hidden layers are written below it, together with it). A group
        above of the same layer is finished too: a flat root snapshot, then epochs below it,
        so that a kill while the epochs are written keeps the root and the finished epochs
        readable (readers skip every snapshot below a marked group). A finished snapshot
        written to again is marked in progress again; a program that interleaves snapshots
        calls :meth:`SnapshotWriter.finish`."""
        new_layer = self._layer(path, layer)
        for name, snap in list(self._open_snaps.items()):
            above = path == name or path.startswith(name.rstrip("/") + "/")
            if snap.explicit:
                continue  # only its own finish() completes it
            if not above or (path != name and self._layer(name) == new_layer):
                snap.finish()

    def _layer(self, path: str, given: Any = None) -> str | None:
        """The layer of the group at ``path`` as readers work it out
        (:func:`ncinspect.io.names.layer_of`): ``given`` (the new snapshot's ``layer``
        metadata), else the nearest group's ``layer`` attribute or ``layer_<k>`` component."""
        from .names import is_layer_part

        parts = [p for p in path.split("/") if p]
        for i in range(len(parts), -1, -1):
            value = given if i == len(parts) else None
            if value is None:
                group = self._file.get("/" + "/".join(parts[:i]))
                value = group.attrs.get("layer") if group is not None else None
            if value is not None:
                return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            if i and is_layer_part(parts[i - 1]):
                return parts[i - 1]
        return None

    def _mark_in_progress(self, group) -> None:
        group.attrs[IN_PROGRESS] = np.int8(1)
        self.flush()

    def _layer_children(self, group) -> list[Any]:
        """The groups directly below ``group`` that are its hidden layers (a ``layer_<k>``
        name or a ``layer`` attribute) holding arrays, not open in this writer."""
        import h5py

        from .names import is_layer_part

        return [
            child
            for name, child in group.items()
            if isinstance(child, h5py.Group)
            and child.name not in self._open_snaps
            and (is_layer_part(name) or "layer" in child.attrs)
            and self._arrays(child)
        ]

    def _arrays(self, group) -> list[str]:
        """Datasets directly in ``group``."""
        import h5py

        return [n for n, obj in group.items() if isinstance(obj, h5py.Dataset)]

    @staticmethod
    def _listed(group, names: list[str]) -> str:
        """The first six of ``names`` (arrays of ``group``) with their shapes, for a message."""
        return ", ".join(f"{n} {tuple(group[n].shape)}" for n in names[:6])

    def _unfinished_error(self, group) -> UsageError:
        held = self._listed(group, self._arrays(group))
        snap = group.name
        return UsageError(
            f"DumpWriter: snapshot {self.path}:{snap} was left unfinished by its writer (a "
            f"program killed mid-write, or a block left by an exception; it holds "
            f"{held or 'params'}): adding to it would pass its part of the rows off as the "
            f"whole. Start it over with snapshot({snap!r}, replace=True)"
        )

    def _earlier_arrays(self, group) -> list[str]:
        """Datasets directly in ``group`` that this writer did not create."""
        return [n for n in self._arrays(group) if group[n].name not in self._own]

    def _where(self, group, name: str) -> str:
        return f"{self.path}:{group.name.rstrip('/')}/{name}"

    def _doubling_error(self, group) -> UsageError:
        held = self._listed(group, self._earlier_arrays(group))
        snap = group.name
        return UsageError(
            f"DumpWriter: snapshot {self.path}:{snap} already holds arrays from an earlier "
            f"writer ({held}); writing it again would double its rows. To add rows on purpose "
            f"use snapshot({snap!r}, append=True) or DumpWriter(..., mode='append'); to start "
            f"over use snapshot({snap!r}, replace=True) or DumpWriter({self.path!r}, mode='w') "
            "(replaces the whole file)"
        )

    @interrupts_deferred
    def write(self, name: str, array: Any, *, group: str = "/") -> None:
        """Store one whole array, e.g. ``labels`` at the top so every snapshot inherits them.

        The group is marked in progress while the array is replaced and written (unless a
        snapshot open in this writer already marks it), so a program killed half way leaves
        the snapshots that inherit the array skipped, not read with part of it."""
        self._live()
        self._check_name(self._file["/"], group, "group name")
        self._check_name(self._file.get(group), name, "array name", array=True)
        target = self._file.require_group(group)
        arr = self._checked(target, name, array)  # refused before the group is marked
        marked_here = target.name not in self._open_snaps and IN_PROGRESS not in target.attrs
        if marked_here:
            self._mark_in_progress(target)
        self._write_array(target, name, arr)
        self.flush()
        if marked_here:
            del target.attrs[IN_PROGRESS]
            self.flush()

    @interrupts_deferred
    def set_meta(self, group: str = "/", **meta: Any) -> None:
        """Set metadata attributes on ``group`` (inherited by the snapshots below it)."""
        self._live()
        self._write_meta(group, self._meta_values(group, meta))

    def _meta_values(self, group: str, meta: Mapping[str, Any]) -> dict[str, Any]:
        """The attributes to set for ``meta`` on ``group``: every key and value checked and
        converted (:func:`_attr_value`) before anything is written."""
        self._check_name(self._file["/"], group, "group name")
        where = f"{self.path}:{'/' + group.strip('/')} metadata class_names"
        if isinstance(meta.get("class_names"), (list, tuple, np.ndarray)):
            _unique_names(np.asarray(meta["class_names"], dtype=object), where)
        existing = self._file.get(group)
        self._check_keys(list(existing.attrs) if existing is not None else [], meta, group)
        values = {
            k: _attr_value(v, f"{self.path}:{'/' + group.strip('/')} metadata {k!r}"[:300])
            for k, v in meta.items()
            if v is not None
        }
        return values

    def _write_meta(self, group: str, values: dict[str, Any]) -> None:
        target = self._file.require_group(group)
        # several values set one by one: the group is marked while they are (unless an open
        # snapshot marks it already), so a kill half way never leaves a new epoch beside an
        # old class order, read as complete
        marked_here = (
            len(values) > 1
            and target.name not in self._open_snaps
            and IN_PROGRESS not in target.attrs
        )
        if marked_here:
            self._mark_in_progress(target)
        try:
            for key, value in values.items():
                target.attrs[key] = value
        except (OSError, ValueError, TypeError) as exc:  # what h5py still refuses
            if marked_here:  # a refused call: the group is not left marked for good
                del target.attrs[IN_PROGRESS]
                self.flush()
            raise UsageError(
                f"DumpWriter: {self.path}:{target.name} metadata {key!r} cannot be stored "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"[:400]
            ) from None
        self.flush()
        if marked_here:
            del target.attrs[IN_PROGRESS]
            self.flush()

    def _check_keys(self, held: list[str], meta: Mapping[str, Any], group: str) -> None:
        """Refuse metadata keys that HDF5 stores as another key, that readers refuse beside
        one the group holds (look-alikes), or the writer's own marker."""
        from .class_names import shown_key

        names = {shown_key(k): k for k in held if isinstance(k, str)}
        for key in meta:
            where = f"metadata key of {self.path}:{'/' + group.strip('/')}"
            if key == IN_PROGRESS:
                raise UsageError(
                    f"DumpWriter: {IN_PROGRESS!r} is the writer's own mark of an unfinished "
                    "snapshot, not metadata: finish() or a normal close sets it"
                )
            if key == "":
                raise UsageError(f"DumpWriter: an empty {where}")
            if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
                raise UsageError(
                    f"DumpWriter: a {where} of {len(key)} characters (at most "
                    f"{MAX_KEY_BYTES} bytes: HDF5 keeps a key with its value in the group's "
                    "header)"
                )
            _check_part(key, _near(names, key), "metadata key", key)
            names.setdefault(shown_key(key), key)

    def _checked(self, group, name: str, value: Any) -> np.ndarray:
        """``value`` as the array to store at ``group/name``, or a UsageError."""
        arr = _as_rows(name, value, self._where(group, name))
        if name.rsplit("/", 1)[-1] == "class_names":
            _unique_names(arr, self._where(group, name))
        return arr

    def _write_array(self, group, name: str, value: Any) -> None:
        arr = self._checked(group, name, value)
        if name in group:
            del group[name]
        kw = {"compression": self.compression} if self.compression and arr.ndim else {}
        if arr.dtype.kind == "O":
            group.create_dataset(
                name, data=arr.astype(str).astype(object), dtype=_str_dtype(), **kw
            )
        else:
            group.create_dataset(name, data=arr, **kw)
        self._own.add(group[name].name)
