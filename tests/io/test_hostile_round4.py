"""Hostile round four: variants of issue 22's classes that round three's tests missed.

Each file is built by hand in the test's folder and run through the CLI (in process, as the
other hostile tests do): bad input is one line naming the file and what was wrong, exit 3,
no traceback, the input unchanged.
"""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest

from ncinspect.cli import main

from ..helpers import file_digest, make_data, write_npz_members


def _safetensors(path, entries, data: bytes, meta=None, raw_meta: str | None = None):
    """A safetensors file whose header is written as text, so that it may hold what
    ``json.dumps`` of a dict cannot: one key twice. ``entries``: (name, dtype, shape,
    begin, end)."""
    parts = [
        json.dumps(name)
        + ":"
        + json.dumps({"dtype": dt, "shape": list(sh), "data_offsets": [b, e]})
        for name, dt, sh, b, e in entries
    ]
    if meta is not None or raw_meta is not None:
        parts.append('"__metadata__":' + (raw_meta if raw_meta is not None else json.dumps(meta)))
    raw = ("{" + ",".join(parts) + "}").encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return str(path)


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def _small():
    h, y, m = make_data(C=3, d=4, n=4)
    return h.astype("<f4"), y.astype("<i8"), m.astype("<f4")


# -- class 3 / 6: one key twice in a JSON header or metadata ----------------------------------


def test_safetensors_header_with_one_tensor_name_twice_is_refused(tmp_path, capsys):
    """``features`` twice in the JSON header, both over the same bytes, once as float32 and
    once as int32: json.loads and the safetensors library each kept one silently."""
    h, y, _ = _small()
    data = h.tobytes() + y.tobytes()
    n_h = len(h.tobytes())
    path = _safetensors(
        tmp_path / "twice.safetensors",
        [
            ("features", "F32", h.shape, 0, n_h),
            ("labels", "I64", y.shape, n_h, len(data)),
            ("features", "I32", h.shape, 0, n_h),
        ],
        data,
    )
    before = file_digest(path)
    for command in ("report", "info"):
        assert main([command, path]) == 3
        line = _one_error_line(capsys)
        assert "twice.safetensors" in line and "'features'" in line and "twice" in line
    assert file_digest(path) == before


@pytest.mark.parametrize(
    "raw_meta",
    [
        '{"epoch": "5", "epoch": "9"}',  # one metadata key twice
        '{"epoch": "5", "meta": "{\\"epoch\\": 7}"}',  # a key and the same key in meta
        '{"g/meta": "{\\"epoch\\": 7}", "g/epoch": "5"}',  # the same in a group
        '{"meta": "{\\"epoch\\": 7, \\"epoch\\": 8}"}',  # one key twice inside meta's JSON
    ],
)
def test_safetensors_metadata_given_twice_is_refused(tmp_path, capsys, raw_meta):
    h, y, _ = _small()
    data = h.tobytes() + y.tobytes()
    n_h = len(h.tobytes())
    names = ("g/features", "g/labels") if "g/" in raw_meta else ("features", "labels")
    path = _safetensors(
        tmp_path / "meta.safetensors",
        [(names[0], "F32", h.shape, 0, n_h), (names[1], "I64", y.shape, n_h, len(data))],
        data,
        raw_meta=raw_meta,
    )
    assert main(["report", path]) == 3
    line = _one_error_line(capsys)
    assert "meta.safetensors" in line and "epoch" in line
    assert "twice" in line or "the same value" in line


def test_npz_meta_with_one_key_twice_is_refused(tmp_path, capsys):
    h, y, _ = _small()
    path = tmp_path / "m.npz"
    np.savez(path, features=h, labels=y, meta=np.array('{"epoch": 1, "epoch": 2}'))
    assert main(["report", str(path)]) == 3
    line = _one_error_line(capsys)
    assert "m.npz" in line and "'epoch'" in line and "twice" in line


# -- class 11: names from a safetensors header echoed bounded ---------------------------------


@pytest.mark.parametrize(
    "shape,dtype,size",
    [((-1, 4), "F32", 0), ((3, 4), "F32", 4), ((1,), "Q" * 3000, 1)],
)
def test_long_tensor_names_and_dtypes_are_clipped_in_the_error(
    tmp_path, capsys, shape, dtype, size
):
    h, y, _ = _small()
    data = h.tobytes() + y.tobytes()
    n_h = len(h.tobytes())
    name = "a " * 3000  # spaces: the CLI's last guard (long words) does not shorten it
    entries = [
        ("features", "F32", h.shape, 0, n_h),
        ("labels", "I64", y.shape, n_h, len(data)),
        (name, dtype, shape, len(data), len(data) + size),
    ]
    path = _safetensors(tmp_path / "long.safetensors", entries, data + b"\0" * size)
    assert main(["report", path]) == 3
    line = _one_error_line(capsys)
    assert "long.safetensors" in line
    assert len(line) < 700, len(line)


# -- class 10: a pickle cut before its STOP is still named a pickle ---------------------------


class _Marker:
    """Unpickling it would create a folder: proof that nothing was unpickled."""

    def __init__(self, folder: str):
        self.folder = folder

    def __reduce__(self):
        import os

        return (os.mkdir, (self.folder,))


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize("suffix", [".pkl", ".h5", ""])
def test_a_protocol_0_or_1_pickle_cut_short_is_named_a_pickle(tmp_path, capsys, protocol, suffix):
    """A pickle whose writer was killed before its STOP opcode (protocols 0 and 1 have no
    header): round three called it 'not an HDF5 or NPZ dump' unless it was 64 kB long."""
    marker = tmp_path / "unpickled"
    blob = pickle.dumps(
        {"features": [[float(i)] * 4 for i in range(12)], "x": _Marker(str(marker))},
        protocol=protocol,
    )
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(blob[: len(blob) - 3])
    for command in ("info", "report"):
        assert main([command, str(path)]) == 3
        line = _one_error_line(capsys)
        assert "pickle" in line and "never unpickles" in line and "unpickling" not in line
    assert not marker.exists()


