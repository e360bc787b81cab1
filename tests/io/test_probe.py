"""Corrupt HDF5 metadata that makes libhdf5 loop or crash: walked in a child process first,
refused with one line and exit 3 (io/probe.py)."""

from __future__ import annotations

import base64
import os
import signal
import time
import zlib

import pytest

from ncinspect.errors import UnreadableFileError
from ncinspect.io.probe import probe_hdf5
from tests.plots.test_plots_data import write_run

from ..helpers import run_cli

#: An 11 kB dump from the fuzz test (tests/test_fuzz.py) whose damaged heap makes libhdf5
#: spin forever in an attribute read while holding the interpreter lock (zlib + base64).
SPIN_H5 = (
    "eNrtmntMFFcUh2eG2YewwC4uy8OK+KAiLtEKKpXGuT4Qo0Yp2laiCQKu9QFIWWopmKg1sYpaIbRFrSLESqTGJ2pLarxXBcXU"
    "P0REbY2LoKFlIUUoCrboluWeQXcrVRqNpMwv2T17z9x5nfnOndxzd9P0qdOcHb0dGauUSoZn1MzTsoDm623b4vZFYFmwG8Hu"
    "50S/Q+c2T/Cr4fipMtreDv55kWFh1t4WO4nnGc1Tq2Qk9UVND5sUYbXzoe0Ltoyz7RcfE2uINzKMIWll3NLot8CO6eIzpIfn"
    "ZRkZ3ZcV25RklqUON+gnWocOvq1b1EqRVdT5LetoWf0cx7GUY3ocB1ZEOtPuzJm98jnMnT1nKtt5l5DPctv8z4REDwG/mPdE"
    "YdsvbyD4B9nmta9D3+BZAxG0Hy9VTCrEScVoO6IXFx9jNEYnxiQYjJ1+rw7u1J3jqBhLpQ2PDl0cPol3pvKJ7+k2Z9dmOz/8"
    "M8dr5UDb8bq7fJwvt73PJYaYlI+T4eI79Ilh2YdLU4wvMR/9qeVs85G3y0u+Ky6enbtqfIWu/Ax2YoItELDu8zQTbhHZjTip"
    "r5UjMR72zysErjbipZ+vZ5broQ2fMmcWywDgzzhenPQqlCRJkiRJkiRJkiRJkiRJkiR1p+ctMBzxptZTClWfFC1sc12F6CPy"
    "f+8vctI2QIrd03pegVYsTD8pyNq3/2uB9vIQ2mOR3RW93gKtWOi3XxhRMaMhPvKO30q6UMX8c+HIvgCq6vLLGG1HzwRDSoy1"
    "3e3CAOxn9YuFfv4FxsO8EdJ42JfV3QLP7UG2/V72Ao+4gNE20jabe5ovdqs0zA1nbVPcFyw533jM6SJ5JGQk60Y2D1eQqKjI"
    "godrGBQbE7jz7K0W7OUfu173sF24dFC3e88GhtxalVUStUOBXJrT5y3IaMIjh/bfd3S8DB32KaieUckT3OC75Fwlj5YLZr89"
    "WTXYb0d08HFfBlXLy1o+9ZORk1FJP95LtwgugfGzM/QtOG/LqmnmfAbtPjEs6a+xcvKZ+0rZnhwOmcN868ZebMJp8v2myWYW"
    "TTbXrY6MYMmVU0mt3//Mo01++gqfiTz5KHCmV20GS8aVmR4UHVOg5sUF5/sX3hVcxq9zrimUk6u7T0+qbLyPheDk73TN/dDa"
    "gG+CUzdeEfK2Ogy6lMWQeelO+/LDOeJiSKxqWOyItiwL3Rw0uEFYXtu6y3i9BScWlQTxn7fiJSec8k2PZEg/rmrMjKxazJjP"
    "BI3Yx5LV0dWL7/zUjr9Oq8yYXP5YCPTIv/p20Q+CTr/iwrXLFpySODztl7R2fLTI358UWIT43NbEom9v4ikL55YKQ5WosXbZ"
    "Ae9JN3Gi4/7S98JqhOnXIzzzdvKkMchTIw9yQiFnrt1vT8sV0MLYfl9urRImaDcXbzj4J2admIknl6sQOnD+eG7A73i1JXIX"
    "l1KOZfmBh1aWWnDyrIrh42udUUr4r+sejDqHvUO24es5dwRTjtvgxloFWRjaoDrzjgJF6y/cqFfdFUzRDTMXbSnHscYJp4tD"
    "7uO6nVcqgvY6oqVGVp4QUILjzNnvhwZVYS7HM92vXU4C25zf9Fl/D/ucPXXHtNYi1BeX6oboORJi2jusPMEBTfiqKXtHHkuS"
    "q7IL9XKW3Co8sKZuG49WRGdPHHK7GL+b1VbgX9MPedd+kF6xoETYvmZUeKhPBQ6dctjtci5HKJ8a4NMZUT49gE818MkTyqcK"
    "UT7VwKcH8MkSyqc78KkFPrXAZzPwqQY+3YFPV0T55AnlUw186oBPN+CTJZRPDfCpAT61wKcW+NQAnx7AZwvwqQM+ZYTy6QV8"
    "1gCfauDTDfj0Bj7bgU+eUD4VhPLpDnw+AD41wKeKUD5dEOWzDPh0JZRPFaF8uiLKZz3w6Ql81gOfzcCnFvgcAHweAj4bgU9H"
    "Qvl8A/h8DHxWA5+uhPI5EPisAD7/AD49gE8P4LMF+KwGPmWE8ukNfF4FPhuBT90r51N6I0r6P89LXt0fR0YPpT161x9H7Oe7"
    "mf4vNt/9LUBiqXfMd5P8evF892/+dCKR"
)


