"""Many small snapshots on forked worker processes (ncinspect.engines.processes): the serial
loop's results, order, first error and progress, and no worker left behind."""

from __future__ import annotations

import multiprocessing
import os
import sys

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.analysis.file import FORK_MIN_SNAPSHOTS, FileRun
from ncinspect.dump import open_dump
from ncinspect.engines import processes
from ncinspect.engines import threads as threads_mod
from ncinspect.engines.local import LocalEngine
from ncinspect.engines.processes import fork_workers, forked_map
from ncinspect.errors import NCInspectError, ShapeMismatchError

_REAL_THREADS_ALIVE = processes._threads_alive  # before the autouse fixture replaces it

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="worker processes are forked on Linux only"
)


def _no_children():
    return multiprocessing.active_children() == []


def _pid(i, progress):
    progress(3)
    return i, os.getpid()


def test_results_come_back_in_order_from_other_processes():
    seen = []
    out = list(forked_map(_pid, 101, 3, progress=seen.append))
    assert [i for i, _ in out] == list(range(101))
    pids = {pid for _, pid in out}
    assert len(pids) == 3 and os.getpid() not in pids
    assert sum(seen) == 3 * 101  # every row reported, here
    assert _no_children()


def _fails_at(bad):
    def work(i, progress):
        if i in bad:
            raise ValueError(f"bad item {i}")
        return i

    return work


@pytest.mark.parametrize("parts", [False, True], ids=["at-the-end", "in-parts"])
@pytest.mark.parametrize(
    "bad, first", [({3, 70}, 3), ({70}, 70), ({49, 50}, 49), ({99}, 99), ({0}, 0)]
)
def test_the_first_error_in_order_is_raised_after_the_results_before_it(
    bad, first, parts, monkeypatch
):
    if parts:  # every result a part of its own (see _parts)
        monkeypatch.setattr(processes, "_SEND_EVERY", 0.0)
    got = []
    with pytest.raises(ValueError) as info:
        for i in forked_map(_fails_at(bad), 100, 2):
            got.append(i)
    assert str(info.value) == f"bad item {first}"
    assert got == list(range(first))  # as the serial loop: everything before, nothing after
    assert any("in a worker process" in n for n in info.value.__notes__)
    assert _no_children()


class _Local(Exception):
    def __init__(self, a, b):  # pickles, but cannot be rebuilt from its args
        super().__init__(f"{a}/{b}")


def test_an_error_that_cannot_travel_arrives_as_its_text():
    def work(i, progress):
        raise _Local(1, 2)

    with pytest.raises(RuntimeError, match=r"_Local: 1/2"):
        list(forked_map(work, 10, 2))
    assert _no_children()


def test_a_worker_that_dies_is_an_error_naming_its_items():
    def work(i, progress):
        if i == 60:
            os._exit(7)
        return i

    with pytest.raises(NCInspectError, match=r"^items 50-99: .* died \(exit code 7\)"):
        list(forked_map(work, 100, 2))
    assert _no_children()

    def killed(i, progress):
        if i == 10:
            os.kill(os.getpid(), 9)
        return i

    with pytest.raises(NCInspectError, match=r"^items 0-49: .* died \(signal 9\)"):
        list(forked_map(killed, 100, 2))
    assert _no_children()


@pytest.fixture
def _parts(monkeypatch):
    """Workers send every result as a part of its own (by default a part is what a worker
    made in a quarter of a second: the small tests here would send one)."""
    monkeypatch.setattr(processes, "_SEND_EVERY", 0.0)


def _finished(results):
    results[:] = [("finished", r) for r in results]


@pytest.mark.usefixtures("_parts")
def test_results_sent_in_parts_come_back_in_order_each_finished_once():
    seen = []
    out = list(forked_map(_pid, 101, 3, progress=seen.append, finish=_finished))
    assert [r[0] for r in out] == ["finished"] * 101  # finish ran on every part, once
    assert [i for _, (i, _) in out] == list(range(101))
    assert len({pid for _, (_, pid) in out}) == 3
    assert sum(seen) == 3 * 101
    assert _no_children()


