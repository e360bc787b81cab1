"""Results: :class:`SnapshotResult` (one snapshot) and :class:`Report` (one file), to JSON/CSV.

The JSON schema (version 1)::

    {"schema_version": 1, "ncinspect_version": ..., "file": ..., "conventions": {...},
     "snapshots": [{"name", "epoch", "split", "layer", "n_samples", "n_features",
                    "n_classes", "metrics": {key: value}, "per_class": [...] | null,
                    "warnings": [...], ...}]}

Keys are sorted, undefined values are ``null`` (never NaN), and reruns are byte-identical.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import METRIC_KEYS

__all__ = ["SCHEMA_VERSION", "SnapshotResult", "Report", "conventions", "atomic_write", "jsonable"]

SCHEMA_VERSION = 1


def conventions(center: str, ncc_means: str = "own") -> dict[str, str]:
    """The conventions a report was computed with (recorded in its JSON)."""
    return {
        "center": center,
        "global_mean": "mean of class means" if center == "classes" else "sample mean",
        "nc1": "Tr(Sigma_W Sigma_B^+)/C with the rank-limited (min(C-1,d)) eigen pseudo-inverse; "
        "the original Papyan et al. notebook logs C*nc1",
        "sigma_w": "pooled, sample-weighted: (1/N) sum_i (h_i - mu_y)(h_i - mu_y)^T",
        "sigma_b": "class-weighted: (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T",
        "ncc_means": ncc_means,
        "decisions": "classifier = argmax(W h + b) when weights are present, else argmax(outputs); "
        "ties go to the lowest class index",
        "sqi_outputs": "stored outputs when present, else W h + b",
    }


def jsonable(value: Any) -> Any:
    """Plain-Python, NaN-free version of ``value`` for JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


@dataclass
class SnapshotResult:
    """Metrics of one snapshot plus what the renderers and plots need.

    ``metrics`` holds every key of spec/metrics.md (None where undefined); ``per_class`` a
    list of per-class dicts (with ``class``) when requested. ``arrays`` holds the geometry
    for figures (class means, global mean, classifier, between-class eigenvalues, within-
    class variance along those directions); it is not written to JSON.
    """

    name: str
    n_samples: int
    n_features: int
    n_classes: int
    metrics: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    per_class: list[dict[str, Any]] | None = None
    epoch: int | None = None
    split: str | None = None
    layer: str | None = None
    dtype: str = "float64"
    class_names: list[Any] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    center: str = "classes"
    ncc_means: str = "own"
    meta: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    theory: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def to_dict(self) -> dict[str, Any]:
        counts = self.class_counts or [0]
        out = {
            "name": self.name,
            "epoch": self.epoch,
            "split": self.split,
            "layer": self.layer,
            "n_samples": self.n_samples,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "dtype": self.dtype,
            "class_names": self.class_names,
            "class_balance": {"min": int(min(counts)), "max": int(max(counts))},
            "center": self.center,
            "ncc_means": self.ncc_means,
            "metrics": {k: self.metrics.get(k) for k in METRIC_KEYS},
            "per_class": self.per_class,
            "warnings": list(self.warnings),
            "meta": self.meta,
        }
        if self.theory is not None:
            out["theory"] = self.theory
        return jsonable(out)


@dataclass
class Report:
    """Results for the snapshots of one file (or one in-memory analysis)."""

    file: str | None
    snapshots: list[SnapshotResult]
    center: str = "classes"
    ncc_means: str = "own"

    def __iter__(self):
        return iter(self.snapshots)

    def __len__(self) -> int:
        return len(self.snapshots)

    def __getitem__(self, i: int) -> SnapshotResult:
        return self.snapshots[i]

    def to_dict(self) -> dict[str, Any]:
        from . import __version__

        return {
            "schema_version": SCHEMA_VERSION,
            "ncinspect_version": __version__,
            "file": self.file,
            "conventions": conventions(self.center, self.ncc_means),
            "snapshots": [s.to_dict() for s in self.snapshots],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Tidy rows: one per snapshot, one column per metric (plus identifying columns)."""
        header = [
            "file",
            "snapshot",
            "epoch",
            "split",
            "layer",
            "n_samples",
            "n_features",
            "n_classes",
            *METRIC_KEYS,
        ]
        rows = []
        for s in self.snapshots:
            rows.append(
                [
                    self.file,
                    s.name,
                    s.epoch,
                    s.split,
                    s.layer,
                    s.n_samples,
                    s.n_features,
                    s.n_classes,
                    *(jsonable(s.metrics.get(k)) for k in METRIC_KEYS),
                ]
            )
        return header, rows

    def to_csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        header, rows = self.csv_rows()
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
        return buf.getvalue()


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    from .errors import UsageError

    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    mode = "wb" if isinstance(data, bytes) else "w"
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".ncinspect-", dir=folder)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the output here ({exc.strerror})") from None
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
