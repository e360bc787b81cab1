"""The local engine: every walk over row chunks in this process.

Pass 1 (per-class counts and float64 sums), pass 2 (within-class scatter, decisions and
outputs given the geometry of pass 1, with the theory sums riding along when asked), the
generic merge of a per-chunk statistic (:meth:`LocalEngine.reduce_rows`, for OOD means and
regression moments) and the seeded read of a few rows (:func:`read_rows`) all live here;
nothing else in the package loops over rows. :mod:`ncinspect.engines.dask` runs the same
per-chunk kernels on a Dask cluster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..budget import DEFAULT_MEMORY, available_memory, fmt_bytes, held_by_process
from ..errors import InvalidDataError, ResourceLimitError
from ..inputs import Prepared
from ..metrics import between_class_geometry
from ..stats.pairs import pair_table_bytes, pair_tables_reason
from ..stats.passes import FirstPass, Geometry, SecondPass, block_rows
from ..stats.spectra import SpectraPass, merged, spectra_plan
from ..stats.theory import TheoryPass
from .threads import Workers, one_blas_thread

__all__ = [
    "ChunkReader",
    "LocalEngine",
    "Pass2",
    "Passes",
    "Progress",
    "check_finite_rows",
    "expect",
    "first_pass",
    "pass2_chunk",
    "is_dask",
    "plan_chunk_rows",
    "plan_for",
    "read_rows",
    "row_chunks",
    "run_passes",
    "second_pass",
    "theory_rider",
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
    copy; 10% of the rest is left unplanned. Chunks are then as small as one row; a budget
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
    # 10% of what is left stays unplanned: what tracemalloc does not see (HDF5's buffers,
    # BLAS work space, the allocator's own overhead) measured up to 1.13x without it
    if pair_tables_reason(C, memory_limit) is None:
        fixed += pair_table_bytes(C)
    rows = (int(0.9 * (int(memory_limit) - held)) - fixed) // per_row
    if rows < 1:
        need = held + int((fixed + per_row) / 0.9)
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


def first_pass(
    prep: Prepared, rows: int, progress: Progress | None = None, *, threads: int | None = None
) -> FirstPass:
    """Pass 1: per-class counts and float64 sums, chunk by chunk (``threads``: see
    :class:`~ncinspect.engines.threads.Workers`; the result does not depend on it)."""
    N, d, C = prep.n_samples, prep.n_features, prep.n_classes
    first = FirstPass.empty(C, d)
    reader = ChunkReader(prep.features, rows)
    with Workers(threads) as work:
        for a, b, h in work.prefetch(reader.read, row_chunks(N, rows)):
            first = first.merge(FirstPass.of_chunk(h, prep.codes[a:b], C, a, map=work.map))
            if progress:
                progress(b - a)
    return check_finite_rows(prep, first)


def check_finite_rows(prep: Prepared, first: FirstPass) -> FirstPass:
    """Raise :class:`InvalidDataError` when pass 1 met rows holding NaN/Inf."""
    if first.n_nonfinite:
        raise InvalidDataError(
            f"{prep.features.where}: {first.n_nonfinite} row(s) hold NaN/Inf values, "
            f"first at row {first.first_nonfinite_row}"
        )
    return first


def read_outputs(outputs, a: int, b: int, where: str) -> np.ndarray:
    """Rows ``a:b`` of stored outputs as float64; NaN/Inf raise naming the rows."""
    outs = np.asarray(outputs, dtype=np.float64)
    if not np.isfinite(outs).all():
        raise InvalidDataError(f"{where}: NaN/Inf in outputs rows {a}:{b}")
    return outs


@dataclass
class Pass2:
    """Pass-2 statistics of some rows, with the theory sums of the same rows riding along.

    ``theory`` is None when not asked for (or when neither outputs nor weights give the
    network's outputs); so is ``spectra`` (the d x d sums of ``--spectra``) when not asked."""

    second: SecondPass
    theory: TheoryPass | None = None
    spectra: SpectraPass | None = None

    def merge(self, other: Pass2) -> Pass2:
        theory = None if self.theory is None else self.theory.merge(other.theory)
        return Pass2(self.second.merge(other.second), theory, merged(self.spectra, other.spectra))


def theory_rider(prep: Prepared, theory: bool) -> tuple | None:
    """What :func:`pass2_chunk` needs for the theory sums: ``(weights, bias)`` (None, None
    with stored outputs), or None when not asked or when there is neither."""
    if not theory or (prep.outputs is None and prep.weights is None):
        return None
    return (None, None) if prep.outputs is not None else (prep.weights, prep.bias)


def pass2_chunk(
    geom: Geometry,
    h: np.ndarray,
    codes: np.ndarray,
    outs: np.ndarray | None,
    rider,
    *,
    map: Callable = map,
    precision: str = "float64",
    spectra: bool = False,
) -> Pass2:
    """Pass 2 of one chunk (stored features ``h``, float64 ``outs``) and, with a ``rider``
    from :func:`theory_rider`, the theory sums of the same rows; with ``spectra``, the d x d
    sums of the spectral metrics (``map`` runs the blocks of pass 2, e.g. on a thread pool;
    ``precision``: that of pass 2's large products, see :meth:`SecondPass.of_chunk`)."""
    sums = None
    if rider is not None:  # in the fixed blocks of pass 2, merged in row order
        step = block_rows(h.shape[1], geom.n_classes)

        def theory_block(a: int) -> TheoryPass:
            out = None if outs is None else outs[a : a + step]
            return TheoryPass.of_rows(h[a : a + step], codes[a : a + step], out, *rider)

        sums = TheoryPass.empty(geom.n_classes, h.shape[1])
        for part in map(theory_block, range(0, h.shape[0], step)):
            sums = sums.merge(part)  # reads h and outs only
    second = SecondPass.of_chunk(geom, h, codes, outs, map=map, precision=precision)
    return Pass2(second, sums, SpectraPass.of_chunk(geom, h, codes, map=map) if spectra else None)


def second_pass(
    prep: Prepared,
    geom: Geometry,
    rows: int,
    progress: Progress | None = None,
    *,
    threads: int | None = None,
    theory: bool = False,
    precision: str = "float64",
    spectra: bool = False,
) -> Pass2:
    """Pass 2 given the geometry of pass 1, with the sums of ``theory`` and ``spectra`` riding
    it (``precision``: of the large products, see :meth:`SecondPass.of_chunk`)."""

    reader = ChunkReader(prep.features, rows)

    def read(a: int, b: int):
        outs = None
        if prep.outputs is not None:
            outs = read_outputs(prep.outputs.read(a, b), a, b, prep.outputs.where)
        return reader.read(a, b), outs  # converted to float64 block by block

    rider = theory_rider(prep, theory)
    acc = Pass2(
        SecondPass.empty(prep.n_classes, geom.basis.shape[0]),
        None if rider is None else TheoryPass.empty(prep.n_classes, prep.n_features),
        SpectraPass.empty(prep.n_features) if spectra else None,
    )
    with Workers(threads) as work:
        kw = dict(map=work.map, precision=precision, spectra=spectra)
        for a, b, (h, outs) in work.prefetch(read, row_chunks(prep.n_samples, rows)):
            acc = acc.merge(pass2_chunk(geom, h, prep.codes[a:b], outs, rider, **kw))
            if progress:
                progress(b - a)
    return acc


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
    """The default engine: both passes in this process, chunk after chunk, the fixed
    blocks of each chunk on a pool of ``threads`` threads (the next chunk read meanwhile).

    An engine is any object with ``first_pass(prep, rows, progress)``, ``second_pass(prep,
    geom, rows, progress, theory=False)`` (a :class:`Pass2`; also given ``spectra=True`` when
    the spectra are asked for) and ``reduce_rows`` returning the merged statistics
    (:class:`ncinspect.engines.dask.DaskEngine` runs them on a Dask cluster).
    """

    name = "local"

    def __init__(self, threads: int | None = None, precision: str = "float64"):
        from ..stats.namespace import check_precision

        #: worker threads (None: every core this process may use); results never depend on it
        self.threads = threads
        #: of pass 2's large products: "float64" (default) or "float32" (docs/array-api.md)
        self.precision = check_precision(precision)

    def first_pass(self, prep: Prepared, rows: int, progress: Progress | None = None):
        return first_pass(prep, rows, progress, threads=self.threads)

    def second_pass(
        self,
        prep: Prepared,
        geom: Geometry,
        rows: int,
        progress: Progress | None = None,
        *,
        theory: bool = False,
        spectra: bool = False,
    ) -> Pass2:
        opts = dict(threads=self.threads, theory=theory, precision=self.precision)
        return second_pass(prep, geom, rows, progress, spectra=spectra, **opts)

    def reduce_rows(self, fn, sources, rows: int, *, row_arrays=(), progress=None):
        """Merge of ``fn(row0, *blocks, *row_slices)`` over the row chunks of ``sources``.

        ``sources`` are :class:`~ncinspect.io.sources.ArraySource` objects with the same
        rows (read chunk by chunk); ``row_arrays`` are in-memory arrays sliced alongside.
        ``fn`` returns a statistic with a ``merge`` method (for OOD means and regression).
        """
        acc = None
        for a, b in row_chunks(sources[0].shape[0], rows):
            part = fn(a, *(s.read(a, b) for s in sources), *(r[a:b] for r in row_arrays))
            acc = part if acc is None else acc.merge(part)
            if progress:
                progress(b - a)
        return acc


@dataclass
class Passes:
    """The merged statistics of both passes over one set of rows."""

    first: FirstPass
    geom: Geometry
    second: SecondPass
    theory: TheoryPass | None = None  #: the theory sums (only when asked for)
    spectra: SpectraPass | None = None  #: the d x d sums of ``spectra=True`` (when they fit)
    spectra_reason: str | None = None  #: why the spectra asked for were not computed


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
) -> Passes:
    """Both passes over ``prep`` in row chunks (in this process unless ``engine`` says).

    ``ncc_centres`` are the class centres NCC scores against (default the rows' own class
    means); ``theory`` / ``spectra``: the theory's sums / the d x d sums ride pass 2.
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
        )
    geom.pair_reason = pair_tables_reason(prep.n_classes, memory_limit)
    extra = {"spectra": True} if spectra else {}
    pass2 = engine.second_pass(prep, geom, rows, progress, theory=theory, **extra)
    return Passes(first, geom, pass2.second, pass2.theory, pass2.spectra, spectra_reason)
