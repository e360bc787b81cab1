"""Regenerate sample_data/synthetic.h5: a small, fully controlled collapse trajectory.

Features are class means on a simplex ETF (C=10, d=32) plus isotropic noise that shrinks
over "epochs", the classifier rotates towards the centred means, and outputs are W h.
Every number in it is known in advance (see tests), which makes it a good first file.

    python sample_data/make_synthetic.py
"""

from __future__ import annotations

import os

import numpy as np

from ncinspect import DumpWriter

C, D, PER_CLASS, SEED = 10, 32, 60, 0
EPOCHS = (0, 10, 20, 40, 80)


def main(path: str = os.path.join(os.path.dirname(__file__), "synthetic.h5")) -> None:
    rng = np.random.default_rng(SEED)
    basis = np.linalg.qr(rng.standard_normal((D, C)))[0]
    etf = np.sqrt(C / (C - 1)) * (np.eye(C) - 1.0 / C) @ basis.T  # (C, D), unit rows
    w_random = rng.standard_normal((C, D)) / np.sqrt(D)
    y = np.repeat(np.arange(C), PER_CLASS)
    y_test = np.repeat(np.arange(C), PER_CLASS // 2)
    names = [f"class_{c}" for c in range(C)]
    with DumpWriter(path, "w", compression="gzip") as w:
        w.set_meta("/", dataset="synthetic ETF + shrinking noise", seed=SEED, class_names=names)
        w.write("labels", y)
        w.write("labels", y_test, group="test")
        for ep in EPOCHS:
            t = ep / EPOCHS[-1]
            sigma = 1.5 * (1 - t) + 0.05  # noise shrinks
            mix = t**0.5  # classifier rotates from random to the means
            weights = (1 - mix) * w_random + mix * etf / 2
            for split, labels in (("train", y), ("test", y_test)):
                h = 2.0 * etf[labels] + sigma * rng.standard_normal((len(labels), D)) + 0.5
                group = f"epoch_{ep:04d}" if split == "train" else f"test/epoch_{ep:04d}"
                snap = w.snapshot(group, epoch=ep, split=split)
                feats = h.astype(np.float32)
                snap.append(features=feats, outputs=(feats @ weights.T).astype(np.float32))
                snap.write(weights=weights.astype(np.float32))


if __name__ == "__main__":
    main()
