"""Hostile round four, class 3 (two names for one thing) in trajectories: two snapshots of
one split and layer that hold the same epoch (``epoch_1`` beside ``ep1``, or two runs in one
file that no split tells apart). Round three sorted them in file order and took whichever
came first: the report's change row and ``check``'s trend rules compared one of them
silently. Now the table says the change is undefined, naming both, and a trend rule fails
saying why (``report --aggregate`` already refused them)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from ncinspect.cli import main

from ..helpers import make_data


@pytest.fixture(scope="module")
def twice(tmp_path_factory):
    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path_factory.mktemp("t") / "twice.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for name, sigma, epoch in (("a", 0.1, 1), ("b", 3.0, 1), ("c", 0.5, 2)):
            g = f.create_group(name)
            g["features"] = h + sigma * rng.standard_normal(h.shape)
            g["weights"] = m
            g.attrs["epoch"] = epoch
        g = f.create_group("epoch_3")  # the path names its epoch
        g["features"], g["weights"] = h, m
        g = f.create_group("ep3")  # another spelling of the same epoch
        g["features"], g["weights"] = 2 * h, m
    return str(path)


def test_report_has_no_change_row_across_a_repeated_epoch(twice, capsys):
    assert main(["report", twice]) == 0
    out = capsys.readouterr().out
    assert "change " not in out
    assert "are both epoch" in out


@pytest.mark.parametrize(
    "rule",
    [
        ["--non-increasing", "nc1"],
        ["--decreasing", "nc1"],
        ["--non-increasing", "nc1:last=2"],  # the last two: epoch 3 held by two snapshots
        ["--non-decreasing", "nc1:last=3"],
    ],
)
def test_trend_rules_fail_on_a_repeated_epoch_naming_both(twice, capsys, rule):
    assert main(["check", twice, *rule]) == 1
    out = capsys.readouterr().out
    assert "are both epoch" in out and "cannot be ordered" in out
