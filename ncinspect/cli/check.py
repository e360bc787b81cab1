"""``ncinspect check FILE``: exit 1 when a rule on the dump's metrics fails (a CI gate)."""

from __future__ import annotations

import os

import click

from .common import (
    INPUT_FILE,
    allow_external_option,
    class_options,
    classes_from,
    debug_option,
    key_options,
    keys_from,
    reading_from,
    reading_options,
)

FORMATS = ("table", "json", "junit", "github")
_TREND_HELP = {
    "decreasing": "METRIC must be lower at the last epoch than at the first (each trajectory).",
    "increasing": "METRIC must be higher at the last epoch than at the first.",
    "non_increasing": "METRIC must never rise between consecutive epochs; options: last=K "
    "(only the last K snapshots), rtol/atol (allowed rise atol + rtol*|prev|).",
    "non_decreasing": "METRIC must never fall between consecutive epochs; options as above.",
}


def _trend_options(func):
    for kind in reversed(tuple(_TREND_HELP)):
        metavar = "METRIC" if kind in ("decreasing", "increasing") else "METRIC[:last=K,rtol=R]"
        func = click.option(
            f"--{kind.replace('_', '-')}",
            kind,
            metavar=metavar,
            multiple=True,
            help=_TREND_HELP[kind],
        )(func)
    return func


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=INPUT_FILE, metavar="FILE...")
@click.option(
    "--aggregate",
    is_flag=True,
    help="FILE... are runs (seeds): --max/--min and trend rules apply to the mean over "
    "the runs, --max-upper/--min-lower to the 95% t-interval's bounds.",
)
@click.option(
    "--max-upper",
    "max_upper",
    metavar="METRIC=VALUE",
    multiple=True,
    help="With --aggregate: fail when the upper end of METRIC's 95% interval > VALUE.",
)
@click.option(
    "--min-lower",
    "min_lower",
    metavar="METRIC=VALUE",
    multiple=True,
    help="With --aggregate: fail when the lower end of METRIC's 95% interval < VALUE.",
)
@click.option(
    "--snapshot",
    "-s",
    "snapshot",
    metavar="PATTERN|last|all",
    default=None,
    help="Snapshots the thresholds apply to: the last epoch of each split (and layer, see "
    "--layer) (default), all, or a glob on snapshot paths (comma-separated).",
)
@click.option(
    "--layer",
    "layer",
    metavar="penultimate|all|NAME",
    default=None,
    help="Layer the rules apply to: the classifier's (penultimate features; default), all, "
    "or a hidden layer such as layer_1. Rules needing the classifier (weight metrics, NC3, "
    "NC4, SQI, accuracy_classifier) fail on hidden layers, which have no weights.",
)
@click.option(
    "--max",
    "max_rules",
    metavar="METRIC=VALUE",
    multiple=True,
    help="Fail when METRIC > VALUE. per_class.KEY=VALUE: when the highest class value is > VALUE.",
)
@click.option(
    "--min",
    "min_rules",
    metavar="METRIC=VALUE",
    multiple=True,
    help="Fail when METRIC < VALUE. per_class.KEY=VALUE: when the lowest class value is < VALUE.",
)
@_trend_options
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    type=click.Path(dir_okay=False),
    default=None,
    help="Rules file (default: ncinspect.toml [check] or pyproject.toml "
    "[tool.ncinspect.check], searched from the current folder up).",
)
@click.option(
    "--no-config", is_flag=True, help="Ignore configuration files; command-line rules only."
)
@click.option(
    "--format",
    "fmt_name",
    type=click.Choice(FORMATS),
    default=None,
    help="Output format (default: github when GITHUB_ACTIONS=true, else table).",
)
@click.option(
    "--output",
    "-o",
    "output",
    metavar="PATH",
    default=None,
    help="Write the --format output to PATH (atomically); stdout then shows the "
    "default table (or annotations on GitHub).",
)
@reading_options
@class_options
@key_options
@allow_external_option
@debug_option
def command(
    files,
    aggregate,
    max_upper,
    min_lower,
    snapshot,
    layer,
    max_rules,
    min_rules,
    config_path,
    no_config,
    fmt_name,
    output,
    allow_external,
    debug,
    **kwargs,
):
    """Check the metrics of FILE against rules; exit 1 when any rule fails.

    \b
    Examples:
      ncinspect check run.h5 --max nc1=0.1 --min accuracy_classifier=0.95
      ncinspect check run.h5 --min per_class.ncc_agreement=0.95 --decreasing nc1
      ncinspect check run.h5 --layer all --max nc1=0.05
      ncinspect check run.h5 --non-increasing nc1:last=5,rtol=0.05 --format junit -o nc.xml
      ncinspect check run_s*.h5 --aggregate --max-upper nc1=0.01
    """
    from ..check import run_check
    from ..errors import UsageError
    from ..io.atomic import STDOUT, check_not_input, write_mode

    keys = keys_from(kwargs)
    if len(files) > 1 and not aggregate:
        raise UsageError(
            f"{len(files)} files given: pass --aggregate to check them as runs (seeds) of one "
            "experiment, or check one file at a time"
        )
    if aggregate:
        from .common import distinct_runs

        distinct_runs(files)
    if (max_upper or min_lower) and not aggregate:
        raise UsageError("--max-upper/--min-lower bound an interval over runs: use --aggregate")
    if output and write_mode(output) == STDOUT:
        output = None  # -o - is stdout, where the --format output goes anyway
    if output:
        check_not_input(output, [*files, config_path])  # before any work
    classes = classes_from(kwargs)
    config, rules = _config_and_rules(config_path, no_config, output, max_rules, min_rules, kwargs)
    snapshot = snapshot or config.snapshot or "last"
    layer = layer or config.layer or "penultimate"
    with reading_from(kwargs) as reading:
        if aggregate:
            opts = {"keys": keys, "allow_external": allow_external, **reading, **classes}
            result = _check_runs(files, rules, max_upper, min_lower, snapshot, layer, config, opts)
        else:
            result = run_check(
                files[0],
                rules,
                snapshot=snapshot,
                layer=layer,
                keys=keys,
                config=config.path,
                allow_external=allow_external,
                **reading,
                **classes,
            )

    _emit(result, output, fmt_name, files, config.path)
    return 0 if result.passed else 1


