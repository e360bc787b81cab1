"""``ncinspect info FILE``: list snapshots and arrays without computing anything."""

from __future__ import annotations

import click

from .common import INPUT_FILE, allow_external_option, debug_option, key_options, keys_from

_ROLES = ("features", "labels", "weights", "bias", "outputs")


@click.command("info")
@click.argument("file", type=INPUT_FILE)
@key_options
@allow_external_option
@debug_option
def command(file, allow_external, debug, **kwargs):
    """List the snapshots of FILE (with N, d, C sources) and every array it holds.

    Array paths are shown whole: a narrow terminal gets the table in several parts (or one
    line per value) rather than a cut path.
    """
    from rich.table import Table

    from ..analysis.regression import snapshot_kind
    from ..dump import open_dump
    from ..render.layout import column, message, show
    from ..render.safe import markup
    from ..text import line_start
    from .common import stdout_console

    console = stdout_console()
    with open_dump(file, keys=keys_from(kwargs), allow_external=allow_external) as dump:

        def path_of(src) -> str:
            if src is None:
                return "-"
            where = src.where
            prefix = f"{dump.path}:"
            return markup(where[len(prefix) :] if where.startswith(prefix) else where)

        snaps = Table(
            title=f"[bold]{markup(line_start(file))}[/bold] ({markup(dump.format)}): "
            f"{len(dump.snapshots)} snapshot(s)",
            title_justify="left",
        )
        column(snaps, "snapshot", "key")
        for col in ("epoch", "split", "layer", "N", "d"):
            column(snaps, col, "value", justify="right" if col in ("epoch", "N", "d") else "left")
        for role in _ROLES:
            column(snaps, role, "value")
        column(snaps, "params", "value", justify="right")
        column(snaps, "task", "value")
        for s in dump.snapshots:
            shape = tuple(s.features.shape or ())
            snaps.add_row(
                markup(s.name),
                str(s.epoch if s.epoch is not None else "-"),
                markup(s.split or "-"),
                markup(s.layer or "-"),
                str(shape[0]) if len(shape) > 0 else "-",
                str(shape[1]) if len(shape) > 1 else "-",
                *(path_of(getattr(s, role)) for role in _ROLES),
                str(len(s.params)) if s.params else "-",
                snapshot_kind(s),
            )
        show(console, snaps)
        arrays = Table(title="arrays", title_justify="left")
        column(arrays, "path", "value")
        column(arrays, "shape", "value")
        column(arrays, "dtype", "value")
        for node in dump.tree.walk():
            for name, src in sorted(node.arrays.items()):
                arrays.add_row(
                    markup(f"{node.path.rstrip('/')}/{name}"),
                    markup(tuple(src.shape) if src.shape is not None else "-"),
                    markup(_dtype(src)),
                )
        show(console, arrays)
        for note in dict.fromkeys(dump.notes):
            message(console, f"[yellow]note[/yellow] {markup(note)}")
    return 0


def _dtype(src) -> str:
    """The dtype as the file names it when numpy's says nothing (a safetensors ``F8_E8M0``,
    an HDF5 time type: numpy's ``|V1``, ``|V4``)."""
    shown_dtype = getattr(src, "shown_dtype", None)
    return shown_dtype if isinstance(shown_dtype, str) else str(src.dtype)
