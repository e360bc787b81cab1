"""Two arrays that resolve to one name are refused, naming both (issue 22 item 3)."""

from __future__ import annotations

import h5py
import pytest
from safetensors.numpy import save_file

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import AmbiguousArrayError

from ..helpers import file_digest, make_data, write_npz_members

SPELLINGS = [
    ("features", "/features"),
    ("features", "./features"),
    ("features", "features/"),
    ("a/features", "a//features"),
    ("a/features", "/a/./features"),
    ("labels", "//labels"),
]


def _both_named(message: str, first: str, second: str) -> None:
    assert repr(first) in message and repr(second) in message, message


@pytest.mark.parametrize("first,second", SPELLINGS)
def test_safetensors_two_spellings_of_one_name(tmp_path, capsys, first, second):
    h, y, m = make_data(C=3, d=4, n=12)
    tensors = {"features": h, "labels": y, "a/features": h}
    tensors[first] = h if "features" in first else y
    tensors[second] = (h + 1) if "features" in second else y[::-1].copy()
    path = tmp_path / "two.safetensors"
    save_file(tensors, str(path))
    before = file_digest(path)
    with pytest.raises(AmbiguousArrayError) as info:
        ncinspect.analyze_file(path)
    _both_named(str(info.value), first, second)
    assert main(["report", str(path)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resolve to this name" in err
    assert file_digest(path) == before


@pytest.mark.parametrize(
    "first,second",
    [
        ("features.npy", "/features.npy"),
        ("features.npy", "./features.npy"),
        ("e1/features.npy", "e1//features.npy"),
    ],
)
def test_npz_two_spellings_of_one_name(tmp_path, capsys, first, second):
    h, y, _ = make_data(C=3, d=4, n=12)
    path = tmp_path / "two.npz"
    write_npz_members(path, {"labels.npy": y, "e1/features.npy": h, first: h, second: h + 1})
    with pytest.raises(AmbiguousArrayError) as info:
        ncinspect.analyze_file(path)
    _both_named(str(info.value), first, second)
    assert main(["report", str(path)]) == 3


def test_hdf5_two_aliases_of_one_role(tmp_path, capsys):
    h, y, m = make_data(C=3, d=4, n=12)
    path = tmp_path / "alias.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"] = h, y
        f["classifier.weight"] = m
        f["classifier/weight"] = m * 2
    with pytest.raises(AmbiguousArrayError) as info:
        ncinspect.analyze_file(path)
    _both_named(str(info.value), "classifier.weight", "classifier/weight")
    with h5py.File(path, "a") as f:
        del f["classifier"]
        f["H"] = h  # an alias of features beside features
    with pytest.raises(AmbiguousArrayError) as info:
        ncinspect.analyze_file(path)
    _both_named(str(info.value), "features", "H")
    assert main(["report", str(path)]) == 3


def test_safetensors_two_spellings_of_one_metadata_key(tmp_path, capsys):
    h, y, _ = make_data(C=3, d=4, n=12)
    path = tmp_path / "meta.safetensors"
    save_file({"features": h, "labels": y}, str(path), metadata={"epoch": "1", "/epoch": "2"})
    assert main(["report", str(path)]) == 3
    err = capsys.readouterr().err
    assert "'epoch'" in err and "'/epoch'" in err


def test_distinct_names_still_read(tmp_path):
    h, y, _ = make_data(C=3, d=4, n=12)
    path = tmp_path / "ok.safetensors"
    save_file({"/e1/features": h, "e2/features": h + 1, "labels": y}, str(path))
    rep = ncinspect.analyze_file(path)
    assert [s.name for s in rep.snapshots] == ["/e1", "/e2"]
