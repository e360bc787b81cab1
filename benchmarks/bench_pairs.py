"""Benchmark ``ncinspect report`` with many classes in few dimensions, phase by phase.

The issue-21 shape: C = 100,000 classes, d = 16, N = 200,000 rows (about 2 rows a class), where
the class-pair metrics (NC2 cosines, GNC2, CDNV, minority collapse: 5e9 pairs) and the
decisions of pass 2 (N x C scores, twice) dominate. Run from the repository root (not part
of the test suite)::

    python benchmarks/bench_pairs.py                          # the full shape (minutes)
    python benchmarks/bench_pairs.py --n 50000 --c 25000      # 1/16 of both costs
    python benchmarks/bench_pairs.py --threads 1,2 --precision float64,float32

The dump (float32 features = class mean + noise, W near the means, zero bias) is written
once by ``benchmarks/bench_report.py``'s generator into ``--dir``. Each (threads,
precision) runs ``ncinspect report FILE --json OUT --quiet --threads T --precision P`` in
this process and prints the wall and process-CPU seconds of the whole report and of its
phases: pass 1, pass 2 (decisions, projections), the class-pair sweep
(:func:`ncinspect.metrics.pairs.class_pairs`) and the rest of the metrics. The pair sweep
costs O(C^2 d), pass 2 O(N C d): scale the figures of a reduced run by (C'/C)^2 and
(N' C')/(N C) respectively. JSON of every thread count is compared byte for byte.

The floor, measured in the same run on one core (one BLAS thread: OpenBLAS threads left
spinning after a product would be counted as CPU time) and scaled to the run's shape: for
the sweep, what no numpy sweep can avoid per pair (the float64 ``log`` and ``sqrt`` of the
distances of both unit sets, timed on distances of random directions in d dimensions, and
the three K = d products of two distinct 256-row blocks); for pass 2, the two products of
width C over all N rows (float64 logits, float32 NCC scores) in cache-sized tiles.
``ratio``: process CPU seconds of the phase over its floor.

The sweep alone (no dump, no report; seconds, not minutes)::

    python benchmarks/bench_pairs.py --sweep 20000          # C' = 20,000 classes, d = 16

times :func:`ncinspect.metrics.pairs.class_pairs` on C' synthetic classes on one thread,
prints its ns per pair, the floor and the ratio, the extrapolation (by pairs) to the
present classes of ``--n`` rows over ``--c`` classes, and the cost per value of ``np.log``
against a sum of logs from grouped mantissa products (the mean of the logs alone: see
:func:`grouped_log_sum`). ``--pass2-parts`` prints the cost per score of the parts of pass
2's float64 classifier path at ``--c`` classes (:func:`pass2_parts`); ``--fused`` what
one loop of compiled code (numba, when installed) takes for one unit set's per-pair work
(:func:`fused_unit_set`).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from contextlib import contextmanager, redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


@contextmanager
def timed(module, name: str, spent: dict, key: str):
    """Add the wall and CPU seconds of every call of ``module.name`` to ``spent[key]``
    (nothing when the module has no such name: an older ncinspect)."""
    inner = getattr(module, name, None)
    if inner is None:
        yield
        return

    def wrapper(*args, **kwargs):
        w, c = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            old = spent.get(key, (0.0, 0.0))
            spent[key] = (old[0] + time.perf_counter() - w, old[1] + time.process_time() - c)

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, inner)


def run(path: str, threads: int, precision: str) -> tuple[dict, str]:
    from ncinspect.analysis import build as analyze_build
    from ncinspect.cli import main
    from ncinspect.engines import local
    from ncinspect.metrics import compute

    out = f"{path}.{threads}.{precision}.json"
    spent: dict = {}
    args = ["report", path, "--json", out, "--quiet", "--threads", str(threads)]
    with (
        timed(local, "first_pass", spent, "pass 1"),
        timed(local, "second_pass", spent, "pass 2"),
        timed(analyze_build, "compute_metrics", spent, "metrics"),
        timed(compute, "class_pairs", spent, "pair sweep"),
    ):
        w, c = time.perf_counter(), time.process_time()
        extra = [] if precision == "float64" else ["--precision", precision]
        with redirect_stdout(io.StringIO()):  # the table
            code = main([*args, *extra])
        spent["report"] = (time.perf_counter() - w, time.process_time() - c)
    assert code == 0, code
    with open(out) as f:
        data = json.load(f)
    os.unlink(out)
    data.pop("ncinspect_version", None)
    w, c = spent["metrics"]
    pw, pc = spent.get("pair sweep", (0.0, 0.0))
    spent["other metrics"] = (w - pw, c - pc)
    return spent, json.dumps(data, sort_keys=True)


def _cpu_per_call(fn, repeat: int) -> float:
    fn()
    t = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t) / repeat


def _tile_distances(d: int, b: int = 256):
    """Two blocks of b random unit vectors in d dimensions (class means' directions) and
    the b x b distances ``sqrt(2 - 2 cos)`` of their pairs: the values the sweep's ``log``
    and ``sqrt`` read (glibc's scalar ``log`` costs more where inputs straddle 1)."""
    import numpy as np

    rng = np.random.default_rng(0)
    u, v = (rng.standard_normal((b, d)) for _ in range(2))
    u /= np.linalg.norm(u, axis=1)[:, None]
    v /= np.linalg.norm(v, axis=1)[:, None]
    cos = np.clip(u @ v.T, -1.0, 1.0).ravel()
    return u, v, np.sqrt(2.0 - 2.0 * cos)


def pair_floor(d: int) -> float:
    """CPU seconds per pair (one core, one BLAS thread) of what no numpy sweep avoids: three
    K = d products of two distinct 256-row blocks (``u @ u.T`` of one block would be BLAS's
    slower symmetric product) and the float64 ``log`` and ``sqrt`` of both unit sets'
    distances, timed on distances of random directions in d dimensions."""
    import numpy as np

    from ncinspect.blas import one_blas_thread

    with one_blas_thread():  # a spinning BLAS thread would be counted as CPU time
        u, v, dist = _tile_distances(d)
        b = u.shape[0]
        tile, out = np.empty((b, b)), np.empty(b * b)
        y = dist * dist
        t = 3 * _cpu_per_call(lambda: np.matmul(u, v.T, out=tile), 200)
        t += 2 * _cpu_per_call(lambda: np.log(dist, out=out), 100)
        t += 2 * _cpu_per_call(lambda: np.sqrt(y, out=out), 200)
    return t / (b * b)


def floors(n: int, d: int, c: int, present: int) -> dict:
    """CPU seconds (one core) of the unavoidable work: see the module docstring."""
    import numpy as np

    from ncinspect.blas import one_blas_thread

    rng = np.random.default_rng(0)
    pairs = present * (present - 1) / 2
    rows, width = 32, min(c, 8192)
    x64, w64 = rng.standard_normal((rows, d)), rng.standard_normal((d, width))
    x32, w32 = x64.astype(np.float32), w64.astype(np.float32)
    o64, o32 = np.empty((rows, width)), np.empty((rows, width), np.float32)
    with one_blas_thread():
        per_block = _cpu_per_call(lambda: np.matmul(x64, w64, out=o64), 200)
        per_block += _cpu_per_call(lambda: np.matmul(x32, w32, out=o32), 200)
    return {"pair sweep": pair_floor(d) * pairs, "pass 2": per_block * n * c / (rows * width)}


def grouped_log_sum(x, group: int = 512) -> float:
    """``sum(log(x))`` of positive normal float64 values from their bits: the binary
    exponents summed exactly, the mantissas (in [1, 2)) multiplied in ``group`` columns
    (each column's product of ``x.size / group`` mantissas stays below 2^1023 while that
    is at most 1023) and one ``log`` per column. The evaluated idea for the sweep's logs:
    it gives the mean of the logs only, and GNC2 needs their variance as well."""
    import numpy as np

    bits = x.view(np.int64)
    e = int(np.sum(bits >> 52)) - 1023 * x.size
    m = ((bits & ((1 << 52) - 1)) | (1023 << 52)).view(np.float64).reshape(-1, group)
    p = m[0].copy()
    for row in m[1:]:
        np.multiply(p, row, out=p)
    return e * float(np.log(2.0)) + float(np.log(p).sum())


def log_costs(d: int) -> dict:
    """Nanoseconds per value, on one tile of distances: ``np.log`` (+ sum), the grouped
    mantissa product's sum of logs, and ``sqrt``."""
    import numpy as np

    from ncinspect.blas import one_blas_thread

    with one_blas_thread():  # OpenBLAS threads left spinning after a product count as CPU
        _, _, dist = _tile_distances(d)
        out = np.empty_like(dist)
        ns = 1e9 / dist.size
        assert abs(grouped_log_sum(dist) - np.log(dist).sum()) < 1e-9 * dist.size
        return {
            "np.log then sum": ns * _cpu_per_call(lambda: np.log(dist, out=out).sum(), 200),
            "grouped mantissa products": ns * _cpu_per_call(lambda: grouped_log_sum(dist), 200),
            "np.sqrt": ns * _cpu_per_call(lambda: np.sqrt(dist, out=out), 200),
        }


def sweep_only(classes: int, d: int, n: int, c: int) -> None:
    """The class-pair sweep alone (``class_pairs``: both unit sets, minority, CDNV) on
    ``classes`` synthetic classes (means and W as ``bench_report.generate`` makes them),
    one thread, against :func:`pair_floor`; extrapolated by pairs to the present classes
    of the full shape (N rows over C classes: C (1 - exp(-N / C)) present)."""
    import numpy as np

    from ncinspect.metrics.pairs import class_pairs

    rng = np.random.default_rng(0)
    means = rng.standard_normal((classes, d))
    means -= means.mean(axis=0)
    weights = means + 0.1 * rng.standard_normal((classes, d))
    var = rng.random(classes) * 0.25 * d
    counts = rng.integers(1, 5, classes)
    t = time.process_time()
    class_pairs(means, weights, counts, cdnv=(var, means))
    cpu = time.process_time() - t
    pairs = classes * (classes - 1) / 2
    floor = pair_floor(d)
    present = c * (1.0 - np.exp(-n / c))
    full = present * (present - 1) / 2
    print(f"# pair sweep alone, C = {classes}, d = {d}, 1 thread: {cpu:.2f} CPU s, ")
    print(f"#   {cpu / pairs * 1e9:.1f} ns/pair; floor {floor * 1e9:.1f} ns/pair; ratio ")
    print(f"#   {cpu / pairs / floor:.2f}; at C = {c}, N = {n} ({present:.0f} present classes, ")
    print(f"#   {full:.3g} pairs): {cpu / pairs * full:.0f} CPU s, floor {floor * full:.0f}")
    for name, ns in log_costs(d).items():
        print(f"# {name}: {ns:.2f} ns per value")
    device_sweep_on_cpu(means, weights, counts, var, cpu / pairs, floor)


def device_sweep_on_cpu(means, weights, counts, var, numpy_per_pair, floor) -> None:
    """The same sweep through the device kernels (``metrics/pairs_xp.py``) on torch CPU
    tensors, one thread: why a Meter in host memory keeps the numpy sweep."""
    try:
        import torch
    except ImportError:
        print("# the device sweep on torch CPU: torch is not installed")
        return
    from functools import partial

    import array_api_compat

    from ncinspect.metrics.pairs import class_pairs
    from ncinspect.metrics.pairs_xp import pair_sweep_xp

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        xp = array_api_compat.array_namespace(torch.zeros(1))
        sweep = partial(pair_sweep_xp, xp, torch.device("cpu"))
        t = time.process_time()
        class_pairs(means, weights, counts, cdnv=(var, means), sweep=sweep)
        cpu = time.process_time() - t
    finally:
        torch.set_num_threads(threads)
    C = means.shape[0]
    per = cpu / (C * (C - 1) / 2)
    print(f"# the device sweep (pairs_xp) on torch CPU tensors, 1 thread: {per * 1e9:.1f} ns/pair")
    print(f"#   (ratio {per / floor:.2f} to the floor; numpy's {numpy_per_pair * 1e9:.1f} ns/pair)")


def pass2_parts(c: int, d: int, rows: int = 32) -> None:
    """Nanoseconds per score (one core, one BLAS thread) of the parts of pass 2's float64
    classifier path on one block of ``rows`` rows against C classes, as
    ``stats.kernel.numpy_block`` runs them when the logits are float64 (C >= d), and of two
    variants proposed for it: the offset folded into the product (``[x, 1] . [W; offset]``,
    K = d + 1) and the wrong-class square sum by ``ddot`` instead of ``einsum``."""
    import numpy as np

    from ncinspect.blas import one_blas_thread
    from ncinspect.stats.blocks import output_sums

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, d))
    w = np.ascontiguousarray(rng.standard_normal((d, c)))
    off = 0.1 * rng.standard_normal(c)
    y = rng.integers(0, c, rows)
    x1, w1 = np.hstack([x, np.ones((rows, 1))]), np.vstack([w, off[None, :]])
    s = np.empty((rows, c))
    s32 = np.empty((rows, c), np.float32)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    scale = 1e9 / (rows * c)
    parts = {
        "float64 product x W (the floor's first half)": lambda: np.matmul(x, w, out=s),
        "float32 product (NCC scores; the floor's second half)": lambda: np.matmul(
            x32, w32, out=s32
        ),
        "offset added to the logits": lambda: np.add(s, off, out=s),
        "argmax": lambda: np.argmax(s, axis=1),
        "output_sums (SQI sums of the logits)": lambda: output_sums(s, y, scratch=True),
        "  of which the einsum of the squares": lambda: np.einsum("ij,ij->", s, s),
        "proposed: the product with the offset folded in (K = d + 1)": lambda: np.matmul(
            x1, w1, out=s
        ),
        "proposed: the squares by ddot": lambda: np.dot(s.ravel(), s.ravel()),
    }
    print(f"# pass 2 parts, one block of {rows} rows x C = {c}, d = {d}, ns per score:")
    with one_blas_thread():
        np.matmul(x, w, out=s)
        for name, fn in parts.items():
            print(f"#   {name}: {_cpu_per_call(fn, 20) * scale:.2f}")


