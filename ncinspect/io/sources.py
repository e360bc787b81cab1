"""Lazy arrays: an :class:`ArraySource` reads row ranges of one array on demand.

Readers (HDF5, NPZ) and in-memory arrays all present this one small interface, so the
analysis streams rows without knowing where they come from.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from ..arrays import host_dtype, is_tensor, to_host
from ..budget import chunk_bound, fmt_bytes
from ..errors import ResourceLimitError, UnreadableFileError, UnsupportedDtypeError
from ..text import clip

__all__ = [
    "ArraySource",
    "MemorySource",
    "TensorSource",
    "H5Source",
    "as_source",
    "h5_dtype",
    "memory_type",
]


_INTP_MAX = int(np.iinfo(np.intp).max)  #: the most bytes (and elements an axis) numpy holds


def unholdable(shape: tuple[int, ...], itemsize: int) -> bool:
    """Whether no numpy array can have ``shape`` (of items of ``itemsize`` bytes): a
    dimension beyond ``intp``, or the non-zero dimensions' bytes beyond it. numpy refuses
    such a shape even for an empty array (``(0, 2**64 - 1)``: "Maximum allowed dimension
    exceeded"), which a file can declare in a few bytes."""
    limit = _INTP_MAX
    if any(n > limit for n in shape):
        return True
    return math.prod(n for n in shape if n) * max(int(itemsize), 1) > limit


def refuse_unholdable(shape: tuple[int, ...], itemsize: int, where: str) -> None:
    """An UnreadableFileError when :func:`unholdable` (one line instead of numpy's
    ValueError, exit 4, when the array is read)."""
    if unholdable(shape, itemsize):
        from ..text import clip

        raise UnreadableFileError(
            f"{where}: the file declares shape {clip(shape)}, which no array can have "
            f"(numpy holds at most {_INTP_MAX} bytes and elements per axis)"
        )


def refuse_bad_code_points(array: np.ndarray, where: str, offset: int = 0) -> None:
    """An InvalidDataError when a numpy text array (``U``: 4 bytes a character) holds a
    value that is no Unicode code point (beyond U+10FFFF): Python cannot make a string of it
    (a SystemError, exit 4, wherever the value was used). ``offset``: the array's first row."""
    if array.dtype.kind != "U" or array.size == 0 or array.dtype.itemsize == 0:
        return
    codes = np.ascontiguousarray(array).view(array.dtype.byteorder.replace("|", "=") + "u4")
    bad = codes > 0x10FFFF
    if bad.any():
        flat = int(np.flatnonzero(bad.reshape(-1))[0])
        per_value = array.dtype.itemsize // 4
        index = np.unravel_index(flat // per_value, array.shape) if array.ndim else ()
        at = tuple(int(i) for i in index)
        if at:
            at = (at[0] + offset, *at[1:])
        from ..errors import InvalidDataError

        raise InvalidDataError(
            f"{where}: text value at index {at if len(at) != 1 else at[0]} holds code "
            f"{int(codes.reshape(-1)[flat]):#x}, which is no Unicode character (at most "
            f"0x10ffff); {int(bad.sum())} such character(s)"
        )


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

    #: True where :meth:`read_into` fills the buffer it is given (a copy avoided); False where
    #: it returns what :meth:`read` returns (e.g. a view of an array already in memory)
    fills_buffers = False

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows ``start:stop``, read into ``out[: stop - start]`` (an array of this source's
        shape per row and :attr:`buffer_dtype`) when :attr:`fills_buffers`, else as
        :meth:`read` returns them. The result may be ``out``'s memory: it is valid until
        ``out`` is reused."""
        return self.read(start, stop)

    @property
    def buffer_dtype(self) -> np.dtype:
        """The dtype of the buffers :meth:`read_into` fills (the stored one, native order)."""
        return self.dtype.newbyteorder("=")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.where} shape={self.shape} dtype={self.dtype}>"


class MemorySource(ArraySource):
    """An array already in memory: anything :func:`ncinspect.arrays.to_host` accepts."""

    def __init__(self, array: Any, where: str):
        self.array = to_host(array, where)
        self.where = where
        self.shape = tuple(self.array.shape)
        self.dtype = self.array.dtype

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        if self.array.ndim == 0:
            return self.array
        return self.array[start:stop]


class TensorSource(ArraySource):
    """A torch tensor (any device, any dtype) read in row chunks: only the chunk being
    analysed is copied to the host, converted by :func:`ncinspect.arrays.to_host`."""

    def __init__(self, tensor: Any, where: str):
        self.tensor = tensor.detach()
        self.where = where
        self.shape = tuple(int(n) for n in self.tensor.shape)
        self.dtype = host_dtype(self.tensor)

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        if not self.shape:
            return to_host(self.tensor, self.where)
        return to_host(self.tensor[start:stop], self.where)


_NUMBER_TYPES: list | None = None  # (HDF5 type, the dtype h5py gives it), most common first


def h5_dtype(tid) -> np.dtype:
    """The dtype h5py gives the HDF5 datatype ``tid`` (``tid.dtype``): the common number
    types are recognised by comparing ``tid`` with each (``H5Tequal``, which compares
    every property h5py's conversion reads), many times cheaper than the conversion;
    anything else is converted by h5py."""
    dtype = _number_dtype(tid)
    return tid.dtype if dtype is None else dtype


def _number_dtype(tid) -> np.dtype | None:
    """The dtype of ``tid`` when it is one of the common number types (:func:`h5_dtype`),
    else None."""
    global _NUMBER_TYPES
    if _NUMBER_TYPES is None:
        from h5py import h5t

        _NUMBER_TYPES = [
            (t, t.dtype)
            for t in (
                h5t.IEEE_F32LE,
                h5t.IEEE_F64LE,
                h5t.STD_I64LE,
                h5t.STD_I32LE,
                h5t.IEEE_F16LE,
                h5t.STD_U8LE,
                h5t.STD_I8LE,
                h5t.STD_I16LE,
                h5t.STD_U16LE,
                h5t.STD_U32LE,
                h5t.STD_U64LE,
            )
        ]
    for known, dtype in _NUMBER_TYPES:
        if tid.equal(known):
            return dtype
    return None


def _h5py():
    """h5py, imported on first use (NPZ and safetensors files never import it): an
    ``import`` or ``from h5py import ...`` statement in a method runs importlib's Python
    code on every call (a package's ``from`` list is handled in Python), once per read."""
    global _H5PY
    if _H5PY is None:
        import h5py

        _H5PY = h5py
    return _H5PY


_H5PY = None

_MEMORY_TYPES: dict = {}  # numpy dtype -> the HDF5 memory type h5py makes for it


def memory_type(dtype: np.dtype):
    """The HDF5 memory type h5py reads a buffer of plain numbers ``dtype`` with
    (``h5t.py_create``, what h5py makes on every read it is not given one), made once."""
    mtype = _MEMORY_TYPES.get(dtype)
    if mtype is None:
        from h5py import h5t

        mtype = _MEMORY_TYPES[dtype] = h5t.py_create(dtype)
    return mtype


class H5Source(ArraySource):
    """A dataset of an open ``h5py.File`` (read-only): an ``h5py.Dataset`` or its low-level
    ``DatasetID`` (the high-level object is made only for reads that need it).

    A dataset with a null dataspace (no values at all) has shape ``()`` and raises
    :class:`UnreadableFileError` when read. ``layout``: ``(layout, chunk shape or None,
    external file count)`` of its creation property list when the caller has read them
    (the HDF5 walk has), so that :meth:`check` need not read them again. ``fixed_extent``:
    the file is open read-only and no writer in this process shares it (HDF5 then refuses
    one), so the extent cannot change and whole reads need not ask for it again.
    """

    def __init__(
        self,
        dataset,
        where: str,
        *,
        max_read: int | None = None,
        explicit: bool = False,
        layout: tuple[int, tuple[int, ...] | None, int] | None = None,
        fixed_extent: bool = False,
    ):
        if isinstance(dataset, _h5py().Dataset):
            self._dataset, self._id = dataset, dataset.id
        else:
            self._dataset, self._id = None, dataset
        self.where = where
        self.max_read = max_read
        self.explicit = explicit
        self._layout = layout
        self._fixed_extent = fixed_extent
        self._checked = False
        self._kept: np.ndarray | None = None  # the whole array, when small (see _Kept)
        shape = self._id.shape
        self.null = shape is None
        self.shape = () if shape is None else tuple(map(int, shape))
        #: why numpy cannot hold the dataset's type (an HDF5 time type, ...), or None: such
        #: a dataset is refused when (and only if) it is used, as an unread safetensors
        #: dtype is; a file was refused whole for one such dataset no snapshot uses
        self._unsupported: str | None = None
        self._type_size = 0  # bytes a value takes in the file (0: its type is unreadable)
        try:
            tid = self._id.get_type()
            known = _number_dtype(tid)
            if known is not None:  # a standard type (H5Tequal): its size is the dtype's
                self._type_size, self.dtype = known.itemsize, known
            else:
                self._type_size = int(tid.get_size())
                self.dtype = np.dtype(tid.dtype)
        except Exception as exc:  # noqa: BLE001 - h5py raises varied errors for odd types
            text = str(exc).strip().splitlines()
            self._unsupported = f"unsupported HDF5 datatype ({clip(text[0] if text else exc)})"
            self.dtype = np.dtype(f"V{max(self._file_itemsize(), 1)}")
            self.shown_dtype = self._unsupported.replace("unsupported ", "", 1)

    def _file_itemsize(self) -> int:
        """Bytes a value takes in the file (its HDF5 datatype's size; a 24-bit float is 3
        bytes in the file and float32 in numpy), or 0 when it cannot be read (read once,
        with the type, when the source is made)."""
        return self._type_size

    def _refuse_unsupported(self) -> None:
        if self._unsupported is not None:
            raise UnsupportedDtypeError(f"{self.where}: {self._unsupported}")

    @property
    def dataset(self):
        """The ``h5py.Dataset`` (made on first use)."""
        if self._dataset is None:
            self._dataset = _h5py().Dataset(self._id)
        return self._dataset

    def _storage(self) -> tuple[int, tuple[int, ...] | None, int]:
        """``(layout, chunk shape or None, external file count)``, read once."""
        if self._layout is None:
            dcpl = self._id.get_create_plist()
            layout = dcpl.get_layout()
            chunks = dcpl.get_chunk() if layout == _h5py().h5d.CHUNKED else None
            self._layout = (layout, chunks, dcpl.get_external_count())
        return self._layout

    @property
    def chunk_rows(self) -> int | None:
        chunks = self._storage()[1]
        return int(chunks[0]) if chunks else None

    def check(self) -> None:
        """Refuse, before any read, a dataset whose values the file cannot hold or whose
        chunks decompress to more than the chunk bound (:func:`ncinspect.budget.chunk_bound`).

        Declared rows that were never written read back as fill values, which would be
        analysed as data: a contiguous dataset must have its storage allocated and a chunked
        one every chunk its shape needs. Raises UnreadableFileError or ResourceLimitError.
        """
        if self._checked or self.null:
            return
        refuse_unholdable(self.shape, self.dtype.itemsize, self.where)
        self._refuse_unsupported()
        dsid, itemsize = self._id, self.dtype.itemsize
        # what the file stores: values of the file's type (a 24-bit float is read as
        # float32: 3 bytes stored a value, not 4; 0.2 took it for unwritten storage)
        # (never more than numpy's: a variable-length value is a reference of either size)
        declared = math.prod(self.shape) * min(self._file_itemsize() or itemsize, itemsize)
        try:
            layout, chunks, external = self._storage()
            if chunks:
                bound = chunk_bound(None) if self.max_read is None else self.max_read
                chunk_bytes = math.prod(chunks) * itemsize
                if chunk_bytes > bound:
                    how = "what the memory limit leaves" if self.explicit else "the default bound"
                    raise ResourceLimitError(
                        f"{self.where}: one HDF5 chunk {tuple(chunks)} of {self.dtype} is "
                        f"{fmt_bytes(chunk_bytes)} decompressed, over {how} of "
                        f"{fmt_bytes(bound)}; give --memory-limit "
                        f"{fmt_bytes(chunk_bytes * 1.25).replace(' ', '')} or more, or "
                        "rewrite the file with smaller chunks"
                    )
                needed = math.prod(-(-n // c) for n, c in zip(self.shape, chunks, strict=True))
                if declared and needed:
                    written = dsid.get_num_chunks()
                    if written < needed:
                        raise UnreadableFileError(
                            f"{self.where}: shape {self.shape} needs {needed} chunks but only "
                            f"{written} are written; the rest would read as fill values, "
                            "not data"
                        )
            elif layout == _h5py().h5d.CONTIGUOUS and not external and declared:
                stored = dsid.get_storage_size()
                if stored < declared:
                    raise UnreadableFileError(
                        f"{self.where}: shape {self.shape} declares {fmt_bytes(declared)} but "
                        f"the file stores {fmt_bytes(stored)} of it; unwritten values would "
                        "read as fill values, not data"
                    )
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as exc:
            text = str(exc).strip().splitlines()
            raise UnreadableFileError(
                f"{self.where}: cannot read the dataset layout ({text[0] if text else exc!r})"
            ) from None
        self._checked = True

    @property
    def fills_buffers(self) -> bool:
        # plain numbers only: h5py converts them into a buffer of the native dtype
        return not self.null and len(self.shape) >= 1 and self.dtype.kind in "fiu"

    def read_into(self, start: int, stop: int, out: np.ndarray) -> np.ndarray:
        """Rows ``start:stop`` read straight into ``out`` (no array allocated per chunk)."""
        if not self.fills_buffers:
            return self.read(start, stop)
        stop = min(int(stop), self.shape[0])
        start = min(int(start), stop)
        view = out[: stop - start]
        whole = view.shape == self.shape and view.flags.c_contiguous
        if whole and self._whole(start, stop, view.dtype):
            self._guarded(start, stop, lambda: self._read_whole(view))
        elif view.size:
            self._guarded(start, stop, lambda: self.dataset.read_direct(view, np.s_[start:stop]))
        return view

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        self._refuse_unsupported()
        if self.null:
            raise UnreadableFileError(f"{self.where}: has a null dataspace (holds no values)")
        # stored in native order (plain numbers, as _whole requires: isnative is then
        # ``dtype == buffer_dtype``, without making the native dtype on every read)
        if self._whole(start, stop, self.dtype) and self.dtype.isnative:
            return self._guarded(start, stop, lambda: self._read_whole(None))
        if not self.shape:
            return self._guarded(start, stop, lambda: np.asarray(self.dataset[()]))
        return self._guarded(start, stop, lambda: self.dataset[start:stop])

    def _whole(self, start, stop, dtype: np.dtype) -> bool:
        """Whether rows ``start:stop`` are the whole (non-empty) array of plain numbers, read
        into ``dtype``: one read of the full dataspace (no selection built), the values and
        conversions of h5py's sliced read."""
        shape = self.shape
        return (
            start in (0, None)
            and len(shape) >= 1
            and (stop is None or stop >= shape[0])
            and 0 not in shape
            and self.dtype.kind in "fiu"
            and dtype.kind in "fiu"
        )

    def _read_whole(self, out: np.ndarray | None) -> np.ndarray:
        """The whole array, into ``out`` (or a new array); a small one read from the file
        once and then copied from what :data:`_KEPT` keeps (both passes of a small snapshot
        read it, and labels shared by many snapshots are read by each)."""
        kept = _KEPT.get(self)
        if kept is not None and (out is None or out.dtype == kept.dtype):
            if out is None:
                return kept.copy()
            np.copyto(out, kept)
            return out
        if out is None:
            out = np.empty(self.shape, self.dtype)
        self._from_file(out)
        _KEPT.offer(self, out)
        return out

    def _from_file(self, out: np.ndarray) -> None:
        now = out.shape if self._fixed_extent else tuple(self._id.shape)
        if now != out.shape:  # the extent changed since it was read (a writer in this
            raise ValueError(  # process): HDF5 would not check the buffer (one line, by _guarded)
                f"the dataset's shape is now {now}, was {out.shape}"
            )
        h5s = _h5py().h5s
        self._id.read(h5s.ALL, h5s.ALL, out, mtype=memory_type(out.dtype))

    def _guarded(self, start, stop, read):
        """``read()`` after :meth:`check`, h5py's errors turned into one line naming the rows."""
        self.check()
        try:
            return read()
        except (OSError, RuntimeError, ValueError, KeyError, TypeError, OverflowError) as exc:
            text = str(exc).strip().splitlines()
            raise UnreadableFileError(
                f"{self.where}: cannot read rows {start}:{stop} ({text[0] if text else exc!r})"
                f"{self._filter_hint()}"
            ) from None
        except MemoryError:
            raise ResourceLimitError(
                f"{self.where}: not enough memory to read rows {start}:{stop} "
                f"({self.nbytes} bytes for the whole array); give a smaller --memory-limit "
                "or --chunk-rows, or run on a machine with more memory"
            ) from None

    def _filter_hint(self) -> str:
        """Why a read failed, from the dataset's filter pipeline: a filter this libhdf5 lacks
        (libhdf5 says only "filter returned failure during read"), or a Fletcher32 checksum;
        empty when the pipeline says nothing."""
        try:
            from h5py import h5z

            dcpl = self._id.get_create_plist()
            codes = []
            for i in range(dcpl.get_nfilters()):
                code, _flags, _values, name = dcpl.get_filter(i)
                if not h5z.filter_avail(code):
                    label = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
                    label = f" ({clip(label, 60)})" if label else ""
                    return (
                        f"; it needs HDF5 filter {code}{label}, which is not available to this "
                        "libhdf5: install its plugin (e.g. pip install hdf5plugin, then "
                        "HDF5_PLUGIN_PATH) or rewrite the file without it"
                    )
                codes.append(code)
        except Exception:  # noqa: BLE001 - a hint only: the read error stands on its own
            return ""
        if h5z.FILTER_FLETCHER32 in codes:
            return (
                "; the dataset carries Fletcher32 checksums, and its stored data fail them "
                "or another filter: the file is corrupt"
            )
        return ""


class _Kept:
    """The last whole reads of small HDF5 arrays (each at most :attr:`ITEM` bytes, all
    together at most :attr:`TOTAL`, the oldest dropped first), so that reading one again
    copies it instead of asking the file: the two passes over a small snapshot read its
    features twice, and labels shared by many snapshots are read for each. The copy is
    held by its :class:`H5Source` (one open dataset of a file opened read-only), so
    nothing outlives the source."""

    ITEM = 64 << 10  #: bytes of the largest array kept
    TOTAL = 1 << 20  #: bytes kept in all (less under a small memory limit)

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._order: list = []  # (weak reference to the source, bytes), oldest first
        self._bytes = 0  # of the entries listed (a source gone since still counts)

    @staticmethod
    def get(source) -> np.ndarray | None:
        return source._kept

    def offer(self, source, array: np.ndarray) -> None:
        size = array.nbytes
        cap = self.TOTAL if source.max_read is None else min(self.TOTAL, source.max_read // 8)
        if size > min(self.ITEM, cap) or source._kept is not None:
            return
        with self._lock:
            while self._order and self._bytes + size > cap:
                ref, old_size = self._order.pop(0)
                old = ref()
                if old is not None:
                    old._kept = None
                self._bytes -= old_size
            source._kept = array.copy()
            self._order.append((weakref.ref(source), size))
            self._bytes += size

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays kept now."""
        with self._lock:
            kept = (ref() for ref, _ in self._order)
            return sum(s._kept.nbytes for s in kept if s is not None and s._kept is not None)


_KEPT = _Kept()


def as_source(value: Any, where: str) -> ArraySource | None:
    """Wrap ``value`` (any array, tensor or ArraySource) as an ArraySource; ``None`` stays
    ``None``. Torch tensors stay where they are and are copied to the host chunk by chunk."""
    if value is None or isinstance(value, ArraySource):
        return value
    if is_tensor(value) and getattr(value, "ndim", 0) >= 1:
        return TensorSource(value, where)
    return MemorySource(value, where)
