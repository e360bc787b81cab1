"""``ncinspect plot FILE [FILE ...] -o DIR``: figures for papers, several runs overlaid."""

from __future__ import annotations

import os
import re
import unicodedata

import click

from .common import (
    INPUT_FILE,
    allow_external_option,
    class_options,
    classes_from,
    debug_option,
    key_options,
    keys_from,
    ncc_means_option,
    snapshot_option,
)

MIN_DPI, MAX_DPI = 10, 1200  # 1200 dpi: a double-column figure is ~8400 x 6000 pixels
MAX_SEED = 2**63 - 1


def _check_prefix(ctx, param, value: str) -> str:
    """--prefix is part of a file name inside -o: no separator, no NUL, no '..' escape."""
    bad = [c for c in ("/", os.sep, os.altsep, "\0") if c and c in value]
    if bad:
        raise click.BadParameter(
            f"{value!r} must be a file-name prefix without path separators "
            "(files are written inside -o DIR only)"
        )
    return value


_KINDS = ("trajectory", "gram", "geometry", "projection", "spectrum", "sqi", "layers")


def _slug(text: str) -> str:
    """ASCII file-name part of a label: accents dropped, other characters runs of '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9._-]+", "-", ascii_text).strip("-.") or "run"


def _unique_slugs(labels: list[str]) -> list[str]:
    """One file-name part per label, distinct even on case-insensitive file systems.

    A label whose slug was taken by an earlier one (in file order) gets ``-2``, ``-3``, ...:
    ``wd``, ``wd?`` -> ``wd``, ``wd-2``; ``λ``, ``μ`` -> ``run``, ``run-2``.
    """
    used: set[str] = set()
    out = []
    for label in labels:
        base = cand = _slug(label)
        k = 2
        while cand.lower() in used:
            cand, k = f"{base}-{k}", k + 1
        used.add(cand.lower())
        out.append(cand)
    return out


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
    type=click.Choice(_KINDS),
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
@ncc_means_option
@click.option(
    "--sample-size",
    type=click.IntRange(min=1),
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
@class_options
@key_options
@allow_external_option
@debug_option
def command(
    files,
    out_dir,
    kinds,
    formats,
    labels,
    style,
    snapshot,
    ncc_means,
    sample_size,
    seed,
    centered_weights,
    classes,
    dpi,
    prefix,
    sqi,
    aggregate,
    quiet,
    allow_external,
    debug,
    **kwargs,
):
    """Draw neural-collapse figures of one or more dumps (runs) into DIR.

    Trajectory and layer figures overlay the runs; the single-snapshot kinds (gram, geometry,
    projection, spectrum, sqi) show each run's last training snapshot, one file per run.
    Reruns give byte-identical files.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plots
    from ..analyze import analyze_file
    from ..errors import InvalidDataError
    from ..io.atomic import check_not_input, make_output_folder
    from ..render.safe import mpl_text
    from ..sampling import sample_file
    from ..trajectory import final_snapshot

    if classes is not None:
        try:
            classes = plots.parse_classes(classes)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--classes") from None
    if aggregate:
        return _plot_aggregated(
            files,
            labels,
            kinds,
            out_dir,
            formats,
            prefix,
            style,
            dpi,
            quiet,
            snapshot,
            ncc_means,
            allow_external,
            keys_from(kwargs),
            classes_from(kwargs),
        )
    names = _labels(files, labels)
    slugs = _unique_slugs(names)
    formats = formats or ("pdf", "png")
    keys = keys_from(kwargs)
    class_opts = classes_from(kwargs)
    reports = [
        analyze_file(
            f,
            snapshot=snapshot,
            keys=keys,
            ncc_means=ncc_means,
            allow_external=allow_external,
            **class_opts,
        )
        for f in files
    ]
    runs = [list(r) for r in reports]

    wanted = list(dict.fromkeys(kinds)) if kinds else list(plots.KINDS)
    plan: list[tuple[str, list[int]]] = []  # kind -> indices of the runs it is drawn for
    for kind in wanted:
        reasons = [plots.kind_allowed(kind, run, sqi=sqi) for run in runs]
        ok = [i for i, why in enumerate(reasons) if why is None]
        if kinds:
            for i, why in enumerate(reasons):
                if why is not None:
                    click.echo(f"ncinspect: note: {kind}: {files[i]}: {why}", err=True)
            if not ok:
                raise InvalidDataError(f"{', '.join(files)}: cannot draw {kind}: {reasons[0]}")
        if ok:
            plan.append((kind, ok))

    single = len(files) == 1
    finals = {i: final_snapshot(runs[i]) for i in range(len(runs))}
    to_sample = sorted({i for kind, idx in plan if plots.needs_sample(kind) for i in idx})
    for i in to_sample:
        sample_file(
            files[i],
            [finals[i]],
            keys=keys,
            size=sample_size,
            seed=seed,
            allow_external=allow_external,
            class_names=class_opts["class_names"],
        )

    # every file name is known before anything is drawn: refuse one that is an input now
    jobs: list[tuple[str, list[int], str]] = []  # kind, runs drawn, file stem
    for kind, idx in plan:
        if kind in plots.RUN_KINDS:
            jobs.append((kind, idx, kind))
        else:
            jobs += [(kind, [i], kind if single else f"{kind}-{slugs[i]}") for i in idx]
    targets = {
        stem: [os.path.join(out_dir, f"{prefix}{stem}.{fmt}") for fmt in formats]
        for _, _, stem in jobs
    }
    for paths in targets.values():
        for path in paths:
            check_not_input(path, files, what="figure")
    if classes is not None:  # a subset the snapshots cannot give is a usage error, up front
        for kind, idx, _ in jobs:
            if kind in ("gram", "projection"):
                try:
                    plots.pick_classes(finals[idx[0]], classes)
                except ValueError as exc:
                    raise click.BadParameter(str(exc), param_hint="--classes") from None
    make_output_folder(out_dir)
    draw = {
        "gram": plots.plot_gram,
        "geometry": plots.plot_geometry,
        "projection": plots.plot_projection,
        "spectrum": plots.plot_spectrum,
        "sqi": plots.plot_sqi,
    }
    written: list[str] = []

    def save(fig, stem: str) -> None:
        try:
            for fmt, path in zip(formats, targets[stem], strict=True):
                plots.save_figure(fig, path, fmt, dpi=dpi, inputs=files)
                written.append(path)
        finally:
            plt.close(fig)

    for kind, idx, stem in jobs:
        if kind in plots.RUN_KINDS:
            fn = plots.plot_trajectory if kind == "trajectory" else plots.plot_layers
            # file names as legend text: a "$" must not start matplotlib's mathtext
            shown = [names[i] if labels else mpl_text(names[i]) for i in idx]
            save(fn([reports[i] for i in idx], labels=shown, style=style), kind)
        else:
            (i,) = idx
            extra = {}
            if kind in ("gram", "geometry"):
                extra["centered_weights"] = centered_weights
            if kind in ("gram", "projection"):
                extra["classes"] = classes
            save(draw[kind](finals[i], style=style, **extra), stem)
    if not quiet:
        for path in written:
            click.echo(path)
    return 0


