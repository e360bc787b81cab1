"""Read an HDF5 file's metadata in a child process first: a corrupt file can make libhdf5
loop forever or crash, and nothing in the same process can stop that.

A few bytes of a damaged heap make libhdf5 spin in an attribute read while holding the
interpreter lock, and other damage makes it segfault. The CLI therefore walks the file's
group tree (every attribute read the real walk makes) in a forked child first: when the
child has not finished after :data:`PROBE_SECONDS` it is killed and the file is refused
(exit 3, one line), and a child killed by a signal means the library crashed on the file.
The probe never reads array data.

The command does not wait for the whole child walk: the child reports each step of the
walk it has finished (the file opened, then each group: its attributes, its links and
every object they lead to) on a pipe, and the command's own walk (the same steps in the
same order) takes a step only once the child has finished it (:class:`Probe`). The
command thus never makes a metadata read the child has not made without hanging or
crashing, and the two walks overlap: the probe costs little more than the child's head
start on a machine with a second core. The child's exit (right after its walk: it leaves its
read-only handle to the system) is waited for before the command reads any data.

The library's own functions do not probe unless :data:`PROBE_SECONDS` is set (the CLI sets
it, from ``NCINSPECT_HDF5_PROBE_SECONDS``, default 30 s; ``0`` switches it off).
"""

from __future__ import annotations

import os
import select
import signal
import time

from ..errors import UnreadableFileError
from .paths import shown

__all__ = [
    "PROBE_SECONDS",
    "Probe",
    "ProbeTimeout",
    "start_probe",
    "probe_hdf5",
    "configure_from_env",
    "restore",
]

_OVER_BUDGET = 75  #: the child's exit status when it ran out of the memory it is allowed
PROBE_MEMORY = 512 << 20  #: memory the child's walk may add to what it was forked with

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


def _walk(path: str, allow_external: bool, memory_limit: int | None, report=None) -> None:
    """The child's walk: :func:`ncinspect.io.hdf5.read_h5_tree` as the command runs it,
    ``report()`` called as each step is done (the open, then each group)."""
    import gc

    from .h5file import h5_file
    from .hdf5 import read_h5_tree

    gc.disable()  # short-lived: no collection touching (and copying) the parent's pages
    report = report or (lambda now=False: None)
    begun = []

    def before_group():
        if begun:
            report()  # the group before this one is done
        begun.append(True)

    # without the lock: the probe must never stand in the way of a writer (a trainer).
    # Never closed: the child leaves by os._exit right after the walk, and the system closes
    # the descriptor (a read-only handle has nothing to write; closing each object the walk
    # opened would cost about 20 microseconds an object, which the command would wait for)
    # (the file as its writer's last commit left it, as the command will read it)
    handle = h5_file(path, locking=False)
    report(now=True)  # the file is open
    # past unreadable objects, as a live file's walk goes: every step the command may take
    read_h5_tree(
        handle,
        path,
        allow_external=allow_external,
        notes=[],
        memory_limit=memory_limit,
        broken=[],
        step=before_group,
        probing=True,
    )
    report(now=True)  # the last group is done


