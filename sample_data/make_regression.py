"""Regenerate sample_data/regression.h5: a bias-free regression run (docs/trainer.md).

The training is exactly that of the documented command

    ncinspect train -o regression.h5 --task regression --n-targets 3 --target-map smooth \
        --depth 3 --width 32 --n-per-class 30 --n-test-per-class 10 \
        --weight-decay 1e-2 --lr 0.05 --epochs 3000 --save-every 1500 \
        --features-dtype float32 --compress

(300 training and 100 test rows of 32 gaussian inputs, targets tanh(A x / sqrt(32)) + 1, t = 3,
square loss with weight decay), snapshots at epochs 0, 1500 and 3000 with every hidden
layer and weight matrix, gzip-compressed (well under 1 MB).

OPENBLAS_NUM_THREADS=1 keeps the floating-point summation order fixed.

Usage:  python sample_data/make_regression.py        (about 15 seconds on 2 cores)
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy is imported (see above)

from pathlib import Path  # noqa: E402

from ncinspect.train import TrainConfig, fit  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = TrainConfig(
    task="regression",
    n_targets=3,
    target_map="smooth",
    depth=3,
    width=32,
    n_per_class=30,
    n_test_per_class=10,
    weight_decay=1e-2,
    lr=0.05,
    epochs=3000,
    save_every=1500,
    features_dtype="float32",
    compression="gzip",
)


def main() -> None:
    out = HERE / "regression.h5"
    hist = fit(CONFIG, dump=out)
    rec = hist.records[-1]
    print(
        f"{out.name}: epoch {rec['epoch']}, train mse {rec['mse']:.4g}, nrc1 {rec['nrc1']:.4g}, "
        f"{out.stat().st_size / 1e6:.2f} MB"
    )


if __name__ == "__main__":
    main()
