"""Hostile round five, class 1 (a killed writer): a flat root snapshot with snapshots below it.

A snapshot written at the file's root (``DumpWriter.snapshot("/")``: features and labels at
the top, the flat layout) stayed marked in progress until the writer closed, because opening
a snapshot never finished the groups above it. Readers skip every snapshot below a marked
group, so a ``kill -9`` while epoch 30 was written hid the root and the 29 finished epochs
below it: data loss. Now opening a snapshot finishes an open group above it unless the new
one is another layer of it (``<snapshot>/layer_<k>``, written together with it), so only the
snapshot being written is skipped.

Writers are stopped with ``os._exit`` (what ``kill -9`` does: no ``finally``, no close) at an
exact moment after a flush, and killed with SIGKILL at seeded random moments.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap

import h5py
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.io.tree import IN_PROGRESS

from .test_writer_complete import _kill_after

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ncinspect.__file__)))


def _env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _exit_at(script: str, path) -> None:
    """Run ``script`` (``path`` bound to the dump) in a fresh interpreter; it ends with
    ``os._exit(9)`` at the moment the test chose."""
    head = "import os, sys\nimport numpy as np\nimport ncinspect\n"
    code = head + f"path = {str(path)!r}\n" + textwrap.dedent(script)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, timeout=120
    )
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]


def _names(path) -> tuple[list[str], list[str]]:
    result = ncinspect.analyze_file(str(path))
    notes = [w for s in result.snapshots for w in s.warnings]
    return [s.name for s in result.snapshots], notes


# the data every script writes: 3 classes, 12 rows, d = 5; epoch e scales the features
_DATA = """
y = np.arange(12) % 3
m = np.eye(3, 5)
def h(e):
    return (m[y] + 0.05 * np.cos(np.arange(60)).reshape(12, 5)) * (1 + e)
"""


@pytest.mark.parametrize("style", ["loop", "with"])
def test_kill_below_a_flat_root_snapshot_keeps_the_root_and_finished_epochs(tmp_path, style):
    path = tmp_path / "run.h5"
    epoch = (
        """
        s = w.snapshot(f"epoch_{e}", epoch=e)
        s.append(features=h(e)); s.write(weights=m)
        """
        if style == "loop"
        else """
        with w.snapshot(f"epoch_{e}", epoch=e) as s:
            s.append(features=h(e)); s.write(weights=m)
        """
    )
    _exit_at(
        _DATA
        + """
w = ncinspect.DumpWriter(path, "w")
w.write("labels", y)
root = w.snapshot("/", epoch=0)  # the flat layout: features at the file's root
root.append(features=h(0))
root.write(weights=m)
for e in (1, 2):
"""
        + textwrap.indent(textwrap.dedent(epoch), "    ")
        + """
s = w.snapshot("epoch_3", epoch=3)
s.append(features=h(3)[:5])  # 5 of 12 rows
w.flush()
os._exit(9)  # kill -9 while epoch 3 is written
""",
        path,
    )
    with h5py.File(path, "r") as f:  # only the snapshot being written is marked
        assert IN_PROGRESS not in f.attrs
        assert IN_PROGRESS not in f["epoch_1"].attrs and IN_PROGRESS not in f["epoch_2"].attrs
        assert IN_PROGRESS in f["epoch_3"].attrs
    names, notes = _names(path)
    assert names == ["/", "/epoch_1", "/epoch_2"]
    assert any("/epoch_3" in n and "incomplete" in n for n in notes), notes


def test_kill_while_the_root_is_written_with_its_layers_skips_both(tmp_path):
    """The layers of a snapshot are written together with it: opening ``/layer_1`` must not
    finish the root, whose rows are a part of the data."""
    path = tmp_path / "run.h5"
    _exit_at(
        _DATA
        + """
