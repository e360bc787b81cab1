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

The floor, measured in the same run on one core and scaled to the run's shape: for the
sweep, what no numpy sweep can avoid per pair (the float64 ``log`` and ``sqrt`` of the
distances of both unit sets and the three K = d products of a 256 x 256 tile); for pass 2,
the two products of width C over all N rows (float64 logits, float32 NCC scores) in
cache-sized tiles. ``ratio``: process CPU seconds of the phase over its floor.
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


def floors(n: int, d: int, c: int, present: int) -> dict:
    """CPU seconds (one core) of the unavoidable work: see the module docstring."""
    import numpy as np

    rng = np.random.default_rng(0)
    b = 256
    u = rng.standard_normal((b, d))
    tile, z = np.empty((b, b)), rng.random(b * b) + 0.5
    out = np.empty(b * b)
    per_tile = 3 * _cpu_per_call(lambda: np.matmul(u, u.T, out=tile), 200)
    per_tile += 2 * _cpu_per_call(lambda: np.log(z, out=out), 100)
    per_tile += 2 * _cpu_per_call(lambda: np.sqrt(z, out=out), 200)
    pairs = present * (present - 1) / 2
    rows, width = 32, min(c, 8192)
    x64, w64 = rng.standard_normal((rows, d)), rng.standard_normal((d, width))
    x32, w32 = x64.astype(np.float32), w64.astype(np.float32)
    o64, o32 = np.empty((rows, width)), np.empty((rows, width), np.float32)
    per_block = _cpu_per_call(lambda: np.matmul(x64, w64, out=o64), 200)
    per_block += _cpu_per_call(lambda: np.matmul(x32, w32, out=o32), 200)
    return {
        "pair sweep": per_tile * pairs / (b * b),
        "pass 2": per_block * n * c / (rows * width),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200_000, help="rows (default 200,000)")
    parser.add_argument("--d", type=int, default=16, help="features (default 16)")
    parser.add_argument("--c", type=int, default=100_000, help="classes (default 100,000)")
    parser.add_argument("--threads", default="1,2", help="comma-separated (default 1,2)")
    parser.add_argument("--precision", default="float64", help="float64 and/or float32")
    parser.add_argument("--dir", default="/tmp/ncbench", help="where the dump is written")
    args = parser.parse_args(argv)

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
