"""Expensive metadata, round seven (issue 22 items 6-9's class: a hostile or careless input
makes ncinspect hang, crash or use unbounded memory).

- An NPZ of many members was opened once per member (each open re-reads the whole central
  directory): 2,000 tiny members took 12 s, 10,000 over 2 minutes, 100,000 hours.
- A group of many attributes was read by opening attribute ``i`` by its index, which builds
  the table of every attribute each time when they are stored densely: 10,000 attributes took
  55 s, and 100,000 made the CLI's probe refuse a valid file as "did not finish in 30 s".
- A variable-length attribute (text, sequences) declares only the size of its references,
  so the 1 MiB attribute bound never saw a 200 MB string: 1.2 GB resident to read it, past
  any ``--memory-limit``.
"""

from __future__ import annotations

import zipfile

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.io import hdf5 as hdf5_mod

from ..helpers import file_digest, make_data, run_cli, write_npz_members


def _base(f):
    h, y, _ = make_data(C=3, d=4, n=6)
    f["features"] = h.astype(np.float32)
    f["labels"] = y


def _cli(path, *args, timeout=120, probe="30"):
    return run_cli(path, *args, probe_seconds=probe, timeout=timeout)


def test_npz_of_many_members_reads_its_central_directory_once(tmp_path, monkeypatch):
    h, y, _ = make_data(C=3, d=4, n=6)
    members = [("features.npy", h.astype(np.float32)), ("labels.npy", y)]
    members += [(f"junk{i}.npy", np.zeros(1, np.float32)) for i in range(300)]
    path = write_npz_members(tmp_path / "many.npz", members)
    reads = []
    real = zipfile.ZipFile._RealGetContents

    def counted(self):
        reads.append(1)
        return real(self)

    monkeypatch.setattr(zipfile.ZipFile, "_RealGetContents", counted)
    report = ncinspect.analyze_file(path)
    assert report.snapshots
    # the pickle sniff, the tree and a whole read or two: never one per member
    assert len(reads) <= 4, f"the central directory was read {len(reads)} times"


def test_many_attributes_are_not_opened_by_index(tmp_path, monkeypatch):
    path = tmp_path / "attrs.h5"
    with h5py.File(path, "w", libver="latest") as f:  # dense attribute storage
        _base(f)
        f.attrs["epoch"] = 3
        for i in range(hdf5_mod.MAX_ATTRS + 50):
            f.attrs[f"x{i:05d}"] = i
    by_index = []
    real = h5py.h5a.open

    def counted(*args, **kwargs):
        if "index" in kwargs:
            by_index.append(kwargs["index"])
        return real(*args, **kwargs)

    monkeypatch.setattr(h5py.h5a, "open", counted)
    dump = ncinspect.open_dump(str(path))
    assert not by_index, f"{len(by_index)} attributes opened by index (quadratic)"
    assert any("only the first 4096 read" in n for n in dump.notes)
    attrs = dump.tree.attrs
    assert attrs["epoch"] == 3  # the same first attributes as before: name order
    assert len(attrs) == hdf5_mod.MAX_ATTRS and "x04094" in attrs and "x04095" not in attrs


@pytest.mark.parametrize(
    "make",
    [
        lambda g: g.attrs.create("big", "x" * (3 << 20), dtype=h5py.string_dtype()),
        lambda g: g.attrs.create(
            "big", np.array(["y" * (1 << 19)] * 5, dtype=object), dtype=h5py.string_dtype()
        ),
        lambda g: g.attrs.create(
            "big", b"z" * (2 << 20), dtype=h5py.string_dtype(encoding="ascii")
        ),
    ],
    ids=["utf8-string", "string-array", "ascii-bytes"],
)
def test_a_variable_length_attribute_over_the_bound_is_skipped_with_a_note(tmp_path, make):
    path = tmp_path / "vlen.h5"
    with h5py.File(path, "w") as f:
        _base(f)
        f.attrs["split"] = "train"  # a small variable-length string is still read
        make(f)
    dump = ncinspect.open_dump(str(path))
    assert dump.tree.attrs.get("split") == "train"
    assert "big" not in dump.tree.attrs
    assert any("'big'" in n and "variable-length" in n and "skipped" in n for n in dump.notes)


def test_the_probe_refuses_a_variable_length_attribute_beyond_the_memory_limit(tmp_path):
    """libhdf5 reads a variable-length value whole (several copies of it): the CLI's probe
    child runs under an address-space limit, so the command refuses the file in one line
    instead of making the read (and breaking --memory-limit)."""
    path = tmp_path / "vlen.h5"
    with h5py.File(path, "w") as f:
        _base(f)
        f.attrs.create("big", "x" * (150 << 20), dtype=h5py.string_dtype())
    before = file_digest(path)
    proc = _cli(path, "report", "--memory-limit", "200MiB")
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert str(path) in lines[0] and "'big'" in lines[0] and "variable-length" in lines[0]
    assert file_digest(path) == before


