"""The weight-decay sweep: one dump per lambda, rows of metrics and residuals, files, figure;
several seeds: mean and 95% interval, factor per seed; the ``ncinspect sweep`` command."""

from __future__ import annotations

import json
import os

import pytest

from ncinspect.experiments import (
    SWEEP_METRICS,
    SWEEP_THEORY,
    sweep_columns,
    sweep_weight_decay,
    write_sweep,
)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    from ncinspect.train import TrainConfig

    folder = tmp_path_factory.mktemp("sweep")
    cfg = TrainConfig(
        n_classes=3,
        n_per_class=12,
        n_test_per_class=5,
        input_dim=6,
        depth=3,
        width=16,
        epochs=6,
        save_every=6,
        batch_size=12,
        seed=2,
    )
    seen = []
    rows = sweep_weight_decay(
        cfg, [0.0, 1e-3, 1e-2], folder, callback=lambda wd, row: seen.append(wd)
    )
    return folder, rows, seen


def test_one_dump_and_row_per_weight_decay(sweep):
    folder, rows, seen = sweep
    assert seen == [0.0, 1e-3, 1e-2]
    assert [r["weight_decay"] for r in rows] == seen
    for r in rows:
        assert os.path.exists(r["dump"]) and r["snapshot"] == "/epoch_0006" and r["epoch"] == 6
        # kappa = 1/(N C) by default, so Lambda = lambda / (kappa N) = lambda C
        assert r["Lambda"] == pytest.approx(3 * r["weight_decay"])
        assert set(r["metrics"]) == {k for k, _ in SWEEP_METRICS}
        assert len(r["layer_norms_sq"]) == 3 and r["seconds"] > 0
    assert all(v is None for v in rows[0]["theory"].values())  # lambda = 0: not applicable
    assert all(rows[2]["theory"][k] is not None for k, _ in SWEEP_THEORY)


def test_same_data_and_initialisation_for_every_lambda(sweep):
    from ncinspect.dump import open_dump

    _, rows, _ = sweep
    firsts = []
    for r in rows:
        with open_dump(r["dump"]) as dump:
            snap = next(s for s in dump.snapshots if s.name == "/epoch_0000")
            firsts.append(snap.features.read_all())
    assert (firsts[0] == firsts[1]).all() and (firsts[0] == firsts[2]).all()


