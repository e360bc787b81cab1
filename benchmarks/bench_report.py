"""Benchmark ``ncinspect report`` against a naive reference and the hardware floor.

Run from the repository root (not part of the test suite)::

    python benchmarks/bench_report.py                 # every case, files under /tmp/ncbench
    python benchmarks/bench_report.py --cases c100 --no-reference

For each case a float32 HDF5 dump (features, labels, weights, bias) is generated once, its
pages are warmed, and three programs run on the same file, each in its own child process so
that the peak resident memory of one does not pollute another:

(a) ``ncinspect report FILE --json OUT --quiet`` (in-process call of the CLI, timed after
    imports);
(b) the reference: what the original Papyan et al. notebook computes, vectorised per class:
    a d x d within-class covariance summed over classes and batches, ``pinv(Sigma_B,
    rcond=1e-6)`` of the d x d between-class covariance, and NCC by per-sample distances to
    every class mean (batches of (B, C, d) differences);
(c) the floor: one chunked read of the features into a reusable float32 buffer plus one
    float32 product of every chunk with the 2C x d matrix [class means; W] (means of the
    first rows: exact means would take a second read, and do not change the cost).

Time is wall-clock seconds of the work (interpreter start-up and imports excluded), with the
CPU seconds of the process (all threads) beside it, which are the steadier figure on a shared
machine; peak RSS is the child's own ``VmHWM`` (``ru_maxrss`` would count the forked parent).
The table prints a/b and a/c and the relative difference between the nc1 of (a) and (b) as
a correctness check. Set ``OMP_NUM_THREADS`` to the cores you have to yourself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Case:
    name: str
    n: int  # samples
    d: int  # features
    c: int  # classes

    @property
    def gb(self) -> float:
        return self.n * self.d * 4 / 1e9


#: Sized for a 2-core, 24 GB machine and a few minutes in all (the issue's cases, scaled).
CASES = (
    Case("d1024", 100_000, 1024, 100),
    Case("d4096", 25_000, 4096, 10),
    Case("c1000", 100_000, 512, 1000),
    Case("n500k", 500_000, 128, 10),
    Case("n2m", 2_000_000, 128, 10),
)


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def generate(path: str, n: int, d: int, c: int, *, seed: int = 0, noise: float = 0.5) -> None:
    """A flat float32 dump: features = class mean + Gaussian noise, W near the means."""
    from ncinspect import DumpWriter

    rng = np.random.default_rng(seed)
    means = rng.standard_normal((c, d)).astype(np.float32)
    labels = rng.integers(0, c, size=n)
    weights = means + 0.1 * rng.standard_normal((c, d)).astype(np.float32)
    tmp = path + ".part"
    with DumpWriter(tmp, "w") as w:
        w.write("labels", labels)
        snap = w.snapshot("/")
        step = max(1, (64 << 20) // (4 * d))
        for a in range(0, n, step):
            y = labels[a : a + step]
            h = rng.standard_normal((y.size, d), dtype=np.float32)
            h *= noise
            h += means[y]
            snap.append(features=h)
        snap.write(weights=weights, bias=np.zeros(c, np.float32))
    os.replace(tmp, path)


def warm(path: str) -> None:
    """Read the file once so that every program starts from the same (warm) page cache."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


# ------------------------------------------------------------------------------------------
# the three programs (run in a child process each)
# ------------------------------------------------------------------------------------------
def run_report(path: str) -> dict:
    from ncinspect.cli import main

    out = path + ".report.json"
    t0 = time.perf_counter()
    code = main(["report", path, "--json", out, "--quiet"])
    seconds = time.perf_counter() - t0
    with open(out) as f:
        nc1 = json.load(f)["snapshots"][0]["metrics"]["nc1"]
    os.unlink(out)
    return {"seconds": seconds, "nc1": nc1, "code": code}


