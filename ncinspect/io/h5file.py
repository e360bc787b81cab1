"""Opening an HDF5 file read-only, also while a writer holds it (a training run dumping
into it), and the errors h5py raises on broken files."""

from __future__ import annotations

from ..errors import UnreadableFileError
from .paths import shown

__all__ = ["open_h5", "h5_file", "open_for_writing", "READ_ERRORS", "first_line"]

#: What h5py and HDF5 raise on broken files: mapped to UnreadableFileError at this boundary.
READ_ERRORS = (
    OSError,
    RuntimeError,
    KeyError,
    ValueError,
    TypeError,
    IndexError,
    OverflowError,
    UnicodeError,
    AttributeError,
)


def open_h5(path: str, notes: list[str] | None = None):
    """Open ``path`` read-only. A file locked by a writer (e.g. a training run dumping into
    it) is opened without the lock, with a note: the writer flushes after every batch, so
    the snapshots it has finished are readable; the one being written may be incomplete.
    A file whose writer was stopped inside a commit is read as that commit left it
    (:func:`h5_file`)."""
    try:
        return h5_file(path, notes)
    except OSError as exc:
        if "lock" in str(exc).lower():
            handle = _open_unlocked(path, notes)
            if handle is not None:
                if notes is not None:
                    notes.append(_WRITING_NOTE.format(path=path))
                return handle
        raise UnreadableFileError(
            f"{shown(path)}: not a readable HDF5 file ({first_line(exc)})"
        ) from None
    except READ_ERRORS as exc:
        raise UnreadableFileError(
            f"{shown(path)}: not a readable HDF5 file ({first_line(exc)})"
        ) from None


_WRITING_NOTE = (
    "{path}: the file is open for writing elsewhere (a running trainer?); "
    "read without a lock, so the snapshot being written may be incomplete"
)


def h5_file(path: str, notes: list[str] | None = None, *, locking: bool | None = None):
    """``h5py.File(path, "r")``; when a writer was stopped inside a commit and left its
    journal at the file's end (:mod:`ncinspect.io.journal`), the file as that commit left
    it, the journal replayed in memory (the file is not changed), with a note. ``locking``:
    h5py's (None: libhdf5's default)."""
    import h5py

    from .journal import Replayed, replayed

    found = replayed(path)
    if isinstance(found, Replayed):
        if notes is not None:
            notes.append(
                f"{shown(path)}: its writer stopped inside a commit; read as that commit "
                "left it (the journal at the file's end replayed in memory, the file unchanged)"
            )
            if found.locked():
                notes.append(_WRITING_NOTE.format(path=path))
        try:
            return h5py.File(found, "r")
        except BaseException:
            found.close()
            raise
    if isinstance(found, str) and notes is not None:
        notes.append(f"{shown(path)}: not read through the journal at its end ({found})")
    if locking is None:
        return h5py.File(path, "r")
    return h5py.File(path, "r", locking=locking)


def _open_unlocked(path: str, notes: list[str] | None, tries: int = 20, pause: float = 0.05):
    """The file opened without the lock, or None. A writer in the middle of a flush can
    leave the metadata inconsistent for a moment, so a failed open is retried briefly."""
    import time

    for attempt in range(tries):
        seen: list[str] = []
        try:
            handle = h5_file(path, seen, locking=False)
        except OSError:
            if attempt + 1 < tries:
                time.sleep(pause)
            continue
        if notes is not None:
            notes.extend(n for n in seen if n not in notes)
        return handle
    return None


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return shown(text[0] if text else type(exc).__name__, 200)


def open_for_writing(h5file, notes: list[str]) -> bool:
    """True when a writer holds the file open: in another process (the lock was held, see
    :func:`open_h5`), or in this one (a :class:`~ncinspect.io.writer.DumpWriter` of it is
    open, or HDF5 shares a handle opened for writing)."""
    import h5py

    from .journal import written_here

    if any(n.endswith("the snapshot being written may be incomplete") for n in notes):
        return True
    try:
        if h5file.id.get_intent() & h5py.h5f.ACC_RDWR != 0:
            return True
        return h5file.driver != "fileobj" and written_here(h5file.filename)
    except (OSError, RuntimeError, ValueError):
        return False