def test_written_tables_and_figure(sweep):
    folder, rows, _ = sweep
    written = write_sweep(rows, folder, title="tiny")
    assert [os.path.basename(p) for p in written] == [
        "sweep.json",
        "sweep.csv",
        "sweep.md",
        "sweep.png",
    ]
    with open(folder / "sweep.json") as f:
        assert [r["weight_decay"] for r in json.load(f)] == [0.0, 1e-3, 1e-2]
    header, table = sweep_columns(rows)
    with open(folder / "sweep.csv") as f:
        lines = f.read().splitlines()
    assert lines[0].split(",") == header and len(lines) == 1 + len(rows) == 1 + len(table)
    md = (folder / "sweep.md").read_text()
    assert md.count("\n| 0 |") == 2 and "| n/a |" in md
    with open(folder / "sweep.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# -- the command takes every setting from TrainConfig ------------------------------------


def _invoke_sweep(monkeypatch, args):
    """Run ``ncinspect sweep ARGS`` with training replaced by a recorder; returns the call."""
    import ncinspect.experiments as experiments
    from ncinspect.cli import main

    seen = {}

    def fake_sweep(config, values, out_dir, **kw):
        seen.update(config=config, values=values, out_dir=out_dir, **kw)
        raise SystemExit(0)  # stop before training: only the settings matter here

    monkeypatch.setattr(experiments, "sweep_weight_decay", fake_sweep)
    try:
        main(["sweep", *args])
    except SystemExit as exc:
        assert exc.code == 0
    return seen


def test_sweep_command_defaults_are_the_trainconfig_defaults(tmp_path, monkeypatch):
    import dataclasses

    from ncinspect.train import TrainConfig

    seen = _invoke_sweep(monkeypatch, ["-o", str(tmp_path)])
    assert seen["config"] == TrainConfig()  # no default of its own
    assert seen["values"] == [0.0, TrainConfig().weight_decay]
    assert seen["seeds"] is None
    seen = _invoke_sweep(
        monkeypatch,
        ["-o", str(tmp_path), "--weight-decays", "0,1e-4", "--seeds", "3", "--seed", "4"]
        + ["--epochs", "20", "--lr", "0.1", "--set", "separation=1", "--set", "kappa=0.5"]
        + ["--set", "widths=8,9,10", "--set", "schedule=step"],
    )
    want = dataclasses.replace(
        TrainConfig(),
        seed=4,
        epochs=20,
        lr=0.1,
        separation=1.0,
        kappa=0.5,
        widths=(8, 9, 10),
        schedule="step",
    )
    assert seen["config"] == want and seen["values"] == [0.0, 1e-4]
    assert list(seen["seeds"]) == [4, 5, 6]


def test_sweep_command_refuses_unknown_fields(tmp_path, capsys):
    from ncinspect.cli import main

    assert main(["sweep", "-o", str(tmp_path), "--set", "nonsense=1"]) == 2
    assert main(["sweep", "-o", str(tmp_path), "--set", "epochs=ten"]) == 2
    assert main(["sweep", "-o", str(tmp_path), "--seeds", "2", "--extend"]) == 2
    assert not os.listdir(tmp_path)


# -- several seeds: the headline ---------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    from ncinspect.cli import main

    folder = tmp_path_factory.mktemp("seeds")
    args = ["sweep", "-o", str(folder), "--weight-decays", "0,1e-2", "--seeds", "3"]
    args += ["--epochs", "8", "--save-every", "4", "--depth", "3", "--width", "16"]
    args += ["--batch-size", "12", "--set", "n_classes=3", "--set", "n_per_class=12"]
    args += ["--set", "n_test_per_class=5", "--set", "input_dim=6"]
    assert main(args) == 0
    with open(folder / "sweep.json") as f:
        rows = json.load(f)
    return folder, rows


def test_seeds_write_one_dump_per_run_and_the_headline(seeded):
    folder, rows = seeded
    assert sorted((r["weight_decay"], r["seed"]) for r in rows) == [
        (w, s) for w in (0.0, 0.01) for s in (0, 1, 2)
    ]
    names = set(os.listdir(folder))
    for w in ("0", "0.01"):
        assert {f"wd_{w}_seed{s}.h5" for s in range(3)} <= names
    assert {"headline.md", "headline.json", "trajectory.png", "sweep.png"} <= names
    assert {"aggregate_wd_0.json", "aggregate_wd_0.01.json"} <= names
    # seeds draw their own data: the initial features differ between seeds
    from ncinspect.dump import open_dump

    firsts = []
    for s in (0, 1):
        with open_dump(folder / f"wd_0_seed{s}.h5") as dump:
            snap = next(x for x in dump.snapshots if x.name == "/epoch_0000")
            firsts.append(snap.features.read_all())
    assert firsts[0].shape == firsts[1].shape and not (firsts[0] == firsts[1]).all()


def test_headline_mean_interval_and_factors_are_those_of_the_seeds(seeded):
    """Known answers: numpy mean, ddof-1 std and scipy's t quantile over the rows."""
    import numpy as np
    from scipy.stats import t

    folder, rows = seeded
    with open(folder / "headline.json") as f:
        summary = json.load(f)
    assert [s["weight_decay"] for s in summary["runs"]] == [0.0, 0.01]
    for s in summary["runs"]:
        for key in ("nc1", "etf_error_weights_centered", "nc3_self_duality"):
            x = np.array(
                [r["metrics"][key] for r in rows if r["weight_decay"] == s["weight_decay"]]
            )
            half = t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
            got = s["metrics"][key]
            assert got["n"] == 3
            assert got["mean"] == pytest.approx(x.mean(), rel=1e-12)
            assert got["ci_low"] == pytest.approx(x.mean() - half, rel=1e-9)
            assert got["ci_high"] == pytest.approx(x.mean() + half, rel=1e-9)
    key = "etf_error_weights_centered"
    by = {(r["weight_decay"], r["seed"]): r["metrics"][key] for r in rows}
    assert [f["seed"] for f in summary["factors"]] == [0, 1, 2]
    for f in summary["factors"]:
        assert f["factor"] == pytest.approx(by[0.0, f["seed"]] / by[0.01, f["seed"]], rel=1e-12)
    md = (folder / "headline.md").read_text()
    assert "3 seeds" in md and "seed 2:" in md and "smallest" in md
    # the final training snapshot of `report --aggregate` holds the same mean
    with open(folder / "aggregate_wd_0.01.json") as f:
        agg = json.load(f)
    final = [s for s in agg["snapshots"] if s["split"] in (None, "train") and s["layer"] is None][
        -1
    ]
    assert final["epoch"] == 8 and final["n_runs"] == 3
    mean = summary["runs"][1]["metrics"][key]["mean"]
    assert final["metrics"][key]["mean"] == pytest.approx(mean, rel=1e-12)


def test_factors_need_a_baseline_and_skip_undefined():
    from ncinspect.experiments import factors

    rows = [
        {"weight_decay": 0.0, "seed": 0, "metrics": {"m": 0.6}},
        {"weight_decay": 0.1, "seed": 0, "metrics": {"m": 0.2}},
        {"weight_decay": 0.1, "seed": 1, "metrics": {"m": 0.5}},  # no lambda = 0 for seed 1
        {"weight_decay": 0.0, "seed": 2, "metrics": {"m": None}},
        {"weight_decay": 0.1, "seed": 2, "metrics": {"m": 0.1}},
    ]
    got = factors(rows, "m")
    assert [(f["seed"], f["factor"]) for f in got] == [(0, pytest.approx(3.0)), (2, None)]


def test_jobs_give_the_same_rows_as_one_process(tmp_path):
    from ncinspect.train import TrainConfig

    cfg = TrainConfig(
        n_classes=3,
        n_per_class=8,
        n_test_per_class=2,
        input_dim=5,
        depth=2,
        width=8,
        epochs=3,
        save_every=3,
        batch_size=8,
    )
    one = sweep_weight_decay(cfg, [0.0, 1e-2], tmp_path / "a", seeds=[0, 1])
    two = sweep_weight_decay(cfg, [0.0, 1e-2], tmp_path / "b", seeds=[0, 1], jobs=2)

    def strip(rows):
        return [{k: v for k, v in r.items() if k not in ("seconds", "dump")} for r in rows]

    assert strip(one) == strip(two)
    assert [(r["weight_decay"], r["seed"]) for r in two] == [
        (0.0, 0),
        (0.01, 0),
        (0.0, 1),
        (0.01, 1),
    ]
