"""Every file ncinspect writes goes through here.

Rules (README, "Exit codes"):

- An output that is one of the command's inputs (the same file however it is spelled:
  ``./FILE``, ``../dir/FILE``, a symlink or a hard link to it) is refused before anything is
  written: :class:`~ncinspect.errors.OutputError`, exit code 3, one line naming both.
- ``-`` (and ``/dev/stdout``, ``/dev/fd/1``, ``/proc/self/fd/1``) mean standard output.
- A target that exists and is not a regular file (a character device such as ``/dev/null``,
  a FIFO, another ``/dev/fd/N``) is written straight into, never replaced: no temporary file,
  no rename, no ``O_CREAT``. A FIFO nobody opens for reading within
  :data:`FIFO_WAIT_SECONDS` is an error, not a hang.
- ``/dev/fd/N`` (``/proc/self/fd/N``) of a regular file is written through descriptor N
  itself, at its offset and with its ``O_APPEND`` (``3>>log`` appends, ``3>out`` fills).
- A symlink is resolved and its target replaced; the link itself stays a link.
- A regular file (or a new one) is written atomically: a temporary file in the target's
  folder, then a rename over the target, keeping an existing target's permission bits.
- A write that fails is one line and leaves any existing target as it was: exit code 3 when
  the file system refused it (no space left, read-only file system, I/O error), 2 when the
  path cannot hold a file (a part of it is a file, permission denied).
- A path that can never hold the output (empty, ending in a separator, a directory, below a
  file) is refused by :func:`check_output_path` before the command does any work, and the
  outputs of one command are written together by :func:`write_outputs`: every file is
  staged first, so a failure leaves every target as it was (none written, none replaced).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence

from ..errors import NCInspectError, OutputError, UsageError

__all__ = [
    "atomic_write",
    "check_not_input",
    "check_output_path",
    "check_output_folder",
    "check_distinct",
    "same_file",
    "write_output",
    "write_outputs",
    "write_mode",
]

_STDOUT_NAMES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")

#: How long a write into a FIFO waits for a reader to open it.
FIFO_WAIT_SECONDS = 30.0

#: How a target is written: "stdout", "in_place" (straight into an existing non-regular
#: file) or "replace" (temporary file + rename).
STDOUT, IN_PLACE, REPLACE = "stdout", "in_place", "replace"


def _fspath(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    return path.decode(errors="surrogateescape") if isinstance(path, bytes) else path


def _stat(path: str) -> os.stat_result | None:
    """``os.stat`` (following links), or None when there is nothing there."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a symlink loop, a name too long, no permission on a folder
        raise OutputError(f"{path}: cannot use this output path ({_why(exc)})") from None
    except ValueError:  # an embedded NUL byte
        raise OutputError(f"{path!r}: cannot use this output path (NUL in the name)") from None