def _cli(path, *args, env_seconds="3", timeout=60):
    return run_cli(path, *args, probe_seconds=env_seconds, timeout=timeout)


@pytest.mark.parametrize("command", ["info", "report"])
def test_a_file_that_spins_libhdf5_is_refused_not_hung(tmp_path, command):
    path = tmp_path / "spin.h5"
    path.write_bytes(zlib.decompress(base64.b64decode("".join(SPIN_H5))))
    before = path.read_bytes()
    t0 = time.monotonic()
    run = _cli(path, command)
    assert time.monotonic() - t0 < 45  # the probe's 3 s, plus start-up on a busy machine
    assert run.returncode == 3, run.stderr
    err = run.stderr.strip()
    assert len(err.splitlines()) == 1 and "spin.h5" in err and "did not finish" in err
    assert path.read_bytes() == before


def test_probe_kills_a_walk_that_never_returns(tmp_path):
    path = write_run(tmp_path / "ok.h5", layers=0, epochs=(0,))

    def spin(*_):
        while True:
            pass

    t0 = time.monotonic()
    with pytest.raises(UnreadableFileError, match="did not finish in 0.5 s"):
        probe_hdf5(path, seconds=0.5, walk=spin)
    assert time.monotonic() - t0 < 10


def test_probe_reports_a_crash_of_the_library(tmp_path):
    path = write_run(tmp_path / "ok.h5", layers=0, epochs=(0,))

    def crash(*_):
        os.kill(os.getpid(), signal.SIGSEGV)

    with pytest.raises(UnreadableFileError, match="crashed \\(SIGSEGV\\)"):
        probe_hdf5(path, seconds=5, walk=crash)


def test_probe_passes_good_files_and_leaves_errors_to_the_real_walk(tmp_path):
    path = write_run(tmp_path / "ok.h5", layers=0, epochs=(0,))
    probe_hdf5(path, seconds=10)  # a good file: no error
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    probe_hdf5(bad, seconds=10)  # the child's error is not reported from the probe
    run = _cli(bad, "info")
    assert run.returncode == 3 and "bad.h5" in run.stderr
    assert _cli(path, "info", env_seconds="0").returncode == 0


