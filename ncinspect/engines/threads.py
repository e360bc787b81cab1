"""Threads of the local engine: a pool over the fixed blocks of each chunk, BLAS capped.

Every statistic is a merge, in a fixed order, of the statistics of fixed blocks of rows
(their size depends on d and C only), so the pool changes the time, never a bit of the
result. While the pool works on a chunk, the next chunk is read by one more thread.
Inside the passes the BLAS library runs one thread per worker (:mod:`threadpoolctl`):
BLAS threads on top of the pool only spin on a busy machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from ..blas import one_blas_thread

__all__ = ["available_cores", "resolve_threads", "one_blas_thread", "Workers"]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` elsewhere)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(threads: int | None) -> int:
    """``threads``, or :func:`available_cores` when None; at least 1."""
    if threads is None:
        return available_cores()
    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    return threads


class Workers:
    """``with Workers(threads) as w:`` runs ``w.map`` on a pool and caps BLAS to one thread.

    ``map`` returns the results in the order of its items. With one thread nothing is
    started (``map`` is the built-in, reads are not overlapped).
    """

    def __init__(self, threads: int | None = None):
        self.threads = resolve_threads(threads)
        self._pool = self._reader = self._limits = None

    def __enter__(self) -> Workers:
        self._limits = one_blas_thread()
        self._limits.__enter__()
        return self  # the pools start on first use: a small snapshot never starts a thread

    def _workers(self) -> ThreadPoolExecutor | None:
        if self._pool is None and self.threads > 1:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="ncinspect")
        return self._pool

    def _read_ahead(self) -> ThreadPoolExecutor | None:
        if self._reader is None and self.threads > 1:
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="ncinspect-read")
        return self._reader

    def __exit__(self, *exc) -> None:
        for pool in (self._pool, self._reader):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._pool = self._reader = None
        if self._limits is not None:
            self._limits.__exit__(None, None, None)
            self._limits = None

    def map(self, fn: Callable, items: Iterable) -> list:
        """``[fn(x) for x in items]``, on the pool when there is one."""
        items = list(items)
        pool = self._workers() if len(items) > 1 else None
        if pool is None:
            return [fn(x) for x in items]
        return list(pool.map(fn, items))

    def prefetch(self, read: Callable, spans: Iterable[tuple[int, int]]) -> Iterable:
        """``(a, b, read(a, b))`` for each span, the next span read while this one is used."""
        spans = list(spans)
        if len(spans) == 1:  # one chunk (a small snapshot): read now, no generator
            ((a, b),) = spans
            return [(a, b, read(a, b))]
        return self._prefetch(read, spans)

    def _prefetch(self, read: Callable, spans: list[tuple[int, int]]) -> Iterator:
        reader = self._read_ahead() if len(spans) >= 2 else None
        if reader is None:
            for a, b in spans:
                yield a, b, read(a, b)
            return
        future = reader.submit(read, *spans[0])
        for i, (a, b) in enumerate(spans):
            data = future.result()
            if i + 1 < len(spans):
                future = reader.submit(read, *spans[i + 1])
            yield a, b, data