w = ncinspect.DumpWriter(path, "w")
root = w.snapshot("/", epoch=0)
root.append(features=h(0)[:6], labels=y[:6])
hidden = w.snapshot("/layer_1", layer="layer_1")
hidden.append(features=h(0)[:6, :4])
root.append(features=h(0)[6:9], labels=y[6:9])  # 9 of 12 rows
w.flush()
os._exit(9)
""",
        path,
    )
    with h5py.File(path, "r") as f:
        assert IN_PROGRESS in f.attrs and IN_PROGRESS in f["layer_1"].attrs
    with pytest.raises(ncinspect.errors.DumpError, match="incomplete"):
        ncinspect.analyze_file(str(path))


def test_kill_below_a_root_written_with_its_layers_keeps_them(tmp_path):
    path = tmp_path / "run.h5"
    _exit_at(
        _DATA
        + """
w = ncinspect.DumpWriter(path, "w")
root = w.snapshot("/", epoch=0)
hidden = w.snapshot("/layer_1", layer="layer_1")
root.append(features=h(0), labels=y)
hidden.append(features=h(0)[:, :4])
root.write(weights=m)
s = w.snapshot("epoch_1", epoch=1)  # the next epoch: the root and its layer are done
s.append(features=h(1)[:4])
w.flush()
os._exit(9)
""",
        path,
    )
    names, notes = _names(path)
    assert names == ["/", "/layer_1"]
    assert any("/epoch_1" in n and "incomplete" in n for n in notes), notes


def test_meter_measurements_below_a_callers_root_snapshot(tmp_path):
    """A caller's root snapshot, then a Meter writing each measurement below it into the same
    DumpWriter: the root was hidden by a kill during any later measurement."""
    path = tmp_path / "run.h5"
    _exit_at(
        _DATA
        + """
w = ncinspect.DumpWriter(path, "w")
root = w.snapshot("/")
root.append(features=h(0), labels=y)
root.write(weights=m)
meter = ncinspect.Meter(m, dump=w, snapshot="epoch_1")
meter.update(h(1), y)
meter.next_pass()
meter.update(h(1), y)
meter.compute()
meter.reset(snapshot="epoch_2")
meter.update(h(2)[:6], y[:6])
w.flush()
os._exit(9)
""",
        path,
    )
    names, notes = _names(path)
    assert names == ["/", "/epoch_1"]
    assert any("/epoch_2" in n and "incomplete" in n for n in notes), notes


# a writer loop in the flat layout: a root snapshot, then epochs below it, written in the
# loop style (no finish()); "done <e>" is printed once snapshot e is complete (the next one
# was opened, which finishes it), "<e> <b>" after each flushed batch
_LOOP = r"""
import sys
import numpy as np
from ncinspect.io.writer import DumpWriter
rng = np.random.default_rng(0)
y = np.repeat(np.arange(4), 60)
with DumpWriter(sys.argv[1], "w") as w:
    w.write("labels", y)
    for e in range(10_000):
        snap = w.snapshot("/" if e == 0 else f"epoch_{e:05d}", epoch=e)
        if e:
            print("done", e - 1, flush=True)
        for b, a in enumerate(range(0, 240, 60)):
            snap.append(features=rng.standard_normal((60, 6)) + y[a : a + 60, None])
            print(e, b, flush=True)
        snap.write(weights=rng.standard_normal((4, 6)))