# -- class 3: an NPZ member named without .npy beside the same name with it ------------------


@pytest.mark.parametrize(
    "extra",
    [("features", "h2"), ("a/features", "h2"), ("meta", '{"epoch": 2}'), ("labels", "y2")],
)
def test_npz_member_with_and_without_the_npy_suffix_is_refused(tmp_path, capsys, extra):
    """``features.npy`` and ``features``: numpy's ``np.load(f)["features"]`` reads the
    member without the suffix, ncinspect read the one with it (and ignored the other)."""
    h, y, _ = _small()
    values = {"h2": h[::-1].copy(), "y2": y[::-1].copy(), '{"epoch": 2}': np.array('{"epoch": 2}')}
    name, key = extra
    prefix = "a/" if name.startswith("a/") else ""
    members = [
        (f"{prefix}features.npy", h),
        ("labels.npy", y),
        ("meta.npy", np.array('{"epoch": 1}')),
    ]
    path = write_npz_members(tmp_path / "two.npz", [*members, (name, values[key])])
    assert main(["report", path]) == 3
    line = _one_error_line(capsys)
    assert "two.npz" in line and f"'{name}.npy'" in line and f"'{name}'" in line


# -- class 8: labels that are not one value per row -------------------------------------------


@pytest.mark.parametrize("rows", ["empty", "one", "two", "ragged"])
def test_variable_length_integer_labels_are_refused(tmp_path, capsys, rows):
    """HDF5 variable-length integers as labels (a sequence per row): round three flattened
    them (one-element rows read as labels by accident, two-element rows as 2N labels) or
    exited 4 (empty or ragged rows: a numpy error, then a matmul error)."""
    import h5py

    h, y, m = make_data(C=3, d=5, n=10)
    make = {
        "empty": lambda i: np.array([], dtype=np.int64),
        "one": lambda i: np.array([y[i]]),
        "two": lambda i: np.array([y[i], 0]),
        "ragged": lambda i: np.arange(i % 3),
    }[rows]
    path = tmp_path / "vlen.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["weights"] = h, m
        ds = f.create_dataset("labels", (len(y),), dtype=h5py.vlen_dtype(np.int64))
        for i in range(len(y)):
            ds[i] = make(i)
    for command in ("report", "info"):
        rc = main([command, str(path)])
        if command == "info" and rc == 0:  # info lists arrays; it need not read labels
            capsys.readouterr()
            continue
        assert rc == 3
        line = _one_error_line(capsys)
        assert "vlen.h5:/labels" in line and "one integer or string per row" in line


def test_class_names_file_with_a_repeated_name_is_refused(tmp_path, capsys):
    """read_class_names promised to refuse a repeated name and did not: with integer labels
    two rows of W were named alike (string labels were caught later, by the match)."""
    import h5py

    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, m
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\ncat\n")
    assert main(["report", str(path), "--class-names", str(names)]) == 3
    line = _one_error_line(capsys)
    assert "names.txt" in line and "'cat' appears twice" in line


@pytest.mark.parametrize("source", ["/dev/zero", "fifo", "huge"])
def test_class_names_file_is_a_bounded_regular_file(tmp_path, capsys, source):
    """``--class-names /dev/zero`` read forever (8 GB resident in 20 s) and a FIFO waited
    forever: the class names file was opened as it came, unlike dumps and TOML configs."""
    import os

    import h5py

    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, m
    if source == "fifo":
        names = tmp_path / "names.fifo"
        os.mkfifo(names)
    elif source == "huge":
        names = tmp_path / "names.txt"
        with open(names, "wb") as f:
            f.truncate(65 << 20)  # sparse: 65 MiB declared, nothing stored
    else:
        names = source
    assert main(["report", str(path), "--class-names", str(names)]) == 3
    line = _one_error_line(capsys)
    assert "class names file" in line


@pytest.mark.parametrize("container", ["hdf5_same_group", "hdf5_child_attr", "npz"])
def test_two_class_orders_in_one_file_are_refused(tmp_path, capsys, container):
    """A class_names array and class_names metadata giving different orders: the array won
    silently, whichever was nearer the snapshot (a reversed order turned an accuracy of 1
    into 1/3 and nc3 from 0.003 into 2.0). The same order twice still reads."""
    import json

    import h5py

    h, y, m = make_data(C=3, d=5, n=10)
    labels = np.array(["a", "b", "c"])[y].astype("S1")
    order, reverse = ["a", "b", "c"], ["c", "b", "a"]

    def write(path, meta_order):
        if container == "npz":
            meta = np.array(json.dumps({"class_names": meta_order}))
            np.savez(path, features=h, weights=m, labels=labels, class_names=order, meta=meta)
            return
        with h5py.File(path, "w") as f:
            f["labels"], f["class_names"] = labels, np.array(order, dtype="S1")
            g = f if container == "hdf5_same_group" else f.create_group("epoch_1")
            g["features"], g["weights"] = h, m
            g.attrs["class_names"] = np.array(meta_order, dtype=h5py.string_dtype())

    suffix = ".npz" if container == "npz" else ".h5"
    bad, good = tmp_path / f"bad{suffix}", tmp_path / f"good{suffix}"
    write(bad, reverse)
    write(good, order)
    assert main(["report", str(bad)]) == 3
    line = _one_error_line(capsys)
    assert "two class orders" in line and "a, b, c" in line and "c, b, a" in line
    assert main(["report", str(good), "-q"]) == 0
