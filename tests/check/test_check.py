"""`ncinspect check`: rules, exit codes, TOML discovery and override, output formats, trends."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from ncinspect import DumpWriter
from ncinspect.check import (
    Rule,
    find_config,
    merge_rules,
    parse_threshold,
    parse_trend,
    rules_from_table,
    select_last,
    select_layer,
    trajectories,
)
from ncinspect.cli import main
from ncinspect.errors import UsageError
from ncinspect.metrics import METRIC_KEYS

from ..helpers import simplex_etf
from ..reference import reference_metrics

C, D, N_PER = 4, 8, 40
TRAIN_EPOCHS = (0, 10, 20, 30, 40)
#: within-class noise per epoch: shrinks, except for a bump at epoch 30 (to test trends)
SIGMA = {0: 2.0, 10: 1.0, 20: 0.5, 30: 0.8, 40: 0.2}
NOISY_CLASS = 2  #: this class has 3x the noise: the worst class of every per-class rule


def _features(epoch: int, means: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scale = SIGMA[epoch] * np.where(y == NOISY_CLASS, 3.0, 1.0)[:, None]
    return means[y] + scale * rng.standard_normal((len(y), means.shape[1]))


@pytest.fixture(scope="module")
def traj(tmp_path_factory):
    """A train trajectory (5 epochs) and a test split (2 epochs) whose collapse we control."""
    folder = tmp_path_factory.mktemp("check")
    means = simplex_etf(C, D, 4.0, np.random.default_rng(0))
    y = np.repeat(np.arange(C), N_PER)
    arrays = {}
    path = folder / "traj.h5"
    with DumpWriter(path, "w") as w:
        w.write("labels", y)
        w.write("labels", y, group="test")
        for split, epochs in (("train", TRAIN_EPOCHS), ("test", (0, 40))):
            for ep in epochs:
                h = _features(ep, means, y, seed=ep + (100 if split == "test" else 0))
                name = f"epoch_{ep:04d}" if split == "train" else f"test/epoch_{ep:04d}"
                snap = w.snapshot(name, epoch=ep, split=split)
                snap.append(features=h)
                snap.write(weights=means)
                arrays[f"/{name}"] = h
    return {"path": str(path), "arrays": arrays, "y": y, "W": means, "folder": folder}


@pytest.fixture(scope="module")
def no_weights(tmp_path_factory):
    """A two-epoch dump without a classifier: NC3 cannot be computed."""
    path = tmp_path_factory.mktemp("check_nw") / "nw.h5"
    means = simplex_etf(C, D, 4.0, np.random.default_rng(1))
    y = np.repeat(np.arange(C), 10)
    with DumpWriter(path, "w") as w:
        w.write("labels", y)
        for ep in (20, 40):
            w.snapshot(f"epoch_{ep}", epoch=ep).append(features=_features(ep, means, y, seed=ep))
    return str(path)


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    """Train and test trajectories (3 epochs) of the classifier's layer (with weights) and of
    two hidden layers ``layer_1``/``layer_2`` (features only), as the bundled trainer dumps."""
    path = tmp_path_factory.mktemp("check_layers") / "layers.h5"
    means = simplex_etf(C, D, 4.0, np.random.default_rng(3))
    y = np.repeat(np.arange(C), 10)
    with DumpWriter(path, "w") as w:
        w.write("labels", y)
        w.write("labels", y, group="test")
        for split in ("train", "test"):
            for ep in (0, 10, 20):
                base = f"epoch_{ep:04d}" if split == "train" else f"test/epoch_{ep:04d}"
                snap = w.snapshot(base, epoch=ep, split=split)
                snap.append(features=_features(ep, means, y, seed=ep))
                snap.write(weights=means)
                for k in (1, 2):
                    h = _features(ep, means, y, seed=ep + 10 * k)
                    w.snapshot(f"{base}/layer_{k}").append(features=h)
    return str(path)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Run every test in an empty folder, outside GitHub Actions."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)


def run_json(capsys, *args) -> tuple[int, dict]:
    code = main(["check", *args, "--format", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def _ref(traj, name: str) -> dict:
    return reference_metrics(traj["arrays"][name], traj["y"], W=traj["W"])


# --------------------------------------------------------------------------------------
# exit codes
# --------------------------------------------------------------------------------------
def test_threshold_exit_codes_bracket_the_value(traj, capsys):
    nc1 = _ref(traj, "/epoch_0040")["nc1"]
    nc1_test = _ref(traj, "/test/epoch_0040")["nc1"]
    hi, lo = max(nc1, nc1_test), min(nc1, nc1_test)
    assert main(["check", traj["path"], "--max", f"nc1={hi * 1.01}"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "2 passed, 0 failed" in out
    assert main(["check", traj["path"], "--max", f"nc1={lo * 0.99}"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0 passed, 2 failed" in out
    # between the two: exactly the larger one fails
    code, res = run_json(capsys, traj["path"], "--max", f"nc1={(hi + lo) / 2}")
    assert code == 1
    failed = [r["target"] for r in res["results"] if not r["passed"]]
    assert failed == ["/epoch_0040" if nc1 > nc1_test else "/test/epoch_0040"]


def test_min_rule_and_values_match_reference(traj, capsys):
    code, res = run_json(
        capsys, traj["path"], "--min", "accuracy_ncc=0.5", "--max", "etf_error_means=2"
    )
    assert code == 0 and res["passed"]
    by = {(r["rule"]["metric"], r["target"]): r["value"] for r in res["results"]}
    for name in ("/epoch_0040", "/test/epoch_0040"):
        ref = _ref(traj, name)
        assert by[("accuracy_ncc", name)] == pytest.approx(ref["accuracy_ncc"])
        assert by[("etf_error_means", name)] == pytest.approx(ref["etf_error_means"], rel=1e-9)
    code, _ = run_json(capsys, traj["path"], "--min", "accuracy_ncc=1.01")
    assert code == 1


@pytest.mark.parametrize(
    "spec, closest",
    [
        ("nosuchmetric=1", None),
        ("nc1x=1", "nc1"),
        ("per_class.ncc_agreemnt=1", "per_class.ncc_agreement"),
    ],
)
def test_unknown_metric_is_a_usage_error(traj, capsys, spec, closest):
    assert main(["check", traj["path"], "--max", spec]) == 2
    err = capsys.readouterr().err
    assert "unknown metric" in err and "valid metrics" in err
    assert all(k in err for k in METRIC_KEYS) and "per_class.<" in err
    if closest:
        assert f"did you mean {closest!r}" in err


@pytest.mark.parametrize(
    "args",
    [
        ["--max", "nc1"],  # no value
        ["--max", "nc1=abc"],  # not a number
        ["--min", "nc1=nan"],  # not finite
        ["--decreasing", "per_class.var"],  # trends take aggregate metrics
        ["--decreasing", "nc1:last=3"],  # decreasing has no options
        ["--non-increasing", "nc1:last=1"],  # last must be >= 2
        ["--non-increasing", "nc1:rtol=-1"],  # tolerances are >= 0
        ["--non-increasing", "nc1:window=3"],  # unknown option
        [],  # no rules at all
    ],
)
def test_bad_rules_exit_2(traj, capsys, args):
    assert main(["check", traj["path"], *args]) == 2
    assert "ncinspect: error:" in capsys.readouterr().err


def test_bad_input_exits_3(tmp_path, capsys):
    bad = tmp_path / "corrupt.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 8)
    assert main(["check", str(bad), "--max", "nc1=1"]) == 3
    assert "corrupt.h5" in capsys.readouterr().err
    assert main(["check", str(tmp_path / "missing.h5"), "--max", "nc1=1"]) == 3


def test_undefined_metric_fails_with_its_reason(no_weights, capsys):
    code, res = run_json(capsys, no_weights, "--max", "nc3_self_duality=4", "--max", "nc1=100")
    assert code == 1
    by = {r["rule"]["metric"]: r for r in res["results"]}
    assert by["nc1"]["passed"]
    nc3 = by["nc3_self_duality"]
    assert not nc3["passed"] and nc3["value"] is None
    assert "no classifier weights" in nc3["message"]
    code, res = run_json(capsys, no_weights, "--min", "per_class.ncc_agreement=0")
    assert code == 1 and "no classifier weights or outputs" in res["results"][0]["message"]


# --------------------------------------------------------------------------------------
# per-class worst case
# --------------------------------------------------------------------------------------
def test_per_class_rules_use_the_worst_class(traj, capsys):
    h, y, W = traj["arrays"]["/epoch_0040"], traj["y"], traj["W"]
    var = [np.mean(np.sum((h[y == c] - h[y == c].mean(0)) ** 2, axis=1)) for c in range(C)]
    acc = [np.mean(np.argmax(h[y == c] @ W.T, axis=1) == c) for c in range(C)]
    assert int(np.argmax(var)) == NOISY_CLASS  # the fixture does what it says
    args = [traj["path"], "--snapshot", "/epoch_0040"]
    code, res = run_json(
        capsys,
        *args,
        "--max",
        f"per_class.var={max(var) * 1.01}",
        "--min",
        f"per_class.accuracy_classifier={min(acc)}",
    )
    assert code == 0
    by = {r["rule"]["metric"]: r for r in res["results"]}
    assert by["per_class.var"]["value"] == pytest.approx(max(var), rel=1e-9)
    assert f"worst class {NOISY_CLASS}" in by["per_class.var"]["message"]
    assert by["per_class.accuracy_classifier"]["value"] == pytest.approx(min(acc))
    # a bound that every class but the worst meets still fails: the mean hides nothing
    between = (sorted(var)[-2] + max(var)) / 2
    assert np.mean(var) < between
    code, res = run_json(capsys, *args, "--max", f"per_class.var={between}")
    assert code == 1 and f"worst class {NOISY_CLASS}" in res["results"][0]["message"]


# --------------------------------------------------------------------------------------
# trends
# --------------------------------------------------------------------------------------
def test_trend_rules_on_a_trajectory(traj, capsys):
    nc1 = {ep: _ref(traj, f"/epoch_{ep:04d}")["nc1"] for ep in TRAIN_EPOCHS}
    assert nc1[40] < nc1[0] and nc1[30] > nc1[20]  # the bump the fixture puts in
    path, train = traj["path"], ["--snapshot", "/epoch_*"]
    code, res = run_json(capsys, path, *train, "--decreasing", "nc1")
    assert code == 0
    [r] = res["results"]
    assert r["value"] == pytest.approx(nc1[40]) and r["bound"] == pytest.approx(nc1[0])
    assert r["target"] == "/epoch_0000 .. /epoch_0040"
    assert run_json(capsys, path, *train, "--increasing", "nc1")[0] == 1
    code, res = run_json(capsys, path, *train, "--non-increasing", "nc1")
    assert code == 1 and "from epoch 20 to 30" in res["results"][0]["message"]
    # the last two snapshots are monotone; a tolerance larger than the bump passes too
    assert run_json(capsys, path, *train, "--non-increasing", "nc1:last=2")[0] == 0
    rise = nc1[30] / nc1[20] - 1
    assert run_json(capsys, path, *train, "--non-increasing", f"nc1:rtol={rise * 1.01}")[0] == 0
    assert run_json(capsys, path, *train, "--non-increasing", f"nc1:rtol={rise * 0.99}")[0] == 1
    assert (
        run_json(
            capsys, path, *train, "--non-increasing", f"nc1:atol={(nc1[30] - nc1[20]) * 1.01}"
        )[0]
        == 0
    )
    # more snapshots asked for than the trajectory has: fails, never passes silently
    code, res = run_json(capsys, path, *train, "--non-increasing", "nc1:last=6")
    assert code == 1 and "found 5" in res["results"][0]["message"]


def test_trends_see_every_epoch_while_thresholds_see_the_last(traj, capsys):
    code, res = run_json(capsys, traj["path"], "--decreasing", "nc1", "--max", "nc1=100")
    assert code == 0
    trend = [r["target"] for r in res["results"] if r["rule"]["kind"] == "decreasing"]
    thresh = [r["target"] for r in res["results"] if r["rule"]["kind"] == "max"]
    assert sorted(trend) == ["/epoch_0000 .. /epoch_0040", "/test/epoch_0000 .. /test/epoch_0040"]
    assert sorted(thresh) == ["/epoch_0040", "/test/epoch_0040"]


def test_trend_on_undefined_metric_fails(no_weights, capsys):
    code, res = run_json(capsys, no_weights, "--decreasing", "nc3_self_duality")
    assert code == 1 and "no classifier weights" in res["results"][0]["message"]


# --------------------------------------------------------------------------------------
# snapshot selection
# --------------------------------------------------------------------------------------
def test_snapshot_selection(traj, capsys):
    def targets(*args):
        return sorted(
            r["target"]
            for r in run_json(capsys, traj["path"], "--max", "nc1=100", *args)[1]["results"]
        )

    assert targets() == ["/epoch_0040", "/test/epoch_0040"]
    assert targets("--snapshot", "all") == sorted(traj["arrays"])
    assert targets("-s", "/test/*") == ["/test/epoch_0000", "/test/epoch_0040"]


def test_select_last_groups_by_split_and_layer():
    from types import SimpleNamespace as S

    items = [
        S(name="a", epoch=5, split="train", layer=None),
        S(name="b", epoch=9, split="train", layer=None),
        S(name="c", epoch=1, split="train", layer="layer_1"),
        S(name="d", epoch=7, split="test", layer=None),
        S(name="e", epoch=None, split="val", layer=None),
        S(name="f", epoch=None, split="val", layer=None),
    ]
    assert sorted(s.name for s in select_last(items)) == ["b", "c", "d", "f"]


def test_trajectories_reuse_the_trajectory_module():
    from types import SimpleNamespace as S

    from ncinspect.results.trajectory import group_trajectories

    items = [
        S(name="b", epoch=9, split="train", layer=None),
        S(name="x", epoch=None, split="train", layer=None),
        S(name="a", epoch=5, split="train", layer=None),
        S(name="c", epoch=1, split="train", layer="layer_1"),
    ]
    groups = trajectories(items)
    assert groups == list(group_trajectories(items).values())
    assert [[s.name for s in g] for g in groups] == [["a", "b", "x"], ["c"]]
    # the last *dated* snapshot wins over an undated one
    assert sorted(s.name for s in select_last(items)) == ["b", "c"]
    assert [s.name for s in select_layer(items)] == ["b", "x", "a"]
    assert [s.name for s in select_layer(items, "layer_1")] == ["c"]
    assert select_layer(items, "all") == items


# --------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------
README_RULES = ["--max", "nc1=100", "--min", "per_class.ncc_agreement=0", "--decreasing", "nc1"]


def test_rules_default_to_the_classifier_layer(layered, capsys):
    # NC3 / NC4 / per-class NCC agreement need the classifier: only the penultimate
    # snapshots have it, and by default only they are checked
    args = [*README_RULES, "--max", "nc3_self_duality=100", "--max", "nc4_ncc_mismatch=1"]
    code, res = run_json(capsys, layered, *args)
    assert code == 0, [r["message"] for r in res["results"] if not r["passed"]]
    assert res["layer"] == "penultimate"
    assert {r["layer"] for r in res["results"]} == {None}
    thresh = sorted({r["target"] for r in res["results"] if r["rule"]["kind"] != "decreasing"})
    assert thresh == ["/epoch_0020", "/test/epoch_0020"]
    trend = sorted(r["target"] for r in res["results"] if r["rule"]["kind"] == "decreasing")
    assert trend == ["/epoch_0000 .. /epoch_0020", "/test/epoch_0000 .. /test/epoch_0020"]


def test_layer_all_gates_hidden_layers_and_fails_rules_needing_weights(layered, capsys):
    code, res = run_json(capsys, layered, "--layer", "all", "--max", "nc1=100")
    assert code == 0 and res["layer"] == "all"
    assert {r["layer"] for r in res["results"]} == {None, "layer_1", "layer_2"}
    assert len(res["results"]) == 6  # last epoch of 2 splits x 3 layers
    # a rule needing W on a hidden layer fails with the reason, never passes silently
    code, res = run_json(
        capsys, layered, "--layer", "all", *README_RULES, "--max", "nc3_self_duality=1e9"
    )
    assert code == 1
    failed = [r for r in res["results"] if not r["passed"]]
    assert {r["layer"] for r in failed} == {"layer_1", "layer_2"}
    assert {r["rule"]["metric"] for r in failed} == {"per_class.ncc_agreement", "nc3_self_duality"}
    assert all("no classifier weights" in r["message"] for r in failed)
    assert all(r["passed"] for r in res["results"] if r["layer"] is None)


def test_layer_name_selects_one_hidden_layer(layered, capsys):
    code, res = run_json(capsys, layered, "--layer", "layer_2", "--max", "nc1=100")
    assert code == 0
    assert [r["target"] for r in res["results"]] == [
        "/epoch_0020/layer_2",
        "/test/epoch_0020/layer_2",
    ]
    code, res = run_json(capsys, layered, "--layer", "layer_2", "--decreasing", "nc1")
    assert {r["target"] for r in res["results"]} == {
        "/epoch_0000/layer_2 .. /epoch_0020/layer_2",
        "/test/epoch_0000/layer_2 .. /test/epoch_0020/layer_2",
    }
    # the title says which layer was checked
    args = ["--layer", "layer_2", "--max", "nc1=100", "--format", "table", "-o", "t.txt"]
    assert main(["check", layered, *args]) == 0
    capsys.readouterr()
    assert "layers.h5  layer: layer_2" in open("t.txt").read()
    # a layer the file does not have is a usage error naming those it has
    assert main(["check", layered, "--layer", "layer_9", "--max", "nc1=100"]) == 2
    err = capsys.readouterr().err
    assert "'layer_9'" in err and "penultimate, layer_1, layer_2" in err
    # so is a pattern whose snapshots are all of other layers
    args = ["--snapshot", "*/layer_1", "--max", "nc1=100"]
    assert main(["check", layered, *args]) == 2
    assert "no matching snapshot of layer 'penultimate'" in capsys.readouterr().err
    assert run_json(capsys, layered, *args, "--layer", "all")[0] == 0


def test_layer_from_config_and_cli_override(layered, tmp_path, capsys):
    (tmp_path / "ncinspect.toml").write_text('[check]\nlayer = "layer_1"\nmax = { nc1 = 100 }\n')
    code, res = run_json(capsys, layered)
    assert code == 0 and {r["layer"] for r in res["results"]} == {"layer_1"}
    code, res = run_json(capsys, layered, "--layer", "penultimate")
    assert code == 0 and {r["layer"] for r in res["results"]} == {None}
    (tmp_path / "ncinspect.toml").write_text("[check]\nlayer = 1\nmax = { nc1 = 100 }\n")
    assert main(["check", layered]) == 2
    assert "layer must be a non-empty string" in capsys.readouterr().err


@pytest.mark.parametrize("group", ["run[a]", "a,b"])
def test_snapshot_names_with_glob_characters(tmp_path, capsys, group):
    path = tmp_path / "odd.h5"
    means = simplex_etf(3, 5, 3.0, np.random.default_rng(2))
    y = np.repeat(np.arange(3), 8)
    with DumpWriter(path, "w") as w:
        w.write("labels", y)
        for ep in (1, 2):
            w.snapshot(f"{group}/ep{ep}", epoch=ep).append(features=_features(20, means, y, ep))
    code, res = run_json(capsys, str(path), "--max", "nc1=100")
    assert code == 0 and [r["target"] for r in res["results"]] == [f"/{group}/ep2"]


# --------------------------------------------------------------------------------------
# configuration files
# --------------------------------------------------------------------------------------
PYPROJECT = """
[project]
name = "demo"

