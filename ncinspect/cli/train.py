"""``ncinspect train``: train a bias-free ReLU network with the bundled numpy trainer, write a dump.

A thin wrapper: the options are generated from :class:`~ncinspect.train.TrainConfig` (one
per field, help from the field's comment), parsed into one config; then call
:func:`~ncinspect.train.fit` with a progress bar, summarise. No maths here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing

import click

from ..text import clip
from ..train.config import CHOICES, LIMITS, TrainConfig, field_help
from .common import MAX_COUNT, debug_option, int_range

_D = TrainConfig()  # the defaults live in one place: the dataclass


def _tuple_of_ints(option: str):
    """A click callback: ``"500,500,50"`` -> ``(500, 500, 50)``; None stays None."""

    def parse(ctx, param, text):
        if text is None:
            return None
        try:
            return tuple(int(part) for part in text.split(","))
        except ValueError:
            raise click.BadParameter(
                f"expected whole numbers separated by commas, got {clip(repr(text))}",
                param_hint=option,
            ) from None

    return parse


def _field_option(field: dataclasses.Field, kind, help_text: str):
    """The click option that sets one :class:`TrainConfig` field (--field-name)."""
    flag = "--" + field.name.replace("_", "-")
    default = getattr(_D, field.name)
    extra: dict = {"default": default, "show_default": default is not None, "help": help_text}
    if field.name in CHOICES:
        extra["type"] = click.Choice(CHOICES[field.name])
    elif kind is tuple:
        extra.update(metavar="N1,N2,...", callback=_tuple_of_ints(flag))
    elif kind is int and field.name not in LIMITS:
        # TrainConfig.validate states the bounds of the LIMITS fields; the others (batch
        # size, save_every, ...) still refuse integers no 64-bit attribute can hold
        extra["type"] = int_range(None, MAX_COUNT)
    else:
        extra["type"] = kind
    return click.option(flag, field.name, **extra)


def _kind(hint) -> type:
    """int, float, str or tuple: the type a field's annotation holds (None aside)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = typing.get_origin(args[0] if args else hint) or (args[0] if args else hint)
    return tuple if base is tuple else base


def config_options(func):
    """One option per :class:`TrainConfig` field, in field order, help from its comment;
    ``--compress`` is ``--compression gzip``."""
    hints = typing.get_type_hints(TrainConfig)
    help_of = field_help()
    func = click.option(
        "--compress", is_flag=True, help="gzip the datasets of the dump (--compression gzip)."
    )(func)
    for field in reversed(dataclasses.fields(TrainConfig)):
        func = _field_option(field, _kind(hints[field.name]), help_of.get(field.name, ""))(func)
    return func


def config_from(kwargs: dict) -> TrainConfig:
    """Pop the :func:`config_options` out of ``kwargs`` into a :class:`TrainConfig`.

    Gaussian data with ``--class-counts`` and no ``--n-classes`` get one class per count.
    """
    ctx = click.get_current_context()
    values = {f.name: kwargs.pop(f.name) for f in dataclasses.fields(TrainConfig)}
    if kwargs.pop("compress", False):
        if values["compression"] not in (None, "gzip"):
            raise click.UsageError("--compress is --compression gzip: give one of them")
        values["compression"] = "gzip"
    counts = values["class_counts"]
    explicit = ctx.get_parameter_source("n_classes") is not click.core.ParameterSource.DEFAULT
    if counts and values["dataset"] == "gaussian" and not explicit:
        values["n_classes"] = len(counts)
    return TrainConfig(**values)


@click.command("train")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="HDF5 dump to write (overwritten; missing folders are created).",
)
@config_options
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@debug_option
def command(output: str, quiet: bool, debug: bool, **kwargs) -> int | None:
    """Train a deep bias-free ReLU net (square loss + weight decay) and write a dump.

    Snapshots (train and test split, every hidden layer, every weight matrix) are written
    every --save-every epochs; Ctrl-C stops training and leaves a valid file holding the
    snapshots written so far. Example: the weight-decay experiment is
    `ncinspect train -o a.h5 --weight-decay 0` against `ncinspect train -o b.h5`.
    """
    from ..train import fit, load_dataset

    config = config_from(kwargs)
    config.validate()
    if config.dataset not in ("gaussian", "mnist1d"):
        from ..io.atomic import check_not_input

        check_not_input(output, [config.dataset], what="dump (-o)")
    _check_dump_target(output)
    data = load_dataset(config)  # a bad data file fails here, before any output is made
    n_out = data.n_targets if hasattr(data, "n_targets") else data.n_classes
    config.check_size(data.input_dim, n_out, len(data.X) + len(data.X_test))
    _prepare_output(output)

    from rich.console import Console

    console = Console(stderr=True)
    if quiet:
        history = fit(config, data, dump=output)
    else:
        history = _fit_with_progress(config, data, output, console)
    return _summary(history, output, config.task, console)