@pytest.mark.usefixtures("_parts")
def test_a_worker_sends_its_results_as_it_makes_them():
    """The messages of one worker: a part per result made (each finished), the last one
    with the end (a whole range sent at its end left it to be received serially)."""
    ctx = multiprocessing.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    args = (send, lambda i, progress: i * i, 0, 5, None, _finished, os.getpid())
    proc = ctx.Process(target=processes._worker, args=args, daemon=True)
    proc.start()
    send.close()
    messages = []
    while not messages or messages[-1][0] != "done":
        messages.append(recv.recv())
    proc.join()
    recv.close()
    assert [m[0] for m in messages] == ["part"] * 4 + ["done"]
    assert [m[1] for m in messages] == [[("finished", i * i)] for i in range(5)]
    assert messages[-1][2] is None


@pytest.mark.usefixtures("_parts")
def test_a_worker_that_dies_after_sending_parts_is_an_error_naming_its_items():
    def work(i, progress):
        if i == 60:
            os._exit(7)
        return i

    got = []
    with pytest.raises(NCInspectError, match=r"^items 50-99: .* died \(exit code 7\)"):
        for i in forked_map(work, 100, 2):
            got.append(i)
    assert got == list(range(len(got))) and 50 <= len(got) <= 60  # what it sent, in order
    assert _no_children()


@pytest.fixture(autouse=True)
def _single_threaded(monkeypatch):
    """Threads other tests left idle (a Dask pool) would keep every file in this process."""
    monkeypatch.setattr(processes, "_threads_alive", lambda: False)


def test_fork_workers_needs_two_cores_and_enough_items(monkeypatch):
    monkeypatch.setattr(threads_mod, "available_cores", lambda: 4)
    assert fork_workers(None, 1000, 32) == 4
    assert fork_workers(2, 1000, 32) == 2
    assert fork_workers(1, 1000, 32) == 0  # --threads 1: this process
    assert fork_workers(None, 63, 32) == 0  # one worker's worth: not worth a fork
    assert fork_workers(None, 64, 32) == 2
    monkeypatch.setattr(threads_mod, "available_cores", lambda: 1)
    assert fork_workers(8, 1000, 32) == 0


def test_no_fork_while_another_thread_runs(monkeypatch):
    import threading

    monkeypatch.undo()  # the real check
    monkeypatch.setattr(threads_mod, "available_cores", lambda: 4)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert fork_workers(None, 1000, 32) == 0
    finally:
        stop.set()
        other.join()
    if threading.active_count() == 1:
        assert fork_workers(None, 1000, 32) == 4
    box = []
    worker = threading.Thread(target=lambda: box.append(fork_workers(None, 1000, 32)))
    worker.start()
    worker.join()
    assert box == [0]  # nor from a thread of its own


def _dump(path, snapshots, bad=None):
    rng = np.random.default_rng(1)
    n, d, C = 30, 5, 3
    with h5py.File(path, "w") as f:
        f["labels"] = np.arange(n) % C
        for e in range(snapshots):
            g = f.create_group(f"epoch_{e:03d}")
            g["features"] = rng.standard_normal((n, d))
            g["weights"] = rng.standard_normal((C, d + (e == bad)))
            g.attrs["epoch"] = e
    return str(path)


def _many_cores(monkeypatch):
    monkeypatch.setattr(threads_mod, "available_cores", lambda: 2)


def test_a_file_of_many_snapshots_gives_the_same_report_on_workers(tmp_path, monkeypatch):
    _many_cores(monkeypatch)
    path = _dump(tmp_path / "many.h5", 2 * FORK_MIN_SNAPSHOTS + 5)
    options = dict(
        center="classes",
        chunk_rows=None,
        memory_limit=None,
        progress=None,
        engine=LocalEngine(),
        min_class_count=1,
        class_names=None,
        bootstrap=(None, None),
        nci_alpha=0.0,
    )
    with open_dump(path) as dump:
        assert FileRun(dump, None, "train", dict(options)).fork_workers() == 2
    rows = []
    forked = ncinspect.analyze_file(path, arrays="last", progress=rows.append)
    serial = ncinspect.analyze_file(path, arrays="last", engine=LocalEngine(threads=1))
    assert forked.to_json() == serial.to_json()
    assert sum(rows) == 2 * 30 * len(serial)  # two passes over every snapshot's rows
    held = [r.name for r in forked if r.arrays.means is not None]
    assert held == [r.name for r in serial if r.arrays.means is not None] == [serial[-1].name]
    assert _no_children()


