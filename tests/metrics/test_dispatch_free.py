"""The metrics' dispatch-free forms of numpy calls (a small snapshot's fixed cost) give the
bits of the calls they replace, and the shared values equal the unshared ones."""

from __future__ import annotations

import numpy as np
import pytest

from ncinspect.metrics.general import bias_collapse, general_metrics, uniform_duality
from ncinspect.metrics.linalg import ClassProducts, _norms_of_unit, fro, row_cos, unit
from ncinspect.metrics.nulls import MetricValues
from ncinspect.metrics.pairs import class_pairs
from ncinspect.metrics.seli import _unit_target
from ncinspect.stats.passes import pow2_scale

SIZES = [(2, 3), (5, 8), (9, 17), (40, 16), (300, 7)]  # below, at and above the pairwise block
SCALES = [1.0, 2.0**300, 2.0**-300]


def _arrays(C, d, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((C, d)) * scale
    w = (means + 0.3 * rng.standard_normal((C, d))) * scale
    return means, means - means.mean(0), w, rng.integers(1, 50, C)


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("C,d", SIZES)
def test_uniform_duality_is_numpys_variance_of_the_cosines(C, d, scale):
    _, centred, w, _ = _arrays(C, d, C * d, scale)
    expected = float(np.var(row_cos(w, centred)))
    assert uniform_duality(w, centred) == expected
    assert uniform_duality(w, centred, ClassProducts()) == expected


@pytest.mark.parametrize("C,d", [*SIZES, (3, 400)])
def test_unit_row_norms_are_numpys_norms(C, d):
    _, centred, w, _ = _arrays(C, d, C + d)
    big = np.arange(C * d).reshape(C, d) * 2**40  # integers: numpy's norm casts them first
    others = (w.astype(">f8"), w.astype(np.float16), np.asfortranarray(w))  # byte order, half
    for x in (centred, w, np.zeros((C, d)), w.astype(np.float32), big, *others):
        u = unit(x)
        np.testing.assert_array_equal(_norms_of_unit(u), np.linalg.norm(u, axis=1))


def _bias_collapse_as_before(w, g, b):
    sw, sg = pow2_scale(w), pow2_scale(g)
    with np.errstate(under="ignore", over="ignore"):
        v = (w / sw) @ (g / sg)
        if b is not None:
            v = v + b / sw / sg
        return fro(v) * sw * sg


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("C,d", SIZES)
def test_bias_collapse_through_the_memo_equals_the_plain_call(C, d, scale, with_bias):
    """With the memo, W's power of two and W divided by it are the memo's unit(W)."""
    means, _, w, _ = _arrays(C, d, 7 * C + d, scale)
    g = means.mean(0) / scale  # another magnitude than W's: each is scaled on its own
    b = np.linspace(-1.0, 1.0, C) * scale if with_bias else None
    expected = _bias_collapse_as_before(w, g, b)
    assert bias_collapse(w, g, b) == expected
    memo = ClassProducts()
    memo.unit(w)  # as the pair sweep leaves it
    assert bias_collapse(w, g, b, memo) == expected


def test_general_metrics_needs_no_variances_when_the_pairs_are_given():
    means, centred, w, counts = _arrays(7, 5, 3)
    present = np.array([True, True, False, True, True, True, True])
    variances = np.abs(np.random.default_rng(1).standard_normal(7))
    args = (means, centred, means.mean(0), w, None, counts)
    pairs = class_pairs(
        centred[present], w[present], counts[present], cdnv=(variances[present], centred[present])
    )
    swept = general_metrics(*args, variances, present=present)
    given = general_metrics(*args, None, present=present, pairs=pairs, memo=ClassProducts())
    assert given == swept


def test_the_kept_seli_target_is_keyed_by_the_counts_dtype():
    """The key is the counts' own bytes: two arrays with the same bytes and another dtype
    (hence another C) must not share a target."""
    a = np.array([2, 3], np.int64)
    b = a.view(np.int32)  # [2, 0, 3, 0]: the same 16 bytes, four classes
    assert _unit_target(a, 1).shape == (2, 2)
    assert _unit_target(b, 1).shape == (4, 4)
    for counts in (a, a.astype(np.int32), a.astype(np.float64)):  # the same values, any dtype
        np.testing.assert_array_equal(_unit_target(counts, -1), _unit_target(a, -1))


def test_set_items_sets_each_entry_in_order():
    out = MetricValues.of_keys(["a", "b", "c", "d"])
    out.set("c", None, "was null")
    out.set_items({"a": (1.0, None), "b": (None, "why b"), "c": (2.0, None), "d": (np.inf, None)})
    assert out.values == {"a": 1.0, "b": None, "c": 2.0, "d": None}
    assert list(out.null_reasons.items()) == [("b", "why b"), ("d", "not finite")]
    out.set("a", float("nan"), "nan a")
    assert out.null_reasons["a"] == "nan a" and out.values["a"] is None
