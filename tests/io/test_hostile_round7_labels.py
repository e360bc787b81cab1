"""Labels under ``--memory-limit``, round seven (issue 22 item 9's class: the limit is a promise
on the whole process, for every reader and shape).

A file's labels were read whole and encoded whole before the run was planned: string labels
became one Python object a row (about 170 bytes), so 5,000,000 of them (an 80 MB NPZ or
HDF5 file, d = 2) peaked at 880 MiB under ``--memory-limit 300MiB`` (2.9x) and the run went
on; 5,000,000 integer labels peaked at 272 MiB under ``--memory-limit 200MiB`` before the plan
refused the run. Labels are now read and encoded in blocks (:data:`ncinspect.inputs.
LABEL_BLOCK` rows): what the encoding holds is the codes and one block.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ncinspect import inputs
from ncinspect.errors import InvalidDataError, UnsupportedDtypeError
from ncinspect.io.sources import ArraySource, MemorySource

from ..helpers import CLI, peak_rss


class _Recording(ArraySource):
    """A labels source that records every row range read from it."""

    def __init__(self, array):
        self.inner = MemorySource(array, "file.h5:/labels")
        self.where, self.shape, self.dtype = self.inner.where, array.shape, array.dtype
        self.spans: list[int] = []

    def read(self, start=0, stop=None):
        out = self.inner.read(start, stop)
        self.spans.append(len(out))
        return out


def _labels(kind: str, n: int, rng) -> np.ndarray:
    idx = rng.integers(0, 7, n)
    if kind == "bytes":
        return np.array([b"c\xc3\xa9%d" % i for i in range(7)])[idx]
    if kind == "str":
        return np.array([f"c\u00e9{i}" for i in range(7)])[idx]
    if kind == "object":
        return np.array([f"c{i}" for i in range(7)], dtype=object)[idx]
    if kind == "object-bytes":
        return np.array([b"c%d" % i for i in range(7)], dtype=object)[idx]
    if kind == "int":
        return idx * 13 - 20
    if kind == "uint64":
        return idx.astype(np.uint64) * np.uint64(2**59)
    if kind == "float":
        return idx * 1.0
    if kind == "bool":
        return idx % 2 == 0
    raise AssertionError(kind)


KINDS = ["bytes", "str", "object", "object-bytes", "int", "uint64", "float", "bool"]


@pytest.mark.parametrize("kind", KINDS)
def test_labels_are_encoded_in_blocks_as_they_were_whole(kind, monkeypatch):
    monkeypatch.setattr(inputs, "LABEL_BLOCK", 64)
    rng = np.random.default_rng(3)
    raw = _labels(kind, 1000, rng)
    source = _Recording(raw)
    codes, names, one_hot = inputs.encode_source(source)
    assert source.spans and max(source.spans) <= 64, "labels read whole"
    want_codes, want_names, want_hot = inputs.encode_labels(raw, "x")
    assert names == want_names and one_hot == want_hot
    np.testing.assert_array_equal(codes, want_codes)
    assert codes.dtype == np.int64


@pytest.mark.parametrize(
    "raw, error, row",
    [
        (np.where(np.arange(500) == 300, 0.5, 1.0), InvalidDataError, "row 300"),
        (
            np.where(np.arange(500) == 301, 2**64 - 1, 1).astype(np.uint64),
            InvalidDataError,
            "row 301",
        ),
        (np.where(np.arange(500) == 302, np.inf, 1.0), InvalidDataError, "labels"),
        (
            np.array([b"ok", b"\xff"])[(np.arange(500) == 303).astype(int)],
            UnsupportedDtypeError,
            "decoded",
        ),
        (
            np.array(["a", 3], dtype=object)[(np.arange(500) == 304).astype(int)],
            UnsupportedDtypeError,
            "int",
        ),
    ],
    ids=["fraction", "uint64-max", "inf", "not-utf8", "object-int"],
)
def test_a_bad_label_in_a_later_block_is_named_by_its_row(raw, error, row, monkeypatch):
    monkeypatch.setattr(inputs, "LABEL_BLOCK", 64)
    with pytest.raises(error) as info:
        inputs.encode_source(_Recording(raw))
    assert row in str(info.value) and "file.h5:/labels" in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize("container", ["npz", "h5"])
def test_five_million_string_labels_stay_within_the_memory_limit(tmp_path, container):
    n = 5_000_000
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 2), dtype=np.float32)
    y = np.array([b"class%03d" % i for i in range(10)])[np.arange(n) % 10]
    path = tmp_path / f"strings.{container}"
    if container == "npz":
        np.savez(path, features=X, labels=y)
    else:
        with h5py.File(path, "w") as f:
            f["features"] = X
            f["labels"] = y
    del X, y
    limit = 300 << 20
    rc, peak, err = peak_rss([*CLI, "report", str(path), "--memory-limit", "300MiB"], tmp_path)
    assert rc in (0, 3), err[-2000:]
    assert peak <= 1.1 * limit, f"peak {peak / 2**20:.0f} MiB under a 300 MiB limit"
