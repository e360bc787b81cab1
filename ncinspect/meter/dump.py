"""Where a :class:`~ncinspect.Meter` writes the rows of its pass 1: one snapshot of a dump."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import UsageError

__all__ = ["DumpTarget"]


class DumpTarget:
    """Where a meter writes the rows of pass 1: a snapshot of a dump, opened lazily."""

    def __init__(self, dump: Any, snapshot: str, meta: Mapping[str, Any] | None):
        from ..io.writer import DumpWriter, SnapshotWriter

        if not isinstance(dump, (DumpWriter, SnapshotWriter, str, os.PathLike)):
            raise UsageError(
                f"dump must be a path, a DumpWriter or a SnapshotWriter, got {type(dump).__name__}"
            )
        if not isinstance(snapshot, str):
            raise UsageError(f"snapshot must be a group name (str), got {snapshot!r}")
        self.target, self.name, self.meta = dump, snapshot, dict(meta or {})
        self._writer = None  # a writer this target opened (and closes)
        self._snap = None
        self._written: set[str] = set()

    def retarget(self, snapshot: str, meta: Mapping[str, Any] | None) -> None:
        from ..io.writer import SnapshotWriter

        if isinstance(self.target, SnapshotWriter):
            raise UsageError(
                "the meter writes to one SnapshotWriter; give a new one to a new Meter"
            )
        if not isinstance(snapshot, str):
            raise UsageError(f"snapshot must be a group name (str), got {snapshot!r}")
        self.name, self.meta = snapshot, dict(meta or {})

    def _open(self):
        from ..io.writer import DumpWriter, SnapshotWriter

        if isinstance(self.target, SnapshotWriter):
            if self.meta:
                self.target.set_meta(**self.meta)
            return self.target
        writer = self.target
        if not isinstance(writer, DumpWriter):
            writer = self._writer = DumpWriter(self.target, "a")
        # complete only when pass 1 ends (finish below): a meter dropped half way, or whose
        # caller caught an error and went on, leaves its rows marked in progress
        return writer.snapshot(self.name, **self.meta).keep_until_finish()

    def rows(self, h: Any, y: Any) -> None:
        if self._snap is None:
            key = self.name.strip("/") or "/"
            if key in self._written:
                raise UsageError(
                    f"the meter already wrote the rows of snapshot {self.name!r}; give "
                    "reset(snapshot=...) a new name for the next measurement"
                )
            self._snap = self._open()
            self._written.add(key)
        self._snap.append(features=h, labels=y)

    def finish(self, weights: Any, bias: Any) -> None:
        if self._snap is not None and weights is not None:
            self._snap.write(weights=weights, bias=bias)
        if self._snap is not None and self._snap is not self.target:
            self._snap.finish()  # complete: marked so last (a SnapshotWriter given is the caller's)
        self.close()

    def close(self) -> None:
        if self._snap is not None and self._snap is not self.target and not self._snap.finished:
            # pass 1 never ended (reset before next_pass): its rows stay marked in progress,
            # also in a DumpWriter the caller owns and closes normally later
            self._snap.abandon()
        if self._writer is not None:
            # rows of a pass 1 that never ended (reset before next_pass) stay marked in progress
            self._writer.close(finish=False)
        self._writer = self._snap = None
