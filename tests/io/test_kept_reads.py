"""A small HDF5 array is read from the file once and then copied (io/sources.py, _Kept):
both passes over a small snapshot, and labels shared by many snapshots, cost one read;
large arrays are never kept, and what is kept is bounded and dies with its source."""

from __future__ import annotations

import gc

import h5py
import numpy as np
import pytest

from ncinspect.engines.local import ChunkReader
from ncinspect.io import sources
from ncinspect.io.sources import H5Source


@pytest.fixture
def file_reads(monkeypatch):
    """Counts the reads that reach the file, by source."""
    counts: dict[str, int] = {}
    real = H5Source._from_file

    def counted(self, out):
        counts[self.where] = counts.get(self.where, 0) + 1
        return real(self, out)

    monkeypatch.setattr(H5Source, "_from_file", counted)
    return counts


def _file(tmp_path, shapes):
    rng = np.random.default_rng(5)
    path = tmp_path / "k.h5"
    values = {}
    with h5py.File(path, "w") as f:
        for name, (shape, dtype) in shapes.items():
            values[name] = (rng.standard_normal(shape) * 10).astype(dtype)
            f[name] = values[name]
    return path, values


def test_a_small_array_is_read_once_and_copied_the_same_after(tmp_path, file_reads):
    path, values = _file(tmp_path, {"x": ((40, 8), "<f4"), "y": ((40,), ">i8")})
    with h5py.File(path, "r") as f:
        x = H5Source(f["x"], "x")
        y = H5Source(f["y"], "y")
        for _ in range(3):  # pass 1, pass 2, one more
            reader = ChunkReader(x, rows=64)
            got = reader.read(0, 40)
            np.testing.assert_array_equal(got, values["x"])
            got[:] = -1  # the caller's buffer: writing into it changes nothing kept
            whole = x.read_all()
            np.testing.assert_array_equal(whole, values["x"])
            whole[:] = -2
            by = ChunkReader(y, rows=64).read(0, 40)
            np.testing.assert_array_equal(by, values["y"])
            assert by.dtype == np.dtype("=i8")
    assert file_reads == {"x": 1, "y": 1}


def test_a_large_array_is_read_from_the_file_each_time(tmp_path, file_reads):
    rows = sources._Kept.ITEM // (8 * 4) + 1  # one row over what is kept
    path, values = _file(tmp_path, {"big": ((rows, 8), "<f4")})
    with h5py.File(path, "r") as f:
        big = H5Source(f["big"], "big")
        for _ in range(2):
            np.testing.assert_array_equal(big.read_all(), values["big"])
    assert file_reads == {"big": 2}


def test_what_is_kept_is_bounded_and_dies_with_its_sources(tmp_path, file_reads):
    n = 40
    shape = (64, 128)  # 32 KiB each
    path, _ = _file(tmp_path, {f"a{i}": (shape, "<f4") for i in range(n)})
    with h5py.File(path, "r") as f:
        srcs = [H5Source(f[f"a{i}"], f"a{i}") for i in range(n)]
        for s in srcs:
            s.read_all()
            assert sources._KEPT.nbytes <= sources._Kept.TOTAL
        assert sources._KEPT.nbytes > 0
        # the newest are kept (read again: no file read), the oldest were dropped
        srcs[-1].read_all()
        srcs[0].read_all()
        assert file_reads["a39"] == 1 and file_reads["a0"] == 2
        del srcs, s
        gc.collect()
        assert sources._KEPT.nbytes == 0


def test_a_memory_limit_shrinks_what_is_kept(tmp_path, file_reads):
    path, _ = _file(tmp_path, {"x": ((40, 8), "<f4")})
    with h5py.File(path, "r") as f:
        tight = H5Source(f["x"], "x", max_read=1024)  # a 1 KiB bound keeps nothing of 1.25 KiB
        tight.read_all()
        tight.read_all()
    assert file_reads == {"x": 2}