[tool.ncinspect.check]
snapshot = "all"
max = { nc1 = 100, per_class.var = 1e9 }
decreasing = ["nc1"]
"""


def test_pyproject_discovered_from_a_subfolder(traj, tmp_path, monkeypatch, capsys):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    (tmp_path / "a" / "pyproject.toml").write_text("[project]\nname = 'inner'\n")  # no section
    monkeypatch.chdir(sub)
    assert find_config() == tmp_path / "pyproject.toml"
    code, res = run_json(capsys, traj["path"])
    assert code == 0
    assert res["config"] == str(tmp_path / "pyproject.toml") and res["snapshot"] == "all"
    metrics = {(r["rule"]["kind"], r["rule"]["metric"]) for r in res["results"]}
    assert metrics == {("max", "nc1"), ("max", "per_class.var"), ("decreasing", "nc1")}
    assert len(res["results"]) == 2 * len(traj["arrays"]) + 2


def test_ncinspect_toml_wins_and_cli_overrides(traj, tmp_path, capsys):
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "ncinspect.toml").write_text("[check]\nmax = { nc1 = 1e-9 }\n")
    assert find_config(tmp_path) == tmp_path / "ncinspect.toml"
    code, res = run_json(capsys, traj["path"])
    assert code == 1 and {r["rule"]["bound"] for r in res["results"]} == {1e-9}
    # a command-line rule of the same kind and metric replaces the file's; others add
    code, res = run_json(capsys, traj["path"], "--max", "nc1=100", "--min", "nc1=0")
    assert code == 0
    assert sorted((r["rule"]["kind"], r["rule"]["bound"]) for r in res["results"]) == [
        ("max", 100.0),
        ("max", 100.0),
        ("min", 0.0),
        ("min", 0.0),
    ]
    # --snapshot on the command line overrides the file's; --no-config drops the file
    assert run_json(capsys, traj["path"], "--no-config", "--max", "nc1=100")[0] == 0
    assert main(["check", traj["path"], "--no-config"]) == 2
    capsys.readouterr()


def test_explicit_config_and_bad_configs(traj, tmp_path, capsys):
    good = tmp_path / "rules.toml"
    good.write_text(
        '[check]\nsnapshot = "/test/*"\n[check.non_increasing]\nnc1 = { last = 2, rtol = 0.5 }\n'
    )
    code, res = run_json(capsys, traj["path"], "--config", str(good))
    assert code == 0 and [r["target"] for r in res["results"]] == [
        "/test/epoch_0000 .. /test/epoch_0040"
    ]
    assert res["results"][0]["rule"] == {
        "kind": "non_increasing",
        "metric": "nc1",
        "last": 2,
        "rtol": 0.5,
        "atol": 0.0,
        "text": "nc1 non-increasing (last 2, rtol 0.5)",
    }
    bad = tmp_path / "bad.toml"
    bad.write_text("[check\n")  # a file that cannot be read is bad input: exit 3
    assert main(["check", traj["path"], "--config", str(bad)]) == 3
    assert "invalid TOML" in capsys.readouterr().err
    for text, needle in (
        ("[check]\nmaxx = { nc1 = 1 }\n", "unknown key(s) maxx"),
        ("[check]\nmax = { nc1x = 1 }\n", "did you mean 'nc1'"),
        ("[check]\nmax = { nc1 = 'low' }\n", "must be a number"),
        ("[check]\ndecreasing = 3\n", "expected a list"),
        ("[other]\nx = 1\n", "no [check] section"),
    ):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        assert main(["check", traj["path"], "--config", str(bad)]) == 2, text
        assert needle in capsys.readouterr().err
    assert main(["check", traj["path"], "--config", str(good), "--no-config"]) == 2


def test_rules_from_table_and_merge():
    config = rules_from_table(
        {
            "max": {"nc1": 0.1, "per_class": {"var": 2}},
            "min": {"per_class.ncc_agreement": 0.95},
            "non_decreasing": ["accuracy_classifier"],
        },
        "t",
    )
    rules = config.rules
    assert config.snapshot is None and config.layer is None
    assert rules_from_table({"layer": "all", "snapshot": "*"}, "t").layer == "all"
    assert [r.text for r in rules] == [
        "nc1 <= 0.1",
        "max per_class.var <= 2",
        "min per_class.ncc_agreement >= 0.95",
        "accuracy_classifier non-decreasing (all snapshots)",
    ]
    cli = [parse_threshold("max", "nc1=0.5"), parse_trend("decreasing", "nc1")]
    merged = merge_rules(rules, cli)
    assert [r.text for r in merged][:2] == ["nc1 <= 0.5", "max per_class.var <= 2"]
    assert merged[-1] == Rule("decreasing", "nc1")
    assert parse_trend("non_increasing", "nc1:last=5, rtol=0.05") == Rule(
        "non_increasing", "nc1", last=5, rtol=0.05
    )
    with pytest.raises(UsageError, match="valid keys"):
        rules_from_table({"mx": {}}, "t")


# --------------------------------------------------------------------------------------
# output formats
# --------------------------------------------------------------------------------------
FAILING = ["--max", "nc1=1e-9", "--min", "accuracy_ncc=0", "--decreasing", "nc1"]


def test_json_output(traj, capsys):
    code = main(["check", traj["path"], *FAILING, "--format", "json"])
    text = capsys.readouterr().out
    res = json.loads(text)
    assert code == 1 and res["passed"] is False
    assert text == json.dumps(res, sort_keys=True, indent=2) + "\n"  # sorted, stable keys
    assert res["summary"] == {"rules": 3, "checks": 6, "passed": 4, "failed": 2}
    assert res["schema_version"] == 1 and res["file"] == traj["path"]


def test_junit_output_file(traj, tmp_path, capsys):
    out = tmp_path / "reports" / "nc.xml"
    code = main(["check", traj["path"], *FAILING, "--format", "junit", "--output", str(out)])
    assert code == 1
    assert "FAIL" in capsys.readouterr().out  # stdout still shows the table
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites" and root.get("tests") == "6" and root.get("failures") == "2"
    [suite] = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == 6
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 2
    for case in failed:
        assert case.get("name").startswith("nc1 <= 1e-09 [")
        assert "> 1e-09" in case.find("failure").get("message")
    assert not list(tmp_path.joinpath("reports").glob(".ncinspect-*"))  # no temp file left


def test_github_annotations(traj, monkeypatch, capsys):
    assert main(["check", traj["path"], *FAILING, "--format", "github"]) == 1
    lines = capsys.readouterr().out.splitlines()
    errors = [ln for ln in lines if ln.startswith("::error title=")]
    assert len(errors) == 3  # two failures and the summary
    assert errors[0].startswith("::error title=ncinspect check%3A nc1 <= 1e-09::/")
    # chosen automatically on GitHub Actions; a passing run ends with a notice
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert main(["check", traj["path"], "--max", "nc1=100"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [lines[0]] and lines[0].startswith("::notice title=ncinspect check::")
    # with --output the file gets --format, stdout the annotations
    args = ["--max", "nc1=100", "--format", "json", "-o", "r.json"]
    assert main(["check", traj["path"], *args]) == 0
    assert capsys.readouterr().out.startswith("::notice")
    assert json.loads(open("r.json").read())["passed"] is True


def test_table_output(traj, capsys):
    assert main(["check", traj["path"], *FAILING]) == 1
    out = capsys.readouterr().out
    for col in ("rule", "snapshot", "value", "bound", "result"):
        assert col in out
    assert out.count("FAIL") == 2 + 2  # two rows and two reason lines
    assert "4 passed, 2 failed" in out
    assert main(["check", traj["path"], *FAILING, "--format", "table", "-o", "t.txt"]) == 1
    capsys.readouterr()
    assert "4 passed, 2 failed" in open("t.txt").read()


def test_table_bound_is_written_as_in_the_rule(traj, capsys):
    args = ["--max", "nc1=0.0001", "--min", "accuracy_ncc=1e-05", "--max", "nc1_trace_ratio=20000"]
    main(["check", traj["path"], *args, "--decreasing", "nc1"])
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("│")]
    cells = [[c.strip() for c in ln.strip("│").split("│")] for ln in rows]
    bounds = {c[0]: c[3] for c in cells}
    assert bounds["nc1 <= 0.0001"] == "0.0001"
    assert bounds["accuracy_ncc >= 1e-05"] == "1e-05"
    assert bounds["nc1_trace_ratio <= 20000"] == "20000"
    # a trend's bound is the first epoch's measured value, formatted like the value column
    trend = [c for c in cells if c[0].startswith("nc1 decreasing")]
    assert trend and all(c[3] and c[3] != "n/a" for c in trend)


def test_check_reads_the_file_once(layered, capsys, monkeypatch):
    """The snapshots the rules need are chosen on the file the analysis has open: one walk
    of the file (and one probe), not one per kind of rule plus one for the analysis."""
    import ncinspect.dump as dump_mod

    opened = []
    real = dump_mod.open_dump

    def counted(*args, **kwargs):
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(dump_mod, "open_dump", counted)
    args = ["--decreasing", "nc1", "--max", "nc1=100", "--max", "layer_rate=10"]
    code, res = run_json(capsys, layered, *args)
    assert code in (0, 1) and len(res["results"]) >= 3
    assert opened == [layered]


def test_a_trend_message_says_a_split_not_recorded_not_none(tmp_path, capsys):
    """A trajectory of snapshots without a split: "split None" read as a split named None."""
    import h5py

    from ..helpers import make_data

    h, y, m = make_data(C=3, d=4, n=6)
    path = tmp_path / "one.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, m
        f.attrs["epoch"] = 3
    assert main(["check", str(path), "--decreasing", "nc1"]) == 1
    out = capsys.readouterr().out
    assert "split not recorded" in out and "split None" not in out, out
