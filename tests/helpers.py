"""Data makers and file digests shared by the tests (imported as ``tests.helpers``)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np

import ncinspect

#: the repository root (the checkout the tests import ncinspect from)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ncinspect.__file__)))

#: the ncinspect command line as a process of its own (this checkout's code)
CLI = [sys.executable, "-c", "import sys; from ncinspect.cli import main; sys.exit(main())"]

# runs argv as its only child and reports that child's exact high-water mark (the kernel's
# ru_maxrss of RUSAGE_CHILDREN: no sampling, nothing else counted)
_PEAK = r"""
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
sys.stderr.write(rc.stderr)
print(rc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss(args: list[str], cwd) -> tuple[int, int, str]:
    """(exit code, peak resident bytes, stderr) of the process ``args`` run in ``cwd`` with
    this checkout on its path (``[*CLI, "report", ...]`` for a command)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK, *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=cwd,
    )
    rc, kib = proc.stdout.split()[-2:]
    return int(rc), int(kib) * 1024, proc.stderr


def simplex_etf(C: int, d: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """C x d rows forming a simplex ETF of norm ``radius`` in a random C-dim subspace (C <= d)."""
    basis = np.linalg.qr(rng.standard_normal((d, C)))[0]  # d x C orthonormal
    e = np.sqrt(C / (C - 1)) * (np.eye(C) - np.ones((C, C)) / C)
    return radius * e @ basis.T


def make_data(C=5, d=16, n=40, radius=4.0, sigma=0.5, seed=0, imbalanced=False, offset=0.0):
    """Features = ETF means + isotropic noise; returns H, y, M (means), W (= M)."""
    rng = np.random.default_rng(seed)
    m = simplex_etf(C, d, radius, rng)
    counts = [n + (7 * c if imbalanced else 0) for c in range(C)]
    y = np.concatenate([np.full(k, c) for c, k in enumerate(counts)])
    h = m[y] + sigma * rng.standard_normal((len(y), d)) + offset
    return h, y, m


def file_digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_npz_members(path, members) -> str:
    """An NPZ archive of exactly ``members`` (a dict, or ``(name, array)`` pairs, names as
    given: with or without ``.npy``, repeated, nested), which ``np.savez`` cannot write;
    returns its path."""
    import io
    import zipfile

    pairs = members.items() if isinstance(members, dict) else members
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in pairs:
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arr))
            zf.writestr(name, buf.getvalue())
    return str(path)


#: the smallest ``ncinspect train`` run (CLI arguments)
SMALL_TRAIN = ["--depth", "2", "--width", "4", "--epochs", "1", "--batch-size", "0", "-q"]


def two_epoch_run(path):
    """A tiny dump at ``path``: labels at the root, two epoch groups of features and W."""
    import h5py

    h, y, m = make_data(C=3, d=5, n=10)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for ep in (1, 2):
            g = f.create_group(f"epoch_{ep:04d}")
            g["features"] = h * (1 + 1 / ep)
            g["weights"] = m
            g.attrs["epoch"] = ep
    return path


def run_cli(path, *args, probe_seconds: str, timeout: float) -> subprocess.CompletedProcess:
    """``ncinspect ARGS PATH`` as a process of its own (this checkout's code), with the HDF5
    metadata probe's time limit ``probe_seconds`` (NCINSPECT_HDF5_PROBE_SECONDS; "0": off)."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["NCINSPECT_HDF5_PROBE_SECONDS"] = probe_seconds
    return subprocess.run(
        [*CLI, *args, str(path)], capture_output=True, text=True, timeout=timeout, env=env
    )


# a DumpWriter process killed (os._exit, as kill -9) right after a commit's journal and its
# trailer reached the file, before any write in place: the state its readers must replay
_KILLED_IN_COMMIT = r"""
import os, sys
import numpy as np
from ncinspect.io import journal
from ncinspect.io.writer import DumpWriter

path, snapshots = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(0)
y = np.arange(12) % 3
w = DumpWriter(path, "w")
w.write("labels", y)
for e in range(snapshots):
    with w.snapshot(f"epoch_{e}", epoch=e) as s:
        s.append(features=rng.standard_normal((12, 4)) + y[:, None])
        s.write(weights=rng.standard_normal((3, 4)))
real = journal._pwrite_parts


def then_die(fd, parts, offset):
    real(fd, parts, offset)
    os._exit(9)


journal._pwrite_parts = then_die
w.snapshot(f"epoch_{snapshots}", epoch=snapshots).append(features=np.ones((12, 4)))
"""


def killed_in_commit(path, snapshots: int = 2) -> str:
    """A dump at ``path`` whose writer process was killed inside a commit, right after the
    journal's trailer was written: ``snapshots`` finished snapshots (12 rows each), a journal
    at the end for the next one's first commit. Returns the path."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_IN_COMMIT, str(path), str(snapshots)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 9, proc.stderr[-2000:]
    return str(path)
