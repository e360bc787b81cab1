"""Numerical robustness: scale invariance over the float64 range, float labels, n_c = 1.

Every scale-invariant metric must give the unscaled run's value for features and weights
multiplied by 2^k or 10^k wherever the inputs are finite and nonzero; labels must never
merge or wrap; a within-class scatter that is 0 by construction must not read as collapse.
"""

from __future__ import annotations

import json
import warnings

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import InvalidDataError
from ncinspect.inputs import encode_labels
from ncinspect.metrics import (
    cdnv,
    equinorm,
    etf_error,
    pairwise_cosine_stats,
    self_duality,
)

from ..helpers import make_data
from ..reference import reference_metrics

#: metrics unchanged when the features, or the classifier rows, are multiplied by s > 0
#: (no bias): geometry ratios, normalised Grams and cosines, and the decisions
INVARIANT = (
    "nc1",
    "nc1_trace_ratio",
    "nc1_cdnv",
    "nc2_equinorm_means",
    "nc2_equinorm_weights",
    "nc2_equiangular_means",
    "nc2_equiangular_weights",
    "nc2_maxangle_means",
    "nc2_maxangle_weights",
    "etf_error_means",
    "etf_error_weights",
    "etf_error_weights_centered",
    "nc3_self_duality",
    "nc3_duality_etf_error",
    "nc3_duality_cos",
    "nc4_ncc_mismatch",
    "accuracy_classifier",
    "accuracy_ncc",
)

#: (feature factor, weight factor): the cases where today's float64 arithmetic under- or
#: overflows, an exact power of two, and ordinary magnitudes
SCALES = [
    pytest.param(1e-170, 1.0, id="features*1e-170"),
    pytest.param(1e-160, 1.0, id="features*1e-160"),
    pytest.param(2.0**-500, 1.0, id="features*2^-500"),
    pytest.param(1.0, 1.0, id="unscaled"),
    pytest.param(1e100, 1.0, id="features*1e100"),
    pytest.param(1e150, 1.0, id="features*1e150"),
    pytest.param(1e155, 1.0, id="means-1e155-apart"),
    pytest.param(1.0, 1e160, id="weights*1e160"),
    pytest.param(1e-170, 1e-170, id="both*1e-170"),
    pytest.param(1e150, 1e160, id="features*1e150,weights*1e160"),
    pytest.param(2.0**700, 2.0**-700, id="2^700,2^-700"),
]


@pytest.fixture(scope="module")
def data():
    h, y, m = make_data(C=5, d=16, n=40, radius=1.0, sigma=0.2, seed=3, imbalanced=True)
    rng = np.random.default_rng(11)
    w = m + 0.1 * rng.standard_normal(m.shape)
    return h, y, w


