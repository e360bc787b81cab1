"""The package version, in one place (the facade, JSON outputs and ``--version`` read it)."""

__version__ = "0.1.0"