def _check_runs(files, rules, max_upper, min_lower, snapshot, layer, config, opts):
    """``check --aggregate``: analyse every run, aggregate, evaluate on the means/bounds."""
    from ..aggregate import aggregate
    from ..aggregate_check import BoundRule, check_aggregate, parse_bound
    from ..analyze import analyze_file

    on_mean = [BoundRule(r.kind, r.metric, bound=r.bound) if not r.is_trend else r for r in rules]
    bounds = [parse_bound("max_upper", s) for s in max_upper]
    bounds += [parse_bound("min_lower", s) for s in min_lower]
    reports = [analyze_file(f, **opts) for f in files]
    return check_aggregate(
        aggregate(reports), [*on_mean, *bounds], snapshot=snapshot, layer=layer, config=config.path
    )


def _config_and_rules(config_path, no_config, output, max_rules, min_rules, kwargs):
    """The configuration file (given, discovered or none) and the rules: its own merged with
    the command line's (the trend options are popped from ``kwargs``)."""
    from ..check import (
        TREND_KINDS,
        CheckConfig,
        find_config,
        load_config,
        merge_rules,
        parse_threshold,
        parse_trend,
    )
    from ..errors import UsageError
    from ..io.atomic import check_not_input

    if config_path and no_config:
        raise UsageError("--config and --no-config exclude each other")
    config = CheckConfig()
    if config_path or not no_config:
        found = config_path or find_config()
        config = load_config(found) if found else config
    if output and config.path:
        check_not_input(output, [config.path])  # a discovered config is an input too
    cli_rules = [parse_threshold("max", s) for s in max_rules]
    cli_rules += [parse_threshold("min", s) for s in min_rules]
    cli_rules += [parse_trend(kind, s) for kind in TREND_KINDS for s in kwargs.pop(kind)]
    rules = merge_rules(config.rules, cli_rules)
    return config, rules


def _emit(result, output, fmt_name, files, config_path) -> None:
    """The --format output to -o (when given) and stdout (the table, or annotations on
    GitHub, when -o takes the format)."""
    from ..io.atomic import write_output
    from ..render.check import render, render_check
    from .common import stdout_console

    console_fmt = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "table"
    if output:
        write_output(output, render(result, fmt_name or console_fmt), inputs=[*files, config_path])
    stdout_fmt = console_fmt if output else fmt_name or console_fmt
    if stdout_fmt == "table":
        render_check(result, stdout_console())
    else:
        click.echo(render(result, stdout_fmt), nl=False)
