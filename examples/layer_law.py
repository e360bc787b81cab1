"""The layer-wise law of data separation (He & Su 2023) reproduced with the bundled trainer.

Trains the same small deep bias-free ReLU net (square loss, weight decay) with three seeds,
reports the law (``layer_rate``, ``layer_law_r``) of each seed's training split at
initialisation and at the last epoch, the mean with its 95% t-interval over the seeds
(:func:`ncinspect.results.aggregate.aggregate`), and draws log nc1 against the layer at
several epochs with the fitted lines (``docs/layer-law.png``)::

    python examples/layer_law.py [OUT_DIR]        # about 30 s of CPU on one core

The setting is kept cheap on purpose (depth 8, width 64, 4 Gaussian classes of 50 rows at
separation 1, 3000 epochs): He & Su train far larger nets on real data for longer.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ncinspect import analyze_file
from ncinspect.results.aggregate import aggregate
from ncinspect.results.layer_laws import layer_laws
from ncinspect.train import TrainConfig, fit

SEEDS = (0, 1, 2)
CONFIG = dict(
    depth=8,
    width=64,
    n_classes=4,
    n_per_class=50,
    n_test_per_class=10,
    separation=1.0,
    epochs=3000,
    save_every=1000,
)
FIGURE = Path(__file__).resolve().parent.parent / "docs" / "layer-law.png"


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    reports = []
    for seed in SEEDS:
        dump = out / f"law_seed{seed}.h5"
        fit(TrainConfig(seed=seed, **CONFIG), dump=dump)
        reports.append(analyze_file(dump, snapshot="/epoch_*"))  # the training split
    laws = [layer_laws(r.snapshots) for r in reports]
    first, last = laws[0][0].epoch, laws[0][-1].epoch
    print(
        f"| seed | layer_law_r, epoch {first} | layer_law_r, epoch {last} | layer_rate, "
        f"epoch {last} |"
    )
    print("| --- | --- | --- | --- |")
    for seed, run in zip(SEEDS, laws, strict=True):
        a, b = run[0].metrics, run[-1].metrics
        print(
            f"| {seed} | {a['layer_law_r']:.4f} | {b['layer_law_r']:.4f} | {b['layer_rate']:.4f} |"
        )
    agg = aggregate(reports)
    for law in agg.laws:
        if law.epoch in (first, last):
            cells = []
            for key in ("layer_law_r", "layer_rate"):
                s = law.metrics[key]
                cells.append(f"{key} {s.mean:.4f} [{s.ci_low:.4f}, {s.ci_high:.4f}]")
            print(
                f"mean over {len(SEEDS)} seeds [95% t-interval], epoch {law.epoch}: "
                + "; ".join(cells)
            )
    draw(laws)


def draw(laws) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(laws), figsize=(3.2 * len(laws), 3.0), sharey=True)
    colors = plt.cm.viridis(np.linspace(0.0, 0.85, len(laws[0])))
    for ax, seed, run in zip(axes, SEEDS, laws, strict=True):
        for color, law in zip(colors, run, strict=True):
            pos = np.array([row["position"] for row in law.layers], dtype=float)
            nc1 = np.array([row["nc1"] for row in law.layers], dtype=float)
            m = law.metrics
            ax.plot(
                pos,
                np.log(nc1),
                "o-",
                color=color,
                ms=3,
                label=f"epoch {law.epoch}: r {m['layer_law_r']:.3f}",
            )
            ax.plot(
                pos,
                m["layer_law_intercept"] + np.log(m["layer_rate"]) * pos,
                "--",
                color=color,
                lw=0.8,
            )
        ticks = [int(p) for p in pos]
        ax.set_xticks(ticks, [*map(str, ticks[:-1]), f"{ticks[-1]}\n(penult.)"])
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("layer")
        ax.legend(fontsize="x-small")
    axes[0].set_ylabel("log nc1 (training split)")
    fig.suptitle("Layer-wise law: log nc1 against layer (dashed: least-squares fit)")
    fig.tight_layout()
    fig.savefig(FIGURE, dpi=150)
    print(f"wrote {FIGURE}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("layer_law_runs"))
