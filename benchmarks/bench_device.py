"""Time the Meter where the features live, against the floor measured in the same run.

Cases (float32 features, generated from a seed on the device, batch k the same on every run;
generating them is never timed):

* ``imagenet``: N = 1,281,167 rows, d = 2048, C = 1000, batches of 4096 (a ResNet-50 head
  on ImageNet-1k); reduced by default on a CPU (``--rows``, ``--dim``, ``--classes``).
* ``vocab``: a language-model head, C = 50,257, d = 768, Zipf-distributed tokens (2^20 with
  ``--full``; 512 by default on a CPU), batches of 8192.

For each it prints, on the device of the run:

* the floor: one read of every row and one float64 product of width 2C over all rows
  (``h.double() @ [M | W]^T``, what pass 2 cannot avoid), in batches (with
  ``--precision float32``: a float32 product);
* the Meter, both passes + ``compute()``, on device tensors (precision float64, or
  ``--precision``), and its ratio to the floor;
* on a CPU: the same Meter on numpy copies of the same rows, and the ratio torch / numpy
  (the target is <= 1.25), with the largest relative difference of any metric;
* ``Meter.update`` on 256 rows: the median latency in pass 1 and pass 2 (synchronised).

Run from the repository root (not part of the test suite)::

    python benchmarks/bench_device.py                 # reduced on a CPU (under a minute)
    python benchmarks/bench_device.py --full          # a GPU: the full ImageNet and vocab shapes
    python benchmarks/bench_device.py --json out.json
    python benchmarks/bench_device.py --full --cases vocab   # one case (benchmarks/device_run.sh)
    python benchmarks/bench_device.py --precision float32 --rows 32768 --dim 256 \
        --classes 8192 --skip-vocab                   # the issue's float32 CPU case
    python benchmarks/bench_device.py --ignore 0.25   # a quarter of the rows padding
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

N_IMAGENET, D_IMAGENET, C_IMAGENET = 1_281_167, 2048, 1000
C_VOCAB, D_VOCAB = 50_257, 768
IGNORE = -100  #: the label of padding rows (``--ignore``)


def pick_device(requested: str):
    import torch

    if requested == "cpu" or (requested == "auto" and not torch.cuda.is_available()):
        import platform

        why = "no GPU" if requested == "auto" else "--device cpu"
        cpu = platform.processor() or platform.machine()
        return torch.device("cpu"), f"CPU ({cpu}, {why}), torch {torch.__version__}"
    if not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False")
    torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name(0)
    return torch.device("cuda:0"), f"CUDA device 0: {name}, torch {torch.__version__}, TF32 off"


def make_case(rows, d, C, batch, device, seed=0, zipf=False, ignore=0.0):
    """Batches (h float32, y int64) on ``device``, the classifier W, b (float32); a fraction
    ``ignore`` of the labels (drawn on the device) replaced by -100 (padding)."""
    import torch

    g = torch.Generator(device="cpu").manual_seed(seed)
    means = torch.randn(C, d, generator=g) * 0.2
    w = (means + 0.05 * torch.randn(C, d, generator=g)).to(device)
    b = (0.01 * torch.randn(C, generator=g)).to(device)
    means = means.to(device)
    if zipf:  # token frequencies ~ 1/rank
        p = 1.0 / torch.arange(1, C + 1, dtype=torch.float64)
        p = (p / p.sum()).to(device)
    batches = []
    for k in range(math.ceil(rows / batch)):
        n = min(batch, rows - k * batch)
        gk = torch.Generator(device=device).manual_seed(seed + 1 + k)
        if zipf:
            y = torch.multinomial(p, n, replacement=True, generator=gk)
        else:
            y = torch.randint(0, C, (n,), generator=gk, device=device)
        h = torch.relu(means[y] + torch.randn(n, d, generator=gk, device=device))
        if ignore:
            pad = torch.rand(n, generator=gk, device=device) < ignore
            y = torch.where(pad, torch.full_like(y, IGNORE), y)
        batches.append((h, y))
    return batches, w, b


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_seconds(batches, w, means_like, device, precision="float64") -> float:
    """(wall, CPU) seconds of one read of every row (a copy in ``precision``) and one
    product of width 2C in ``precision``, the better of two runs."""
    import torch

    dtype = torch.float64 if precision == "float64" else torch.float32
    stack = torch.cat([means_like, w]).to(dtype).T.contiguous()  # (d, 2C)
    best, best_cpu = math.inf, math.inf
    for _ in range(2):
        sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        for h, _ in batches:
            torch.matmul(h.to(dtype, copy=True), stack)
        sync(device)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def meter_seconds(batches, w, b, device, precision="float64", split=None, ignore_index=None):
    """(result, wall seconds, process CPU seconds) of both passes + compute; ``split`` (a
    dict), when given, gets the wall seconds of the passes alone (``passes_s``, synchronised
    before compute) and of compute (``compute_s``)."""
    import ncinspect

    meter = ncinspect.Meter(weights=w, bias=b, precision=precision, ignore_index=ignore_index)
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(2):
        for h, y in batches:
            meter.update(h, y)
        if meter.pass_number == 1:
            meter.next_pass()
    sync(device)
    t1 = time.perf_counter()
    print(f"  (the two passes took {t1 - t0:.3f} s; compute() now)", flush=True)
    result = meter.compute()
    sync(device)
    t2 = time.perf_counter()
    if split is not None:
        split.update(passes_s=t1 - t0, compute_s=t2 - t1)
    return result, t2 - t0, time.process_time() - c0


def latency_ms(batches, w, b, device, precision="float64", rows=256, repeats=20, ignore_index=None):
    """Median milliseconds of one ``update`` of ``rows`` rows in pass 1 and in pass 2:
    ``(wall p1, wall p2, process CPU p1, process CPU p2)``."""
    import ncinspect

    meter = ncinspect.Meter(weights=w, bias=b, precision=precision, ignore_index=ignore_index)
    h, y = batches[0][0][:rows], batches[0][1][:rows]
    wall, cpu = [], []
    for _ in range(2):
        times, cpus = [], []
        for _ in range(repeats):
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            meter.update(h, y)
            sync(device)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        wall.append(1e3 * statistics.median(times))
        cpu.append(1e3 * statistics.median(cpus))
        if meter.pass_number == 1:
            for h2, y2 in batches:  # pass 1 over the rows pass 2 will see
                meter.update(h2, y2)
            meter.next_pass()
    return (*wall, *cpu)


#: aten operations that make a view (no kernel on a GPU): left out of the kernel count
VIEW_OPS = {
    "alias",
    "as_strided",
    "detach",
    "expand",
    "lift_fresh",
    "permute",
    "reshape",
    "select",
    "slice",
    "squeeze",
    "t",
    "transpose",
    "unsqueeze",
    "view",
    "_reshape_alias",
}


def kernels_per_update(batches, w, b, device, precision="float64", rows=256):
    """The aten operations of one ``update`` of ``rows`` rows in pass 1 and in pass 2, less
    the views: each is a kernel launch on a GPU, whose fixed cost (a few microseconds)
    bounds a small batch's latency. On a CPU the rows go through the namespace kernel that
    device arrays take (``stats.device.on_host`` said False), so the count is the GPU's.
    Returns ``(pass 1, pass 2)``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    import ncinspect
    from ncinspect.stats import device as stats_device

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ not in VIEW_OPS:
                Count.n += 1
            return func(*args, **(kwargs or {}))

    real = stats_device.on_host
    if device.type == "cpu":
        stats_device.on_host = lambda xp, h: False
    try:
        meter = ncinspect.Meter(weights=w, bias=b, precision=precision)
        h, y = batches[0][0][:rows], batches[0][1][:rows]
        counts = []
        for _ in range(2):
            meter.update(h, y)  # placements and first-use constants are not per batch
            Count.n = 0
            with Count():
                meter.update(h, y)
            counts.append(Count.n)
            if meter.pass_number == 1:
                for h2, y2 in batches:
                    meter.update(h2, y2)
                meter.next_pass()
    finally:
        stats_device.on_host = real
    return counts[0], counts[1]


