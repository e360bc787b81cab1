"""Several runs (seeds): mean, std, n and 95% t-interval per metric, and refused mismatches."""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest

from ncinspect import analyze_file
from ncinspect.cli import main
from ncinspect.errors import InvalidDataError
from ncinspect.results.aggregate import aggregate, summarise
from ncinspect.results.report import Report, SnapshotResult
from tests.plots.test_plots_data import write_run

T975_2 = 4.302652729749462  # Student t quantile 0.975 with 2 degrees of freedom


def _run(values: dict[str, float | None], epoch: int = 5, file: str = "r.h5") -> Report:
    res = SnapshotResult(
        name=f"/epoch_{epoch}", n_samples=10, n_features=3, n_classes=2, metrics=dict(values)
    )
    res.epoch, res.split = epoch, "train"
    res.class_names = [0, 1]
    return Report(file=file, snapshots=[res])


def test_known_mean_std_and_interval_over_three_runs():
    runs = [
        _run({"nc1": v, "nc3_self_duality": w}) for v, w in ((0.1, 1.0), (0.2, None), (0.3, 3.0))
    ]
    agg = aggregate(runs)
    (snap,) = agg.snapshots
    s = snap["nc1"]
    assert s.n == 3
    assert s.mean == pytest.approx(0.2, rel=1e-15)
    assert s.std == pytest.approx(0.1, rel=1e-14)
    half = T975_2 * 0.1 / math.sqrt(3)
    assert s.ci_low == pytest.approx(0.2 - half, rel=1e-12)
    assert s.ci_high == pytest.approx(0.2 + half, rel=1e-12)
    # a null value (undefined in one run) is left out, not taken as 0
    d = snap["nc3_self_duality"]
    assert d.n == 2 and d.mean == 2.0 and d.std == pytest.approx(math.sqrt(2))


def test_one_value_has_no_interval_and_bools_are_fractions():
    assert summarise([None, 0.5, None]).to_dict() == {
        "mean": 0.5,
        "std": None,
        "n": 1,
        "ci_low": None,
        "ci_high": None,
    }
    assert summarise([True, False, True, True]).mean == 0.75
    assert summarise([None, None]).n == 0


def test_runs_with_different_epochs_or_classes_are_refused():
    with pytest.raises(InvalidDataError, match="b.h5: has no split train, epoch 5, which r.h5 has"):
        aggregate([_run({"nc1": 0.1}), _run({"nc1": 0.2}, epoch=7, file="b.h5")])
    other = _run({"nc1": 0.2}, file="c.h5")
    other.snapshots[0].class_names = ["cat", "dog"]
    with pytest.raises(InvalidDataError, match="same classes"):
        aggregate([_run({"nc1": 0.1}), other])
    from ncinspect.errors import UsageError

    with pytest.raises(UsageError, match="two runs"):
        aggregate([_run({"nc1": 0.1})])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    base = tmp_path_factory.mktemp("seeds")
    return [write_run(base / f"run_s{s}.h5", seed=s, layers=0) for s in (1, 2, 3)]


def test_aggregate_of_real_runs_matches_the_individual_reports(seeds):
    reports = [analyze_file(p) for p in seeds]
    agg = aggregate(reports)
    assert len(agg) == len(reports[0])
    for snap in agg:
        group = [next(r for r in rep if (r.split, r.layer, r.epoch) == snap.key) for rep in reports]
        for key in ("nc1", "etf_error_means", "nc3_self_duality", "accuracy_classifier"):
            vals = np.array([r.metrics[key] for r in group], dtype=np.float64)
            assert snap[key].mean == pytest.approx(vals.mean(), rel=1e-12, abs=1e-15)
            assert snap[key].std == pytest.approx(vals.std(ddof=1), rel=1e-10, abs=1e-15)


def test_cli_aggregate_json_csv_and_table(seeds, tmp_path, capsys):
    out_json, out_csv = tmp_path / "agg.json", tmp_path / "agg.csv"
    assert main(["report", *seeds, "--aggregate", "--json", str(out_json), "-q"]) == 0
    doc = json.loads(out_json.read_text())
    assert doc["aggregate"]["n_runs"] == 3 and doc["aggregate"]["files"] == seeds
    first = doc["snapshots"][0]
    assert set(first["metrics"]["nc1"]) == {"mean", "std", "n", "ci_low", "ci_high"}
    assert first["n_runs"] == 3
    assert main(["report", *seeds, "--aggregate", "--csv", str(out_csv), "-q"]) == 0
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(rows) == len(doc["snapshots"])
    assert float(rows[0]["nc1_mean"]) == pytest.approx(first["metrics"]["nc1"]["mean"])
    capsys.readouterr()
    assert main(["report", *seeds, "--aggregate", "-q"]) == 0
    text = capsys.readouterr().out
    assert "95% interval" in text and "nc1" in text and "3 runs" in text


def test_cli_several_files_need_aggregate(seeds, capsys):
    assert main(["report", *seeds]) == 2
    assert "--aggregate" in capsys.readouterr().err


def test_cli_mismatched_runs_exit_3(seeds, tmp_path, capsys):
    short = write_run(tmp_path / "short.h5", seed=9, layers=0, epochs=(0, 5))
    assert main(["report", seeds[0], short, "--aggregate", "-q"]) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "short.h5" in err and "epoch" in err


def _stat(seeds, key, stat, split="train"):
    agg = aggregate([analyze_file(p) for p in seeds])
    last = max((s for s in agg if s.split == split and s.layer is None), key=lambda s: s.epoch)
    return getattr(last[key], stat)


