"""Numeric building blocks of both passes: exact power-of-two scaling, mergeable moments
of scalars, the pass-1 class sums of one part of a chunk and the SQI sums of one block of
outputs. Nothing here knows the pass structure (:mod:`ncinspect.stats` does).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

#: numpy 2's ``np.errstate`` used as a decorator sets the error state per call (a context
#: variable's token per call: safe on the engine's threads) at half a ``with``'s cost
_ERRSTATE_PER_CALL = int(np.__version__.split(".", 1)[0]) >= 2


def errstate_calls(**kw):
    """A decorator running each call of a function under ``np.errstate(**kw)``. On numpy 1
    the decorator form shares one instance's saved state between the threads that enter it
    at once, so each call enters a context of its own there."""
    if _ERRSTATE_PER_CALL:
        return np.errstate(**kw)

    def decorate(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            with np.errstate(**kw):
                return fn(*args, **kwargs)

        return call

    return decorate


#: two centred class means whose squared distance is at most this fraction of the sum of
#: their squared norms coincide (equal to about 8 digits): the rule of the pair sweep's CDNV
#: and GNC2 (``ncinspect.metrics.pairs``)
COINCIDE = 2.0**-52

__all__ = [
    "DENSE_MAX_C",
    "FLOAT32_BAND",
    "Moments",
    "first_rows",
    "group_sum",
    "output_sums",
    "pow2_scale",
    "scale_band",
    "to_float64",
]

#: magnitudes in this band need no rescaling: their squares and sums of squares over any
#: realistic N x d stay normal floats
_SAFE_LO, _SAFE_HI = 2.0**-200, 2.0**200
#: the band of :func:`pow2_scale` for pass 2 in float32 (``precision="float32"``): squares
#: and products of magnitudes beyond it leave float32's range (about 2^-126 to 2^128), so
#: features of 1e20 or 1e-25 are brought to unit scale there (float64 needs no rescaling)
FLOAT32_BAND = (2.0**-20, 2.0**20)
_max, _min, _sum = np.maximum.reduce, np.minimum.reduce, np.add.reduce


def scale_band(precision: str) -> tuple[float, float] | None:
    """The band of magnitudes a pass 2 in ``precision`` takes unscaled: :data:`FLOAT32_BAND`
    for float32 (squares of features of 1e20 overflow there, of 1e-25 underflow), None (the
    float64 band of :func:`pow2_scale`) otherwise."""
    return FLOAT32_BAND if precision == "float32" else None


def pow2_scale(x: np.ndarray, band: tuple[float, float] | None = None) -> float:
    """A power of two ``s`` with ``max|x| / s`` in [0.5, 1); 1.0 when ``max|x|`` lies in
    [2^-200, 2^200] (or is 0 or not finite), or in ``band`` when given (e.g.
    :data:`FLOAT32_BAND`).

    Dividing by a power of two is exact in float64 (unless the result is subnormal), so
    arrays divided by ``s`` give the same scale-invariant results, bit for bit, as
    unscaled ones whenever those did not under- or overflow; far outside the band they
    keep squares, Gram matrices and sums of squares inside the float64 range.
    """
    if type(x) is not np.ndarray:
        x = np.asarray(x)
    if x.size == 0:
        return 1.0
    # the ufunc's own reduce: no dispatch layer (called ~60 times a snapshot); a large
    # array's max |x| as max(max x, -min x): two passes that write nothing, instead of
    # writing |x| first (a C x d class-level array is read ~40 times a snapshot)
    if x.size > 4096:
        m = max(float(_max(x, axis=None)), -float(_min(x, axis=None)))
    else:
        m = float(_max(np.abs(x), axis=None))
    lo, hi = band or (_SAFE_LO, _SAFE_HI)
    if not math.isfinite(m) or m == 0 or lo <= m <= hi:
        return 1.0
    return math.ldexp(1.0, min(max(math.frexp(m)[1], -1020), 1020))


def to_float64(block: np.ndarray) -> np.ndarray:
    """A float64 copy of a chunk (always a copy, so callers may modify it in place)."""
    return np.array(block, dtype=np.float64, copy=True)


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of scalars, merged exactly (Chan et al.)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray) -> Moments:
        values = np.asarray(values, dtype=np.float64).ravel()
        n = values.size
        if n == 0:
            return cls()
        mean = float(_sum(values)) / n  # values.mean(): the same sum, divided the same way
        return cls(n, mean, float(_sum(np.square(values - mean))))

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return Moments(self.count, self.mean, self.m2)
        if self.count == 0:
            return Moments(other.count, other.mean, other.m2)
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        return Moments(n, mean, m2)


def first_rows(n_features: int, n_classes: int) -> int:
    """Rows of one pass-1 part: about 4 MiB of float64 features and at least 16 C rows (so
    that merging the parts' C x d sums stays cheap). A function of d and C only: the parts,
    summed in any thread and merged in row order, give the same sums on any machine."""
    return max(256, 16 * n_classes, (4 << 20) // (8 * max(n_features, 1)))


DENSE_MAX_C = 64  #: up to this C, pass 1 sums by a dense float64 indicator product (BLAS)


def group_sum(h: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """(C, d) float64 sums of the rows of ``h`` by label.

    Up to :data:`DENSE_MAX_C` classes: a dense (C x k) indicator times each float64 block
    of k rows (BLAS), the block sums added in row order. Above: one sparse (C x n)
    indicator product, each class summed in row order. A single pass over ``h`` either way,
    no sort and no copy of the rows grouped by class.
    """
    n, d = h.shape
    if n_classes <= DENSE_MAX_C and n:
        return _dense_group_sum(h, y, n_classes)
    from scipy.sparse import csr_matrix

    indicator = csr_matrix((np.ones(n), (y, np.arange(n))), shape=(n_classes, n))
    return np.asarray(indicator @ h, dtype=np.float64)


# np.errstate as a decorator, here and below: the same state for the whole call, about half
# the cost of a ``with`` block (no context object made and entered per call)
@errstate_calls(over="ignore", invalid="ignore")  # the caller handles inf/NaN
def _dense_group_sum(h: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """:func:`group_sum` up to :data:`DENSE_MAX_C` classes (``h`` has rows)."""
    n, d = h.shape
    rows = max(256, min(4096, (4 << 20) // (8 * max(d, 1))))
    classes = np.arange(n_classes)[:, None]
    buf = np.empty((min(rows, n), d))
    sums = np.zeros((n_classes, d))
    for a in range(0, n, rows):
        part = buf[: min(rows, n - a)]
        part[...] = h[a : a + rows]  # exact conversion to float64
        sums += (y[a : a + rows] == classes).astype(np.float64) @ part
    return sums


@errstate_calls(over="ignore", invalid="ignore")
def output_sums(out: np.ndarray, y: np.ndarray, scratch: bool = False) -> tuple:
    """SQI sums of one block of outputs ``out`` (m, C) with labels ``y``: the moments of the
    true-class and of the wrong-class outputs, ``sum_i ||f(x_i) - onehot(y_i)||^2``, the
    largest ``|f - onehot|`` and the largest ``|f|`` (non-finite where logits left float64:
    SQI is then null). ``scratch``: ``out`` is a work array that may be overwritten.
    """
    m, C = out.shape
    rows = np.arange(m)
    true = out[rows, y]  # a copy: fancy indexing
    true_out = Moments.of(true)
    wrong = out if scratch else out.copy()
    wrong[rows, y] = 0.0  # the wrong-class outputs, zeros on the true entries
    # the ufuncs' own reduce (as pow2_scale): what .max() / .sum() run, less dispatch
    top = max(float(_max(wrong, axis=None)), -float(_min(wrong, axis=None))) if wrong.size else 0.0
    t_abs = float(_max(np.abs(true), axis=None)) if m else 0.0
    true_err = true - 1.0  # f_y - 1: its largest |.| and its squares
    t_err = float(_max(np.abs(true_err), axis=None)) if m else 0.0
    out_abs_max = max(top, t_abs)
    max_abs_err = max(top, t_err)
    n_wrong = m * (C - 1)
    mean = float(_sum(wrong, axis=None)) / n_wrong if n_wrong else 0.0
    wrong -= mean
    wrong[rows, y] = 0.0
    m2 = float(np.einsum("ij,ij->", wrong, wrong))
    wrong_out = Moments(n_wrong, mean, m2) if n_wrong else Moments()
    # sum_i ||f(x_i) - onehot(y_i)||^2: the wrong outputs' squares are m2 + n mean^2
    # (two non-negative terms, no cancellation)
    sq_err = m2 + n_wrong * mean * mean + float(_sum(np.square(true_err), axis=None))
    return true_out, wrong_out, sq_err, max_abs_err, out_abs_max
