"""Checks on an input path before anything opens it.

A FIFO, a device or a directory given as a dump would block (a FIFO waits for a writer) or
be read as garbage (``/dev/zero`` never ends); a symlink loop, a path through a file or an
over-long name raise errors that must reach the user as one line naming the path. Every
reader calls :func:`check_input_file` first.
"""

from __future__ import annotations

import errno
import os
import stat

from ..errors import UnreadableFileError
from ..text import MAX_ECHO, elide

__all__ = ["check_input_file", "shown", "MAX_SHOWN"]

MAX_SHOWN = MAX_ECHO  #: longest path or name quoted in a message (longer ones are elided)


def shown(text: object, limit: int = MAX_SHOWN) -> str:
    """``text`` fit for a one-line message: control characters escaped, long text elided."""
    text = os.fsdecode(text) if isinstance(text, (bytes, os.PathLike)) else str(text)
    if text.isprintable():  # nothing to escape (most names)
        return elide(text, limit)
    text = "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
        for c in text
    )
    return elide(text, limit)


def _reason(path: str, exc: OSError) -> str:
    code = exc.errno
    if code == errno.ELOOP:
        return "too many levels of symbolic links (a symlink loop?)"
    if code == errno.ENOTDIR:
        return "a component of the path is a file, not a folder"
    if code == errno.ENAMETOOLONG:
        return "a name in the path is longer than the system allows"
    if code == errno.ENOENT:
        if os.path.islink(path):
            return "a broken symbolic link (its target does not exist)"
        return "no such file"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return (exc.strerror or type(exc).__name__).rstrip(".")


def _kind_problem(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a directory, not a dump file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file; ncinspect reads regular files only"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file; ncinspect reads regular files only"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def check_input_file(path: str | os.PathLike, what: str = "") -> os.stat_result:
    """Raise :class:`UnreadableFileError` unless ``path`` is a readable, non-empty regular file.

    Symlinks are followed (a link to a dump is fine); the file is opened without blocking
    (``O_NONBLOCK``) and its type checked on the open descriptor as well, so a path swapped
    for a FIFO between the two checks cannot make the caller hang. ``what`` prefixes the
    message (e.g. the dataset whose external file this is).
    """
    path = os.fspath(path)
    prefix = f"{what}: " if what else ""
    name = f"{prefix}{shown(path)}"
    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:
        reason = _reason(path, exc) if isinstance(exc, OSError) else "invalid path"
        raise UnreadableFileError(f"{name}: {reason}") from None
    problem = _kind_problem(st.st_mode)
    if problem is None:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            raise UnreadableFileError(f"{name}: {_reason(path, exc)}") from None
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        problem = _kind_problem(st.st_mode)
    if problem is not None:
        raise UnreadableFileError(f"{name}: {problem}")
    if st.st_size == 0:
        raise UnreadableFileError(f"{name}: file is empty (0 bytes)")
    return st
