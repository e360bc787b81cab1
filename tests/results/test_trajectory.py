"""Trajectories: grouping by split/layer/epoch, the compact and per-layer tables, report --csv."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from rich.console import Console

from ncinspect import analyze_file
from ncinspect.cli import main
from ncinspect.metrics import METRIC_KEYS
from ncinspect.render.table import change_text, compact_table, fmt, layer_table
from ncinspect.results.report import SnapshotResult
from ncinspect.results.trajectory import (
    final_snapshot,
    group_trajectories,
    has_layers,
    layer_depth,
    layer_profile,
    series,
    trajectory,
)
from tests.plots.test_plots_data import EPOCHS, write_run


def _res(name, epoch=None, split=None, layer=None, **metrics):
    return SnapshotResult(
        name=name,
        n_samples=1,
        n_features=1,
        n_classes=2,
        metrics=metrics,
        epoch=epoch,
        split=split,
        layer=layer,
    )


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = write_run(tmp_path_factory.mktemp("traj") / "run.h5", layers=2)
    return path, analyze_file(path)


def _text(renderable, width=200):
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


# -- grouping -------------------------------------------------------------------------------
def test_groups_are_sorted_by_epoch_within_split_and_layer():
    shuffled = [
        _res("b", 20, "train"),
        _res("t", 10, "test"),
        _res("a", 10, "train"),
        _res("l", 5, "train", "layer_1"),
        _res("c", 0, None),
    ]
    groups = group_trajectories(shuffled)
    assert [r.name for r in groups[("train", None)]] == ["a", "b"]
    # the training split's groups first, then test, then others; file order within
    assert list(groups) == [("train", None), ("train", "layer_1"), (None, None), ("test", None)]
    # the training trajectory includes snapshots without a split
    assert [r.name for r in trajectory(shuffled)] == ["c", "a", "b"]
    assert [r.name for r in trajectory(shuffled, split="test")] == ["t"]
    assert final_snapshot(shuffled).name == "b"
    assert final_snapshot([_res("t", 3, "test")]).name == "t"


def test_tables_list_train_then_test_then_other_splits():
    """A dump whose groups sort /test, /train, /val (natural order) reads train first."""
    from ncinspect.render.table import compact_table
    from ncinspect.results.report import Report

    results = [
        _res("/test/epoch_0001", 1, "test"),
        _res("/train/epoch_0001", 1, "train"),
        _res("/val/epoch_0001", 1, "val"),
        _res("/test/epoch_0002", 2, "test"),
        _res("/train/epoch_0002", 2, "train"),
    ]
    assert [k[0] for k in group_trajectories(results)] == ["train", "test", "val"]
    text = _text(compact_table(Report(file="run.h5", snapshots=results)))
    rows = [text.index(name) for name in ("/train/epoch_0001", "/test/epoch_0001", "/val/")]
    assert rows == sorted(rows)


def test_layer_depths_put_the_classifier_layer_last():
    results = [
        _res("p", 9, "train"),
        _res("l2", 9, "train", "layer_2"),
        _res("l10", 9, "train", "layer_10"),
        _res("l1", 9, "train", "layer_1"),
        _res("old", 1, "train", "layer_1"),
    ]
    profile = layer_profile(results)
    assert [(d, r.name) for d, r in profile] == [(1, "l1"), (2, "l2"), (10, "l10"), (11, "p")]
    assert [r.name for _, r in layer_profile(results, epoch=1)] == ["old"]
    assert layer_depth(None, 3) == 4 and layer_depth("layer_7", 3) == 7
    assert has_layers(results) and not has_layers([_res("p", 1)])


def test_series_keeps_undefined_values_as_nan():
    results = [_res("a", 0, nc1=0.5), _res("b", 5, nc1=None), _res("c", None, nc1=0.1)]
    x, y = series(results, "nc1")
    np.testing.assert_array_equal(x, [0, 5, 2])  # no epoch: the position
    assert y[0] == 0.5 and np.isnan(y[1]) and y[2] == 0.1


# -- tables ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("a", "b", "direction", "colour"),
    [
        (1.0, 0.5, "lower", "green"),
        (0.5, 1.0, "lower", "red"),
        (0.1, 0.9, "higher", "green"),
        (0.9, 0.1, "higher", "red"),
        (0.4, -0.1, "zero", "green"),
        (0.1, -0.4, "zero", "red"),
        (3.0, 1.5, "one", "green"),
        (0.9, 0.5, "one", "red"),
    ],
)
def test_change_colour_follows_the_metric_direction(a, b, direction, colour):
    assert change_text(a, b, direction).startswith(f"[{colour}]")


def test_change_text_forms():
    assert change_text(2.0, 1.0) == "[green]x0.5[/green]"
    assert change_text(0.0, 0.25, "lower") == "[red]+0.25[/red]"
    assert change_text(1.0, 1.0) == "x1"
    assert change_text(None, 1.0) == ""
    assert change_text(True, False, "info") == ""


def test_compact_table_has_a_change_row_per_trajectory(run):
    _, report = run
    text = _text(compact_table(report))
    first, last = min(EPOCHS), max(EPOCHS)
    # one change row per (split, layer) group: train/test x penultimate/layer_1/layer_2
    assert text.count(f"change {first}->{last}") == 6
    assert "/test/epoch_0040/layer_2" in text


def test_compact_table_colours_accuracy_gain_green(run):
    _, report = run
    table = compact_table(report)
    acc_col = next(c for c in table.columns if c.header == "accuracy")
    cells = list(acc_col.cells)
    train = [r for r in report if r.split == "train" and r.layer is None]
    assert train[-1].metrics["accuracy_classifier"] > train[0].metrics["accuracy_classifier"]
    change_cell = cells[len(train)]  # the row after the first trajectory
    assert change_cell.startswith("[green]")


def test_layer_table_lists_depths_at_the_last_epoch(run, tmp_path):
    _, report = run
    table = layer_table(report)
    text = _text(table)
    rows = [ln for ln in text.splitlines() if ln.strip().startswith("│")]
    assert len(rows) == 6  # 3 depths x 2 splits
    by = {(r.split, r.layer): r for r in report if r.epoch == max(EPOCHS)}
    nc1 = [c for c in table.columns if c.header == "nc1"][0]
    assert list(nc1.cells)[:3] == [
        fmt(by[("train", k)].metrics["nc1"]) for k in ("layer_1", "layer_2", None)
    ]
    flat = write_run(tmp_path / "flat.h5", layers=0, test=False)
    assert layer_table(analyze_file(flat)) is None


# -- report command ------------------------------------------------------------------------------
def test_report_csv_has_one_row_per_snapshot_matching_the_json(run, tmp_path):
    path, report = run
    out = tmp_path / "m.csv"
    jout = tmp_path / "m.json"
    assert main(["report", path, "--csv", str(out), "--json", str(jout)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == len(report)
    assert set(METRIC_KEYS) <= set(rows[0]) and {
        "file",
        "snapshot",
        "epoch",
        "split",
        "layer",
    } <= set(rows[0])
    snaps = {s["name"]: s for s in json.loads(jout.read_text())["snapshots"]}
    for row in rows:
        s = snaps[row["snapshot"]]
        assert row["split"] == s["split"] and row["layer"] == (s["layer"] or "")
        assert int(row["epoch"]) == s["epoch"]
        for key in ("nc1", "nc3_self_duality", "accuracy_ncc"):
            if s["metrics"][key] is None:
                assert row[key] == ""
            else:
                assert float(row[key]) == pytest.approx(s["metrics"][key], rel=1e-15)


def test_report_prints_trajectory_and_layer_tables(run, capsys):
    path, _ = run
    assert main(["report", path]) == 0
    out = capsys.readouterr().out
    assert f"change {min(EPOCHS)}->{max(EPOCHS)}" in out
    assert "metrics against depth" in out and "penultimate (classifier)" in out
