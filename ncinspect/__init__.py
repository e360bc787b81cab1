"""ncinspect: measure neural collapse in trained classifiers.

The public API is re-exported here; heavy modules (h5py, matplotlib, rich) load lazily.
"""

from __future__ import annotations

from ._version import __version__
from .errors import NCInspectError  # noqa: E402
from .io.writer import DumpWriter  # noqa: E402

__all__ = ["__version__", "NCInspectError", "DumpWriter"]

from .analysis.api import analyze, analyze_file, analyze_snapshot  # noqa: E402
from .analysis.regression import analyze_regression  # noqa: E402
from .dump import Snapshot, open_dump  # noqa: E402
from .meter.meter import Meter  # noqa: E402
from .results.report import Report, SnapshotResult  # noqa: E402
from .theory import theory_arrays, theory_file  # noqa: E402

__all__ += [
    "analyze",
    "analyze_file",
    "analyze_snapshot",
    "analyze_regression",
    "Meter",
    "open_dump",
    "Snapshot",
    "Report",
    "SnapshotResult",
    "theory_arrays",
    "theory_file",
]
