"""Structured null reasons: every null value carries a reason (key -> why) from the kernel
that made it null, the warning lines are rendered from those reasons, and `check` reads the
reasons, not the text."""

from __future__ import annotations

import numpy as np
import pytest

from ncinspect.analysis.api import analyze
from ncinspect.analysis.regression import analyze_regression
from ncinspect.check import Rule, evaluate
from ncinspect.metrics.nulls import MetricValues, null_message, null_warnings

from ..helpers import make_data


def _cases():
    h, y, m = make_data(C=4, d=8, n=10, seed=3)
    yield "no weights", analyze(h, y)
    yield "one class", analyze(h[y == 0], y[y == 0], weights=m)  # 3 rows of W absent
    yield "min class count", analyze(h, y, weights=m, min_class_count=50)
    yield "coinciding means", analyze(np.ones((12, 3)), np.repeat([0, 1, 2], 4), weights=m[:3, :3])
    single = np.arange(4)
    yield "one sample per class", analyze(h[single * 10], y[single * 10], weights=m)
    zero_w = np.zeros_like(m)
    yield "zero classifier", analyze(h, y, weights=zero_w)


CASES = list(_cases())


@pytest.mark.parametrize("name,res", CASES, ids=[c[0] for c in CASES])
def test_every_null_has_a_reason_and_only_nulls_do(name, res):
    nulls = {k for k in res.metric_keys() if res.metrics[k] is None}
    assert nulls, name  # each case really makes some value undefined
    assert set(res.null_reasons) == nulls, name
    assert all(isinstance(why, str) and why for why in res.null_reasons.values())


@pytest.mark.parametrize("name,res", CASES, ids=[c[0] for c in CASES])
def test_warning_lines_are_rendered_from_the_reasons(name, res):
    lines = null_warnings(res.null_reasons)
    assert lines and all(line in res.warnings for line in lines), name
    # every key is named on exactly one line, with its own reason
    for key, why in res.null_reasons.items():
        owners = [x for x in lines if key in x.partition(": null (")[0].split(", ")]
        assert owners == [[x for x in lines if x.endswith(f"({why})")][0]]


def test_reasons_say_what_is_missing():
    res = dict(CASES)["no weights"]
    assert "weights" in res.null_reasons["nc3_self_duality"]
    assert res.metrics["nc1"] is not None and "nc1" not in res.null_reasons
    one = dict(CASES)["one class"]
    assert "fewer than two classes" in one.null_reasons["nc1"]


def test_check_reads_the_reason_not_the_text():
    h, y, _ = make_data(C=4, d=8, n=10, seed=3)
    res = analyze(h, y)
    why = res.null_reasons["nc3_self_duality"]
    res.warnings = ["unrelated text"]  # the warning text is for people only
    (outcome,) = evaluate([Rule("max", "nc3_self_duality", bound=1.0)], [res])
    assert not outcome.passed and outcome.message == f"nc3_self_duality: null ({why})"


def test_regression_and_ood_reasons():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((30, 5))
    targets = rng.standard_normal((30, 2))
    res = analyze_regression(h, targets)  # no W: nrc2 and nrc3 are undefined
    assert set(res.null_reasons) == {"nrc2", "nrc3"}
    assert "weights" in res.null_reasons["nrc2"]
    assert all(line in res.warnings for line in null_warnings(res.null_reasons))
    hh, y, m = make_data(C=3, d=6, n=10, seed=1)
    two = analyze(hh, y, weights=m, ood_features={"a": h[:, :5]})  # d = 5, not 6
    assert two.metrics["nc5_ood_orthogonality_a"] is None
    assert "width" in two.null_reasons["nc5_ood_orthogonality_a"]


def test_metric_values_collector():
    out = MetricValues.of_keys(["a", "b", "c", "d"])
    out.set("a", None, "why a")
    out.set("b", float("nan"))
    out.set("c", None, "why a")
    out.set("d", 1.0)
    assert out.null_reasons == {"a": "why a", "b": "not finite", "c": "why a"}
    assert out.warnings == ["a, c: null (why a)", "b: null (not finite)"]
    out.set("a", 2.0)  # a value set later clears the reason
    assert "a" not in out.null_reasons and out.values["a"] == 2.0
    assert null_message({}, "x") == "x: null (no reason recorded)"
