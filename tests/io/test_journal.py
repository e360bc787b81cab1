"""The writer's commits cannot be torn (issue 22 item 1, the gap libhdf5 left): a writer killed
at any step of a commit leaves the file as one commit or the next, never between.

``JournalFile`` is checked against a plain bytearray (random writes, truncations and commits);
then every physical write a commit makes is replayed one step at a time (and each write cut in
half, as a kill inside a large ``pwrite`` leaves it), and every state a kill could leave is
read: byte for byte it is the commit before or the commit made, and as a dump every snapshot
finished before is there, whole. Readers replay a journal in memory and change nothing; the
next writer applies it; a damaged trailer is never replayed."""

from __future__ import annotations

import json
import os
import struct
import zlib

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import UnreadableFileError
from ncinspect.io import journal as J
from ncinspect.io.h5file import h5_file

from ..helpers import file_digest, killed_in_commit

# --- JournalFile against a bytearray ------------------------------------------------------


class _Model:
    """The file as libhdf5 sees it through the journal: a plain bytearray."""

    def __init__(self, data: bytes = b""):
        self.data = bytearray(data)

    def write(self, pos: int, data: bytes) -> None:
        if len(self.data) < pos:
            self.data += bytes(pos - len(self.data))
        self.data[pos : pos + len(data)] = data

    def truncate(self, size: int) -> None:
        if size < len(self.data):
            del self.data[size:]
        else:
            self.data += bytes(size - len(self.data))


def _read_all(f, size: int) -> bytes:
    f.seek(0)
    buf = bytearray(size)
    f.readinto(buf)
    return bytes(buf)


def _random_steps(jf: J.JournalFile, model: _Model, rng, steps: int, on_commit=None) -> None:
    for _ in range(steps):
        size = len(model.data)
        kind = rng.choice(["write", "write", "write", "truncate", "commit", "read"])
        if kind == "write":
            pos = int(rng.integers(0, size + 300))
            data = rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
            if rng.random() < 0.3 and pos < size:  # as libhdf5 rewrites a chunk: mostly the same
                data = bytearray(model.data[pos : pos + len(data)].ljust(len(data), b"\0"))
                data[int(rng.integers(0, len(data)))] ^= 0xFF
                data = bytes(data)
            jf.seek(pos)
            assert jf.write(memoryview(data)) == len(data)
            model.write(pos, data)
        elif kind == "truncate":
            new = int(rng.integers(0, size + 200))
            jf.truncate(new)
            model.truncate(new)
        elif kind == "commit":
            if on_commit is not None:
                on_commit()
            jf.commit()
        else:
            pos = int(rng.integers(0, size + 50))
            n = int(rng.integers(0, 300))
            jf.seek(pos)
            got = bytearray(n)
            assert jf.readinto(memoryview(got)) == n
            want = bytes(model.data[pos : pos + n])
            assert bytes(got) == want + bytes(n - len(want))
        assert jf.seek(0, 2) == len(model.data)
        assert _read_all(jf, len(model.data)) == bytes(model.data)


