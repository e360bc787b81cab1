"""Exceptions raised by ncinspect.

Every error a user can cause derives from :class:`NCInspectError`. Each class carries the
process exit code the CLI maps it to (DESIGN.md: 1 check failed, 2 usage error, 3 bad or
unreadable input, 4 internal error). Messages are one line and say what was found, what was
expected and where (file, group, array).
"""

from __future__ import annotations

__all__ = [
    "NCInspectError",
    "UsageError",
    "DumpError",
    "UnreadableFileError",
    "MissingArrayError",
    "AmbiguousArrayError",
    "ShapeMismatchError",
    "InvalidDataError",
    "UnsupportedDtypeError",
    "ExternalDataError",
    "ResourceLimitError",
    "OutputError",
    "ConfigError",
]


class NCInspectError(Exception):
    """Base class of every error ncinspect raises on purpose."""

    exit_code = 3


class UsageError(NCInspectError):
    """A wrong option value or combination (exit code 2)."""

    exit_code = 2


class DumpError(NCInspectError):
    """The input file is not a usable dump (exit code 3)."""


class UnreadableFileError(DumpError):
    """Missing, empty, truncated, corrupt or not an HDF5/NPZ file."""


class MissingArrayError(DumpError):
    """A required array (features, labels) is not in the file."""


class AmbiguousArrayError(DumpError):
    """Two aliases of the same array are present; ncinspect never picks one silently."""


class ShapeMismatchError(DumpError):
    """Arrays whose shapes disagree (N, d or C)."""


class InvalidDataError(DumpError):
    """Values that cannot be analysed: NaN/Inf, fractional labels, fewer than two classes."""


class UnsupportedDtypeError(DumpError):
    """A dtype ncinspect cannot read (object arrays needing pickle, complex, ...)."""


class ExternalDataError(DumpError):
    """The file points outside itself (external links or storage, virtual datasets) and the
    user did not opt in with ``allow_external`` (``--allow-external``)."""


class ResourceLimitError(NCInspectError):
    """The input cannot be processed within the memory budget (or another bound); the
    message names the budget that would be needed (exit code 3)."""


class OutputError(NCInspectError):
    """An output that cannot be written: it is an input, a folder, or the write failed (exit 3)."""


class ConfigError(NCInspectError):
    """A configuration file that cannot be read: not a regular file, not UTF-8 TOML (exit 3)."""


def refuse_removed(**renamed: str):
    """Decorator: a keyword argument removed in 0.3 raises :class:`UsageError` that names what
    replaces it (``renamed`` maps the old keyword to that advice), instead of Python's bare
    "unexpected keyword argument"."""
    import functools

    def wrap(func):
        @functools.wraps(func)
        def inner(*args, **kwargs):
            for old, advice in renamed.items():
                if old in kwargs:
                    raise UsageError(f"{func.__name__}({old}=...) was removed in 0.3: {advice}")
            return func(*args, **kwargs)

        return inner

    return wrap
