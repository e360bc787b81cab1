"""Cost of the directional pair table (nc1_cdnv_directional) in pass 2.

    OMP_NUM_THREADS=1 python benchmarks/bench_directional.py

Times :meth:`ncinspect.stats.SecondPass.of_chunk` on float32 features with the table summed
(``Geometry.pair_reason`` None) and without it, best of three, for a C < d shape (the table
comes from the NCC scores pass 2 forms anyway) and a C > d one (one extra float64 product
per block). Prints seconds; under a minute of CPU.
"""

from __future__ import annotations

import time

import numpy as np

from ncinspect.metrics import between_class_geometry
from ncinspect.stats.passes import FirstPass, SecondPass


def best_of(geom, h, y, n=3) -> float:
    """Best of ``n`` timings of pass 2 over ``h``."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        SecondPass.of_chunk(geom, h, y)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    print("N      d    C     with table  without  ratio")
    for N, d, C in ((20000, 512, 64), (20000, 256, 1000)):
        y = rng.integers(0, C, N)
        h = (rng.standard_normal((C, d))[y] + rng.standard_normal((N, d))).astype(np.float32)
        first = FirstPass.of_chunk(h, y, C)
        geom = between_class_geometry(first)
        times = []
        for reason in (None, "off"):
            geom.pair_reason = reason
            geom.kernels.clear()
            times.append(best_of(geom, h, y))
        print(f"{N:<6} {d:<4} {C:<5} {times[0]:10.3f} {times[1]:8.3f} {times[0] / times[1]:6.2f}")


if __name__ == "__main__":
    main()