@pytest.mark.parametrize("seed", range(8))
def test_journal_file_reads_back_and_commits_what_was_written(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "f.bin"
    start = rng.integers(0, 256, int(rng.integers(0, 2000)), dtype=np.uint8).tobytes()
    path.write_bytes(start)
    model = _Model(start)
    jf = J.JournalFile.open(str(path), 0)
    if seed % 2:  # writes compared with the file in blocks of 8 bytes (64 KiB in use)
        jf.same_block = 8
    try:
        _random_steps(jf, model, rng, 400)
        jf.commit()
    finally:
        jf.close()
    assert path.read_bytes() == bytes(model.data)  # committed: the file, no journal left


def test_nothing_reaches_the_committed_bytes_before_the_commit(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 8)
    jf = J.JournalFile.open(str(path), 0)
    try:
        jf.seek(10)
        jf.write(b"x" * 100)
        jf.truncate(1000)
        jf.seek(1500)
        jf.write(b"y" * 10)  # past the committed end only after the truncation: held
        assert path.read_bytes() == bytes(range(256)) * 8
        assert _read_all(jf, 1510)[1000:1500] == bytes(500)  # cut away, grown again: zeros
        jf.commit()
    finally:
        jf.close()
    want = bytearray(bytes(range(256)) * 8)[:1000] + bytes(500) + b"y" * 10
    want[10:110] = b"x" * 100
    assert path.read_bytes() == bytes(want)


# --- a kill at every step of a commit -------------------------------------------------------


class _Recorder:
    """Records the physical writes and truncations of the commits while they are made."""

    def __init__(self, monkeypatch):
        self.ops: list[tuple] = []
        self.on = False
        real_write, real_parts, real_truncate = J._pwrite_all, J._pwrite_parts, os.ftruncate

        def pwrite_all(fd, data, offset):
            if self.on:
                self.ops.append(("write", offset, bytes(memoryview(data).cast("B"))))
            real_write(fd, data, offset)

        def pwrite_parts(fd, parts, offset):  # one write: a kill leaves a prefix of it
            if self.on:
                self.ops.append(("write", offset, b"".join(bytes(p) for p in parts)))
            real_parts(fd, parts, offset)

        def ftruncate(fd, size):
            if self.on:
                self.ops.append(("truncate", size))
            real_truncate(fd, size)

        monkeypatch.setattr(J, "_pwrite_all", pwrite_all)
        monkeypatch.setattr(J, "_pwrite_parts", pwrite_parts)
        monkeypatch.setattr(J.os, "ftruncate", ftruncate)


def _states(before: bytes, ops: list[tuple]):
    """Every file a kill during ``ops`` can leave (each write also cut in half), in order,
    with whether the journal's trailer had been written whole by then."""
    data = bytearray(before)
    yield before
    for op in ops:
        if op[0] == "write" and len(op[2]) > 1:
            half = _Model(data)
            half.write(op[1], op[2][: len(op[2]) // 2])
            yield bytes(half.data)
        model = _Model(data)
        if op[0] == "write":
            model.write(op[1], op[2])
        else:
            model.truncate(op[1])
        data = model.data
        yield bytes(data)


def _logical(path) -> tuple[bytes, bool]:
    """The bytes a reader of ncinspect sees, and whether it read them through a journal."""
    found = J.replayed(str(path))
    assert not isinstance(found, str), found  # the writer's own trailers are never damaged
    if found is None:
        return path.read_bytes(), False
    try:
        return found.read(), True
    finally:
        found.close()


def _check_every_kill(tmp_path, before: bytes, committed: int, after: bytes, ops) -> int:
    """Each state a kill can leave is the commit before (its ``committed`` bytes as they
    were; libhdf5 reads no further) until the journal's trailer is whole, and the commit
    made (``after``, byte for byte) from then on. Returns how many states a reader saw
    through the journal."""
    probe = tmp_path / "state.bin"
    replays, new = 0, False
    for state in _states(before, ops):
        probe.write_bytes(state)
        seen, through = _logical(probe)
        replays += through
        new = new or through
        if through:  # the next writer applies it (also a state its own apply was cut in)
            J.JournalFile.open(str(probe), 0).close()
            assert probe.read_bytes() == after
            probe.write_bytes(state)
        # what libhdf5 reads: bytes up to the end the superblock there records (past it,
        # bytes a later commit writes, or a journal not yet whole, are never read)
        if new:
            assert seen[: len(after)] == after
        else:
            assert seen[:committed] == before[:committed] or seen[: len(after)] == after
    assert probe.read_bytes() == after  # the whole commit: the file itself, no journal
    return replays


@pytest.mark.parametrize("seed", range(4))
def test_a_kill_at_any_step_of_a_commit_leaves_one_commit_or_the_next(tmp_path, monkeypatch, seed):
    rng = np.random.default_rng(100 + seed)
    path = tmp_path / "f.bin"
    path.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    model = _Model(path.read_bytes())
    rec = _Recorder(monkeypatch)
    if seed == 2:  # journals of at most 4 records: commits coalesce what they hold
        monkeypatch.setattr(J, "_MAX_RECORDS", 4)
    jf = J.JournalFile.open(str(path), 0)
    jf.same_block = 8 if seed % 2 else jf.same_block  # blocks equal to the file skipped
    checked = []

    def check_commit():  # called right before each commit of the random steps
        before, committed = path.read_bytes(), jf._committed
        rec.ops, rec.on = [], True
        jf.commit()
        rec.on = False
        after = path.read_bytes()
        assert after == bytes(model.data)
        checked.append(_check_every_kill(tmp_path, before, committed, after, rec.ops))

    try:
        _random_steps(jf, model, rng, 150, on_commit=check_commit)
    finally:
        jf.close()
    assert len(checked) > 5 and any(checked)  # commits were made, and some ended mid-apply


def test_a_commit_of_many_stretches_stays_within_what_readers_accept(tmp_path, monkeypatch):
    monkeypatch.setattr(J, "_MAX_RECORDS", 4)  # readers accept 4 records: commits hold 2
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 4)
    rec = _Recorder(monkeypatch)
    jf = J.JournalFile.open(str(path), 0)
    for k in range(10):  # ten stretches apart
        jf.seek(90 * k + 3)
        jf.write(bytes([k]) * 7)
    want = _read_all(jf, 1024)
    before = path.read_bytes()
    rec.ops, rec.on = [], True
    jf.commit()
    rec.on = False
    jf.close()
    assert path.read_bytes() == want
    assert _check_every_kill(tmp_path, before, 1024, want, rec.ops) > 0  # replayed, whole


def _dump_ops(tmp_path, monkeypatch):
    """A dump of two finished snapshots, then a writer making a third (a new group in the
    root, rows, weights, its marker deleted) with every commit's physical steps recorded:
    [(file before, committed bytes before, file after, steps)]."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    path = tmp_path / "run.h5"
    rec = _Recorder(monkeypatch)
    commits = []
    with ncinspect.DumpWriter(path, "w") as w:
        w.write("labels", y)
        for e in range(2):
            with w.snapshot(f"epoch_{e}", epoch=e) as s:
                s.append(features=rng.standard_normal((120, 6)) + y[:, None])
                s.write(weights=rng.standard_normal((4, 6)))
        real_commit = w._journal.commit

        def commit(**how):
            before, committed = path.read_bytes(), w._journal._committed
            rec.ops, rec.on = [], True
            real_commit(**how)
            rec.on = False
            commits.append((before, committed, path.read_bytes(), rec.ops))

        w._journal.commit = commit
        for e in range(2, 12):  # more than 8 links in the root: its storage made dense
            with w.snapshot(f"epoch_{e}", epoch=e) as s:
                s.append(features=rng.standard_normal((60, 6)) + y[:60, None])
                s.append(features=rng.standard_normal((60, 6)) + y[60:, None])
                s.write(weights=rng.standard_normal((4, 6)))
    return path, commits


def test_a_dump_killed_inside_any_commit_keeps_every_finished_snapshot(tmp_path, monkeypatch):
    path, commits = _dump_ops(tmp_path, monkeypatch)
    state = tmp_path / "state.h5"
    held_back = 0
    for k, (before, committed, after, ops) in enumerate(commits):
        # every commit's steps as bytes; the dump as readers see it for a sample of them
        held_back += _check_every_kill(tmp_path, before, committed, after, ops)
        if k % 5:
            continue
        for data in _states(before, ops):
            state.write_bytes(data)
            with h5_file(str(state)) as f:  # the root lists, every finished snapshot whole
                names = sorted(n for n in f if n.startswith("epoch_"))
                for n in names:
                    if "ncinspect_in_progress" not in f[n].attrs and "weights" in f[n]:
                        assert f[n]["features"].shape == (120, 6)
            result = ncinspect.analyze_file(str(state))
            assert [s.name for s in result.snapshots][:2] == ["/epoch_0", "/epoch_1"]
            assert all(s.n_samples == 120 for s in result.snapshots)
    assert len(commits) > 40 and held_back


def _is_trailer(data: bytes) -> bool:
    return data[-J.TRAILER_SIZE :].startswith(J.MAGIC)


def _mid_apply(tmp_path, monkeypatch) -> tuple:
    """A dump left by a writer killed after its journal's trailer and the first of its
    writes in place: (path, the file the whole commit makes)."""
    path, commits = _dump_ops(tmp_path, monkeypatch)
    for k in range(len(commits) - 1, -1, -1):  # a late commit that wrote twice in place
        before, _, after, ops = commits[k]
        at = [i for i, op in enumerate(ops) if op[0] == "write" and _is_trailer(op[2])]
        if at and len(ops) > at[0] + 2 and ops[at[0] + 2][0] == "write":
            trailer = at[0]
            break
    else:
        raise AssertionError("no commit wrote twice in place")
    data = bytearray(before)
    for op in ops[: trailer + 2]:  # the journal and its trailer, one write in place
        m = _Model(data)
        m.write(op[1], op[2]) if op[0] == "write" else m.truncate(op[1])
        data = m.data
    path.write_bytes(bytes(data))
    return path, after


def test_readers_replay_a_journal_in_memory_and_change_nothing(tmp_path, monkeypatch, capsys):
    path, after = _mid_apply(tmp_path, monkeypatch)
    digest = file_digest(path)
    assert isinstance(J.replayed(str(path)), J.Replayed)
    assert main(["report", str(path), "--json", str(tmp_path / "r.json"), "-q"]) == 0
    out = capsys.readouterr()
    assert "its writer stopped inside a commit" in out.out + out.err
    assert main(["info", str(path)]) == 0
    capsys.readouterr()
    assert file_digest(path) == digest  # read, never repaired by a reader
    assert _logical(path) == (after, True)


def test_the_next_writer_applies_a_journal(tmp_path, monkeypatch):
    path, after = _mid_apply(tmp_path, monkeypatch)
    J.JournalFile.open(str(path), 0).close()
    assert path.read_bytes() == after  # the commit the killed writer was making, whole
    with ncinspect.DumpWriter(path, "a") as w:
        w.write("extra", np.arange(3))
    with h5py.File(path, "r") as f:  # plain libhdf5 reads it
        assert len([n for n in f if n.startswith("epoch_")]) >= 10 and "extra" in f


def _damaged(path, how: str) -> None:
    """The journal at the end of ``path`` spoilt as ``how`` says (its checksum made to match
    again where the damage is to the records' order or bounds)."""
    data = path.read_bytes()
    head = len(data) - J.TRAILER_SIZE
    magic, start, end, size, crc = J._TRAILER.unpack(data[head:])
    records = bytearray(data[start:head])
    if how == "checksum":
        records[20] ^= 0xFF
    elif how == "past the end":  # the last record's last byte one past the end
        heads, at = [], 0  # (the records' heads, walked to the last)
        while at < len(records):
            offset, n = struct.unpack("<QQ", records[at : at + 16])
            heads.append(at)
            at += 16 + (0 if n >> 63 else n)
        offset, n = struct.unpack("<QQ", records[heads[-1] : heads[-1] + 16])
        records[heads[-1] : heads[-1] + 8] = struct.pack("<Q", end - n + 1)
        crc = zlib.crc32(records)
    elif how == "order":
        offset = struct.unpack("<Q", records[:8])[0]
        records += struct.pack("<QQ", offset, 1) + b"z"  # a last record over the first
        crc = zlib.crc32(records)
    claimed = len(records) + (how == "length")  # "length": one byte more than there is
    trailer = J._TRAILER.pack(magic, start, end, claimed, crc)
    path.write_bytes(data[:start] + bytes(records) + trailer)


@pytest.mark.parametrize("how", ["checksum", "length", "past the end", "order"])
def test_a_damaged_journal_is_never_replayed(tmp_path, monkeypatch, capsys, how):
    path, _ = _mid_apply(tmp_path, monkeypatch)
    _damaged(path, how)
    digest = file_digest(path)
    found = J.replayed(str(path))
    assert isinstance(found, str) and "journal" in found, found
    rc = main(["report", str(path), "--json", str(tmp_path / "r.json"), "-q"])
    out = capsys.readouterr()
    # libhdf5 reads the file as it is (the old commit, torn by the one write in place): a
    # report that says the journal was not read, or one clear line
    assert rc in (0, 3), out.err
    if rc == 3:
        assert len(out.err.strip().splitlines()) == 1 and str(path) in out.err
    else:
        assert "not read through the journal at its end" in out.out + out.err
    assert file_digest(path) == digest
    with pytest.raises(UnreadableFileError, match="cannot be replayed"):
        ncinspect.DumpWriter(path, "a")  # a writer never writes on over a torn file
    assert file_digest(path) == digest


def test_a_writer_process_killed_inside_a_commit(tmp_path, capsys):
    """A real writer process, killed right after its journal's trailer: the report holds the
    commit it was making (the new snapshot there, marked in progress, skipped with a note)
    and every snapshot before it; the next writer applies the journal."""
    path = killed_in_commit(tmp_path / "run.h5", snapshots=3)
    with h5py.File(path, "r") as f:  # libhdf5 alone: the commit before (no epoch_3 yet)
        assert "epoch_3" not in f
    assert main(["report", path, "--json", "-", "-q"]) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert [s["name"] for s in doc["snapshots"]] == ["/epoch_0", "/epoch_1", "/epoch_2"]
    notes = [w for s in doc["snapshots"] for w in s["warnings"]]
    assert any("its writer stopped inside a commit" in n for n in notes), notes
    assert any("/epoch_3 skipped: it is incomplete" in n for n in notes), notes
    with ncinspect.DumpWriter(path, "a"):
        pass
    assert J.replayed(path) is None
    with h5py.File(path, "r") as f:
        assert "ncinspect_in_progress" in f["epoch_3"].attrs  # the commit made: its group, marked


# --- failures inside libhdf5's calls, interrupts, a writer dropped -------------------------


def test_a_block_written_back_over_a_held_one_is_read_back(tmp_path):
    """A block equal to the file is skipped only where no held write covers it: the file's
    own bytes written back over a held stretch replace it."""
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(64)))
    jf = J.JournalFile.open(str(path), 0)
    jf.same_block = 8
    try:
        jf.seek(0)
        jf.write(b"X" * 32)
        jf.seek(0)
        jf.write(bytes(range(32)))  # what the file holds there
        assert _read_all(jf, 64) == bytes(range(64))
        jf.commit()
    finally:
        jf.close()
    assert path.read_bytes() == bytes(range(64))


def test_a_failure_inside_a_commit_keeps_its_journal_whole(tmp_path, monkeypatch):
    """An error while a commit writes in place (a full disk, an interrupt): the commit's
    journal stays whole (nothing more reaches the file), readers replay it, later commits
    raise, a close does not."""
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(1000))
    jf = J.JournalFile.open(str(path), 0)
    jf.seek(100)
    jf.write(b"A" * 10)
    jf.seek(1000)
    jf.write(b"B" * 10)
    real = J._pwrite_all

    def disk_full(fd, data, offset):
        if offset < 1000:  # the first write in place
            raise OSError(28, "No space left on device")
        real(fd, data, offset)

    monkeypatch.setattr(J, "_pwrite_all", disk_full)
    with pytest.raises(OSError, match="No space"):
        jf.commit()
    monkeypatch.setattr(J, "_pwrite_all", real)
    on_disk = path.read_bytes()
    jf.seek(1010)
    jf.write(b"C" * 5000)  # over where the journal lies: kept in memory
    jf.truncate(1020)
    assert path.read_bytes() == on_disk
    assert _read_all(jf, 1020)[1000:] == b"B" * 10 + b"C" * 10  # libhdf5's reads stay whole
    with pytest.raises(OSError, match="nothing more can be written"):
        jf.commit()
    jf.commit(closing=True)  # reported already: a close goes through
    jf.close()
    want = bytearray(1010)
    want[100:110], want[1000:1010] = b"A" * 10, b"B" * 10
    assert _logical(path) == (bytes(want), True)