def test_zero_seconds_switches_the_probe_off(tmp_path):
    path = write_run(tmp_path / "ok.h5", layers=0, epochs=(0,))

    def spin(*_):
        while True:
            pass

    t0 = time.monotonic()
    probe_hdf5(path, seconds=0, walk=spin)  # returns at once: no child is forked
    assert time.monotonic() - t0 < 1.0


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_the_probe_leaves_no_descriptor_open_however_the_child_ends(tmp_path):
    """The parent waits on a pipe the child's exit closes: both ends are closed after a
    good walk, a crash and a time-out alike (no descriptor per opened file piles up)."""
    path = write_run(tmp_path / "ok.h5", layers=0, epochs=(0,))

    def crash(*_):
        os.kill(os.getpid(), signal.SIGSEGV)

    def spin(*_):
        while True:
            pass

    before = sorted(os.listdir("/proc/self/fd"))
    for _ in range(3):
        probe_hdf5(path, seconds=10)
    with pytest.raises(UnreadableFileError, match="crashed"):
        probe_hdf5(path, seconds=5, walk=crash)
    with pytest.raises(UnreadableFileError, match="did not finish"):
        probe_hdf5(path, seconds=0.3, walk=spin)
    assert sorted(os.listdir("/proc/self/fd")) == before


# the command's walk paced behind the child's (io/probe.py, Probe) -------------------------


def _groups_file(tmp_path, groups=6):
    import h5py
    import numpy as np

    path = tmp_path / "paced.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = np.arange(8) % 2
        for g in range(groups):
            f[f"epoch_{g}/features"] = np.ones((8, 3))
            f[f"epoch_{g}"].attrs["epoch"] = g
    return str(path)


def _paced_walk(probe, path, taken):
    """The command's walk (the open, then the tree) with each step granted by ``probe``;
    ``taken`` lists the steps the command was allowed to start."""
    import h5py

    from ncinspect.io.hdf5 import read_h5_tree

    def step():
        probe.step()
        taken.append(len(taken) + 1)

    step()  # the open
    with h5py.File(path, "r") as f:
        read_h5_tree(f, path, step=step)
    probe.finish()


def _reports_then(k, then):
    def walk(path, allow_external, memory_limit, report):
        for _ in range(k):
            report(now=True)
        then()

    return walk


def _spin():
    while True:
        pass


def _segv():
    os.kill(os.getpid(), signal.SIGSEGV)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_the_command_never_takes_a_step_the_child_has_not_finished(tmp_path, k):
    """A child that hangs after k steps: the command takes exactly those k steps, then the
    file is refused (it never starts the step where the child hangs)."""
    from ncinspect.io.probe import start_probe

    path = _groups_file(tmp_path)
    probe = start_probe(path, seconds=0.5, walk=_reports_then(k, _spin))
    taken: list[int] = []
    try:
        with pytest.raises(UnreadableFileError, match="did not finish in 0.5 s"):
            _paced_walk(probe, path, taken)
    finally:
        probe.close()
    assert len(taken) == k
    assert probe.pid == 0 and probe.fd == -1  # the child killed and reaped, the pipe closed


@pytest.mark.parametrize("k", [0, 2])
def test_a_crash_of_the_child_mid_walk_stops_the_command_at_that_step(tmp_path, k):
    from ncinspect.io.probe import start_probe

    path = _groups_file(tmp_path)
    probe = start_probe(path, seconds=10, walk=_reports_then(k, _segv))
    taken: list[int] = []
    try:
        with pytest.raises(UnreadableFileError, match="crashed \\(SIGSEGV\\)"):
            _paced_walk(probe, path, taken)
    finally:
        probe.close()
    assert len(taken) == k


