"""The declared-reduction protocol: empty, merge, host round trip, on every backend, by
known answers written from the declarations alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from ncinspect.errors import InvalidDataError
from ncinspect.stats.device import FirstState, SecondState
from ncinspect.stats.protocol import NUMPY, Declared, Spec, declare


@dataclass
class Toy(Declared):
    total: Any = declare("sum", ("C",), "float64")
    n: Any = declare("sum", (), "int64")
    hi: Any = declare("max", ("C",), "float64")
    lo: Any = declare("min", (), "int64")
    same: Any = declare("equal", (2,), "int64")
    mom: Any = declare("moments", (3,), "float64")


def _xp(backend):
    if backend.name == "numpy":
        return NUMPY, None
    import array_api_compat

    x = backend(np.zeros(1))
    return array_api_compat.array_namespace(x), array_api_compat.device(x)


def _toy(backend, total, n, hi, lo, same, values):
    v = np.asarray(values, float)
    mom = [len(v), v.mean(), ((v - v.mean()) ** 2).sum()] if len(v) else [0.0, 0.0, 0.0]
    host = {"total": total, "n": n, "hi": hi, "lo": lo, "same": same, "mom": mom}
    return Toy.from_host({k: np.asarray(x) for k, x in host.items()}, *_xp(backend))


def test_empty_holds_each_reductions_identity(backend):
    xp, device = _xp(backend)
    e = Toy.empty(xp, device, C=3).to_host()
    assert np.array_equal(e["total"], np.zeros(3)) and e["n"] == 0
    assert np.all(e["hi"] == -np.inf) and e["lo"] == np.iinfo(np.int64).max
    assert np.array_equal(e["mom"], np.zeros(3)) and e["same"].shape == (2,)


def test_merge_follows_the_declarations(backend):
    a = _toy(backend, [1, 2, 3], 4, [0, 5, -1], 7, [1, 2], [1.0, 2.0, 4.0])
    b = _toy(backend, [10, 20, 30], 6, [3, 1, -2], 2, [1, 2], [8.0, -1.0])
    got = a.merge(b).to_host()
    assert np.array_equal(got["total"], [11, 22, 33]) and got["n"] == 10
    assert np.array_equal(got["hi"], [3, 5, -1]) and got["lo"] == 2
    assert np.array_equal(got["same"], [1, 2])
    v = np.array([1.0, 2.0, 4.0, 8.0, -1.0])
    np.testing.assert_allclose(got["mom"], [5, v.mean(), ((v - v.mean()) ** 2).sum()], rtol=1e-15)
    # an empty side gives the other side exactly
    xp, device = _xp(backend)
    e = Toy.empty(xp, device, C=3)
    e.same = a.same
    for x in (e.merge(a).to_host(), a.merge(e).to_host()):
        want = a.to_host()
        for k in ("total", "n", "mom", "lo"):
            assert np.array_equal(x[k], want[k]), k
    c = _toy(backend, [0, 0, 0], 0, [0, 0, 0], 0, [1, 3], [])
    with pytest.raises(InvalidDataError, match="Toy.same"):
        a.merge(c)


def test_host_round_trip_is_exact_and_checked(backend):
    xp, device = _xp(backend)
    a = _toy(backend, [0.1, 1e300, -3], 2**60, [1, 2, 3], -5, [4, 5], [0.3, 0.7])
    host = a.to_host()
    back = Toy.from_host(host, xp, device).to_host()
    for k, v in host.items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v), k
    with pytest.raises(InvalidDataError, match="'hi' has shape"):
        Toy.from_host({**host, "hi": np.zeros(4)})
    with pytest.raises(InvalidDataError, match="'n' is missing"):
        Toy.from_host({k: v for k, v in host.items() if k != "n"})


def test_specs_are_checked():
    with pytest.raises(ValueError):
        Spec("mean")
    with pytest.raises(ValueError):
        Spec("moments", (2,))
    names = [n for n, _ in SecondState.specs()]
    assert {"proj_sq", "class_sq", "outputs", "seen", "n_nonfinite"} <= set(names)
    assert dict(FirstState.specs())["sums"].reduce == "sum"


def test_first_state_known_answer(backend):
    """Class sums by scatter-add, NaN rows and bad labels counted, written from the spec."""
    xp, device = _xp(backend)
    if backend.name == "numpy":  # the device kernel on numpy arrays (array-api-compat)
        from array_api_compat import numpy as xp
    h = np.array([[1.0, 2.0], [3.0, np.nan], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]])
    y = np.array([0, 1, 2, 0, 5])
    s = FirstState.new(xp, device, 3, 2)
    s.update(xp, backend(h), backend(y), row0=10)
    v = s.to_host()
    assert np.array_equal(v["counts"], [2, 1, 1])
    assert (v["n_nonfinite"], v["first_nonfinite"], v["label_min"], v["label_max"]) == (1, 11, 0, 5)
    from ncinspect.meter.checks import problems  # the pass is refused, naming the first

    assert problems(v, 3, 1) == "label 5 is not in [0, 3) (rows of the classifier)"
    v["label_max"] = 2
    assert "1 row(s) of pass 1 hold NaN/Inf values, first at row 11" in problems(v, 3, 1)
    ok = FirstState.new(xp, device, 3, 2).update(xp, backend(h[[0, 2, 3]]), backend(y[[0, 2, 3]]))
    v = ok.to_host()
    assert np.array_equal(v["sums"], [[8.0, 10.0], [0.0, 0.0], [5.0, 6.0]])
    assert problems(v, 3, 1) is None
