"""Chunks read into reusable buffers: the same values as a plain read, and never reused
while a chunk is still being analysed."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.engines.local import ChunkReader, LocalEngine
from ncinspect.io.sources import H5Source, MemorySource

from ..helpers import make_data


@pytest.mark.parametrize(
    "dtype,chunks",
    [("<f4", None), ("<f4", (7, 5)), (">f8", (16, 5)), ("<i2", None), ("<f2", (3, 5))],
)
def test_read_into_equals_read(tmp_path, dtype, chunks):
    rng = np.random.default_rng(1)
    values = (rng.standard_normal((50, 5)) * 100).astype(dtype)
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=values, chunks=chunks)
    with h5py.File(path, "r") as f:
        src = H5Source(f["x"], f"{path}:/x")
        assert src.fills_buffers
        buf = np.full((12, 5), -1, src.buffer_dtype)
        for a in range(0, 50, 12):
            got = src.read_into(a, a + 12, buf)
            assert np.shares_memory(got, buf)
            np.testing.assert_array_equal(got, src.read(a, a + 12))
            assert got.dtype == np.dtype(dtype).newbyteorder("=")


def test_chunk_reader_alternates_two_buffers(tmp_path):
    path = tmp_path / "a.h5"
    values = np.arange(60, dtype=np.float32).reshape(20, 3)
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=values)
    with h5py.File(path, "r") as f:
        reader = ChunkReader(H5Source(f["x"], "x"), rows=6)
        first, second, third = reader.read(0, 6), reader.read(6, 12), reader.read(12, 18)
        assert not np.shares_memory(first, second)
        assert np.shares_memory(first, third)  # the third read reuses the first buffer
        np.testing.assert_array_equal(second, values[6:12])  # still valid after the third
        np.testing.assert_array_equal(third, values[12:18])
        np.testing.assert_array_equal(reader.read(18, 24), values[18:20])  # short last chunk


def test_memory_source_is_not_copied():
    values = np.ones((10, 2))
    reader = ChunkReader(MemorySource(values, "features"), rows=4)
    assert np.shares_memory(reader.read(0, 4), values)


@pytest.mark.parametrize("threads", [1, 2])
def test_streamed_chunks_equal_the_arrays_in_memory(tmp_path, threads):
    """Many small chunks read into two buffers (the next one read while this one is used)
    give the metrics of the same arrays analysed from memory."""
    h, y, w = make_data(C=5, d=12, n=900, offset=3.0)
    path = tmp_path / "run.h5"
    with ncinspect.DumpWriter(str(path), "w") as wr:
        wr.write("labels", y)
        snap = wr.snapshot("/")
        snap.append(features=h.astype(np.float32))
        snap.write(weights=w)
    engine = LocalEngine(threads=threads)
    streamed = ncinspect.analyze_file(path, chunk_rows=64, engine=engine)
    streamed = streamed.snapshots[0].metrics
    direct = ncinspect.analyze(h.astype(np.float32), y, weights=w, chunk_rows=64).metrics
    assert streamed.keys() == direct.keys()
    for key, value in direct.items():
        assert streamed[key] == value, key


@pytest.mark.filterwarnings("error::RuntimeWarning")  # the size in the message must not overflow
def test_a_chunk_buffer_too_large_is_a_resource_error():
    from ncinspect.errors import ResourceLimitError
    from ncinspect.io.sources import ArraySource

    class Huge(ArraySource):  # claims more rows than any machine holds
        where, shape, dtype, fills_buffers = (
            "big.h5:/features",
            (2**40, 2**20),
            np.dtype("f4"),
            True,
        )

    with pytest.raises(ResourceLimitError, match=r"big.h5:/features: not enough memory .* TiB"):
        ChunkReader(Huge(), rows=2**40).read(0, 10)
