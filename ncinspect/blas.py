"""BLAS threads: one :mod:`threadpoolctl` controller per process and a one-thread limit.

The engines cap BLAS to one thread per worker of their pool; the class-pair sweep caps it so
that its ``ddot`` sums (which OpenBLAS splits over its threads above 10,000 values) do not
depend on the thread count; pass 2 of a CPU tensor (:mod:`ncinspect.stats.device`) caps
it while the rows go through numpy's BLAS beside the tensor library's own thread pool (two
pools spinning on the same cores).
"""

from __future__ import annotations

import sys
import threading

__all__ = ["hold_one_blas_thread", "one_blas_thread"]

_CONTROLLER: list = [None, -1]  # the ThreadpoolController, and len(sys.modules) when made


def _controller():
    """One :class:`threadpoolctl.ThreadpoolController` for the process, made again only when
    modules were imported since (a new BLAS may have been loaded with them). Making one
    scans every loaded shared library (about 3 ms); a limit from it costs microseconds, so a
    file of 10,000 small snapshots no longer pays the scan four times per snapshot."""
    from threadpoolctl import ThreadpoolController

    if _CONTROLLER[0] is None or _CONTROLLER[1] != len(sys.modules):
        _CONTROLLER[0] = ThreadpoolController()
        _CONTROLLER[1] = len(sys.modules)
    return _CONTROLLER[0]


class _OneThread:
    """The context :func:`one_blas_thread` returns. Contexts nest: only the outermost one
    sets and restores the limit (a run over many small snapshots enters one per step, and
    each threadpoolctl limit costs tens of microseconds), and the process keeps the limit
    while any context, in any thread, is open."""

    _lock = threading.Lock()
    _depth = 0
    _limits = None

    def __enter__(self) -> _OneThread:
        cls = type(self)
        with cls._lock:
            if cls._depth == 0:
                cls._limits = _controller().limit(limits=1)
            cls._depth += 1
        return self

    def __exit__(self, *exc) -> None:
        cls = type(self)
        with cls._lock:
            cls._depth -= 1
            if cls._depth == 0 and cls._limits is not None:
                cls._limits.restore_original_limits()
                cls._limits = None


def one_blas_thread() -> _OneThread:
    """A context in which BLAS runs on one thread (the small class-level products and SVD
    between and after the passes: extra BLAS threads only spin on a busy machine)."""
    return _OneThread()


def hold_one_blas_thread() -> None:
    """BLAS on one thread for the rest of this process: for a forked worker that runs every
    product on one thread anyway. Each later :func:`one_blas_thread` context nests inside
    this one and costs nothing (a small snapshot enters several, and a limit set and restored
    costs tens of microseconds each time)."""
    _OneThread().__enter__()
