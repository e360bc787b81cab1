"""Benchmark the walks of the regression and OOD passes (``engine.run``) against their floor.

Run from the repository root (not part of the test suite)::

    python benchmarks/bench_passes.py                   # N = 40,000, d = 1024, 1 and 2 threads
    python benchmarks/bench_passes.py --n 20000 --d 512 --threads 1,4

Seeded float32 features (N, d) with t = 3 regression targets are made in memory; then, at
each thread count T, in this process:

(a) ``analyze_regression`` on the local engine with T threads: two walks (moments with the
    d x d scatter, then the residuals), blocks on the pool, the next chunk read meanwhile;
(b) the walk of an OOD set scored against an ID snapshot: ``FeatureSumRows`` and
    ``ScoreRows`` (C = 100 classes) in one walk;
(c) the floors, BLAS on T threads: for (a) one float64 product ``X^T X`` of all rows (the
    scatter of pass 1, the bulk of the work), for (b) one float64 product of all rows with
    the (d, C + r) matrix the scores need.

Wall seconds, with the CPU seconds of the process (all threads) beside them, and the ratios
a/c and b/c. On a shared machine read the CPU seconds and the ratios, not the wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def timed(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    from ncinspect.analysis.regression import analyze_regression
    from ncinspect.engines.local import LocalEngine, plan_chunk_rows
    from ncinspect.engines.passes import FeatureSumRows, ScoreRows
    from ncinspect.io.sources import MemorySource
    from ncinspect.metrics.ood_scores import OODScorer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40_000, help="rows (default 40,000)")
    parser.add_argument("--d", type=int, default=1024, help="features (default 1024)")
    parser.add_argument("--threads", default="1,2", help="comma-separated (default 1,2)")
    args = parser.parse_args(argv)
    n, d, t, C = args.n, args.d, 3, 100
    rng = np.random.default_rng(0)
    y = rng.standard_normal((n, t))
    w = rng.standard_normal((t, d))
    h = (y @ w + 0.3 * rng.standard_normal((n, d))).astype(np.float32)
    basis = np.linalg.qr(rng.standard_normal((d, C - 1)))[0].T
    scorer = OODScorer(h.mean(axis=0, dtype=np.float64), basis, rng.standard_normal((C, d)))
    side = np.concatenate([basis, scorer.weights]).T  # (d, C + r)
    rows = plan_chunk_rows(d, C)
    print(f"# python benchmarks/bench_passes.py --n {n} --d {d} --threads {args.threads}")
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; wall s (CPU s)")
    print("| T | (a) regression | floor X^T X | a/c | (b) OOD sums + scores | floor X S | b/c |")
    print("|---|---|---|---|---|---|---|")
    for threads in [int(x) for x in args.threads.split(",")]:
        engine = LocalEngine(threads=threads)
        analyze_regression(h[:1000], y[:1000], weights=w, engine=engine)  # warm
        a = timed(lambda e=engine: analyze_regression(h, y, weights=w, engine=e))
        src = {"features": MemorySource(h, "features")}
        passes = [FeatureSumRows(d), ScoreRows(scorer, d)]
        b = timed(lambda e=engine, s=src, p=passes: e.run(p, s, rows))
        x = h.astype(np.float64)
        with threadpool_limits(threads):
            fa = timed(lambda x=x: x.T @ x)
            fb = timed(lambda x=x: x @ side)
        print(
            f"| {threads} | {a[0]:.2f} ({a[1]:.2f}) | {fa[0]:.2f} ({fa[1]:.2f}) | "
            f"{a[0] / fa[0]:.1f} | {b[0]:.2f} ({b[1]:.2f}) | {fb[0]:.2f} ({fb[1]:.2f}) | "
            f"{b[0] / fb[0]:.1f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