"""


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_kills_of_a_flat_root_writer_lose_no_finished_snapshot(tmp_path, capsys, seed):
    lines = random.Random(seed).randint(6, 40)
    path = tmp_path / "run.h5"
    finished = _kill_after(_LOOP, path, lines)
    assert finished >= 1  # at least 6 lines: the root was done
    rc = main(["report", str(path), "--json", "-", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    snaps = json.loads(out)["snapshots"]
    # every snapshot finished before the kill is there, with all its rows
    assert len(snaps) >= finished, (finished, [s["snapshot"] for s in snaps])
    assert all(s["n_samples"] == 240 for s in snaps)
    with h5py.File(path, "r") as f:
        marked = [k for k in ["/", *f] if IN_PROGRESS in f[k].attrs]
    assert len(marked) <= 1  # at most the one being written
    assert len(snaps) in (finished, finished + 1)


# --- round five, an error instead of a kill: the program goes on, or closes normally -------


def test_a_snapshot_block_that_raised_stays_marked_when_the_loop_goes_on(tmp_path):
    """``with w.snapshot(...)`` left by an exception the caller catches (a CUDA OOM in one
    epoch, skipped): the next snapshot, or the writer's normal close, marked the half-written
    snapshot complete, and its rows were analysed as the whole epoch."""
    import numpy as np

    from ..helpers import make_data

    h, y, m = make_data(C=3, d=4, n=10)
    path = tmp_path / "run.h5"
    with ncinspect.DumpWriter(path, "w") as w:
        for ep in (1, 2, 3):
            try:
                with w.snapshot(f"epoch_{ep}", epoch=ep) as s:
                    s.append(features=h[::2] * ep, labels=y[::2])  # half the rows, all classes
                    if ep in (2, 3):
                        raise RuntimeError("CUDA out of memory")
                    s.append(features=h[1::2] * ep, labels=y[1::2])
                    s.write(weights=m)
            except RuntimeError:
                continue
        with w.snapshot("epoch_4", epoch=4) as s:
            s.append(features=h * 4, labels=y)
            s.write(weights=m)
    names, notes = _names(path)
    assert names == ["/epoch_1", "/epoch_4"]
    assert all(r.n_samples == 30 for r in ncinspect.analyze_file(str(path)).snapshots)
    assert any("/epoch_2" in n and "incomplete" in n for n in notes)
    assert any("/epoch_3" in n and "incomplete" in n for n in notes)
    assert np.isfinite(ncinspect.analyze_file(str(path)).snapshots[0].metrics["nc1"])


@pytest.mark.parametrize("owner", ["path", "caller"])
def test_capture_stopped_part_way_leaves_its_snapshot_marked(tmp_path, owner):
    """``capture`` whose loader raised (or Ctrl-C) closed its writer normally, which marked
    the half-written snapshot complete; with the caller's DumpWriter, the caller's close did."""
    import torch

    from ncinspect.integrations.torch import capture

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 3))
    batches = [(torch.randn(6, 4), torch.arange(6) % 3) for _ in range(5)]

    def stops(exc):
        for i, batch in enumerate(batches):
            if i == 3:
                raise exc
            yield batch

    path = tmp_path / "cap.h5"
    writer = ncinspect.DumpWriter(path, "w") if owner == "caller" else None
    dump = writer if writer is not None else path
    capture(model, model[2], batches, dump, snapshot="epoch_1", mode="w")
    with pytest.raises(KeyboardInterrupt):
        capture(model, model[2], stops(KeyboardInterrupt()), dump, snapshot="epoch_2")
    with pytest.raises(OSError):
        hooked = [model[1]]
        capture(model, model[2], stops(OSError("disk")), dump, snapshot="epoch_3", layers=hooked)
    if writer is not None:
        writer.close()
    names, notes = _names(path)
    assert names == ["/epoch_1"]
    for snap in ("/epoch_2", "/epoch_3", "/epoch_3/layer_1"):
        assert any(f"{snap} skipped" in n and "incomplete" in n for n in notes), (snap, notes)


def test_trainer_stopped_by_an_error_leaves_its_snapshot_marked(tmp_path, monkeypatch):
    """``ncinspect train`` (``fit``) closed its writer normally on any error, marking the
    snapshot it was writing complete: here its rows without its classifier."""
    from ncinspect.io.writer import SnapshotWriter
    from ncinspect.train.config import TrainConfig
    from ncinspect.train.loop import fit

    real = SnapshotWriter.write

    def fails_at_epoch_2(self, **arrays):
        if "epoch_0002" in self.name and "weights" in arrays:
            raise MemoryError("no memory for the weights")
        return real(self, **arrays)

    monkeypatch.setattr(SnapshotWriter, "write", fails_at_epoch_2)
    config = TrainConfig(
        n_classes=3,
        n_per_class=5,
        n_test_per_class=2,
        input_dim=4,
        depth=2,
        width=8,
        epochs=3,
        save_every=1,
        batch_size=0,
    )
    path = tmp_path / "run.h5"
    with pytest.raises(MemoryError):
        fit(config, dump=path)
    monkeypatch.undo()
    names, notes = _names(path)
    assert "/epoch_0002" not in names and "/epoch_0001" in names
    assert any("/epoch_0002 skipped" in n and "incomplete" in n for n in notes), notes


@pytest.mark.parametrize("how", ["error_caught", "dropped"])
def test_a_meters_pass_1_left_half_way_stays_marked_in_a_callers_writer(tmp_path, how):
    """A Meter writing into the caller's DumpWriter whose pass 1 never ended, without a
    reset: an error the caller caught, or the meter simply dropped. The next snapshot the
    caller opened (or its normal close) marked the partial rows complete."""
    from ..helpers import make_data

    h, y, m = make_data(C=3, d=4, n=10)
    path = tmp_path / "run.h5"
    with ncinspect.DumpWriter(path, "w") as w:
        for ep in (1, 2):
            meter = ncinspect.Meter(m, dump=w, snapshot=f"epoch_{ep}")
            try:
                meter.update(h[::3], y[::3])  # a third of the rows, every class
                if ep == 1:
                    if how == "error_caught":
                        raise RuntimeError("the loader failed")
                    del meter
                    continue
                meter.update(h[1::3], y[1::3])
                meter.update(h[2::3], y[2::3])
                meter.next_pass()
            except RuntimeError:
                continue
        with w.snapshot("epoch_3") as s:  # the caller's own snapshot after them
            s.append(features=h, labels=y)
            s.write(weights=m)
    names, notes = _names(path)
    assert names == ["/epoch_2", "/epoch_3"]
    assert any("/epoch_1 skipped" in n and "incomplete" in n for n in notes), notes


def test_killed_while_set_meta_sets_several_values(tmp_path):
    """``set_meta`` on a finished snapshot (or the root, inherited by all) sets its values one
    attribute at a time; a kill between two left a new class order beside an old epoch and
    split (or the reverse), read as complete."""
    path = tmp_path / "run.h5"
    _exit_at(
        _DATA
        + """
