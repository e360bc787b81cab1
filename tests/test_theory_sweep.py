"""The weight-decay sweep: one dump per lambda, rows of metrics and residuals, files, figure."""

from __future__ import annotations

import json
import os

import pytest

from ncinspect.sweep import (
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


# -- the documented sweeps' settings are pinned, not the TrainConfig defaults --------------


def test_sweep_config_pins_every_setting_of_the_measured_tables():
    """docs/experiments.md was measured with separation 1.0, lr 0.1, ...: the defaults since
    differ (separation 10, lr 0.01), so sweep_config must not take anything from them."""
    import dataclasses

    from ncinspect.sweep import SWEEP_SETTINGS, sweep_config
    from ncinspect.train import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(SWEEP_SETTINGS) == fields - {"weight_decay"}  # everything but lambda is pinned
    cfg = sweep_config(epochs=2000, width=128)
    measured = dict(
        dataset="gaussian",
        n_classes=10,
        n_per_class=100,
        n_test_per_class=100,
        input_dim=32,
        separation=1.0,
        noise=1.0,
        mnist1d_samples=5000,
        depth=4,
        width=128,
        widths=None,
        init_scale=1.0,
        dtype="float64",
        kappa=None,
        lr=0.1,
        momentum=0.9,
        batch_size=100,
        epochs=2000,
        schedule="cosine",
        lr_min=0.0,
        save_every=2000,
        seed=0,
    )
    assert {k: getattr(cfg, k) for k in measured} == measured
    assert sweep_config(epochs=10, save_every=5).save_every == 5
    assert sweep_config(dataset="mnist1d", epochs=1000).lr == 0.1


def test_example_script_uses_the_pinned_settings(tmp_path, monkeypatch):
    """The documented command line builds sweep_config(...), whatever TrainConfig defaults to."""
    import importlib.util

    from click.testing import CliRunner

    import ncinspect.sweep as sweep_module

    path = os.path.join(os.path.dirname(__file__), "..", "examples", "sweep_weight_decay.py")
    spec = importlib.util.spec_from_file_location("sweep_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    seen = {}

    def fake_sweep(config, values, out_dir, **kw):
        seen["config"], seen["values"] = config, values
        raise SystemExit(0)  # stop before training: only the settings matter here

    monkeypatch.setattr(sweep_module, "sweep_weight_decay", fake_sweep)
    args = [
        "--dataset",
        "gaussian",
        "-o",
        str(tmp_path),
        "--weight-decays",
        "0,1e-4",
        "--epochs",
        "2000",
        "--width",
        "128",
        "--set",
        "noise=2",
    ]
    result = CliRunner().invoke(example.main, args)
    assert result.exit_code == 0, result.output
    cfg = seen["config"]
    assert seen["values"] == [0.0, 1e-4]
    assert (cfg.separation, cfg.lr, cfg.batch_size, cfg.momentum, cfg.schedule) == (
        1.0,
        0.1,
        100,
        0.9,
        "cosine",
    )
    assert (cfg.epochs, cfg.save_every, cfg.width, cfg.depth, cfg.noise) == (
        2000,
        2000,
        128,
        4,
        2.0,
    )
