"""Lazy arrays: an :class:`ArraySource` reads row ranges of one array on demand.

Readers (HDF5, NPZ) and in-memory arrays all present this one small interface, so the
analysis streams rows without knowing where they come from.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import UnreadableFileError, UnsupportedDtypeError

__all__ = ["ArraySource", "MemorySource", "H5Source", "as_source"]


class ArraySource:
    """A named, lazily read array; ``read(start, stop)`` returns rows ``start:stop``.

    Attributes
    ----------
    where : str
        ``file:/group/array`` (or just the array's role for in-memory data): used in errors.
    shape, dtype
        Shape and dtype of the stored array.
    """

    where: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        raise NotImplementedError

    def read_all(self) -> np.ndarray:
        return self.read(0, self.shape[0] if self.shape else None)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where} shape={self.shape} dtype={self.dtype}>"


class MemorySource(ArraySource):
    """An array already in memory (anything ``numpy.asarray`` accepts)."""

    def __init__(self, array: Any, where: str):
        self.array = np.asarray(array)
        self.where = where
        self.shape = tuple(self.array.shape)
        self.dtype = self.array.dtype

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        if self.array.ndim == 0:
            return self.array
        return self.array[start:stop]


class H5Source(ArraySource):
    """A dataset of an open ``h5py.File`` (read-only)."""

    def __init__(self, dataset, where: str):
        self.dataset = dataset
        self.where = where
        self.shape = tuple(dataset.shape)
        try:
            self.dtype = dataset.dtype
        except Exception as exc:  # noqa: BLE001 - h5py raises varied errors for odd types
            raise UnsupportedDtypeError(f"{where}: unsupported HDF5 datatype ({exc})") from None

    @property
    def chunk_rows(self) -> int | None:
        chunks = self.dataset.chunks
        return int(chunks[0]) if chunks else None

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        try:
            if self.dataset.ndim == 0:
                return self.dataset[()]
            return self.dataset[start:stop]
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise UnreadableFileError(
                f"{self.where}: cannot read rows {start}:{stop} ({exc})"
            ) from None


def as_source(value: Any, where: str) -> ArraySource | None:
    """Wrap ``value`` (array-like or ArraySource) as an ArraySource; ``None`` stays ``None``."""
    if value is None or isinstance(value, ArraySource):
        return value
    return MemorySource(value, where)
