"""Hostile round four, classes 8/12 (values a file records, at their extremes) in the theory
constants: each constant in its own range but together unusable. A recorded ``Lambda = 0``
beside ``weight_decay = 2e-3`` made ``theory`` exit 4 (ZeroDivisionError in a closed form);
``kappa = 1e308`` gave infinite predictions reported as holding (and a numpy overflow
warning on stderr). Both are one line naming the constants, exit 3."""

from __future__ import annotations

import h5py
import pytest

from ncinspect.cli import main
from ncinspect.theory.constants import resolve_constants

from ..helpers import SMALL_TRAIN


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("t") / "run.h5"
    assert main(["train", "-o", str(path), *SMALL_TRAIN]) == 0
    return path


def _with(src, dst, **attrs):
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        groups = [f] + [o for o in _groups(f)]
        for g in groups:
            for k, v in attrs.items():
                if k in g.attrs:
                    g.attrs[k] = v
    return str(dst)


def _groups(f):
    out = []
    f.visititems(lambda _n, o: out.append(o) if isinstance(o, h5py.Group) else None)
    return out


@pytest.mark.parametrize(
    "attrs,words",
    [
        ({"Lambda": 0.0}, "disagree on whether the objective is regularised"),
        ({"weight_decay": 0.0}, "disagree on whether the objective is regularised"),
        ({"kappa": 1e308}, "beyond float64"),
    ],
)
def test_unusable_constants_are_one_line(trained, tmp_path, capsys, attrs, words):
    path = _with(trained, tmp_path / "bad.h5", **attrs)
    assert main(["theory", path]) == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and "RuntimeWarning" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "bad.h5" in lines[0]


def test_consistent_constants_still_resolve():
    c = resolve_constants({"weight_decay": 0.0, "kappa": 0.1, "n_samples": 10, "Lambda": 0.0})
    assert c.regularised is False
    c = resolve_constants({"weight_decay": 2e-3, "kappa": 0.1, "n_samples": 10})
    assert c.Lambda == pytest.approx(2e-3)
    assert c.ratio == pytest.approx(50.0)
