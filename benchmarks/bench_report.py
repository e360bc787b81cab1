"""Benchmark ``ncinspect report`` against a naive reference and the hardware floor.

Run from the repository root (not part of the test suite)::

    python benchmarks/bench_report.py            # every case, 1 thread and every core
    python benchmarks/bench_report.py --quick    # smaller dumps, <= 5 minutes
    python benchmarks/bench_report.py --cases d1024,c10000 --no-reference

For each case a float32 HDF5 dump (features, labels, weights, bias) is generated once, its
pages are warmed, and three programs run on the same file, each in its own child process so
that the peak resident memory of one does not pollute another:

(a) ``ncinspect report FILE --json OUT --quiet --threads T`` (in-process call of the CLI,
    timed after imports);
(b) the reference: what the original Papyan et al. notebook computes, vectorised per class:
    a d x d within-class covariance summed over classes and batches, ``pinv(Sigma_B,
    rcond=1e-6)`` of the d x d between-class covariance, and NCC by per-sample distances to
    every class mean (batches of (B, C, d) differences), BLAS on T threads;
(c) the floor: one chunked read of the features into a reusable float32 buffer plus one
    float32 product of every chunk with the 2C x d matrix [class means; W] (means of the
    first rows: exact means would take a second read, and do not change the cost), BLAS on
    T threads.

Each program runs at T = 1 and at T = every core this process may use, side by side in the
same run (the ratios are what to read on a shared machine). Time is wall-clock seconds of
the work (interpreter start-up and imports excluded), with the CPU seconds of the process
(all threads) beside it; peak RSS is the child's own ``VmHWM``. The tables print a/c
(report / floor) and a/b (report / reference) at each T, report's speed-up from 1 to T
threads and its parallel efficiency (speed-up / T), and the relative difference between the
nc1 of (a) and (b) as a correctness check. The full run also times the 1 GB case with no
``--threads`` and no environment variable against ``OMP_NUM_THREADS=1``, with ``--busy K``
(default 1) other processes spinning on a core each meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
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


#: The issue's shapes, sized for a 2-core, 24 GB machine (C = 10,000 without the reference,
#: whose per-class loops would take hours there).
CASES = (
    Case("d1024", 100_000, 1024, 100),
    Case("d4096", 25_000, 4096, 10),
    Case("c1000", 100_000, 512, 1000),
    Case("c10000", 20_000, 512, 10_000),
    Case("n500k", 500_000, 128, 10),
    Case("n2m", 2_000_000, 128, 10),
)
#: --quick: the same shapes with fewer rows (a few minutes in all on 2 shared cores)
QUICK = (
    Case("q-d1024", 20_000, 1024, 100),
    Case("q-d4096", 5_000, 4096, 10),
    Case("q-c1000", 10_000, 512, 1000),
    Case("q-c10000", 2_000, 512, 10_000),
    Case("q-n500k", 200_000, 128, 10),
)
NO_REFERENCE = {"c10000", "q-c10000", "q-d4096"}  #: too slow there (pinv of d x d)
DEFAULT_CHECK = "n2m"  #: the 1 GB case: no --threads, no environment vs OMP_NUM_THREADS=1


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
def run_report(path: str, threads: int | None) -> dict:
    from ncinspect.cli import main

    out = f"{path}.report{os.getpid()}.json"
    extra = [] if threads is None else ["--threads", str(threads)]
    t0 = time.perf_counter()
    code = main(["report", path, "--json", out, "--quiet", *extra])
    seconds = time.perf_counter() - t0
    with open(out) as f:
        nc1 = json.load(f)["snapshots"][0]["metrics"]["nc1"]
    os.unlink(out)
    return {"seconds": seconds, "nc1": nc1, "code": code}


def run_reference(path: str, threads: int | None, batch: int = 2048) -> dict:
    """The notebook's computation: d x d covariances, pinv, per-sample NCC distances."""
    with _blas(threads):
        return _reference(path, batch)


def _blas(threads: int | None):
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    return nullcontext() if threads is None else threadpool_limits(limits=threads)


def _reference(path: str, batch: int) -> dict:
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


def run_floor(path: str, threads: int | None) -> dict:
    with _blas(threads):
        return _floor(path)


def _floor(path: str, rows: int = 16384, sample: int = 1024) -> dict:
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


def run_baseline(path: str, threads: int | None) -> dict:
    """Imports only: the resident memory of the interpreter with numpy, h5py and ncinspect."""
    import h5py  # noqa: F401

    import ncinspect.analysis.api  # noqa: F401

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