_INTERRUPTED = r"""
import os, signal, sys
import numpy as np
import ncinspect
from ncinspect.io import journal

path, how = sys.argv[1], sys.argv[2]
calls = [0]
real_write, real_pwrite = journal.JournalFile.write, journal._pwrite_all


def write(self, data):  # a signal arrives while libhdf5 writes (its 40th write)
    calls[0] += 1
    if calls[0] == 40:
        os.kill(os.getpid(), signal.SIGINT if how == "ctrl-c" else signal.SIGALRM)
    return real_write(self, data)


def pwrite(fd, data, offset):  # the disk fills up (at the 60th write to the file)
    calls[0] += 1
    if calls[0] >= 60:
        raise OSError(28, "No space left on device")
    return real_pwrite(fd, data, offset)


if how == "disk full":
    journal._pwrite_all = pwrite
else:
    journal.JournalFile.write = write
if how == "handler":  # a handler of the program's own that raises
    def boom(signum, frame):
        raise RuntimeError("the program's own handler")
    signal.signal(signal.SIGALRM, boom)
y = np.arange(40) % 4
w = ncinspect.DumpWriter(path, "w")
w.write("labels", y)
stopped = None
for e in range(6):
    try:
        with w.snapshot(f"epoch_{e}", epoch=e) as s:
            s.append(features=np.ones((40, 8)) * e + y[:, None])
            s.write(weights=np.eye(4, 8))
    except (KeyboardInterrupt, RuntimeError, OSError) as exc:  # the program goes on
        stopped = stopped or (e, type(exc).__name__, str(exc)[:80])
w.close()
print(repr(stopped))
"""

