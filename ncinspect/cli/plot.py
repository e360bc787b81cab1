"""``ncinspect plot FILE [FILE ...] -o DIR``: figures for papers, several runs overlaid."""

from __future__ import annotations

import os
from types import SimpleNamespace

import click

from ..plots.plan import KINDS
from ..text import clip
from .common import (
    INPUT_FILE,
    MAX_ROWS,
    MAX_SEED,
    allow_external_option,
    class_options,
    classes_from,
    debug_option,
    input_files,
    int_range,
    key_options,
    keys_from,
    ncc_centres_option,
    precision_option,
    reading_from,
    reading_options,
    say,
    shown_path,
    snapshot_option,
)

MIN_DPI, MAX_DPI = 10, 1200  # 1200 dpi: a double-column figure is ~8400 x 6000 pixels


def _check_prefix(ctx, param, value: str) -> str:
    """--prefix is part of a file name inside -o: no separator, no NUL, no '..' escape."""
    bad = [c for c in ("/", os.sep, os.altsep, "\0") if c and c in value]
    if bad:
        raise click.BadParameter(
            f"{clip(repr(value))} must be a file-name prefix without path separators "
            "(files are written inside -o DIR only)"
        )
    return value


def _labels(files: tuple[str, ...], given: tuple[str, ...]) -> list[str]:
    if given:
        if len(given) != len(files):
            raise click.BadParameter(
                f"{len(given)} --label value(s) for {len(files)} file(s); give one per file",
                param_hint="--label",
            )
        return [_printable(g) for g in given]
    stems = [os.path.splitext(os.path.basename(f))[0] for f in files]
    return [_printable(t) for t in (stems if len(set(stems)) == len(stems) else list(files))]


def _printable(text: str) -> str:
    """A legend label without control characters (no font has glyphs for them)."""
    return "".join(c if c.isprintable() else "?" for c in text)


@click.command("plot")
@click.argument("files", nargs=-1, required=True, type=INPUT_FILE)
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Folder for the figures (created if needed).",
)
@click.option(
    "--kind",
    "-k",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    help="Figure kind (repeatable; default every kind the data allow).",
)
@click.option(
    "--format",
    "-f",
    "formats",
    multiple=True,
    type=click.Choice(["pdf", "png", "svg"]),
    help="File format (repeatable; default pdf and png).",
)
@click.option(
    "--label",
    "-l",
    "labels",
    multiple=True,
    metavar="TEXT",
    help="Legend label of each FILE, in order (default the file names). File "
    "names use it in ASCII, numbered -2, -3 when two labels give the same name.",
)
@click.option(
    "--style",
    type=click.Choice(["paper", "screen"]),
    default="paper",
    show_default=True,
    help="paper: 3.5 in / 7 in wide, 7 pt text; screen: larger.",
)
@snapshot_option
@ncc_centres_option
@click.option(
    "--sample-size",
    type=int_range(1, MAX_ROWS),
    default=2000,
    show_default=True,
    help="Samples drawn for the projection and sqi figures.",
)
@click.option(
    "--seed",
    type=click.IntRange(0, MAX_SEED),
    default=0,
    show_default=True,
    help="Seed of that subsample (same seed, same figure).",
)
@click.option(
    "--centered-weights",
    is_flag=True,
    help="gram and geometry: remove the mean classifier row first (bias-free networks).",
)
@click.option(
    "--classes",
    "classes",
    default=None,
    metavar="ROWS",
    help="gram and projection: only these class rows, e.g. 0-9,12, or worst:K for the K "
    "least collapsed classes (largest v_c / ||mu_c - mu_G||^2); for C >= 100.",
)
@click.option(
    "--dpi",
    type=click.IntRange(MIN_DPI, MAX_DPI),
    default=300,
    show_default=True,
    help=f"Resolution of PNG files (and of rasterised scatter points), {MIN_DPI} to {MAX_DPI}.",
)
@click.option(
    "--prefix",
    default="",
    metavar="TEXT",
    callback=_check_prefix,
    help="Prepended to every file name, e.g. 'fig-' for DIR/fig-trajectory.pdf "
    "(a file-name part: no path separators).",
)
@click.option(
    "--sqi",
    is_flag=True,
    help="Draw the sqi figure whatever loss the dump records (by default only for a "
    "square-loss model).",
)
@click.option(
    "--aggregate",
    is_flag=True,
    help="FILE... are seeds: draw the trajectory as the mean over the runs with a 95% band. "
    "Files with the same --label form one run (e.g. -l wd -l wd -l none -l none).",
)
@click.option("--quiet", "-q", is_flag=True, help="Do not list the files written.")
@reading_options
@precision_option
@class_options
@key_options
@allow_external_option
@debug_option
def command(files, **opts):
    """Draw neural-collapse figures of one or more dumps (runs) into DIR.

    Trajectory and layer figures overlay the runs; the single-snapshot kinds (gram, geometry,
    projection, spectrum, sqi) show each run's last training snapshot, one file per run.
    Reruns give byte-identical files.
    """
    import matplotlib

    matplotlib.use("Agg")

    from .. import plots
    from ..io.atomic import check_output_folder

    o = SimpleNamespace(**opts)
    check_output_folder(o.out_dir, option="--out")  # before any work
    o.inputs = input_files(files, [o.class_names_file])  # no figure may replace one
    # a kind or format given twice is drawn and written once
    o.kinds, o.formats = tuple(dict.fromkeys(o.kinds)), tuple(dict.fromkeys(o.formats))
    if o.classes is not None:
        try:
            o.classes = plots.parse_classes(o.classes)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--classes") from None
    o.formats = o.formats or ("pdf", "png")
    o.keys, o.class_opts = keys_from(opts), classes_from(opts)
    o.common = dict(
        snapshot=o.snapshot,
        keys=o.keys,
        ncc_centres=o.ncc_centres,
        allow_external=o.allow_external,
    )
    if o.aggregate:
        written = _plot_aggregated(files, o, opts)
    else:
        written = _plot_runs(files, o, opts)
    if not o.quiet:
        for path in written:
            click.echo(shown_path(path))
    return 0


