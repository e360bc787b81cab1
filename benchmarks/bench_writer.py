"""Benchmark what the DumpWriter's crash-safe commits cost (ncinspect/io/journal.py).

Run from the repository root (not part of the test suite)::

    python benchmarks/bench_writer.py                 # both cases, 3 repeats
    python benchmarks/bench_writer.py --repeats 5

Two cases, each written to a temporary folder:

* ``stream``: one snapshot of 200 batches of 256 x 512 float32 rows (a meter's ``dump=``
  over an epoch: 100 MiB), labels and outputs beside them, then the weights;
* ``many``: 2,000 snapshots of one 40 x 8 batch each, weights and metadata (the per-commit
  cost: every append, write and finish commits).

The floor of each case, measured the same way in the same run, is h5py writing the same
arrays into the same layout (1 MiB chunks, extended batch by batch) with a flush after each
batch, through libhdf5's own driver: what the writer did before its commits were made
crash-safe, without its checks. The ratio writer / floor is the price of the checks and of
the journal together.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _rows(n_batches: int, rows: int, d: int, C: int):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((rows, d)).astype("f4")
    outs = rng.standard_normal((rows, C)).astype("f4")
    labels = rng.integers(0, C, rows)
    return [(feats, outs, labels)] * n_batches


def floor_stream(path: str, batches) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        g = f.create_group("epoch_00001")
        made = {}
        for feats, outs, labels in batches:
            for name, arr in (("features", feats), ("outputs", outs), ("labels", labels)):
                ds = made.get(name)
                if ds is None:
                    row = max(1, arr[0].nbytes)
                    ds = made[name] = g.create_dataset(
                        name,
                        shape=(0,) + arr.shape[1:],
                        maxshape=(None,) + arr.shape[1:],
                        dtype=arr.dtype,
                        chunks=(max(1, min(65536, (1 << 20) // row)),) + arr.shape[1:],
                    )
                n0 = ds.shape[0]
                ds.resize(n0 + len(arr), axis=0)
                ds[n0:] = arr
            f.flush()
        g["weights"] = np.ones((10, 512), "f4")
        f.flush()


def writer_stream(path: str, batches) -> None:
    from ncinspect.io.writer import DumpWriter

    with DumpWriter(path, "w") as w:
        with w.snapshot("epoch_00001", epoch=1) as s:
            for feats, outs, labels in batches:
                s.append(features=feats, outputs=outs, labels=labels)
            s.write(weights=np.ones((10, 512), "f4"))


def floor_many(path: str, snapshots: int) -> None:
    import h5py

    rng = np.random.default_rng(0)
    h = rng.standard_normal((40, 8)).astype("f4")
    with h5py.File(path, "w") as f:
        f["labels"] = np.arange(40) % 4
        f.flush()
        for e in range(snapshots):
            g = f.create_group(f"epoch_{e:05d}")
            g.attrs["epoch"] = e
            ds = g.create_dataset(
                "features", shape=(0, 8), maxshape=(None, 8), dtype="f4", chunks=(32768, 8)
            )
            ds.resize(40, axis=0)
            ds[:] = h
            f.flush()
            g["weights"] = h[:4]
            f.flush()


def writer_many(path: str, snapshots: int) -> None:
    from ncinspect.io.writer import DumpWriter

    rng = np.random.default_rng(0)
    h = rng.standard_normal((40, 8)).astype("f4")
    with DumpWriter(path, "w") as w:
        w.write("labels", np.arange(40) % 4)
        for e in range(snapshots):
            with w.snapshot(f"epoch_{e:05d}", epoch=e) as s:
                s.append(features=h)
                s.write(weights=h[:4])


def _time(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--snapshots", type=int, default=2000)
    args = ap.parse_args(argv)
    batches = _rows(args.batches, 256, 512, 10)
    mib = sum(a.nbytes for b in batches for a in b) / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "dump.h5")
        writer_many(path, 10)  # imports and first-use costs out of the timings
        cases = {
            "stream": ((floor_stream, batches), (writer_stream, batches), args.batches),
            "many": ((floor_many, args.snapshots), (writer_many, args.snapshots), args.snapshots),
        }
        for name, (floor, writer, units) in cases.items():
            f_times, w_times = [], []
            for _ in range(args.repeats):  # interleaved: the machine's load hits both alike
                f_times.append(_time(floor[0], path, floor[1]))
                w_times.append(_time(writer[0], path, writer[1]))
            f, w = min(f_times), min(w_times)
            unit = "batch" if name == "stream" else "snapshot"
            extra = f" ({mib / w:.0f} MiB/s, floor {mib / f:.0f})" if name == "stream" else ""
            print(
                f"{name:7s} floor {1e3 * f / units:7.3f} ms/{unit}  writer "
                f"{1e3 * w / units:7.3f} ms/{unit}  ratio {w / f:5.2f}x{extra}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
