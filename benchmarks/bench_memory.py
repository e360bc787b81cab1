"""Peak resident memory of ``ncinspect report --memory-limit`` against the limit (issue 22,
item 9: the peak RSS of the whole process stays within 1.1x the limit, or the limit is
refused up front).

For each shape ``d x N x C : limit`` a float32 HDF5 dump (one row a chunk) is written to a
temporary folder, then ``report`` runs in a fresh process. Its peak RSS is read two ways:
the kernel's exact high-water mark of that process (``os.wait4`` -> ``ru_maxrss``) and
``psutil`` sampling every 2 ms (a lower bound). The floor is the peak of a process that
only imports what ``report`` imports. Printed per shape: limit, exit code, peak RSS,
peak / limit, the sampled peak, CPU seconds and the first line of stderr (a refusal)::

    python benchmarks/bench_memory.py                      # the issue's shape and two more
    python benchmarks/bench_memory.py --shapes 1000000x50x4:424,1000000x50x4:900
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import h5py
import numpy as np
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = "import sys; from ncinspect.cli import main; sys.exit(main())"
FLOOR = "import ncinspect.cli, ncinspect.analysis, h5py, scipy.linalg"
SHAPES = (
    "1000000x50x4:424,1000000x50x4:841,1000000x50x4:900,"
    "200000x50x5:256,200000x200x10:428,50000x2000x100:949"
)


def write_dump(path: str, d: int, n: int, C: int) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("features", shape=(n, d), dtype="f4", chunks=(1, d))
        for i in range(n):
            ds[i] = rng.standard_normal(d, dtype=np.float32)
        f["labels"] = np.arange(n) % C
        f["weights"] = rng.standard_normal((C, d), dtype=np.float32)


def peak_of(args: list[str], cwd: str) -> tuple[int, int, int, float, str]:
    """``(rc, kernel peak RSS bytes, sampled peak bytes, CPU seconds, stderr)`` of a run."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    err_path = os.path.join(cwd, "stderr.txt")
    with open(err_path, "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=cwd)
        watched = psutil.Process(proc.pid)
        sampled = 0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                sampled = max(sampled, watched.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.002)
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(err_path) as err:
        text = err.read()
    cpu = usage.ru_utime + usage.ru_stime
    return proc.returncode, usage.ru_maxrss * 1024, sampled, cpu, text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=SHAPES, help="d x N x C : limit in MiB, comma-separated")
    opts = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rc, floor, _, cpu, err = peak_of([sys.executable, "-c", FLOOR], tmp)
        assert rc == 0, err
        print(f"floor (imports only): peak RSS {floor / 2**20:.1f} MiB, {cpu:.1f} s CPU")
        print(
            f"{'d':>9} {'N':>5} {'C':>4} {'limit':>9} {'rc':>3} {'peak RSS':>10} "
            f"{'ratio':>6} {'sampled':>10} {'CPU s':>6}  note"
        )
        for spec in opts.shapes.split(","):
            shape, limit = spec.split(":")
            d, n, C = (int(v) for v in shape.split("x"))
            path = os.path.join(tmp, f"dump_{d}_{n}_{C}.h5")
            if not os.path.exists(path):
                write_dump(path, d, n, C)
            args = [
                sys.executable,
                "-c",
                CLI,
                "report",
                path,
                "--memory-limit",
                f"{limit}MiB",
                "-q",
                "--json",
                os.path.join(tmp, "out.json"),
            ]
            rc, peak, sampled, cpu, err = peak_of(args, tmp)
            lim = int(limit) << 20
            note = err.strip().splitlines()[0][-110:] if rc and err.strip() else ""
            print(
                f"{d:>9} {n:>5} {C:>4} {limit + 'MiB':>9} {rc:>3} "
                f"{peak / 2**20:>7.1f}MiB {peak / lim:>6.3f} {sampled / 2**20:>7.1f}MiB "
                f"{cpu:>6.1f}  {note}",
                flush=True,
            )


if __name__ == "__main__":
    main()
