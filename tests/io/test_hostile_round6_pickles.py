"""Hostile round six, class 10 (pickles named as such): a pickle in a zip under another member
name, and a protocol 0/1 pickle cut after a few bytes.

A torch save whose ``data.pkl`` was renamed, or a zip of ``.pkl`` files, was refused as "no
features array found ... the file holds: no arrays"; a protocol 0/1 pickle cut within its
first ~60 bytes (a small ``pickle.dump`` killed) as "not an HDF5 or NPZ dump". Both are now
named pickles, with the way to export, and nothing is unpickled.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile

import pytest

from ncinspect.cli import main

from ..helpers import make_data


class _Marker:
    """Unpickling it would create a folder: proof the file was never unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _named_a_pickle(capsys, path) -> None:
    for command in ("info", "report"):
        assert main([command, str(path)]) == 3
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1, err
        assert "pickle" in err and "never unpickles" in err and "safetensors" in err, err


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("member", ["model.pkl", "archive/data.pickle", "weights", "a/b/c.bin"])
@pytest.mark.parametrize("suffix", [".npz", ".pt", ""])
def test_a_zip_holding_a_pickle_is_named_a_pickle(tmp_path, capsys, protocol, member, suffix):
    h, y, _ = make_data(C=3, d=4, n=6)
    marker = tmp_path / "unpickled"
    path = tmp_path / f"archive{suffix}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/version", b"3\n")
        zf.writestr(member, pickle.dumps({"features": h, "x": _Marker(str(marker))}, protocol))
    _named_a_pickle(capsys, path)
    assert not marker.exists()


def test_a_torch_save_with_data_pkl_renamed_is_named_a_pickle(tmp_path, capsys):
    import torch

    buf = io.BytesIO()
    torch.save({"features": torch.zeros(3, 2)}, buf)
    path = tmp_path / "renamed.pt"
    with zipfile.ZipFile(buf) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            dst.writestr(name.replace("data.pkl", "data.pickle"), src.read(name))
    _named_a_pickle(capsys, path)


def test_a_zip_of_other_files_is_not_called_a_pickle(tmp_path, capsys):
    path = tmp_path / "notes.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", b"(this is a note)\n" * 20)
        zf.writestr("data.csv", b"N,features,labels\n1,2,3\n")
    assert main(["info", str(path)]) == 3
    assert "pickle" not in capsys.readouterr().err


@pytest.mark.parametrize("protocol", [0, 1])
@pytest.mark.parametrize("obj", ["dict", "list", "nested"])
def test_a_protocol_0_or_1_pickle_cut_after_a_few_bytes_is_named_a_pickle(
    tmp_path, capsys, protocol, obj
):
    """Every cut from 5 bytes on (protocol 1: 3) up to the end: Python's pickler starts a
    container with the container and its memo entry (``(dp0``, ``}q\\x00``), which text
    does not; round four named a cut stream a pickle only after 8 opcodes (~60 bytes)."""
    marker = tmp_path / "unpickled"
    value = {
        "dict": {"features": [[1.0, 2.0]], "x": _Marker(str(marker))},
        "list": [[1.0, 2.0], _Marker(str(marker))],
        "nested": {"a": {"b": [_Marker(str(marker))]}},
    }[obj]
    blob = pickle.dumps(value, protocol=protocol)
    start = 5 if protocol == 0 else 3
    path = tmp_path / "cut.pkl"
    for n in range(start, min(len(blob), 80)):
        path.write_bytes(blob[:n])
        assert main(["info", str(path)]) == 3
        err = capsys.readouterr().err
        assert "pickle" in err and "never unpickles" in err, (n, blob[:n], err)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text",
    [b"(dp", b"}q", b"(this is a note)\n", b"hello world\n", b"(d\n", b"]]]]", b"(lp\n"],
)
def test_short_text_is_not_called_a_pickle(tmp_path, capsys, text):
    path = tmp_path / "note.txt"
    path.write_bytes(text)
    assert main(["info", str(path)]) == 3
    assert "pickle" not in capsys.readouterr().err