def child(program: str, path: str, threads: int | None, env: dict | None = None) -> dict:
    """Run ``program`` on ``path`` in a fresh interpreter: seconds, CPU seconds, peak RSS."""
    args = [sys.executable, os.path.abspath(__file__), "--child", program, path]
    args += ["--child-threads", str(threads or 0)]
    proc = subprocess.run(
        args, stdout=subprocess.PIPE, text=True, check=False, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{program} on {path} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextmanager
def busy(k: int):
    """``k`` processes each spinning on a core while the block runs (a busy machine)."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(0, k))]
    try:
        time.sleep(0.5 if procs else 0.0)
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------------
# main
# ------------------------------------------------------------------------------------------
def _cell(r):
    return f"{r['seconds']:.2f} ({r['cpu']:.2f})" if r else "-"


def _ratio(x, y):
    return f"{x['seconds'] / y['seconds']:.2f}" if x and y else "-"


def measure(case: Case, path: str, threads: list[int], reference: bool) -> dict:
    """Every program at every thread count, interleaved (floor, report, reference)."""
    out = {}
    for t in threads:
        out[("floor", t)] = child("floor", path, t)
        out[("report", t)] = child("report", path, t)
        out[("reference", t)] = child("reference", path, t) if reference else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/ncbench", help="where the dumps are written")
    parser.add_argument("--cases", default=None, help="comma-separated case names")
    parser.add_argument("--quick", action="store_true", help="smaller dumps (<= 5 minutes)")
    parser.add_argument("--no-reference", action="store_true", help="skip program (b)")
    parser.add_argument("--generate", metavar="N,D,C", help="only write one dump and exit")
    parser.add_argument(
        "--busy",
        type=int,
        default=1,
        metavar="K",
        help="processes spinning on a core each during the default-vs-OMP_NUM_THREADS=1 "
        "check, to make the machine busy (default 1; 0: as it is)",
    )
    parser.add_argument("--child", nargs=2, metavar=("PROGRAM", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        program, path = args.child
        cpu = time.process_time()
        result = PROGRAMS[program](path, args.child_threads or None)
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

    table = QUICK if args.quick else CASES
    wanted = set(args.cases.split(",")) if args.cases else {c.name for c in table}
    all_cores = cores()
    threads = sorted({1, all_cores})
    base = child("baseline", "-", None)
    cmd = "python benchmarks/bench_report.py" + " ".join([""] + (argv or sys.argv[1:]))
    print(
        f"# {cmd}\n# {all_cores} cores available, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at start; "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; baseline RSS after "
        f"imports {base['rss_mb']:.0f} MB; warm page cache; wall seconds (CPU seconds of all "
        "threads)"
    )
    head = (
        "| case | N | d | C | GB | T | (a) report | (b) reference | (c) floor | a/c | a/b "
        "| RSS a MB | nc1 rel. diff a-b |"
    )
    rows, speed = [], []
    for case in table:
        if case.name not in wanted:
            continue
        path = os.path.join(args.dir, f"{case.name}.h5")
        if not os.path.exists(path):
            generate(path, case.n, case.d, case.c)
        warm(path)
        ref = not args.no_reference and case.name not in NO_REFERENCE
        res = measure(case, path, threads, ref)
        for t in threads:
            rep, rf, fl = res[("report", t)], res[("reference", t)], res[("floor", t)]
            diff = f"{abs(rep['nc1'] - rf['nc1']) / abs(rf['nc1']):.1e}" if rf else "-"
            rows.append(
                f"| {case.name} | {case.n:,} | {case.d} | {case.c} | {case.gb:.2f} | {t} "
                f"| {_cell(rep)} | {_cell(rf)} | {_cell(fl)} | {_ratio(rep, fl)} "
                f"| {_ratio(rep, rf)} | {rep['rss_mb']:.0f} | {diff} |"
            )
        if len(threads) > 1:
            t1, tn = res[("report", 1)]["seconds"], res[("report", threads[-1])]["seconds"]
            eff = t1 / tn / threads[-1]
            speed.append(f"| {case.name} | {t1:.2f} | {tn:.2f} | {t1 / tn:.2f} | {eff:.2f} |")
        print(f"# {case.name} done", file=sys.stderr, flush=True)
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    print("\n".join(rows))
    if speed:
        print(
            f"\n| case | report 1 thread s | report {threads[-1]} threads s | speed-up "
            "| parallel efficiency |"
        )
        print("|---|---|---|---|---|")
        print("\n".join(speed))
    if not args.quick and (args.cases is None or DEFAULT_CHECK in wanted):
        path = os.path.join(args.dir, f"{DEFAULT_CHECK}.h5")
        if os.path.exists(path):
            env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
            os.environ.clear()
            os.environ.update(env)
            with busy(args.busy):
                plain = child("report", path, None)
                omp1 = child("report", path, None, {"OMP_NUM_THREADS": "1"})
                plain2 = child("report", path, None)
            mean_plain = (plain["seconds"] + plain2["seconds"]) / 2
            print(
                f"\n{DEFAULT_CHECK} with {args.busy} other process(es) spinning on a core: no "
                f"--threads and no environment variable {_cell(plain)} s, again "
                f"{_cell(plain2)} s; with OMP_NUM_THREADS=1: {_cell(omp1)} s (ratio of the "
                f"mean of the two plain runs {mean_plain / omp1['seconds']:.2f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
