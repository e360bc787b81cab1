"""Dask engine: any list of passes as one task per row chunk, merged in a fixed binary tree.

Each task feeds one Dask chunk (all columns) to every pass of the list
(:mod:`ncinspect.engines.passes`: pass 1, pass 2 and its riders, the regression passes,
the OOD sums and scores); partial statistics are merged pairwise in chunk order, so a
rerun with the same chunks gives byte-identical numbers, and results equal the local
engine's to round-off (the sums are only grouped differently). The geometry between the passes
(:func:`ncinspect.metrics.between_class_geometry`) is computed here, on the client; it is
small (C x d). Nothing is duplicated: the maths is the one of :mod:`ncinspect.stats`.

Inputs: Dask arrays (``ncinspect.analyze(dask_array, labels)``; e.g. ``da.from_zarr``), or
the arrays of a dump (HDF5 datasets are reopened by absolute path for each chunk, on the
worker, so the file must be readable at that path there, and no handle stays open after the
computation; NPZ members and in-memory arrays are shipped as they are).

Needs the ``dask`` extra (dask[array], distributed; zarr for Zarr stores).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import numpy as np

from ..errors import UnreadableFileError, UsageError
from ..io.sources import ArraySource, H5Source
from ..stats.passes import FirstPass
from .local import first_pass, is_dask, reduce_rows, second_pass
from .passes import Chunk, Float64Rows, fold, read_outputs
from .threads import one_blas_thread, resolve_threads

__all__ = ["DaskEngine", "DaskSource"]


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise UsageError(
            "the dask engine needs the optional extra: pip install 'ncinspect[dask]'"
        ) from None
    return dask, da


class DaskSource(ArraySource):
    """A Dask array presented as an :class:`ArraySource` (``read`` computes rows)."""

    def __init__(self, array: Any, where: str):
        self.array = array
        self.where = where
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        if self.array.ndim == 0:
            return np.asarray(self.array.compute())
        return np.asarray(self.array[start:stop].compute())


# ------------------------------------------------------------------------------------------
# HDF5 datasets reopened on the worker (h5py objects cannot be pickled)
# ------------------------------------------------------------------------------------------
def _read_h5(path: str, name: str, key) -> np.ndarray:
    """``key`` of dataset ``name`` in the HDF5 file at ``path``, opened for this read only.

    Opening per chunk costs a fraction of a millisecond (chunks hold megabytes), and leaves
    no handle open after the computation: neither the client nor a worker keeps the file
    open (or locked) once the report is done, so it can be rewritten or deleted.
    """
    from ..io.h5file import h5_file

    with h5_file(path) as f:  # (a journal a killed writer left replayed, as the client did)
        return f[name][key]


class _H5Rows:
    """Picklable stand-in for an HDF5 dataset: absolute file path and dataset name.

    The path is made absolute on the client, so a worker with another working directory
    finds the same file; a failure to open or read it there is an
    :class:`~ncinspect.errors.UnreadableFileError` naming the file (exit code 3).
    """

    def __init__(self, path: str, name: str, shape: tuple[int, ...], dtype: np.dtype):
        self.path, self.name = os.path.abspath(path), name
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)

    def __getitem__(self, key):
        try:
            return _read_h5(self.path, self.name, key)
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            rows = key[0] if isinstance(key, tuple) else key
            span = f"rows {rows.start}:{rows.stop}" if isinstance(rows, slice) else "rows"
            why = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line
            raise UnreadableFileError(
                f"{self.path}:{self.name}: cannot read {span} in a Dask task on "
                f"{socket.gethostname()} ({why}); the file must be readable at this path there"
            ) from None


class _SourceRows:
    """Any other picklable ArraySource (NPZ member, in-memory array) as a sliceable array."""

    def __init__(self, source: ArraySource):
        self.source = source
        self.shape, self.dtype, self.ndim = source.shape, source.dtype, len(source.shape)

    def __getitem__(self, key):
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        return self.source.read(rows.start, rows.stop)[:, cols]


def _to_dask(source: ArraySource, rows: int):
    """A Dask array of ``source`` with row chunks of ``rows`` rows and all columns."""
    dask, da = _import_dask()
    if isinstance(source, DaskSource):
        arr = source.array
        if arr.ndim == 2 and arr.numblocks[1] > 1:
            arr = arr.rechunk({1: -1})
        return arr
    if isinstance(source, H5Source):
        path = source.where.rsplit(":", 1)[0]
        # the file name as it was opened (maybe relative), made absolute here, on the client
        h5 = source.dataset.file  # (a file read through its journal has no name of its own)
        rows_obj = _H5Rows(
            os.fspath((h5.driver != "fileobj" and h5.filename) or path),
            source.dataset.name,
            source.shape,
            source.dtype,
        )
    else:
        rows_obj = _SourceRows(source)
    token = dask.base.tokenize(
        source.where, getattr(rows_obj, "path", None), source.shape, str(source.dtype), rows
    )
    name = f"ncinspect-{token}"
    return da.from_array(
        rows_obj,
        chunks=(rows,) + tuple(source.shape[1:]),
        name=name,
        asarray=True,
        lock=False,
        meta=np.empty((0,) * len(source.shape), source.dtype),
    )


def _row_bounds(arr) -> list[tuple[int, int]]:
    stops = np.cumsum(arr.chunks[0])
    return [(int(b - n), int(b)) for n, b in zip(arr.chunks[0], stops, strict=True)]


# ------------------------------------------------------------------------------------------
# the tasks (module level: workers import them by name)
# ------------------------------------------------------------------------------------------
def _run_chunk(passes, row0: int, names, checks, *blocks):
    """The statistics of every pass of ``passes`` on one chunk (inputs ``names`` in order;
    ``checks``: name -> where, of the inputs read as float64 with NaN/Inf raising)."""
    arrays = {}
    for name, block in zip(names, blocks, strict=True):
        block = np.asarray(block)
        if name in checks:
            block = read_outputs(block, row0, row0 + block.shape[0], checks[name])
        arrays[name] = block
    chunk = Chunk(row0, arrays)
    return tuple(p.of_chunk(chunk, map) for p in passes)


def _merge_each(a: tuple, b: tuple) -> tuple:
    return tuple(fold(x, [y]) for x, y in zip(a, b, strict=True))


def _tree(parts: list):
    """Merge delayed partial statistics pairwise, in order (a fixed, balanced tree)."""
    import dask

    merge = dask.delayed(_merge_each, pure=True)
    while len(parts) > 1:
        parts = [
            merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    return parts[0]


# ------------------------------------------------------------------------------------------
# the engine
# ------------------------------------------------------------------------------------------
def _connect(address: str):
    """A ``distributed.Client`` of the scheduler at ``address``; one line (exit 3) when none
    answers there (distributed raised OSError after its connect timeout, exit 4, and the
    half-made client printed traceback lines as it was collected)."""
    import contextlib
    import io

    from distributed import Client

    from ..errors import NCInspectError
    from ..text import clip

    try:
        with contextlib.redirect_stderr(io.StringIO()):
            return Client(address, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        first = str(exc).strip().splitlines()
        raise NCInspectError(
            f"--scheduler {clip(address, 200)}: no Dask scheduler answered there "
            f"({clip(first[0] if first else type(exc).__name__, 200)}); start one "
            "(dask scheduler) or leave --scheduler out to run here"
        ) from None


def _active_client() -> bool:
    """Whether a ``distributed`` client is active (Dask's default scheduler is then it)."""
    try:
        from distributed import default_client
    except ImportError:
        return False
    try:
        default_client()
    except ValueError:  # no client
        return False
    return True


class DaskEngine:
    """Run both passes as Dask tasks, one per row chunk, and merge the statistics.

    Parameters
    ----------
    scheduler : str or distributed.Client, optional
        Address of a running ``distributed`` scheduler (``"tcp://10.0.0.5:8786"``), a
        ``Client``, or None for the active client (if any) or Dask's default scheduler.
    threads : int, optional
        Without ``scheduler``: run the tasks on Dask's local threaded scheduler with this
        many worker threads, BLAS capped to one thread each (as the local engine does).
        A distributed cluster's workers are sized where they run: giving both is a
        :class:`~ncinspect.errors.UsageError`.
    precision : {"float64", "float32"}
        Of pass 2's large products (see :class:`~ncinspect.engines.local.LocalEngine`).

    Notes
    -----
    Chunks of a Dask array input are its own row chunks (all columns in one chunk); dump
    arrays are cut into the rows that :func:`ncinspect.engines.local.plan_chunk_rows` gives.
    Progress is reported after each pass. Workers of ``distributed`` run single-threaded
    BLAS by default (``OMP_NUM_THREADS=1``), so worker threads do not oversubscribe cores.
    """

    name = "dask"

    def __init__(
        self, scheduler: Any = None, threads: int | None = None, precision: str = "float64"
    ):
        from ..stats.namespace import check_precision

        _import_dask()
        self.precision = check_precision(precision)
        if threads is not None and (scheduler is not None or _active_client()):
            raise UsageError(
                "threads= (--threads) sizes the local engine or Dask's local scheduler; the "
                "workers of a distributed scheduler are sized where they run (drop it)"
            )
        self.scheduler = scheduler
        self.threads = None if threads is None else resolve_threads(threads)
        self._client = None

    # inputs --------------------------------------------------------------------------
    def wrap(self, features: Any, labels: Any, outputs: Any):
        """Dask arrays as sources (labels, small, are computed here)."""
        if is_dask(features):
            features = DaskSource(features, "features")
        if is_dask(labels):
            labels = self.compute(labels)
        if is_dask(outputs):
            outputs = DaskSource(outputs, "outputs")
        return features, labels, outputs

    # running -------------------------------------------------------------------------
    def client(self):
        """The ``distributed.Client`` for ``scheduler`` (None: use Dask's default)."""
        if self.scheduler is None:
            return None
        if self._client is None:
            if isinstance(self.scheduler, str):
                self._client = _connect(self.scheduler)
            else:
                self._client = self.scheduler
        return self._client

    def compute(self, obj):
        client = self.client()
        if client is not None:
            return client.compute(obj, sync=True)
        import dask

        if self.threads is None:
            return dask.compute(obj)[0]
        with one_blas_thread():
            return dask.compute(obj, scheduler="threads", num_workers=self.threads)[0]

    def close(self) -> None:
        """Close a client this engine opened (not one it was given)."""
        if self._client is not None and isinstance(self.scheduler, str):
            self._client.close()
        self._client = None

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # the passes ----------------------------------------------------------------------
    def run(self, passes, sources, rows: int, *, row_arrays=None, progress=None) -> list:
        """The merged statistics of ``passes`` (:mod:`ncinspect.engines.passes`) over
        ``sources``: one Dask task per row chunk feeds the chunk (read once) to every pass;
        the tasks' statistics are merged pairwise in chunk order (a fixed tree). As
        :meth:`ncinspect.engines.local.LocalEngine.run`; the passes must be picklable."""
        import dask

        passes = list(passes)
        names = list(sources)
        checks = {k: s.where for k, s in sources.items() if isinstance(s, Float64Rows)}
        # a float64-checked source is read as stored; the check runs in the task
        arrs = [
            _to_dask(s.source if isinstance(s, Float64Rows) else s, rows) for s in sources.values()
        ]
        arrs[1:] = [
            x.rechunk({0: arrs[0].chunks[0], **({1: -1} if x.ndim == 2 else {})}) for x in arrs[1:]
        ]
        bounds = _row_bounds(arrs[0])
        blocks = [list(x.to_delayed().ravel()) for x in arrs]
        extra = dict(row_arrays or {})
        names += list(extra)
        p = dask.delayed(tuple(passes), pure=True, traverse=False)  # shipped once per worker
        task = dask.delayed(_run_chunk, pure=True)
        parts = [
            task(
                p, a, names, checks, *(blk[i] for blk in blocks), *(r[a:b] for r in extra.values())
            )
            for i, (a, b) in enumerate(bounds)
        ]
        out = list(self.compute(_tree(parts))) if parts else [q.empty() for q in passes]
        if progress:
            progress(arrs[0].shape[0])
        return out

    def first_pass(self, prep, rows: int, progress=None) -> FirstPass:
        return first_pass(prep, rows, progress, engine=self)

    def second_pass(self, prep, geom, rows: int, progress=None, *, riders=()):
        """``(SecondPass, [rider stats])``: see :func:`ncinspect.engines.local.second_pass`."""
        return second_pass(prep, geom, rows, progress, riders=riders, engine=self)

    def reduce_rows(self, fn, sources, rows: int, *, row_arrays=(), progress=None):
        """As :meth:`ncinspect.engines.local.LocalEngine.reduce_rows`: ``fn`` must be
        picklable (a module-level function or a ``functools.partial`` of one)."""
        return reduce_rows(self, fn, sources, rows, row_arrays=row_arrays, progress=progress)