_RAISED = {"ctrl-c": "KeyboardInterrupt", "handler": "RuntimeError", "disk full": "OSError"}


@pytest.mark.parametrize("how", ["ctrl-c", "handler", "disk full"])
def test_an_interrupt_or_error_inside_libhdf5s_writes(tmp_path, capsys, how):
    """A signal whose handler raises (Ctrl-C, a program's own), arriving while libhdf5
    writes, is raised when the writer's call returns: the writer goes on. An error of the
    disk there fails the writer safely: its call raises, nothing more is written, the close
    goes through. Never a crash; the file holds every snapshot committed, whole."""
    import subprocess
    import sys

    from ..helpers import ROOT

    path = tmp_path / "run.h5"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED, str(path), how],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stopped = eval(proc.stdout.strip())  # (epoch, exception, message) of the stopped call
    assert stopped is not None and stopped[1] == _RAISED[how], stopped
    assert main(["report", str(path), "--json", "-", "-q"]) == 0
    doc = json.loads(capsys.readouterr().out)
    names = [s["name"] for s in doc["snapshots"]]
    if how == "disk full":  # nothing is written after the failure
        assert "No space left" in stopped[2] and stopped[0] >= 1
        assert names == [f"/epoch_{e}" for e in range(stopped[0])]
    else:  # only the interrupted snapshot is left incomplete (and skipped)
        assert names == [f"/epoch_{e}" for e in range(6) if e != stopped[0]]
    assert all(s["n_samples"] == 40 for s in doc["snapshots"])


