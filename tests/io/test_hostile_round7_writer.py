"""Hostile round seven: the :class:`~ncinspect.DumpWriter` as a training loop uses it.

Each case failed on the branch point (bd9715b) and passes now:

- a snapshot an earlier writer left marked in progress (``kill -9``: simulated by
  ``close(finish=False)``, which leaves exactly what a kill after a flush leaves) was
  continued by ``append=True`` / ``mode="append"`` (or reopened when it held only
  ``params``) and then marked complete: the killed run's part of the rows passed off as a
  whole snapshot; a ``with`` block left by an exception, reopened by the same writer, got
  its rows again after the partial ones; ``replace=True`` kept the writer's own rows;
- names that readers refuse beside another (look-alikes: the whole file then unreadable),
  that HDF5 stores as another name (``e\\x00`` written as ``e``) or that make a group called
  ``..``; names that are not text;
- metadata values read back as something else (``json:`` text decoded, a dict holding an
  array shortened with ``...``) or crashing h5py (ints past int64, a NUL, a lone surrogate,
  cycles, deep nesting, values past HDF5's header); the writer's own marker as a key;
- writing through a closed writer or from a forked child (a DataLoader worker): h5py's own
  errors, or a child's snapshot silently lost.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect import DumpWriter
from ncinspect.errors import NCInspectError, UsageError
from ncinspect.io.tree import IN_PROGRESS

Y = np.arange(12) % 3
X = np.eye(3, 5)[Y] * 4.0 + np.linspace(0, 0.5, 60).reshape(12, 5)
W = np.eye(3, 5)


def _good(path) -> None:
    """A file with one finished snapshot, ``e1``, labels at the root."""
    with DumpWriter(path) as w:
        w.write("labels", Y)
        with w.snapshot("e1", epoch=1) as s:
            s.append(features=X)
            s.write(weights=W)


def _rows(path) -> dict[str, int]:
    return {s.name: s.n_samples for s in ncinspect.analyze_file(str(path)).snapshots}


def _killed(path, rows: int = 6, *, params: bool = False) -> None:
    """``e1`` finished, then ``e2`` stopped half way (its marker left, as a kill leaves it)."""
    _good(path)
    w = DumpWriter(path)
    s = w.snapshot("e2", epoch=2)
    if rows:
        s.append(features=X[:rows])
    if params:
        s.write_params([W, W])
    w.close(finish=False)


# -- a snapshot left unfinished -------------------------------------------------------------


@pytest.mark.parametrize(
    "how", [("append", {}), ("a", {"append": True}), ("a", {}), ("params", {})]
)
def test_a_killed_snapshot_is_never_continued_into_a_complete_one(tmp_path, how):
    path = tmp_path / "run.h5"
    mode, kw = how
    _killed(path, rows=0 if mode == "params" else 6, params=mode == "params")
    with DumpWriter(path, "a" if mode == "params" else mode) as w:
        with pytest.raises(UsageError, match="unfinished.*replace=True"):
            w.snapshot("e2", **kw)
    # the partial snapshot is still skipped, the finished one still read
    assert _rows(path) == {"/e1": 12}
    with h5py.File(path) as f:
        assert IN_PROGRESS in f["e2"].attrs


def test_a_killed_snapshot_can_be_started_over(tmp_path):
    path = tmp_path / "run.h5"
    _killed(path, params=True)
    with DumpWriter(path, "append") as w:
        with w.snapshot("e2", replace=True, epoch=2) as s:
            s.append(features=X)
            s.write(weights=W)
    assert _rows(path) == {"/e1": 12, "/e2": 12}
    with h5py.File(path) as f:
        assert "params" not in f["e2"]


def test_a_block_left_by_an_exception_is_not_reopened_into_doubled_rows(tmp_path):
    path = tmp_path / "run.h5"
    with DumpWriter(path) as w:
        try:
            with w.snapshot("e1") as s:
                s.append(features=X[:5], labels=Y[:5])
                raise MemoryError("CUDA out of memory")  # one epoch skipped, the loop goes on
        except MemoryError:
            pass
        with pytest.raises(UsageError, match="unfinished"):
            w.snapshot("e1")  # before: rows 5 + 12, labels 5 + 12, analysed as complete
        with w.snapshot("e1", replace=True) as s:
            s.append(features=X, labels=Y)
            s.write(weights=W)
    assert _rows(path) == {"/e1": 12}


def test_replace_deletes_the_writers_own_rows_too(tmp_path):
    path = tmp_path / "run.h5"
    with DumpWriter(path) as w:
        for _ in range(2):  # the same epoch measured again: replace, never 24 rows
            with w.snapshot("e1", replace=True) as s:
                s.append(features=X, labels=Y)
                s.write_params([W])
                s.write(weights=W)
    assert _rows(path) == {"/e1": 12}


# -- names ----------------------------------------------------------------------------------

BAD_SNAPSHOT_NAMES = [
    "a/../b",
    "..",
    "   ",
    "e\n2",
    "e\x00",  # h5py stored it as "e"
    "\udcff",
    " e1",
    "e1 ",
    "e\u200b1",
    "e\u20601",
    "\ufeffe1",
    "e\u0301",  # decomposed: readers take the precomposed spelling for a look-alike
    5,
    None,
    b"e2",
]


@pytest.mark.parametrize("name", BAD_SNAPSHOT_NAMES, ids=ascii)
def test_snapshot_names_readers_would_misread_are_refused(tmp_path, name):
    path = tmp_path / "run.h5"
    _good(path)
    with DumpWriter(path) as w:
        with pytest.raises(UsageError, match="DumpWriter: snapshot name"):
            w.snapshot(name)
    assert _rows(path) == {"/e1": 12}  # and the file is as it was


@pytest.mark.parametrize(
    "name",
    [
        "features ",
        "feat\u200bures",
        "../features",
        "a/../features",
        "",
        "x/",
        ".",
        "labels\n",
        "w\x00",
    ],
    ids=ascii,
)
def test_array_names_readers_would_misread_are_refused(tmp_path, name):
    path = tmp_path / "run.h5"
    _good(path)
    with DumpWriter(path) as w:
        with w.snapshot("e2") as s:
            s.append(features=X)
            with pytest.raises(UsageError, match="DumpWriter: array name"):
                s.append(**{name: X})
            with pytest.raises(UsageError, match="DumpWriter: array name"):
                s.write(**{name: W})
            s.write(weights=W)
        with pytest.raises(UsageError, match="DumpWriter: (array|group) name"):
            w.write(name, Y)
        with pytest.raises(UsageError, match="DumpWriter: group name"):
            w.write("labels", Y, group="e1/../e2")
    assert _rows(path) == {"/e1": 12, "/e2": 12}


def test_names_a_file_already_holds_are_written_as_they_are(tmp_path):
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:  # another program's odd (but single) name
        f.create_group("e\u0301")
    with DumpWriter(path) as w:
        w.write("labels", Y)
        with w.snapshot("e\u0301") as s:
            s.append(features=X)
            s.write(weights=W)
    assert _rows(path) == {"/e\u0301": 12}


@pytest.mark.parametrize(
    "key", ["", "a\x00", "\udcff", IN_PROGRESS, "epoch\u200b", " epoch"], ids=ascii
)
def test_metadata_keys_readers_would_misread_are_refused(tmp_path, key):
    path = tmp_path / "run.h5"
    _good(path)
    with DumpWriter(path) as w:
        with pytest.raises(UsageError, match="DumpWriter: .*(metadata key|own mark)"):
            w.set_meta("e1", **{key: 5})
        with pytest.raises(UsageError, match="DumpWriter: .*(metadata key|own mark)"):
            w.snapshot("e2", **{key: 5})
    result = ncinspect.analyze_file(str(path))
    assert [s.name for s in result.snapshots] == ["/e1"]


# -- metadata values ------------------------------------------------------------------------

ROUND_TRIP = {
    "big": 2**70,
    "negative_big": -(2**70),
    "uint64_max": 2**64 - 1,
    "nul": "a\x00b",
    "surrogate": "x\udcffy",
    "json_prefix": "json:[1, 2]",
    "nul_list": ["a\x00", "b"],
    "big_list": [2**70, 1],
    "dict_of_array": {"a": np.arange(2000)},  # str() of it is '[   0    1 ... 1999]'
    "string_array": np.array(["cat", "dog"]),
    "bytes": "caf\u00e9".encode(),
    "np_uint64": np.uint64(2**64 - 1),
    "mixed_keys": {1: "a", "b": 2},  # sorted keys of mixed types: TypeError before
}
EXPECTED = {
    "dict_of_array": {"a": list(range(2000))},
    "string_array": ["cat", "dog"],
    "bytes": "caf\u00e9",
    "np_uint64": 2**64 - 1,
    "mixed_keys": {"1": "a", "b": 2},
}


@pytest.mark.parametrize("key", list(ROUND_TRIP))
def test_metadata_values_read_back_as_given(tmp_path, key):
    path = tmp_path / "run.h5"
    with DumpWriter(path) as w:
        w.write("labels", Y)
        with w.snapshot("e1", **{key: ROUND_TRIP[key]}) as s:
            s.append(features=X)
            s.write(weights=W)
    (snap,) = ncinspect.analyze_file(str(path)).snapshots
    assert snap.meta[key] == EXPECTED.get(key, ROUND_TRIP[key])


def _cycle():
    d: dict = {}
    d["self"] = d
    return d


def _deep(n):
    out: list = []
    for _ in range(n):
        out = [out]
    return out


REFUSED = {
    "not_utf8": b"\xff\xfe",
    "cycle": _cycle(),
    "deep": _deep(100),  # readers keep JSON deeper than 64 levels as text
    "deeper": _deep(5000),  # RecursionError before
    "large_array": np.zeros(20000),  # OSError: object header message is too large
    "large_text_list": ["x" * 1000] * 100,
    "huge_digits": 10**5000,  # beyond Python's int-to-text digit limit
}


@pytest.mark.parametrize("key", list(REFUSED))
def test_metadata_values_that_cannot_be_stored_are_refused_before_writing(tmp_path, key):
    path = tmp_path / "run.h5"
    _good(path)
    with DumpWriter(path) as w:
        with pytest.raises(UsageError, match=f"metadata '{key}'"):
            w.snapshot("e2", **{key: REFUSED[key]})
        with pytest.raises(UsageError, match=f"metadata '{key}'"):
            w.set_meta("e1", **{key: REFUSED[key]})
    assert _rows(path) == {"/e1": 12}


# -- the writer's life ----------------------------------------------------------------------


def test_a_closed_writer_says_so(tmp_path):
    path = tmp_path / "run.h5"
    w = DumpWriter(path)
    s = w.snapshot("e1")
    w.close()
    for call in (
        lambda: w.snapshot("e2"),
        lambda: w.write("labels", Y),
        lambda: w.set_meta("/", a=1),
        lambda: w.flush(),
        lambda: s.append(features=X),
        lambda: s.write(weights=W),
        lambda: s.set_meta(epoch=1),
    ):
        with pytest.raises(UsageError, match="is closed"):
            call()
    w.close()  # twice: fine
    s.finish()  # after close: nothing to do


@pytest.mark.parametrize("mode", [["a"], {"a": 1}, b"a"], ids=repr)
def test_mode_of_any_type_is_a_usage_error(tmp_path, mode):
    with pytest.raises(UsageError, match="mode"):
        DumpWriter(tmp_path / "run.h5", mode)
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.parametrize("compression", ["bogus", "GZIP", 1.5, 10, -1, True], ids=repr)
def test_compression_is_checked_before_anything_is_written(tmp_path, compression):
    with pytest.raises(UsageError, match="compression"):
        DumpWriter(tmp_path / "run.h5", compression=compression)
    assert not (tmp_path / "run.h5").exists()


@pytest.mark.parametrize("path", [5, None, "a\x00b"], ids=repr)
def test_a_path_of_the_wrong_kind_is_a_usage_error(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)  # h5py cut 'a\x00b' at the NUL and made 'a' here
    with pytest.raises(NCInspectError):
        DumpWriter(path)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("what", ["snapshot", "append", "finish", "close"])
def test_a_forked_child_cannot_write_through_its_parents_writer(tmp_path, what):
    path = tmp_path / "run.h5"
    w = DumpWriter(path)
    w.write("labels", Y)
    s = w.snapshot("e1")
    s.append(features=X[:6])
    r, wr = os.pipe()
    pid = os.fork()
    if pid == 0:  # a DataLoader worker, say
        code = b"?"
        try:
            if what == "snapshot":
                w.snapshot("child")
            elif what == "append":
                s.append(features=X[6:])
            elif what == "finish":
                s.finish()
            else:
                w.close()  # a no-op in the child: the parent's file is left alone
                code = b"c"
        except UsageError as exc:
            code = b"u" if "forked" in str(exc) else b"x"
        except BaseException:  # noqa: BLE001 - reported to the parent
            code = b"x"
        os.write(wr, code)
        os._exit(0)
    os.close(wr)
    code = os.read(r, 1)
    os.waitpid(pid, 0)
    assert code == (b"c" if what == "close" else b"u")
    s.append(features=X[6:])
    s.write(weights=W)
    s.finish()
    with w.snapshot("e2") as s2:
        s2.append(features=X)
        s2.write(weights=W)
    w.close()
    assert _rows(path) == {"/e1": 12, "/e2": 12}


@pytest.mark.parametrize(
    "meta",
    [{"k" * 100_000: 1}, {"epoch": 1, "bad": b"\xff"}, {"epoch": 1, "x": _cycle()}],
    ids=["huge_key", "bad_bytes", "cycle"],
)
def test_metadata_refused_by_snapshot_leaves_no_group_behind(tmp_path, meta):
    """The snapshot's metadata is checked before its group is made and marked: a refused
    value no longer leaves an empty marked group (h5py's OSError for a 100 kB key came after
    the mark)."""
    path = tmp_path / "run.h5"
    _good(path)
    with DumpWriter(path) as w:
        with pytest.raises(UsageError, match="metadata"):
            w.snapshot("e2", **meta)
        with w.snapshot("e2", epoch=2) as s:  # the name is free to use
            s.append(features=X)
            s.write(weights=W)
    with h5py.File(path) as f:
        assert sorted(f) == ["e1", "e2", "labels"]
    assert _rows(path) == {"/e1": 12, "/e2": 12}


def test_object_labels_are_written_as_what_they_hold(tmp_path):
    """Integer labels in an object array (a pandas column) were written as the text '0',
    '1', ...: string labels, and the classifier's metrics set aside; ``None`` among them
    became a class named 'None'."""
    path = tmp_path / "run.h5"
    with DumpWriter(path) as w:
        with w.snapshot("e1") as s:
            s.append(features=X, labels=np.array(Y.tolist(), dtype=object))
            s.write(weights=W)
            with pytest.raises(UsageError, match="NoneType"):
                s.append(features=X[:1], labels=np.array([None], dtype=object))
            with pytest.raises(UsageError, match="holds numbers, got a batch of text"):
                s.append(features=X[:1], labels=np.array(["a"]))
    (snap,) = ncinspect.analyze_file(str(path)).snapshots
    assert snap.class_names == [0, 1, 2]
    assert snap.metrics["nc3_self_duality"] is not None  # the classifier's metrics are there


def test_a_refused_append_grows_no_array(tmp_path):
    """A batch whose second array did not fit (other row shape) was refused after the first
    array had grown: features of 13 rows beside labels of 12."""
    path = tmp_path / "run.h5"
    with DumpWriter(path) as w:
        with w.snapshot("e1") as s:
            s.append(features=X, labels=Y)
            s.write(weights=W)
            with pytest.raises(UsageError, match="rows of shape"):
                s.append(features=X[:1], labels=Y[:1].reshape(1, 1))
    assert _rows(path) == {"/e1": 12}


def test_a_name_through_an_array_or_onto_a_group_is_refused(tmp_path):
    """h5py's TypeError/ValueError/AttributeError before, and ``write(params=...)`` deleted
    the ``params`` group (every layer's weights) to store one array in its place."""
    path = tmp_path / "run.h5"
    _good(path)
    with DumpWriter(path) as w:
        for call in (
            lambda: w.snapshot("labels/x"),
            lambda: w.write("x", Y, group="labels"),
            lambda: w.set_meta("labels", a=1),
        ):
            with pytest.raises(UsageError, match="is an array, not a group"):
                call()
        with w.snapshot("e2") as s:
            s.append(features=X)
            s.write_params([W, W])
            with pytest.raises(UsageError, match="is an array, not a group"):
                s.append(**{"features/x": X})
            with pytest.raises(UsageError, match="is a group"):
                s.write(params=W)
            s.write(weights=W)
    with h5py.File(path) as f:
        assert sorted(f["e2/params"]) == ["W1", "W2"]
    assert _rows(path) == {"/e1": 12, "/e2": 12}


def test_replacing_a_snapshot_hides_the_layers_measured_with_the_old_rows(tmp_path):
    """``replace=True`` started a snapshot over but kept its ``layer_<k>`` groups from the
    earlier run: the new rows' snapshot read beside the old run's hidden layers, as one
    measurement. They are marked until written again."""
    path = tmp_path / "run.h5"
    with DumpWriter(path) as w:
        w.write("labels", Y)
        with w.snapshot("e1") as s:
            s.append(features=X)
            s.write(weights=W)
        with w.snapshot("e1/layer_1", layer="layer_1") as s:
            s.append(features=X * 2)
    with DumpWriter(path) as w:  # the epoch measured again; its layer not (yet)
        with w.snapshot("e1", replace=True) as s:
            s.append(features=X + 1)
            s.write(weights=W)
    result = ncinspect.analyze_file(str(path))
    assert [s.name for s in result.snapshots] == ["/e1"]
    assert any("layer_1" in n and "incomplete" in n for n in result.snapshots[0].warnings)
    with DumpWriter(path) as w:  # written again: read again
        with pytest.raises(UsageError, match="unfinished"):
            w.snapshot("e1/layer_1")
        with w.snapshot("e1/layer_1", replace=True, layer="layer_1") as s:
            s.append(features=X * 3)
    assert _rows(path) == {"/e1": 12, "/e1/layer_1": 12}
