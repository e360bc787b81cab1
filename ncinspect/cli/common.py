"""Options and helpers shared by several commands (parsing only; no maths, no IO)."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

import click

from ..text import clip

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}


#: Smallest --memory-limit: below 1 MiB not even one row of a typical layer fits, and the
#: budget would be a number nobody means (0, 1B); the largest is 1 PiB.
MIN_MEMORY, MAX_MEMORY = 2**20, 2**50


def parse_size(text: str | None) -> int | None:
    """``"2GB"`` -> 2e9 bytes, ``"512MiB"`` -> 512 * 2**20; None stays None.

    Sizes below :data:`MIN_MEMORY` (1 MiB) or above :data:`MAX_MEMORY` are refused.
    """
    if text is None:
        return None
    m = _SIZE_RE.match(text) if len(text) <= 64 else None
    unit = (m.group(2) or "").lower().rstrip("b") if m else None
    if not m or unit not in _UNITS:
        shown = text if len(text) <= 64 else text[:40] + "..."
        raise click.BadParameter(f"{clip(repr(shown))} is not a size like 512MB or 2GiB")
    value = float(m.group(1)) * _UNITS[unit]
    if not MIN_MEMORY <= value <= MAX_MEMORY:
        raise click.BadParameter(
            f"{clip(repr(text))}: the memory limit must be between 1MiB and 1PiB (e.g. 64MiB, 2GB)"
        )
    return int(value)


#: The type of every dump argument: no checks here, so that a missing, unreadable or
#: special file is reported by the reader as bad input (exit 3, one line), not as a usage
#: error.
INPUT_FILE = click.Path(readable=False, path_type=str)

# Bounds of the integer options: an integer option takes any integer click parses (1e9,
# 2**64 + 5), so each has a range beyond which a run would not end or not fit; outside it
# is a usage error (exit 2) naming the range.
MAX_SEED = 2**63 - 1  #: seeds are stored as 64-bit integers
MAX_BOOTSTRAP = (
    10_000  #: bootstrap replicates (analysis.bootstrap.MAX_REPLICATES, not imported: fast --help)
)
MAX_SEEDS = 1_000  #: seeds of one sweep (each a training run per lambda)
MAX_WEIGHT_DECAYS = 1_000  #: weight decays of one sweep (each a training run per seed)
MAX_THREADS = 1_024  #: worker threads of the local engine
MAX_JOBS = 256  #: training processes run at once by a sweep
MAX_ROWS = 2**40  #: rows (per chunk, per sample): far beyond any file, within int64
MAX_COUNT = 2**62  #: a count compared with class sizes (int64)


def not_empty(ctx, param, value):
    """A click callback: an empty or blank value is a usage error, not the option left out
    (``--class-names "$NAMES"`` with ``NAMES`` unset ran without the names, silently)."""
    if isinstance(value, str) and not value.strip():
        raise click.BadParameter(
            f"{value!r} is empty; give a value or leave the option out for its default"
        )
    return value


#: Schemes of a Dask scheduler address a command can reach (``inproc`` is in-process only).
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")
_ADDRESS_RE = re.compile(r"^(?:([a-z]+)://)?(\[[^\]]*\]|[^:/\[\]\s]+):(\d{1,5})$", re.ASCII)


def check_scheduler(ctx, param, value):
    """A click callback: ``--scheduler`` is ``[SCHEME://]HOST:PORT`` (Dask's form), else a
    usage error here rather than an internal error from inside Dask."""
    if value is None:
        return None
    m = _ADDRESS_RE.match(value.strip()) if len(value) <= 1000 else None
    scheme = m.group(1) if m else None
    if not m or (scheme is not None and scheme not in SCHEDULER_SCHEMES):
        raise click.BadParameter(
            f"{clip(repr(value))} is not a scheduler address like tcp://10.0.0.5:8786 "
            f"(schemes: {', '.join(SCHEDULER_SCHEMES)})"
        )
    if not 1 <= int(m.group(3)) <= 65535:
        raise click.BadParameter(f"{clip(repr(value))}: the port must be in 1..65535")
    return value.strip()


def int_range(lo: int | None, hi: int) -> click.IntRange:
    """``click.IntRange(lo, hi)``: a value outside is a usage error naming the range."""
    return click.IntRange(min=lo, max=hi)


allow_external_option = click.option(
    "--allow-external",
    is_flag=True,
    help="Follow HDF5 external links, external raw storage and virtual datasets "
    "(refused by default: they read other files; see docs/security.md).",
)


def key_options(func):
    """--features-key ... --outputs-key: explicit array names for unusual dumps."""
    for role in reversed(("features", "labels", "weights", "bias", "outputs")):
        func = click.option(
            f"--{role}-key",
            f"{role}_key",
            metavar="NAME",
            default=None,
            callback=not_empty,
            help=f"Name of the {role} array (default: the standard name or an alias).",
        )(func)
    return func


def keys_from(kwargs: dict) -> dict[str, str]:
    """Pop the --*-key options out of ``kwargs`` into a role -> name dict."""
    keys = {}
    for role in ("features", "labels", "weights", "bias", "outputs"):
        value = kwargs.pop(f"{role}_key", None)
        if value:
            keys[role] = value
    return keys


def _removed_ncc_means(ctx, param, value):
    if value is not None:
        raise click.UsageError("--ncc-means was renamed --ncc-centres in 0.3 (own or train)")


def ncc_centres_option(func):
    """--ncc-centres own|train (and a clear error for its 0.2 name --ncc-means)."""
    func = click.option(
        "--ncc-means", hidden=True, expose_value=False, callback=_removed_ncc_means
    )(func)
    return click.option(
        "--ncc-centres",
        type=click.Choice(["own", "train"]),
        default="own",
        show_default=True,
        help="NCC centres for a test split: its own class means (spec/metrics.md), or the "
        "train means of the same epoch and layer (the convention of Papyan et al.).",
    )(func)


def chunk_options(func):
    """--memory-limit and --chunk-rows: how many rows are read and processed at a time."""
    func = click.option(
        "--chunk-rows",
        type=int_range(1, MAX_ROWS),
        default=None,
        help="Rows per chunk (overrides --memory-limit).",
    )(func)
    return click.option(
        "--memory-limit",
        metavar="SIZE",
        default=None,
        callback=_check_size,
        help="Peak memory of the whole process, e.g. 512MB (what it already holds, about "
        "70MiB after imports, counts; without it one chunk's budget is 256MiB).",
    )(func)


def engine_options(func):
    """--engine and --scheduler: where the passes over the rows run."""
    func = click.option(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        callback=check_scheduler,
        help="Dask scheduler address for --engine dask, e.g. tcp://10.0.0.5:8786 "
        "(default: Dask's local threaded scheduler). The file must be readable there.",
    )(func)
    return click.option(
        "--engine",
        type=click.Choice(["local", "dask"]),
        default="local",
        show_default=True,
        help="Run the passes in this process, or as Dask tasks (needs ncinspect[dask]).",
    )(func)


def threads_option(func):
    """--threads: worker threads of the local engine."""
    return click.option(
        "--threads",
        type=int_range(1, MAX_THREADS),
        default=None,
        help="Worker threads (default: every core this process may use; BLAS is capped "
        "to one thread per worker); a file of many small snapshots runs on as many worker "
        "processes. The numbers do not depend on it.",
    )(func)


def precision_option(func):
    """--precision: of pass 2's large products (report, check, plot)."""
    return click.option(
        "--precision",
        type=click.Choice(["float64", "float32"]),
        default="float64",
        show_default=True,
        help="Pass 2's large products (projections, decision scores) in float64, or in "
        "float32 with float64 sums: nc1 within the bound of docs/array-api.md, NCC and "
        "classifier decisions exact (near ties decided again in float64). Recorded in the JSON.",
    )(func)


def reading_options(func):
    """Every option on how the feature rows are read, for each command that reads them:
    --memory-limit, --chunk-rows, --threads, --engine, --scheduler (see
    :func:`reading_from`)."""
    return chunk_options(threads_option(engine_options(func)))


def chunks_from(kwargs: dict) -> dict:
    """Pop --chunk-rows / --memory-limit out of ``kwargs`` as keyword arguments of
    :func:`ncinspect.analyze_file` (``chunk_rows``, ``memory_limit`` in bytes)."""
    from ..budget import ProcessLimit

    limit = parse_size(kwargs.pop("memory_limit", None))
    return {
        "chunk_rows": kwargs.pop("chunk_rows", None),
        # on the command line the limit covers the whole process (docs/security.md)
        "memory_limit": None if limit is None else ProcessLimit(limit),
    }


@contextmanager
def reading_from(kwargs: dict):
    """Pop the :func:`reading_options` and ``--precision`` out of ``kwargs``; yield the
    keyword arguments of :func:`ncinspect.analyze_file` they mean (``chunk_rows``,
    ``memory_limit``, ``engine``: the precision is the engine's).

    The engine is made on entry (a usage error for ``--scheduler`` without ``--engine dask``
    or a missing extra) and closed on exit.
    """
    from ..engines import get_engine

    opts = chunks_from(kwargs)
    name, threads = kwargs.pop("engine", "local"), kwargs.pop("threads", None)
    precision = kwargs.pop("precision", None) or "float64"
    runner = get_engine(
        name, scheduler=kwargs.pop("scheduler", None), threads=threads, precision=precision
    )
    try:
        yield {**opts, "engine": runner}
    finally:
        getattr(runner, "close", lambda: None)()


def _check_size(ctx, param, value):
    parse_size(value)  # refuses a malformed or out-of-range size while options are parsed
    return value


debug_option = click.option("--debug", is_flag=True, hidden=True, help="Show full tracebacks.")

snapshot_option = click.option(
    "--snapshot",
    "-s",
    "snapshot",
    metavar="PATTERN",
    default=None,
    callback=not_empty,
    help="Glob on snapshot paths, e.g. 'epoch_*' or '/test/*' (comma-separated; default all).",
)


def emit(text: str, path: str | None, *, inputs=()) -> bool:
    """Write ``text`` to ``path`` (io/atomic.py rules), or to stdout when ``path`` is '-'.

    ``inputs`` are the command's input files: an output that is one of them is refused.
    On stdout (or a device or pipe written straight through) the ``[`` of a ``##[`` (a
    GitHub Actions workflow command anywhere in a line) is shown ``\\x5b``: JSON has none
    left (:func:`ncinspect.text.json_safe`); a CSV cell holding one changes there, never in
    a file. Returns True when stdout was used (so the caller prints no table after it).
    """
    if not path:
        return False
    from ..io.atomic import REPLACE, STDOUT, write_mode, write_output

    if write_mode(path) != REPLACE:  # a CI log: no "##[command]" from a name (a CSV cell)
        from ..text import no_workflow_command

        text = no_workflow_command(text)
    return write_output(path, text, inputs=inputs) == STDOUT


def emit_all(outputs, *, inputs=()) -> bool:
    """Write every ``(path, text)`` of ``outputs`` as :func:`emit` writes one, all or none
    (:func:`ncinspect.io.atomic.write_outputs`: a failed write leaves every target as it
    was). Returns True when stdout was used."""
    if not outputs:
        return False
    from ..io.atomic import REPLACE, STDOUT, write_mode, write_outputs
    from ..text import no_workflow_command

    items = [
        (path, text if write_mode(path) == REPLACE else no_workflow_command(text))
        for path, text in outputs
    ]
    return STDOUT in write_outputs(items, inputs=inputs)


def input_files(files, extra=()) -> list[str]:
    """The command's input files: its dumps and any other file an option names
    (``--class-names``, ``--config``); an output may be none of them."""
    return [*files, *(path for path in extra if path)]


def say(text: str, *, err: bool = True) -> None:
    """Print one message line (a note, a failure, a summary) that echoes paths, names or
    option values: the same guard as the error lines of :func:`ncinspect.cli.main`
    (:func:`ncinspect.text.clip_line`: control characters escaped, so no terminal sequence
    and no second line; each long value elided, the line capped; no ``##[`` workflow
    command). Every such line of a command goes through here, never a bare ``click.echo``."""
    from ..text import clip_line

    click.echo(clip_line(text), err=err)


def shown_path(path: str) -> str:
    """A path the command wrote, as a line of its listing: whole (the user's own name), with
    control characters escaped and a leading ``::`` shown as ``./::`` (the same file)."""
    from ..text import line_start, plain

    return plain(line_start(path))


def stdout_console():
    """Console for tables on stdout: the terminal's width, or when piped (a file, a CI log)
    ``$COLUMNS`` if set and otherwise wide enough that no table is reflowed.

    Tables are fitted to the width (render.layout) and messages are whole lines when piped.
    """
    import os
    import sys

    from rich.console import Console

    width = None
    if not sys.stdout.isatty():
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else 1000
    return Console(highlight=False, soft_wrap=False, width=width)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def class_options(func):
    """--class-names FILE and --min-class-count K: the class order and absent classes."""
    func = click.option(
        "--min-class-count",
        "min_class_count",
        type=int_range(1, MAX_COUNT),
        default=1,
        show_default=True,
        metavar="K",
        help="Treat classes with fewer than K samples as absent (left out of NC1-NC3 and NCC).",
    )(func)
    return click.option(
        "--class-names",
        "class_names_file",
        metavar="FILE",
        type=click.Path(dir_okay=False),
        default=None,
        callback=not_empty,
        help="The classifier's class order, one name a line (row k of W is line k); needed "
        "for string labels when the dump has no class_names.",
    )(func)


def classes_from(kwargs: dict) -> dict:
    """Pop --class-names / --min-class-count out of ``kwargs`` as keyword arguments of
    :func:`ncinspect.analyze_file` (``class_names``, ``min_class_count``)."""
    from ..io.class_names import read_class_names

    path = kwargs.pop("class_names_file", None)
    return {
        "class_names": read_class_names(path) if path else None,
        "min_class_count": kwargs.pop("min_class_count", 1),
    }


def distinct_runs(files) -> None:
    """``--aggregate``: at least two files, none given twice (however spelled): a file
    counted twice would give a zero-width interval from one run."""
    if len(files) < 2:
        raise click.UsageError("--aggregate needs at least two runs (files)")
    seen: dict[tuple[int, int], str] = {}
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            continue  # the reader reports an unreadable input with its own message
        key = (st.st_dev, st.st_ino)
        if key in seen:
            raise click.UsageError(
                f"{seen[key]} and {f} are the same file: each run (seed) counts once"
            )
        seen[key] = f