def test_a_bad_snapshot_among_many_raises_what_the_serial_loop_raises(tmp_path, monkeypatch):
    _many_cores(monkeypatch)
    path = _dump(tmp_path / "bad.h5", 2 * FORK_MIN_SNAPSHOTS + 5, bad=50)
    with pytest.raises(ShapeMismatchError) as serial:
        ncinspect.analyze_file(path, engine=LocalEngine(threads=1))
    with pytest.raises(ShapeMismatchError) as forked:
        ncinspect.analyze_file(path)
    assert str(forked.value) == str(serial.value)
    assert _no_children()


@pytest.mark.parametrize(
    "why",
    ["threads", "memory_limit", "bootstrap", "few", "large"],
)
def test_what_keeps_the_snapshots_in_this_process(tmp_path, monkeypatch, why):
    _many_cores(monkeypatch)
    n = FORK_MIN_SNAPSHOTS if why == "few" else 2 * FORK_MIN_SNAPSHOTS
    path = _dump(tmp_path / "f.h5", n)
    options = dict(
        center="classes",
        chunk_rows=None,
        memory_limit=(1 << 30) if why == "memory_limit" else None,
        progress=None,
        engine=LocalEngine(threads=1 if why == "threads" else None),
        min_class_count=1,
        class_names=None,
        bootstrap=(100, 0) if why == "bootstrap" else (None, None),
        nci_alpha=0.0,
    )
    if why == "large":
        monkeypatch.setattr("ncinspect.analysis.file.FORK_MAX_SNAPSHOT_BYTES", 30 * 5 * 8 - 1)
    with open_dump(path) as dump:
        assert FileRun(dump, None, "train", options).fork_workers() == 0


def test_workers_die_with_the_process_that_forked_them(tmp_path):
    """SIGKILL of the command: its workers do not go on computing for nobody."""
    import signal
    import subprocess
    import textwrap
    import time

    pids = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, time
        from ncinspect.engines.processes import forked_map

        def work(i, progress):
            with open({str(pids)!r}, "a") as f:
                f.write(f"{{os.getpid()}}\\n")
            time.sleep(60)

        list(forked_map(work, 4, 2))
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if pids.exists() and len(set(pids.read_text().split())) == 2:
                break
            time.sleep(0.05)
        workers = {int(p) for p in pids.read_text().split()}
        assert len(workers) == 2
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = {p for p in alive if _alive(p)}
        time.sleep(0.05)
    assert not alive


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_command_prints_and_writes_the_same_with_workers(tmp_path):
    """``report`` of many snapshots, in a fresh process (workers on a machine of two cores or
    more) and with ``--threads 1``: the same table, JSON and CSV, byte for byte; a bad
    snapshot among them: the same one line and exit 3."""
    from tests.io.test_hostile import cli

    path = _dump(tmp_path / "many.h5", 2 * FORK_MIN_SNAPSHOTS + 3)
    runs = []
    for threads in ([], ["--threads", "1"]):
        out = tmp_path / f"r{len(runs)}"
        code, stdout, stderr = cli(
            "report", path, "--json", f"{out}.json", "--csv", f"{out}.csv", *threads
        )
        assert code == 0, stderr
        runs.append(
            (stdout, (out.with_suffix(".json")).read_bytes(), out.with_suffix(".csv").read_bytes())
        )
    assert runs[0] == runs[1]
    bad = _dump(tmp_path / "bad.h5", 2 * FORK_MIN_SNAPSHOTS + 3, bad=40)
    errors = [cli("report", bad, *threads) for threads in ([], ["--threads", "1"])]
    assert errors[0] == errors[1]
    code, stdout, stderr = errors[0]
    assert code == 3 and "epoch_040" in stderr and len(stderr.strip().splitlines()) == 1


def test_a_result_that_cannot_travel_is_an_error_not_a_dead_worker():
    def work(i, progress):
        return (lambda: i) if i == 7 else i  # a local function does not pickle

    with pytest.raises(Exception, match="pickle") as info:
        list(forked_map(work, 10, 2))
    assert "died" not in str(info.value)
    assert _no_children()


