"""``ncinspect report FILE``: metrics of every snapshot as a table, JSON or CSV."""

from __future__ import annotations

import click

from .common import (
    INPUT_FILE,
    MAX_BOOTSTRAP,
    MAX_SEED,
    allow_external_option,
    class_options,
    classes_from,
    debug_option,
    int_range,
    key_options,
    keys_from,
    ncc_centres_option,
    precision_option,
    reading_from,
    reading_options,
    snapshot_option,
)


@click.command("report")
@click.argument("files", nargs=-1, required=True, type=INPUT_FILE, metavar="FILE...")
@click.option(
    "--aggregate",
    is_flag=True,
    help="FILE... are runs (seeds) of one experiment: report per metric the mean, std, n "
    "and 95% t-interval over the runs, snapshot by (split, layer, epoch).",
)
@snapshot_option
@click.option(
    "--json",
    "json_path",
    metavar="PATH",
    default=None,
    help="Write the JSON report to PATH ('-' for stdout, then no table).",
)
@click.option(
    "--csv",
    "csv_path",
    metavar="PATH",
    default=None,
    help="Write one CSV row per snapshot to PATH ('-' for stdout).",
)
@click.option(
    "--html",
    "html_path",
    metavar="PATH",
    default=None,
    help="Also write one self-contained HTML page to PATH (tables, trajectories, the Gram "
    "figure, the worst classes, warnings, conventions; no network needed to view it).",
)
@click.option("--per-class", is_flag=True, help="Also report per-class values.")
@click.option(
    "--bootstrap",
    "bootstrap",
    type=int_range(2, MAX_BOOTSTRAP),
    metavar="B",
    default=None,
    help="Also give a 95% percentile interval for every metric from B bootstrap replicates "
    "that resample the samples within each class (each costs about one report; default off).",
)
@click.option(
    "--seed",
    type=int_range(0, MAX_SEED),
    default=0,
    show_default=True,
    help="Seed of the bootstrap replicates (same seed, same intervals).",
)
@click.option(
    "--spectra",
    is_flag=True,
    help="Also the spectral metrics (rank_effective, rankme, stable_rank, alpha_req, ...): "
    "d x d float64 sums in pass 2 (8 d^2 bytes each, counted in --memory-limit; null with "
    "the reason beyond it).",
)
@click.option(
    "--nci-alpha",
    "nci_alpha",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="The alpha of the nci OOD score, cos(h - mu_G, w_pred) - alpha ||h||_1 (files "
    "with OOD splits).",
)
@click.option(
    "--sqi",
    is_flag=True,
    help="Show the square-loss section (sqi_*, mse, interpolates) whatever loss the dump "
    "records (by default only for a square-loss model; the JSON always has them).",
)
@click.option(
    "--center",
    type=click.Choice(["classes", "samples"]),
    default="classes",
    show_default=True,
    help="Global mean: mean of class means, or sample mean.",
)
@ncc_centres_option
@click.option(
    "--compact/--full",
    default=None,
    help="One row per snapshot (default when there are several) or full tables.",
)
@reading_options
@precision_option
@click.option("--quiet", "-q", is_flag=True, help="No progress output.")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Also print the nulls of metrics that do not apply to the data (e.g. "
    "minority_collapse on balanced classes; the JSON always has their reasons).",
)
@class_options
@key_options
@allow_external_option
@debug_option
def command(
    files,
    aggregate,
    snapshot,
    json_path,
    csv_path,
    html_path,
    per_class,
    bootstrap,
    seed,
    sqi,
    center,
    ncc_centres,
    compact,
    quiet,
    verbose,
    allow_external,
    debug,
    **kwargs,
):
    """Report NC1-NC4, ETF geometry, NCC agreement and SQI quantities of FILE (HDF5 or NPZ).

    With --aggregate, FILE... are several runs (seeds) and the report gives, per metric, the
    mean, standard deviation, n and 95% t-interval over them.
    """
    import sys

    from ..analysis.api import analyze_file
    from ..render.table import render_report
    from .common import emit_all, input_files, stdout_console
    from .progress import RowProgress

    kwargs_inputs = [kwargs.get("class_names_file")]
    _check_outputs(
        files, aggregate, per_class, json_path, csv_path, html_path, bootstrap, kwargs_inputs
    )
    classes = classes_from(kwargs) | _metric_options(kwargs)  # and --spectra, --nci-alpha
    keys = keys_from(kwargs)
    bar = RowProgress(enabled=not quiet and sys.stderr.isatty())
    with reading_from(kwargs) as reading, bar:
        reports = []
        for file in files:
            one = analyze_file(
                file,
                snapshot=snapshot,
                keys=keys,
                center=center,
                per_class=per_class or bool(html_path),  # the page lists the worst classes
                ncc_centres=ncc_centres,
                progress=bar,
                allow_external=allow_external,
                bootstrap=bootstrap,
                seed=seed,
                arrays="last",  # what the HTML page's figures can read; not every epoch's
                **reading,
                **classes,
            )
            reports.append(one)
            # the bar's refresh thread ends with each file: while it ran, the next
            # file's snapshots could not go to worker processes (no fork then)
            bar.close()
    if aggregate:
        from ..render.aggregate import render_aggregate
        from ..results.aggregate import aggregate as aggregate_runs

        report = aggregate_runs(reports)
    else:
        (report,) = reports
    outputs = []
    if html_path:
        outputs.append((html_path, _html_page(report, sqi=sqi, keep_per_class=per_class)))
    if json_path:
        outputs.append((json_path, report.to_json()))
    if csv_path:
        outputs.append((csv_path, report.to_csv()))
    # all or none: a failed write leaves every output as it was
    to_stdout = emit_all(outputs, inputs=input_files(files, kwargs_inputs))
    if not to_stdout:
        if aggregate:
            render_aggregate(report, stdout_console(), every=compact is False, sqi=sqi)
        else:
            render_report(
                report,
                stdout_console(),
                per_class=per_class,
                compact=compact,
                sqi=sqi,
                verbose=verbose,
            )
    return 0


