"""Time ``Meter.compute()`` with many classes: the class-level metrics after the two passes.

With C in the thousands the metrics that work on the class means and the classifier rows
outgrow everything else a Meter does at the end: the class-pair sweep (NC2's cosines, GNC2,
CDNV, minority collapse) is O(C^2 d), the large-C ETF, OF and SELI errors read d x d Grams
(O(C d^2)), and some forty passes read the C x d arrays. This script fills a Meter with
synthetic float32 rows (``--per-class`` rows of each of ``--classes`` classes in ``--dim``
dimensions, a classifier near the means), then times ``compute()`` alone, wall and process
CPU seconds, with the floor measured in the same run: the two products of width C that the
pair sweep cannot avoid (``U U^T`` of the unit centred means and of the unit classifier
rows, in 256-row tiles, on one BLAS thread). Run from the repository root (not part of the
test suite)::

    python benchmarks/bench_compute.py                              # C = 6000, d = 768
    python benchmarks/bench_compute.py --classes 4000 --dim 512 --repeat 3

The floor is one core's. ``--host-only`` times what stays on the host when the Meter's
states live on a GPU: there the pair sweep and the d x d Grams run on the device
(``metrics/pairs_xp.py``, ``ClassProducts(device)``), so the sweep is cut to the first
512 classes and the Grams are counted apart (``_gram`` of ``metrics/linalg.py``, timed as
it runs); the rest of ``compute()`` (O(C d) passes over the class-level arrays, SELI, the
checks) is the host's share at a vocabulary, printed beside its floor (one read of the class
means and of W)::

    python benchmarks/bench_compute.py --classes 24000 --per-class 1 --repeat 1 --host-only
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def filled_meter(C: int, d: int, per_class: int, seed: int = 0):
    import numpy as np

    import ncinspect

    rng = np.random.default_rng(seed)
    means = rng.standard_normal((C, d)) * 0.2
    w = (means + 0.05 * rng.standard_normal((C, d))).astype(np.float32)
    b = (0.01 * rng.standard_normal(C)).astype(np.float32)
    y = np.repeat(np.arange(C), per_class)
    rng.shuffle(y)
    h = np.maximum(means[y] + rng.standard_normal((y.size, d)), 0).astype(np.float32)
    meter = ncinspect.Meter(weights=w, bias=b)
    step = 8192
    for p in range(2):
        for a in range(0, y.size, step):
            meter.update(h[a : a + step], y[a : a + step])
        if p == 0:
            meter.next_pass()
    return meter, means, w


def host_only(grams: list) -> None:
    """Cut the pair sweep to the first 512 classes and time the d x d Grams into
    ``grams[0]`` (both run on the device when the Meter's states are there)."""
    from ncinspect.metrics import linalg, pairs

    sweep, gram = pairs.pair_sweep, linalg._gram

    def cut(units, *, minority=None, cdnv=None, map=map):  # noqa: A002 - as pair_sweep's
        k = 512
        units = [None if u is None else u[:k] for u in units]
        minority = None if minority is None else [None if m is None else m[:k] for m in minority]
        cdnv = None if cdnv is None else (cdnv[0][:k], cdnv[1][:k])
        return sweep(units, minority=minority, cdnv=cdnv, map=map)

    def timed(u, device):
        t = time.process_time()
        out = gram(u, device)
        grams[0] += time.process_time() - t
        return out

    pairs.pair_sweep, linalg._gram = cut, timed


def read_floor(means, w) -> float:
    """CPU seconds of one read of each C x d class-level array (a column sum in float64): the
    least an O(C d) pass over the class means and the classifier costs."""
    import numpy as np

    sets = [np.ascontiguousarray(means, dtype=np.float64), w.astype(np.float64)]
    t = time.process_time()
    for s in sets:
        np.add.reduce(s, axis=0)
    return time.process_time() - t


def floor_seconds(means, w) -> float:
    """CPU seconds of the two products of width C over 256-row tiles (upper triangle)."""
    import numpy as np

    from ncinspect.blas import one_blas_thread

    sets = [means - means.mean(0), w.astype(np.float64)]
    units = [s / np.maximum(np.linalg.norm(s, axis=1, keepdims=True), 1e-300) for s in sets]
    C, block = units[0].shape[0], 256
    t = time.process_time()
    with one_blas_thread():
        for u in units:
            for i in range(0, C, block):
                u[i : i + block] @ u[i:].T
    return time.process_time() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=6000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--per-class", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="compute() runs (the best is kept)")
    ap.add_argument(
        "--host-only",
        action="store_true",
        help="what a GPU Meter's compute() leaves on the host (the sweep cut, Grams apart)",
    )
    args = ap.parse_args(argv)
    C, d = args.classes, args.dim
    meter, means, w = filled_meter(C, d, args.per_class)
    grams = [0.0]
    if args.host_only:
        host_only(grams)
    best = best_cpu = float("inf")
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        meter.compute()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    if args.host_only:
        gram = grams[0] / args.repeat
        share, floor = best_cpu - gram, read_floor(means, w)
        print(f"# Meter.compute() without the device's share: C = {C}, d = {d}")
        print(f"  compute() less the pair sweep: CPU {best_cpu:.2f} s, of which the d x d ", end="")
        print(f"Grams {gram:.2f} s: the host's share {share:.2f} s (one core)")
        print(f"  floor      CPU {floor:.3f} s (one read of the class means and of W, float64)")
        print(f"  ratio      {share / floor:.0f}x the floor (CPU seconds)")
        return 0
    floor = floor_seconds(means, w)
    print(f"# Meter.compute(): C = {C}, d = {d}, {args.per_class} rows a class", end="")
    print(f"; {os.cpu_count()} CPUs")
    print(f"  compute()  wall {best:.2f} s   CPU {best_cpu:.2f} s")
    print(f"  floor      CPU {floor:.2f} s (two products of width C, one core)")
    print(f"  ratio      {best_cpu / floor:.1f}x the floor (CPU seconds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
