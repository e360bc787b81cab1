"""The trainer's per-class sample counts (long-tailed runs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ncinspect.cli import main
from ncinspect.errors import UsageError
from ncinspect.train import TrainConfig, load_dataset

COUNTS = (30, 30, 12, 6, 3)


def test_gaussian_training_split_has_the_counts():
    cfg = TrainConfig(n_classes=5, class_counts=COUNTS, n_test_per_class=7)
    data = load_dataset(cfg)
    assert np.bincount(data.y, minlength=5).tolist() == list(COUNTS)
    assert np.bincount(data.y_test, minlength=5).tolist() == [7] * 5  # test stays balanced
    # the kept samples are the first of each class of the balanced set of max(counts)
    full = load_dataset(TrainConfig(n_classes=5, n_per_class=30, n_test_per_class=7))
    for c, n in enumerate(COUNTS):
        np.testing.assert_array_equal(data.X[data.y == c], full.X[full.y == c][:n])


@pytest.mark.parametrize(
    "counts,match",
    [((30, 30, 12, 6), "5 entries|4 entries"), ((30, 0, 1, 1, 1), ">= 1"), ((5,), ">= 2")],
)
def test_bad_counts_are_usage_errors(counts, match):
    with pytest.raises(UsageError, match=match):
        TrainConfig(n_classes=5, class_counts=counts).validate()


def test_counts_larger_than_a_data_set(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, X=rng.standard_normal((40, 3)), y=np.repeat([0, 1], 20))
    with pytest.raises(UsageError, match="asks 30 training samples of class 1"):
        load_dataset(TrainConfig(dataset=str(path), class_counts=(5, 30)))


def test_cli_long_tailed_run_reports_minority_collapse(tmp_path, capsys):
    path = tmp_path / "lt.h5"
    args = ["--depth", "3", "--width", "8", "--n-test-per-class", "3"]
    args += ["--batch-size", "10", "--epochs", "2", "--save-every", "2", "--lr", "0.05"]
    assert main(["train", "-o", str(path), *args, "--class-counts", "30,30,12,6,3", "-q"]) == 0
    capsys.readouterr()
    assert main(["report", str(path), "--json", "-", "-q", "--snapshot", "/epoch_0002"]) == 0
    snap = json.loads(capsys.readouterr().out)["snapshots"][0]
    assert snap["n_samples"] == sum(COUNTS)
    assert snap["metrics"]["minority_collapse"] is not None  # classes 3 and 4 are minorities
    assert main(["train", "-o", str(tmp_path / "x.h5"), *args, "--class-counts", "3,a"]) == 2