@pytest.mark.slow
def test_a_group_of_100000_attributes_is_read_not_refused_as_hanging(tmp_path):
    path = tmp_path / "attrs.h5"
    with h5py.File(path, "w", libver="latest") as f:
        _base(f)
        for i in range(100_000):
            f.attrs[f"a{i}"] = i
    proc = _cli(path, "info", probe="20")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "only the first 4096 read" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_an_npz_of_100000_members_is_read_in_seconds_not_hours(tmp_path):
    h, y, _ = make_data(C=3, d=4, n=6)
    members = [("features.npy", h.astype(np.float32)), ("labels.npy", y)]
    members += [(f"junk{i}.npy", np.zeros(1, np.float32)) for i in range(100_000)]
    path = write_npz_members(tmp_path / "many.npz", members)
    proc = _cli(path, "report", timeout=100)  # hours before
    assert proc.returncode == 0, proc.stderr[-2000:]


def _soft_link_bomb(path, fan=50, levels=5):
    """Soft links whose paths name the link below ``fan`` times over, ``levels`` deep: each
    within 16 links *in a row*, but resolving the top one is ``fan ** levels`` lookups."""
    with h5py.File(path, "w") as f:
        _base(f)
        g = f.create_group("g")
        g["l0"] = h5py.SoftLink("/g")
        for k in range(1, levels + 1):
            g[f"l{k}"] = h5py.SoftLink("/".join([f"l{k - 1}"] * fan))


def test_soft_links_that_multiply_are_refused_not_followed_for_ever(tmp_path, monkeypatch):
    path = tmp_path / "links.h5"
    _soft_link_bomb(path)
    before = file_digest(path)
    calls = []
    real = hdf5_mod._Walker.follow

    def counted(self, *args, **kwargs):
        calls.append(1)
        assert len(calls) < 20_000, "soft links followed without bound (50**5 lookups)"
        return real(self, *args, **kwargs)

    monkeypatch.setattr(hdf5_mod._Walker, "follow", counted)
    with pytest.raises(ncinspect.errors.UnreadableFileError) as info:
        ncinspect.open_dump(str(path))
    assert "/g/l" in str(info.value) and "soft links" in str(info.value)
    assert file_digest(path) == before


def test_the_cli_refuses_soft_links_that_multiply_in_one_line(tmp_path):
    path = tmp_path / "links.h5"
    _soft_link_bomb(path, fan=40, levels=4)  # 40**4 lookups: 30 s of probe, then blamed
    proc = _cli(path, "info", probe="20")  # on libhdf5 ("a corrupt file makes it loop")
    assert proc.returncode == 3, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "soft links" in lines[0] and "did not finish" not in lines[0]


def test_a_chain_of_soft_links_within_the_bound_is_followed(tmp_path):
    path = tmp_path / "chain.h5"
    with h5py.File(path, "w") as f:
        h, y, _ = make_data(C=3, d=4, n=6)
        f["run/a/features"] = h.astype(np.float32)
        f["run/a/labels"] = y
        f["s0"] = h5py.SoftLink("/run")
        for k in range(1, 8):
            f[f"s{k}"] = h5py.SoftLink(f"/s{k - 1}")
        f["run/alias"] = h5py.SoftLink("/s7/a/features")
    dump = ncinspect.open_dump(str(path))
    assert dump.tree.lookup("run/alias") is not None


def _deep_long_names(path, depth, name_chars):
    with h5py.File(path, "w", libver="latest") as f:
        _base(f)
        g = f
        for k in range(depth):
            g = g.create_group(f"n{k}" + "x" * name_chars)


def test_groups_nested_deep_with_long_names_are_refused_before_their_paths_fill_memory(
    tmp_path, monkeypatch
):
    """300 groups of 10,000-character names (a 3 MB file) held 1.4 GB of paths; 1,200 of
    them would hold 20 GB. The paths one walk holds are bounded (here made small)."""
    path = tmp_path / "deep.h5"
    _deep_long_names(path, 60, 2000)  # paths adding up to 3.6 million characters
    monkeypatch.setattr(hdf5_mod, "MAX_PATH_CHARS", 1_000_000)
    with pytest.raises(ncinspect.errors.UnreadableFileError) as info:
        ncinspect.open_dump(str(path))
    line = str(info.value)
    assert str(path) in line and "add up to more than 1000000 characters" in line
    assert len(line) < 1000 and "\n" not in line


def test_one_long_group_name_is_still_read(tmp_path):
    path = tmp_path / "long.h5"
    h, y, _ = make_data(C=3, d=4, n=6)
    with h5py.File(path, "w") as f:
        g = f.create_group("s" * 500_000)  # round six's huge snapshot name: still a snapshot
        g["features"] = h.astype(np.float32)
        g["labels"] = y
    dump = ncinspect.open_dump(str(path))
    assert len(dump.snapshots) == 1
