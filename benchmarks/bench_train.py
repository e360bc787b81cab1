"""Time one training epoch of the default network: ncinspect's numpy trainer against PyTorch (CPU).

Usage (torch is optional and never a dependency of ncinspect; install a CPU build in a separate
environment, e.g. ``pip install torch==2.13.0 numpy h5py scipy click rich``)::

    python benchmarks/bench_train.py                  # numpy only when torch is missing
    PYTHONPATH=. /path/to/torch-env/bin/python benchmarks/bench_train.py --epochs 20 --repeats 3

Both sides train the same thing: the default :class:`ncinspect.train.TrainConfig` network
(bias-free ReLU MLP, He init), square loss ``(kappa N / B)/2 sum_batch ||y - f||^2`` plus weight
decay, SGD with momentum over shuffled minibatches, in the same dtype and with the same number
of threads. The numpy figure is ``History.epoch_seconds`` of a real :func:`ncinspect.train.fit`
run (snapshots excluded); the torch loop is written out below. Prints the median ms/epoch over
the repeats and the ratio numpy / torch (below 1 means numpy is faster).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time


def numpy_epoch_seconds(cfg, data) -> float:
    from ncinspect.train import fit

    return fit(cfg, data).epoch_seconds


def torch_epoch_seconds(cfg, data, threads: int) -> float:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    dtype = {"float64": torch.float64, "float32": torch.float32}[cfg.dtype]
    X = torch.from_numpy(np.ascontiguousarray(data.X)).to(dtype)
    y = torch.from_numpy(data.y)
    N, C = X.shape[0], data.n_classes
    Y = torch.nn.functional.one_hot(y, C).to(dtype)
    widths = [data.input_dim, *cfg.hidden_widths(), C]
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        lin = torch.nn.Linear(fan_in, fan_out, bias=False, dtype=dtype)
        torch.nn.init.kaiming_normal_(lin.weight, nonlinearity="relu")
        layers.append(lin)
        if i < len(widths) - 2:
            layers.append(torch.nn.ReLU())
    net = torch.nn.Sequential(*layers)
    kappa = 1.0 / (N * C)
    opt = torch.optim.SGD(
        net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    B = N if cfg.batch_size == 0 else min(cfg.batch_size, N)
    rng = np.random.default_rng(0)
    total = 0.0
    for _ in range(cfg.epochs):
        t0 = time.perf_counter()
        order = torch.from_numpy(rng.permutation(N))
        correct = 0
        for start in range(0, N, B):
            idx = order[start : start + B]
            xb, yb = X[idx], Y[idx]
            out = net(xb)
            loss = 0.5 * kappa * (N / xb.shape[0]) * ((yb - out) ** 2).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((out.detach().argmax(1) == y[idx]).sum())  # as the numpy loop does
        total += time.perf_counter() - t0
    return total / cfg.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side (median)")
    parser.add_argument("--dtype", choices=["float64", "float32", "both"], default="both")
    parser.add_argument(
        "--threads",
        type=int,
        default=int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count() or 1,
        help="torch threads (set OPENBLAS_NUM_THREADS for numpy to match)",
    )
    args = parser.parse_args()

    from dataclasses import replace

    import numpy as np

    from ncinspect.train import TrainConfig, load_dataset

    try:
        import torch
    except ImportError:
        torch = None
    base = replace(TrainConfig(), epochs=args.epochs, save_every=10**9)
    data = load_dataset(base)
    print(
        f"default network: depth {base.depth}, widths {base.hidden_widths()}, "
        f"N = {data.X.shape[0]}, d = {data.input_dim}, C = {data.n_classes}, "
        f"batch {base.batch_size}, momentum {base.momentum}; {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}"
        + (f", torch {torch.__version__} ({args.threads} threads)" if torch else ", no torch")
    )
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    for dtype in dtypes:
        cfg = replace(base, dtype=dtype)
        t_np = statistics.median(numpy_epoch_seconds(cfg, data) for _ in range(args.repeats))
        line = f"{dtype}: numpy {t_np * 1e3:7.2f} ms/epoch"
        if torch is not None:
            t_pt = statistics.median(
                torch_epoch_seconds(cfg, data, args.threads) for _ in range(args.repeats)
            )
            line += f"   torch {t_pt * 1e3:7.2f} ms/epoch   numpy/torch = {t_np / t_pt:.2f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
