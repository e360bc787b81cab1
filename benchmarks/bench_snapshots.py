"""Benchmark the fixed cost of one snapshot in ``ncinspect report`` and ``ncinspect info``.

Run from the repository root (not part of the test suite)::

    python benchmarks/bench_snapshots.py                    # 200 and 1,000 snapshots
    python benchmarks/bench_snapshots.py --sizes 1000,10000 # the issue's 10,000
    python benchmarks/bench_snapshots.py --profile          # cProfile of the larger report
    python benchmarks/bench_snapshots.py --commands check,check-last,theory,plot
    python benchmarks/bench_snapshots.py --phases 10000     # where one report's time goes
    python benchmarks/bench_snapshots.py --analyze 500      # one worker's analysis, in a loop

For each size S an HDF5 dump of S tiny snapshots (40 rows, d = 8, C = 4 features and a
classifier per snapshot, labels once at the top) is written to a temporary folder; then
``report FILE --json OUT --quiet`` and ``info FILE`` run in-process (imports and one warm-up
run excluded), their output sent to a null device. The per-snapshot cost is the slope
between the two sizes, ``(t(S2) - t(S1)) / (S2 - S1)``, so what is paid once per file
(imports, the HDF5 metadata probe's child, the process) drops out. Both the wall-clock time
and the CPU time of the process (with its worker processes: a report of many small snapshots
forks one per core, see ncinspect/engines/processes.py) are reported. ``--threads 1`` keeps
every snapshot in the one process. The floor, measured the same way in the same run, is
what any reader pays for a snapshot: h5py opening its group and reading its two arrays
(:func:`floor`); each command's slope is also given as a ratio to the floor's.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time

import numpy as np


def write_dump(path: str, snapshots: int, n: int = 40, d: int = 8, C: int = 4) -> None:
    import h5py

    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["labels"] = np.arange(n) % C
        for e in range(snapshots):
            g = f.create_group(f"epoch_{e:05d}")
            g["features"] = rng.standard_normal((n, d)).astype("f4")
            g["weights"] = rng.standard_normal((C, d)).astype("f4")
            g.attrs["epoch"] = e


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended (the worker
    processes a report of many snapshots forks are joined before it returns)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run(args: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one in-process CLI call, stdout and stderr discarded;
    the CPU seconds include those of the worker processes it forked."""
    from ncinspect.cli import main

    sink = open(os.devnull, "w")  # noqa: SIM115 - closed below
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            w0, c0 = time.perf_counter(), _cpu()
            rc = main(args)
            w1, c1 = time.perf_counter(), _cpu()
    finally:
        sink.close()
    if rc != 0:
        raise SystemExit(f"ncinspect {' '.join(args)} exited {rc}")
    return w1 - w0, c1 - c0


def floor(path: str) -> tuple[float, float]:
    """(wall, CPU) seconds of the least any tool pays per snapshot: open the file, and for
    each snapshot open its group and read its features and weights whole (h5py's
    low-level calls, no checks, no maths)."""
    import h5py

    w0, c0 = time.perf_counter(), _cpu()
    with h5py.File(path, "r") as f:
        for name in f:
            if name == "labels":
                continue
            group = f[name]
            for key in ("features", "weights"):
                ds = group[key].id
                out = np.empty(ds.shape, dtype=ds.dtype)
                ds.read(h5py.h5s.ALL, h5py.h5s.ALL, out)
    return time.perf_counter() - w0, _cpu() - c0


