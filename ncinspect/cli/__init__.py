"""The ``ncinspect`` command line: the group only assembles commands (one module each).

Each command module defines a click command named ``command`` that parses its options, calls
the library and renders. Commands never call ``sys.exit``: they return an exit code (or
``None`` for 0) and :func:`main` maps exceptions to exit codes (DESIGN.md):
0 ok, 1 a check failed, 2 usage error, 3 bad or unreadable input, 4 internal error.
Heavy libraries are imported inside the commands, so ``ncinspect --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys

import click

from .._version import __version__

# name -> module under ncinspect.cli that defines `command`
_COMMANDS = {
    "report": "report",
    "info": "info",
    "train": "train",
    "plot": "plot",
    "check": "check",
    "theory": "theory",
    "sweep": "sweep",
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported only when used (fast ``--help``)."""

    def list_commands(self, ctx):
        return [name for name in _COMMANDS if self._load(name) is not None]

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        module = _COMMANDS.get(name)
        if module is None:
            return None
        try:
            mod = importlib.import_module(f"ncinspect.cli.{module}")
        except ModuleNotFoundError as exc:  # a command not built yet
            if exc.name == f"ncinspect.cli.{module}":
                return None
            raise
        return mod.command


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=__version__, prog_name="ncinspect")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Measure neural collapse (NC1-NC4, ETF geometry, SQI theory checks) in trained classifiers."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _drop_odd_terminal_sizes() -> None:
    """Forget ``COLUMNS``/``LINES`` that are not a few ASCII digits: rich (and the table
    width) test them with ``str.isdigit``, which holds for ``\u00b2``, then call int(),
    which refuses it (and 5,000 digits): every command exited 4 on such an environment."""
    import os

    for name in ("COLUMNS", "LINES"):
        value = os.environ.get(name)
        if value is not None and not (value.isascii() and value.isdigit() and len(value) < 10):
            del os.environ[name]


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ncinspect`` console script; returns (and exits with) the code."""
    from ..errors import NCInspectError
    from ..io.probe import configure_from_env, restore

    # messages name files and arrays: no raw control codes, bounded
    from ..text import MAX_LINE, clip, clip_line

    args = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(args)
    _drop_odd_terminal_sizes()
    probe_before = configure_from_env()  # HDF5 metadata walked in a child first (io/probe.py)
    try:
        rv = cli.main(args=args, prog_name="ncinspect", standalone_mode=False)
        code = 0 if rv is None else int(rv)
    except click.exceptions.Abort:
        click.echo("ncinspect: aborted", err=True)
        code = 130
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:  # usage errors: unknown option, bad value
        # click echoes values unbounded; its "Error: Invalid value for '--x' / '-x': " is
        # put before the message, so the message leaves room for it within MAX_LINE
        exc.message = clip_line(exc.message, MAX_LINE - 120, echoed=args)
        exc.show()
        code = 2
    except NCInspectError as exc:
        if debug:
            raise
        prefix = "ncinspect: error: "
        click.echo(f"{prefix}{clip_line(exc, MAX_LINE - len(prefix), echoed=args)}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("ncinspect: interrupted", err=True)
        code = 130
    except Exception as exc:  # noqa: BLE001 - last resort: no traceback unless --debug
        if debug:
            raise
        prefix = f"ncinspect: internal error: {clip(type(exc).__name__, 60)}: "
        suffix = " (rerun with --debug for the traceback)"
        room = MAX_LINE - len(prefix) - len(suffix)
        click.echo(f"{prefix}{clip_line(exc, room, echoed=args)}{suffix}", err=True)
        code = 4
    restore(probe_before)  # in-process callers (tests, notebooks) keep the library default
    if argv is None:
        sys.exit(code)
    return code
