"""pow2_scale: the power of two of max |x| outside the safe band, 1.0 inside it, for 0 and
for non-finite values; the same on small arrays (|x| then its max) and large ones (max and
-min)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ncinspect.stats.blocks import pow2_scale


def _expected(x: np.ndarray) -> float:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if not math.isfinite(m) or m == 0 or 2.0**-200 <= m <= 2.0**200:
        return 1.0
    return math.ldexp(1.0, min(max(math.frexp(m)[1], -1020), 1020))


@pytest.mark.parametrize("n", [0, 7, 4096, 4097, 20000])
@pytest.mark.parametrize(
    "make",
    [
        lambda rng, n: rng.standard_normal(n),
        lambda rng, n: rng.standard_normal(n) * 2.0**300,
        lambda rng, n: -np.abs(rng.standard_normal(n)) * 2.0**-300,  # largest |x| negative
        lambda rng, n: np.zeros(n),
        lambda rng, n: np.r_[rng.standard_normal(max(n - 1, 0)), np.nan][:n],
        lambda rng, n: np.r_[rng.standard_normal(max(n - 1, 0)), -np.inf][:n],
        lambda rng, n: np.r_[np.full(max(n - 1, 0), 1e-250), -1e250][:n],
        lambda rng, n: np.full(n, -1e308),
    ],
    ids=["normal", "huge", "tiny-negative", "zeros", "nan", "-inf", "negative-max", "-1e308"],
)
def test_pow2_scale_is_the_power_of_two_of_max_abs(n, make):
    x = make(np.random.default_rng(n), n)
    s = pow2_scale(x)
    assert s == _expected(x)
    if s != 1.0 and abs(math.log2(s)) < 1020:  # unclamped: |x| / s lies in [0.5, 1)
        assert 0.5 <= float(np.max(np.abs(x / s))) < 1.0
