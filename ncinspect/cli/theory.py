"""``ncinspect theory FILE``: the seed theory's identities, predicted against measured."""

from __future__ import annotations

import math

import click

from .common import (
    INPUT_FILE,
    allow_external_option,
    classes_from,
    debug_option,
    key_options,
    keys_from,
    not_empty,
    reading_from,
    reading_options,
    say,
    snapshot_option,
)


def _finite_tolerance(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number >= 0", param_hint="--tolerance")
    return value


@click.command("theory")
@click.argument("file", type=INPUT_FILE)
@snapshot_option
@click.option(
    "--json",
    "json_path",
    metavar="PATH",
    default=None,
    help="Write the full JSON report (metrics plus a 'theory' section per snapshot) "
    "to PATH ('-' for stdout, then no table).",
)
@click.option(
    "--tolerance",
    type=click.FloatRange(min=0),
    callback=lambda ctx, param, value: _finite_tolerance(value),
    default=None,
    metavar="TOL",
    help="Exit with code 1 when a computed identity has a relative error above TOL.",
)
@reading_options
@click.option(
    "--class-names",
    "class_names_file",
    metavar="FILE",
    type=click.Path(dir_okay=False),
    default=None,
    callback=not_empty,
    help="The classifier's class order, one name a line (row k of W is line k); needed "
    "for string labels when the dump has no class_names.",
)
@key_options
@allow_external_option
@debug_option
def command(file, snapshot, json_path, tolerance, allow_external, debug, **kwargs):
    """Check the theory of deep bias-free ReLU classifiers on FILE (spec/theory.md).

    For every train-split, penultimate-layer snapshot: layer balancedness, last-layer
    stationarity, the closed forms of the classifier, delta and eps1 + eps2, the Lemma 1 loss
    floor and interpolation, each as predicted value, measured value and relative error.
    Lines whose inputs the dump lacks say which key is missing and how to record it.
    """
    from ..io.atomic import check_not_input, check_output_path
    from ..render.safe import plain
    from ..render.theory import render_theory
    from ..theory import theory_file
    from .common import emit, input_files, stdout_console

    inputs = input_files([file], [kwargs.get("class_names_file")])
    if json_path is not None:
        check_output_path(json_path, option="--json")
        check_not_input(json_path, inputs)  # before any work: no input is ever replaced
    with reading_from(kwargs) as reading:
        report, skipped = theory_file(
            file,
            snapshot=snapshot,
            keys=keys_from(kwargs),
            allow_external=allow_external,
            class_names=classes_from(kwargs)["class_names"],
            **reading,
        )
    to_stdout = emit(report.to_json(), json_path, inputs=inputs) if json_path else False
    if not to_stdout:
        render_theory(report, stdout_console(), skipped=skipped)
    if not len(report):
        say(f"ncinspect: {file}: no train-split penultimate snapshot to check")
    if tolerance is not None:
        from ..theory import tolerance_failures

        n_checked, failed = 0, []
        for res in report:
            n, bad = tolerance_failures(res.theory, tolerance)
            n_checked += n
            failed += [(res.name, key, err) for key, err in bad]
        for name, key, err in failed:
            say(f"ncinspect: {plain(name)}: {key} relative error {err:.3g} > {tolerance:g}")
        if n_checked == 0:
            say(
                f"ncinspect: {file}: --tolerance: no identity could be checked "
                "(see the notes: lambda = 0, missing keys or a partial training set)"
            )
            return 1
        return 1 if failed else 0
    return 0