def _plot_runs(files, o, opts) -> list[str]:
    """Analyse each run, plan its figures, read the samples they show, draw, save."""
    import contextlib

    from .. import plots
    from ..dump import open_dump
    from ..render.safe import mpl_text

    names = _labels(files, o.labels)
    with reading_from(opts) as reading, contextlib.ExitStack() as open_files:
        # each file is walked once: the analysis and the samples of its figures read it open
        dumps = [
            open_files.enter_context(
                open_dump(
                    f,
                    keys=o.keys,
                    allow_external=o.allow_external,
                    memory_limit=reading["memory_limit"],
                )
            )
            for f in files
        ]
        reports = [analyze_one(d, o.common, reading, o.class_opts) for d in dumps]
        runs = [list(r) for r in reports]

        def note(text: str) -> None:
            say(f"ncinspect: note: {text}")

        plan = plots.plan_figures(
            files, runs, kinds=o.kinds, sqi=o.sqi, slugs=plots.unique_slugs(names), note=note
        )
        _sample(plan, dumps, o)
    # every file name is known before anything is drawn: refuse one that is an input now
    targets = {fig.stem: fig.paths(o.out_dir, o.formats, o.prefix) for fig in plan.figures}
    _refuse_inputs(targets.values(), o.inputs)
    if o.classes is not None:  # a subset the snapshots cannot give is a usage error, up front
        try:
            plan.check_classes(o.classes)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--classes") from None
    # file names as legend text: a "$" must not start matplotlib's mathtext
    legend = names if o.labels else [mpl_text(n) for n in names]
    return _draw_all(plan, reports, targets, legend, o.inputs, o)


def analyze_one(file, common: dict, reading: dict, class_opts: dict):
    """The report of one run (every snapshot ``--snapshot`` selects); a snapshot the reader
    skipped (incomplete, being written) is said on stderr, never dropped silently. ``file``:
    a path, or a dump open with the ``keys`` and ``allow_external`` of ``common``."""
    from ..analysis.api import analyze_file
    from ..dump import Dump

    if isinstance(file, Dump):  # opened with them
        common = {k: v for k, v in common.items() if k not in ("keys", "allow_external")}
    # the figures of one snapshot read the last epoch's class-level arrays: only those kept
    report = analyze_file(file, **common, **reading, **class_opts, arrays="last")
    skipped = dict.fromkeys(w for r in report.snapshots for w in r.warnings if " skipped: " in w)
    for text in skipped:
        say(f"ncinspect: note: {text}")
    return report


