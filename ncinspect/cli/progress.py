"""A rich progress bar on stderr for the passes over the rows (rows, MB/s, ETA).

:class:`RowProgress` is the ``progress`` callback of :func:`ncinspect.analyze_file` and
friends: called with the rows done after each chunk, told the total work first through
``expect(rows, nbytes)``. It draws nothing unless enabled (the CLI enables it when stderr is
a terminal and ``--quiet`` is not given) and only after the work has taken a moment, so
small files never flash a bar.
"""

from __future__ import annotations

import time

__all__ = ["RowProgress"]


class RowProgress:
    """Progress of row passes, drawn on ``console`` (default: stderr) as a transient bar.

    Parameters
    ----------
    enabled : bool
        Draw anything at all.
    console : rich.console.Console, optional
        Where to draw (default a stderr console).
    delay : float
        Seconds of work before the bar appears.
    """

    def __init__(self, *, enabled: bool = True, console=None, delay: float = 0.5):
        self.enabled = enabled
        self.console = console
        self.delay = delay
        self.total_rows = 0
        self.row_bytes = 0.0
        self.done = 0
        self._started = time.monotonic()
        self._bar = None
        self._task = None

    def expect(self, rows: int, nbytes: int) -> None:
        """Add ``rows`` rows (``nbytes`` feature bytes) to the work ahead."""
        all_bytes = self.total_rows * self.row_bytes + nbytes
        self.total_rows += rows
        self.row_bytes = all_bytes / self.total_rows if self.total_rows else 0.0
        if self._bar is not None:
            self._bar.update(self._task, total=self.total_rows)

    def __call__(self, rows: int) -> None:
        self.done += rows
        if not self.enabled:
            return
        if self._bar is None and time.monotonic() - self._started >= self.delay:
            self._start()
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, rate=self._rate())

    def _start(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from .common import stderr_console

        self._bar = Progress(
            TextColumn("[bold]passes[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console or stderr_console(),
            transient=True,
            refresh_per_second=4,
        )
        self._bar.start()
        self._task = self._bar.add_task("passes", total=self.total_rows or None, rate="")
        self._bar.update(self._task, completed=self.done)

    def _rate(self) -> str:
        seconds = time.monotonic() - self._started
        if seconds <= 0 or not self.row_bytes:
            return ""
        return f"{self.done * self.row_bytes / seconds / 1e6:,.0f} MB/s"

    def close(self) -> None:
        """Remove the bar (if drawn), its drawing thread ended: rich's ``stop`` only signals
        that thread, and while it lives no worker process may be forked
        (:mod:`ncinspect.engines.processes`), so the next file of ``report --aggregate`` ran
        on one core when the thread had not yet seen the signal."""
        if self._bar is not None:
            thread = getattr(getattr(self._bar, "live", None), "_refresh_thread", None)
            self._bar.stop()
            if thread is not None:
                thread.join(timeout=5.0)
            self._bar = None

    def __enter__(self) -> RowProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
