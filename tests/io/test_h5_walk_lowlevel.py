"""The HDF5 walk on h5py's low-level ids (io/hdf5.py) gives what h5py's high-level objects
give: every attribute as ``attrs[name]`` reads it, every dataset's shape and dtype, the
writer's marker, for every kind of attribute and datatype a dump may hold."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ncinspect.io.hdf5 import decode_attr, read_h5_tree
from ncinspect.io.sources import h5_dtype
from ncinspect.io.tree import IN_PROGRESS

_DTYPES = [
    "<f2", "<f4", "<f8", ">f2", ">f4", ">f8",
    "<i1", "<i2", "<i4", "<i8", ">i2", ">i4", ">i8",
    "<u1", "<u2", "<u4", "<u8", ">u2", ">u8",
    "?", "<c8", ">c16", "S5",
]  # fmt: skip


@pytest.mark.parametrize("dtype", _DTYPES)
def test_h5_dtype_is_h5pys_dtype(tmp_path, dtype):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros(3, dtype)
        f.attrs["a"] = np.zeros(2, dtype)
    with h5py.File(path, "r") as f:
        ds = f["x"]
        got = h5_dtype(ds.id.get_type())
        assert got == ds.dtype and got.str == ds.dtype.str
        aid = h5py.h5a.open(f.id, b"a")
        assert h5_dtype(aid.get_type()) == aid.dtype


def test_compound_enum_and_string_types_are_converted_by_h5py(tmp_path):
    path = tmp_path / "t.h5"
    enum = h5py.enum_dtype({"a": 0, "b": 1}, basetype="i1")
    with h5py.File(path, "w") as f:
        f["c"] = np.zeros(2, [("p", "<f4"), ("q", "<i8")])
        f.create_dataset("e", shape=(2,), dtype=enum)
        f["s"] = np.array(["x", "yz"], dtype=h5py.string_dtype())
    with h5py.File(path, "r") as f:
        for name in ("c", "e", "s"):
            ds = f[name]
            got = h5_dtype(ds.id.get_type())
            assert (
                got == ds.dtype
                and h5py.check_enum_dtype(got) == h5py.check_enum_dtype(ds.dtype)
                and h5py.check_string_dtype(got) == h5py.check_string_dtype(ds.dtype)
            )


def _rich_file(path):
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "run"
        f.attrs["cfg"] = 'json:{"lr": 0.1, "layers": [1, 2]}'
        f.attrs["bytes"] = np.bytes_(b"raw")
        f.attrs["empty"] = h5py.Empty("f4")
        f.attrs["be"] = np.array([1, 2, 3], ">i4")
        f.attrs["f16"] = np.float16(0.5)
        f.attrs["strs"] = np.array([b"a", b"b"])
        f.attrs["vstr"] = np.array(["x", "yy"], dtype=h5py.string_dtype())
        f.attrs["cplx"] = np.complex64(1 + 2j)
        f.attrs["flag"] = np.bool_(True)
        f["labels"] = np.arange(6) % 2
        for e in range(3):
            g = f.create_group(f"epoch_{e}")
            g.attrs["epoch"] = e
            g.attrs["lr"] = np.float32(0.1 * e)
            g["features"] = np.ones((6, 4), ">f8")
            g.create_dataset("weights", data=np.ones((2, 4), "<f4"), chunks=(1, 4))
            sub = g.create_group("deep")
            sub.attrs["split"] = "test"
            sub["features"] = np.zeros((6, 4), "<f2")
        f["epoch_2"].attrs[IN_PROGRESS] = np.int8(1)
        f["alias"] = h5py.SoftLink("/epoch_0")


def test_the_tree_carries_what_h5pys_objects_read(tmp_path):
    path = tmp_path / "rich.h5"
    _rich_file(path)
    with h5py.File(path, "r") as f:
        notes: list[str] = []
        tree = read_h5_tree(f, str(path), notes=notes)
        for node in tree.walk():
            group = f[node.path]
            want = {k: decode_attr(group.attrs[k]) for k in group.attrs if k != IN_PROGRESS}
            assert node.attrs == want, node.path
            assert node.in_progress == (IN_PROGRESS in group.attrs)
            for name, src in node.arrays.items():
                ds = group[name]
                assert src.shape == ds.shape and src.dtype == ds.dtype, f"{node.path}/{name}"
                np.testing.assert_array_equal(src.read_all(), ds[()])
        # the soft link comes first in name order: the group it names is listed once, there
        assert sorted(tree.children) == ["alias", "epoch_1", "epoch_2"]
        assert any("/epoch_0: the same group as /alias" in n for n in notes), notes
        assert tree.children["alias"].arrays["weights"].chunk_rows == 1
        assert tree.children["alias"].arrays["features"].chunk_rows is None


def test_the_marker_is_found_beyond_the_attributes_read(tmp_path, monkeypatch):
    from ncinspect.io import hdf5

    monkeypatch.setattr(hdf5, "MAX_ATTRS", 3)
    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("s")
        for i in range(6):
            g.attrs[f"a{i}"] = i
        g.attrs[IN_PROGRESS] = np.int8(1)  # sorts after a0..a5: not among the first 3
        g["features"] = np.ones((2, 2))
    with h5py.File(path, "r") as f:
        notes: list[str] = []
        tree = read_h5_tree(f, str(path), notes=notes)
    node = tree.children["s"]
    assert node.in_progress and IN_PROGRESS not in node.attrs
    assert node.attrs == {"a0": 0, "a1": 1, "a2": 2}
    assert any("only the first 3 read" in n for n in notes)


def test_an_extent_changed_by_a_writer_of_this_process_is_still_refused(tmp_path):
    """A file open read-only (HDF5 refuses a writer of this process then) has fixed
    extents and whole reads do not ask for them again; a file a writer of this process
    holds may grow between two reads, and a whole read into the old shape is refused."""
    from ncinspect.errors import UnreadableFileError

    path = tmp_path / "grow.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.ones((3, 2)), maxshape=(None, 2), chunks=(8, 2))
    with h5py.File(path, "r") as f:
        src = read_h5_tree(f, str(path)).arrays["x"]
        assert src._fixed_extent
        with pytest.raises(OSError, match="already open for read-only"):
            h5py.File(path, "a")
    with h5py.File(path, "a") as w:
        src = read_h5_tree(w, str(path)).arrays["x"]
        assert not src._fixed_extent
        w["x"].resize((5, 2))
        with pytest.raises(UnreadableFileError, match="shape is now \\(5, 2\\), was \\(3, 2\\)"):
            src.read_into(0, 3, np.empty((3, 2)))