def test_a_writer_dropped_without_close_releases_the_file(tmp_path):
    import gc

    path = tmp_path / "run.h5"
    w = ncinspect.DumpWriter(path, "w")
    w.write("labels", np.arange(4))
    del w
    gc.collect()
    with h5py.File(path, "r") as f:  # the lock is gone
        assert list(f["labels"][:]) == [0, 1, 2, 3]
    ncinspect.DumpWriter(path, "a").close()


def test_two_writers_of_one_file_in_one_process_share_it(tmp_path, capsys):
    """Two meters dumping into one file: the second DumpWriter shares the first's open file
    (as libhdf5 shared its handle); the last close closes it."""
    from ncinspect.errors import UsageError

    path = tmp_path / "run.h5"
    y = np.arange(20) % 4
    a = ncinspect.DumpWriter(path, "w")
    a.write("labels", y)
    b = ncinspect.DumpWriter(path, "a")
    with a.snapshot("train/epoch_1", epoch=1, split="train") as s:
        s.append(features=np.eye(20, 6) + y[:, None])
    with b.snapshot("test/epoch_1", epoch=1, split="test") as s:
        s.append(features=np.eye(20, 6) * 2 + y[:, None])
    a.close()
    with pytest.raises(UsageError, match="is closed"):
        a.write("more", np.arange(3))
    with b.snapshot("test/epoch_2", epoch=2, split="test") as s:  # b goes on
        s.append(features=np.eye(20, 6) * 3 + y[:, None])
    b.close()
    b.close()  # twice: nothing more
    assert main(["report", str(path), "--json", "-", "-q"]) == 0
    names = [s["name"] for s in json.loads(capsys.readouterr().out)["snapshots"]]
    assert sorted(names) == ["/test/epoch_1", "/test/epoch_2", "/train/epoch_1"]
    with h5py.File(path, "r") as f:  # closed: the lock is gone
        assert "labels" in f


