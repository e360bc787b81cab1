"""Analysis: features, labels and classifiers in, results out (arrays, snapshots, files,
regression, OOD, bootstrap intervals, subsamples and projections for figures)."""

from __future__ import annotations

from .api import analyze, analyze_file, analyze_snapshot
from .regression import analyze_regression

__all__ = ["analyze", "analyze_file", "analyze_snapshot", "analyze_regression"]