def run_reference(path: str, batch: int = 2048) -> dict:
    """The notebook's computation: d x d covariances, pinv, per-sample NCC distances."""
    import h5py
    import scipy.linalg

    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        ds, y = f["features"], f["labels"][:]
        W = f["weights"][:].astype(np.float64)
        b = f["bias"][:].astype(np.float64)
        n, d = ds.shape
        C = W.shape[0]
        # pass 1: class means
        sums, counts = np.zeros((C, d)), np.zeros(C)
        for a in range(0, n, batch):
            h, yb = ds[a : a + batch].astype(np.float64), y[a : a + batch]
            for c in range(C):
                hc = h[yb == c]
                sums[c] += hc.sum(axis=0)
                counts[c] += hc.shape[0]
        M = sums / counts[:, None]
        mu_g = M.mean(axis=0)
        # pass 2: d x d within-class covariance, accuracy, NCC by per-sample distances
        Sw = np.zeros((d, d))
        net_correct = ncc_match = 0
        ncc_batch = max(1, (128 << 20) // (8 * C * d))  # (B, C, d) differences, ~128 MB
        for a in range(0, n, batch):
            h, yb = ds[a : a + batch].astype(np.float64), y[a : a + batch]
            for c in range(C):
                hc = h[yb == c]
                if not hc.shape[0]:
                    continue
                z = hc - M[c]
                Sw += z.T @ z
                net_pred = np.argmax(hc @ W.T + b, axis=1)
                net_correct += int(np.sum(net_pred == c))
                ncc_pred = np.concatenate(
                    [
                        np.argmin(
                            np.linalg.norm(hc[i : i + ncc_batch, None, :] - M[None], axis=2), axis=1
                        )
                        for i in range(0, hc.shape[0], ncc_batch)
                    ]
                )
                ncc_match += int(np.sum(ncc_pred == net_pred))
        Sw /= n
        Mc = M - mu_g
        Sb = Mc.T @ Mc / C
        inv_sb = scipy.linalg.pinv(Sb, rtol=1e-6)
        nc1 = float(np.trace(Sw @ inv_sb)) / C
    return {
        "seconds": time.perf_counter() - t0,
        "nc1": nc1,
        "accuracy": net_correct / n,
        "ncc_mismatch": 1 - ncc_match / n,
    }


def run_floor(path: str, rows: int = 16384, sample: int = 1024) -> dict:
    """One read of the features plus one float32 product with [means; W].

    The class means are estimated from the first ``sample`` rows, once they are read (exact
    means would need a second read of the file; their values do not change the cost of the
    product): the (d, 2C) float32 matrix ``[means; W].T`` then multiplies every chunk.
    """
    import h5py

    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        ds = f["features"]
        n, d = ds.shape
        W = f["weights"][:].astype(np.float32)
        C = W.shape[0]
        buf = np.empty((rows, d), np.float32)
        mw = None
        check = 0.0
        for a in range(0, n, rows):
            b = min(n, a + rows)
            view = buf[: b - a]
            ds.read_direct(view, np.s_[a:b])
            if mw is None:  # class means of the first rows (zero for a class not among them)
                k = min(sample, b - a)
                onehot = (f["labels"][:k] == np.arange(C)[:, None]).astype(np.float32)  # (C, k)
                means = onehot @ view[:k] / np.maximum(onehot.sum(axis=1), 1)[:, None]  # (C, d)
                mw = np.ascontiguousarray(np.vstack([means, W]).T)  # (d, 2C)
            check += float((view @ mw)[0, 0])
    return {"seconds": time.perf_counter() - t0, "check": check}


def run_baseline(path: str) -> dict:
    """Imports only: the resident memory of the interpreter with numpy, h5py and ncinspect."""
    import h5py  # noqa: F401

    import ncinspect.analyze  # noqa: F401

    return {"seconds": 0.0}


PROGRAMS = {
    "report": run_report,
    "reference": run_reference,
    "floor": run_floor,
    "baseline": run_baseline,
}


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM, Linux), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(program: str, path: str) -> dict:
    """Run ``program`` on ``path`` in a fresh interpreter: seconds, CPU seconds, peak RSS."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", program, path],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{program} on {path} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/ncbench", help="where the dumps are written")
    parser.add_argument(
        "--cases", default=",".join(c.name for c in CASES), help="comma-separated case names"
    )
    parser.add_argument("--no-reference", action="store_true", help="skip program (b)")
    parser.add_argument("--generate", metavar="N,D,C", help="only write one dump and exit")
    parser.add_argument("--child", nargs=2, metavar=("PROGRAM", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        program, path = args.child
        cpu = time.process_time()
        result = PROGRAMS[program](path)
        result["cpu"] = time.process_time() - cpu
        result["rss_mb"] = peak_rss_mb()
        print(json.dumps(result))
        return 0
    os.makedirs(args.dir, exist_ok=True)
    if args.generate:
        n, d, c = (int(v) for v in args.generate.split(","))
        path = os.path.join(args.dir, f"gen_{n}x{d}_c{c}.h5")
        generate(path, n, d, c)
        print(path)
        return 0

    wanted = set(args.cases.split(","))
    base = child("baseline", "-")
    print(
        f"# {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')};"
        f" baseline RSS after imports {base['rss_mb']:.0f} MB; warm page cache;"
        f" wall seconds (CPU seconds of all threads)"
    )
    head = (
        "| case | N | d | C | GB | (a) report s (cpu) | (b) reference s (cpu) "
        "| (c) floor s (cpu) | a/b wall (cpu) | a/c wall (cpu) | RSS a/b/c MB "
        "| nc1 rel. diff a-b |"
    )
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for case in CASES:
        if case.name not in wanted:
            continue
        path = os.path.join(args.dir, f"{case.name}.h5")
        if not os.path.exists(path):
            generate(path, case.n, case.d, case.c)
        warm(path)
        floor = child("floor", path)
        rep = child("report", path)
        ref = child("reference", path) if not args.no_reference else None

        def cell(r):
            return f"{r['seconds']:.2f} ({r['cpu']:.2f})" if r else "-"

        def ratio(x, y):
            if not y:
                return "-"
            return f"{x['seconds'] / y['seconds']:.2f} ({x['cpu'] / y['cpu']:.2f})"

        rss = "/".join(f"{r['rss_mb']:.0f}" if r else "-" for r in (rep, ref, floor))
        diff = f"{abs(rep['nc1'] - ref['nc1']) / abs(ref['nc1']):.1e}" if ref else "-"
        print(
            f"| {case.name} | {case.n:,} | {case.d} | {case.c} | {case.gb:.2f} | {cell(rep)} "
            f"| {cell(ref)} | {cell(floor)} | {ratio(rep, ref)} | {ratio(rep, floor)} "
            f"| {rss} | {diff} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