def phases(path: str, tmp: str) -> None:
    """Where one ``report FILE --json OUT`` of ``path`` spends its time: the phases of the
    command, each with its wall and CPU seconds (with the CPU of the child processes that
    ended in it: the HDF5 probe's in the walk, the workers' in the snapshots) and per
    snapshot. The phases are timed by wrapping the functions that run them."""
    import ncinspect.cli.common as common
    import ncinspect.dump as dump
    import ncinspect.engines.processes as processes
    import ncinspect.render.table as table
    import ncinspect.results.report as report

    marks: list[tuple[str, float, float]] = []

    def timed(owner, name: str, label: str, generator: bool = False) -> None:
        inner = getattr(owner, name)

        def plain(*args, **kwargs):
            marks.append((label, time.perf_counter(), _cpu()))
            try:
                return inner(*args, **kwargs)
            finally:
                marks.append(("", time.perf_counter(), _cpu()))

        def gen(*args, **kwargs):
            marks.append((label, time.perf_counter(), _cpu()))
            yield from inner(*args, **kwargs)
            marks.append(("", time.perf_counter(), _cpu()))

        setattr(owner, name, gen if generator else plain)

    saved = [
        (dump.Dump, "_open"),
        (dump.Dump, "close"),
        (processes, "forked_map"),
        (report.Report, "to_json"),
        (common, "emit"),
        (table, "render_report"),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name in saved]
    timed(dump.Dump, "_open", "walk (and probe)")
    timed(processes, "forked_map", "snapshots (workers)", generator=True)
    timed(dump.Dump, "close", "close the file")
    timed(report.Report, "to_json", "JSON text")
    timed(common, "emit", "JSON written")
    timed(table, "render_report", "table")
    try:
        w0, c0 = time.perf_counter(), _cpu()
        run(["report", path, "--json", os.path.join(tmp, "phases.json"), "--quiet"])
        w1, c1 = time.perf_counter(), _cpu()
    finally:
        for owner, name, inner in saved:
            setattr(owner, name, inner)
    import h5py

    with h5py.File(path, "r") as f:
        count = sum(1 for name in f if name != "labels")
    print(f"phases of one report of {count} snapshots (wall s, cpu s, and per snapshot):")
    timed_wall = timed_cpu = 0.0
    for (label, wa, ca), (_, wb, cb) in zip(marks[::2], marks[1::2], strict=True):
        if label == "close the file" and wb - wa < 1e-3:
            continue  # a close of a closed dump
        timed_wall, timed_cpu = timed_wall + wb - wa, timed_cpu + cb - ca
        print(
            f"  {label:22} {wb - wa:7.2f} {cb - ca:7.2f}   "
            f"{1e3 * (wb - wa) / count:6.3f} ms {1e3 * (cb - ca) / count:6.3f} ms"
        )
    rest_w, rest_c = w1 - w0 - timed_wall, c1 - c0 - timed_cpu
    print(
        f"  {'the rest':22} {rest_w:7.2f} {rest_c:7.2f}   "
        f"{1e3 * rest_w / count:6.3f} ms {1e3 * rest_c / count:6.3f} ms"
    )
    print(
        f"  {'report':22} {w1 - w0:7.2f} {c1 - c0:7.2f}   "
        f"{1e3 * (w1 - w0) / count:6.3f} ms {1e3 * (c1 - c0) / count:6.3f} ms"
    )
    fw, fc = floor(path)  # in the same run: what any reader pays for these snapshots
    print(
        f"  {'floor (h5py reads)':22} {fw:7.2f} {fc:7.2f}   "
        f"{1e3 * fw / count:6.3f} ms {1e3 * fc / count:6.3f} ms   "
        f"(report: {(w1 - w0) / fw:.1f}x its wall)"
    )


def analyze_loop(loops: int) -> None:
    """CPU ms of one ``analyze()`` of a tiny snapshot (the arrays of :func:`write_dump`: 40
    rows, d = 8, C = 4, float32, with a classifier), on one thread with BLAS on one thread,
    as a report's worker process runs it: best of three loops of ``loops`` calls over 50
    different snapshots, after a warm-up loop; and, in the same loops, the floor of the same
    rows (one float64 read and one product of width 2C) and the ratio to it."""
    from ncinspect import analyze
    from ncinspect.blas import hold_one_blas_thread
    from ncinspect.engines.local import LocalEngine

    rng = np.random.default_rng(0)
    n, d, C = 40, 8, 4
    labels = np.arange(n) % C
    feats = [rng.standard_normal((n, d)).astype("f4") for _ in range(50)]
    weights = [rng.standard_normal((C, d)).astype("f4") for _ in range(50)]
    engine = LocalEngine(threads=1)
    hold_one_blas_thread()

    def loop(k: int) -> None:
        for i in range(k):
            analyze(feats[i % 50], labels, weights=weights[i % 50], engine=engine)

    # the floor: one float64 read of the rows and one product of width 2C (the class means
    # and W), what any computation of the metrics of these rows must do
    centres = np.vstack([rng.standard_normal((C, d)), weights[0]]).T

    def floor_loop(k: int) -> None:
        for i in range(k):
            np.asarray(feats[i % 50], dtype=np.float64) @ centres

    loop(50)
    best, floors = [], []
    for _ in range(3):
        c0 = time.process_time()
        loop(loops)
        best.append(1e3 * (time.process_time() - c0) / loops)
        c0 = time.process_time()
        floor_loop(loops)
        floors.append(1e3 * (time.process_time() - c0) / loops)
    print(f"analyze() of a 40 x 8, C = 4 snapshot: {' '.join(f'{b:.3f}' for b in best)} CPU ms")
    print(
        f"floor (a float64 read and a product of width 2C): {min(floors) * 1e3:.1f} CPU us; "
        f"analyze() {min(best) / min(floors):.0f}x it"
    )


