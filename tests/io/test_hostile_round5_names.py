"""Hostile round five, class 3 (two names for one thing): a class order naming two classes
alike.

With string labels a repeated name in ``class_names`` was refused (round three), but with
integer labels (row indices of W) it was accepted: per-class outputs are keyed by name, so
two rows of W called ``cat`` collided in the JSON (one row lost) and in the tables. Every
reader that takes a class order now refuses it in one line naming the file, the array (or
metadata) and the two indices: HDF5 arrays and attributes, NPZ arrays and ``meta``,
safetensors metadata, ``--class-names FILE``, ``analyze(class_names=...)``, and the
:class:`~ncinspect.DumpWriter` refuses to write one.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import InvalidDataError, UsageError

from ..helpers import make_data

NAMES = ["cat", "dog", "cat"]  # indices 0 and 2 share a name


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _write(path, container: str, names) -> None:
    h, y, m = make_data(C=3, d=5, n=10)
    if container == "hdf5_array":
        with h5py.File(path, "w") as f:
            f["features"], f["labels"], f["weights"] = h, y, m
            f["class_names"] = np.array(names, dtype=h5py.string_dtype())
    elif container == "hdf5_attr":
        with h5py.File(path, "w") as f:
            g = f.create_group("epoch_1")
            g["features"], g["labels"], g["weights"] = h, y, m
            g.attrs["class_names"] = np.array(names, dtype=h5py.string_dtype())
    elif container == "npz_array":
        np.savez(path, features=h, labels=y, weights=m, class_names=np.array(names))
    elif container == "npz_meta":
        meta = np.array(json.dumps({"class_names": names}))
        np.savez(path, features=h, labels=y, weights=m, meta=meta)
    elif container == "safetensors_meta":
        import safetensors.numpy

        tensors = {"features": h, "labels": y, "weights": m}
        meta = {"meta": json.dumps({"class_names": names})}
        safetensors.numpy.save_file(tensors, str(path), metadata=meta)
    else:  # the names both spelled "1": an integer and a string in JSON metadata
        meta = np.array(json.dumps({"class_names": [1, "0", "1"]}))
        np.savez(path, features=h, labels=y, weights=m, meta=meta)


CONTAINERS = ["hdf5_array", "hdf5_attr", "npz_array", "npz_meta", "safetensors_meta", "npz_mixed"]


@pytest.mark.parametrize("container", CONTAINERS)
def test_a_repeated_class_name_with_integer_labels_is_refused(tmp_path, capsys, container):
    suffix = {"hdf5": ".h5", "npz": ".npz", "safetensors": ".safetensors"}[container.split("_")[0]]
    path = tmp_path / f"dump{suffix}"
    _write(path, container, NAMES)
    assert main(["report", str(path), "-q"]) == 3
    line = _one_error_line(capsys)
    assert str(path) in line and "class_names" in line, line
    assert "appears twice" in line and "indices 0 and 2" in line, line
    with pytest.raises(InvalidDataError, match="indices 0 and 2"):
        ncinspect.analyze_file(str(path))
    for command in (
        ["check", str(path), "--max", "nc1=100"],
        ["plot", str(path), "-o", str(tmp_path / "p")],
    ):
        assert main(command) == 3, command
        assert "indices 0 and 2" in _one_error_line(capsys)
    # the same file with three names reads
    good = tmp_path / f"good{suffix}"
    _write(good, container, ["cat", "dog", "owl"] if container != "npz_mixed" else None)
    if container != "npz_mixed":
        assert main(["report", str(good), "-q"]) == 0


def test_arrays_in_memory_with_a_repeated_class_name_are_refused():
    h, y, m = make_data(C=3, d=5, n=10)
    with pytest.raises(
        InvalidDataError,
        match=r"class_names: class name 'cat' appears twice "
        r"\(indices 0 and 2\)",
    ):
        ncinspect.analyze(h, y, weights=m, class_names=NAMES)
    # string labels: the same message (it said "rows" before)
    with pytest.raises(InvalidDataError, match="indices 0 and 2"):
        ncinspect.analyze(h, np.array(["cat", "dog", "owl"])[y], weights=m, class_names=NAMES)
    assert ncinspect.analyze(h, y, weights=m, class_names=["cat", "dog", "owl"]) is not None


def test_class_names_file_with_a_repeated_name_and_integer_labels(tmp_path, capsys):
    path = tmp_path / "dump.h5"
    _write(path, "hdf5_array", ["a", "b", "c"])
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\ncat\n")
    assert main(["report", str(path), "--class-names", str(names)]) == 3
    line = _one_error_line(capsys)
    assert str(names) in line and "appears twice (lines 1 and 3)" in line


def test_dump_writer_refuses_a_repeated_class_name_before_writing(tmp_path):
    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "run.h5"
    with ncinspect.DumpWriter(path, "w") as w:
        with pytest.raises(UsageError, match=r"run.h5:/class_names.*indices 0 and 2"):
            w.write("class_names", NAMES)
        with pytest.raises(UsageError, match=r"metadata class_names.*indices 0 and 2"):
            w.set_meta(class_names=NAMES)
        with pytest.raises(UsageError, match="indices 0 and 2"):
            w.snapshot("epoch_1", class_names=("cat", "dog", "cat"))
        with w.snapshot("epoch_2") as s:
            with pytest.raises(UsageError, match="indices 1 and 2"):
                s.write(class_names=np.array([b"a", b"b", b"b"]))
            s.append(features=h, labels=y)
            s.write(weights=m)
    with h5py.File(path, "r") as f:
        assert "class_names" not in f and "class_names" not in f.attrs
        assert "class_names" not in f["epoch_2"]
    assert [r.name for r in ncinspect.analyze_file(str(path))] == ["/epoch_2"]


def test_a_refused_write_leaves_no_marker(tmp_path):
    """A write the DumpWriter refuses (repeated names, object features) marked the group
    before refusing and left the mark: every snapshot below the root was skipped since."""
    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "run.h5"
    with ncinspect.DumpWriter(path, "w") as w:
        w.write("labels", y)
        with w.snapshot("epoch_1") as s:
            s.append(features=h)
            s.write(weights=m)
        with pytest.raises(UsageError):
            w.write("class_names", NAMES)
        with pytest.raises(UsageError):
            w.write("features", np.array([object()] * 3, dtype=object), group="epoch_9")
        with pytest.raises(UsageError):
            s.write(class_names=NAMES)
        f = w._file  # the state a kill -9 here would leave
        marked = [k for k in ("/", "epoch_1") if ncinspect.io.writer.IN_PROGRESS in f[k].attrs]
        assert marked == []


LOOK_ALIKE = [
    ("caf\u00e9", "cafe\u0301"),  # precomposed and decomposed e-acute (canonically equal)
    ("cat", "cat\u200b"),  # a zero-width space
    ("dog", "\ufeffdog"),  # a byte order mark
    ("owl", "ow\u00adl"),  # a soft hyphen
    ("fox", "fox\u2060"),  # a word joiner
    ("emu", "emu "),  # a trailing blank
]


@pytest.mark.parametrize("a, b", LOOK_ALIKE)
def test_class_names_that_look_the_same_are_refused(tmp_path, capsys, a, b):
    """Two names that differ only in what shows nothing: JSON keeps two keys, but every table,
    figure and check line shows two classes of one name (round five)."""
    names = [a, "zebra", b]
    h, y, m = make_data(C=3, d=5, n=10)
    with pytest.raises(InvalidDataError, match=r"\(index 0\).*\(index 2\) look the same"):
        ncinspect.analyze(h, y, weights=m, class_names=names)
    path = tmp_path / "dump.h5"
    _write(path, "hdf5_array", names)
    assert main(["report", str(path), "-q"]) == 3
    line = _one_error_line(capsys)
    assert f"{path}:/class_names" in line and "look the same" in line
    text = tmp_path / "names.txt"
    text.write_text("\n".join(names) + "\n", encoding="utf-8")
    good = tmp_path / "good.h5"
    _write(good, "hdf5_array", ["x", "y", "z"])
    assert main(["report", str(good), "--class-names", str(text)]) == 3
    assert "(line 1)" in _one_error_line(capsys)
    with ncinspect.DumpWriter(tmp_path / "w.h5", "w") as w:
        with pytest.raises(UsageError, match="look the same"):
            w.write("class_names", names)


@pytest.mark.parametrize("a, b", [*LOOK_ALIKE[:3], LOOK_ALIKE[-1]])
def test_string_labels_that_look_the_same_are_refused(a, b):
    """String labels ``cat`` and ``cat`` + a zero-width space were two classes shown alike:
    one class too many, every metric computed over it, and nothing on screen to tell."""
    h, y, m = make_data(C=3, d=5, n=10)
    labels = np.array([a, "zebra", b])[y]
    with pytest.raises(InvalidDataError, match="label values .* look the same"):
        ncinspect.analyze(h, labels)
    # names that differ visibly stay classes of their own
    assert ncinspect.analyze(h, np.array(["cat", "Cat", "c at"])[y]).n_classes == 3


def test_joiners_that_change_rendering_are_names_of_their_own():
    h, y, m = make_data(C=3, d=5, n=10)
    names = ["\u0645\u200c\u06cc", "\u0645\u06cc", "x"]  # Persian: with and without a ZWNJ
    assert ncinspect.analyze(h, y, weights=m, class_names=names).n_classes == 3
