"""Input encodings, round eight: unusual but valid encodings read as valid, and hostile
encodings refused in one line naming the file, the array and what was wrong (issue 22 items
3, 6 and 10's classes). The tests of refusals and fixes fail on the branch point (a312a35);
those that valid encodings still read (zip64 and data descriptors, HDF5 user blocks, a
Unicode Path field that agrees, full-width digits, a local name zipfile already refused)
are guards.

- One file, two readings (item 3): zip members that zip readers read differently (a stored
  member whose compressed size is not its size, a local header disagreeing with the central
  directory, an Info-ZIP Unicode Path name, a NUL or a backslash in a name, a local header
  the directory does not list, a member inside another's data), a zip or safetensors file
  that is also an HDF5 file, a named datatype under a role's name beside another.
- Valid encodings refused or misread: ``.npy`` format 3.0, a 24-bit float HDF5 dataset, an
  HDF5 type numpy cannot hold in a dataset no snapshot uses, a UTF-8 BOM in
  ``--class-names``, object-dtype integer labels.
- Exit 4 on encodings (item 6's class): empty arrays of a dimension numpy cannot hold,
  zero-byte dtypes, text codes beyond U+10FFFF, digits ``str.isdigit`` accepts and int()
  refuses (an epoch, a state-dict name, COLUMNS/LINES).
- Silent wrong numbers: complex or bool layer weights in ``theory`` (cast to float64),
  integers and text in different label blocks (merged), line separators other than a line
  feed in ``--class-names`` (one name split in two).
- Messages: a filter libhdf5 lacks, a Fletcher32 failure, a safetensors dtype ncinspect does
  not read (and ``info``), 0-d labels, a label that looks like a class name, a Fortran-ordered
  member over the read bound.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import NCInspectError

from ..helpers import file_digest, make_data


def _data(n=40, d=8):
    h, y, m = make_data(C=3, d=d, n=n)
    return h.astype(np.float64), y.astype(np.int64), m.astype(np.float64)


def _npy(arr, version=None) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), version=version)
    return buf.getvalue()


def _zip(path, members) -> str:
    """A zip written byte by byte: ``members`` are dicts with ``name`` (bytes), ``data``
    (the member's bytes), and optional ``method`` (0 or 8), ``local`` and ``central``
    (fields overriding what the local header or the central directory say: ``method``,
    ``crc``, ``csize``, ``usize``, ``flags``, ``name``), ``lextra``/``cextra`` (extra fields),
    ``pad`` (bytes after the member's data)."""
    out, central = bytearray(), bytearray()
    for m in members:
        raw = m["data"]
        method = m.get("method", 0)
        if method == 8:
            c = zlib.compressobj(6, zlib.DEFLATED, -15)
            comp = c.compress(raw) + c.flush()
        else:
            comp = raw
        true = dict(method=method, crc=zlib.crc32(raw), csize=len(comp), usize=len(raw))
        true.update(name=m["name"], flags=m.get("flags", 0))
        loc = {**true, "extra": m.get("lextra", b""), **m.get("local", {})}
        cen = {**true, "extra": m.get("cextra", b""), **m.get("central", {})}
        offset = len(out)
        out += struct.pack(
            "<4s5H3L2H", b"PK\x03\x04", 20, loc["flags"], loc["method"], 0, 0x21,
            loc["crc"], loc["csize"], loc["usize"], len(loc["name"]), len(loc["extra"]),
        )  # fmt: skip
        out += loc["name"] + loc["extra"] + comp + m.get("pad", b"")
        central += struct.pack(
            "<4s6H3L5H2L", b"PK\x01\x02", 20, 20, cen["flags"], cen["method"], 0, 0x21,
            cen["crc"], cen["csize"], cen["usize"], len(cen["name"]), len(cen["extra"]),
            0, 0, 0, 0, offset,
        )  # fmt: skip
        central += cen["name"] + cen["extra"]
    n = len(members)
    out += central + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, n, n, len(central), len(out), 0)
    with open(path, "wb") as f:
        f.write(bytes(out))
    return str(path)


def _members(h, y, w, **over) -> list[dict]:
    """features, labels and weights as members, the one named in ``over`` replaced."""
    base = {
        "features": dict(name=b"features.npy", data=_npy(h)),
        "labels": dict(name=b"labels.npy", data=_npy(y)),
        "weights": dict(name=b"weights.npy", data=_npy(w)),
    }
    for role, extra in over.items():
        base[role] = {**base[role], **extra}
    return list(base.values())


def _safetensors(path, h, y, name: str, entry: dict, data: bytes = b"") -> None:
    """A safetensors file of float64 ``features`` ``h``, int64 ``labels`` ``y`` and one more
    tensor ``name`` (``entry``: its dtype and shape; its bytes ``data`` follow the labels)."""
    import json

    start = h.nbytes + y.nbytes
    header = {
        "features": {"dtype": "F64", "shape": list(h.shape), "data_offsets": [0, h.nbytes]},
        "labels": {"dtype": "I64", "shape": [len(y)], "data_offsets": [h.nbytes, start]},
        name: {**entry, "data_offsets": [start, start + len(data)]},
    }
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    body = h.astype("<f8").tobytes() + y.astype("<i8").tobytes() + data
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def _one_line(path, capsys, *words, commands=("report", "info")) -> str:
    """Every command exits 3 with one error line holding ``words``; the file is unchanged."""
    before = file_digest(path)
    text = ""
    for command in commands:
        assert main([command, str(path)]) == 3, command
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        for word in words:
            assert word in err, (word, err)
        text = err
    assert file_digest(path) == before
    return text


# --------------------------------------------------------------------------------------
# NPZ: .npy format version 3.0 is valid


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_npy_version_3_members_are_read_as_numpy_reads_them(tmp_path, method):
    h, y, w = _data()
    v1, v3 = tmp_path / "v1.npz", tmp_path / "v3.npz"
    for path, version in ((v1, None), (v3, (3, 0))):
        with zipfile.ZipFile(path, "w", compression=method) as zf:
            for name, arr in (("features", h), ("labels", y), ("weights", w)):
                zf.writestr(f"{name}.npy", _npy(arr, version))
    with np.load(v3) as z:  # numpy itself reads it
        np.testing.assert_array_equal(z["features"], h)
    a = ncinspect.analyze_file(str(v1)).snapshots[0].metrics
    b = ncinspect.analyze_file(str(v3)).snapshots[0].metrics
    assert a == b
    assert main(["report", str(v3)]) == 0


# --------------------------------------------------------------------------------------
# NPZ: one member, two readings


def test_a_stored_member_whose_compressed_size_is_short_is_refused(tmp_path, capsys):
    """ncinspect streamed the member's bytes by its size, past its compressed (stored) end:
    the bytes of the next member, read as data, where numpy fails. The CRC matches what
    ncinspect read, so only the sizes tell."""
    h, y, w = _data(n=80)
    size = len(_npy(h))
    path = _zip(
        tmp_path / "short.npz", _members(h, y, w, features=dict(central=dict(csize=size - 4000)))
    )
    with pytest.raises(Exception):  # noqa: B017 - numpy (zipfile) cannot read it
        np.load(path)["features"]
    _one_line(path, capsys, "features", "stored")


def test_a_stored_member_whose_compressed_size_is_long_is_refused(tmp_path, capsys):
    h, y, w = _data()
    size = len(_npy(y))
    path = _zip(
        tmp_path / "long.npz",
        _members(h, y, w, labels=dict(central=dict(csize=size + 16), pad=b"\x07" * 16)),
    )
    _one_line(path, capsys, "labels", "stored")


@pytest.mark.parametrize(
    "field, value",
    [("method", 8), ("crc", 12345), ("usize", 10), ("csize", 10), ("name", b"labels.npz")],
)
@pytest.mark.parametrize("method", [0, 8])
def test_a_local_header_that_disagrees_with_the_central_directory_is_refused(
    tmp_path, capsys, field, value, method
):
    """zipfile (and numpy) take the central directory's method, CRC and sizes; a reader
    that streams the local headers (unzip -p, Java's ZipInputStream, many others) takes the
    local ones: the same member, two arrays."""
    h, y, w = _data()
    if field == "method":
        value = 8 - method
    path = _zip(
        tmp_path / "local.npz", _members(h, y, w, labels=dict(method=method, local={field: value}))
    )
    _one_line(path, capsys, "labels")


@pytest.mark.parametrize("method", [0, 8])
def test_a_local_header_with_a_data_descriptor_or_zip64_sizes_is_read(tmp_path, method):
    """Legitimate local headers that state no sizes (bit 3: a data descriptor follows) or
    zip64 ones (numpy.savez writes every member with force_zip64) are not disagreements."""
    h, y, w = _data()
    plain = tmp_path / "plain.npz"
    np.savez(plain, features=h, labels=y, weights=w)
    want = ncinspect.analyze_file(str(plain)).snapshots[0].metrics
    # a data descriptor: the local header's CRC and sizes are zero, the real ones follow
    path = _zip(
        tmp_path / "dd.npz",
        _members(
            h,
            y,
            w,
            labels=dict(method=method, flags=0x8, local=dict(crc=0, csize=0, usize=0)),
        ),
    )
    assert ncinspect.analyze_file(path).snapshots[0].metrics == want
    # zip64 sizes through zipfile, stored and compressed
    z64 = tmp_path / "z64.npz"
    with zipfile.ZipFile(z64, "w", compression=method) as zf:
        for name, arr in (("features", h), ("labels", y), ("weights", w)):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                f.write(_npy(arr))
    assert ncinspect.analyze_file(str(z64)).snapshots[0].metrics == want


def _unicode_path(raw_name: bytes, name: bytes) -> bytes:
    """An Info-ZIP Unicode Path extra field (0x7075) giving ``name`` for ``raw_name``."""
    body = struct.pack("<BL", 1, zlib.crc32(raw_name)) + name
    return struct.pack("<HH", 0x7075, len(body)) + body


@pytest.mark.parametrize("where", ["cextra", "lextra"])
def test_a_unicode_path_field_naming_another_array_is_refused(tmp_path, capsys, where):
    """Python 3.12+ names the member by the field (``labels``), 3.10 and 3.11 by its raw
    name (``labels_old``): which labels a run uses depended on the Python version."""
    h, y, w = _data()
    old = dict(
        name=b"labels_old.npy",
        data=_npy(y[::-1].copy()),
        **{where: _unicode_path(b"labels_old.npy", b"labels.npy")},
    )
    members = [*_members(h, y, w), old]
    path = _zip(tmp_path / "upath.npz", members)
    text = _one_line(path, capsys, "labels_old")
    assert "labels.npy" in text


def test_a_unicode_path_field_that_agrees_with_the_name_is_read(tmp_path):
    h, y, w = _data()
    members = _members(h, y, w, labels=dict(cextra=_unicode_path(b"labels.npy", b"labels.npy")))
    path = _zip(tmp_path / "same.npz", members)
    assert main(["report", path]) == 0


def test_a_nul_in_a_member_name_is_refused(tmp_path, capsys):
    """zipfile cuts ``labels.npy\\x00.bak`` at the NUL and reads it as ``labels``; the name
    in the file is another."""
    h, y, w = _data()
    path = _zip(tmp_path / "nul.npz", _members(h, y, w, labels=dict(name=b"labels.npy\x00.bak")))
    _one_line(path, capsys, "labels", "NUL")


# --------------------------------------------------------------------------------------
# HDF5: a filter the library lacks, a failed checksum


def _filtered(path, h, y, filter_id):
    with h5py.File(path, "w") as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk(h.shape)
        dcpl.set_filter(filter_id, h5py.h5z.FLAG_OPTIONAL, ())
        space = h5py.h5s.create_simple(h.shape)
        ds = h5py.h5d.create(f.id, b"features", h5py.h5t.IEEE_F64LE, space, dcpl=dcpl)
        ds.write_direct_chunk((0, 0), h.astype("<f8").tobytes(), filter_mask=0)
        f["labels"] = y


def test_a_filter_this_libhdf5_lacks_is_named(tmp_path, capsys):
    h, y, _ = _data()
    path = tmp_path / "filter.h5"
    _filtered(path, h, y, 305)
    text = _one_line(path, capsys, "features", "filter 305", commands=("report",))
    assert "not available" in text or "lacks" in text, text


def test_a_failed_fletcher32_checksum_is_named(tmp_path, capsys):
    h, y, _ = _data()
    path = tmp_path / "fletcher.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("features", data=h, chunks=h.shape, fletcher32=True)
        f["labels"] = y
        offset = f["features"].id.get_chunk_info(0).byte_offset
    data = bytearray(path.read_bytes())
    data[offset + 9] ^= 0xFF
    path.write_bytes(bytes(data))
    _one_line(path, capsys, "features", "Fletcher32", commands=("report",))


# --------------------------------------------------------------------------------------
# safetensors: a dtype ncinspect does not read is named as the file names it


@pytest.mark.parametrize("role", ["features", "labels", "weights"])
def test_an_unread_safetensors_dtype_is_named_as_the_file_names_it(tmp_path, capsys, role):
    import json

    h, y, w = _data()
    arrays = {
        "features": ("F64", list(h.shape), h.astype("<f8").tobytes()),
        "labels": ("I64", list(y.shape), y.astype("<i8").tobytes()),
        "weights": ("F64", list(w.shape), w.astype("<f8").tobytes()),
    }
    shape = arrays[role][1]
    arrays[role] = ("F8_E8M0", shape, np.ones(int(np.prod(shape)), "u1").tobytes())
    header, data = {}, b""
    for name, (dtype, shp, raw) in arrays.items():
        header[name] = {
            "dtype": dtype,
            "shape": shp,
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path = tmp_path / "e8m0.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)
    err = _one_line(path, capsys, role, "F8_E8M0", commands=("report",))
    assert "V1" not in err, err


# --------------------------------------------------------------------------------------
# In memory: object-dtype labels


def test_object_integer_labels_are_integer_labels():
    h, y, w = _data()
    want = ncinspect.analyze(h, y, weights=w).metrics
    for labels in (y.astype(object), np.array([np.int64(v) for v in y], dtype=object)):
        assert ncinspect.analyze(h, labels, weights=w).metrics == want


def test_object_labels_mixing_integers_and_text_are_refused_naming_both():
    h, y, _ = _data()
    labels = y.astype(object)
    labels[5] = str(labels[5])
    with pytest.raises(NCInspectError) as info:
        ncinspect.analyze(h, labels)
    text = str(info.value)
    assert "row 0" in text and "row 5" in text and "\n" not in text, text


def test_zero_d_labels_are_named_by_their_shape():
    h, _, _ = _data()
    with pytest.raises(NCInspectError) as info:
        ncinspect.analyze(h, np.int64(1))
    assert "shape ()" in str(info.value), str(info.value)


# --------------------------------------------------------------------------------------
# Digits that str.isdigit accepts and int() refuses (superscripts, circled digits)

ODD_DIGITS = ["\u00b2", "1\u00b2", "\u2460", "+-5", "\U00010a40"]


@pytest.mark.parametrize("value", ODD_DIGITS)
def test_an_epoch_of_odd_digits_is_not_an_integer(tmp_path, capsys, value):
    """``"\\u00b2".isdigit()`` is True and ``int("\\u00b2")`` a ValueError: exit 4 in every
    command. Now such an epoch is not an integer: a note, and the epoch from the path."""
    h, y, w = _data()
    path = tmp_path / "epoch.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("run/epoch_0003")
        g["features"], g["labels"], g["weights"] = h, y, w
        g.attrs["epoch"] = value
    for command in ("report", "info"):
        assert main([command, str(path)]) == 0, command
        capsys.readouterr()
    snap = ncinspect.analyze_file(str(path)).snapshots[0]
    assert snap.epoch == 3


def test_an_epoch_of_other_scripts_decimal_digits_is_read():
    from ncinspect.io.names import as_epoch

    assert as_epoch("\uff11\uff10") == 10  # full-width: decimal digits int() reads
    assert as_epoch("\u0661\u0662") == 12  # Arabic-Indic
    assert as_epoch(" -7 ") == -7
    for value in ODD_DIGITS:
        assert as_epoch(value) is None


@pytest.mark.parametrize("fmt", ["h5", "safetensors"])
def test_a_state_dict_name_with_odd_digits_is_sorted_not_a_crash(tmp_path, capsys, fmt):
    """The ``*.weight`` fallback orders names naturally (``fc.10`` after ``fc.6``):
    ``fc1\\u00b22.weight`` split into a part ``\\u00b2`` that int() refused (exit 4)."""
    from safetensors.numpy import save_file

    h, y, w = _data()
    odd, plain = "fc1\u00b22.weight", "fc0.weight"
    path = tmp_path / f"sd.{fmt}"
    arrays = {"features": h, "labels": y, odd: w, plain: w[::-1].copy()}
    if fmt == "h5":
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v
    else:
        save_file(arrays, str(path))
    result = ncinspect.analyze_file(str(path))
    notes = " ".join(result.snapshots[0].warnings + list(getattr(result, "notes", [])))
    assert "fc1" in notes and "taken as the classifier" in notes, notes
    assert main(["report", str(path)]) == 0
    capsys.readouterr()


def test_plot_classes_of_odd_digits_is_a_usage_line(tmp_path, capsys):
    from ncinspect.plots.subset import parse_classes

    for spec in ("\u00b2", "worst:\u00b2", "1-\u2460"):
        with pytest.raises(ValueError, match="expected"):
            parse_classes(spec)


# --------------------------------------------------------------------------------------
# A label that looks like a class name but is not it


@pytest.mark.parametrize(
    "label, name",
    [("e\u0301", "\u00e9"), ("cat ", "cat"), ("cat\u200b", "cat"), ("\u212b", "\u00c5x")],
)
def test_a_label_that_looks_like_a_class_name_is_named_both_ways(tmp_path, capsys, label, name):
    """0.2 said "label 'é' is not in the class order (class_names: é, b, c)": the two showed
    alike. Now both are escaped and the look-alike said (when they look alike)."""
    h, y, w = _data()
    names = [name, "b", "c"]
    labels = np.array([label, "b", "c"])[y]
    path = tmp_path / "names.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["weights"] = h, w
        f["labels"] = labels.astype(h5py.string_dtype())
        f["class_names"] = np.array(names, dtype=h5py.string_dtype())
    from ncinspect.io.class_names import shown_key

    if shown_key(label) == shown_key(name):
        _one_line(path, capsys, ascii(label), ascii(name), "look the same", commands=("report",))
    else:  # no look-alike: the plain message
        _one_line(path, capsys, repr(label), "not in the class order", commands=("report",))


# --------------------------------------------------------------------------------------
# Empty arrays whose other dimensions no array can have


#: (format, dimension): a safetensors header holds u64 dimensions (its package refuses
#: larger ones itself) and libhdf5 makes dataspaces of dimensions below 2**63 only
_UNHOLDABLE = [
    (fmt, dim)
    for fmt, top in (("npz", 2**71), ("safetensors", 2**64), ("h5", 2**63))
    for dim in (2**62, 2**63 - 1, 2**63 + 1, 2**64 - 1, 2**70)
    if dim < top
]


@pytest.mark.parametrize("fmt, dim", _UNHOLDABLE)
def test_an_empty_array_of_a_dimension_numpy_cannot_hold_is_one_line(tmp_path, capsys, dim, fmt):
    """Weights of shape (0, 2**64 - 1) hold no bytes, so no size check saw them; numpy
    refuses to make even an empty array of that shape ("Maximum allowed dimension exceeded",
    "array is too big"): exit 4."""

    h, y, _ = _data()
    path = tmp_path / f"w.{fmt}"
    if fmt == "npz":
        text = f"{{'descr': '<f8', 'fortran_order': False, 'shape': (0, {dim}), }}"
        head = text.encode() + b" " * (-(len(text) + 11) % 64) + b"\n"
        empty = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head
        _zip(path, [*_members(h, y, h)[:2], dict(name=b"weights.npy", data=empty)])
    elif fmt == "safetensors":
        _safetensors(path, h, y, "weights", {"dtype": "F32", "shape": [0, dim]})
    else:
        with h5py.File(path, "w") as f:
            f["features"], f["labels"] = h, y
            space = h5py.h5s.create_simple((0, dim))
            h5py.h5d.create(f.id, b"weights", h5py.h5t.IEEE_F32LE, space)
    commands = ("report",) if fmt == "h5" else ("report", "info")
    _one_line(path, capsys, "weights", "no array can have", commands=commands)


@pytest.mark.parametrize("descr", ["<U0", "|S0", "|V0"])
@pytest.mark.parametrize("role", ["labels", "class_names"])
@pytest.mark.parametrize("method", [0, 8])
def test_a_member_of_a_dtype_of_zero_bytes_is_one_line(tmp_path, capsys, descr, role, method):
    """``<U0`` labels hold no bytes: streamed, numpy's frombuffer refused the dtype (exit 4);
    read whole, every label was the empty string ("fewer than two classes (found 1: )")."""
    h, y, w = _data()
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': ({len(y)},), }}"
    head = text.encode() + b" " * (-(len(text) + 11) % 64) + b"\n"
    empty = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head
    members = _members(h, y, w)
    if role == "labels":
        members[1] = dict(name=b"labels.npy", data=empty, method=method)
    else:
        members[1] = dict(name=b"labels.npy", data=_npy(np.array(["a", "b", "c"])[y]))
        members.append(dict(name=b"class_names.npy", data=empty, method=method))
    path = _zip(tmp_path / "zero.npz", members)
    _one_line(path, capsys, role, "0 bytes")


# --------------------------------------------------------------------------------------
# Text arrays holding codes that are no Unicode character


def _bad_text(n_rows, y, code) -> bytes:
    """A '<U1' .npy of class names a, b, c indexed by ``y`` whose 'a' is ``code``."""
    text = f"{{'descr': '<U1', 'fortran_order': False, 'shape': ({n_rows},), }}"
    head = text.encode() + b" " * (-(len(text) + 11) % 64) + b"\n"
    values = np.array([code, ord("b"), ord("c")], dtype="<u4")[y]
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head + values.tobytes()


@pytest.mark.parametrize("code", [0x110000, 0xFFFFFFFF])
@pytest.mark.parametrize("role", ["labels", "class_names", "meta"])
@pytest.mark.parametrize("method", [0, 8])
def test_text_of_codes_beyond_unicode_is_one_line(tmp_path, capsys, code, role, method):
    """numpy holds any 32-bit value in a '<U' array; Python cannot make a string of a code
    beyond U+10FFFF: "SystemError: invalid maximum character passed to PyUnicode_New",
    exit 4 in report (labels, class names, a meta value)."""
    h, y, w = _data()
    members = _members(h, y, w)
    if role == "labels":
        members[1] = dict(name=b"labels.npy", data=_bad_text(len(y), y, code), method=method)
    elif role == "class_names":
        members.append(
            dict(name=b"class_names.npy", data=_bad_text(3, np.arange(3), code), method=method)
        )
    else:
        text = "{'descr': '<U1', 'fortran_order': False, 'shape': (), }"
        head = text.encode() + b" " * (-(len(text) + 11) % 64) + b"\n"
        meta = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head
        members.append(dict(name=b"meta.npy", data=meta + struct.pack("<I", code), method=method))
    path = _zip(tmp_path / "text.npz", members)
    commands = ("report", "info") if role == "meta" else ("report",)
    _one_line(path, capsys, role, hex(code), commands=commands)


def test_text_of_codes_beyond_unicode_in_memory_is_refused():
    h, y, w = _data()
    labels = np.frombuffer(np.array([0x110000, 98, 99], dtype="<u4")[y].tobytes(), dtype="<U1")
    with pytest.raises(NCInspectError, match="0x110000"):
        ncinspect.analyze(h, labels)
    good = np.array(["a", "b", "c"])[y]
    names = np.frombuffer(np.array([0x110000, 98, 99], dtype="<u4").tobytes(), dtype="<U1")
    with pytest.raises(NCInspectError, match="0x110000"):
        ncinspect.analyze(h, good, weights=w, class_names=names)


# --------------------------------------------------------------------------------------
# --class-names FILE: a byte order mark, line separators other than a line feed


def _names_case(tmp_path):
    h, y, w = _data()
    path = tmp_path / "dump.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["weights"] = h, w
        f["labels"] = np.array(["cat", "dog", "eel"])[y].astype(h5py.string_dtype())
    return path


def test_a_class_names_file_with_a_utf8_byte_order_mark_is_read(tmp_path, capsys):
    """Windows editors save UTF-8 with a BOM: the first name was '\\ufeffcat', so the label
    'cat' was "not in the class order"."""
    path = _names_case(tmp_path)
    plain, bom = tmp_path / "plain.txt", tmp_path / "bom.txt"
    plain.write_text("cat\ndog\neel\n", encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    from ncinspect.io.class_names import read_class_names

    assert read_class_names(str(bom)) == ["cat", "dog", "eel"]
    assert main(["report", str(path), "--class-names", str(bom)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "sep", ["\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
)
def test_a_class_names_file_with_other_line_separators_is_refused(tmp_path, capsys, sep):
    """Python's splitlines ends a line at each of these, `wc -l`, editors and most tools at a
    line feed only: 'dog<U+2028>eel' was two class names for ncinspect and one line for its
    author, so the class order had one name more than the lines shown."""
    path = _names_case(tmp_path)
    names = tmp_path / "names.txt"
    names.write_text(f"cat\ndog{sep}eel\n", encoding="utf-8")
    assert main(["report", str(path), "--class-names", str(names)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 2" in err, err


def test_a_class_names_file_in_utf16_says_so(tmp_path, capsys):
    path = _names_case(tmp_path)
    names = tmp_path / "names.txt"
    names.write_bytes("cat\ndog\neel\n".encode("utf-16"))
    assert main(["report", str(path), "--class-names", str(names)]) == 3
    err = capsys.readouterr().err
    assert "UTF-16" in err and err.count("\n") == 1, err


# --------------------------------------------------------------------------------------
# theory: layer weights of a dtype that is not real numbers


def _theory_dump(path, key, value):
    import shutil

    from ..helpers import ROOT

    shutil.copy(f"{ROOT}/sample_data/trained_wd.h5", path)
    with h5py.File(path, "a") as f:
        for group in [g for g in f if g.startswith("epoch_")]:
            a = f[group][key][()]
            del f[group][key]
            f[group][key] = value(a)


@pytest.mark.parametrize(
    "value, word",
    [
        (lambda a: a.astype(np.complex128) + 1j, "complex128"),
        (lambda a: a > 0, "bool"),
        (lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, np.nan, a), "NaN"),
    ],
)
@pytest.mark.parametrize("key", ["params/W1", "params/W4"])
def test_theory_refuses_layer_weights_that_are_not_real_numbers(tmp_path, capsys, value, word, key):
    """``theory`` cast every params/W<k> to float64: complex weights lost their imaginary
    part (numpy's ComplexWarning, the only sign), a bool matrix became 0/1, and the
    identities were checked on those."""
    path = tmp_path / "theory.h5"
    _theory_dump(path, key, value)
    err = _one_line(path, capsys, key.split("/")[-1], word, commands=("theory",))
    assert "Warning" not in err


def test_theory_arrays_refuses_complex_layer_weights():
    from ncinspect.theory.run import theory_arrays

    h, y, w = _data()
    w1 = np.random.default_rng(0).standard_normal((h.shape[1], 5)).astype(np.complex128)
    with pytest.raises(NCInspectError, match="complex"):
        theory_arrays(h, y, [w1, w], weight_decay=1e-3, kappa=1e-3)


# --------------------------------------------------------------------------------------
# One file, two formats: a zip or safetensors file that is also an HDF5 file


def _h5_with_userblock(path, arrays, userblock=4096) -> bytes:
    with h5py.File(path, "w", userblock_size=userblock) as f:
        for k, v in arrays.items():
            f[k] = v
    return path.read_bytes()


def test_a_zip_that_is_also_an_hdf5_file_is_refused(tmp_path, capsys):
    """The zip's local headers in the HDF5 user block, its central directory appended: h5py
    reads one set of arrays (here labels reversed), numpy and ncinspect the zip's."""
    h, y, w = _data()
    npz = tmp_path / "plain.npz"
    np.savez(npz, features=h, labels=y, weights=w)
    z = npz.read_bytes()
    cd_size, cd_offset = struct.unpack_from("<LL", z, len(z) - 22 + 12)
    local, tail = z[:cd_offset], bytearray(z[cd_offset:])
    body = bytearray(
        _h5_with_userblock(
            tmp_path / "h.h5", {"features": h, "labels": y[::-1].copy(), "weights": w}, 16384
        )
    )
    assert len(local) <= 16384
    body[: len(local)] = local
    struct.pack_into(
        "<L", tail, len(tail) - 22 + 16, len(body)
    )  # the central directory's new place
    path = tmp_path / "both.npz"
    path.write_bytes(bytes(body) + bytes(tail))
    with np.load(path) as zf:  # numpy reads the zip
        np.testing.assert_array_equal(zf["labels"], y)
    with h5py.File(path, "r") as f:  # h5py the HDF5 file
        np.testing.assert_array_equal(f["labels"][()], y[::-1])
    _one_line(path, capsys, "zip", "HDF5", "byte 16384")


def test_a_safetensors_file_that_is_also_an_hdf5_file_is_refused(tmp_path, capsys):
    import json

    h, y, w = _data()
    full = _h5_with_userblock(tmp_path / "h.h5", {"features": h, "labels": y[::-1].copy()}, 512)
    body = full[512:]
    tensors = [
        ("blob", "U8", [len(body)], body),
        ("features", "F64", list(h.shape), h.astype("<f8").tobytes()),
        ("labels", "I64", [len(y)], y.astype("<i8").tobytes()),
    ]
    header, offset = {}, 0
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (512 - 8 - len(text))
    path = tmp_path / "both.safetensors"
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors))
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["labels"][()], y[::-1])
    _one_line(path, capsys, "safetensors", "HDF5", "byte 512")


def test_an_hdf5_file_with_a_user_block_is_read(tmp_path, capsys):
    h, y, w = _data()
    path = tmp_path / "ub.h5"
    _h5_with_userblock(path, {"features": h, "labels": y, "weights": w}, 1024)
    assert main(["report", str(path)]) == 0
    capsys.readouterr()


# --------------------------------------------------------------------------------------
# NPZ: members the central directory does not list, members inside members


def test_a_member_hidden_from_the_central_directory_is_refused(tmp_path, capsys):
    """A local header (and data) of another ``labels.npy`` before the listed one: numpy
    reads the listed labels, a streaming reader meets the hidden ones first."""
    h, y, w = _data()
    hidden = tmp_path / "hidden.npz"
    _zip(hidden, [dict(name=b"labels.npy", data=_npy(y[::-1].copy()))])
    blob = hidden.read_bytes()
    local = blob[: struct.unpack_from("<L", blob, len(blob) - 22 + 16)[0]]
    listed = tmp_path / "listed.npz"
    _zip(listed, _members(h, y, w))
    z = bytearray(listed.read_bytes())
    cd_size, cd_offset = struct.unpack_from("<LL", z, len(z) - 22 + 12)
    # put the hidden member before the central directory, which moves by its length
    out = z[:cd_offset] + local + z[cd_offset:]
    struct.pack_into("<L", out, len(out) - 22 + 16, cd_offset + len(local))
    path = tmp_path / "both.npz"
    path.write_bytes(bytes(out))
    with np.load(path) as zf:
        np.testing.assert_array_equal(zf["labels"], y)
    _one_line(path, capsys, "central directory does not list")


def test_a_member_inside_another_members_data_is_refused(tmp_path, capsys):
    """A stored member ``pad.bin`` whose data holds the whole local entry of ``labels.npy``,
    which the central directory lists too: numpy reads both, a streaming reader one."""
    h, y, w = _data()
    inner_zip = tmp_path / "inner.npz"
    _zip(inner_zip, [dict(name=b"labels.npy", data=_npy(y))])
    blob = inner_zip.read_bytes()
    entry = blob[: struct.unpack_from("<L", blob, len(blob) - 22 + 16)[0]]
    feats = dict(name=b"features.npy", data=_npy(h))
    feats_len = 30 + len(b"features.npy") + len(feats["data"])  # features first, at 0
    pad_header = 30 + len(b"pad.bin")
    # pad.bin's data is the labels entry; labels' local header then sits inside it
    members = [feats, dict(name=b"pad.bin", data=entry), dict(name=b"weights.npy", data=_npy(w))]
    path = tmp_path / "nested.npz"
    _zip(path, members)
    z = bytearray(path.read_bytes())
    cd_size, cd_offset = struct.unpack_from("<LL", z, len(z) - 22 + 12)
    inner_offset = feats_len + pad_header
    # one more central entry: labels.npy at the offset inside pad.bin's data
    cen = bytearray(blob[len(entry) : len(blob) - 22])  # labels' central entry
    struct.pack_into("<L", cen, 42, inner_offset)
    out = z[: cd_offset + cd_size] + cen + z[cd_offset + cd_size :]
    struct.pack_into("<HH", out, len(out) - 22 + 8, 4, 4)
    struct.pack_into("<L", out, len(out) - 22 + 12, cd_size + len(cen))
    path.write_bytes(bytes(out))
    with np.load(path) as zf:
        np.testing.assert_array_equal(zf["labels"], y)
    _one_line(path, capsys, "inside")


def test_a_zip_with_data_descriptors_is_read(tmp_path, capsys):
    """zipfile writing to a stream it cannot seek puts a data descriptor after each member
    (bytes between members that hold no local header)."""
    h, y, w = _data()

    class Unseekable(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def writable(self):
            return True

        def write(self, b):
            return self.f.write(b)

    path = tmp_path / "dd.npz"
    with open(path, "wb") as raw, zipfile.ZipFile(Unseekable(raw), "w") as zf:
        for name, arr in (("features", h), ("labels", y), ("weights", w)):
            zf.writestr(f"{name}.npy", _npy(arr))
    with zipfile.ZipFile(path) as zf:
        assert all(i.flag_bits & 0x8 for i in zf.infolist())
    assert main(["report", str(path)]) == 0
    capsys.readouterr()


# --------------------------------------------------------------------------------------
# HDF5 types numpy holds differently, or cannot hold


def _f24(f, name, values):
    """A dataset of a 24-bit float type (1 sign, 7 exponent, 16 mantissa bits): h5py reads it
    as float32, the file stores 3 bytes a value."""
    t = h5py.h5t.IEEE_F32LE.copy()
    t.set_fields(23, 16, 7, 0, 16)
    t.set_size(3)
    t.set_ebias(63)
    space = h5py.h5s.create_simple(values.shape)
    ds = h5py.h5d.create(f.id, name.encode(), t, space)
    ds.write(h5py.h5s.ALL, h5py.h5s.ALL, values.astype("<f4"), mtype=h5py.h5t.IEEE_F32LE)


def test_a_24_bit_float_dataset_is_read(tmp_path, capsys):
    """0.2 refused it as "declares 288 B but the file stores 216 B ... unwritten values":
    the declared size counted numpy's 4 bytes a value, the file's are 3."""
    h, y, w = _data()
    path = tmp_path / "f24.h5"
    with h5py.File(path, "w") as f:
        _f24(f, "features", h)
        f["labels"], f["weights"] = y, w
    with h5py.File(path, "r") as f:
        stored = f["features"][()]
    want = ncinspect.analyze(stored, y, weights=w).metrics
    assert ncinspect.analyze_file(str(path)).snapshots[0].metrics == want
    assert main(["report", str(path)]) == 0
    capsys.readouterr()


def test_a_dataset_of_a_type_numpy_cannot_hold_is_refused_only_when_used(tmp_path, capsys):
    """An HDF5 time type (no numpy equivalent) anywhere in the file refused the whole file;
    now a dataset no snapshot uses is left alone and one used is one line."""
    h, y, w = _data()
    path = tmp_path / "time.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, w
        space = h5py.h5s.create_simple((3,))
        h5py.h5d.create(f.id, b"timestamps", h5py.h5t.UNIX_D32LE.copy(), space)
    for command in ("report", "info"):
        assert main([command, str(path)]) == 0, command
        capsys.readouterr()
    used = tmp_path / "time_labels.h5"
    with h5py.File(used, "w") as f:
        f["features"], f["weights"] = h, w
        space = h5py.h5s.create_simple((len(y),))
        h5py.h5d.create(f.id, b"labels", h5py.h5t.UNIX_D32LE.copy(), space)
    _one_line(used, capsys, "labels", "HDF5 datatype", commands=("report",))


# --------------------------------------------------------------------------------------
# Every command that reads dumps refuses the new cases in one line


def _every_command(path, tmp_path) -> list[list[str]]:
    return [
        ["report", str(path)],
        ["info", str(path)],
        ["check", str(path), "--max", "nc1=10"],
        ["plot", str(path), "-o", str(tmp_path / "plots")],
        ["theory", str(path)],
    ]


@pytest.mark.parametrize("case", ["local", "hidden_polyglot", "unicode_path", "zero_itemsize"])
def test_every_command_refuses_in_one_line(tmp_path, capsys, case):
    h, y, w = _data()
    if case == "local":
        path = _zip(tmp_path / "x.npz", _members(h, y, w, labels=dict(local=dict(crc=7))))
    elif case == "unicode_path":
        extra = _unicode_path(b"labels.npy", b"targets.npy")
        path = _zip(tmp_path / "x.npz", _members(h, y, w, labels=dict(cextra=extra)))
    elif case == "zero_itemsize":
        text = f"{{'descr': '<U0', 'fortran_order': False, 'shape': ({len(y)},), }}"
        head = text.encode() + b" " * (-(len(text) + 11) % 64) + b"\n"
        data = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head
        path = _zip(tmp_path / "x.npz", _members(h, y, w, labels=dict(data=data)))
    else:
        npz = tmp_path / "plain.npz"
        np.savez(npz, features=h, labels=y, weights=w)
        z = npz.read_bytes()
        cd_offset = struct.unpack_from("<L", z, len(z) - 22 + 16)[0]
        body = bytearray(_h5_with_userblock(tmp_path / "h.h5", {"features": h}, 16384))
        body[:cd_offset] = z[:cd_offset]
        tail = bytearray(z[cd_offset:])
        struct.pack_into("<L", tail, len(tail) - 22 + 16, len(body))
        path = tmp_path / "x.npz"
        path.write_bytes(bytes(body) + bytes(tail))
    before = file_digest(path)
    for argv in _every_command(path, tmp_path):
        assert main(argv) == 3, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert file_digest(path) == before
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())


def test_a_fortran_ordered_member_over_the_read_bound_says_so(tmp_path):
    """A stored member in Fortran order is read whole (its rows are not contiguous); over
    the bound it was called a "compressed member" to "store uncompressed", which it is."""
    from ncinspect.errors import ResourceLimitError
    from ncinspect.io.npz import NpzMemberSource

    h, y, w = _data()
    path = tmp_path / "f.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("features.npy", _npy(np.asfortranarray(h)))
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("features.npy")
    src = NpzMemberSource(str(path), info, f"{path}:/features", [], max_read=100)
    with pytest.raises(ResourceLimitError) as err:
        src.read(0, 5)
    text = str(err.value)
    assert "Fortran" in text and "C order" in text and "compressed" not in text, text


def test_object_labels_mixing_kinds_across_label_blocks_are_refused(monkeypatch):
    """Labels are encoded in blocks: integers in one block and text in the next were
    concatenated into text (1 and '1' one class); in one block they were refused."""
    from ncinspect import inputs

    monkeypatch.setattr(inputs, "LABEL_BLOCK", 16)
    h, y, _ = _data()
    labels = y.astype(object)
    labels[16:] = [f"c{v}" for v in y[16:]]
    with pytest.raises(NCInspectError, match="mix integers"):
        ncinspect.analyze(h, labels)


def test_info_names_a_dtype_numpy_cannot_hold_as_the_file_does(tmp_path, capsys):
    """``info`` listed an HDF5 time dataset and a safetensors F8_E8M0 tensor as ``|V4`` and
    ``|V1``."""

    h, y, w = _data()
    path = tmp_path / "time.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"] = h, y
        space = h5py.h5s.create_simple((3,))
        h5py.h5d.create(f.id, b"timestamps", h5py.h5t.UNIX_D32LE.copy(), space)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "HDF5 datatype" in out and "|V4" not in out, out
    st = tmp_path / "odd.safetensors"
    _safetensors(st, h, y, "odd", {"dtype": "F8_E8M0", "shape": [2]}, b"\x01\x02")
    assert main(["info", str(st)]) == 0
    out = capsys.readouterr().out
    assert "F8_E8M0" in out and "|V1" not in out, out


@pytest.mark.parametrize("name", ["COLUMNS", "LINES"])
@pytest.mark.parametrize("value", ["\u00b2", "\uff18\uff10", "9" * 5000])
def test_a_terminal_size_int_refuses_is_ignored(tmp_path, capsys, monkeypatch, name, value):
    """rich tests COLUMNS and LINES with str.isdigit, then int(): '\\u00b2' (and 5,000
    digits) made every command exit 4."""
    h, y, w = _data()
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, w
    monkeypatch.setenv(name, value)
    for command in ("info", "report"):
        assert main([command, str(path)]) == 0, command
        assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("link", ["hard", "soft"])
def test_a_named_datatype_under_a_roles_name_beside_another_is_refused(tmp_path, capsys, link):
    """``labels`` a named datatype (``f["labels"] = np.dtype(...)``, or a soft link to one)
    beside ``y``: the walk skipped it without a word and ``y`` was taken as the labels."""
    h, y, w = _data()
    path = tmp_path / "type.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["y"], f["weights"] = h, y, w
        if link == "hard":
            f["labels"] = np.dtype("<i8")
        else:
            f["t"] = np.dtype("<i8")
            f["labels"] = h5py.SoftLink("/t")
    _one_line(path, capsys, "'labels'", "'y'", "named datatype", commands=("report",))


def test_a_backslash_in_an_array_members_name_is_refused(tmp_path, capsys):
    """zipfile on Windows turns ``test\\features.npy`` into the snapshot ``test``'s
    features; elsewhere it is a root array of that name, and ignored."""
    h, y, w = _data()
    members = [*_members(h, y, w), dict(name=b"test\\features.npy", data=_npy(h[::-1].copy()))]
    path = _zip(tmp_path / "bs.npz", members)
    _one_line(path, capsys, "backslash")
    other = [*_members(h, y, w), dict(name=b"notes\\readme.txt", data=b"hello")]
    assert main(["report", _zip(tmp_path / "txt.npz", other)]) == 0
    capsys.readouterr()
