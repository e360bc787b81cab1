"""``ncinspect train``: train a bias-free ReLU network with the bundled numpy trainer, write a dump.

A thin wrapper: parse options into a :class:`~ncinspect.train.TrainConfig`, call
:func:`~ncinspect.train.fit` with a progress bar, summarise. No maths here.
"""

from __future__ import annotations

import math
import os

import click

from ..train.config import TrainConfig
from .common import debug_option

_D = TrainConfig()  # the defaults live in one place: the dataclass


@click.command("train")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="HDF5 dump to write (overwritten; missing folders are created).",
)
@click.option(
    "--dataset",
    default=_D.dataset,
    show_default=True,
    help="'gaussian', 'mnist1d' (optional extra) or an NPZ/HDF5 file with X, y "
    "(and optionally X_test, y_test).",
)
@click.option(
    "--depth",
    type=int,
    default=_D.depth,
    show_default=True,
    help="Number of weight matrices L (>= 2).",
)
@click.option(
    "--width", type=int, default=_D.width, show_default=True, help="Width of every hidden layer."
)
@click.option(
    "--weight-decay",
    type=float,
    default=_D.weight_decay,
    show_default=True,
    help="lambda in (kappa/2) sum ||y - f||^2 + (lambda/2) sum ||W_l||_F^2.",
)
@click.option("--lr", type=float, default=_D.lr, show_default=True, help="Peak learning rate.")
@click.option(
    "--momentum",
    type=float,
    default=_D.momentum,
    show_default=True,
    help="Heavy-ball momentum (0 = plain gradient descent).",
)
@click.option(
    "--epochs",
    type=int,
    default=_D.epochs,
    show_default=True,
    help="Passes over the training set (0: only the snapshot of the initialisation).",
)
@click.option(
    "--batch-size",
    type=int,
    default=_D.batch_size,
    show_default=True,
    help="Minibatch size; 0 = full-batch gradient descent.",
)
@click.option(
    "--schedule",
    type=click.Choice(["constant", "step", "cosine"]),
    default=_D.schedule,
    show_default=True,
    help="Learning-rate schedule (per epoch).",
)
@click.option(
    "--save-every",
    type=int,
    default=_D.save_every,
    show_default=True,
    help="Snapshot every N epochs (epoch 0 and the last are always saved).",
)
@click.option(
    "--seed",
    type=int,
    default=_D.seed,
    show_default=True,
    help="Seeds the data, the initialisation and the shuffling.",
)
@click.option(
    "--init-scale",
    type=float,
    default=_D.init_scale,
    show_default=True,
    help="Multiplies the He initialisation (small = 'rich' regime).",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default=_D.dtype,
    show_default=True,
    help="Arithmetic and weight dtype.",
)
@click.option(
    "--noise",
    type=float,
    default=_D.noise,
    show_default=True,
    help="gaussian data: within-class noise standard deviation.",
)
@click.option(
    "--separation",
    type=float,
    default=_D.separation,
    show_default=True,
    help="gaussian data: scale of the class centres.",
)
@click.option(
    "--n-per-class",
    type=int,
    default=_D.n_per_class,
    show_default=True,
    help="gaussian data: training samples per class.",
)
@click.option(
    "--class-counts",
    metavar="N1,N2,...",
    default=None,
    help="Training samples of each class (one count per class, e.g. 500,500,50,50: a "
    "long-tailed run; gaussian data get that many classes); the first n_c samples of class c "
    "are kept, the test split is unchanged.",
)
@click.option(
    "--n-test-per-class",
    type=int,
    default=_D.n_test_per_class,
    show_default=True,
    help="gaussian data: held-out samples per class.",
)
@click.option(
    "--features-dtype",
    type=click.Choice(["float64", "float32", "float16"]),
    default=None,
    help="dtype of the stored features [default: --dtype].",
)
@click.option(
    "--task",
    type=click.Choice(["classification", "regression"]),
    default=_D.task,
    show_default=True,
    help="regression: t real outputs fitted to targets g(A x) of gaussian inputs (nrc1-nrc3).",
)
@click.option(
    "--n-targets",
    type=int,
    default=_D.n_targets,
    show_default=True,
    help="regression: number of targets t.",
)
@click.option(
    "--target-map",
    type=click.Choice(["linear", "smooth"]),
    default=_D.target_map,
    show_default=True,
    help="regression: targets A x / sqrt(d) (linear) or tanh of it (smooth).",
)
@click.option(
    "--target-offset",
    type=float,
    default=_D.target_offset,
    show_default=True,
    help="regression: constant added to every target (0 = centred targets).",
)
@click.option("--compress", is_flag=True, help="gzip the datasets of the dump (smaller, slower).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@debug_option
def command(
    output: str,
    dataset: str,
    depth: int,
    width: int,
    weight_decay: float,
    lr: float,
    momentum: float,
    epochs: int,
    batch_size: int,
    schedule: str,
    save_every: int,
    seed: int,
    init_scale: float,
    dtype: str,
    noise: float,
    separation: float,
    n_per_class: int,
    n_test_per_class: int,
    class_counts: str | None,
    features_dtype: str | None,
    task: str,
    n_targets: int,
    target_map: str,
    target_offset: float,
    compress: bool,
    quiet: bool,
    debug: bool,
) -> int | None:
    """Train a deep bias-free ReLU net (square loss + weight decay) and write a dump.

    Snapshots (train and test split, every hidden layer, every weight matrix) are written
    every --save-every epochs; Ctrl-C stops training and leaves a valid file holding the
    snapshots written so far. Example: the weight-decay experiment is
    `ncinspect train -o a.h5 --weight-decay 0` against `ncinspect train -o b.h5`.
    """
    from ..train import fit

    counts = _class_counts(class_counts)
    config = TrainConfig(
        dataset=dataset,
        # gaussian data: one class per count
        n_classes=len(counts) if counts and dataset == "gaussian" else _D.n_classes,
        depth=depth,
        width=width,
        weight_decay=weight_decay,
        lr=lr,
        momentum=momentum,
        epochs=epochs,
        batch_size=batch_size,
        schedule=schedule,
        save_every=save_every,
        seed=seed,
        init_scale=init_scale,
        dtype=dtype,
        noise=noise,
        separation=separation,
        n_per_class=n_per_class,
        n_test_per_class=n_test_per_class,
        class_counts=counts,
        features_dtype=features_dtype,
        task=task,
        n_targets=n_targets,
        target_map=target_map,
        target_offset=target_offset,
        compression="gzip" if compress else None,
    )
    config.validate()
    if dataset not in ("gaussian", "mnist1d"):
        from ..io.atomic import check_not_input

        check_not_input(output, [dataset], what="dump (-o)")
    _check_dump_target(output)
    from ..train import load_dataset

    data = load_dataset(config)  # a bad data file fails here, before any output is made
    n_out = data.n_targets if hasattr(data, "n_targets") else data.n_classes
    config.check_size(data.input_dim, n_out)
    _prepare_output(output)

    from rich.console import Console

    console = Console(stderr=True)
    if quiet:
        history = fit(config, data, dump=output)
    else:
        history = _fit_with_progress(config, data, output, console)

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
    console.print(
        f"{output}: snapshots at epochs {saved}; "
        f"loss {_num(last.get('loss'), '.4g')}, "
        + scores
        + (f"; {speed * 1e3:.1f} ms/epoch" if math.isfinite(speed) else "; no epoch trained"),
        highlight=False,
        soft_wrap=True,
    )
    if history.interrupted:
        console.print(
            f"interrupted at epoch {last.get('epoch', 0)}; {output} holds the snapshots above",
            highlight=False,
            soft_wrap=True,
        )
        return 130
    return None


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


def _class_counts(text: str | None) -> tuple[int, ...] | None:
    """``--class-counts 500,500,50`` as a tuple of ints (a usage error for anything else)."""
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected whole numbers separated by commas, got {text!r}", param_hint="--class-counts"
        ) from None