def test_held_signals_are_restored_whatever_raises(monkeypatch):
    """The writer's calls hold back signals with Python handlers and put every handler back
    afterwards, also when a handler raises while they are put back or a swap is cut short."""
    import signal

    seen = []

    def usr1(signum, frame):
        seen.append(signum)
        raise RuntimeError("the program's handler")

    old_usr1 = signal.signal(signal.SIGUSR1, usr1)
    before = {s: signal.getsignal(s) for s in J._SIGNALS}
    try:

        @J.interrupts_deferred
        def inside():
            os.kill(os.getpid(), signal.SIGUSR1)  # held: no exception here
            assert not seen
            return "done"

        with pytest.raises(RuntimeError, match="the program's handler"):
            inside()  # handled once the call returns
        assert seen == [signal.SIGUSR1]
        assert {s: signal.getsignal(s) for s in J._SIGNALS} == before

        real_signal = signal.signal
        # SIGINT's and SIGUSR1's handlers are Python's: calls 1 and 2 swap, 3 and 4 restore
        for cut in (1, 2, 3, 4):
            calls = []

            def cut_short(sig, handler, calls=calls, cut=cut):  # an interrupt in the middle
                calls.append(sig)
                if len(calls) == cut:
                    raise KeyboardInterrupt
                return real_signal(sig, handler)

            monkeypatch.setattr(J.signal, "signal", cut_short)
            with pytest.raises(KeyboardInterrupt):
                J.interrupts_deferred(lambda: None)()
            monkeypatch.setattr(J.signal, "signal", real_signal)
            assert {s: signal.getsignal(s) for s in J._SIGNALS} == before, cut
    finally:
        signal.signal(signal.SIGUSR1, old_usr1)


