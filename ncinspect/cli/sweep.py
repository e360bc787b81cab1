"""``ncinspect sweep``: the weight-decay experiment, one dump per lambda and seed, then tables.

A thin wrapper: the options become a :class:`~ncinspect.train.TrainConfig` (every setting not
given is the dataclass default), :func:`ncinspect.experiments.sweep_weight_decay` trains and
measures, :mod:`ncinspect.experiments.tables` writes the files.
"""

from __future__ import annotations

import dataclasses
import os
import time

import click

from ..text import clip
from ..train.config import TrainConfig
from .common import (
    MAX_COUNT,
    MAX_JOBS,
    MAX_SEED,
    MAX_SEEDS,
    MAX_WEIGHT_DECAYS,
    debug_option,
    int_range,
    say,
)

_D = TrainConfig()  # the defaults live in one place: the dataclass
#: TrainConfig fields whose default is None, and how a --set value of theirs is read.
_NONE_DEFAULTS = {
    "kappa": float,
    "widths": lambda text: tuple(int(v) for v in text.split(",")),
    "class_counts": lambda text: tuple(int(v) for v in text.split(",")),
    "features_dtype": str,
    "compression": str,
}


#: TrainConfig fields the sweep sets from an option of its own: --set must not set them too
#: (one of the two won silently: --set epochs=3 beat --epochs 1, --set seed=5 was dropped)
OWN_OPTIONS = {
    "dataset": "--dataset",
    "epochs": "--epochs",
    "lr": "--lr",
    "depth": "--depth",
    "width": "--width",
    "batch_size": "--batch-size",
    "save_every": "--save-every",
    "seed": "--seed (and --seeds)",
    "weight_decay": "--weight-decays",
}


def parse_set(values: tuple[str, ...], own: dict[str, str] | None = None) -> dict:
    """``("noise=2", "schedule=step")`` as TrainConfig field values (a usage error otherwise,
    also for a field given twice or one that has an option of its own in ``own``)."""
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    out = {}
    for item in values:
        key, sep, text = item.partition("=")
        if not sep or key not in fields:
            raise click.BadParameter(
                f"{clip(repr(item))}: expected FIELD=VALUE with a TrainConfig field "
                f"({', '.join(fields)})",
                param_hint="--set",
            )
        if own and key in own:
            raise click.BadParameter(
                f"{clip(repr(item))}: {key} has an option of its own; give it with {own[key]}",
                param_hint="--set",
            )
        if key in out:
            raise click.BadParameter(
                f"{clip(repr(item))}: {key} is given twice; give each field once",
                param_hint="--set",
            )
        default = getattr(_D, key)
        try:
            if text.lower() == "none" and (default is None or key in _NONE_DEFAULTS):
                out[key] = None
            elif default is None:
                out[key] = _NONE_DEFAULTS[key](text)
            elif isinstance(default, bool):
                out[key] = text.lower() in ("1", "true", "yes")
            elif isinstance(default, (int, float)):
                out[key] = type(default)(text)
            else:
                out[key] = text
        except ValueError:
            raise click.BadParameter(
                f"{clip(repr(item))}: {clip(repr(text))} is not a value of {key} "
                f"(default {clip(repr(default))})",
                param_hint="--set",
            ) from None
    return out


def _floats(text: str) -> list[float]:
    items = text.split(",")
    if any(not v.strip() for v in items):  # "0," or "$A,$B" with B unset: not one value less
        from ..errors import UsageError

        raise UsageError(
            f"--weight-decays: an empty value in the list {clip(repr(text))}; give numbers "
            "separated by commas"
        )
    try:
        return [float(v) for v in items]
    except ValueError:
        raise click.BadParameter(
            f"expected numbers separated by commas, got {clip(repr(text))}",
            param_hint="--weight-decays",
        ) from None


