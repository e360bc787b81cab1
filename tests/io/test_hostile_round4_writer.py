"""Hostile round four, class 1 (a killed writer): the moments round three's kills missed.

A writer process is stopped with ``os._exit`` (what ``kill -9`` does to it: no ``finally``,
no close) at an exact moment, right after what it wrote there was flushed, so that the file
holds exactly that state:

- ``snapshot(name, replace=True)`` deletes the arrays of an earlier run's snapshot one by
  one; round three marked the snapshot in progress only after the deletions (and its
  ``attrs.clear()`` would have deleted a marker set before), so a kill between two
  deletions left a snapshot without its bias (or weights) that read as complete;
- ``DumpWriter.write("labels", y)`` (labels at the top, inherited by every snapshot) marked
  nothing, so a kill while the labels were rewritten left every snapshot reading part of
  them (fill values for the rest) as if complete.

Readers must skip the snapshots concerned with a note, never analyse them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.io.writer import IN_PROGRESS

from ..helpers import make_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _killed(script: str, path) -> None:
    """Run ``script`` (``path`` bound to the dump) in a fresh interpreter; it ends with
    ``os._exit(9)`` at the moment the test chose."""
    code = f"import os, sys\npath = {str(path)!r}\n" + textwrap.dedent(script)
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=60)
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]


def _complete_dump(path):
    h, y, m = make_data(C=3, d=5, n=10)
    with ncinspect.DumpWriter(path, "w") as w:
        w.write("labels", y)
        for ep in (1, 2):
            with w.snapshot(f"epoch_{ep}", epoch=ep) as s:
                s.append(features=h * (1 + 1 / ep))
                s.write(weights=m, bias=np.full(3, 0.5))
    return h, y, m


def test_killed_while_replace_deletes_the_earlier_arrays(tmp_path, capsys):
    path = tmp_path / "run.h5"
    _complete_dump(path)
    _killed(
        """
        import h5py
        import ncinspect
        real = h5py.Group.__delitem__
        def delete_then_die(self, name):
            real(self, name)
            w.flush()  # what the writer wrote so far committed
            os._exit(9)  # kill -9 right after the first array of the snapshot is deleted
        h5py.Group.__delitem__ = delete_then_die
        w = ncinspect.DumpWriter(path, "a")
        w.snapshot("epoch_2", replace=True)
        """,
        path,
    )
    with h5py.File(path, "r") as f:  # the state the kill left: bias gone, the rest there
        assert "bias" not in f["epoch_2"] and "features" in f["epoch_2"]
    result = ncinspect.analyze_file(str(path))
    assert [s.name for s in result.snapshots] == ["/epoch_1"]
    notes = [w for s in result.snapshots for w in s.warnings]
    assert any("/epoch_2" in w and "incomplete" in w for w in notes)
    assert main(["report", str(path), "-q"]) == 0
    shown = capsys.readouterr()
    assert "/epoch_2 skipped: it is incomplete" in shown.out + shown.err


def test_killed_while_top_level_labels_are_rewritten(tmp_path, capsys):
    path = tmp_path / "run.h5"
    _complete_dump(path)
    _killed(
        """
        import h5py
        import numpy as np
        import ncinspect
        real = h5py.Group.create_dataset
        def half_then_die(self, name, *args, data=None, **kw):
            ds = real(self, name, shape=np.shape(data), dtype=np.asarray(data).dtype)
            ds[: len(data) // 2] = np.asarray(data)[: len(data) // 2]
            w.flush()  # what the writer wrote so far committed
            os._exit(9)  # kill -9 half way through writing the labels
        h5py.Group.create_dataset = half_then_die
        w = ncinspect.DumpWriter(path, "a")
        w.write("labels", np.arange(30) % 3)
        """,
        path,
    )
    with h5py.File(path, "r") as f:  # half the new labels written, the rest whatever was there
        assert (f["labels"][:15] == np.arange(15) % 3).all()
    try:
        result = ncinspect.analyze_file(str(path))
        assert not result.snapshots, "snapshots read labels that were half written"
    except ncinspect.errors.DumpError as exc:  # only incomplete snapshots: one error
        assert "incomplete" in str(exc)
    rc = main(["report", str(path), "-q"])
    err = capsys.readouterr().err
    assert rc == 3 and "Traceback" not in err
    assert "incomplete" in err or "being written" in err


def test_rewriting_top_level_labels_leaves_the_file_complete(tmp_path):
    path = tmp_path / "run.h5"
    h, y, m = _complete_dump(path)
    with ncinspect.DumpWriter(path, "a") as w:
        w.write("labels", y[::-1].copy())
    with h5py.File(path, "r") as f:
        assert IN_PROGRESS not in f.attrs
    result = ncinspect.analyze_file(str(path))
    assert [s.name for s in result.snapshots] == ["/epoch_1", "/epoch_2"]


@pytest.mark.parametrize("then", ["close", "next_snapshot"])
def test_meter_reset_keeps_its_rows_marked_in_a_callers_writer(tmp_path, then):
    """A meter writing to a DumpWriter the caller owns, reset before its pass 1 ended: the
    caller's normal close (or the next snapshot the meter opened on that writer) marked the
    partial rows complete. With a path the meter owns they stayed marked (round three)."""
    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "run.h5"
    with ncinspect.DumpWriter(path, "w") as w:
        meter = ncinspect.Meter(m, dump=w, snapshot="epoch_1")
        meter.update(h[::3], y[::3])  # a third of the rows, every class: analysable
        if then == "close":
            meter.reset()
        else:
            meter.reset(snapshot="epoch_2")
            meter.update(h, y)
            meter.next_pass()
    with h5py.File(path, "r") as f:
        assert IN_PROGRESS in f["epoch_1"].attrs
    if then == "close":
        with pytest.raises(ncinspect.errors.DumpError, match="incomplete"):
            ncinspect.analyze_file(str(path))
    else:
        result = ncinspect.analyze_file(str(path))
        assert [s.name for s in result.snapshots] == ["/epoch_2"]
