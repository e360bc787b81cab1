#!/usr/bin/env python
"""Weight-decay sweep: train the same bias-free ReLU network on the same data for several
lambda (including 0), one dump per lambda, then tabulate and plot the final NC metrics and
the theory residuals against lambda (docs/experiments.md).

Example (the Gaussian sweep of docs/experiments.md)::

    python examples/sweep_weight_decay.py --dataset gaussian -o sweep_gaussian \\
        --weight-decays 0,1e-4,5e-4,1e-3,5e-3 --epochs 1000 --width 128

Every setting not given on the command line comes from :data:`ncinspect.sweep.SWEEP_SETTINGS`
(the settings the tables of docs/experiments.md were measured with: gaussian separation 1.0,
lr 0.1, batch 100, momentum 0.9, cosine schedule, 4 layers of 128, seed 0, ...), not from the
:class:`ncinspect.train.TrainConfig` defaults, which have changed since. Any other TrainConfig
field is set with ``--set field=value``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import click

from ncinspect.sweep import SWEEP_SETTINGS as _S


def _parse_set(values: tuple[str, ...]) -> dict:
    from ncinspect.train import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    defaults = TrainConfig()
    out = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise click.BadParameter(
                f"{item!r}: expected field=value with a TrainConfig field ({', '.join(fields)})",
                param_hint="--set",
            )
        default = getattr(defaults, key)
        if isinstance(default, bool):
            out[key] = text.lower() in ("1", "true", "yes")
        elif isinstance(default, int):
            out[key] = int(text)
        elif isinstance(default, float):
            out[key] = float(text)
        elif key in ("widths",):
            out[key] = tuple(int(v) for v in text.split(","))
        elif key == "kappa":
            out[key] = float(text)
        else:
            out[key] = text
    return out


@click.command()
@click.option(
    "--dataset",
    default="gaussian",
    show_default=True,
    help="gaussian, mnist1d or a path to an NPZ/HDF5 file with X, y.",
)
@click.option(
    "--weight-decays",
    default="0,1e-4,5e-4,1e-3,5e-3",
    show_default=True,
    help="Comma-separated lambda values.",
)
@click.option("-o", "--out", "out_dir", required=True, help="Folder for dumps, tables, figure.")
@click.option("--epochs", type=int, default=_S["epochs"], show_default=True)
@click.option("--depth", type=int, default=_S["depth"], show_default=True)
@click.option("--width", type=int, default=_S["width"], show_default=True)
@click.option("--lr", type=float, default=_S["lr"], show_default=True)
@click.option(
    "--batch-size", type=int, default=_S["batch_size"], show_default=True, help="0 = full batch."
)
@click.option("--seed", type=int, default=_S["seed"], show_default=True)
@click.option(
    "--set",
    "extra",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Any other TrainConfig field (repeatable).",
)
@click.option("--title", default=None, help="Figure title (default: the data set).")
@click.option(
    "--extend",
    is_flag=True,
    help="Keep the rows of OUT/sweep.json for other lambda values (same settings: "
    "grow a sweep run by run).",
)
def main(
    dataset,
    weight_decays,
    out_dir,
    epochs,
    depth,
    width,
    lr,
    batch_size,
    seed,
    extra,
    title,
    extend,
):
    """Run the sweep and write OUT/wd_<lambda>.h5, sweep.{json,csv,md,png}."""
    from ncinspect.render.table import fmt
    from ncinspect.sweep import sweep_config, sweep_markdown, sweep_weight_decay, write_sweep

    values = [float(v) for v in weight_decays.split(",") if v.strip()]
    settings = dict(
        dataset=dataset,
        epochs=epochs,
        depth=depth,
        width=width,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    )
    config = sweep_config(**{**settings, **_parse_set(extra)})
    config.validate()
    start = time.perf_counter()

    def report(wd, row):
        m = row["metrics"]
        click.echo(
            f"lambda={wd:g}: {row['seconds']:.1f} s  nc1={fmt(m['nc1'])}  "
            f"ETF W centred={fmt(m['etf_error_weights_centered'])}  "
            f"train acc={fmt(m['accuracy_classifier'])}  "
            f"test acc={fmt(row['test_accuracy'])}",
            err=True,
        )

    rows = sweep_weight_decay(config, values, out_dir, callback=report)
    previous = os.path.join(out_dir, "sweep.json")
    if extend and os.path.exists(previous):
        with open(previous) as f:
            kept = [r for r in json.load(f) if r["weight_decay"] not in values]
        rows = sorted(kept + rows, key=lambda r: r["weight_decay"])
    written = write_sweep(rows, out_dir, title=title or f"{dataset}: weight-decay sweep")
    click.echo(sweep_markdown(rows))
    click.echo(f"total {time.perf_counter() - start:.0f} s; wrote {', '.join(written)}", err=True)


if __name__ == "__main__":
    sys.exit(main())