@click.command("sweep")
@click.option(
    "-o",
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=str),
    help="Folder for dumps, tables, figures (made if missing; not an existing file).",
)
@click.option(
    "--weight-decays",
    default=f"0,{_D.weight_decay:g}",
    show_default=True,
    help="Comma-separated lambda values (0 = no weight decay).",
)
@click.option(
    "--seeds",
    type=int_range(1, MAX_SEEDS),
    default=1,
    show_default=True,
    help="Repeat every lambda for seeds --seed .. --seed + N - 1 (each its own data, "
    "initialisation and batch order). With N >= 2 the headline (mean and 95% interval over "
    "the seeds, factor per seed, banded trajectory figure) is written too.",
)
@click.option(
    "--seed",
    type=int_range(0, MAX_SEED),
    default=_D.seed,
    show_default=True,
    help="The first seed.",
)
@click.option("--dataset", default=None, help=f"[default: {_D.dataset}]")
@click.option("--epochs", type=int, default=None, help=f"[default: {_D.epochs}]")
@click.option("--lr", type=float, default=None, help=f"Peak learning rate [default: {_D.lr}]")
@click.option("--depth", type=int, default=None, help=f"[default: {_D.depth}]")
@click.option("--width", type=int, default=None, help=f"[default: {_D.width}]")
@click.option(
    "--batch-size",
    type=int_range(None, MAX_COUNT),
    default=None,
    help=f"0 = full batch [default: {_D.batch_size}]",
)
@click.option(
    "--save-every",
    type=int_range(None, MAX_COUNT),
    default=None,
    help=f"[default: {_D.save_every}]",
)
@click.option(
    "--set",
    "extra",
    multiple=True,
    metavar="FIELD=VALUE",
    help="Any other TrainConfig field (repeatable), e.g. --set separation=1.",
)
@click.option("--title", default=None, help="Figure title (default: the data set).")
@click.option(
    "--extend",
    is_flag=True,
    help="One seed: keep the rows of OUT/sweep.json for other lambda values (same settings: "
    "grow a sweep run by run).",
)
@click.option(
    "--jobs",
    type=int_range(1, MAX_JOBS),
    default=1,
    show_default=True,
    help="Runs trained at once, one process each (the results do not depend on it).",
)
@click.option("--no-figure", is_flag=True, help="Tables only (no matplotlib).")
@debug_option
def command(
    out_dir,
    weight_decays,
    seeds,
    seed,
    dataset,
    epochs,
    lr,
    depth,
    width,
    batch_size,
    save_every,
    extra,
    title,
    extend,
    jobs,
    no_figure,
    debug,
):
    """Train the same network for several weight decays (and seeds); tabulate and plot.

    Writes OUT/wd_<lambda>.h5 (or wd_<lambda>_seed<s>.h5 with --seeds), sweep.json/.csv/.md
    (one row per run: final NC metrics and theory residuals) and sweep.png; with --seeds N >= 2
    also headline.md/.json (mean [95% interval] per lambda, the factor per seed of
    etf_error_weights_centered), aggregate_wd_<lambda>.json and trajectory.png (bands).
    """
    from ..experiments import sweep_markdown, sweep_weight_decay, write_headline, write_sweep
    from ..experiments.weight_decay import check_dump_names, dump_name
    from ..render.table import fmt

    values = _floats(weight_decays)
    if not values:
        raise click.BadParameter("no weight decay given", param_hint="--weight-decays")
    if len(values) > MAX_WEIGHT_DECAYS:
        raise click.BadParameter(
            f"{len(values)} weight decays given; at most {MAX_WEIGHT_DECAYS} (each is a "
            "training run per seed)",
            param_hint="--weight-decays",
        )
    if extend and seeds > 1:
        raise click.UsageError("--extend grows a one-seed sweep; leave it out with --seeds")
    given = dict(
        dataset=dataset,
        epochs=epochs,
        lr=lr,
        depth=depth,
        width=width,
        batch_size=batch_size,
        save_every=save_every,
    )
    settings = {k: v for k, v in given.items() if v is not None}
    config = TrainConfig(**{**settings, **parse_set(extra, OWN_OPTIONS), "seed": seed})
    config.validate()
    check_dump_names(values)  # before the folder is made
    start = time.perf_counter()

    def report(wd, row):
        m = row["metrics"]
        click.echo(
            f"lambda={wd:g} seed={row['seed']}: {row['seconds']:.1f} s  nc1={fmt(m['nc1'])}  "
            f"ETF W centred={fmt(m['etf_error_weights_centered'])}  "
            f"train acc={fmt(m['accuracy_classifier'])}  "
            f"test acc={fmt(row['test_accuracy'])}",
            err=True,
        )

    _check_dataset_kept(config.dataset, out_dir, values, seed, seeds)
    earlier = _earlier_rows(os.path.join(out_dir, "sweep.json")) if extend else []
    run_seeds = _seeds_and_folder(seed, seeds, out_dir)
    rows = sweep_weight_decay(config, values, out_dir, seeds=run_seeds, callback=report, jobs=jobs)
    if earlier:
        # a row whose dump this sweep wrote again (the same %g name) is replaced
        names = {dump_name(v) for v in values}
        kept = [r for r in earlier if dump_name(r["weight_decay"]) not in names]
        rows = sorted(kept + rows, key=lambda r: r["weight_decay"])
    name = config.dataset if config.dataset in ("gaussian", "mnist1d") else "data"
    written = write_sweep(
        rows, out_dir, title=title or f"{name}: weight-decay sweep", figure=not no_figure
    )
    if run_seeds is not None:
        written += write_headline(rows, out_dir, title=title, figure=not no_figure)
        with open(os.path.join(out_dir, "headline.md")) as f:
            click.echo(f.read())
    else:
        click.echo(sweep_markdown(rows))
    say(f"total {time.perf_counter() - start:.0f} s; wrote {', '.join(written)}")
    return None