def _plot_aggregated(
    files,
    labels,
    kinds,
    out_dir,
    formats,
    prefix,
    style,
    dpi,
    quiet,
    snapshot,
    ncc_means,
    allow_external,
    keys,
    class_opts,
):
    """``plot --aggregate``: one trajectory figure, each run the mean of its seeds + a band."""
    import matplotlib.pyplot as plt

    from .. import plots
    from ..aggregate import aggregate
    from ..analyze import analyze_file
    from ..io.atomic import check_not_input, make_output_folder
    from .common import distinct_runs

    distinct_runs(files)
    if set(kinds) - {"trajectory"}:
        raise click.UsageError("--aggregate draws the trajectory kind only (means with bands)")
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
            f"--label {lone[0]!r} names one file: each aggregated run needs two or more seeds"
        )
    aggs = []
    for members in groups.values():
        reports = [
            analyze_file(
                f,
                snapshot=snapshot,
                keys=keys,
                ncc_means=ncc_means,
                allow_external=allow_external,
                **class_opts,
            )
            for f in members
        ]
        aggs.append(aggregate(reports))
    formats = formats or ("pdf", "png")
    paths = [os.path.join(out_dir, f"{prefix}trajectory.{fmt}") for fmt in formats]
    for path in paths:
        check_not_input(path, files, what="figure")
    make_output_folder(out_dir)
    fig = plots.plot_trajectory(aggs, labels=list(groups), style=style)
    try:
        for fmt, path in zip(formats, paths, strict=True):
            plots.save_figure(fig, path, fmt, dpi=dpi, inputs=files)
    finally:
        plt.close(fig)
    if not quiet:
        for path in paths:
            click.echo(path)
    return 0
