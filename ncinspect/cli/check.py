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
    not_empty,
    precision_option,
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
    callback=not_empty,
    help="Snapshots the thresholds apply to: the last epoch of each split (and layer, see "
    "--layer) (default), all, or a glob on snapshot paths (comma-separated).",
)
@click.option(
    "--layer",
    "layer",
    metavar="penultimate|all|NAME",
    default=None,
    callback=not_empty,
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
    callback=not_empty,
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
@precision_option
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
    from ..check import command_line_rules, merge_rules, resolve_config, run_check
    from ..check.aggregate import check_runs

    keys = keys_from(kwargs)
    names_file = kwargs.get("class_names_file")
    _refuse_bad_combinations(
        files, aggregate, max_upper or min_lower, output, [config_path, names_file]
    )
    classes = classes_from(kwargs)
    config = resolve_config(config_path, no_config=no_config)
    if output and config.path:
        from ..io.atomic import check_not_input

        check_not_input(output, [config.path])  # a discovered config is an input too
    trends = {kind: kwargs.pop(kind) for kind in _TREND_HELP}
    rules = merge_rules(config.rules, command_line_rules(max_rules, min_rules, trends))
    snapshot = snapshot or config.snapshot or "last"
    layer = layer or config.layer or "penultimate"
    opts = {"keys": keys, "allow_external": allow_external, **classes}
    where = {"snapshot": snapshot, "layer": layer, "config": config.path}
    with reading_from(kwargs) as reading:
        if aggregate:
            bounds = {"max_upper": max_upper, "min_lower": min_lower}
            result = check_runs(files, rules, **bounds, **where, **opts, **reading)
        else:
            result = run_check(files[0], rules, **where, **opts, **reading)
    _write(result, fmt_name, output, [*files, config.path, names_file])
    return 0 if result.passed else 1


def _refuse_bad_combinations(files, aggregate, interval_rules, output, other_inputs) -> None:
    """Usage errors found before any work (several files without --aggregate, ...);
    ``other_inputs``: the files --config and --class-names name (None when not given)."""
    from ..errors import UsageError
    from ..io.atomic import STDOUT, check_not_input, check_output_path, write_mode

    if len(files) > 1 and not aggregate:
        raise UsageError(
            f"{len(files)} files given: pass --aggregate to check them as runs (seeds) of one "
            "experiment, or check one file at a time"
        )
    if aggregate:
        from .common import distinct_runs

        distinct_runs(files)
    if interval_rules and not aggregate:
        raise UsageError("--max-upper/--min-lower bound an interval over runs: use --aggregate")
    if output is not None:
        check_output_path(output, option="--output")
    if output and write_mode(output) != STDOUT:
        check_not_input(output, [*files, *other_inputs])  # before any work


def _write(result, fmt_name, output, inputs) -> None:
    """The --format output to ``output`` (or stdout), the default table otherwise."""
    from ..io.atomic import STDOUT, write_mode, write_output
    from ..render.check import render, render_check
    from .common import stdout_console

    if output and write_mode(output) == STDOUT:
        output = None  # -o - is stdout, where the --format output goes anyway
    console_fmt = "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "table"
    if output:
        write_output(output, render(result, fmt_name or console_fmt), inputs=inputs)
    stdout_fmt = console_fmt if output else fmt_name or console_fmt
    if stdout_fmt == "table":
        render_check(result, stdout_console())
    else:
        click.echo(render(result, stdout_fmt), nl=False)
