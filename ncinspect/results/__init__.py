"""Results: the typed result of a snapshot and of a file, their JSON/CSV forms, frames,
aggregation over seeds, trajectories and the conventions they record."""

from __future__ import annotations

from .parts import ResultArrays, TheoryLine, TheoryResult
from .report import Report, SnapshotResult

__all__ = ["Report", "SnapshotResult", "ResultArrays", "TheoryLine", "TheoryResult"]