def _why(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


#: errno values where the file system refused the write (exit code 3); any other failure
#: means the path itself is unusable (a part of it is a file, no permission): a usage error
_DEVICE_ERRNOS = {
    getattr(errno, name)
    for name in ("ENOSPC", "EROFS", "EDQUOT", "EIO", "EFBIG", "ENXIO", "EPIPE")
    if hasattr(errno, name)
}


def _write_error(shown: str, exc: OSError, *, here: bool = False) -> NCInspectError:
    """The one-line error of a failed write: exit 3 (disk full, read-only) or 2 (bad path)."""
    text = f"{shown}: cannot write the output{' here' if here else ''} ({_why(exc)})"
    return OutputError(text) if exc.errno in _DEVICE_ERRNOS else UsageError(text)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name the same file (device and inode, else the resolved path)."""
    a, b = _fspath(a), _fspath(b)
    try:
        sa, sb = os.stat(a), os.stat(b)
    except (OSError, ValueError):
        sa = sb = None
    if sa is not None and sb is not None:
        return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def write_mode(path: str | os.PathLike, st: os.stat_result | None = None) -> str:
    """How ``path`` is written: :data:`STDOUT`, :data:`IN_PLACE` or :data:`REPLACE`.

    ``st`` is the ``os.stat`` of the target (None: it does not exist); when not given it is
    looked up. Only an existing regular file, or a path where nothing exists yet, is replaced.
    """
    path = _fspath(path)
    if path in _STDOUT_NAMES:
        return STDOUT
    if st is None:
        st = _stat(path)
    if st is None:
        return REPLACE
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path}: is a directory, expected a file name for the output")
    if stat.S_ISREG(st.st_mode):
        # /dev/fd/N and /proc/.../fd/N of a regular file: write into the open file, as a
        # shell redirection would, rather than replacing the file behind the descriptor
        norm = os.path.abspath(path)
        if norm.startswith(("/dev/fd/", "/proc/")) or norm in ("/dev/stderr", "/dev/stdin"):
            return IN_PLACE
        return REPLACE
    return IN_PLACE  # character/block device, FIFO, socket


def check_not_input(
    output: str | os.PathLike, inputs: Iterable[str | os.PathLike | None], *, what: str = "output"
) -> None:
    """Refuse ``output`` when it is one of ``inputs`` (exit code 3, one line naming both)."""
    output = _fspath(output)
    if output in _STDOUT_NAMES:
        return
    for inp in inputs:
        if inp is None:
            continue
        inp = _fspath(inp)
        if inp in _STDOUT_NAMES:
            continue
        if same_file(output, inp):
            raise OutputError(
                f"{output}: the {what} is the input file {inp}; "
                "choose another path (ncinspect never overwrites its inputs)"
            )


def check_distinct(outputs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """Refuse two options writing to the same file (a usage error), e.g. ``--json x --csv x``."""
    seen: list[tuple[str, str]] = []
    for option, path in outputs:
        if not path:
            continue
        path = _fspath(path)
        for other_option, other in seen:
            if (
                path in _STDOUT_NAMES
                and other in _STDOUT_NAMES
                or (path not in _STDOUT_NAMES and same_file(path, other))
            ):
                raise UsageError(
                    f"{path}: {other_option} and {option} would write the same file; "
                    "give each its own path"
                )
        seen.append((option, path))


def _write_stdout(data: str | bytes) -> None:
    if isinstance(data, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        sys.stdout.write(data)
        sys.stdout.flush()


def _own_descriptor(path: str) -> int | None:
    """N of ``/dev/fd/N``, ``/proc/self/fd/N`` (and 2 for ``/dev/stderr``): a descriptor this
    process holds, opened by whoever started it (``3>>log.json``); None for another path."""
    norm = os.path.abspath(path)
    if norm == "/dev/stderr":
        return 2
    for head in ("/dev/fd/", "/proc/self/fd/", f"/proc/{os.getpid()}/fd/"):
        tail = norm[len(head) :] if norm.startswith(head) else ""
        if tail.isascii() and tail.isdigit():
            return int(tail)
    return None


def _write_in_place(path: str, data: bytes) -> None:
    """Write into an existing non-regular file (device, FIFO), or a descriptor this process
    holds, without creating anything.

    ``/dev/fd/N`` of a regular file is written through descriptor N itself (a duplicate:
    its offset and its ``O_APPEND``), as the shell redirection that opened it means: opened
    again by name, a file redirected with ``3>>`` was written over from its first byte, the
    old bytes left after the output.
    """
    own = _own_descriptor(path)
    if own is not None:
        try:
            fd = os.dup(own)
        except OSError:
            fd = None
        if fd is not None and stat.S_ISREG(os.fstat(fd).st_mode):
            _write_all(fd, path, data)
            return
        if fd is not None:  # a pipe or terminal: opened again by name as before
            os.close(fd)
    flags = os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    nonblock = getattr(os, "O_NONBLOCK", 0)
    deadline = time.monotonic() + FIFO_WAIT_SECONDS
    while True:
        try:
            # no O_CREAT: never makes a file where the device was. O_NONBLOCK: a FIFO that
            # nobody reads fails with ENXIO instead of blocking forever; wait a bounded time
            fd = os.open(path, flags | nonblock)
            break
        except OSError as exc:
            if exc.errno == errno.ENXIO and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            if exc.errno == errno.ENXIO:
                raise OutputError(
                    f"{path}: no process is reading this FIFO (waited "
                    f"{FIFO_WAIT_SECONDS:g} s); start the reader first"
                ) from None
            raise _write_error(path, exc) from None
    if nonblock:
        try:
            os.set_blocking(fd, True)  # the writes themselves may wait for the reader
        except OSError:
            pass
    _write_all(fd, path, data)


def _write_all(fd: int, path: str, data: bytes) -> None:
    """Write ``data`` to ``fd`` whole, then close it; a failure is one line."""
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
    except OSError as exc:
        raise _write_error(path, exc) from None
    finally:
        os.close(fd)


def _replace(path: str, data: bytes, *, shown: str) -> None:
    """Temporary file in the folder of ``path``, then a rename over it."""
    _commit(_stage(path, data, shown=shown), path, shown=shown)


def _stage(path: str, data: bytes, *, shown: str) -> str:
    """Write ``data`` to a new temporary file in the folder of ``path`` (synced, with the
    target's permission bits); returns its path. A failure leaves nothing behind."""
    folder = os.path.dirname(path) or "."
    try:
        old_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        old_mode = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ncinspect-", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise _write_error(shown, exc, here=True) from None
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            if old_mode is None:
                umask = os.umask(0)
                os.umask(umask)
                old_mode = 0o666 & ~umask  # mkstemp makes 0600; give the usual permissions
            os.chmod(tmp, old_mode)
        except OSError as exc:
            raise _write_error(shown, exc) from None
    except BaseException:
        _discard(tmp)
        raise
    return tmp


def _commit(tmp: str, path: str, *, shown: str) -> None:
    """Rename the staged ``tmp`` over ``path`` (the temporary file is gone either way)."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise _write_error(shown, exc) from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def write_output(
    path: str | os.PathLike,
    data: str | bytes,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> str:
    """Write ``data`` to ``path`` under the rules of this module; returns the mode used.

    Parameters
    ----------
    path : str or path-like
        The output: ``-`` for stdout, a device or FIFO (written into), a symlink (its target
        is replaced), or a regular file (replaced atomically).
    data : str or bytes
        Text is written as UTF-8.
    inputs : iterable of paths
        The command's input files; an output that is one of them is refused.

    Raises
    ------
    OutputError
        The output is an input, a directory, or cannot be written (exit code 3).
    """
    shown = _fspath(path)
    check_not_input(shown, inputs)
    mode = write_mode(shown)
    if mode == STDOUT:
        _write_stdout(data)
        return mode
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if mode == IN_PLACE:
        _write_in_place(shown, raw)
        return mode
    try:
        target = os.path.realpath(shown)  # a symlink: replace what it points at, keep the link
    except (OSError, ValueError) as exc:
        raise OutputError(f"{shown}: cannot use this output path ({exc})") from None
    _replace(target, raw, shown=shown)
    return mode


def write_outputs(
    items: Sequence[tuple[str | os.PathLike, str | bytes]],
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
) -> list[str]:
    """Write the outputs of one command, all or none: ``[(path, data), ...]``.

    Every path is checked (:func:`check_not_input`, :func:`write_mode`) and every file is
    staged as a temporary file beside its target before anything is replaced; then devices,
    FIFOs and stdout are written, then the files renamed into place. A failure up to the
    renames (no space left, a FIFO nobody reads) leaves every target as it was and no
    temporary file. Returns the mode of each item (see :func:`write_output`).
    """
    inputs = list(inputs)
    plan = []
    for path, data in items:
        shown = _fspath(path)
        check_not_input(shown, inputs)
        mode = write_mode(shown)
        if mode != STDOUT:
            data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        plan.append((shown, mode, data))
    staged: list[tuple[str, str, str]] = []  # (temporary file, target, shown)
    try:
        for shown, mode, data in plan:
            if mode == REPLACE:
                try:
                    target = os.path.realpath(shown)  # a symlink: its target is replaced
                except (OSError, ValueError) as exc:
                    raise OutputError(f"{shown}: cannot use this output path ({exc})") from None
                staged.append((_stage(target, data, shown=shown), target, shown))
        for shown, mode, data in plan:
            if mode == IN_PLACE:
                _write_in_place(shown, data)
            elif mode == STDOUT:
                _write_stdout(data)
    except BaseException:
        for tmp, _, _ in staged:
            _discard(tmp)
        raise
    for i, (tmp, target, shown) in enumerate(staged):
        try:
            _commit(tmp, target, shown=shown)
        except BaseException:
            for later, _, _ in staged[i + 1 :]:
                _discard(later)
            raise
    return [mode for _, mode, _ in plan]


def check_output_path(path: str | os.PathLike, *, option: str, stdout: bool = True) -> None:
    """Refuse, before any work, an output path that can never hold a file (a usage error,
    one line naming ``option``): empty, ending in a path separator (a folder name), an
    existing directory, or below a file (``run.h5/x.json``). ``-`` (stdout) is refused when
    ``stdout`` is False. Nothing is created."""
    shown = _fspath(path)
    if shown in _STDOUT_NAMES:
        if not stdout:
            raise UsageError(f"{option} needs a file path (it is not written to stdout)")
        return
    if not shown.strip():
        raise UsageError(f"{option}: the path is empty; give a file name")
    if "\0" in shown:
        raise UsageError(f"{option} {shown!r}: NUL in the path")
    seps = tuple(s for s in (os.sep, os.altsep) if s)
    if shown.endswith(seps) or os.path.basename(shown) in (".", ".."):
        raise UsageError(
            f"{option} {shown}: names a folder (it ends with {shown[-1]!r}); give a file name"
        )
    st = _stat(shown)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{option} {shown}: is a directory, expected a file name for the output")
    if st is None:
        _check_parents(shown, option)


def check_output_folder(folder: str | os.PathLike, *, option: str) -> None:
    """Refuse, before any work, a folder for outputs that can never be one (a usage error):
    empty, an existing file, or below a file. Nothing is created."""
    shown = _fspath(folder)
    if not shown.strip():
        raise UsageError(f"{option}: the path is empty; give a folder")
    if "\0" in shown:
        raise UsageError(f"{option} {shown!r}: NUL in the path")
    seps = "".join(s for s in (os.sep, os.altsep) if s)
    st = _stat(shown.rstrip(seps) or shown)  # "file/" is that file, not a folder
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{option} {shown}: is a file, expected a folder for the outputs")
    if st is None:
        _check_parents(shown, option)


def _check_parents(shown: str, option: str) -> None:
    """The nearest existing folder above ``shown`` must be a folder (not a file)."""
    here = os.path.dirname(os.path.abspath(shown.rstrip(os.sep) or os.sep))
    while True:
        st = _stat(here)
        if st is not None:
            if not stat.S_ISDIR(st.st_mode):
                raise UsageError(
                    f"{option} {shown}: cannot write the output here ({here} is a file, "
                    "not a folder)"
                )
            return
        parent = os.path.dirname(here)
        if parent == here:
            return
        here = parent


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` (see :func:`write_output`; no input check)."""
    write_output(path, data)


def make_output_folder(folder: str | os.PathLike) -> None:
    """Create ``folder`` (and its parents) for outputs; a failure is one line (see above)."""
    shown = _fspath(folder)
    try:
        os.makedirs(shown, exist_ok=True)
    except OSError as exc:
        if isinstance(exc, FileExistsError) and not os.path.isdir(shown):
            raise UsageError(f"{shown}: is a file, expected a folder for the outputs") from None
        raise _write_error(shown, exc) from None
