"""Regenerate the two trained dumps of the weight-decay experiment (docs/trainer.md).

    trained_wd0.h5   the default network and data trained with --weight-decay 0
    trained_wd.h5    the same with the default weight decay (lambda = 2e-3)

The trainings are exactly those of the documented command pair

    ncinspect train -o a.h5 --weight-decay 0        and        ncinspect train -o b.h5

(``TrainConfig`` defaults, same seed, same float64 arithmetic). Only the storage differs:

- a 20-per-class test split instead of 100 (the training data are drawn before the test
  data from the same generator, so the test size does not change them or the training);
- float32 features;
- each run is trained with a snapshot every 1000 epochs into a temporary dump, from which the
  committed dump keeps a few epochs (``KEEP``), gzip-compressed: every kept epoch has the
  penultimate train and test snapshots (features, outputs, weights; every layer's weights
  ``params/W1..WL`` in the train snapshot); the last epoch keeps everything the trainer wrote
  (hidden layers ``layer_k`` of both splits, params of both splits). Every attribute (root,
  ``test`` group, snapshots) is copied exactly as the trainer wrote it.

OPENBLAS_NUM_THREADS=1 keeps the floating-point summation order fixed (and avoids slow
OpenBLAS threads under CPU contention), so a rerun on the same machine gives the same numbers.

Usage:  python sample_data/make_trained.py        (about one minute per run on 2 cores)
"""

from __future__ import annotations

import os

os.environ["OPENBLAS_NUM_THREADS"] = "1"  # before numpy is imported (see above)

import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402

from ncinspect import DumpWriter  # noqa: E402
from ncinspect.train import TrainConfig, fit  # noqa: E402

HERE = Path(__file__).resolve().parent
RUNS = {"trained_wd0.h5": 0.0, "trained_wd.h5": TrainConfig().weight_decay}
SAVE_EVERY = 1000  # snapshots of the temporary full dump
KEEP = (0, 1000, 3000, 6000)  # epochs kept in the committed dump; the last keeps everything
PENULTIMATE = ("features", "outputs", "weights")  # what an intermediate epoch keeps


def copy_attrs(src, dst: DumpWriter, group: str) -> None:
    """Copy every attribute of ``src`` onto ``group`` (the values the trainer wrote, unchanged)."""
    dst.set_meta(group, **dict(src.attrs))


def copy_arrays(src, dst: DumpWriter, group: str, names) -> None:
    """Copy the datasets ``names`` (paths relative to ``src``) into ``group`` of ``dst``."""
    for name in names:
        dst.write(name, src[name][()], group=group)
    for name in names:  # sub-groups (params, layer_k) carry their own attributes
        parent = src[name].parent
        if parent.name != src.name and parent.attrs:
            copy_attrs(parent, dst, f"{group}/{parent.name[len(src.name) + 1 :]}")


def all_datasets(group) -> list[str]:
    names: list[str] = []
    group.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


def compact(full: Path, out: Path, keep=KEEP) -> None:
    """Write ``out`` from the full dump ``full``, keeping only the epochs ``keep``."""
    last = max(keep)
    with h5py.File(full, "r") as src, DumpWriter(out, "w", compression="gzip") as dst:
        copy_attrs(src, dst, "/")
        dst.write("labels", src["labels"][()])
        dst.write("labels", src["test/labels"][()], group="test")
        copy_attrs(src["test"], dst, "test")
        for epoch in keep:
            for split, prefix in (("train", ""), ("test", "test/")):
                name = f"{prefix}epoch_{epoch:04d}"
                if name not in src:
                    sys.exit(
                        f"{full}: no snapshot {name}; epochs kept must be multiples of "
                        f"{SAVE_EVERY} or the last"
                    )
                g = src[name]
                if epoch == last:
                    names = all_datasets(g)
                else:
                    names = list(PENULTIMATE)
                    if split == "train":
                        names += [f"params/{k}" for k in g["params"]]
                copy_attrs(g, dst, name)
                copy_arrays(g, dst, name, names)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for filename, weight_decay in RUNS.items():
            config = TrainConfig(
                weight_decay=weight_decay,
                n_test_per_class=20,
                features_dtype="float32",
                save_every=SAVE_EVERY,
            )
            full = Path(tmp) / filename
            hist = fit(config, dump=full)
            if hist.interrupted:
                sys.exit("interrupted")
            compact(full, HERE / filename)
            full.unlink()
            rec = hist.records[-1]
            print(
                f"{filename}: weight_decay {weight_decay:g}, epoch {rec['epoch']}, "
                f"nc1 {rec['nc1']:.4g}, {(HERE / filename).stat().st_size / 1e6:.2f} MB"
            )


if __name__ == "__main__":
    main()