def _on_term_raise():
    """While the probe runs, SIGTERM raises SystemExit (so the child is killed on the way
    out); returns the handler to restore, or None off the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, stop)


class ProbeTimeout(UnreadableFileError):
    """The probe's child did not finish in time (the command waited the whole allowance:
    reading a file a writer holds open is not tried again after it)."""


class Probe:
    """The forked child walking ``path``'s metadata ahead of the command.

    :meth:`step` (before each step of the command's walk: the open, then each group, the
    same steps as the child's) returns once the child has finished that step; :meth:`finish`
    once the child has exited (its walk and close done). Both raise
    :class:`UnreadableFileError` when the child crashed, or when the command has waited for
    it ``seconds`` in all (the time the command spends on its own walk is not counted: a
    busy machine running both walks on one core does not shorten the child's allowance);
    the child is then killed. A child that stopped early at an error of the file (exit 0)
    leaves the rest to the command's own walk, which raises that error with its usual
    message. :meth:`close` kills a child still running (always call it, e.g. in ``finally``).
    """

    def __init__(
        self,
        pid: int,
        fd: int,
        seconds: float,
        path: str,
        *,
        why_fd: int = -1,
        budget: int = PROBE_MEMORY,
    ):
        self.pid, self.fd, self.seconds, self.path = pid, fd, seconds, path
        self.why_fd, self.budget = why_fd, budget
        self.waited = 0.0  # seconds the command has spent waiting for the child
        self.reported = 0  # steps the child has finished
        self.taken = 0  # steps the command has asked for
        self.ended = False  # the child's end of the pipe closed (it exited)
        #: made once: the command waits on the pipe up to once per step of its walk
        self._poller = None
        if hasattr(select, "poll"):  # any descriptor number (select() stops at 1024)
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN | select.POLLHUP)
        self._term = _on_term_raise()

    def step(self) -> None:
        """Wait until the child has finished the command's next step (or has exited)."""
        self.taken += 1
        while self.reported < self.taken and not self.ended:
            self._read()
        if self.ended and self.pid:
            self._reap()

    def finish(self) -> None:
        """Wait for the child's exit; raise if it crashed or ran out of time."""
        while not self.ended:
            self._read()
        self._reap()

    def _read(self) -> None:
        """Wait (at most what is left of the allowance) for the child's next report."""
        left = self.seconds - self.waited
        if left <= 0:
            self.close()
            raise ProbeTimeout(
                f"{shown(self.path)}: reading its HDF5 metadata did not finish in "
                f"{self.seconds:g} s (a corrupt file makes libhdf5 loop; set "
                "NCINSPECT_HDF5_PROBE_SECONDS to allow longer)"
            )
        t0 = time.monotonic()
        if self._poller is not None:
            ready = self._poller.poll(max(1, int(min(left, 1.0) * 1000)))
        else:
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
        self.waited += time.monotonic() - t0
        if ready:
            data = os.read(self.fd, _RECORD << 12)
            if not data:  # end of file: the child has exited (or is exiting)
                self.ended = True
            elif len(data) >= _RECORD:  # whole records only (each written atomically)
                last = data[len(data) // _RECORD * _RECORD - _RECORD :][:_RECORD]
                self.reported = max(self.reported, int.from_bytes(last, "little"))

    def _reap(self) -> None:
        """The child's exit status, once its end of the pipe closed; raise on a crash."""
        if not self.pid:
            return
        _, status = os.waitpid(self.pid, 0)
        self.pid = 0
        why = b""
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == _OVER_BUDGET and self.why_fd >= 0:
            try:
                os.set_blocking(self.why_fd, False)
                why = os.read(self.why_fd, 4096)
            except OSError:
                pass
        self.close()
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == _OVER_BUDGET:
            from ..budget import fmt_bytes
            from ..errors import ResourceLimitError

            line = why.decode("utf-8", "replace") or (
                f"{shown(self.path)}: reading its HDF5 metadata needs more memory than the "
                "probe allows"
            )
            raise ResourceLimitError(
                f"{line}; reading the file's metadata would take more than "
                f"{fmt_bytes(self.budget)}; refused"
            )
        if os.WIFSIGNALED(status):
            name = signal.Signals(os.WTERMSIG(status)).name
            raise UnreadableFileError(
                f"{shown(self.path)}: libhdf5 crashed ({name}) reading the file's metadata: "
                "the file is corrupt"
            )

    def close(self) -> None:
        """Kill the child if it still runs, close the pipe, restore SIGTERM (idempotent)."""
        if self.pid:  # timed out, interrupted or the command failed: never outlive it
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.pid = 0
        if self.fd >= 0:
            self._poller = None  # it names the descriptor by number
            os.close(self.fd)
            self.fd = -1
        if self.why_fd >= 0:
            os.close(self.why_fd)
            self.why_fd = -1
        if self._term is not None:
            signal.signal(signal.SIGTERM, self._term)
            self._term = None


_RECORD = 8  #: bytes of one report: the count of steps the child has finished


class _Reporter:
    """The child's side: the count of steps done, written after a step when
    :data:`_REPORT_EVERY` seconds have passed since the last report (or always, with
    ``now=True``), and never blocking (a full pipe drops the report; the next one carries
    the newer count). Fewer reports wake the command fewer times; it lags the child by at
    most one step and that interval."""

    def __init__(self, fd: int):
        os.set_blocking(fd, False)
        self.fd, self.done, self.last = fd, 0, 0.0

    def __call__(self, now: bool = False) -> None:
        self.done += 1
        t = time.monotonic()
        if not now and t - self.last < _REPORT_EVERY:
            return
        self.last = t
        try:
            os.write(self.fd, self.done.to_bytes(_RECORD, "little"))
        except BlockingIOError:
            self.last = 0.0  # the next step reports again


_REPORT_EVERY = 2e-4  #: seconds between two reports of the child (at most one per step)


def start_probe(
    path: str,
    *,
    allow_external: bool = False,
    memory_limit: int | None = None,
    seconds: float | None = None,
    walk=None,
) -> Probe | None:
    """Fork the child that walks ``path``'s metadata (see :class:`Probe`); None when
    ``seconds`` (default :data:`PROBE_SECONDS`) is None or where ``os.fork`` does not
    exist. ``walk(path, allow_external, memory_limit, report)`` replaces the child's walk
    (tests); it calls ``report()`` as it finishes each step."""
    seconds = PROBE_SECONDS if seconds is None else seconds
    if not seconds or not hasattr(os, "fork"):
        return None
    budget = probe_memory(memory_limit)
    done_r, done_w = os.pipe()  # the child's reports; closed by its exit, however it ends
    try:
        why_r, why_w = os.pipe()  # the child's one line when it ran out of its memory
    except BaseException:
        os.close(done_r)
        os.close(done_w)
        raise
    try:
        pid = os.fork()
    except BaseException:
        for fd in (done_r, done_w, why_r, why_w):
            os.close(fd)
        raise
    if pid == 0:  # the child: walk, then leave without running any of the parent's cleanup
        try:
            os.close(done_r)
            os.close(why_r)
            import faulthandler

            faulthandler.disable()  # a crash here is reported by the parent, in one line
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            _limit_address_space(budget)
            (walk or _walk)(path, allow_external, memory_limit, _Reporter(done_w))
        except BaseException as exc:  # noqa: BLE001 - the parent reports ordinary errors itself
            from .hdf5 import MetadataMemoryError

            if isinstance(exc, (MetadataMemoryError, MemoryError)):
                try:
                    line = str(exc) if isinstance(exc, MetadataMemoryError) else ""
                    os.write(why_w, line.encode("utf-8", "backslashreplace")[:2000])
                finally:
                    os._exit(_OVER_BUDGET)
        os._exit(0)
    os.close(done_w)
    os.close(why_w)
    try:
        return Probe(pid, done_r, seconds, path, why_fd=why_r, budget=budget)
    except BaseException:
        os.close(done_r)
        os.close(why_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise


def probe_memory(memory_limit: int | None) -> int:
    """Bytes of address space the probe's child may add to what it was forked with: what
    ``memory_limit`` leaves of the process (the command's own walk makes the same reads, so
    a walk the child cannot make within it would break the limit), else
    :data:`PROBE_MEMORY`. A variable-length HDF5 attribute declares only the size of its
    references: one of 200 MB in a 200 MB file took libhdf5 1.2 GB to read."""
    if memory_limit is None:
        return PROBE_MEMORY
    from ..budget import held_by_process

    return max(int(memory_limit) - held_by_process(memory_limit), 16 << 20)


def _limit_address_space(budget: int) -> None:
    """In the child: allocations past ``budget`` more bytes of address space fail (libhdf5
    reports them as errors; Python raises MemoryError) instead of growing the machine's
    memory for a value that the walk would skip or refuse."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        want = size + budget
        if hard != resource.RLIM_INFINITY:
            want = min(want, hard)
        if soft == resource.RLIM_INFINITY or want < soft:
            resource.setrlimit(resource.RLIMIT_AS, (want, hard))
    except (ImportError, OSError, ValueError, IndexError):
        pass  # no /proc or no rlimit: the child walks unbounded, as before


def probe_hdf5(
    path: str,
    *,
    allow_external: bool = False,
    memory_limit: int | None = None,
    seconds: float | None = None,
    walk=None,
) -> None:
    """Walk ``path``'s HDF5 metadata in a forked child and wait for its end; raise if it
    hangs or crashes (:func:`start_probe` and :meth:`Probe.finish` in one call).

    Errors the walk raises in the child are not reported from there: the caller's own walk
    raises them with their usual message. Does nothing when ``seconds`` (default
    :data:`PROBE_SECONDS`) is None or where ``os.fork`` does not exist.
    """
    probe = start_probe(
        path, allow_external=allow_external, memory_limit=memory_limit, seconds=seconds, walk=walk
    )
    if probe is None:
        return
    try:
        probe.finish()
    finally:
        probe.close()
