"""BLAS threads: one :mod:`threadpoolctl` controller per process and a one-thread limit.

The engines cap BLAS to one thread per worker of their pool; the class-pair sweep caps it so
that its ``ddot`` sums (which OpenBLAS splits over its threads above 10,000 values) do not
depend on the thread count; pass 2 of a CPU tensor (:mod:`ncinspect.stats.device`) caps
it while the rows go through numpy's BLAS beside the tensor library's own thread pool (two
pools spinning on the same cores).
"""

from __future__ import annotations

import sys

__all__ = ["one_blas_thread"]

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


def one_blas_thread():
    """A context in which BLAS runs on one thread (the small class-level products and SVD
    between and after the passes: extra BLAS threads only spin on a busy machine)."""
    return _controller().limit(limits=1)
