"""Benchmark the HDF5 side of one snapshot: the metadata walk, the probe's child, the reads.

Run from the repository root (not part of the test suite)::

    python benchmarks/bench_h5walk.py                     # 200 and 1,000 snapshots
    python benchmarks/bench_h5walk.py --sizes 1000,10000  # the issue's 10,000

The dumps are those of ``bench_snapshots.py`` (40 rows, d = 8, C = 4 features and a
classifier per snapshot, labels once at the top). Each figure is the slope between the two
sizes (what is paid once per file drops out), the best of ``--repeat`` runs:

* ``floor``: the h5py calls the walk cannot do without, in a bare loop (open each group and
  dataset, its creation property list, type and extent, read the group's one attribute);
* ``walk``: :func:`ncinspect.io.hdf5.read_h5_tree` (CPU), and its ratio to the floor;
* ``open_dump``: the walk and the snapshots resolved, the probe off (CPU);
* ``probe, paced``: ``open_dump`` with the probe on, the command's walk paced behind the
  child's (wall: the child's work is not the command's CPU time);
* ``probe, child first``: the child's whole walk, then ``open_dump`` (wall: what the probe
  cost when the command waited for the child's end before its own walk);
* ``reads``: what the two passes read of each snapshot (features twice, weights, labels),
  through the engine's chunk reader (CPU; the dump opened before the clock starts).

On a shared machine read the CPU figures (the probe's child's CPU is printed apart); the
wall figures need a free core to mean anything (the load is printed: with every core busy
the paced probe is no faster than the child-first one; ``nice -n -10`` lends one).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_snapshots import write_dump  # noqa: E402


def floor(path: str) -> None:
    import h5py
    from h5py import h5a, h5o, h5t

    keep = []
    with h5py.File(path, "r") as f:
        names: list[bytes] = []
        f.id.links.iterate(names.append)
        for name in sorted(names):
            oid = h5o.open(f.id, name)
            if isinstance(oid, h5py.h5d.DatasetID):
                keep.append(oid)
                continue
            aid = h5a.open(oid, index=0)
            arr = np.zeros((), aid.dtype)
            aid.read(arr, mtype=h5t.py_create(arr.dtype))
            inner: list[bytes] = []
            oid.links.iterate(inner.append)
            for sub in inner:
                dsid = h5o.open(oid, sub)
                dsid.get_create_plist().get_layout()
                keep.append((dsid, dsid.get_type(), dsid.shape))
        del keep


def walk(path: str) -> None:
    import h5py

    from ncinspect.io.hdf5 import read_h5_tree

    with h5py.File(path, "r") as f:
        read_h5_tree(f, path)


def open_dump(path: str, probe_seconds: float | None = None) -> None:
    from ncinspect.dump import open_dump as od
    from ncinspect.io import probe

    old, probe.PROBE_SECONDS = probe.PROBE_SECONDS, probe_seconds
    try:
        with od(path):
            pass
    finally:
        probe.PROBE_SECONDS = old


def child_first(path: str) -> None:
    from ncinspect.io.probe import probe_hdf5

    probe_hdf5(path, seconds=30)
    open_dump(path)


def reads(path: str) -> tuple[float, float]:
    """(wall, CPU) seconds of the reads alone (the dump opened before the clock starts)."""
    from ncinspect.dump import open_dump as od
    from ncinspect.engines.local import ChunkReader

    with od(path) as dump:
        w0, c0 = time.perf_counter(), time.process_time()
        for snap in dump.snapshots:
            for _ in range(2):  # pass 1, pass 2
                ChunkReader(snap.features, 1 << 16).read(0, snap.features.shape[0])
            snap.weights.read_all()
            snap.labels.read_all()
        return time.perf_counter() - w0, time.process_time() - c0


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def timed(fn, path: str, repeat: int) -> tuple[float, float, float]:
    """(best wall, best CPU, best CPU of child processes) seconds of ``fn(path)`` (or the
    wall and CPU of what it returns, if anything)."""
    walls, cpus, kids = [], [], []
    for _ in range(repeat):
        w0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
        own = fn(path)
        wall, cpu = own or (time.perf_counter() - w0, time.process_time() - c0)
        walls.append(wall)
        cpus.append(cpu)
        kids.append(_children_cpu() - k0)
    return min(walls), min(cpus), min(kids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000", help="two snapshot counts, S1,S2")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each (the best kept)")
    opts = parser.parse_args()
    s1, s2 = (int(x) for x in opts.sizes.split(","))
    cases = [
        ("floor", floor, "cpu"),
        ("walk", walk, "cpu"),
        ("open_dump", open_dump, "cpu"),
        ("probe, paced", lambda p: open_dump(p, 30.0), "wall"),
        ("probe, child first", child_first, "wall"),
        ("reads", reads, "cpu"),
    ]
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for s in (s1, s2):
            files[s] = os.path.join(tmp, f"snaps{s}.h5")
            write_dump(files[s], s)
        open_dump(files[s1])  # imports
        slopes = {}
        for name, fn, clock in cases:
            (w1, c1, k1), (w2, c2, k2) = (timed(fn, files[s], opts.repeat) for s in (s1, s2))
            wall, cpu, kid = ((b - a) / (s2 - s1) for a, b in ((w1, w2), (c1, c2), (k1, k2)))
            slopes[name] = wall if clock == "wall" else cpu
            child = f"   child cpu {1e3 * kid:6.3f} ms" if "probe" in name else ""
            print(
                f"  {name:20s} wall {1e3 * wall:6.3f} ms   cpu {1e3 * cpu:6.3f} ms{child}   "
                f"({clock})"
            )
    print(f"ncinspect {sys.argv[0]}: {s1} and {s2} snapshots; load {os.getloadavg()[0]:.1f}")
    print(f"walk / floor: {slopes['walk'] / slopes['floor']:.2f}")


if __name__ == "__main__":
    main()