def test_the_child_reports_every_step_the_command_takes(tmp_path):
    """The real child walk and the command's walk take the same steps in the same order:
    each step is granted by a report of the child, not by its exit (the walks overlap)."""
    import h5py

    from ncinspect.io.hdf5 import read_h5_tree
    from ncinspect.io.probe import start_probe

    path = _groups_file(tmp_path, groups=40)
    probe = start_probe(path, seconds=30)
    granted_by_report = []

    def step():
        probe.step()
        granted_by_report.append(not probe.ended)

    try:
        step()
        with h5py.File(path, "r") as f:
            tree = read_h5_tree(f, path, step=step)
        probe.finish()
    finally:
        probe.close()
    assert len(granted_by_report) == 1 + 1 + 40  # the open, the root, each epoch group
    assert all(granted_by_report)
    assert sorted(tree.children) == sorted(f"epoch_{g}" for g in range(40))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc (Linux)")
def test_a_refused_file_leaves_no_child_and_no_descriptor(tmp_path, monkeypatch):
    """The command's walk refuses the file (an external link) while the child may still
    run: the child is killed and reaped, the pipe closed. (Its own pid is checked: other
    tests of the same process may have children of their own.)"""
    import h5py
    import numpy as np

    from ncinspect import open_dump
    from ncinspect.errors import ExternalDataError
    from ncinspect.io import probe as probe_mod

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.ones((4, 2))
    path = tmp_path / "ext.h5"
    with h5py.File(path, "w") as f:
        for g in range(30):
            f[f"a{g:02d}/features"] = np.ones((4, 2))
        f["b_ext"] = h5py.ExternalLink(str(other), "/x")
    forked = []
    fork = os.fork

    def recording_fork():
        pid = fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recording_fork)
    before = sorted(os.listdir("/proc/self/fd"))
    old = probe_mod.PROBE_SECONDS
    probe_mod.PROBE_SECONDS = 10
    try:
        with pytest.raises(ExternalDataError, match="external link"):
            open_dump(path)
    finally:
        probe_mod.PROBE_SECONDS = old
    assert sorted(os.listdir("/proc/self/fd")) == before
    assert len(forked) == 1  # the probe's child
    with pytest.raises(ChildProcessError):
        os.waitpid(forked[0], os.WNOHANG)  # reaped: no such child, running or unreaped


def test_a_time_out_on_a_file_being_written_is_not_tried_again(tmp_path, monkeypatch):
    """A file a writer holds open is read again when a read fails (it may be caught between
    two metadata writes), but not after the probe's child ran out of time: the whole
    allowance was waited already."""
    import h5py
    import numpy as np

    from ncinspect import open_dump
    from ncinspect.io import probe as probe_mod

    path = _groups_file(tmp_path, groups=2)
    forks = []
    real_start = probe_mod.start_probe

    def counted(*args, **kwargs):
        forks.append(1)
        return real_start(*args, **kwargs)

    def opened_then_spin(path, allow_external, memory_limit, report):
        report(now=True)  # the open: the command opens the file and sees the writer
        _spin()

    monkeypatch.setattr(probe_mod, "start_probe", counted)
    monkeypatch.setattr(probe_mod, "_walk", opened_then_spin)
    monkeypatch.setattr(probe_mod, "PROBE_SECONDS", 0.4)
    with h5py.File(path, "a") as writer:  # a writer of this process holds the file
        writer["more"] = np.ones(3)
        writer.flush()
        t0 = time.monotonic()
        with pytest.raises(UnreadableFileError, match="did not finish in 0.4 s"):
            open_dump(path)
        assert time.monotonic() - t0 < 5
    assert forks == [1]


def test_the_probe_waits_on_a_descriptor_numbered_past_1024(tmp_path):
    """A process holding many files (a sweep over many dumps) gets pipe descriptors past
    select()'s 1024: the command still waits on its child."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1200
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip(f"the system allows {hard} open files")
    path = write_run(tmp_path / "ok.h5", layers=0, epochs=(0,))
    held = []
    try:
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        while len(held) < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        probe_hdf5(path, seconds=10)  # a good file: no error

        def crash(*_):
            os.kill(os.getpid(), signal.SIGSEGV)

        with pytest.raises(UnreadableFileError, match="crashed"):
            probe_hdf5(path, seconds=5, walk=crash)
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
