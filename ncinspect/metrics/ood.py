"""Out-of-distribution snapshots and NC5 (Ammar et al. 2024): statistic, kernel, pairing.

A snapshot whose split is ``ood`` or ``ood_<name>`` holds the features of another data set
(labels optional). It pairs with the in-distribution snapshots of the same epoch and layer:

    nc5_ood_orthogonality = mean over present classes c of |cos(mu_c, mu_G^ood)|

with ``mu_c`` the *uncentred* class means of the in-distribution snapshot and ``mu_G^ood``
the sample mean of the OOD features (lower is more orthogonal). ``mu_G^ood`` is one more
mergeable statistic over the OOD rows (:class:`FeatureSum`: a count and a float64 sum per
chunk), walked by an engine like the two passes.

JSON shape: the OOD set of split ``ood`` reports as ``nc5_ood_orthogonality``; a set
``ood_<name>`` as ``nc5_ood_orthogonality_<name>``; when a file has exactly one OOD set and
it is named, ``nc5_ood_orthogonality`` holds its value too. These keys appear on the
in-distribution snapshots of a file that holds OOD snapshots (null with a reason for a
snapshot that has no OOD partner of its epoch and layer).

No IO here: numpy only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = [
    "NC5_KEY",
    "FeatureSum",
    "is_ood_split",
    "nc5_key",
    "ood_orthogonality",
    "ood_partners",
]

NC5_KEY = "nc5_ood_orthogonality"

_OOD_RE = re.compile(r"^ood(?:_(.+))?$", re.IGNORECASE)


def is_ood_split(split: str | None) -> bool:
    """True for ``ood`` and ``ood_<name>`` (case-insensitive)."""
    return split is not None and _OOD_RE.match(str(split)) is not None


def nc5_key(split: str) -> str:
    """The JSON key of an OOD set: ``ood`` -> ``nc5_ood_orthogonality``, ``ood_x`` -> ``..._x``."""
    m = _OOD_RE.match(str(split))
    if m is None:
        raise ValueError(f"not an OOD split: {split!r}")
    return NC5_KEY if m.group(1) is None else f"{NC5_KEY}_{m.group(1)}"


@dataclass
class FeatureSum:
    """Row count and float64 column sums of a features array (and its NaN/Inf rows)."""

    count: int
    total: np.ndarray  # (d,)
    n_nonfinite: int = 0
    first_nonfinite_row: int | None = None

    @classmethod
    def empty(cls, n_features: int) -> FeatureSum:
        return cls(0, np.zeros(n_features))

    @classmethod
    def of_chunk(cls, row0: int, h: np.ndarray) -> FeatureSum:
        x = np.asarray(h, dtype=np.float64)
        finite = np.isfinite(x).all(axis=1)
        bad = np.flatnonzero(~finite)
        if bad.size:
            x = x[finite]
        return cls(
            int(x.shape[0]),
            x.sum(axis=0),
            int(bad.size),
            int(row0 + bad[0]) if bad.size else None,
        )

    def merge(self, other: FeatureSum) -> FeatureSum:
        firsts = [r for r in (self.first_nonfinite_row, other.first_nonfinite_row) if r is not None]
        return FeatureSum(
            self.count + other.count,
            self.total + other.total,
            self.n_nonfinite + other.n_nonfinite,
            min(firsts) if firsts else None,
        )

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1)


def ood_orthogonality(
    means: np.ndarray, present: np.ndarray, ood_mean: np.ndarray
) -> tuple[float | None, str | None]:
    """``(nc5, reason)``: mean over present classes of ``|cos(mu_c, mu_G^ood)|``.

    Parameters
    ----------
    means : (C, d) uncentred class means of the in-distribution snapshot.
    present : (C,) bool, the classes that take part (rows of absent classes are ignored).
    ood_mean : (d,) sample mean of the OOD features.

    Each row is scaled by its largest entry before the norms, so the value is exact over
    the whole float64 range. Undefined (None) when the OOD mean or a present class mean is 0.
    """
    mu = np.asarray(means, dtype=np.float64)[np.asarray(present, dtype=bool)]
    g = np.asarray(ood_mean, dtype=np.float64)
    if mu.shape[0] == 0:
        return None, "no class has samples"
    gm = np.abs(g).max()
    if gm == 0 or not np.isfinite(gm):
        return None, "the OOD features' mean is zero"
    g = g / gm
    g = g / np.linalg.norm(g)
    rm = np.abs(mu).max(axis=1)
    if np.any(rm == 0):
        return None, "a class mean is zero"
    mu = mu / rm[:, None]
    cos = (mu @ g) / np.linalg.norm(mu, axis=1)
    return float(np.mean(np.abs(cos))), None


def ood_partners(snap, snaps) -> list:
    """The OOD snapshots of the same epoch and layer as the in-distribution ``snap``."""
    if is_ood_split(snap.split):
        return []
    return [
        o
        for o in snaps
        if o is not snap
        and is_ood_split(o.split)
        and o.epoch == snap.epoch
        and o.layer == snap.layer
    ]
