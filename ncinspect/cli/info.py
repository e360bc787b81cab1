"""``ncinspect info FILE``: list snapshots and arrays without computing anything."""

from __future__ import annotations

import click

from .common import debug_option, key_options, keys_from


@click.command("info")
@click.argument("file", type=click.Path())
@key_options
@debug_option
def command(file, debug, **kwargs):
    """List the snapshots of FILE (with N, d, C sources) and every array it holds."""
    from rich.table import Table

    from ..dump import open_dump
    from .common import stdout_console

    console = stdout_console()
    with open_dump(file, keys=keys_from(kwargs)) as dump:
        snaps = Table(
            title=f"[bold]{file}[/bold] ({dump.format}): {len(dump.snapshots)} snapshot(s)",
            title_justify="left",
        )
        for col in (
            "snapshot",
            "epoch",
            "split",
            "layer",
            "features",
            "labels",
            "weights",
            "bias",
            "outputs",
            "params",
        ):
            snaps.add_column(col)
        for s in dump.snapshots:

            def desc(src):
                return (
                    "-" if src is None else f"{src.where.split(':', 1)[-1]} {src.shape} {src.dtype}"
                )

            snaps.add_row(
                s.name,
                str(s.epoch if s.epoch is not None else "-"),
                s.split or "-",
                s.layer or "-",
                desc(s.features),
                desc(s.labels),
                desc(s.weights),
                desc(s.bias),
                desc(s.outputs),
                str(len(s.params)) if s.params else "-",
            )
        console.print(snaps)
        arrays = Table(title="arrays", title_justify="left")
        for col in ("path", "shape", "dtype"):
            arrays.add_column(col)
        for node in dump.tree.walk():
            for name, src in sorted(node.arrays.items()):
                arrays.add_row(f"{node.path.rstrip('/')}/{name}", str(src.shape), str(src.dtype))
        console.print(arrays)
        for note in dict.fromkeys(dump.notes):
            console.print(f"[yellow]note[/yellow] {note}")
    return 0