def test_a_failed_journal_reads_a_regrown_stretch_as_zeros(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(100))
    jf = J.JournalFile.open(str(path), 0)
    jf.seek(100)
    jf.write(b"A" * 100)  # past the commit's end: on disk
    monkeypatch.setattr(J, "_pwrite_all", lambda *a: (_ for _ in ()).throw(OSError(28, "full")))
    jf.seek(200)
    jf.write(b"B" * 10)  # fails the journal: kept in memory
    assert jf.failed is not None
    jf.truncate(120)
    jf.seek(180)
    jf.write(b"C" * 10)
    assert _read_all(jf, 190)[100:] == b"A" * 20 + bytes(60) + b"C" * 10
    jf.close()


def test_a_writer_sharing_a_file_dropped_without_close(tmp_path):
    import gc

    path = tmp_path / "run.h5"
    a = ncinspect.DumpWriter(path, "w")
    b = ncinspect.DumpWriter(path, "a")
    a.write("labels", np.arange(4))
    del a  # a meter dropped half way
    gc.collect()
    b.close()  # the last writer left: the file is closed, its lock gone
    with h5py.File(path, "r") as f:
        assert list(f["labels"][:]) == [0, 1, 2, 3]


def test_a_reader_in_the_writers_process_knows_it_is_being_written(tmp_path, monkeypatch):
    from ncinspect.io.h5file import open_for_writing

    monkeypatch.setenv("HDF5_USE_FILE_LOCKING", "FALSE")  # no lock to tell it
    path = tmp_path / "run.h5"
    w = ncinspect.DumpWriter(path, "w")
    w.write("labels", np.arange(4))
    with h5_file(str(path)) as f:
        assert open_for_writing(f, [])
    w.close()
    with h5_file(str(path)) as f:
        assert not open_for_writing(f, [])