def _analyze(h, y, w, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from over/underflow either
        return ncinspect.analyze(h, y, weights=w, **kw)


def _assert_invariant(got: dict, want: dict, rel: float = 1e-10) -> None:
    for key in INVARIANT:
        assert want[key] is not None, key
        assert got[key] is not None, key
        assert got[key] == pytest.approx(want[key], rel=rel, abs=0), key


@pytest.mark.parametrize(("fs", "ws"), SCALES)
def test_scale_invariant_metrics(data, fs, ws):
    h, y, w = data
    base = _analyze(h, y, w).metrics
    got = _analyze(h * fs, y, w * ws).metrics
    _assert_invariant(got, base)
    # the unscaled run itself is right (a direct reference), so the scaled ones are too
    ref = reference_metrics(h, y, W=w)
    for key in ("nc1", "nc1_cdnv", "etf_error_means", "nc3_self_duality"):
        assert base[key] == pytest.approx(ref[key], rel=1e-9), key


@pytest.mark.parametrize(("fs", "ws"), [(1e-170, 1.0), (1e155, 1e160), (2.0**-600, 1.0)])
def test_scaled_streaming_equals_one_chunk(data, fs, ws):
    h, y, w = data
    one = _analyze(h * fs, y, w * ws).metrics
    streamed = _analyze(h * fs, y, w * ws, chunk_rows=17).metrics
    _assert_invariant(streamed, one, rel=1e-12)


def test_scaled_dask_engine_equals_local(data):
    import dask.array as da

    h, y, w = data
    for fs, ws in ((1e-170, 1.0), (1e155, 1e160)):
        local = _analyze(h * fs, y, w * ws).metrics
        got = _analyze(da.from_array(h * fs, chunks=(23, -1)), y, w * ws).metrics
        _assert_invariant(got, local, rel=1e-12)


def test_tiny_features_with_a_test_split_ncc_means(data):
    h, y, w = data
    base = _analyze(h, y, w, ncc_centres=np.asarray(_analyze(h, y, w).arrays.means) * 1.01)
    s = 1e-170
    got = _analyze(h * s, y, w, ncc_centres=np.asarray(base.arrays.means) * s)
    assert got.metrics["accuracy_ncc"] == base.metrics["accuracy_ncc"]
    assert got.metrics["nc4_ncc_mismatch"] == base.metrics["nc4_ncc_mismatch"]


def test_geometry_arrays_in_feature_units(data):
    h, y, w = data
    base = _analyze(h, y, w).arrays
    s = 2.0**-400  # exact, and the squares (2^-800) are still normal floats
    got = _analyze(h * s, y, w).arrays
    for key in ("between_eigvals", "within_along", "class_var"):
        want = np.asarray(getattr(base, key)) * s * s
        np.testing.assert_allclose(getattr(got, key), want, rtol=1e-12)


@pytest.mark.parametrize("s", [1e-200, 1e-150, 1e150, 1e200, 2.0**-900, 2.0**900])
def test_kernels_are_scale_invariant(s):
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((6, 9)), rng.standard_normal((6, 9))
    assert etf_error(a * s, b) == pytest.approx(etf_error(a, b), rel=1e-12)
    assert etf_error(a * s, b * s) == pytest.approx(etf_error(a, b), rel=1e-12)
    assert equinorm(a * s) == pytest.approx(equinorm(a), rel=1e-12)
    got, want = pairwise_cosine_stats(a * s), pairwise_cosine_stats(a)
    assert got == pytest.approx(want, rel=1e-12)
    assert self_duality(a * s, b) == pytest.approx(self_duality(a, b), rel=1e-12)
    v = rng.uniform(0.5, 2.0, 6)
    # cdnv: variances carry the units of the means squared
    with np.errstate(under="ignore", over="ignore"):
        v_s = v * s * s
    if np.all(np.isfinite(v_s)) and np.all(v_s > 1e-300):
        assert cdnv(v_s, a * s) == pytest.approx(cdnv(v, a), rel=1e-12)


def _write(path, h, y, w):
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["features"] = h
        f["weights"] = w


@pytest.mark.parametrize(("fs", "ws"), [(1e-170, 1.0), (1.0, 1e160), (1e155, 1e160)])
def test_cli_report_on_extreme_scales(data, tmp_path, fs, ws):
    h, y, w = data
    path, js = tmp_path / "x.h5", tmp_path / "r.json"
    _write(path, h * fs, y, w * ws)
    assert main(["report", str(path), "--json", str(js)]) == 0
    got = json.loads(js.read_text())["snapshots"][0]["metrics"]
    _assert_invariant(got, _analyze(h, y, w).metrics)


def test_logits_beyond_float64_give_null_sqi_not_a_crash(data):
    h, y, w = data
    res = _analyze(h * 1e160, y, w * 1e160)  # W h ~ 1e320
    _assert_invariant(res.metrics, _analyze(h, y, w).metrics)
    for key in ("sqi_eps1", "sqi_spread", "mse"):
        assert res.metrics[key] is None, key
    assert any("mse" in line and "null" in line for line in res.warnings)


# ------------------------------------------------------------------------------------------
# float labels
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "labels",
    [
        [0.0, 1e300, 2e300],
        [0.0, 2.0**63, 1.0],  # 2^63 is just past int64
        [0.0, -(2.0**64), 1.0],
        [0.0, 1e19, 2e19],
    ],
)
def test_float_labels_beyond_int64_are_bad_input(labels):
    raw = np.repeat(np.asarray(labels), 4)
    with pytest.raises(InvalidDataError, match="int64") as exc:
        encode_labels(raw, "f.h5:/labels")
    assert "f.h5:/labels" in str(exc.value)


def test_float_labels_inside_int64_keep_their_exact_values():
    raw = np.array([2.0**62, -(2.0**63), 0.0, 2.0**62, 3.0])
    codes, names, one_hot = encode_labels(raw, "labels")
    assert names == [-(2**63), 0, 3, 2**62]
    assert codes.tolist() == [3, 0, 1, 3, 2]
    assert not one_hot