def _args(command: str, path: str, tmp: str, threads: list[str]) -> list[str]:
    """The CLI call that ``--commands`` names, its outputs in ``tmp``."""
    out = os.path.join(tmp, "out")
    calls = {
        "report": ["report", path, "--json", out + ".json", "--quiet"],
        "info": ["info", path],
        "check": ["check", path, "--max", "nc1=1e9", "--non-increasing", "nc1:rtol=1e9"],
        "check-last": ["check", path, "--max", "nc1=1e9"],
        "theory": ["theory", path, "--json", out + "-theory.json"],
        "plot": ["plot", path, "-o", out + "-plots", "-f", "png", "--dpi", "30", "-q"],
    }
    if command not in calls:
        raise SystemExit(f"--commands: {command!r} is none of {', '.join(calls)}")
    return [*calls[command], *(threads if command != "info" else [])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,1000", help="two snapshot counts, S1,S2")
    parser.add_argument("--profile", action="store_true", help="cProfile the larger report")
    parser.add_argument(
        "--phases", type=int, default=0, help="time the phases of one report of this many snapshots"
    )
    parser.add_argument(
        "--analyze", type=int, default=0, help="time this many analyze() calls (a worker's share)"
    )
    parser.add_argument("--threads", default=None, help="passed to report (1: no worker processes)")
    parser.add_argument(
        "--commands",
        default="report,info",
        help="comma-separated, of report, info, check (a trend rule: every snapshot), "
        "check-last (the last epoch's rules only), theory, plot",
    )
    opts = parser.parse_args()
    commands = [c.strip() for c in opts.commands.split(",") if c.strip()]
    if opts.analyze:
        analyze_loop(opts.analyze)
        return
    if opts.phases:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"snaps{opts.phases}.h5")
            write_dump(path, opts.phases)
            run(["report", path, "--json", os.path.join(tmp, "warm.json"), "--quiet"])
            phases(path, tmp)
        return
    s1, s2 = (int(x) for x in opts.sizes.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for s in (s1, s2):
            files[s] = os.path.join(tmp, f"snaps{s}.h5")
            write_dump(files[s], s)
        out = os.path.join(tmp, "out.json")
        threads = ["--threads", opts.threads] if opts.threads else []
        run(["report", files[s1], "--json", out, "--quiet"])  # imports, caches
        results = {}
        for s in (s1, s2):  # the floor, in the same run
            results["floor", s] = floor(files[s])
        for command in commands:
            for s in (s1, s2):
                results[command, s] = run(_args(command, files[s], tmp, threads))
        print(f"ncinspect {sys.argv[0]}: {s1} and {s2} snapshots (40 x 8, C = 4)")
        print(f"{'command':10} {'S':>6} {'wall s':>8} {'cpu s':>8}")
        for (command, s), (wall, cpu) in results.items():
            print(f"{command:10} {s:>6} {wall:8.2f} {cpu:8.2f}")
        print(
            "per snapshot (slope between the two sizes), its ratio to the floor's wall, and "
            "its overhead (its wall less the floor's: item 8 asks 1 ms or less):"
        )
        slope = {}
        for command in ["floor", *commands]:
            (w1, c1), (w2, c2) = results[command, s1], results[command, s2]
            slope[command] = (1e3 * (w2 - w1) / (s2 - s1), 1e3 * (c2 - c1) / (s2 - s1))
            wall, cpu = slope[command]
            ratio = wall / slope["floor"][0] if slope["floor"][0] > 0 else float("nan")
            over = wall - slope["floor"][0]
            print(
                f"  {command:10} wall {wall:6.2f} ms   cpu {cpu:6.2f} ms   {ratio:5.1f}x the floor"
                + (f"   overhead {over:5.2f} ms" if command != "floor" else "")
            )
        if opts.profile:
            prof = cProfile.Profile()
            prof.enable()
            run(["report", files[s2], "--json", out, "--quiet", *threads])
            prof.disable()
            text = io.StringIO()
            stats = pstats.Stats(prof, stream=text).sort_stats(os.environ.get("SORT", "tottime"))
            stats.print_stats(int(os.environ.get("NSTAT", "25")))
            print(text.getvalue())


if __name__ == "__main__":
    main()