def test_what_the_program_printed_before_is_not_printed_again_by_workers():
    """A line still in stdout's buffer (a pipe is block-buffered) at the fork would be
    flushed again by every worker when it exits (multiprocessing flushes before it forks)."""
    import subprocess
    import textwrap

    script = textwrap.dedent(
        """
        import sys
        from ncinspect.engines.processes import forked_map
        print("before", end="")
        sys.stderr.write("err-before")
        out = list(forked_map(lambda i, progress: i, 8, 2))
        print("|after", len(out))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "before|after 8\n"
    assert proc.stderr == "err-before"


def test_a_worker_runs_its_items_itself(monkeypatch):
    """Work that would fork again (a file analysed inside a worker) keeps the serial loop
    there: a daemonic process may not have children."""
    monkeypatch.setattr(processes, "_threads_alive", _REAL_THREADS_ALIVE)

    def work(i, progress):
        return _REAL_THREADS_ALIVE(), fork_workers(None, 1000, 1)

    assert set(forked_map(work, 4, 2)) == {(True, 0)}


def test_no_fork_to_be_had_runs_every_item_here(monkeypatch):
    """A fork refused (a process limit, no memory): the items run in this process, in order,
    and no worker started before the refusal is left behind."""
    from multiprocessing.context import ForkProcess

    real_start, started = ForkProcess.start, []

    def start(self):
        if started:
            raise OSError(11, "Resource temporarily unavailable")
        started.append(self)
        real_start(self)

    monkeypatch.setattr(ForkProcess, "start", start)
    seen = []
    out = list(forked_map(_pid, 10, 2, progress=seen.append))
    assert [i for i, _ in out] == list(range(10))
    assert {pid for _, pid in out} == {os.getpid()}
    assert sum(seen) == 30 and len(started) == 1
    assert _no_children()


def test_theory_of_many_snapshots_is_the_same_on_workers(tmp_path, monkeypatch):
    from ncinspect.analysis.file import snapshot_workers
    from ncinspect.theory.run import theory_file

    _many_cores(monkeypatch)
    path = _dump(tmp_path / "many.h5", 2 * FORK_MIN_SNAPSHOTS + 1)
    with open_dump(path) as dump:
        assert snapshot_workers(dump.snapshots, None, None) == 2
        assert snapshot_workers(dump.snapshots, None, 1 << 30) == 0
    forked, skipped = theory_file(path)
    serial, skipped_serial = theory_file(path, engine=LocalEngine(threads=1))
    assert forked.to_json() == serial.to_json() and skipped == skipped_serial
    assert all(r.theory is not None for r in forked)
    assert _no_children()


def test_report_aggregate_sends_every_file_to_the_workers_under_a_progress_bar(
    tmp_path, monkeypatch
):
    """A progress bar draws from a thread of its own, and no worker is forked while another
    thread runs: ``report --aggregate`` of several files stops the bar after each one, so the
    next file's snapshots go to the workers too (before: the first file only)."""
    import io
    import threading

    from click.testing import CliRunner
    from rich.console import Console

    from ncinspect.cli import cli as group
    from ncinspect.cli import progress as progress_mod

    _many_cores(monkeypatch)
    before = set(threading.enumerate())
    monkeypatch.setattr(
        processes, "_threads_alive", lambda: bool(set(threading.enumerate()) - before)
    )
    drawn = []
    real_init = progress_mod.RowProgress.__init__

    def on_a_terminal(self, *, enabled=True, console=None, delay=0.5):
        console = Console(file=io.StringIO(), force_terminal=True)
        real_init(self, enabled=True, console=console, delay=0.0)
        drawn.append(console)

    monkeypatch.setattr(progress_mod.RowProgress, "__init__", on_a_terminal)
    forks = []
    real_map = processes.forked_map

    def counted(work, items, workers, **kwargs):
        forks.append((items, workers))
        return real_map(work, items, workers, **kwargs)

    monkeypatch.setattr(processes, "forked_map", counted)
    n = 2 * FORK_MIN_SNAPSHOTS + 1
    paths = [_dump(tmp_path / f"seed{k}.h5", n) for k in range(3)]
    out = tmp_path / "runs.json"
    result = CliRunner().invoke(group, ["report", "--aggregate", *paths, "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert forks == [(n, 2)] * 3
    assert drawn and drawn[0].file.getvalue()  # the bar was drawn (its thread ran)
    assert set(threading.enumerate()) <= before  # and it is gone
    assert _no_children()
