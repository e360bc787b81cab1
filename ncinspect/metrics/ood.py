"""Out-of-distribution snapshots and NC5 (Ammar et al. 2024): statistic, kernel, pairing.

A snapshot whose split is ``ood`` or ``ood_<name>`` holds the features of another data set
(labels optional). It pairs with the in-distribution snapshots of the same epoch and layer:

    nc5_ood_orthogonality = mean over present classes c of |cos(mu_c, mu_G^ood)|

with ``mu_c`` the *uncentred* class means of the in-distribution snapshot and ``mu_G^ood``
the sample mean of the OOD features (lower is more orthogonal). ``mu_G^ood`` is one more
mergeable statistic over the OOD rows (:class:`FeatureSum`: a count, a float64 sum and a
float64 sum of absolute values per chunk), walked by an engine like the two passes.

A mean that is zero in exact arithmetic (OOD rows x and -x; a class of rows a and -a) is
left a vector of ~1e-17 by the float sums, whose direction is rounding noise: a mean whose
norm is within the rounding bound of the sum that made it counts as zero, and nc5 is null
with that reason (:meth:`FeatureSum.mean_bound`, :func:`class_mean_bounds`).

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
    "class_mean_bounds",
    "is_ood_split",
    "nc5_key",
    "ood_orthogonality",
    "ood_partners",
]

NC5_KEY = "nc5_ood_orthogonality"
_U64 = 2.0**-53  #: the unit round-off of float64

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
    """Row count, float64 column sums and column sums of absolute values of a features
    array (and its NaN/Inf rows, left out of the sums). ``abs_total`` (None: not taken)
    bounds the rounding of ``total`` (:meth:`mean_bound`)."""

    count: int
    total: np.ndarray  # (d,)
    n_nonfinite: int = 0
    first_nonfinite_row: int | None = None
    abs_total: np.ndarray | None = None  # (d,) sum of |h_ij| over the rows

    @classmethod
    def empty(cls, n_features: int) -> FeatureSum:
        return cls(0, np.zeros(n_features), abs_total=np.zeros(n_features))

    @classmethod
    def of_chunk(cls, row0: int, h: np.ndarray) -> FeatureSum:
        x = np.asarray(h, dtype=np.float64)
        # the sums of |h_ij| are finite exactly when every entry is (unless they overflow):
        # the row-by-row NaN/Inf test runs only when they are not
        with np.errstate(over="ignore", invalid="ignore"):
            abs_total = np.add.reduce(np.abs(x), axis=0)
        bad = np.zeros(0, dtype=np.intp)
        if not np.isfinite(abs_total).all():
            finite = np.isfinite(x).all(axis=1)
            bad = np.flatnonzero(~finite)
            if bad.size:
                x = x[finite]
                abs_total = np.add.reduce(np.abs(x), axis=0)
        return cls(
            int(x.shape[0]),
            x.sum(axis=0),
            int(bad.size),
            int(row0 + bad[0]) if bad.size else None,
            abs_total,
        )

    def merge(self, other: FeatureSum) -> FeatureSum:
        firsts = [r for r in (self.first_nonfinite_row, other.first_nonfinite_row) if r is not None]
        both = self.abs_total is not None and other.abs_total is not None
        return FeatureSum(
            self.count + other.count,
            self.total + other.total,
            self.n_nonfinite + other.n_nonfinite,
            min(firsts) if firsts else None,
            self.abs_total + other.abs_total if both else None,
        )

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1)

    def mean_bound(self) -> np.ndarray | None:
        """(d,) a bound on ``|mean_j|`` when the exact mean is zero (None: no
        ``abs_total``): a sum of n terms, added in any order, errs by at most
        ``(n - 1) u sum_i |h_ij|`` (Higham, Accuracy and Stability, 4.2), the division by n
        adds ``u``; ``4 (n + 1) u sum_i |h_ij| / n`` covers both and the rounding of the
        absolute sums themselves (their relative error is below ``(n - 1) u``)."""
        if self.abs_total is None or self.count == 0:
            return None
        n = float(self.count)
        with np.errstate(over="ignore", under="ignore"):
            return 4.0 * (n + 1.0) * _U64 * (self.abs_total / n)


def class_mean_bounds(counts: np.ndarray, class_var: np.ndarray | None) -> np.ndarray | None:
    """(C,) the largest norm of each class mean ``mu_c`` that is zero up to the rounding of
    the class sum that made it (NaN: no bound; None without ``class_var``).

    The sum of ``n_c`` rows errs by at most ``(n_c - 1) u sum_i |h_i|`` per coordinate, at
    most ``n_c (n_c - 1) u rms_c`` in norm, ``rms_c = sqrt(v_c + |mu_c|^2)`` the root mean
    square of the rows (``v_c`` their mean squared distance to ``mu_c``, from pass 2); as
    for the centred means (:func:`~ncinspect.metrics.compute` ``_centred_beyond_rounding``)
    ``k = 4 (n_c + 1) u`` covers the division and the bounds' own roundings. ``|mu_c| <=
    k rms_c`` reads ``|mu_c| <= k sqrt(v_c) / sqrt(1 - k^2)``: no square of ``|mu_c|`` (which
    may overflow) is formed. A class whose ``v_c`` over- or underflowed has no bound (NaN).
    """
    if class_var is None:
        return None
    n = np.asarray(counts, dtype=np.float64)
    v = np.asarray(class_var, dtype=np.float64)
    if n.shape != v.shape:
        return None
    k = 4.0 * (n + 1.0) * _U64
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        bound = k * np.sqrt(v) / np.sqrt(np.maximum(1.0 - k * k, 0.0))
    known = np.isfinite(bound) & (v > 0) & (n > 0)
    return np.where(known, bound, np.nan)


def _norm(x: np.ndarray) -> np.ndarray:
    """Row norms (or the norm of a vector) scaled by the largest entry first: no over- or
    underflow of the squares."""
    x = np.atleast_2d(x)
    m = np.abs(x).max(axis=1)
    safe = np.where((m > 0) & np.isfinite(m), m, 1.0)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        return np.where(m > 0, safe * np.linalg.norm(x / safe[:, None], axis=1), m)


def ood_orthogonality(
    means: np.ndarray,
    present: np.ndarray,
    ood_mean: np.ndarray,
    *,
    ood_bound: np.ndarray | None = None,
    class_bound: np.ndarray | None = None,
) -> tuple[float | None, str | None]:
    """``(nc5, reason)``: mean over present classes of ``|cos(mu_c, mu_G^ood)|``.

    Parameters
    ----------
    means : (C, d) uncentred class means of the in-distribution snapshot.
    present : (C,) bool, the classes that take part (rows of absent classes are ignored).
    ood_mean : (d,) sample mean of the OOD features.
    ood_bound : (d,) the rounding bound of ``ood_mean`` (:meth:`FeatureSum.mean_bound`).
    class_bound : (C,) the largest norm of a class mean that is zero up to rounding
        (:func:`class_mean_bounds`; NaN: no bound).

    Each row is scaled by its largest entry before the norms, so the value is exact over
    the whole float64 range. Undefined (None) when the OOD mean or a present class mean is
    0, or within the rounding bound of the sum that made it (its direction is noise):
    ``|mu_G^ood| <= |ood_bound|``, ``|mu_c| <= class_bound_c``.
    """
    keep = np.asarray(present, dtype=bool)
    mu = np.asarray(means, dtype=np.float64)[keep]
    g = np.asarray(ood_mean, dtype=np.float64)
    if mu.shape[0] == 0:
        return None, "no class has samples"
    gm = np.abs(g).max()
    if gm == 0:
        return None, "the OOD features' mean is zero"
    if not np.isfinite(gm):
        return None, "the OOD features' mean is not finite (its sum overflowed float64)"
    if ood_bound is not None:
        b = np.asarray(ood_bound, dtype=np.float64)
        top = max(gm, float(np.abs(b).max()))
        if np.isfinite(top) and np.linalg.norm(g / top) <= np.linalg.norm(b / top):
            return None, (
                "the OOD features' mean is zero up to the rounding of their sum "
                "(its norm is within the bound of that rounding; its direction is noise)"
            )
    g = g / gm
    g = g / np.linalg.norm(g)
    rm = np.abs(mu).max(axis=1)
    if np.any(rm == 0):
        return None, "a class mean is zero"
    if class_bound is not None:
        cb = np.asarray(class_bound, dtype=np.float64)[keep]
        with np.errstate(invalid="ignore"):
            noise = _norm(mu) <= cb  # NaN (no bound): False
        if noise.any():
            return None, (
                f"{int(noise.sum())} class mean(s) zero up to the rounding of their sums "
                "(the norm within the bound of that rounding; the direction is noise)"
            )
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