def _html_page(report, *, sqi: bool, keep_per_class: bool) -> str:
    """The self-contained HTML page; the per-class values computed for its worst-classes
    table only are dropped afterwards (tables and JSON as without --html)."""
    from ..plots.page import page_figures
    from ..render.html import html_report

    page = html_report(report, sqi=sqi, figures=page_figures(report))
    if not keep_per_class:
        for res in report:
            res.per_class = None
    return page


def _check_outputs(
    files, aggregate, per_class, json_path, csv_path, html_path=None, bootstrap=None, inputs=()
) -> None:
    """Usage errors of the option combination and the output paths, before any work;
    ``inputs``: every input file (``files`` and ``--class-names``)."""
    from ..io.atomic import check_distinct, check_not_input, check_output_path

    if json_path == "-" and csv_path == "-":
        raise click.UsageError("--json - and --csv - cannot both write to stdout")
    if len(files) > 1 and not aggregate:
        raise click.UsageError(
            f"{len(files)} files given: pass --aggregate to report them as runs (seeds) of one "
            "experiment, or report one file at a time"
        )
    if aggregate:
        from .common import distinct_runs

        distinct_runs(files)
    if aggregate and per_class:
        raise click.UsageError("--per-class is not aggregated; leave it out with --aggregate")
    if aggregate and bootstrap is not None:
        raise click.UsageError(
            "--bootstrap resamples one run; with --aggregate the interval is over the runs"
        )
    if aggregate and html_path:
        raise click.UsageError("--html reports one run; leave it out with --aggregate")
    if html_path == "-":
        raise click.UsageError("--html needs a file path (the page is not written to stdout)")
    given = [("--json", json_path), ("--csv", csv_path), ("--html", html_path)]
    given = [(option, path) for option, path in given if path is not None]
    for option, path in given:
        check_output_path(path, option=option)
    check_distinct(given)
    for _, path in given:
        check_not_input(path, [*files, *inputs])  # before any work: no input is ever replaced


def _metric_options(kwargs) -> dict:
    """``--spectra`` and ``--nci-alpha`` as the options of :func:`analyze_file`."""
    return {"spectra": kwargs.pop("spectra"), "nci_alpha": kwargs.pop("nci_alpha")}
