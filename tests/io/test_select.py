"""``Dump.select``: the globs of ``--snapshot`` (comma-separated), names looked up as a set
(`check` asks for thousands by name), the same snapshots as fnmatch on every pattern."""

from __future__ import annotations

import fnmatch
import glob

import h5py
import numpy as np
import pytest

from ncinspect.dump import open_dump
from ncinspect.errors import UsageError

NAMES = ["epoch_1", "epoch_2", "e[1]", "e*", "a?b", "x]y", "^", "[!]", "-", "train/epoch_10"]


def _reference(names, pattern):
    """The definition: a snapshot matches when any pattern fnmatches its path (also both
    without their leading slashes)."""
    pats = [p.strip() for p in pattern.split(",") if p.strip()]
    return [
        n
        for n in names
        if any(
            fnmatch.fnmatchcase(n, p) or fnmatch.fnmatchcase(n.lstrip("/"), p.lstrip("/"))
            for p in pats
        )
    ]


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    path = tmp_path_factory.mktemp("select") / "odd.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = np.arange(6) % 2
        for name in NAMES:
            f.create_dataset(f"{name}/features", data=np.ones((6, 2)))
    with open_dump(path) as d:
        yield d


PATTERNS = [
    *NAMES,
    *(glob.escape(n) for n in NAMES),
    *("/" + glob.escape(n) for n in NAMES),
    "[/]epoch_1",
    "epoch_*",
    "e[*]",
    "e[!1]",
    "[^]",
    "[!]",
    "[]]",
    "x]y",
    "[-]",
    "*epoch_1*",
    "e?",
    "epoch_1,e[[]1],missing",
    " epoch_2 , a?b ",
    "train/*",
    "/train/epoch_1?",
]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_select_is_fnmatch_on_every_pattern(dump, pattern):
    names = [s.name for s in dump.snapshots]
    want = _reference(names, pattern)
    if not want:
        with pytest.raises(UsageError, match="no snapshot matches"):
            dump.select(pattern)
        return
    assert [s.name for s in dump.select(pattern)] == want


def test_thousands_of_names_are_looked_up_not_globbed(tmp_path, monkeypatch):
    """`check --decreasing` on S snapshots asks for every one by name: S x S fnmatch calls
    before (1e8 at 10,000 snapshots, most of a minute), a set lookup now."""
    import ncinspect.dump as dump_mod

    path = tmp_path / "many.h5"
    n = 300
    with h5py.File(path, "w") as f:
        f["labels"] = np.arange(4) % 2
        for e in range(n):
            f.create_dataset(f"epoch_{e:05d}/features", data=np.ones((4, 2)))
    calls, plain = [], fnmatch.fnmatchcase

    def counted(name, pat):
        calls.append(pat)
        return plain(name, pat)

    monkeypatch.setattr(dump_mod.fnmatch, "fnmatchcase", counted)
    with open_dump(path) as d:
        pattern = ",".join(glob.escape(s.name) for s in d.snapshots)
        assert len(d.select(pattern)) == n
        assert calls == []
        half = ",".join(glob.escape(s.name) for s in d.snapshots[: n // 2])
        assert len(d.select(half + ",epoch_*")) == n
        assert 0 < len(calls) <= 2 * (n - n // 2)  # the one glob, only where no name matched
