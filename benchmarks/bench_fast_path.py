"""Does pass 2's numpy fast path pay? numpy rows through it and through the one namespace kernel.

Run from the repository root (not part of the test suite)::

    OMP_NUM_THREADS=1 python benchmarks/bench_fast_path.py

Host memory (numpy, files, CPU tensors) runs pass 2 by :func:`ncinspect.stats.kernel.numpy_block`
(reusable buffers, in-place products, float32 decision scores with a float64 recheck); device
arrays by the namespace kernel :class:`ncinspect.stats.device.SecondState`, which also runs on
numpy. For a few shapes this times one chunk through each (process CPU seconds, best of three,
BLAS on one thread), prints the ratio, and says which fields of the statistics are bit for
bit the same (the decisions always must be; the sums may differ in the last bits).
"""

from __future__ import annotations

import contextlib
import time

import numpy as np
from threadpoolctl import threadpool_limits

from ncinspect.metrics import between_class_geometry
from ncinspect.stats import device
from ncinspect.stats.device import second_sums
from ncinspect.stats.passes import FirstPass, SecondPass

SHAPES = [(20_000, 512, 1000), (20_000, 1024, 100), (50_000, 128, 10)]


@contextlib.contextmanager
def generic_path():
    """The namespace kernel's own code on numpy rows: host memory normally takes the fast
    path inside it (a zero-copy view), which is what this benchmark weighs."""
    real = device.host_view
    device.host_view = lambda xp, a: None
    try:
        yield
    finally:
        device.host_view = real


def best_cpu(fn, *args, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        fn(*args)
        best = min(best, time.process_time() - t0)
    return best


def fields(stats: SecondPass) -> dict:
    """Every field as bytes (arrays) or text (moments and scalars, by their repr)."""
    return {
        k: v.tobytes() if isinstance(v, np.ndarray) else repr(v) for k, v in vars(stats).items()
    }


def main() -> None:
    rng = np.random.default_rng(0)
    for n, d, C in SHAPES:
        means = rng.standard_normal((C, d)).astype(np.float32)
        y = rng.integers(0, C, n)
        h = (means[y] + 0.5 * rng.standard_normal((n, d))).astype(np.float32)
        w = (means + 0.1 * rng.standard_normal((C, d))).astype(np.float64)
        geom = between_class_geometry(FirstPass.of_chunk(h, y, C), weights=w)
        with threadpool_limits(limits=1):
            fast = best_cpu(SecondPass.of_chunk, geom, h, y)
            with generic_path():
                generic = best_cpu(second_sums, np, geom, h, y)
        a = fields(SecondPass.of_chunk(geom, h, y))
        with generic_path():
            b = fields(SecondPass.of_state(second_sums(np, geom, h, y), True))
        same = sorted(k for k in a if k in b and a[k] == b[k])
        differ = sorted(k for k in a if k in b and k not in same)
        print(
            f"N={n:,} d={d} C={C:,}: fast path {fast:.3f} s, namespace kernel {generic:.3f} s "
            f"(x{generic / fast:.2f}); bit-equal: {', '.join(same) or '-'}; "
            f"last bits differ: {', '.join(differ) or '-'}"
        )


if __name__ == "__main__":
    main()
