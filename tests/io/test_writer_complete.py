"""A snapshot is complete only when its writer says so (issue 22 item 1): a writer killed
mid-write leaves its last snapshot marked in progress, and every reader skips it with a note,
while the snapshots written before stay readable and foreign dumps (no marker) are complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import UnreadableFileError
from ncinspect.io.h5file import h5_file
from ncinspect.io.tree import IN_PROGRESS
from ncinspect.io.writer import DumpWriter

from ..helpers import make_data

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ncinspect.__file__)))
N_ROWS, BATCH = 400, 40

# the writer loop of the writer's docstring (no finish() call: the old API must stay safe);
# it prints "<epoch> <batch>" after each flushed batch, "done <epoch>" after each snapshot
_WRITER = r"""
import sys
import numpy as np
from ncinspect.io.writer import DumpWriter
rng = np.random.default_rng(0)
y = np.repeat(np.arange(4), 100)
with DumpWriter(sys.argv[1], "w") as w:
    w.write("labels", y)
    for e in range(10_000):
        snap = w.snapshot(f"epoch_{e:05d}", epoch=e)
        for b, a in enumerate(range(0, 400, 40)):
            snap.append(features=rng.standard_normal((40, 8)) + y[a : a + 40, None])
            print(e, b, flush=True)
        snap.write(weights=rng.standard_normal((4, 8)))
        snap.finish()  # complete from here on: "done" is printed only after it
        print("done", e, flush=True)
"""

# the Meter's dump=: pass 1 rows go to the file, one snapshot per measurement
_METER = r"""
import sys
import numpy as np
from ncinspect.meter.meter import Meter
rng = np.random.default_rng(0)
y = np.repeat(np.arange(4), 100)
W = rng.standard_normal((4, 8))
for e in range(10_000):
    m = Meter(W, dump=sys.argv[1], snapshot=f"epoch_{e:05d}", dump_meta={"epoch": e})
    H = rng.standard_normal((400, 8)) + y[:, None]
    for b, a in enumerate(range(0, 400, 40)):
        m.update(H[a : a + 40], y[a : a + 40])
        print(e, b, flush=True)
    m.next_pass()
    print("done", e, flush=True)
"""


def _env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _kill_after(script: str, path, lines: int) -> int:
    """Run ``script`` writing ``path``; SIGKILL it right after it printed ``lines`` lines.
    Returns how many snapshots it reported finished before the kill."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    finished = 0
    try:
        for _ in range(lines):
            line = proc.stdout.readline()
            assert line, "the writer stopped before it was killed"
            finished += line.startswith("done")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return finished


def _report(path, capsys) -> tuple[int, dict | None, str]:
    rc = main(["report", str(path), "--json", "-", "-q"])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if rc == 0 else None), err


def _check_killed_file(path, finished: int, capsys) -> None:
    rc, doc, err = _report(path, capsys)
    if finished == 0 and rc != 0:  # killed inside the first snapshot: nothing complete
        assert rc == 3, err
        assert "no complete snapshot" in err and "incomplete" in err, err
        return
    # (a writer killed right after the first snapshot's last batch line may have finished
    # that snapshot before the signal landed, "done" unread: then it is reported, whole, and
    # the checks below hold it to the file)
    # (a kill inside a commit, libhdf5's flush of the root group's links included, leaves the
    # commit before or the one it was making, never a root libhdf5 cannot list: the journal,
    # ncinspect/io/journal.py; tests/io/test_journal.py kills it at every step)
    assert rc == 0, err
    snaps = doc["snapshots"]
    # every snapshot finished before the kill is there, each with all its rows; the one
    # being written (if it had begun) is not, and a note says why
    assert len(snaps) >= finished
    assert all(s["n_samples"] == N_ROWS for s in snaps), [s["n_samples"] for s in snaps]
    with h5_file(path) as f:  # (as the writer's last commit left it: a journal replayed)
        # a group created in the instant before its marker was set holds nothing: not begun
        begun = sorted(
            k for k in f if k.startswith("epoch_") and (IN_PROGRESS in f[k].attrs or len(f[k]) > 0)
        )
        partial = [k for k in begun if IN_PROGRESS in f[k].attrs]
    assert len(partial) <= 1
    assert len(snaps) == len(begun) - len(partial)
    if partial:
        notes = [w for s in snaps for w in s["warnings"]]
        assert any(f"/{partial[0]} skipped: it is incomplete" in w for w in notes), notes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_writer_killed_at_random_moments(tmp_path, capsys, seed):
    rng = np.random.default_rng(seed)
    # a moment between the first batch and the third snapshot (11 lines per snapshot)
    lines = int(rng.integers(1, 34))
    path = tmp_path / f"killed{seed}.h5"
    finished = _kill_after(_WRITER, path, lines)
    _check_killed_file(path, finished, capsys)


