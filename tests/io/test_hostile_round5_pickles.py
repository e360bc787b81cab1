"""Hostile round five, class 10 (pickles named as such): a pickle inside a compressed file.

joblib's compressed files and ``pickle.dump`` into ``gzip.open`` (or xz, bzip2, zlib) were
refused as "not an HDF5 or NPZ dump (starts with bytes b'\\x1f\\x8b...')", without the word
pickle; a NumPy ``.npy`` file (one array, or objects: pickles) the same. Now the first
64 kB are inflated (never more) and parsed as pickle opcodes (never run): a pickle inside is
named one, with the way to export; another compressed file is named by its compression; an
``.npy`` file is named as such, with ``numpy.savez``. Nothing is unpickled.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import pickle
import zlib

import numpy as np
import pytest

from ncinspect.cli import main

from ..helpers import make_data


class _Marker:
    """Unpickling it would create a folder: proof the file was never unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


WRAP = {
    "gzip": gzip.compress,
    "xz": lzma.compress,
    "bzip2": bz2.compress,
    "zlib": zlib.compress,
}


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("kind", list(WRAP))
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_a_compressed_pickle_is_named_a_pickle_and_never_loaded(tmp_path, capsys, kind, protocol):
    h, y, m = make_data(C=3, d=4, n=10)
    marker = tmp_path / "unpickled"
    obj = {"features": h, "labels": y, "x": _Marker(str(marker))}
    path = tmp_path / f"run.{kind}.pkl"
    path.write_bytes(WRAP[kind](pickle.dumps(obj, protocol=protocol)))
    for command in (
        ["report", path],
        ["info", path],
        ["train", "-o", tmp_path / "t.h5", "--dataset", path, "--epochs", "1"],
    ):
        rc = main([str(a) for a in command])
        line = _one_line(capsys)
        assert rc == 3, line
        assert f"{kind}-compressed Python pickle" in line and "never unpickles" in line, line
    assert not marker.exists()


def test_joblib_files_are_named_pickles(tmp_path, capsys):
    h, y, m = make_data(C=3, d=4, n=10)
    path = tmp_path / "run.joblib"
    # what joblib.dump(..., compress=3) writes: a zlib stream of a pickle
    path.write_bytes(zlib.compress(pickle.dumps({"features": h}, protocol=4), 3))
    assert main(["report", str(path)]) == 3
    assert "zlib-compressed Python pickle" in _one_line(capsys)


def test_other_compressed_files_and_npy_files_say_what_they_are(tmp_path, capsys):
    h, y, m = make_data(C=3, d=4, n=10)
    cases = {
        "text.gz": (gzip.compress(b"features,labels\n" * 100), "is a gzip-compressed file"),
        "dump.h5.xz": (lzma.compress(b"\x89HDF\r\n\x1a\n" + bytes(100)), "an xz-compressed file"),
    }
    for name, (data, expected) in cases.items():
        (tmp_path / name).write_bytes(data)
        assert main(["report", str(tmp_path / name)]) == 3
        line = _one_line(capsys)
        assert expected in line and "decompress it" in line, line
    np.save(tmp_path / "h.npy", h)
    assert main(["report", str(tmp_path / "h.npy")]) == 3
    line = _one_line(capsys)
    assert "NumPy .npy file (one array of shape (30, 4))" in line and "numpy.savez" in line
    np.save(tmp_path / "o.npy", np.array([_Marker(str(tmp_path / "m"))], dtype=object))
    assert main(["report", str(tmp_path / "o.npy")]) == 3
    line = _one_line(capsys)
    assert "Python objects, which are pickles" in line and "never unpickles" in line
    assert not (tmp_path / "m").exists()
