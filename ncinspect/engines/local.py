"""The local engine: every walk over row chunks in this process.

One walk (:func:`walk`, :meth:`LocalEngine.run`) runs any list of passes
(:mod:`ncinspect.engines.passes`) over the same rows: each chunk read once, the next one
read meanwhile, the fixed blocks of each chunk on the thread pool. Pass 1 (per-class counts
and float64 sums), pass 2 (within-class scatter, decisions and outputs given the geometry of
pass 1, with the theory sums, the spectra and any other pass riding the same walk), the
regression passes, the OOD feature sums and scores are such lists; the seeded read of a few
rows (:func:`read_rows`) lives here too; nothing else in the package loops over rows.
:mod:`ncinspect.engines.dask` runs the same passes on a Dask cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..budget import DEFAULT_MEMORY, available_memory, fmt_bytes, held_by_process
from ..errors import ResourceLimitError
from ..inputs import Prepared, check_finite_rows
from ..metrics import between_class_geometry
from ..stats.blocks import scale_band
from ..stats.pairs import pair_table_bytes, pair_tables_reason
from ..stats.passes import FirstPass, Geometry, SecondPass
from ..stats.spectra import SpectraPass, spectra_plan
from ..stats.theory import TheoryPass
from .passes import (
    Chunk,
    ChunkFn,
    FirstRows,
    Float64Rows,
    SecondRows,
    SpectraRows,
    TheoryRows,
    fold,
    read_outputs,
)
from .threads import Workers, one_blas_thread

__all__ = [
    "ChunkReader",
    "LocalEngine",
    "Passes",
    "Progress",
    "expect",
    "first_pass",
    "is_dask",
    "plan_chunk_rows",
    "plan_for",
    "read_outputs",
    "read_rows",
    "reduce_rows",
    "row_chunks",
    "run_passes",
    "second_pass",
    "theory_rows",
    "walk",
]

Progress = Callable[[int], None]


def expect(progress: Progress | None, rows: int, nbytes: int) -> None:
    """Announce the rows (and feature bytes) about to be read, if ``progress.expect`` exists.

    A progress callback is called with the rows done after each chunk of each pass; one
    that also has an ``expect(rows, nbytes)`` method learns the total first (for an ETA).
    """
    announce = getattr(progress, "expect", None)
    if announce is not None:
        announce(int(rows), int(nbytes))


def is_dask(value: Any) -> bool:
    """A Dask collection, recognised without importing dask."""
    return type(value).__module__.split(".")[0] == "dask" and hasattr(value, "__dask_graph__")


_PLANNED = 0.8  #: the share of a --memory-limit (after what the process holds) planned


def plan_chunk_rows(
    n_features: int,
    n_classes: int,
    *,
    memory_limit: int | None = None,
    itemsize: int = 8,
    n_samples: int = 0,
) -> int:
    """Rows per chunk so that one chunk's working set fits the memory budget.

    Without ``memory_limit`` the budget of one chunk is fixed (256 MiB), so results do not
    depend on the machine, except on a machine with less than 1 GiB of available memory,
    where it shrinks to a quarter of what is available; chunks are then at least 64 rows.

    With ``memory_limit`` the whole run is bounded: what does not depend on the chunk (the
    labels and their codes, about ``24 N`` bytes, and the class-level float64 matrices, about
    ``8 d (16 C + 5)`` bytes; with a :class:`~ncinspect.budget.ProcessLimit`, as the CLI
    gives, also what the process already holds, and the directional pair tables when they
    fit, :func:`ncinspect.stats.pairs.pair_tables_reason`: two C x C float64) is subtracted
    first, and each row costs its stored bytes twice (two read buffers) plus one float64
    copy; 20% of the rest is left unplanned. Chunks are then as small as one row; a budget
    that cannot hold even that raises :class:`~ncinspect.errors.ResourceLimitError` naming
    the budget needed. Chunks are at most 65,536 rows.
    """
    d, C = int(n_features), int(n_classes)
    # measured (tracemalloc peaks of analyze_file at C = 2, 5, 10, 1 and 11 rows a chunk):
    # a row costs its bytes twice (the two read buffers) and one float64 copy; the
    # class-level float64 arrays of the passes and the metrics peak at about 8 d (16 C + 5)
    # bytes. 0.2 counted 24 bytes a value for float64 copies of the chunk that are no longer
    # made and 8 d (9 C + 2) for the class level (peak RSS 1.8x --memory-limit at d = 10^6).
    per_row = d * (2 * int(itemsize) + 8) + 8 * (3 * C + 8)
    if memory_limit is None:
        budget = DEFAULT_MEMORY
        available = _available_memory()
        if available is not None and available // 4 < budget:
            budget = max(available // 4, 16 << 20)
        return int(max(64, min(65536, budget // per_row)))
    held = held_by_process(memory_limit)
    fixed = 24 * int(n_samples) + 8 * d * (16 * C + 5) + (1 << 20)  # + small slack
    # a share of what is left stays unplanned: what tracemalloc does not see (HDF5's
    # buffers, BLAS work space, the allocator's own overhead, heap left fragmented by freed
    # chunks). 10% left the peak RSS at 1.12x the limit in a process whose imports had been
    # compiled before (N = 50, d = 200,000, C = 5 under 320 MiB: 358 MiB; 336 MiB when the
    # imports are compiled on the way, which holds 10 MiB more before planning); 20% holds it
    if pair_tables_reason(C, memory_limit) is None:
        fixed += pair_table_bytes(C)
    rows = (int(_PLANNED * (int(memory_limit) - held)) - fixed) // per_row
    if rows < 1:
        need = held + int((fixed + per_row) / _PLANNED)
        whole = f"; this process already holds {fmt_bytes(held)}" if held else ""
        raise ResourceLimitError(
            f"--memory-limit {fmt_bytes(memory_limit)} cannot hold this analysis "
            f"(N = {n_samples}, d = {d}, C = {C}): it needs at least {fmt_bytes(need)}"
            f"{whole} (give --memory-limit {fmt_bytes(need * 1.1).replace(' ', '')} or more)"
        )
    return int(min(65536, rows))


def _available_memory() -> int | None:
    """Bytes of memory available to new work (Linux ``MemAvailable``), or None if unknown."""
    return available_memory()


def plan_for(prep: Prepared, memory_limit: int | None) -> int:
    """:func:`plan_chunk_rows` for the validated inputs ``prep``."""
    return plan_chunk_rows(
        prep.n_features,
        prep.n_classes,
        memory_limit=memory_limit,
        itemsize=prep.features.dtype.itemsize,
        n_samples=prep.n_samples,
    )


def row_chunks(n: int, rows: int):
    """``(start, stop)`` of consecutive row chunks of at most ``rows`` rows covering ``0..n``."""
    for start in range(0, n, rows):
        yield start, min(n, start + rows)


class ChunkReader:
    """Reads row chunks of one source into two reusable buffers, in turn.

    A chunk returned by :meth:`read` stays valid until the call after next: enough for one
    chunk being used while the next one is read (:meth:`Workers.prefetch`), and no array is
    allocated (and its pages faulted in) per chunk. Sources that cannot fill a buffer
    (arrays already in memory) return their rows as :meth:`ArraySource.read` does.
    """

    def __init__(self, source, rows: int):
        self.source = source
        self.rows = int(rows)
        self._buffers: list[np.ndarray] = []
        self._turn = 0

    def read(self, a: int, b: int) -> np.ndarray:
        if not self.source.fills_buffers:
            return self.source.read(a, b)
        if len(self._buffers) < 2:
            shape = (min(self.rows, self.source.shape[0]),) + tuple(self.source.shape[1:])
            try:
                self._buffers.append(np.empty(shape, self.source.buffer_dtype))
            except MemoryError:
                raise ResourceLimitError(
                    f"{self.source.where}: not enough memory for a chunk of {shape[0]} rows "
                    f"({fmt_bytes(2 * math.prod(shape) * self.source.buffer_dtype.itemsize)} "
                    "for two); give a smaller --memory-limit or --chunk-rows, or run on a "
                    "machine with more memory"
                ) from None
        buf = self._buffers[self._turn % len(self._buffers)]
        self._turn += 1
        return self.source.read_into(a, b, buf)


def walk(
    passes: Sequence,
    sources: Mapping[str, Any],
    rows: int,
    *,
    row_arrays: Mapping[str, np.ndarray] | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
) -> list:
    """Every pass of ``passes`` (see :mod:`ncinspect.engines.passes`) over the same rows, in
    one walk: each chunk of ``rows`` rows of every source is read once (the next chunk read
    while this one is used) and fed to each pass in turn, its blocks on a pool of
    ``threads`` threads; each pass's chunk statistics are merged onto its ``empty()`` in row
    order. ``row_arrays`` (in memory, same rows) are sliced alongside. Returns the merged
    statistics in the order of ``passes``; the thread count never changes a bit of them.
    """
    passes = list(passes)
    readers = {k: ChunkReader(src, rows) for k, src in sources.items()}
    n = next(iter(sources.values())).shape[0]
    arrays = row_arrays or {}  # only read

    def read(a: int, b: int) -> dict:
        return {k: r.read(a, b) for k, r in readers.items()}  # converted block by block

    accs = [p.empty() for p in passes]
    with Workers(threads) as work:
        for a, b, data in work.prefetch(read, row_chunks(n, rows)):
            for k, v in arrays.items():
                data[k] = v[a:b]
            chunk = Chunk(a, data)
            accs = fold_each(accs, [p.of_chunk(chunk, work.map) for p in passes])
            if progress:
                progress(b - a)
    return accs


def fold_each(accs: list, parts: list) -> list:
    """Each statistic of ``accs`` merged with the part of the same position."""
    return [fold(acc, (part,)) for acc, part in zip(accs, parts, strict=True)]


def first_pass(
    prep: Prepared,
    rows: int,
    progress: Progress | None = None,
    *,
    threads: int | None = None,
    engine: Any = None,
) -> FirstPass:
    """Pass 1: per-class counts and float64 sums, one walk of ``engine`` (default the local
    engine with ``threads`` threads; the result does not depend on them)."""
    engine = engine or LocalEngine(threads=threads)
    (first,) = engine.run(
        [FirstRows(prep.n_classes, prep.n_features)],
        {"features": prep.features},
        rows,
        row_arrays={"codes": prep.codes},
        progress=progress,
    )
    return check_finite_rows(first, prep.features.where)


def theory_rows(prep: Prepared) -> TheoryRows | None:
    """The theory's sums as a pass riding pass 2: from the stored outputs, else from the
    classifier (``h W^T + b``); None when there is neither."""
    if prep.outputs is not None:
        return TheoryRows(prep.n_classes, prep.n_features)
    if prep.weights is None:
        return None
    return TheoryRows(prep.n_classes, prep.n_features, prep.weights, prep.bias)


def second_pass(
    prep: Prepared,
    geom: Geometry,
    rows: int,
    progress: Progress | None = None,
    *,
    riders: Sequence = (),
    threads: int | None = None,
    precision: str = "float64",
    engine: Any = None,
) -> tuple[SecondPass, list]:
    """Pass 2 given the geometry of pass 1, and the statistics of the passes ``riders``
    (theory sums, spectra, OOD scores...) of the same walk: ``(second, [rider stats])``.
    ``engine`` defaults to the local one with ``threads`` and ``precision`` (that of the
    large products, see :meth:`SecondPass.of_chunk`)."""
    engine = engine or LocalEngine(threads=threads, precision=precision)
    sources = {"features": prep.features}
    if prep.outputs is not None:
        sources["outputs"] = Float64Rows(prep.outputs)
    second, *rest = engine.run(
        [SecondRows(geom, engine.precision), *riders],
        sources,
        rows,
        row_arrays={"codes": prep.codes},
        progress=progress,
    )
    return second, rest


def read_rows(src, index: np.ndarray, rows: int) -> np.ndarray:
    """Rows ``index`` (increasing) of an ArraySource, read chunk by chunk."""
    parts = []
    for a, b in row_chunks(src.shape[0], rows):
        lo, hi = np.searchsorted(index, [a, b])
        if hi > lo:
            parts.append(np.asarray(src.read(a, b))[index[lo:hi] - a])
    if not parts:
        return np.zeros((0,) + tuple(src.shape[1:]))
    return np.concatenate(parts)


class LocalEngine:
    """The default engine: walks in this process, chunk after chunk, the fixed blocks of
    each chunk on a pool of ``threads`` threads (the next chunk read meanwhile).

    An engine is any object with ``run(passes, sources, rows, *, row_arrays=None,
    progress=None)`` returning the merged statistics of the passes (:func:`walk`), and a
    ``precision`` (:class:`ncinspect.engines.dask.DaskEngine` runs the passes on a Dask
    cluster). ``first_pass`` / ``second_pass`` / ``reduce_rows`` are built on ``run``.
    """

    name = "local"

    def __init__(self, threads: int | None = None, precision: str = "float64"):
        from ..stats.namespace import check_precision

        #: worker threads (None: every core this process may use); results never depend on it
        self.threads = threads
        #: of pass 2's large products: "float64" (default) or "float32" (docs/array-api.md)
        self.precision = check_precision(precision)

    def run(self, passes, sources, rows: int, *, row_arrays=None, progress=None) -> list:
        """The merged statistics of ``passes`` over ``sources``, one walk (:func:`walk`)."""
        kw = dict(row_arrays=row_arrays, progress=progress, threads=self.threads)
        return walk(passes, sources, rows, **kw)

    def first_pass(self, prep: Prepared, rows: int, progress: Progress | None = None):
        return first_pass(prep, rows, progress, engine=self)

    def second_pass(self, prep, geom, rows: int, progress=None, *, riders=()):
        """``(SecondPass, [rider stats])``: see :func:`second_pass`."""
        return second_pass(prep, geom, rows, progress, riders=riders, engine=self)

    def reduce_rows(self, fn, sources, rows: int, *, row_arrays=(), progress=None):
        """Merge of ``fn(row0, *blocks, *row_slices)`` over the row chunks of ``sources``
        (one :class:`~ncinspect.engines.passes.ChunkFn` pass; None for no rows)."""
        return reduce_rows(self, fn, sources, rows, row_arrays=row_arrays, progress=progress)


def reduce_rows(engine, fn, sources, rows: int, *, row_arrays=(), progress=None):
    """``engine.reduce_rows`` of any engine with ``run``: ``fn`` of whole chunks, merged."""
    names = [f"s{i}" for i in range(len(sources))]
    extra = {f"r{i}": r for i, r in enumerate(row_arrays)}
    (out,) = engine.run(
        [ChunkFn(fn, [*names, *extra])],
        dict(zip(names, sources, strict=True)),
        rows,
        row_arrays=extra,
        progress=progress,
    )
    return out


@dataclass
class Passes:
    """The merged statistics of both passes over one set of rows."""

    first: FirstPass
    geom: Geometry
    second: SecondPass
    theory: TheoryPass | None = None  #: the theory sums (only when asked for)
    spectra: SpectraPass | None = None  #: the d x d sums of ``spectra=True`` (when they fit)
    spectra_reason: str | None = None  #: why the spectra asked for were not computed
    riders: list = field(default_factory=list)  #: the statistics of the ``riders`` passes


def run_passes(
    prep: Prepared,
    *,
    center: str = "classes",
    ncc_centres: np.ndarray | None = None,
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    progress: Progress | None = None,
    engine: Any = None,
    min_class_count: int = 1,
    theory: bool = False,
    spectra: bool = False,
    riders: Callable | None = None,
) -> Passes:
    """Both passes over ``prep`` in row chunks (in this process unless ``engine`` says).

    ``ncc_centres`` are the class centres NCC scores against (default the rows' own class
    means); ``theory`` / ``spectra``: the theory's sums / the d x d sums ride pass 2, as
    passes of its walk; so do the passes ``riders(first, geom)`` returns (their statistics
    in :attr:`Passes.riders`).
    """
    engine = engine or LocalEngine()
    rows, spectra_reason = spectra_plan(spectra, prep, memory_limit, chunk_rows, plan_for)
    spectra = spectra and spectra_reason is None
    first = engine.first_pass(prep, rows, progress)
    with one_blas_thread():
        geom = between_class_geometry(
            first,
            center=center,
            weights=prep.weights,
            bias=prep.bias,
            ncc_centres=ncc_centres,
            min_count=min_class_count,
            scale_band=scale_band(getattr(engine, "precision", "float64")),
        )
    geom.pair_reason = pair_tables_reason(prep.n_classes, memory_limit)
    ride = {"theory": theory_rows(prep) if theory else None}
    ride["spectra"] = SpectraRows(geom, prep.n_features) if spectra else None
    ride = {k: v for k, v in ride.items() if v is not None}
    more = list(riders(first, geom)) if riders is not None else []
    second, stats = second_pass(
        prep, geom, rows, progress, riders=[*ride.values(), *more], engine=engine
    )
    got = dict(zip(ride, stats, strict=False))
    out = Passes(first, geom, second, got.get("theory"), got.get("spectra"), spectra_reason)
    out.riders = stats[len(ride) :]
    return out