def _summary(history, output: str, task: str, console) -> int | None:
    """Print the one-line summary of a run (and the interruption); 130 when interrupted."""
    last = history.records[-1] if history.records else {}
    saved = ", ".join(str(e) for e in history.saved_epochs) or "none"
    nc1 = history.last("nc1")
    speed = history.epoch_seconds
    if task == "regression":
        nrc1 = history.last("nrc1")
        scores = (
            f"train mse {_num(history.last('mse'), '.4g')}, "
            f"test mse {_num(history.last('test_mse'), '.4g')}"
            + (f", nrc1 {nrc1:.3g}" if nrc1 is not None else "")
        )
    else:
        scores = (
            f"train acc {_num(history.last('train_accuracy'), '.3f')}, "
            f"test acc {_num(history.last('test_accuracy'), '.3f')}"
            + (f", nc1 {nc1:.3g}" if nc1 is not None else "")
        )
    shown = _shown(output)
    console.print(
        f"{shown}: snapshots at epochs {saved}; "
        f"loss {_num(last.get('loss'), '.4g')}, "
        + scores
        + (f"; {speed * 1e3:.1f} ms/epoch" if math.isfinite(speed) else "; no epoch trained"),
        highlight=False,
        soft_wrap=True,
    )
    if history.interrupted:
        console.print(
            f"interrupted at epoch {last.get('epoch', 0)}; {shown} holds the snapshots above",
            highlight=False,
            soft_wrap=True,
        )
        return 130
    return None


def _shown(output: str) -> str:
    """The dump's path in a line of rich markup: control characters escaped, clipped, no
    markup or emoji code of its own (``-o '[/red].h5'`` made the summary exit 4 after the
    whole run), a leading ``::`` shown as ``./::``."""
    from ..text import clip, line_start, markup

    return markup(clip(line_start(output)))


def _num(value: float | None, spec: str) -> str:
    """``value`` formatted, or "n/a" (no test split, nothing measured)."""
    return "n/a" if value is None else format(value, spec)


def _prepare_output(output: str) -> None:
    """Create the output's missing folders and check that the file can be written there.

    Raises :class:`~ncinspect.errors.UsageError` (exit code 2) before any training starts, so an
    unwritable ``-o`` never costs a run.
    """
    from ..errors import UsageError

    folder = os.path.dirname(os.path.abspath(output))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        why = (
            "a part of that path is a file, not a folder"
            if isinstance(exc, (FileExistsError, NotADirectoryError))
            else exc.strerror
        )
        raise UsageError(f"{output}: cannot create the folder {folder} ({why})") from None
    if os.path.isdir(output):
        raise UsageError(f"{output}: is a directory, expected a file name for the dump")
    existed = os.path.exists(output)
    try:
        with open(output, "ab"):  # a probe that neither truncates nor needs permission bits
            pass
    except OSError as exc:
        raise UsageError(f"{output}: cannot write the dump here ({exc.strerror})") from None
    if not existed:
        os.unlink(output)


def _check_dump_target(output: str) -> None:
    """An HDF5 dump is a regular file: refuse a device, FIFO or socket as -o (exit code 3).

    A symlink is followed (its target is written, the link stays); the probe in
    :func:`_prepare_output` would block on a FIFO, so this runs first.
    """
    import stat

    from ..errors import OutputError

    try:
        st = os.stat(output)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        raise OutputError(f"{output}: cannot use this output path ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        raise OutputError(
            f"{output}: not a regular file; an HDF5 dump cannot be written to a device, "
            "FIFO or socket (give a file name)"
        )


def _fit_with_progress(config: TrainConfig, data, output: str, console):
    """Run fit with a rich progress bar: epoch, loss, train accuracy, latest nc1."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from ..train import fit

    columns = (
        TextColumn("epoch"),
        MofNCompleteColumn(),
        BarColumn(),
        TextColumn("loss {task.fields[loss]}  acc {task.fields[acc]}  nc1 {task.fields[nc1]}"),
        TimeElapsedColumn(),
        TextColumn("<"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=config.epochs, loss="-", acc="-", nc1="-")
        state = {"nc1": "-"}

        def callback(rec: dict) -> None:
            if rec.get("nc1") is not None:
                state["nc1"] = f"{rec['nc1']:.3g}"
            if rec.get("nrc1") is not None:  # regression: nrc1 in the collapse column
                state["nc1"] = f"nrc1 {rec['nrc1']:.3g}"
            acc = rec.get("train_accuracy")
            progress.update(
                task,
                completed=rec["epoch"],
                loss=f"{rec['loss']:.4g}",
                acc="-" if acc is None else f"{acc:.3f}",
                nc1=state["nc1"],
            )

        return fit(config, data, dump=output, callback=callback)