@pytest.mark.parametrize("seed", [3, 4])
def test_meter_dump_killed_at_random_moments(tmp_path, capsys, seed):
    rng = np.random.default_rng(seed)
    lines = int(rng.integers(1, 34))
    path = tmp_path / f"meter{seed}.h5"
    finished = _kill_after(_METER, path, lines)
    _check_killed_file(path, finished, capsys)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(10, 22))
def test_writer_killed_at_more_moments(tmp_path, capsys, seed):
    rng = np.random.default_rng(seed)
    script = _WRITER if seed % 2 else _METER
    path = tmp_path / f"k{seed}.h5"
    finished = _kill_after(script, path, int(rng.integers(1, 56)))
    _check_killed_file(path, finished, capsys)


def test_killed_inside_the_first_snapshot_is_refused(tmp_path, capsys):
    path = tmp_path / "first.h5"
    assert _kill_after(_WRITER, path, 3) == 0
    _check_killed_file(path, 0, capsys)


# --- direct construction: a partial snapshot, every reader ---------------------------------


def _partial_file(path, *, marker_on: str = "epoch_0002") -> None:
    """Three snapshots; ``marker_on`` carries the writer's in-progress marker and half its rows."""
    h, y, _ = make_data(C=4, d=6, n=40, seed=1)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for e in range(3):
            g = f.create_group(f"epoch_{e:04d}")
            g.attrs["epoch"] = e
            g["features"] = h * (1 + e)
            g["weights"] = np.eye(4, 6)
        g = f["epoch_0002"]
        del g["features"]
        g["features"] = h[: len(h) // 2]  # a fraction of the rows: what a kill leaves
        f[marker_on].attrs[IN_PROGRESS] = np.int8(1)


def test_partial_snapshot_is_skipped_by_analyze_file(tmp_path):
    path = tmp_path / "partial.h5"
    _partial_file(path)
    rep = ncinspect.analyze_file(path)
    names = [s.name for s in rep.snapshots]
    assert names == ["/epoch_0000", "/epoch_0001"]
    notes = " ".join(w for s in rep.snapshots for w in s.warnings)
    assert "/epoch_0002 skipped: it is incomplete" in notes
    # the marker is the writer's, not metadata carried to the report
    assert all(IN_PROGRESS not in s.meta for s in rep.snapshots)


def test_marker_on_a_parent_group_skips_the_snapshots_below(tmp_path):
    h, y, _ = make_data(C=4, d=6, n=40, seed=1)
    path = tmp_path / "parent.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["a/features"] = h
        f["b/layer_1/features"] = h
        f["b/features"] = h
        f["b"].attrs[IN_PROGRESS] = np.int8(1)
    rep = ncinspect.analyze_file(path)
    assert [s.name for s in rep.snapshots] == ["/a"]
    notes = " ".join(w for s in rep.snapshots for w in s.warnings)
    assert "/b/layer_1 skipped" in notes and "(group /b" in notes


def test_every_cli_reader_skips_the_partial_snapshot(tmp_path, capsys):
    path = tmp_path / "partial.h5"
    _partial_file(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr()
    assert "/epoch_0002" in out.out + out.err and "incomplete" in out.out + out.err
    assert main(["check", str(path), "--max", "nc1=1e9"]) == 0
    out = capsys.readouterr()
    assert "incomplete" in out.out + out.err
    assert main(["plot", str(path), "-f", "png", "--dpi", "30", "-o", str(tmp_path / "p")]) == 0
    out = capsys.readouterr()
    assert "/epoch_0002 skipped" in out.out + out.err
    rc = main(["theory", str(path), "--json", "-"])
    out = capsys.readouterr()
    assert rc in (0, 1), out.err
    snaps = json.loads(out.out)["snapshots"]
    assert [s["name"] for s in snaps] == ["/epoch_0000", "/epoch_0001"]
    assert any("/epoch_0002 skipped: it is incomplete" in w for w in snaps[-1]["warnings"])


def test_only_partial_snapshots_is_one_error_line(tmp_path, capsys):
    path = tmp_path / "only.h5"
    h, y, _ = make_data(C=4, d=6, n=40, seed=1)
    with h5py.File(path, "w") as f:
        f["features"], f["labels"] = h, y
        f.attrs[IN_PROGRESS] = np.int8(1)
    with pytest.raises(UnreadableFileError, match="no complete snapshot"):
        ncinspect.analyze_file(path)
    assert main(["report", str(path)]) == 3


def test_a_foreign_dump_without_the_marker_is_complete(tmp_path):
    path = tmp_path / "foreign.h5"
    _partial_file(path)
    h, _, _ = make_data(C=4, d=6, n=40, seed=1)
    with h5py.File(path, "a") as f:  # as another trainer writes it: no marker at all
        del f["epoch_0002"].attrs[IN_PROGRESS]
        del f["epoch_0002/features"]
        f["epoch_0002/features"] = h
    rep = ncinspect.analyze_file(path)
    assert len(rep.snapshots) == 3


# --- the writer's API ----------------------------------------------------------------------


def _marked(path) -> dict[str, bool]:
    # the writer of the test holds the file's lock (as libhdf5's writers do): read beside it
    with h5py.File(path, "r", locking=False) as f:
        out = {}
        f.visititems(lambda n, o: out.__setitem__(n, IN_PROGRESS in o.attrs))
        out["/"] = IN_PROGRESS in f.attrs
        return {k: v for k, v in out.items() if isinstance(v, bool)}


def test_the_marker_is_set_while_writing_and_deleted_last(tmp_path):
    h, y, _ = make_data(C=4, d=6, n=40)
    path = tmp_path / "w.h5"
    with DumpWriter(path, "w") as w:
        w.write("labels", y)
        snap = w.snapshot("e0", epoch=0)
        snap.append(features=h[:20])
        assert _marked(path)["e0"]
        snap.append(features=h[20:])
        snap.finish()
        assert not _marked(path)["e0"]
        snap.append(features=h[:0])  # written to again: in progress again
        assert _marked(path)["e0"]
        with w.snapshot("e1", epoch=1) as s1:  # opening e1 finishes e0
            assert not _marked(path)["e0"]
            s1.append(features=h)
            assert _marked(path)["e1"]
        assert not _marked(path)["e1"]
        w.snapshot("e2").append(features=h)
    assert not any(_marked(path).values())  # a normal close finishes every snapshot


def test_an_exception_leaves_the_interrupted_snapshot_marked(tmp_path):
    h, y, _ = make_data(C=4, d=6, n=40)
    path = tmp_path / "x.h5"
    with pytest.raises(RuntimeError), DumpWriter(path, "w") as w:
        w.write("labels", y)
        w.snapshot("e0").append(features=h)
        snap = w.snapshot("e1")
        snap.append(features=h[:10])
        raise RuntimeError("interrupted")
    marked = _marked(path)
    assert not marked["e0"] and marked["e1"]
    rep = ncinspect.analyze_file(path)
    assert [s.name for s in rep.snapshots] == ["/e0"]


def test_layers_below_an_open_snapshot_do_not_finish_it(tmp_path):
    h, y, _ = make_data(C=4, d=6, n=40)
    path = tmp_path / "layers.h5"
    w = DumpWriter(path, "w")
    w.write("labels", y)
    top = w.snapshot("epoch_0001")
    w.snapshot("epoch_0001/layer_1").append(features=h)
    top.append(features=h[:20])
    assert _marked(path)["epoch_0001"]
    w.close(finish=False)
    assert _marked(path)["epoch_0001"]


def test_meter_reset_before_next_pass_leaves_the_rows_marked(tmp_path):
    from ncinspect.meter.meter import Meter

    h, y, _ = make_data(C=4, d=6, n=40)
    path = tmp_path / "m.h5"
    m = Meter(np.eye(4, 6), dump=path, snapshot="a")
    m.update(h[:20], y[:20])
    m.reset(snapshot="b")
    m.update(h, y)
    m.next_pass()
    marked = _marked(path)
    assert marked["a"] and not marked["b"]


def test_a_snapshot_begun_before_its_first_rows_is_noted(tmp_path, capsys):
    """Killed between opening a snapshot (marker set) and its first rows: no features there,
    still a note that it is incomplete, never silence."""
    h, y, _ = make_data(C=4, d=6, n=40, seed=1)
    path = tmp_path / "begun.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["epoch_0000/features"] = h
        f.create_group("epoch_0001").attrs[IN_PROGRESS] = np.int8(1)
    rc, doc, err = _report(path, capsys)
    assert rc == 0, err
    assert [s["name"] for s in doc["snapshots"]] == ["/epoch_0000"]
    notes = [w for s in doc["snapshots"] for w in s["warnings"]]
    assert any("/epoch_0001 skipped: it is incomplete" in w for w in notes), notes