def _sample(plan, dumps, o) -> None:
    """Read the seeded subsample of each final snapshot that a planned figure shows (from
    the open dumps)."""
    from ..analysis.sampling import sample_file

    for i in plan.sampled_runs:
        sample_file(
            dumps[i],
            [plan.finals[i]],
            keys=o.keys,
            size=o.sample_size,
            seed=o.seed,
            allow_external=o.allow_external,
            class_names=o.class_opts["class_names"],
        )


def _refuse_inputs(path_lists, files) -> None:
    from ..io.atomic import check_not_input

    for paths in path_lists:
        for path in paths:
            check_not_input(path, files, what="figure")


def _save(fig, paths, o, files) -> list[str]:
    """Save ``fig`` to ``paths`` (one per format) and close it; return the paths written."""
    import matplotlib.pyplot as plt

    from .. import plots

    written = []
    try:
        for fmt, path in zip(o.formats, paths, strict=True):
            plots.save_figure(fig, path, fmt, dpi=o.dpi, inputs=files)
            written.append(path)
    finally:
        plt.close(fig)
    return written


def _draw_all(plan, reports, targets, legend, files, o) -> list[str]:
    from .. import plots
    from ..io.atomic import make_output_folder

    make_output_folder(o.out_dir)
    options = {"centered_weights": o.centered_weights, "classes": o.classes}
    written: list[str] = []
    for fig in plan.figures:
        drawn = plots.draw_figure(fig, plan, reports, legend=legend, style=o.style, **options)
        written += _save(drawn, targets[fig.stem], o, files)
    return written


def _seed_groups(files, labels) -> dict[str, list[str]]:
    """``--aggregate``: label -> its files (the seeds of one run), in file order."""
    if labels and len(labels) != len(files):
        raise click.BadParameter(
            f"{len(labels)} --label value(s) for {len(files)} file(s); with --aggregate give "
            "one per file (files with the same label are the seeds of one run)",
            param_hint="--label",
        )
    groups: dict[str, list[str]] = {}
    for i, f in enumerate(files):
        groups.setdefault(labels[i] if labels else f"mean of {len(files)} runs", []).append(f)
    lone = [label for label, members in groups.items() if len(members) < 2]
    if lone:
        raise click.UsageError(
            f"--label {clip(repr(lone[0]))} names one file: each aggregated run needs two or "
            "more seeds"
        )
    return groups


def _plot_aggregated(files, o, opts) -> list[str]:
    """``plot --aggregate``: one trajectory figure, each run the mean of its seeds + a band."""
    from .. import plots
    from ..io.atomic import make_output_folder
    from ..results.aggregate import aggregate
    from .common import distinct_runs

    distinct_runs(files)
    if set(o.kinds) - {"trajectory"}:
        raise click.UsageError("--aggregate draws the trajectory kind only (means with bands)")
    groups = _seed_groups(files, o.labels)
    with reading_from(opts) as reading:
        aggs = [
            aggregate([analyze_one(f, o.common, reading, o.class_opts) for f in members])
            for members in groups.values()
        ]
    from ..plots.runs import as_runs, available_panels

    if not available_panels(as_runs(aggs, list(groups))):  # every class left out, say
        from ..errors import InvalidDataError
        from ..plots.plan import NO_METRIC_VALUES

        raise InvalidDataError(
            f"{clip(', '.join(files))}: cannot draw trajectory: {NO_METRIC_VALUES}"
        )
    paths = plots.Figure("trajectory", (), "trajectory").paths(o.out_dir, o.formats, o.prefix)
    _refuse_inputs([paths], o.inputs)
    make_output_folder(o.out_dir)
    fig = plots.plot_trajectory(aggs, labels=list(groups), style=o.style)
    return _save(fig, paths, o, o.inputs)
