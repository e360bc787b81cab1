"""Read an HDF5 file's metadata in a child process first: a corrupt file can make libhdf5
loop forever or crash, and nothing in the same process can stop that.

A few bytes of a damaged heap make libhdf5 spin in an attribute read while holding the
interpreter lock, and other damage makes it segfault. The CLI therefore walks the file's
group tree (every attribute read the real walk makes) once in a forked child: when the
child has not finished after :data:`PROBE_SECONDS` it is killed and the file is refused
(exit 3, one line), and a child killed by a signal means the library crashed on the file.
Only then does the command open the file itself. The probe costs one more metadata walk
(milliseconds for ordinary dumps) and never reads array data.

The library's own functions do not probe unless :data:`PROBE_SECONDS` is set (the CLI sets
it, from ``NCINSPECT_HDF5_PROBE_SECONDS``, default 30 s; ``0`` switches it off).
"""

from __future__ import annotations

import os
import signal
import time

from ..errors import UnreadableFileError
from .paths import shown

__all__ = ["PROBE_SECONDS", "probe_hdf5", "configure_from_env", "restore"]

#: Seconds the child may take to walk the metadata; None (or 0): no probe.
PROBE_SECONDS: float | None = None
_ENV = "NCINSPECT_HDF5_PROBE_SECONDS"
_DEFAULT = 30.0


def configure_from_env() -> float | None:
    """Set :data:`PROBE_SECONDS` for a CLI run (``$NCINSPECT_HDF5_PROBE_SECONDS`` or 30);
    returns the previous value (the CLI restores it when it returns)."""
    global PROBE_SECONDS
    previous = PROBE_SECONDS
    text = os.environ.get(_ENV, "")
    try:
        value = float(text) if text.strip() else _DEFAULT
    except ValueError:
        value = _DEFAULT
    PROBE_SECONDS = value if value > 0 and value == value else None
    return previous


def restore(previous: float | None) -> None:
    """Put back the :data:`PROBE_SECONDS` that :func:`configure_from_env` returned."""
    global PROBE_SECONDS
    PROBE_SECONDS = previous


def _walk(path: str, allow_external: bool, memory_limit: int | None) -> None:
    import h5py

    from .hdf5 import read_h5_tree

    # without the lock: the probe must never stand in the way of a writer (a trainer)
    handle = h5py.File(path, "r", locking=False)
    try:
        read_h5_tree(
            handle, path, allow_external=allow_external, notes=[], memory_limit=memory_limit
        )
    finally:
        handle.close()


def _on_term_raise():
    """While the probe waits, SIGTERM raises SystemExit (so the child is killed on the way
    out); returns the handler to restore, or None off the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


def _wait(pid: int, done_r: int, seconds: float, path: str) -> int:
    """The exit status of the child ``pid``, waited for until its end of the pipe
    ``done_r`` closes (the child has exited, or is exiting) or ``seconds`` have passed
    (then :class:`UnreadableFileError`; the caller kills the child)."""
    import select

    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        left = deadline - time.monotonic()
        if left <= 0:
            raise UnreadableFileError(
                f"{shown(path)}: reading its HDF5 metadata did not finish in {seconds:g} s "
                "(a corrupt file makes libhdf5 loop; set NCINSPECT_HDF5_PROBE_SECONDS to "
                "allow longer)"
            )
        ready, _, _ = select.select([done_r], [], [], min(left, 1.0))
        if ready:  # the pipe closed: the child is gone or about to be reaped
            _, status = os.waitpid(pid, 0)
            return status


def probe_hdf5(
    path: str,
    *,
    allow_external: bool = False,
    memory_limit: int | None = None,
    seconds: float | None = None,
    walk=_walk,
) -> None:
    """Walk ``path``'s HDF5 metadata in a forked child; raise if it hangs or crashes.

    Errors the walk raises in the child are not reported from there: the caller's own walk
    raises them with their usual message. Does nothing when ``seconds`` (default
    :data:`PROBE_SECONDS`) is None or where ``os.fork`` does not exist.
    """
    seconds = PROBE_SECONDS if seconds is None else seconds
    if not seconds or not hasattr(os, "fork"):
        return
    done_r, done_w = os.pipe()  # closed by the child's exit, however it ends: no polling
    try:
        pid = os.fork()
    except BaseException:
        os.close(done_r)
        os.close(done_w)
        raise
    if pid == 0:  # the child: walk, then leave without running any of the parent's cleanup
        code = 0
        try:
            os.close(done_r)
            import faulthandler

            faulthandler.disable()  # a crash here is reported by the parent, in one line
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            walk(path, allow_external, memory_limit)
        except BaseException:  # noqa: BLE001 - the parent reports ordinary errors itself
            code = 0
        os._exit(code)
    os.close(done_w)
    status = None
    old_term = _on_term_raise()
    try:
        status = _wait(pid, done_r, seconds, path)
        pid = 0
    finally:
        os.close(done_r)
        if pid:  # timed out, interrupted or terminated: the child never outlives the probe
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise UnreadableFileError(
            f"{shown(path)}: libhdf5 crashed ({name}) reading the file's metadata: the file "
            "is corrupt"
        )
