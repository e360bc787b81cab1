"""Benchmark ``ncinspect report`` on a vocabulary-size classifier: C = 50,000, d = 768.

Run from the repository root (not part of the test suite; run it once, it takes minutes)::

    python benchmarks/bench_large_c.py make  [--n 100000] [--folder /tmp/ncbench_largec]
    /usr/bin/time -v python benchmarks/bench_large_c.py report [--folder ...]

``make`` writes a float32 HDF5 dump shaped like a GPT-2 head evaluated on a token sample:
W (50,000 x 768), one ``test`` snapshot of N feature rows whose labels follow a Zipf law over
the vocabulary, so most classes are absent from the split (the count is printed). ``report``
runs ``ncinspect report FILE --json OUT --quiet`` in this process and prints the wall time of
the whole report and, separately, of the generalized metrics (ncinspect.metrics.general)
recomputed on the same class-level arrays; ``/usr/bin/time -v`` gives the peak resident memory
("Maximum resident set size"). Results are in docs/performance.md.

The other large-C shape, issue 21's C = 100,000 classes in d = 16 (N = 200,000), where the
class-pair sweep and pass 2's decisions dominate, is ``benchmarks/bench_pairs.py`` (phase by
phase, with floors; ``--sweep C'`` times the pair sweep alone).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

C, D = 50_000, 768


def make(folder: str, n: int, seed: int = 0) -> str:
    from ncinspect import DumpWriter

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"large_c_{n}.h5")
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((C, D)) / np.sqrt(D)).astype(np.float32)
    p = 1.0 / np.arange(1, C + 1) ** 1.1  # Zipf: token k has frequency ~ 1/k^1.1
    y = rng.choice(C, size=n, p=p / p.sum())
    with DumpWriter(path, "w") as dump:
        dump.write("labels", y, group="test")
        snap = dump.snapshot("test/epoch_0001", epoch=1, split="test")
        snap.write(weights=w)
        for i in range(0, n, 20_000):
            yy = y[i : i + 20_000]
            h = 4.0 * w[yy] + 0.05 * rng.standard_normal((yy.size, D)).astype(np.float32)
            snap.append(features=h.astype(np.float32))
    present = np.unique(y).size
    print(f"{path}: N={n} d={D} C={C}, {present} classes present, {C - present} absent")
    return path


def report(folder: str, n: int) -> None:
    from ncinspect.cli import main
    from ncinspect.metrics import compute

    path = os.path.join(folder, f"large_c_{n}.h5")
    out = os.path.join(folder, f"large_c_{n}.json")
    inner = compute.general_metrics
    spent = []

    def timed(*args, **kwargs):  # the generalized metrics' share of the report
        t = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t)

    compute.general_metrics = timed
    t0 = time.perf_counter()
    code = main(["report", path, "--json", out, "--quiet"])
    total = time.perf_counter() - t0
    with open(out) as f:
        snap = json.load(f)["snapshots"][0]
    m = snap["metrics"]
    print(
        f"exit {code}; report: {total:.1f} s wall, of which generalized metrics {sum(spent):.1f} s"
    )
    print(f"  n_classes={snap.get('n_classes')} n_classes_total={snap.get('n_classes_total')}")
    keys = ("etf_feasible", "etf_error_floor", "etf_error_means", "gnc2_log_means")
    keys += ("gnc2_energy_log_means", "unc3_uniform_duality", "of_error_means")
    keys += ("seli_error_means", "minority_collapse", "nc1", "accuracy_classifier")
    for key in keys:
        print(f"  {key} = {m.get(key)}")
    for line in snap["warnings"]:
        print(f"  warning: {line[:160]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["make", "report"])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--folder", default="/tmp/ncbench_largec")
    args = parser.parse_args()
    if args.what == "make":
        make(args.folder, args.n)
    else:
        report(args.folder, args.n)
    sys.exit(0)
