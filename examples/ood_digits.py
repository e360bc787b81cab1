"""OOD detection from the collapse geometry on real features: scikit-learn's digits.

A small torch MLP (64 -> 128 -> 64 -> ReLU features -> linear classifier with a bias) is
trained with cross-entropy on the digits 0-7 of ``sklearn.datasets.load_digits`` (8 x 8
images bundled with scikit-learn: no download); the digits 8 and 9 are held out as the OOD
set. The penultimate features of the ID train and test rows and of the OOD rows are written
to an HDF5 dump (splits ``train``, ``test``, ``ood``) at a few epochs, and
``ncinspect.analyze_file`` gives, against the ``test`` split of each epoch, the AUROC and
FPR95 of the three scores (``ncspan``, ``nci``, ``maxlogit``) and NC5.

Run from the repository root (needs the torch extra and scikit-learn; about 20 s of CPU)::

    python examples/ood_digits.py                    # seeds 0 1 2, prints a Markdown table
    python examples/ood_digits.py --seeds 0 --keep digits.h5

The table in docs/ood.md was made with the first command.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

HELD_OUT = (8, 9)
KEYS = [
    *(f"ood_auroc_{s}" for s in ("ncspan", "nci", "maxlogit")),
    *(f"ood_fpr95_{s}" for s in ("ncspan", "nci", "maxlogit")),
    "nc5_ood_orthogonality",
    "nc1",
    "accuracy_classifier",
]


def load(seed: int):
    """ID train/test rows (digits 0-7, a seeded 70/30 split) and the OOD rows (8 and 9)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    ood = np.isin(y, HELD_OUT)
    xi, yi = x[~ood], y[~ood]
    perm = np.random.default_rng(seed).permutation(len(yi))
    cut = int(0.7 * len(yi))
    tr, te = perm[:cut], perm[cut:]
    return (xi[tr], yi[tr]), (xi[te], yi[te]), x[ood]


def train_and_dump(path: str, seed: int, epochs: int, record: tuple[int, ...]) -> None:
    import torch

    from ncinspect.io.writer import DumpWriter

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    (xtr, ytr), (xte, yte), xood = load(seed)
    body = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64), torch.nn.ReLU()
    )
    head = torch.nn.Linear(64, 8)
    params = [*body.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr).long()
    gen = torch.Generator().manual_seed(seed)
    with DumpWriter(path, "w") as w:
        for epoch in range(1, epochs + 1):
            for idx in torch.randperm(len(yt), generator=gen).split(64):
                loss = torch.nn.functional.cross_entropy(head(body(xt[idx])), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            if epoch in record:
                with torch.no_grad():
                    feats = [body(torch.from_numpy(a)).numpy() for a in (xtr, xte, xood)]
                wgt, bias = head.weight.detach().numpy(), head.bias.detach().numpy()
                splits = zip(("train", "test", "ood"), feats, (ytr, yte, None), strict=True)
                for split, h, lab in splits:
                    s = w.snapshot(f"{split}/epoch_{epoch:04d}", epoch=epoch, split=split)
                    s.append(features=h, **({} if lab is None else {"labels": lab}))
                    if lab is not None:
                        s.write(weights=wgt, bias=bias)


def run(seeds, epochs, record, keep=None):
    from ncinspect.analysis.api import analyze_file

    rows = {}
    for seed in seeds:
        with tempfile.TemporaryDirectory() as tmp:
            path = keep if keep and len(seeds) == 1 else os.path.join(tmp, "digits.h5")
            train_and_dump(path, seed, epochs, record)
            for res in analyze_file(path):
                if res.split == "test":
                    rows.setdefault(res.epoch, []).append([res.metrics[k] for k in KEYS])
    return rows


def table(rows) -> str:
    head = ["epoch", *KEYS]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for epoch in sorted(rows):
        vals = np.array(rows[epoch], dtype=float)
        mean, std = vals.mean(0), vals.std(0, ddof=1) if len(vals) > 1 else np.zeros(len(KEYS))
        pairs = zip(mean, std, strict=True)
        cells = [f"{m:.3f} ± {s:.3f}" if len(vals) > 1 else f"{m:.3f}" for m, s in pairs]
        out.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--record", type=int, nargs="+", default=[1, 10, 60])
    p.add_argument("--keep", default=None, help="with one seed: keep the dump at this path")
    args = p.parse_args(argv)
    rows = run(args.seeds, args.epochs, tuple(args.record), args.keep)
    print(f"digits 0-7 in-distribution, {HELD_OUT} OOD; seeds {args.seeds} (mean ± std)")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
