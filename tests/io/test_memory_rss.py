"""Issue 22 item 9: ``--memory-limit`` bounds the peak resident memory of the whole
``ncinspect report`` process (within 1.1x), measured from outside on a subprocess."""

from __future__ import annotations

import json
import sys

import h5py
import numpy as np
import pytest

from ..helpers import CLI, peak_rss


def _wide(path, n=50, d=200_000, C=5):
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("features", shape=(n, d), dtype="f4", chunks=(1, d))
        for i in range(n):
            ds[i] = rng.standard_normal(d).astype("f4")
        f["labels"] = np.arange(n) % C
        f["weights"] = rng.standard_normal((C, d)).astype("f4")


@pytest.mark.slow
def test_memory_limit_bounds_the_peak_rss_of_the_whole_process(tmp_path):
    path = tmp_path / "wide.h5"
    _wide(path)
    cli = CLI
    # the baseline: a process that only imports what report imports
    rc, base, err = peak_rss(
        [sys.executable, "-c", "import ncinspect.cli, ncinspect.analysis, h5py, scipy.linalg"],
        tmp_path,
    )
    assert rc == 0, err
    values = {}
    for limit in (256, 320):
        out = tmp_path / f"{limit}.json"
        rc, peak, err = peak_rss(
            [*cli, "report", str(path), "--memory-limit", f"{limit}MiB", "-q", "--json", str(out)],
            tmp_path,
        )
        assert rc == 0, err
        assert peak <= 1.1 * (limit << 20), (limit, peak / 2**20, base / 2**20)
        values[limit] = json.loads(out.read_text())["snapshots"][0]["metrics"]["nc1"]
    assert values[256] == pytest.approx(values[320], rel=1e-12)
    # a limit that cannot hold the process and the class-level matrices is refused, naming
    # what the process already holds
    rc, peak, err = peak_rss([*cli, "report", str(path), "--memory-limit", "150MiB"], tmp_path)
    assert rc == 3, err
    assert "already holds" in err and "--memory-limit" in err
    assert peak <= 1.1 * (150 << 20)


def _epochs(path, snapshots, n=400, d=512, C=500):
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f["labels"] = np.arange(n) % C
        for e in range(snapshots):
            g = f.create_group(f"epoch_{e:03d}")
            g["features"] = rng.standard_normal((n, d)).astype("f4")
            g["weights"] = rng.standard_normal((C, d)).astype("f4")


@pytest.mark.slow
def test_many_snapshots_do_not_grow_the_peak_rss(tmp_path):
    """The peak of a report over 16 snapshots of a C = 500, d = 512 head is that of 2: each
    snapshot's geometry, pass-2 kernel and class-level arrays are freed when the next one
    starts (a reference cycle once kept them for the cyclic collector, and every result kept
    its arrays: about 8 MB a snapshot here), under a --memory-limit that holds one."""
    cli = CLI
    peaks = {}
    for snapshots in (2, 16):
        path = tmp_path / f"run{snapshots}.h5"
        _epochs(path, snapshots)
        out = tmp_path / f"{snapshots}.json"
        args = [*cli, "report", str(path), "--memory-limit", "600MiB", "-q", "--json", str(out)]
        rc, peaks[snapshots], err = peak_rss(args, tmp_path)
        assert rc == 0, err
        assert len(json.loads(out.read_text())["snapshots"]) == snapshots
    assert peaks[16] - peaks[2] < 40 << 20, (peaks[2] / 2**20, peaks[16] / 2**20)
    assert peaks[16] <= 1.1 * (600 << 20)
