"""A whole dataset read in one call (no selection built: the fast path of small snapshots)
gives exactly h5py's sliced read: values, dtype and errors, for every layout and byte order."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ncinspect.errors import UnreadableFileError
from ncinspect.io.sources import H5Source


@pytest.mark.parametrize(
    "dtype,chunks,compression",
    [
        ("<f4", None, None),
        ("<f8", (7, 5), "gzip"),
        (">f8", (16, 5), None),
        ("<i2", None, None),
        (">u4", (3, 5), "gzip"),
        ("<f2", (3, 5), None),
        ("<i8", None, None),
    ],
)
def test_whole_reads_equal_sliced_reads(tmp_path, dtype, chunks, compression):
    rng = np.random.default_rng(2)
    values = (np.abs(rng.standard_normal((23, 5))) * 100).astype(dtype)
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=values, chunks=chunks, compression=compression)
        f["v"] = values[:, 0]  # 1-D
    with h5py.File(path, "r") as f:
        for name in ("x", "v"):
            ds = f[name]
            src = H5Source(ds, f"{path}:/{name}")
            for start, stop in ((0, None), (0, 23), (0, 99)):
                got, ref = src.read(start, stop), ds[start:stop]
                assert got.dtype == ref.dtype and got.shape == ref.shape
                np.testing.assert_array_equal(got, ref)
            assert src._whole(0, None, src.dtype)
            assert not src._whole(1, None, src.dtype)
            assert not src._whole(0, 22, src.dtype)
            buf = np.full(src.shape, 7, src.buffer_dtype)
            got = src.read_into(0, 23, buf)
            assert np.shares_memory(got, buf)
            np.testing.assert_array_equal(got, ds[()])
            part = src.read_into(0, 10, np.full(src.shape, 7, src.buffer_dtype))
            np.testing.assert_array_equal(part, ds[0:10])


def test_unwritten_storage_is_refused_on_the_whole_read_too(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", shape=(10, 3), dtype="f4")  # declared, never written
    with h5py.File(path, "r") as f:
        src = H5Source(f["x"], f"{path}:/x")
        assert src._whole(0, None, src.dtype)
        with pytest.raises(UnreadableFileError, match="fill values"):
            src.read(0, None)


def test_strings_and_empty_arrays_keep_the_sliced_read(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f["s"] = np.array([b"a", b"bc"])
        f["e"] = np.zeros((0, 3), "f4")
    with h5py.File(path, "r") as f:
        s = H5Source(f["s"], f"{path}:/s")
        assert not s._whole(0, None, s.dtype)
        assert s.read(0, None).tolist() == [b"a", b"bc"]
        e = H5Source(f["e"], f"{path}:/e")
        assert not e._whole(0, None, e.dtype)
        assert e.read(0, None).shape == (0, 3)
