"""Constant class-level matrices kept between snapshots (metrics/linalg.kept): a warm cache
gives the same bits as a cold one, the kept arrays cannot be written, large C is not kept."""

from __future__ import annotations

import numpy as np
import pytest

from ncinspect.metrics import linalg
from ncinspect.metrics.general import of_error
from ncinspect.metrics.kernels import etf_error, etf_gram
from ncinspect.metrics.seli import seli_error, seli_target


def _values(rng_seed: int, C: int):
    rng = np.random.default_rng(rng_seed)
    w, m = rng.standard_normal((C, 6)), rng.standard_normal((C, 6))
    counts = rng.integers(1, 9, size=C)
    return [
        etf_error(w, m),
        etf_error(m, m),
        of_error(w, w),
        of_error(w, m),
        seli_error(w, w, counts, 1)[0],
        seli_error(m, m, counts, -1)[0],
    ]


@pytest.mark.parametrize("C", [2, 4, 9, linalg.CACHE_MAX_C + 3])
def test_warm_and_cold_caches_give_the_same_bits(C):
    linalg._KEPT.clear()
    cold = _values(0, C)
    warm = _values(0, C)  # every constant now comes from the cache
    assert cold == warm
    linalg._KEPT.clear()
    assert _values(0, C) == cold
    kept = [k for k in linalg._KEPT if k[0] in ("etf", "of", "seli")]
    assert bool(kept) == (C <= linalg.CACHE_MAX_C)


def test_kept_matrices_equal_the_public_ones_and_are_read_only():
    linalg._KEPT.clear()
    counts = np.array([3, 5, 5, 7])
    _ = seli_error(np.eye(4), np.eye(4), counts, 1)
    _ = etf_error(np.eye(4), np.eye(4))
    e = linalg._KEPT[("etf", 4)]
    np.testing.assert_array_equal(e, etf_gram(4))
    (seli_key,) = [k for k in linalg._KEPT if k[0] == "seli"]
    t = seli_target(counts, 1)
    np.testing.assert_array_equal(linalg._KEPT[seli_key], t / np.sqrt(np.square(t).sum()))
    with pytest.raises(ValueError):
        e[0, 0] = 1.0
    assert etf_gram(4).flags.writeable  # the public function still returns a fresh array


def test_the_cache_stays_bounded():
    linalg._KEPT.clear()
    for i in range(200):
        linalg.kept(("t", i), lambda: np.zeros(2))
    assert len(linalg._KEPT) <= 64
