"""Deeply nested JSON in a file and zero-size safetensors tensors (issue 22 item 6): one
clear line, exit 3, never a RecursionError or an error of the safetensors package."""

from __future__ import annotations

import io
import json
import struct
import zipfile

import h5py
import numpy as np
import pytest
from safetensors.numpy import save_file

import ncinspect
from ncinspect.cli import main
from ncinspect.io.tree import MAX_JSON_DEPTH, json_depth

from ..helpers import file_digest, make_data


def _raw_safetensors(path, header: bytes, data: bytes) -> None:
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def _base() -> tuple[dict, bytes]:
    h = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 1, 0, 1], dtype=np.int64)
    header = {
        "features": {"dtype": "F32", "shape": [4, 3], "data_offsets": [0, 48]},
        "labels": {"dtype": "I64", "shape": [4], "data_offsets": [48, 80]},
    }
    return header, h.tobytes() + y.tobytes()


def _one_line_exit_3(path, capsys) -> str:
    before = file_digest(path)
    assert main(["report", str(path), "-q", "--json", "-"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err, err
    assert len(err) < 600
    assert file_digest(path) == before
    return err


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 2_000, 200_000])
@pytest.mark.parametrize("bracket", ["[]", "{}"])
def test_deep_header(tmp_path, capsys, depth, bracket):
    header, data = _base()
    o, c = bracket
    inner = (
        (o + '"a":') * (depth - 1) + o + c + c * (depth - 1) if o == "{" else o * depth + c * depth
    )
    raw = json.dumps(header)[:-1].encode() + b', "x": ' + inner.encode() + b"}"
    path = tmp_path / "deep.safetensors"
    _raw_safetensors(path, raw, data)
    err = _one_line_exit_3(path, capsys)
    assert "nested" in err and "safetensors header" in err


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 5_000, 300_000])
def test_deep_metadata_value(tmp_path, capsys, depth):
    h, y, _ = make_data(C=2, d=3, n=4)
    path = tmp_path / "meta.safetensors"
    save_file({"features": h, "labels": y}, str(path), metadata={"meta": "[" * depth + "]" * depth})
    err = _one_line_exit_3(path, capsys)
    assert "nested" in err and "'meta'" in err


def test_metadata_within_the_bound_is_read(tmp_path):
    h, y, _ = make_data(C=2, d=3, n=4)
    path = tmp_path / "ok.safetensors"
    nested = "[" * (MAX_JSON_DEPTH - 1) + "1" + "]" * (MAX_JSON_DEPTH - 1)
    # brackets inside strings do not count
    save_file(
        {"features": h, "labels": y},
        str(path),
        metadata={"deep": nested, "text": json.dumps("[" * 10_000), "epoch": "3"},
    )
    snap = ncinspect.analyze_file(path)[0]
    assert snap.epoch == 3 and snap.meta["text"] == "[" * 10_000


def test_deep_npz_meta_and_hdf5_json_attribute(tmp_path, capsys):
    h, y, _ = make_data(C=2, d=3, n=4)
    path = tmp_path / "deep.npz"
    buf = io.BytesIO()
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in {
            "features": h,
            "labels": y,
            "meta": np.array("[" * 9_000 + "]" * 9_000),
        }.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            zf.writestr(name + ".npy", buf.getvalue())
    assert "nested" in _one_line_exit_3(path, capsys)
    # an HDF5 "json:" attribute too deep stays the text it is (free-form metadata)
    h5 = tmp_path / "deep.h5"
    with h5py.File(h5, "w") as f:
        f["features"], f["labels"] = h, y
        f.attrs["free"] = "json:" + "[" * 50_000 + "]" * 50_000
    snap = ncinspect.analyze_file(h5)[0]
    assert isinstance(snap.meta["free"], str)
    assert main(["report", str(h5), "--json", "-", "-q"]) == 0


def test_json_depth_counts_outside_strings():
    assert json_depth('{"a": [1, {"b": "[[[[{"}]}') == 3
    assert json_depth('"\\"[[["') == 0
    assert json_depth("[]") == 1


@pytest.mark.parametrize(
    "role,shape",
    [
        ("weights", (0, 3)),
        ("weights", (3, 0)),
        ("bias", (0,)),
        ("outputs", (6, 0)),
        ("features", (0, 3)),
        ("features", (6, 0)),
    ],
)
def test_zero_size_tensors(tmp_path, capsys, role, shape):
    rng = np.random.default_rng(0)
    tensors = {
        "features": rng.standard_normal((6, 3)).astype(np.float32),
        "labels": np.array([0, 1, 2, 0, 1, 2]),
        "weights": np.eye(3, dtype=np.float32),
    }
    tensors[role] = np.zeros(shape, dtype=np.float32)
    if role == "features" and shape[0] == 0:
        tensors["labels"] = np.zeros(0, dtype=np.int64)
    path = tmp_path / "zero.safetensors"
    save_file(tensors, str(path))
    err = _one_line_exit_3(path, capsys)
    assert role in err or "labels" in err
    assert "Safetensor" not in err and "out of bounds" not in err
