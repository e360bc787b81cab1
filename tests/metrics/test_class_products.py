"""The class-level products several metrics share (ClassProducts) change no bit."""

from __future__ import annotations

import numpy as np
import pytest

from ncinspect.metrics.general import general_metrics, of_error, uniform_duality
from ncinspect.metrics.kernels import etf_error
from ncinspect.metrics.linalg import ClassProducts, normalised_gram, row_cos
from ncinspect.metrics.seli import seli_error


def _arrays(C, d, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((C, d)) * scale
    w = (means + 0.3 * rng.standard_normal((C, d))) * scale
    counts = rng.integers(1, 50, C)
    return means, means - means.mean(0), w, counts


@pytest.mark.parametrize("scale", [1.0, 2.0**300, 2.0**-300])
@pytest.mark.parametrize("C,d", [(2, 3), (5, 8), (40, 16)])
def test_shared_products_equal_the_direct_calls(C, d, scale):
    means, centred, w, counts = _arrays(C, d, C + d, scale)
    memo = ClassProducts()
    # twice through the memo (the second call is the kept value), once without
    for _ in range(2):
        assert etf_error(w, centred, memo) == etf_error(w, centred)
        assert etf_error(w, w, memo) == etf_error(w, w)
        assert of_error(w, w, memo) == of_error(w, w)
        assert of_error(w, means, memo) == of_error(w, means)
        assert seli_error(w, w, counts, 1, memo) == seli_error(w, w, counts, 1)
        assert seli_error(means, means, counts, -1, memo) == seli_error(means, means, counts, -1)
        assert uniform_duality(w, centred, memo) == uniform_duality(w, centred)
        np.testing.assert_array_equal(row_cos(w, centred, memo), row_cos(w, centred))


def test_one_product_per_pair_of_arrays():
    means, centred, w, counts = _arrays(6, 4, 0)
    memo = ClassProducts()
    q1, n1 = normalised_gram(w, means, memo)
    q2, n2 = normalised_gram(w, means, memo)
    assert q1 is q2 and n1 == n2  # formed once
    q3, _ = normalised_gram(w.copy(), means, memo)  # another array: its own entry
    assert q3 is not q1
    np.testing.assert_array_equal(q3, q1)
    # the ETF, OF and SELI errors read the same normalised product
    e = (np.eye(6) - 1.0 / 6) / np.sqrt(5)
    assert etf_error(w, means, memo) == float(np.sqrt(np.sum(np.square(q1 - e))))


def test_zero_product_is_null_through_the_memo():
    memo = ClassProducts()
    z = np.zeros((4, 3))
    q, norm = normalised_gram(z, z, memo)
    assert q is None and norm == 0
    assert etf_error(z, z, memo) is None
    assert of_error(z, z, memo) is None
    assert seli_error(z, z, np.ones(4, int), 1, memo) == (None, "the Gram matrix is zero")


def test_general_metrics_with_the_callers_memo():
    means, centred, w, counts = _arrays(7, 5, 3)
    present = np.array([True, True, False, True, True, True, True])
    variances = np.abs(np.random.default_rng(1).standard_normal(7))
    args = (means, centred, means.mean(0), w, None, counts, variances)
    plain = general_metrics(*args, present=present)
    shared = general_metrics(*args, present=present, memo=ClassProducts())
    assert plain == shared


def test_shared_arrays_are_read_only():
    """What one metric reads from the memo another reads too: nobody may change it."""
    means, centred, w, counts = _arrays(5, 4, 2)
    memo = ClassProducts()
    q, _ = normalised_gram(w, means, memo)
    cos = row_cos(w, centred, memo)
    rows = memo.take(w, np.array([True, False, True, True, True]))
    for arr in (q, cos, rows):
        with pytest.raises(ValueError):
            arr[0] = 1.0
    assert w.flags.writeable  # the caller's own arrays are left as they were


@pytest.mark.parametrize("scale", [1.0, 2.0**300])
def test_large_c_grams_formed_once_and_equal_the_direct_calls(scale):
    """Above DIRECT_MAX_C (d < C) the ETF, OF and SELI errors read d x d Grams of the unit-
    scaled arrays: through the memo each array's Gram is formed once, bit for bit the value
    of the calls without it."""
    from ncinspect.metrics.kernels import DIRECT_MAX_C

    C, d = DIRECT_MAX_C + 5, 6
    means, centred, w, counts = _arrays(C, d, 3, scale)
    counts = np.where(np.arange(C) % 2, 7, 9)  # two groups of counts: SELI defined
    memo = ClassProducts()
    pairs = [(w, centred), (w, w), (centred, centred), (w, means), (means, means)]
    for a, b in pairs:
        assert etf_error(a, b, memo) == etf_error(a, b) is not None
        assert of_error(a, b, memo) == of_error(a, b) is not None
    assert seli_error(w, w, counts, 1, memo) == seli_error(w, w, counts, 1)
    assert seli_error(means, means, counts, -1, memo)[0] is not None
    grams = [k for k in memo._kept if k[0] == "unit_gram"]
    assert len(grams) == 3  # one Gram for each of w, centred, means


@pytest.mark.parametrize("scale", [1.0, 2.0**300, 2.0**-300])
@pytest.mark.parametrize("C,d", [(2, 3), (5, 8), (40, 16)])
def test_units_and_their_norms_shared_equal_the_direct_calls(C, d, scale):
    """Equinorm, the pair sweep's unit rows, NC3's self-duality and the duality cosines read
    unit(x) and its row norms from the memo: each formed once per array, the same bits."""
    from ncinspect.metrics.kernels import equinorm, self_duality
    from ncinspect.metrics.linalg import unit, unit_norms
    from ncinspect.metrics.pairs import class_pairs, unit_rows

    means, centred, w, counts = _arrays(C, d, C * d, scale)
    memo = ClassProducts()
    for _ in range(2):  # the second call reads the kept values
        for x in (centred, w):
            assert equinorm(x, memo) == equinorm(x)
            for a, b in zip(unit_rows(x, memo), unit_rows(x), strict=True):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(unit_norms(x, memo), np.linalg.norm(unit(x), axis=1))
        assert self_duality(w, centred, memo) == self_duality(w, centred)
        np.testing.assert_array_equal(row_cos(w, centred, memo), row_cos(w, centred))
    assert memo.unit(w) is memo.unit(w) and memo.unit_norms(w) is memo.unit_norms(w)
    shared = class_pairs(centred, w, counts, memo=ClassProducts())
    plain = class_pairs(centred, w, counts)
    assert shared == plain
    for arr in (memo.unit_norms(w), memo.unit(w)):
        if arr is not w:  # unit(x) is x itself at scale 1: the caller's array stays writeable
            with pytest.raises(ValueError):
                arr[0] = 1.0
    assert w.flags.writeable and centred.flags.writeable
