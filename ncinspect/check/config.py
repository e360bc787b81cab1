"""Where check rules come from: TOML discovery (``[check]`` in ``ncinspect.toml`` or
``[tool.ncinspect.check]`` in ``pyproject.toml``, from the current folder upwards) and an
explicit ``--config`` file. Anything that stops a file being read is one line, exit 3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, UsageError
from .rules import CheckConfig, rules_from_table

__all__ = ["CONFIG_FILES", "MAX_CONFIG_BYTES", "find_config", "load_config", "resolve_config"]

#: (file name, keys leading to the check table), searched in this order in each folder.
CONFIG_FILES = (("ncinspect.toml", ("check",)), ("pyproject.toml", ("tool", "ncinspect", "check")))
#: A configuration file larger than this is refused (rules fit in a few kB).
MAX_CONFIG_BYTES = 16 * 2**20


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse the TOML file ``path``; anything that stops it is one line, exit code 3.

    The file type is checked before reading: a FIFO, device or socket is refused (reading
    one could block forever), as is a file over :data:`MAX_CONFIG_BYTES`.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    raw = _read_config_bytes(path)
    if raw.startswith(b"\xef\xbb\xbf"):  # tomllib's message would be "Invalid statement"
        raise ConfigError(
            f"{path}: starts with a UTF-8 byte order mark, which the TOML parser refuses; save "
            "it as UTF-8 without BOM"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte {exc.start}); TOML files are UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: invalid TOML ({first})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML (arrays or tables nested too deeply)") from None
    except (ValueError, OverflowError):  # an integer over Python's digit limit
        raise ConfigError(f"{path}: invalid TOML (a number with too many digits)") from None


def _read_config_bytes(path: Path) -> bytes:
    import stat

    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{path}: cannot read the configuration ({why})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: is a directory, expected a TOML file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            f"{path}: not a regular file (a FIFO, device or socket); expected a TOML file"
        )
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {st.st_size} bytes, more than a configuration file may have "
            f"({MAX_CONFIG_BYTES // 2**20} MiB)"
        )
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: a file swapped for a FIFO cannot block
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{path}: not a regular file; expected a TOML file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: more than {MAX_CONFIG_BYTES // 2**20} MiB")
    return raw


def _unrelated(path: Path) -> bool:
    """A pyproject.toml that does not mention ncinspect (its errors are not ours to report)."""
    try:
        return path.name == "pyproject.toml" and b"ncinspect" not in _read_config_bytes(path)
    except ConfigError:
        return True


def _section(data: Mapping[str, Any], keys: Sequence[str]) -> Mapping[str, Any] | None:
    for k in keys:
        if not isinstance(data, Mapping) or k not in data:
            return None
        data = data[k]
    return data


def find_config(start: str | os.PathLike | None = None) -> Path | None:
    """The first configuration file with a check section, from ``start`` (cwd) upwards.

    In each folder ``ncinspect.toml`` (section ``[check]``) is looked at before
    ``pyproject.toml`` (section ``[tool.ncinspect.check]``); a file without the section is
    skipped, as pytest and ruff do.
    """
    folder = Path(start or os.getcwd()).resolve()
    for here in (folder, *folder.parents):
        for name, keys in CONFIG_FILES:
            path = here / name
            if not path.is_file():
                continue
            try:
                data = _read_toml(path)
            except ConfigError:
                if _unrelated(path):  # another tool's broken file: not a reason to fail
                    continue
                raise
            if _section(data, keys) is not None:
                return path
    return None


def load_config(path: str | os.PathLike) -> CheckConfig:
    """Read the check section of ``path`` (``ncinspect.toml`` layout unless it is a pyproject)."""
    path = Path(path)
    keys = dict(CONFIG_FILES).get(path.name, CONFIG_FILES[0][1])
    section = _section(_read_toml(path), keys)
    label = "[" + ".".join(keys) + "]"
    if section is None:
        raise UsageError(f"{path}: no {label} section")
    if not isinstance(section, Mapping):
        raise UsageError(f"{path}: {label} must be a table")
    config = rules_from_table(section, f"{path} {label}")
    config.path = os.fspath(path)
    return config


def resolve_config(
    path: str | os.PathLike | None = None, *, no_config: bool = False
) -> CheckConfig:
    """The configuration a check run uses: ``path`` (``--config``), else the file
    :func:`find_config` discovers, else none (an empty :class:`CheckConfig`); with
    ``no_config`` none at all."""
    if path and no_config:
        raise UsageError("--config and --no-config exclude each other")
    if no_config:
        return CheckConfig()
    found = path or find_config()
    return load_config(found) if found else CheckConfig()