import h5py
with ncinspect.DumpWriter(path, "w") as w:
    w.write("labels", y)
    for e in (1, 2):
        with w.snapshot(f"epoch_{e}", epoch=e, split="train") as s:
            s.append(features=h(e)); s.write(weights=m)
real = h5py.AttributeManager.__setitem__
def first_then_die(self, name, value):
    real(self, name, value)
    if name != "ncinspect_in_progress":
        w.flush()  # what the writer wrote so far committed
        os._exit(9)  # kill -9 after the first of the values
h5py.AttributeManager.__setitem__ = first_then_die
w = ncinspect.DumpWriter(path, "a")
w.set_meta("epoch_2", class_names=["c", "b", "a"], split="test", epoch=7)
""",
        path,
    )
    names, notes = _names(path)
    assert names == ["/epoch_1"]
    assert any("/epoch_2" in n and "incomplete" in n for n in notes), notes


# capture with hooked layers in a loop (what the Lightning callback does each epoch); prints
# "<e> <b>" as each batch goes by and "done <e>" once capture(...) for epoch e returned
_CAPTURE = r"""
import sys
import torch
from ncinspect.integrations.torch import capture
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
y = torch.arange(120) % 4
X = torch.randn(120, 6) + y[:, None].float()
def loader(e):
    for b in range(6):
        print(e, b, flush=True)
        yield X[b * 20 : (b + 1) * 20], y[b * 20 : (b + 1) * 20]
for e in range(10_000):
    capture(model, model[2], loader(e), sys.argv[1], snapshot=f"epoch_{e:05d}", epoch=e,
            mode="w" if e == 0 else "a", layers=[model[1]])
    print("done", e, flush=True)
"""


@pytest.mark.parametrize("seed", [0, 1])
def test_random_kills_of_capture_with_layers_never_give_a_partial_snapshot(tmp_path, capsys, seed):
    lines = random.Random(100 + seed).randint(9, 40)
    path = tmp_path / "cap.h5"
    finished = _kill_after(_CAPTURE, path, lines)
    assert finished >= 1
    rc = main(["report", str(path), "--json", "-", "-q"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    snaps = json.loads(out)["snapshots"]
    top = [s for s in snaps if s["layer"] is None]
    hidden = [s for s in snaps if s["layer"] == "layer_1"]
    assert len(top) >= finished and len(hidden) >= finished
    assert all(s["n_samples"] == 120 for s in snaps), [s["n_samples"] for s in snaps]
    assert all(s["metrics"]["nc3_self_duality"] is not None for s in top)  # weights there
