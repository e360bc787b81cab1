"""Round seven, valid-but-unusual metadata: an ``epoch`` that is not an integer.

``epoch = 2.5`` (or ``true``, NaN, a list) in a snapshot's metadata was dropped without a
word: the snapshot had no epoch (or the one of its path) and left the trajectory, and the
report said nothing of the value it ignored. It is still not used (the spec's epoch is an
int), but a note names the snapshot and the value, in the table's notes and the JSON.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from ncinspect.cli import main


def _two(path, first, *, npz=False):
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(3, 5)) * 3
    y = np.repeat(np.arange(3), 8)
    feats = [mu[y] + rng.normal(size=(24, 5)) for _ in range(2)]
    if npz:
        arrays = {"labels": y, "s0/features": feats[0], "s1/features": feats[1]}
        arrays["s0/meta"] = np.array(json.dumps({"epoch": first}))
        arrays["s1/meta"] = np.array(json.dumps({"epoch": 1}))
        np.savez(path, **arrays)
        return
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for i, e in enumerate([first, 1]):
            f[f"s{i}/features"] = feats[i]
            f[f"s{i}"].attrs["epoch"] = e


@pytest.mark.parametrize("npz", [False, True])
@pytest.mark.parametrize("value", [2.5, True, float("nan")])
def test_a_non_integer_epoch_is_noted(tmp_path, capsys, value, npz):
    path = tmp_path / ("d.npz" if npz else "d.h5")
    _two(path, value, npz=npz)
    out = tmp_path / "r.json"
    assert main(["report", str(path), "--json", str(out)]) == 0
    text = "".join(capsys.readouterr())
    snaps = {s["name"]: s for s in json.loads(out.read_text())["snapshots"]}
    assert snaps["/s0"]["epoch"] is None and snaps["/s1"]["epoch"] == 1
    assert any("snapshot /s0: metadata epoch=" in w for w in snaps["/s0"]["warnings"])
    assert "is not an integer; ignored (no epoch)" in text


def test_an_integral_epoch_needs_no_note(tmp_path, capsys):
    path = tmp_path / "d.h5"
    _two(path, 2.0)
    out = tmp_path / "r.json"
    assert main(["report", str(path), "--json", str(out)]) == 0
    snaps = {s["name"]: s for s in json.loads(out.read_text())["snapshots"]}
    assert snaps["/s0"]["epoch"] == 2
    assert not any("metadata epoch" in w for s in snaps.values() for w in s["warnings"])
