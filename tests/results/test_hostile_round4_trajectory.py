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


def test_a_trend_failing_in_the_last_digits_shows_them(tmp_path, capsys):
    """A careless reading: 'nc1 went the wrong way: 0.0166054 -> 0.0166054' (a rise in the
    16th digit, shown at 6 digits). The message now shows the digits that differ."""
    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for ep in (1, 2):
            g = f.create_group(f"epoch_{ep}")
            g["features"], g["weights"] = h * (1 + 1 / ep) + 1.0, m
    for rule in (["--non-increasing", "nc1"], ["--decreasing", "nc1"]):
        assert main(["check", str(path), *rule]) == 1
        fail = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("FAIL")][0]
        numbers = [w.strip("(),") for w in fail.split() if w[:1].isdigit() and "." in w]
        assert len(numbers) >= 2 and numbers[0] != numbers[1], fail