def test_check_aggregate_on_mean_and_interval_bounds(seeds, capsys):
    mean = _stat(seeds, "nc1", "mean")
    upper = _stat(seeds, "nc1", "ci_high")
    lower = _stat(seeds, "nc1", "ci_low")
    assert lower < mean < upper
    base = ["check", *seeds, "--aggregate", "--no-config", "--snapshot", "last"]
    between = (mean + upper) / 2  # the mean passes this bound, the interval's top does not
    assert main([*base, "--max", f"nc1={between}", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and {r["rule"]["stat"] for r in doc["results"]} == {"mean"}
    assert main([*base, "--max-upper", f"nc1={between}", "--format", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    train = next(r for r in doc["results"] if r["split"] == "train")
    assert train["value"] == pytest.approx(upper) and not train["passed"]
    top = max(upper, _stat(seeds, "nc1", "ci_high", "test"))
    assert main([*base, "--max-upper", f"nc1={top * 1.01}"]) == 0
    capsys.readouterr()
    assert main([*base, "--min-lower", f"nc1={(lower + mean) / 2}"]) == 1
    capsys.readouterr()
    assert main([*base, "--decreasing", "nc1"]) == 0  # trend rules on the means


def test_check_aggregate_usage(seeds, capsys):
    assert main(["check", *seeds, "--max", "nc1=1", "--no-config"]) == 2
    assert "--aggregate" in capsys.readouterr().err
    assert main(["check", seeds[0], "--max-upper", "nc1=1", "--no-config"]) == 2
    capsys.readouterr()
    bad = ["check", *seeds, "--aggregate", "--no-config", "--max", "per_class.var=1"]
    assert main(bad) == 2
    assert "per-class" in capsys.readouterr().err


def test_trajectory_of_aggregated_runs_has_mean_lines_and_bands(seeds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ncinspect.plots import plot_trajectory

    agg = aggregate([analyze_file(p) for p in seeds])
    fig = plot_trajectory(agg, labels=["wd"])
    try:
        lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.lines}
        bands = {c.get_gid(): c for ax in fig.axes for c in ax.collections if c.get_gid()}
        train = [s for s in agg if s.split == "train" and s.layer is None]
        line = lines["wd|nc1|train"]
        np.testing.assert_allclose(line.get_ydata(), [s["nc1"].mean for s in train])
        band = bands["wd|nc1|train|band"]
        ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
        lo = min(s["nc1"].ci_low for s in train)
        hi = max(s["nc1"].ci_high for s in train)
        assert ys.min() == pytest.approx(lo) and ys.max() == pytest.approx(hi)
        assert "wd|accuracy_classifier|test|band" in bands
    finally:
        plt.close("all")


def test_cli_plot_aggregate_groups_files_by_label(seeds, tmp_path):
    import shutil

    copies = [shutil.copy(p, tmp_path / f"copy_{i}.h5") for i, p in enumerate(seeds)]
    out = tmp_path / "figs"
    args = ["plot", *seeds, *map(str, copies), "--aggregate", "-f", "png", "-q", "--dpi", "40"]
    labels = ["-l", "a", "-l", "a", "-l", "a", "-l", "b", "-l", "b", "-l", "b"]
    assert main([*args, *labels, "-o", str(out)]) == 0
    assert (out / "trajectory.png").stat().st_size > 0
    assert main([*args, "-k", "gram", "-o", str(out)]) == 2


def test_aggregate_usage_errors(seeds, capsys):
    assert main(["report", seeds[0], "--aggregate", "-q"]) == 2  # one run is no interval
    assert main(["report", seeds[0], seeds[0], "--aggregate", "-q"]) == 2  # counted twice
    assert "same file" in capsys.readouterr().err
    other = seeds[0].replace("/run_s1", "/./run_s1")
    assert main(["check", seeds[0], other, "--aggregate", "--max", "nc1=1"]) == 2


def test_aggregated_views_keep_the_task(tmp_path):
    runs = []
    for s in (1, 2):
        rep = _run({"nc1": 0.1 * s}, file=f"r{s}.h5")
        ood = SnapshotResult(name="/ood", n_samples=5, n_features=3, n_classes=0, metrics={})
        ood.epoch, ood.split, ood.task = 5, "ood", "ood"
        rep.snapshots.append(ood)
        runs.append(rep)
    agg = aggregate(runs)
    ood = next(s for s in agg if s.split == "ood")
    assert ood.task == "ood" and ood.metrics == {}
    assert [v.task for v in agg.views()] == ["classification", "ood"]
    from ncinspect.check.aggregate import BoundRule, check_aggregate

    result = check_aggregate(agg, [BoundRule("max", "nc1", bound=1.0)])
    assert result.passed and len(result.outcomes) == 1  # the OOD view is not a target


def test_summarise_huge_values_does_not_overflow():
    from ncinspect.results.aggregate import summarise

    s = summarise([1e160, 3e160])
    assert s.mean == 2e160 and s.std == pytest.approx(2**0.5 * 1e160, rel=1e-15)
    assert summarise([1.0, 2.0, 3.0]).std == 1.0


def test_runs_computed_with_different_precision_are_not_aggregated():
    import dataclasses

    import ncinspect
    from ncinspect.errors import InvalidDataError
    from ncinspect.results.aggregate import aggregate
    from ncinspect.results.report import Report

    from ..helpers import make_data

    h, y, m = make_data(C=3, d=4, n=30)
    res = ncinspect.analyze(h, y, weights=m)
    runs = [Report("a.h5", [res]), dataclasses.replace(Report("b.h5", [res]), precision="float32")]
    with pytest.raises(InvalidDataError, match="different precision"):
        aggregate(runs)