def _check_dataset_kept(dataset: str, out_dir: str, values, seed: int, seeds: int) -> None:
    """Refuse (exit 3, before any run) a ``--dataset`` file that the sweep would write over:
    one of its dumps (``--dataset runs/wd_0.001.h5 -o runs``), tables or figures, however
    spelled (a link, a hard link). ``train`` refuses ``-o`` naming its dataset the same way."""
    from ..experiments.weight_decay import dump_name
    from ..io.atomic import check_not_input

    if dataset in ("gaussian", "mnist1d") or not os.path.exists(dataset):
        return
    run_seeds = [None] if seeds == 1 else range(seed, seed + seeds)
    names = [dump_name(wd, s) for wd in values for s in run_seeds]
    names += [f"aggregate_wd_{wd:g}.json" for wd in values]
    names += [f"{stem}.{ext}" for stem in ("sweep", "trajectory") for ext in ("png", "pdf")]
    names += ["sweep.json", "sweep.csv", "sweep.md", "headline.json", "headline.md"]
    for name in names:
        check_not_input(os.path.join(out_dir, name), [dataset], what="sweep output")


def _earlier_rows(path: str) -> list[dict]:
    """The rows of the sweep.json that ``--extend`` grows, read and checked before any run:
    a regular file of at most 64 MiB holding a JSON list of rows, each with a finite
    ``weight_decay``; anything else is one line, exit 3 (it was an internal error after
    every run had trained, or a wait forever on a FIFO)."""
    import math

    from ..errors import InvalidDataError
    from ..io.paths import check_input_file
    from ..io.tree import loads_json

    if not os.path.lexists(path):
        return []
    st = check_input_file(path, "--extend")
    if st.st_size > 64 << 20:
        raise InvalidDataError(f"{clip(path)}: {st.st_size >> 20} MiB; not a sweep.json")
    try:
        with open(path, encoding="utf-8") as f:
            rows = loads_json(f.read(), f"{clip(path)}")
    except (UnicodeDecodeError, ValueError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidDataError(f"{clip(path)}: not a sweep.json ({clip(why)})") from None
    for i, row in enumerate(rows if isinstance(rows, list) else [None]):
        wd = row.get("weight_decay") if isinstance(row, dict) else None
        if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not math.isfinite(wd):
            problem = f"row {i} has no finite weight_decay: {clip(repr(row))}"
        elif missing := [k for k in _ROW_KEYS if k not in row]:
            problem = f"row {i} has no {', '.join(missing)}"
        elif not all(isinstance(row[k], dict) for k in ("metrics", "theory")):
            problem = f"row {i}: metrics and theory must be tables"
        elif bad := _bad_row_value(row):
            problem = f"row {i}: {bad} must be a number or null"
        else:
            continue
        raise InvalidDataError(
            f"{clip(path)}: not a sweep.json that --extend can grow ({problem}); write the "
            "sweep to a new folder"
        )
    return rows


def _bad_row_value(row: dict) -> str | None:
    """The first value of a sweep.json row that is not what sweep_row writes (a number or
    null; a list of them for layer_norms_sq; text for dump and snapshot), else None."""

    def number(v) -> bool:
        return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))

    norms = row["layer_norms_sq"]
    values = [(k, row[k]) for k in ("Lambda", "epoch", "seconds", "test_accuracy")]
    seed = row["seed"]
    values += [("seed", seed if seed is None or type(seed) is int else "")]
    values += [(f"metrics.{k}", v) for k, v in row["metrics"].items()]
    values += [(f"theory.{k}", v) for k, v in row["theory"].items()]
    values += [("layer_norms_sq", v) for v in (norms if isinstance(norms, list) else [""])]
    if norms is None:
        values.pop()
    values += [(k, None if isinstance(row[k], str) else "") for k in ("dump", "snapshot")]
    return next((clip(k) for k, v in values if not number(v)), None)


#: what every row of a sweep.json holds (experiments.weight_decay.sweep_row)
_ROW_KEYS = ("weight_decay", "seed", "Lambda", "dump", "snapshot", "epoch", "seconds")
_ROW_KEYS += ("test_accuracy", "layer_norms_sq", "metrics", "theory")


def _seeds_and_folder(seed: int, seeds: int, out_dir: str) -> range | None:
    """The seeds to run (None: one), checked, and the output folder made: a seed beyond the
    range, or ``-o`` naming a file (or a folder below one), is one line before any run."""
    from ..io.atomic import make_output_folder

    if seed + seeds - 1 > MAX_SEED:
        raise click.BadParameter(
            f"--seed {seed} with --seeds {seeds} runs seeds beyond {MAX_SEED} (2**63 - 1)",
            param_hint="--seed",
        )
    make_output_folder(out_dir)
    return None if seeds == 1 else range(seed, seed + seeds)
