"""Row passes: the one protocol by which an engine's walk feeds chunks of rows to statistics.

A **pass** is any object with

- ``empty()``: the statistic of no rows (the identity of its merge);
- ``of_chunk(chunk, map)``: the statistic of one :class:`Chunk` (its first row and its
  arrays by name), its fixed blocks of rows run by ``map`` (a thread pool's, or the
  built-in) and merged in row order;

and its statistics have ``merge(other)``. ``engine.run(passes, sources, rows)`` (the local
engine: :meth:`~ncinspect.engines.local.LocalEngine.run`; Dask:
:meth:`~ncinspect.engines.dask.DaskEngine.run`) reads each chunk once, feeds it to every
pass of the list and merges each pass's chunk statistics in row order (Dask: a fixed tree),
so a result depends on the blocks (functions of d and C), never on the thread count.

The adapters below put the statistics of :mod:`ncinspect.stats` and :mod:`ncinspect.metrics`
behind the protocol (they compute nothing themselves): classification pass 1 and pass 2 with
the theory and spectra sums that may ride pass 2, the two regression passes, the OOD feature
sums, the OOD scores' rows, and :class:`ChunkFn` (any ``fn(row0, *arrays)``). They are
picklable (module-level classes), so a Dask worker runs them as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidDataError
from ..io.sources import ArraySource
from ..metrics.ood import FeatureSum
from ..metrics.ood_scores import OODScorer, RowScores, score_chunk
from ..stats.passes import FirstPass, Geometry, SecondPass, block_rows
from ..stats.regression import (
    RegressionFirstPass,
    RegressionGeometry,
    RegressionSecondPass,
)
from ..stats.spectra import SpectraPass
from ..stats.theory import TheoryPass

__all__ = [
    "Chunk",
    "ChunkFn",
    "FeatureSumRows",
    "FirstRows",
    "Float64Rows",
    "RegressionFirstRows",
    "RegressionSecondRows",
    "ScoreRows",
    "SecondRows",
    "SpectraRows",
    "TheoryRows",
    "fold",
    "in_blocks",
    "read_outputs",
]


@dataclass
class Chunk:
    """Rows ``row0 .. row0 + n`` of a walk's inputs: ``arrays`` maps each input's name (a
    source read for this chunk, or a slice of an in-memory row array) to its rows."""

    row0: int
    arrays: dict[str, Any]

    def __getitem__(self, name: str) -> Any:
        return self.arrays[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self.arrays.get(name, default)

    @property
    def n(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])

    def blocks(self, step: int) -> list[Chunk]:
        """The chunk cut into consecutive blocks of ``step`` rows (views, in row order)."""
        return [
            Chunk(self.row0 + a, {k: v[a : a + step] for k, v in self.arrays.items()})
            for a in range(0, self.n, max(1, int(step)))
        ]


def fold(start: Any, parts) -> Any:
    """``start.merge(p0).merge(p1)...``: statistics merged in the order given (a ``start``
    of None: the first part starts the fold)."""
    acc = start
    for part in parts:
        acc = part if acc is None else acc.merge(part)
    return acc


def in_blocks(fn: Callable[[Chunk], Any], chunk: Chunk, step: int, map: Callable, start):
    """``fn`` of each block of ``step`` rows of ``chunk`` (run by ``map``), merged in row
    order onto ``start``: the statistic of the chunk, whatever runs the blocks."""
    return fold(start, map(fn, chunk.blocks(step)))


def read_outputs(outputs, a: int, b: int, where: str) -> np.ndarray:
    """Rows ``a:b`` of stored outputs as float64; NaN/Inf raise naming the rows."""
    outs = np.asarray(outputs, dtype=np.float64)
    if not np.isfinite(outs).all():
        raise InvalidDataError(f"{where}: NaN/Inf in outputs rows {a}:{b}")
    return outs


class Float64Rows(ArraySource):
    """A source read as float64 rows, NaN/Inf raising naming the rows (stored outputs).

    A Dask engine reads :attr:`source` itself and applies :meth:`check` in the task."""

    def __init__(self, source: ArraySource):
        self.source = source
        self.where, self.shape, self.dtype = source.where, source.shape, np.dtype(np.float64)

    def check(self, rows, a: int, b: int) -> np.ndarray:
        return read_outputs(rows, a, b, self.where)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = self.shape[0] if stop is None else stop
        return self.check(self.source.read(start, stop), start, stop)


# ------------------------------------------------------------------------------------------
# classification: pass 1, pass 2 and what rides it
# ------------------------------------------------------------------------------------------
class FirstRows:
    """Pass 1 (:class:`FirstPass`) of inputs ``features`` and ``codes``."""

    def __init__(self, n_classes: int, n_features: int):
        self.n_classes, self.n_features = int(n_classes), int(n_features)

    def empty(self) -> FirstPass:
        return FirstPass.empty(self.n_classes, self.n_features)

    def of_chunk(self, chunk: Chunk, map: Callable = map) -> FirstPass:
        h, codes = chunk["features"], chunk["codes"]
        return FirstPass.of_chunk(h, codes, self.n_classes, chunk.row0, map=map)


class SecondRows:
    """Pass 2 (:class:`SecondPass`) given the geometry of pass 1; reads ``features``,
    ``codes`` and, when the walk has them, float64 ``outputs``."""

    def __init__(self, geom: Geometry, precision: str = "float64"):
        self.geom, self.precision = geom, precision

    def empty(self) -> SecondPass:
        return SecondPass.empty(self.geom.n_classes, self.geom.basis.shape[0])

    def of_chunk(self, chunk: Chunk, map: Callable = map) -> SecondPass:
        h, codes, outs = chunk["features"], chunk["codes"], chunk.get("outputs")
        return SecondPass.of_chunk(self.geom, h, codes, outs, map=map, precision=self.precision)


class TheoryRows:
    """The theory's sums (:class:`TheoryPass`) of ``features``, ``codes`` and the network's
    outputs: float64 ``outputs`` of the walk when ``weights`` is None, else ``h W^T + b``;
    in the fixed blocks of pass 2 (:func:`~ncinspect.stats.passes.block_rows`)."""

    def __init__(self, n_classes: int, n_features: int, weights=None, bias=None):
        self.n_classes, self.n_features = int(n_classes), int(n_features)
        self.weights, self.bias = weights, bias

    def empty(self) -> TheoryPass:
        return TheoryPass.empty(self.n_classes, self.n_features)

    def _block(self, b: Chunk) -> TheoryPass:
        out = b.get("outputs") if self.weights is None else None
        return TheoryPass.of_rows(b["features"], b["codes"], out, self.weights, self.bias)

    def of_chunk(self, chunk: Chunk, map: Callable = map) -> TheoryPass:
        step = block_rows(self.n_features, self.n_classes)
        return in_blocks(self._block, chunk, step, map, self.empty())


class SpectraRows:
    """The d x d sums of the spectral metrics (:class:`SpectraPass`) given the geometry."""

    def __init__(self, geom: Geometry, n_features: int):
        self.geom, self.n_features = geom, int(n_features)

    def empty(self) -> SpectraPass:
        return SpectraPass.empty(self.n_features)

    def of_chunk(self, chunk: Chunk, map: Callable = map) -> SpectraPass:
        return SpectraPass.of_chunk(self.geom, chunk["features"], chunk["codes"], map=map)


# ------------------------------------------------------------------------------------------
# regression, OOD feature sums, OOD scores: fixed blocks on the pool
# ------------------------------------------------------------------------------------------
class RegressionFirstRows:
    """Regression pass 1 (:class:`RegressionFirstPass`) of ``features`` and ``targets``."""

    def __init__(self, n_features: int, n_targets: int):
        self.n_features, self.n_targets = int(n_features), int(n_targets)

    def empty(self) -> RegressionFirstPass:
        return RegressionFirstPass.empty(self.n_features, self.n_targets)

    @staticmethod
    def _block(b: Chunk) -> RegressionFirstPass:
        return RegressionFirstPass.of_chunk(b.row0, b["features"], b["targets"])

    def of_chunk(self, chunk: Chunk, map: Callable = map) -> RegressionFirstPass:
        # blocks of at least d rows: a block's d x d scatter is no larger than its rows in
        # float64, so the blocks' statistics of a chunk hold at most one float64 copy of it
        step = max(block_rows(self.n_features, self.n_targets), self.n_features)
        return in_blocks(self._block, chunk, step, map, self.empty())


class RegressionSecondRows:
    """Regression pass 2 (:class:`RegressionSecondPass`) of ``features`` given the bases."""

    def __init__(self, geom: RegressionGeometry, n_features: int):
        self.geom, self.n_features = geom, int(n_features)

    def empty(self) -> RegressionSecondPass:
        return RegressionSecondPass()

    def _block(self, b: Chunk) -> RegressionSecondPass:
        return RegressionSecondPass.of_chunk(self.geom, b["features"])

    def of_chunk(self, chunk: Chunk, map: Callable = map) -> RegressionSecondPass:
        return in_blocks(self._block, chunk, block_rows(self.n_features, 0), map, self.empty())


class FeatureSumRows:
    """Count and float64 column sums (:class:`FeatureSum`) of input ``name``."""

    def __init__(self, n_features: int, name: str = "features"):
        self.n_features, self.name = int(n_features), name

    def empty(self) -> FeatureSum:
        return FeatureSum.empty(self.n_features)

    def _block(self, b: Chunk) -> FeatureSum:
        return FeatureSum.of_chunk(b.row0, b[self.name])

    def of_chunk(self, chunk: Chunk, map: Callable = map) -> FeatureSum:
        return in_blocks(self._block, chunk, block_rows(self.n_features, 0), map, self.empty())


class ScoreRows:
    """The OOD scores of every row (:class:`RowScores`) of input ``name``, in row order."""

    def __init__(self, scorer: OODScorer, n_features: int, name: str = "features"):
        self.scorer, self.n_features, self.name = scorer, int(n_features), name

    def empty(self) -> RowScores:
        return RowScores()

    def _block(self, b: Chunk) -> RowScores:
        return score_chunk(self.scorer, b.row0, b[self.name])

    def of_chunk(self, chunk: Chunk, map: Callable = map) -> RowScores:
        w = self.scorer.weights
        width = 0 if w is None else int(np.shape(w)[0])
        return in_blocks(self._block, chunk, block_rows(self.n_features, width), map, self.empty())


class ChunkFn:
    """Any ``fn(row0, *arrays)`` of whole chunks (inputs ``names``, in that order) whose
    result has ``merge``; ``empty()`` is None: the first chunk's statistic starts the fold
    (``fn`` must be picklable for Dask: a module-level function or a ``partial`` of one)."""

    def __init__(self, fn: Callable, names: Sequence[str]):
        self.fn, self.names = fn, tuple(names)

    def empty(self) -> None:
        return None

    def of_chunk(self, chunk: Chunk, map: Callable = map):
        return self.fn(chunk.row0, *(chunk[k] for k in self.names))
