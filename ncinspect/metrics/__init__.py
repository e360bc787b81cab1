"""Pure functions from sufficient statistics to the numbers of spec/metrics.md.

The package imports numpy and :mod:`ncinspect.stats` only (no IO, no printing, no
plotting). One small kernel per metric, documented with its formula in Notes; undefined
values are ``None`` together with a reason (key -> why), never 0 or NaN.

- :mod:`.registry`: one entry per metric (key, group, direction, title, formula,
  invariances), which drives the table, CSV columns, check's names and plot titles;
- :mod:`.geometry`: class means, global mean and the between-class eigenbasis (pass 1);
- :mod:`.kernels`, :mod:`.general`, :mod:`.seli`: the NC1-NC3 and the generalized kernels;
- :mod:`.compute`: every metric of a classification snapshot at once;
- :mod:`.regression`, :mod:`.ood`: NRC1-NRC3 and NC5.
"""

from __future__ import annotations

from .compute import METRIC_KEYS, PER_CLASS_KEYS, compute_metrics
from .geometry import EIG_RTOL, between_class_geometry
from .kernels import cdnv, equinorm, etf_error, etf_gram, pairwise_cosine_stats, self_duality

__all__ = [
    "EIG_RTOL",
    "METRIC_KEYS",
    "PER_CLASS_KEYS",
    "between_class_geometry",
    "etf_gram",
    "etf_error",
    "equinorm",
    "pairwise_cosine_stats",
    "cdnv",
    "self_duality",
    "compute_metrics",
]
