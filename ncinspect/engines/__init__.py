"""Engines: where the walks over row chunks run.

:mod:`ncinspect.engines.local` (the default, :class:`~ncinspect.engines.local.LocalEngine`)
walks every row chunk in this process. Other engines need optional extras and are imported
only when asked for:

- :mod:`ncinspect.engines.dask` (``pip install 'ncinspect[dask]'``): per-chunk statistics as
  Dask tasks, merged in a fixed tree; runs on a laptop or on a ``distributed`` cluster.
"""

from __future__ import annotations

__all__ = ["get_engine"]


def get_engine(
    name: str,
    *,
    scheduler: str | None = None,
    threads: int | None = None,
    precision: str = "float64",
):
    """The engine called ``name`` (``"local"`` or ``"dask"``).

    Parameters
    ----------
    name : {"local", "dask"}
    scheduler : str, optional
        For ``"dask"``: address of a ``distributed`` scheduler (``tcp://host:8786``);
        default the active Dask client or scheduler.
    threads : int, optional
        Worker threads (default every core this process may use; see
        :mod:`ncinspect.engines.threads`): of the local engine, or of Dask's local threaded
        scheduler (refused with a distributed ``scheduler``). The results do not depend on it.
    precision : {"float64", "float32"}
        Of pass 2's large products (float32: the bounds of docs/array-api.md, decisions
        exact through the float64 recheck); anything else is a usage error.
    """
    from ..errors import UsageError

    if name == "local":
        if scheduler:
            raise UsageError("--scheduler needs --engine dask")
        from .local import LocalEngine

        return LocalEngine(threads=threads, precision=precision)
    if name == "dask":
        from .dask import DaskEngine

        return DaskEngine(scheduler=scheduler, threads=threads, precision=precision)
    raise UsageError(f"engine must be 'local' or 'dask', got {name!r}")
