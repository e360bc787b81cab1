"""The cost of ``--spectra``: a report with the spectral metrics against a plain one.

Synthetic features (simplex-ETF class means plus Gaussian noise, float32, C classes) are
written to an HDF5 dump once per width d; then ``ncinspect.analyze_file`` runs on it with and
without ``spectra=True`` (the CLI's ``report --spectra``), each ``--repeat`` times, and the
best wall time of each is printed with their ratio. The spectra add two d x d float64 sums
(``sum e e^T`` of the pass-2 residuals and the uncentred Gram ``sum h h^T``: 4 N d^2 flops)
and two d x d eigendecompositions at the end (O(d^3)), against the O(N d C) of the plain
report, so the ratio grows with d / C.

Run from the repository root (not part of the test suite)::

    python benchmarks/bench_spectra.py                      # d = 1024 and 4096, N = 8192
    python benchmarks/bench_spectra.py --rows 4096 --dims 1024,4096 --threads 1

Results (with the machine and command) are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))


def make_dump(path: str, n: int, d: int, c: int, seed: int = 0) -> None:
    from ncinspect.io.writer import DumpWriter

    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((d, c)))[0]
    etf = np.sqrt(c / (c - 1)) * (np.eye(c) - np.ones((c, c)) / c)
    means = 4.0 * etf @ basis.T
    y = np.arange(n) % c
    with DumpWriter(path, "w") as w:
        s = w.snapshot("epoch_1", epoch=1, split="train")
        step = 4096
        for a in range(0, n, step):
            b = min(n, a + step)
            h = means[y[a:b]] + rng.standard_normal((b - a, d))
            s.append(features=h.astype(np.float32), labels=y[a:b])
        s.write(weights=means.astype(np.float32))


def best_time(fn, repeat: int) -> tuple[float, float, object]:
    """Best wall and CPU seconds of ``repeat`` calls (CPU: this process, every thread; on a
    shared machine it is the steadier of the two), and the last result."""
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=8192, help="N (default 8192)")
    p.add_argument("--dims", default="1024,4096", help="comma-separated widths d")
    p.add_argument("--classes", type=int, default=10, help="C (default 10)")
    p.add_argument("--threads", type=int, default=None, help="local engine threads")
    p.add_argument("--repeat", type=int, default=2, help="runs of each; the best is kept")
    args = p.parse_args(argv)

    from ncinspect.analysis.api import analyze_file
    from ncinspect.engines.local import LocalEngine

    engine = LocalEngine(args.threads)
    print(f"N = {args.rows}, C = {args.classes}, threads = {engine.threads or 'all'}")
    print(
        f"{'d':>6} {'plain wall/cpu s':>17} {'spectra wall/cpu s':>19} {'ratio wall/cpu':>15}"
        "  rankme / rank_effective"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for d in (int(x) for x in args.dims.split(",")):
            path = os.path.join(tmp, f"d{d}.h5")
            make_dump(path, args.rows, d, args.classes)

            def run(spectra: bool, path=path):
                return analyze_file(path, engine=engine, spectra=spectra)

            pw, pc, _ = best_time(lambda: run(False), args.repeat)
            sw, sc, rep = best_time(lambda: run(True), args.repeat)
            m = rep.snapshots[0].metrics
            print(
                f"{d:>6} {pw:>8.2f} /{pc:>7.2f} {sw:>9.2f} /{sc:>8.2f} "
                f"{sw / pw:>7.1f} /{sc / pc:>6.1f}  {m['rankme']:.1f} / {m['rank_effective']:.1f}"
            )
            os.remove(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
