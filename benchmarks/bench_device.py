"""Time the Meter on the device where the features live against the numpy path.

ImageNet-shaped synthetic data: N = 1,281,167 rows, d = 2048, C = 1000 (a ResNet-50 head
on the ImageNet-1k training set), float32 features streamed in batches, generated on the
device from a seed (batch k is the same on every run and device). Three measurements of the
same rows:

* ``numpy``   : each batch copied to host numpy, the Meter's numpy kernels (the file path);
* ``device``  : the Meter on the device tensors, precision="float64" (the default);
* ``float32`` : the same with precision="float32" (float32 products, float64 accumulation).

For each it prints the seconds of the two passes (update calls and compute; generating the
data is not counted), rows per second, and for the device runs the largest difference from
the numpy result over every metric (relative) and the peak device memory. On CUDA the
device is ``torch.cuda``; without a GPU it says why and times torch on the CPU instead.

Run from the repository root (not part of the test suite)::

    python benchmarks/bench_device.py                       # full size: a GPU run
    python benchmarks/bench_device.py --rows 20000          # a reduced size for a CPU
    python benchmarks/bench_device.py --rows 20000 --json out.json

On one modern GPU the full run takes well under 5 minutes, most of it the numpy
comparison on the host CPU (``--skip-numpy`` leaves it out; ``--numpy-rows K`` compares on
the first K rows only). Results are in docs/array-api.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time

import numpy as np

N_IMAGENET, D, C = 1_281_167, 2048, 1000


def pick_device(requested: str):
    import torch

    if requested == "cpu":
        return torch.device("cpu"), "CPU requested (--device cpu)"
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return torch.device("cuda:0"), f"CUDA device 0: {name}"
    why = (
        f"torch {torch.__version__} was built without CUDA"
        if torch.version.cuda is None
        else "torch.cuda.is_available() is False (no GPU or no driver)"
    )
    if requested == "cuda":
        sys.exit(f"--device cuda: {why}")
    return torch.device("cpu"), f"no GPU: {why}; timing torch on the CPU instead"


class Data:
    """Batch k of ImageNet-shaped features, generated on ``device`` from ``seed + k``."""

    def __init__(self, rows: int, d: int, n_classes: int, batch: int, device, seed: int = 0):
        import torch

        self.rows, self.d, self.C, self.batch, self.device = rows, d, n_classes, batch, device
        self.seed = seed
        g = torch.Generator(device="cpu").manual_seed(seed)
        means = torch.randn(n_classes, d, generator=g) * 0.2
        self.means = means.to(device)
        self.weights = (means + 0.05 * torch.randn(n_classes, d, generator=g)).to(device)
        self.bias = (0.01 * torch.randn(n_classes, generator=g)).to(device)

    def __len__(self):
        return math.ceil(self.rows / self.batch)

    def __getitem__(self, k: int):
        import torch

        n = min(self.batch, self.rows - k * self.batch)
        g = torch.Generator(device=self.device).manual_seed(self.seed + 1 + k)
        y = torch.randint(0, self.C, (n,), generator=g, device=self.device)
        noise = torch.randn(n, self.d, generator=g, device=self.device)
        h = torch.relu(self.means[y] + noise)  # (n, d) float32, post-ReLU like a ResNet
        return h, y


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_meter(data: Data, to_host: bool, precision: str, rows: int | None = None):
    """(result, seconds) of both passes over the first ``rows`` rows (all by default)."""
    import ncinspect

    w, b = data.weights, data.bias
    if to_host:
        w, b = w.cpu().numpy(), b.cpu().numpy()
    meter = ncinspect.Meter(weights=w, bias=b, precision=precision)
    n_batches = len(data) if rows is None else math.ceil(rows / data.batch)
    seconds, cpu0 = 0.0, time.process_time()
    for _ in range(2):
        for k in range(n_batches):
            h, y = data[k]
            if rows is not None and (k + 1) * data.batch > rows:
                h, y = h[: rows - k * data.batch], y[: rows - k * data.batch]
            _sync(data.device)
            t0 = time.perf_counter()
            if to_host:
                h, y = h.cpu().numpy(), y.cpu().numpy()
            meter.update(h, y)
            _sync(data.device)
            seconds += time.perf_counter() - t0
        if meter.pass_number == 1:
            t0 = time.perf_counter()
            meter.next_pass()
            seconds += time.perf_counter() - t0
    t0 = time.perf_counter()
    result = meter.compute()
    seconds += time.perf_counter() - t0
    meter.cpu_seconds = time.process_time() - cpu0  # this process, data generation included
    return result, seconds, meter


def max_rel_diff(a, b) -> tuple[float, str]:
    """Largest relative difference over the numeric metrics (and the key where it is)."""
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


def nc1_bound(meter) -> float:
    """The a-priori float32 bound on |d nc1| (ncinspect.stats_xp): (2g+g^2) tr(S_W) tr(S_B^+)/C."""
    from ncinspect.stats_xp import precision_gamma

    geom, second = meter.geometry, meter.second
    g = precision_gamma(geom.means.shape[1])
    n = meter.first.n_samples
    tr_w = float(np.sum(geom.squared(second.class_sq))) / n
    eig = geom.squared(geom.eigvals)
    return (2 * g + g * g) * tr_w * float(np.sum(1.0 / eig))


def peak_memory(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB (CUDA, allocated)"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return f"{rss:.2f} GiB (process peak RSS, CPU run)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=N_IMAGENET)
    ap.add_argument("--dim", type=int, default=D)
    ap.add_argument("--classes", type=int, default=C)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    ap.add_argument("--skip-numpy", action="store_true", help="leave out the numpy path")
    ap.add_argument("--numpy-rows", type=int, default=None, help="compare on these rows only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    import torch

    device, why = pick_device(args.device)
    threads = torch.get_num_threads()
    print(
        f"device: {why}; torch threads {threads}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', '(unset)')}"
    )
    print(f"data: N={args.rows} d={args.dim} C={args.classes}, float32 batches of {args.batch}")
    data = Data(args.rows, args.dim, args.classes, args.batch, device, args.seed)
    report = {
        "device": str(device),
        "why": why,
        "rows": args.rows,
        "d": args.dim,
        "C": args.classes,
        "batch": args.batch,
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dev64, t64, meter64 = run_meter(data, False, "float64")
    mem64 = peak_memory(device)
    dev32, t32, meter32 = run_meter(data, False, "float32")
    cpu = {"device float64": meter64.cpu_seconds, "device float32": meter32.cpu_seconds}
    mem = peak_memory(device)
    report.update(device_s=t64, float32_s=t32, peak_memory=mem, peak_memory_float64=mem64)
    lines = [
        ("device float64", t64, args.rows),
        ("device float32", t32, args.rows),
    ]
    if not args.skip_numpy:
        rows = args.numpy_rows
        ref, tnp, meter_np = run_meter(data, True, "float64", rows)
        cpu["numpy (host)"] = meter_np.cpu_seconds
        lines.insert(0, ("numpy (host)", tnp, rows or args.rows))
        if rows is not None and rows < args.rows:  # agreement on the same rows
            dev64, _, _ = run_meter(data, False, "float64", rows)
            dev32, _, meter32 = run_meter(data, False, "float32", rows)
        d64, k64 = max_rel_diff(dev64, ref)
        d32, k32 = max_rel_diff(dev32, ref)
        nc1_err = abs(dev32.metrics["nc1"] - ref.metrics["nc1"])
        report.update(
            numpy_s=tnp,
            numpy_rows=rows or args.rows,
            max_rel_diff_float64=d64,
            max_rel_diff_float64_key=k64,
            max_rel_diff_float32=d32,
            max_rel_diff_float32_key=k32,
            nc1_float32_abs_err=nc1_err,
            nc1_float32_bound=nc1_bound(meter32),
            nc1=ref.metrics["nc1"],
        )
    for name, secs, n in lines:
        print(
            f"{name:15s} {secs:8.2f} s  {2 * n / secs:12,.0f} rows/s (two passes)  "
            f"process CPU {cpu[name]:8.2f} s"
        )
    report["process_cpu_s"] = cpu
    if not args.skip_numpy:
        print(
            f"agreement with numpy: float64 max rel diff {report['max_rel_diff_float64']:.2e} "
            f"({report['max_rel_diff_float64_key']}); float32 "
            f"{report['max_rel_diff_float32']:.2e} ({report['max_rel_diff_float32_key']})"
        )
        print(
            f"float32 nc1: |error| {report['nc1_float32_abs_err']:.2e}, a-priori bound "
            f"{report['nc1_float32_bound']:.2e} (nc1 = {report['nc1']:.6g})"
        )
        per_row_np = report["numpy_s"] / report["numpy_rows"]
        print(f"speed-up device float64 / numpy (per row): {per_row_np * args.rows / t64:.2f}x")
        report["speedup_float64"] = per_row_np * args.rows / t64
        report["speedup_float32"] = per_row_np * args.rows / t32
    print(f"peak memory: float64 {mem64}; after the float32 run {mem}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