def max_rel_diff(a, b) -> tuple[float, str]:
    worst, where = 0.0, ""
    for key, want in b.metrics.items():
        got = a.metrics.get(key)
        if want is None or got is None or isinstance(want, bool):
            if got != want:
                return math.inf, key
            continue
        diff = abs(got - want) / max(abs(want), 1e-300)
        if diff > worst:
            worst, where = diff, key
    return worst, where


def run_case(
    name, rows, d, C, batch, device, zipf, numpy_too, report, precision="float64", ignore=0.0
):
    import torch

    batches, w, b = make_case(rows, d, C, batch, device, zipf=zipf, ignore=ignore)
    print(f"\n[{name}] N={rows:,} d={d} C={C:,} float32 batches of {batch}, {precision}")
    ign = IGNORE if ignore else None
    if ignore:
        print(f"  a fraction {ignore} of the labels is {IGNORE}: Meter(ignore_index={IGNORE})")
    floor, floor_cpu = floor_seconds(batches, w, w * 0.5, device, precision)
    split = {}
    res, secs, cpu = meter_seconds(batches, w, b, device, precision, split, ign)
    entry = {"rows": rows, "d": d, "C": C, "batch": batch, "floor_s": floor, "meter_s": secs}
    entry.update(split)
    entry.update(floor_cpu_s=floor_cpu, meter_cpu_s=cpu, precision=precision, ignore=ignore)
    print("  (wall seconds; process CPU seconds in brackets)")
    print(f"  floor (read + {precision} product of width 2C): {floor:8.3f} s [{floor_cpu:7.3f}]")
    print(
        f"  Meter on {device.type} tensors, both passes + compute: {secs:8.3f} s [{cpu:7.3f}] "
        f"= {secs / floor:.1f}x the floor [{cpu / floor_cpu:.1f}x]"
    )
    print(
        f"    of which the two passes {split['passes_s']:.3f} s "
        f"({split['passes_s'] / floor:.1f}x the floor), compute() {split['compute_s']:.3f} s"
    )
    if numpy_too:
        host = [(h.cpu().numpy(), y.cpu().numpy()) for h, y in batches]
        wn, bn = w.cpu().numpy(), b.cpu().numpy()
        ref, tnp, cnp = meter_seconds(host, wn, bn, torch.device("cpu"), precision, None, ign)
        diff, key = max_rel_diff(res, ref)
        entry.update(numpy_s=tnp, numpy_cpu_s=cnp, max_rel_diff=diff, key=key)
        entry.update(ratio_torch_numpy=secs / tnp, ratio_torch_numpy_cpu=cpu / cnp)
        print(
            f"  Meter on numpy arrays of the same rows:       {tnp:8.3f} s [{cnp:7.3f}]; "
            f"torch / numpy = {secs / tnp:.2f} [{cpu / cnp:.2f}] (target <= 1.25)"
        )
        print(f"  largest relative difference torch vs numpy: {diff:.1e} ({key})")
    report[name] = entry
    return batches, w, b


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the full shapes (for a GPU)")
    ap.add_argument("--rows", type=int, default=None, help="imagenet rows (reduced: 32768)")
    ap.add_argument("--dim", type=int, default=None, help="imagenet d (reduced: 512)")
    ap.add_argument("--classes", type=int, default=None, help="imagenet C (reduced: 100)")
    ap.add_argument("--tokens", type=int, default=None, help="vocab rows (reduced: 512)")
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--skip-vocab", action="store_true")
    ap.add_argument(
        "--cases",
        default="imagenet,vocab",
        help="which cases, comma-separated (imagenet includes the 256-row latency)",
    )
    ap.add_argument(
        "--precision",
        choices=["float64", "float32"],
        default="float64",
        help="the Meter's precision, and the floor's product (float32: the issue's CPU case "
        "--precision float32 --rows 32768 --dim 256 --classes 8192 --skip-vocab)",
    )
    ap.add_argument(
        "--ignore",
        type=float,
        default=0.0,
        help=f"a fraction of the labels set to {IGNORE} (padding), left out by "
        f"Meter(ignore_index={IGNORE}) on the device",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    device, what = pick_device(args.device)
    print(f"ran on: {what}; torch threads {torch.get_num_threads()}")
    full = args.full
    rows = args.rows or (N_IMAGENET if full else 32768)
    d = args.dim or (D_IMAGENET if full else 512)
    C = args.classes or (C_IMAGENET if full else 100)
    report = {"device": what, "full": full}
    numpy_too = device.type == "cpu"
    prec = args.precision
    cases = {c.strip() for c in args.cases.split(",") if c.strip()}
    if cases - {"imagenet", "vocab"}:
        ap.error(f"--cases: unknown case(s) {sorted(cases - {'imagenet', 'vocab'})}")
    if "imagenet" in cases:
        batches, w, b = run_case(
            "imagenet", rows, d, C, 4096, device, False, numpy_too, report, prec, args.ignore
        )
        ign = IGNORE if args.ignore else None
        p1, p2, c1, c2 = latency_ms(batches, w, b, device, prec, ignore_index=ign)
        report["imagenet"].update(update_256_pass1_ms=p1, update_256_pass2_ms=p2)
        report["imagenet"].update(update_256_pass1_cpu_ms=c1, update_256_pass2_cpu_ms=c2)
        k1, k2 = kernels_per_update(batches, w, b, device, prec)
        report["imagenet"].update(update_pass1_kernels=k1, update_pass2_kernels=k2)
        print(
            f"  Meter.update on 256 rows (median): pass 1 {p1:.2f} ms [{c1:.2f}], "
            f"pass 2 {p2:.2f} ms [{c2:.2f}]; kernels per update (the device path): "
            f"pass 1 {k1}, pass 2 {k2}"
        )
        del batches
    if "vocab" in cases and not args.skip_vocab:
        tokens = args.tokens or (2**20 if full else 512)
        run_case(
            "vocab",
            tokens,
            D_VOCAB,
            C_VOCAB,
            8192,
            device,
            True,
            numpy_too,
            report,
            prec,
            args.ignore,
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
