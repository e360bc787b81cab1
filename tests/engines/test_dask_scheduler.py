"""A ``--scheduler`` where no Dask scheduler answers: one line, exit 3 (round eight; it was
an OSError from distributed after its connect timeout, exit 4, and the half-made client
printed traceback lines as it was collected)."""

from __future__ import annotations

import gc
import socket

import dask
import numpy as np

from ncinspect.cli import main

from ..helpers import make_data


def _closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    import h5py

    h, y, w = make_data(C=3, d=5, n=10, seed=0)
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, np.asarray(y), w
    address = f"tcp://127.0.0.1:{_closed_port()}"
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        rc = main(["report", str(path), "--engine", "dask", "--scheduler", address, "--quiet"])
        gc.collect()  # a half-made client printed its traceback when it was collected
    err = capsys.readouterr().err
    assert rc == 3
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert address in lines[0] and "no Dask scheduler answered" in lines[0]
    assert "Traceback" not in err
