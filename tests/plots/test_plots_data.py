"""Synthetic multi-epoch runs for the plot and trajectory tests (and tests of the builder).

``write_run`` writes a dump shaped like the bundled trainer's: train snapshots
``epoch_XXXX`` (features, outputs, weights) with hidden layers ``epoch_XXXX/layer_k`` and a
test split ``test/epoch_XXXX``. Features are simplex-ETF class means plus noise that shrinks
over epochs; with ``weight_decay`` the classifier converges to the centred means, without it
keeps a fixed random part (so the two runs differ on NC2/NC3, as in the seed paper).
"""

from __future__ import annotations

import numpy as np

from ncinspect import DumpWriter, analyze_file

EPOCHS = (0, 10, 20, 40)


def etf_means(n_classes: int, dim: int, scale: float = 3.0) -> np.ndarray:
    """(C, d) centred simplex-ETF means (rows sum to 0, equal norms, cosines -1/(C-1))."""
    m = np.eye(n_classes) - 1.0 / n_classes
    out = np.zeros((n_classes, dim))
    out[:, : min(dim, n_classes)] = m[:, : min(dim, n_classes)]
    return scale * out / np.linalg.norm(out[0])


def write_run(
    path,
    *,
    n_classes: int = 4,
    dim: int = 8,
    n_per: int = 15,
    epochs=EPOCHS,
    weight_decay: bool = True,
    layers: int = 2,
    test: bool = True,
    outputs: bool = True,
    seed: int = 0,
) -> str:
    """Write a synthetic run to ``path`` (HDF5) and return the path as a string."""
    rng = np.random.default_rng(seed)
    C, d = n_classes, dim
    centres = etf_means(C, d)
    offset = np.full(d, 2.0)
    junk = rng.normal(size=(C, d))
    y = np.repeat(np.arange(C), n_per)
    y_test = np.repeat(np.arange(C), max(2, n_per // 2))
    with DumpWriter(path, "w") as w:
        w.write("labels", y)
        if test:
            w.write("labels", y_test, group="test")
            w.set_meta("test", split="test")
        for e in epochs:
            noise = 1.0 / (1.0 + e / 5.0)
            keep = noise if weight_decay else 0.8
            weights = centres + keep * junk
            for prefix, labels, split in (("", y, "train"), ("test/", y_test, "test")):
                if split == "test" and not test:
                    continue
                h = centres[labels] + offset + noise * rng.normal(size=(labels.size, d))
                snap = w.snapshot(
                    f"{prefix}epoch_{e:04d}",
                    epoch=e,
                    split=split,
                    weight_decay=5e-3 if weight_decay else 0.0,
                )
                snap.append(features=h, outputs=h @ weights.T / 10.0 if outputs else None)
                snap.write(weights=weights)
                for k in range(1, layers + 1):
                    hk = (
                        centres[labels] * k / (layers + 1)
                        + offset
                        + (noise + 0.3 * (layers + 1 - k)) * rng.normal(size=(labels.size, d))
                    )
                    hidden = w.snapshot(f"{prefix}epoch_{e:04d}/layer_{k}", layer=f"layer_{k}")
                    hidden.append(features=hk)
    return str(path)


def test_builder_writes_the_trainer_layout(tmp_path):
    path = write_run(tmp_path / "run.h5", layers=2)
    report = analyze_file(path)
    names = {r.name for r in report}
    assert "/epoch_0040" in names and "/epoch_0040/layer_2" in names
    assert "/test/epoch_0010/layer_1" in names
    assert len(report) == len(EPOCHS) * 2 * 3
    by = {r.name: r for r in report}
    assert by["/test/epoch_0010"].split == "test" and by["/epoch_0010/layer_1"].layer == "layer_1"
    # collapse increases over epochs: nc1 of the last epoch far below the first
    assert by["/epoch_0040"].metrics["nc1"] < 0.1 * by["/epoch_0000"].metrics["nc1"]


def test_weight_decay_run_is_more_self_dual(tmp_path):
    wd = analyze_file(write_run(tmp_path / "wd.h5", weight_decay=True, layers=0, test=False))
    nowd = analyze_file(write_run(tmp_path / "nowd.h5", weight_decay=False, layers=0, test=False))
    assert wd[-1].metrics["nc3_self_duality"] < 0.5 * nowd[-1].metrics["nc3_self_duality"]