def test_cli_float_labels_beyond_int64_exit_3(tmp_path, capsys):
    h, y, _ = make_data(C=3, d=4, n=5)
    path = tmp_path / "l.h5"
    with h5py.File(path, "w") as f:
        f["features"] = h
        f["labels"] = np.array([0.0, 1e300, 2e300])[y]
    assert main(["report", str(path), "--json", str(tmp_path / "r.json")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels" in err[0] and "1e+300" in err[0]
    assert not (tmp_path / "r.json").exists()


# ------------------------------------------------------------------------------------------
# one sample per class
# ------------------------------------------------------------------------------------------
def test_one_sample_per_class_nulls_nc1_with_a_reason():
    h, y, m = make_data(C=5, d=8, n=1, seed=2)
    res = _analyze(h, y, m)
    for key in ("nc1", "nc1_trace_ratio", "nc1_cdnv"):
        assert res.metrics[key] is None, key
    line = next(w for w in res.warnings if w.startswith("nc1"))
    assert "nc1_trace_ratio" in line and "one sample" in line
    assert res.metrics["etf_error_means"] is not None  # the means are still defined


def test_check_max_nc1_fails_on_one_sample_per_class(tmp_path):
    h, y, m = make_data(C=4, d=6, n=1)
    path = tmp_path / "one.h5"
    _write(path, h, y, m)
    assert main(["check", str(path), "--max", "nc1=1.0"]) == 1


def test_some_singleton_classes_are_computed_with_a_note():
    h, y, m = make_data(C=4, d=8, n=20, seed=4)
    keep = np.ones(len(y), bool)
    keep[np.flatnonzero(y == 2)[1:]] = False  # class 2 keeps one sample
    h, y = h[keep], y[keep]
    res = _analyze(h, y, m)
    ref = reference_metrics(h, y, W=m)
    assert res.metrics["nc1"] == pytest.approx(ref["nc1"], rel=1e-9)
    assert any("one sample" in w and "[2]" in w for w in res.warnings)


@pytest.mark.parametrize("center", ["classes", "samples"])
@pytest.mark.parametrize("chunk_rows", [None, 17])
def test_features_near_the_float64_limit(data, center, chunk_rows):
    # class sums of such features overflow float64 (in one chunk, or only when chunks merge)
    h, y, w = data
    fs = 1.7e308 / np.abs(h).max()
    base = _analyze(h, y, w, center=center).metrics
    got = _analyze(h * fs, y, w, center=center, chunk_rows=chunk_rows).metrics
    _assert_invariant(got, base)


def test_features_near_the_float64_limit_dask(data):
    import dask.array as da

    h, y, w = data
    fs = 1.7e308 / np.abs(h).max()
    got = _analyze(da.from_array(h * fs, chunks=(23, -1)), y, w).metrics
    _assert_invariant(got, _analyze(h, y, w).metrics)


@pytest.mark.parametrize(("fs", "ws"), [(1e-170, 1e-150), (1e155, 1e150), (1e-300, 1e150)])
def test_decisions_with_a_bias_follow_the_logits_scale(fs, ws):
    # W h + b scales by fs * ws when h, W and b do: the decisions must not change
    h, y, m = make_data(C=5, d=6, n=30, radius=1.0, sigma=0.6, seed=8)
    rng = np.random.default_rng(2)
    w, b = m + 0.3 * rng.standard_normal(m.shape), 0.5 * rng.standard_normal(5)
    base = _analyze(h, y, w, bias=b).metrics
    assert 0.2 < base["accuracy_classifier"] < 1.0  # the bias matters to some decisions
    got = _analyze(h * fs, y, w * ws, bias=b * fs * ws).metrics
    for key in ("accuracy_classifier", "nc4_ncc_mismatch", "accuracy_ncc"):
        assert got[key] == base[key], key


def test_a_bias_that_dwarfs_w_h_decides():
    h, y, m = make_data(C=4, d=6, n=10, radius=1.0, seed=1)
    b = np.array([0.0, 3.0, 1.0, 2.0])
    res = _analyze(h * 1e-300, y, m * 1e-300, bias=b)  # W h ~ 1e-600: only b counts
    assert res.metrics["accuracy_classifier"] == pytest.approx(np.mean(y == 1))


def test_sqi_spread_of_tiny_outputs_is_null_not_zero(data):
    # ||F - T|| / ||T|| is scale-free, but squares of 1e-170 outputs underflow to 0
    h, y, w = data
    assert _analyze(h, y, w).metrics["sqi_spread"] > 0.1
    res = _analyze(h * 1e-170, y, w)
    assert res.metrics["sqi_spread"] is None
    assert any("sqi_spread" in line and "underflow" in line for line in res.warnings)
    assert res.metrics["mse"] == pytest.approx(1 / 5)  # outputs ~0: (1/NC) sum ||onehot||^2


@pytest.mark.parametrize("s", [1e-5, 1e-17, 1e-30, 1e-100, 2.0**-400, 1e30])
def test_sqi_spread_is_scale_free_for_small_outputs(data, s):
    """||F - T|| / ||T|| with T's diagonal the mean true-class output: it was built as
    1 - eps1, which rounds to 0 for outputs below 2^-53 (sqi_spread 12.2 for 0.74 at 1e-30)."""
    h, y, w = data
    f = h @ w.T
    want = _analyze(h, y, None, outputs=f).metrics["sqi_spread"]
    got = _analyze(h, y, None, outputs=f * s).metrics["sqi_spread"]
    assert got == pytest.approx(want, rel=1e-9)


def test_class_means_further_apart_than_float64_exit_3(tmp_path, capsys):
    y = np.repeat([0, 1, 2], 5)
    h = np.array([[1.7, 0.0], [1.7, 0.1], [-1.7, 0.0]])[y] * 1e308  # finite inputs
    path = tmp_path / "far.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"] = h, y
    assert main(["report", str(path)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "float64" in err[0]


def _fro_by_definition(x):
    """``fro`` as its docstring defines it: the squares of ``x / s``, ``s = pow2_scale(x)``."""
    from ncinspect.stats.passes import pow2_scale

    s = pow2_scale(x)
    if s == 1.0:
        return float(np.sqrt(np.square(x).sum()))
    return float(np.sqrt(np.square(x / s).sum())) * s


@pytest.mark.parametrize("size", [1, 7, 100, 5000])
def test_fro_skips_the_max_pass_only_where_it_proves_the_same_bits(size):
    """fro takes pow2_scale's verdict from its own sum of squares when that sum proves max|x|
    inside the band: every magnitude, at the band's edges, below it (squares that underflow),
    above it (squares that overflow), mixed, zero, subnormal and non-finite, gives the bits of
    the definition."""
    from ncinspect.metrics.linalg import fro

    rng = np.random.default_rng(size)
    base = rng.standard_normal(size)
    cases = [np.zeros(size), np.full(size, 5e-324), base * 0.0]
    for k in (-1074, -1000, -600, -402, -401, -400, -399, -201, -200, -199, -1, 0, 1, 199):
        cases.append(base * 2.0**k)
    for k in (200, 201, 399, 400, 401, 600, 1000, 1023):
        cases.append(base / np.abs(base).max() * 2.0**k * 0.75)
    mixed = base * 2.0**-300
    mixed[0] = 2.0**-150  # one in-band value among tiny ones
    cases.append(mixed)
    for bad in (np.nan, np.inf, -np.inf):
        x = base.copy()
        x[-1] = bad
        cases.append(x)
    cases.append(base.astype(np.float32) * np.float32(2.0**60))  # float32 squares overflow
    cases.append(base.astype(np.float32) * np.float32(2.0**-70))  # and underflow
    for x in cases:
        got, want = fro(x), _fro_by_definition(x)
        assert got == want or (np.isnan(got) and np.isnan(want)), (x.dtype, np.abs(x).max())
        assert type(got) is float


def test_underflowed_values_are_null_with_their_reason_not_zero(data):
    """Features ~1e-300: within-class variances (~1e-600) underflow float64 and the
    per-class ``var`` read 0.0 (no variability: collapse); ``nc1_cdnv_exp2`` (~1e600, it
    scales as 1/a^2) was null as "two class means coincide". Now both are null with what
    happened; the scale-free metrics are computed as at unit scale."""
    h, y, w = data
    base = _analyze(h, y, w, per_class=True)
    res = _analyze(h * 1e-300, y, w, per_class=True)
    assert all(row["var"] > 0 for row in base.per_class)
    assert all(row["var"] is None for row in res.per_class)
    assert any("per-class var: null" in line and "underflow" in line for line in res.warnings)
    assert res.metrics["nc1_cdnv_exp2"] is None
    reason = res.null_reasons["nc1_cdnv_exp2"]
    assert "outside float64" in reason and "coincide" not in reason
    _assert_invariant(res.metrics, base.metrics)
    # inside the range both stay numbers: 1e-100 gives var ~1e-200 and cdnv_exp2 ~1e200
    mid = _analyze(h * 1e-100, y, w, per_class=True)
    assert all(row["var"] > 0 for row in mid.per_class)
    assert mid.metrics["nc1_cdnv_exp2"] == pytest.approx(
        base.metrics["nc1_cdnv_exp2"] * 1e200, rel=1e-9
    )
