"""Many small snapshots of one file on forked worker processes, results in their order.

A snapshot of a few hundred rows costs a couple of milliseconds of Python and numpy calls,
almost none of it arithmetic that threads could share (each call holds the interpreter), so
a file of thousands of them runs on one core however many the machine has. Whole snapshots
are independent, so :func:`forked_map` splits their indices into contiguous ranges, one per
worker process forked from this one (which has the dump open and everything imported: a fork
costs milliseconds), and the workers send back their results. Each snapshot is computed by
the same code, with BLAS on one thread, as in this process, so every number is the same bit
for bit.

The contract is that of the serial loop:

- the results come back in the order of the items;
- an error raised for an item is raised here as it was raised there (the same class and
  message; with the worker's traceback as a note), and it is the error of the *first*
  failing item in order, as the serial loop would have met it; workers whose ranges lie
  after it are stopped;
- a worker that dies without a word (a signal, an out-of-memory kill) is an error naming its
  items, after the results it had sent (each worker sends its results in parts as it makes
  them); no worker outlives the call (also on ``KeyboardInterrupt``);
- ``progress(rows)`` is called here with the rows the workers report, as they go.

Only Linux forks here, and only from a process with no other Python thread: a fork copies no
thread, so a lock another thread held (h5py's, a logger's, a file's) would stay locked in the
worker for ever. Elsewhere (macOS's system libraries, Windows, a program with threads of its
own) :func:`fork_workers` says 0 and callers keep the serial loop.

The results travel as pickles over a pipe between this process and its own children;
nothing read from a user's file is ever unpickled.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["fork_workers", "forked_map"]

#: seconds between two progress messages of a worker
_PROGRESS_EVERY = 0.1
#: seconds between two parts of a worker's results (the first part after this long)
_SEND_EVERY = 0.25


def fork_workers(threads: int | None, items: int, min_per_worker: int) -> int:
    """The worker processes worth forking for ``items`` items (0: run them here): at most
    ``threads`` (default every core of this process), at most the cores, and at least
    ``min_per_worker`` items each; 0 where fewer than 2, everywhere but Linux, and while
    another Python thread runs (:func:`_threads_alive`)."""
    from .threads import available_cores, resolve_threads

    if not sys.platform.startswith("linux") or not hasattr(os, "fork") or _threads_alive():
        return 0
    workers = min(resolve_threads(threads), available_cores(), items // max(1, min_per_worker))
    return workers if workers >= 2 else 0


def _threads_alive() -> bool:
    """Another Python thread than this one runs, this is not the main thread, or this is a
    worker itself (a daemonic process may not fork workers of its own)."""
    import multiprocessing
    import threading

    return (
        threading.active_count() > 1
        or threading.current_thread() is not threading.main_thread()
        or multiprocessing.current_process().daemon
    )


def forked_map(
    work: Callable[[int, Callable[[int], None]], Any],
    items: int,
    workers: int,
    *,
    progress: Callable[[int], None] | None = None,
    setup: Callable[[Callable[[int], None]], None] | None = None,
    finish: Callable[[list], None] | None = None,
    describe: Callable[[int, int], str] = lambda lo, hi: f"items {lo}-{hi - 1}",
) -> Iterator[Any]:
    """``work(i, progress)`` for ``i`` in ``range(items)`` on ``workers`` forked processes;
    yields the results in order (see the module docstring for the contract).

    ``setup(progress)``, when given, runs once in each worker before its first item, with
    the worker's progress callback (e.g. to give the work an engine without threads: the
    cores are the workers'). A worker sends its results in parts as it makes them (so that
    this process receives them while the workers go on); ``finish(results)``, when given,
    runs in the worker on each part before it is sent (e.g. to drop arrays only a later
    result of the part keeps). ``describe(lo, hi)`` names
    a worker's range in the error of a worker that died.
    """
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    bounds = [items * k // workers for k in range(workers + 1)]
    procs, conns = [], []
    try:
        try:
            for k in range(workers):
                recv, send = ctx.Pipe(duplex=False)
                conns.append(recv)
                lo, hi = bounds[k], bounds[k + 1]
                args = (send, work, lo, hi, setup, finish, os.getpid())
                proc = ctx.Process(target=_worker, args=args, daemon=True)
                try:
                    with warnings.catch_warnings():  # 3.12+: "multi-threaded, use of fork()":
                        # the other threads are BLAS's and idle pools; the child starts none
                        warnings.simplefilter("ignore", DeprecationWarning)
                        proc.start()
                finally:
                    send.close()
                procs.append(proc)
        except OSError:  # no fork here (a process limit, no memory): this process does it all
            outcomes = None
        else:
            outcomes = _collect(procs, conns, bounds, progress, describe)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
        for conn in conns:
            conn.close()
    if outcomes is None:
        for i in range(items):
            yield work(i, progress or _ignore)
        return
    for results, error in outcomes:
        yield from results
        if error is not None:
            raise error


def _ignore(rows: int) -> None:
    """The progress of a caller that asked for none."""


def _collect(procs, conns, bounds, progress, describe) -> list:
    """Per worker ``(results, error)``, read until each has sent its last message (or the
    first error in item order is known)."""
    from multiprocessing.connection import wait

    from ..errors import NCInspectError

    workers = len(procs)
    outcomes: list = [None] * workers
    parts: list[list] = [[] for _ in range(workers)]  # the results each worker has sent
    open_conns = {conn: k for k, conn in enumerate(conns)}
    while open_conns:
        for conn in wait(list(open_conns)):
            k = open_conns[conn]
            try:
                kind, *payload = conn.recv()
            except (EOFError, OSError):
                procs[k].join()
                lo, hi, code = bounds[k], bounds[k + 1], procs[k].exitcode
                how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                error = NCInspectError(
                    f"{describe(lo, hi)}: the worker process reading them died ({how}) before "
                    "it finished: a damaged file, or too little memory"
                )
                outcomes[k], kind = (parts[k], error), "end"
            if kind == "rows":
                if progress is not None:
                    progress(payload[0])
                continue
            if kind == "part":
                parts[k] += payload[0]
                continue
            if kind == "done":
                outcomes[k] = (parts[k] + payload[0], payload[1])
            del open_conns[conn]
            # an error at worker k decides the outcome once every earlier worker has ended:
            # the later ones cannot change it (the serial loop would not have reached them)
            first = next((j for j in range(workers) if outcomes[j] is None), workers)
            failed = next((j for j in range(first) if outcomes[j][1] is not None), None)
            if failed is not None:
                for j in range(failed + 1, workers):
                    if outcomes[j] is None:
                        outcomes[j] = ([], None)
                        procs[j].terminate()
                return outcomes[: failed + 1]
    return outcomes


def _worker(conn, work, lo: int, hi: int, setup, finish, parent: int) -> None:
    """The body of one worker: results of ``range(lo, hi)``, sent in parts as they are made
    (each part at most every :data:`_SEND_EVERY` seconds, ``finish`` applied to it first),
    then one ``done`` message with the last part and the error, if any."""
    _die_with_parent(parent)
    rows, last = 0, time.monotonic()
    results: list = []  # made and not sent yet
    sent_at = last

    def progress(n: int) -> None:
        nonlocal rows, last
        rows += n
        now = time.monotonic()
        if now - last >= _PROGRESS_EVERY:
            conn.send(("rows", rows))
            rows, last = 0, now

    error = None
    try:
        if setup is not None:
            setup(progress)
        for i in range(lo, hi):
            results.append(work(i, progress))
            now = time.monotonic()
            if now - sent_at >= _SEND_EVERY and i + 1 < hi:
                # the command unpickles this part while the workers go on: at the end only
                # the last part is left to receive (the whole range's was a serial tail)
                if finish is not None:
                    finish(results)
                conn.send(("part", results))
                results, sent_at = [], now
        if finish is not None:
            finish(results)
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the caller
        error = _sendable(exc)
    if rows:
        conn.send(("rows", rows))
    try:
        conn.send(("done", results, error))
    except Exception as exc:  # noqa: BLE001 - a result that cannot travel (nothing was sent)
        conn.send(("done", [], _sendable(exc)))
    conn.close()


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the process that forked it (``parent``) dies:
    ``SIGKILL`` of the command leaves no worker computing for nobody."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # no prctl: the worker ends when its range does
        pass
    if os.getppid() != parent:  # it died before the request took effect
        os._exit(1)


def _sendable(exc: BaseException) -> BaseException:
    """``exc`` with this worker's traceback as a note, or, when it cannot be pickled, a
    RuntimeError that says what it was."""
    import pickle

    note = "in a worker process:\n" + "".join(traceback.format_exception(exc)).rstrip()
    try:
        exc.add_note(note)
        pickle.dumps(exc)
        type(exc)(*exc.args)  # what the receiving end does with it: rebuild it from its args
        return exc
    except Exception:  # noqa: BLE001 - an exception that does not survive the pipe
        error = RuntimeError(f"{type(exc).__name__}: {exc}")
        error.add_note(note)
        return error
