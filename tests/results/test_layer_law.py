"""The layer-wise law (spec/metrics.md "Layer-wise law"): the exact geometric known answer,
a direct least-squares reference, positions and null cases, and the law in the JSON, CSV,
table, check rules (one file and --aggregate) and the layers figure."""

import csv
import io
import json
import math

import numpy as np
import pytest

import ncinspect
from ncinspect import analyze_file
from ncinspect.check import run_check
from ncinspect.check.aggregate import check_runs
from ncinspect.check.rules import parse_threshold
from ncinspect.metrics.layer_law import fit_layer_law
from ncinspect.metrics.registry import LAW_REGISTRY, spec
from ncinspect.results.aggregate import aggregate
from ncinspect.results.layer_laws import layer_laws

RHO = 0.6  # nc1 of layer l: A * RHO**l, exactly


def _class_rows(C=3, d=6, n=10, seed=0):
    """Class means and zero-mean residuals (fixed across layers)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((C, d)) * 3
    res = rng.standard_normal((C, n, d))
    res -= res.mean(axis=1, keepdims=True)
    y = np.repeat(np.arange(C), n)
    return means, res.reshape(C * n, d), y


def _geometric_dump(path, layers=4, epochs=(0, 5), extra=None, rho=RHO):
    """Hidden layers layer_1 .. layer_{layers-1} and the penultimate one (position `layers`):
    at position l the residuals are scaled by rho**(l/2), so nc1_l = nc1_0 * rho**l exactly
    (nc1 is quadratic in the residuals at fixed means)."""
    means, res, y = _class_rows()
    with ncinspect.DumpWriter(path, "w") as w:
        w.write("labels", y)
        for e in epochs:
            for pos in range(1, layers + 1):
                feats = means[y] + res * rho ** (pos / 2) * (1 + e)
                name = f"epoch_{e:04d}" + (f"/layer_{pos}" if pos < layers else "")
                meta = {"epoch": e} if pos == layers else {"layer": f"layer_{pos}"}
                w.snapshot(name, **meta).write(features=feats)
            if extra:
                w.snapshot(f"epoch_{e:04d}/odd", layer="odd", **extra).write(features=means[y])
    return path


def test_geometric_nc1_known_answer(tmp_path):
    report = analyze_file(_geometric_dump(tmp_path / "g.h5", layers=5))
    laws = layer_laws(report.snapshots)
    assert [law.epoch for law in laws] == [0, 5]
    for law in laws:
        m = law.metrics
        assert m["layer_rate"] == pytest.approx(RHO, rel=1e-12)
        assert m["layer_law_r"] == pytest.approx(-1.0, abs=1e-12)
        assert m["layer_law_layers"] == 5
        nc1_1 = law.layers[0]["nc1"]
        assert m["layer_law_intercept"] == pytest.approx(math.log(nc1_1 / RHO), rel=1e-12)
        assert [row["position"] for row in law.layers] == [1, 2, 3, 4, 5]
        assert law.layers[-1]["layer"] is None  # the penultimate layer is K + 1


def test_fit_matches_direct_least_squares():
    rng = np.random.default_rng(4)
    x = np.array([1.0, 2.0, 3.0, 5.0, 6.0])
    nc1 = np.exp(rng.standard_normal(5))
    got = fit_layer_law(x, nc1).values
    slope, intercept = np.polyfit(x, np.log(nc1), 1)
    assert got["layer_rate"] == pytest.approx(math.exp(slope), rel=1e-12)
    assert got["layer_law_intercept"] == pytest.approx(intercept, rel=1e-12, abs=1e-12)
    assert got["layer_law_r"] == pytest.approx(np.corrcoef(x, np.log(nc1))[0, 1], rel=1e-12)
    assert got["layer_law_layers"] == 5


@pytest.mark.parametrize(
    "positions,nc1,why",
    [
        ([1, 2], [0.1, 0.2], "fewer than 3 layers to fit (found 2)"),
        ([1, 2, 3], [0.1, None, 0.3], "nc1 of layer 2 is null"),
        ([1, 2, 3], [0.1, 0.0, 0.3], "nc1 of layer 2 is 0, whose log is undefined"),
        ([2, 2, 2], [0.1, 0.2, 0.3], "every layer has the same position"),
    ],
)
def test_null_with_reason(positions, nc1, why):
    out = fit_layer_law(positions, nc1)
    for key in ("layer_rate", "layer_law_intercept", "layer_law_r"):
        assert out.values[key] is None and out.null_reasons[key] == why
    assert out.values["layer_law_layers"] == len(positions)
    flat = fit_layer_law([1, 2, 3], [0.2, 0.2, 0.2])
    assert flat.values["layer_rate"] == 1.0 and flat.values["layer_law_r"] is None


def test_positions_layer_index_and_left_out(tmp_path):
    path = _geometric_dump(tmp_path / "o.h5", layers=3, epochs=(0,), extra={"layer_index": 7})
    law = layer_laws(analyze_file(path).snapshots)[0]
    assert [(row["layer"], row["position"]) for row in law.layers] == [
        ("layer_1", 1),
        ("layer_2", 2),
        ("odd", 7),
        (None, 8),
    ]
    path = _geometric_dump(tmp_path / "p.h5", layers=3, epochs=(0,), extra={"note": "x"})
    law = layer_laws(analyze_file(path).snapshots)[0]
    assert [row["position"] for row in law.layers] == [1, 2, 3]
    assert any("'odd' left out" in w for w in law.warnings)


def test_json_csv_table_sections(tmp_path):
    report = analyze_file(_geometric_dump(tmp_path / "g.h5"))
    data = json.loads(report.to_json())
    assert [s["epoch"] for s in data["layers"]] == [0, 5]
    assert data["layers"][0]["metrics"]["layer_law_r"] == pytest.approx(-1.0, abs=1e-12)
    rows = list(csv.DictReader(io.StringIO(report.to_csv())))
    assert all(float(r["layer_rate"]) == pytest.approx(RHO, rel=1e-12) for r in rows)
    plain = analyze_file(_geometric_dump(tmp_path / "h.h5"), snapshot="/epoch_0000")
    assert "layers" not in json.loads(plain.to_json())  # no hidden layer: no section
    from rich.console import Console

    from ncinspect.render.table import render_report

    console = Console(file=io.StringIO(), width=200, color_system=None)
    render_report(report, console)
    text = console.file.getvalue()
    assert "layer-wise law" in text and all(m.label in text for m in LAW_REGISTRY)


def test_registry_entries():
    for key in ("layer_rate", "layer_law_intercept", "layer_law_r", "layer_law_layers"):
        assert spec(key).scope == "layers" and spec(key).formula and spec(key).title


def test_check_rule_on_the_law(tmp_path):
    path = _geometric_dump(tmp_path / "g.h5")
    res = run_check(path, [parse_threshold("max", "layer_law_r=-0.95")])
    assert res.passed and len(res.outcomes) == 1
    assert res.outcomes[0].epoch == 5 and res.outcomes[0].value == pytest.approx(-1.0)
    res = run_check(path, [parse_threshold("max", "layer_rate=0.5")], snapshot="all")
    assert not res.passed and len(res.outcomes) == 2
    assert "layer_rate = 0.6" in res.outcomes[0].message


def test_check_rule_without_hidden_layers_fails(tmp_path):
    path = _geometric_dump(tmp_path / "g.h5")
    import h5py

    with h5py.File(path, "a") as f:  # keep the penultimate snapshots only
        for e in (0, 5):
            for k in (1, 2, 3):
                del f[f"epoch_{e:04d}/layer_{k}"]
    res = run_check(path, [parse_threshold("max", "layer_law_r=-0.95")])
    assert not res.passed and len(res.outcomes) == 1
    assert "no epoch has hidden-layer snapshots" in res.outcomes[0].message


def test_check_runs_aggregate(tmp_path):
    paths = [_geometric_dump(tmp_path / f"s{i}.h5", rho=r) for i, r in enumerate((0.5, 0.6))]
    agg = aggregate([analyze_file(p) for p in paths])
    last = agg.laws[-1].metrics
    assert last["layer_rate"].mean == pytest.approx(0.55, rel=1e-12)
    assert last["layer_law_r"].mean == pytest.approx(-1.0, abs=1e-12)
    res = check_runs([str(p) for p in paths], [], max_upper=["layer_rate=0.9"])
    assert not res.passed  # two runs: t(0.975, 1) = 12.7 widens the interval past 0.9
    res = check_runs([str(p) for p in paths], [parse_threshold("max", "layer_rate=0.56")])
    assert res.passed


def test_layers_figure_draws_the_fit(tmp_path):
    from ncinspect.plots.layers import plot_layers

    fig = plot_layers(analyze_file(_geometric_dump(tmp_path / "g.h5")))
    fitted = [ln for ax in fig.axes for ln in ax.lines if (ln.get_gid() or "").endswith("|law")]
    assert len(fitted) == 1
    x, y = fitted[0].get_data()
    assert list(x) == [1, 2, 3, 4]
    assert y[1] / y[0] == pytest.approx(RHO, rel=1e-12)


def test_bundled_trainer_writes_hidden_layers_at_every_saved_epoch(tmp_path):
    from ncinspect.train import TrainConfig, fit

    path = tmp_path / "t.h5"
    fit(TrainConfig(depth=4, width=8, n_classes=3, n_per_class=5, n_test_per_class=2,
                    epochs=4, save_every=2), dump=path)  # fmt: skip
    laws = layer_laws(analyze_file(path).snapshots)
    assert sorted({(law.epoch, law.split) for law in laws}) == [
        (e, s) for e in (0, 2, 4) for s in ("test", "train")
    ]
    assert all(law.metrics["layer_law_layers"] == 3 for law in laws)