def fused_unit_set(d: int) -> None:
    """What compiled code would give (needs numba, which ncinspect does not depend on): one
    unit set's per-pair work after the tile's product (clip, the sums of the cosines,
    ``|cos + a|``, the distances and their logs) fused into one loop over a 256 x 256 tile,
    ns per pair on one core, with and without the ``log`` (libm's scalar ``log`` there too).
    The plain sums stand in for the centred ones; it is a cost estimate, not a kernel."""
    import numpy as np

    try:
        import numba
    except ImportError:
        print("# --fused needs numba (pip install numba); ncinspect does not depend on it")
        return

    from ncinspect.blas import one_blas_thread

    def with_log(cos, a):
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = 0.0
        for i in range(cos.size):
            c = min(max(cos[i], -1.0), 1.0)
            s0 += c
            s1 += c * c
            s2 += abs(c + a)
            dist = np.sqrt(2.0 - 2.0 * c)
            s3 += dist
            s4 += dist * dist
            lg = np.log(dist)
            s5 += lg
            s6 += lg * lg
        return s0, s1, s2, s3, s4, s5, s6

    def without_log(cos, a):
        s0 = s1 = s2 = s3 = s4 = 0.0
        for i in range(cos.size):
            c = min(max(cos[i], -1.0), 1.0)
            s0 += c
            s1 += c * c
            s2 += abs(c + a)
            dist = np.sqrt(2.0 - 2.0 * c)
            s3 += dist
            s4 += dist * dist
        return s0, s1, s2, s3, s4

    u, v, _ = _tile_distances(d)
    tile = np.empty((u.shape[0], v.shape[0]))
    ns = 1e9 / tile.size
    with one_blas_thread():
        for fn in (with_log, without_log):
            fused = numba.njit(fastmath={"reassoc", "contract"})(fn)

            def run(fused=fused):
                np.matmul(u, v.T, out=tile)
                fused(tile.ravel(), 1e-5)

            cost = _cpu_per_call(run, 200) * ns
            name = fn.__name__.replace("_", " ")
            print(
                f"# numba, the product + one fused loop, {name}: {cost:.2f} ns per pair (one set)"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="rows (default 200,000)")
    parser.add_argument("--d", type=int, default=16, help="features (default 16)")
    parser.add_argument("--c", type=int, default=100_000, help="classes (default 100,000)")
    parser.add_argument("--threads", default="1,2", help="comma-separated (default 1,2)")
    parser.add_argument("--precision", default="float64", help="float64 and/or float32")
    parser.add_argument("--dir", default="/tmp/ncbench", help="where the dump is written")
    parser.add_argument(
        "--sweep",
        type=int,
        default=0,
        metavar="C'",
        help="time only the class-pair sweep on C' synthetic classes (no dump, no report)",
    )
    parser.add_argument(
        "--pass2-parts",
        action="store_true",
        help="time only the parts of pass 2's float64 classifier path on one block",
    )
    parser.add_argument(
        "--fused",
        action="store_true",
        help="cost of one unit set's per-pair work fused by numba (if installed)",
    )
    args = parser.parse_args(argv)
    if args.fused:
        fused_unit_set(args.d)
        return 0
    if args.pass2_parts:
        pass2_parts(args.c, args.d)
        return 0
    if args.sweep:
        sweep_only(args.sweep, args.d, args.n, args.c)
        return 0

    from bench_report import generate

    os.makedirs(args.dir, exist_ok=True)
    path = os.path.join(args.dir, f"gen_{args.n}x{args.d}_c{args.c}.h5")
    if not os.path.exists(path):
        generate(path, args.n, args.d, args.c)
    print(f"# {path}: N = {args.n}, d = {args.d}, C = {args.c}; {os.cpu_count()} CPUs")
    print(f"# load average before: {os.getloadavg()[0]:.1f}")
    phases = ("report", "pass 1", "pass 2", "pair sweep", "other metrics")
    print("| threads | precision | " + " | ".join(f"{p} wall / CPU s" for p in phases) + " |")
    print("| --- | --- |" + " --- |" * len(phases))
    texts = {}
    for precision in args.precision.split(","):
        for t in (int(v) for v in args.threads.split(",")):
            spent, text = run(path, t, precision)
            last = spent
            texts.setdefault(precision, set()).add(text)
            cells = " | ".join("{:.1f} / {:.1f}".format(*spent.get(p, (0.0, 0.0))) for p in phases)
            print(f"| {t} | {precision} | {cells} |", flush=True)
    for precision, seen in texts.items():
        same = "byte-identical" if len(seen) == 1 else "DIFFERENT"
        print(f"# JSON over the thread counts, {precision}: {same}")
    snap = json.loads(next(iter(texts[precision])))["snapshots"][0]
    present = snap.get("n_classes") or args.c  # the pairs are those of the present classes
    for phase, floor in floors(args.n, args.d, args.c, present).items():
        cpu = last[phase][1]
        print(
            f"# floor of {phase} (one core, this run's shape): {floor:.1f} CPU s; "
            f"last row {cpu:.1f} CPU s, ratio {cpu / floor:.2f}"
        )
    print(f"# load average after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
