"""Hostile round four, class 3 (two names for one thing) in check rules: two rules of one
kind and metric from one source, or one trend option given twice, were chosen between
silently (the later one held: ``--max nc1=0.1 --max ' nc1=5'`` checked ``nc1 <= 5``). Now
one usage line names both, exit 2. A command-line rule replacing a config file's rule stays
allowed (that is the documented override)."""

from __future__ import annotations

import pytest

from ncinspect.cli import main

from ..helpers import two_epoch_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return str(two_epoch_run(tmp_path_factory.mktemp("r") / "run.h5"))


def _line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "args",
    [
        ["--max", "nc1=0.1", "--max", " nc1=5"],
        ["--max", "nc1=0.1", "--max", "nc1 =5"],
        ["--min", "per_class.ncc_agreement=0.9", "--min", "per_class.ncc_agreement =0.1"],
        ["--non-increasing", "nc1:last=3", "--non-increasing", " nc1:last=2"],
    ],
)
def test_two_command_line_rules_of_one_metric(run, capsys, args):
    assert main(["check", run, *args]) == 2
    line = _line(capsys)
    assert "two" in line and "rules for" in line


def test_one_trend_option_given_twice(run, capsys):
    assert main(["check", run, "--non-increasing", "nc1:last=5,last=2"]) == 2
    assert "last given twice" in _line(capsys)


@pytest.mark.parametrize(
    "toml",
    [
        '[check]\nmax = {"nc1" = 0.1, " nc1" = 5}\n',
        '[check]\nmax."per_class.ncc_agreement" = 0.9\nmax.per_class.ncc_agreement = 0.1\n',
        '[check]\nnon_increasing = {nc1 = {last = 3}, " nc1" = {last = 2}}\n',
    ],
)
def test_two_config_rules_of_one_metric(run, tmp_path, capsys, toml):
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    assert main(["check", run, "--config", str(cfg)]) == 2
    line = _line(capsys)
    assert "c.toml" in line and ("twice" in line or "two" in line)


def test_same_rule_twice_and_command_line_override_still_run(run, tmp_path, capsys):
    # the same rule twice is no ambiguity; a command-line rule replaces the file's rule
    assert main(["check", run, "--max", "nc1=5", "--max", "nc1=5"]) == 0
    cfg = tmp_path / "c.toml"
    cfg.write_text("[check]\nmax = {nc1 = 1e-9}\nnon_increasing = ['nc1', 'nc1']\n")
    capsys.readouterr()
    assert main(["check", run, "--config", str(cfg), "--max", "nc1=5"]) == 0
    assert "nc1 <= 5" in capsys.readouterr().out


# -- class 5: a huge snapshot path or class name is cut where check shows it ------------------


@pytest.fixture(scope="module")
def huge_names(tmp_path_factory):
    import h5py
    import numpy as np

    from ..helpers import make_data

    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path_factory.mktemp("h") / "huge.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["class_names"] = np.array(["c" * 1_000_000, "b", "a"], dtype=h5py.string_dtype())
        for ep in (1, 2):
            g = f.create_group(f"ep{ep}" + "Z" * 1_000_000)
            g["features"], g["weights"] = h * (1 + 1 / ep), m
            g.attrs["epoch"] = ep
    return str(path)


@pytest.mark.parametrize("fmt", ["table", "github"])
@pytest.mark.parametrize("rule", [["--max", "nc1=1e-9"], ["--min", "per_class.ncc_agreement=2"]])
def test_huge_names_are_cut_in_the_table_and_annotations(huge_names, tmp_path, capsys, fmt, rule):
    """Round three cut names in the check table's rows but not in its FAIL lines, nor in
    GitHub annotations (a 1 MB snapshot path gave a 1 MB line); JSON keeps them whole."""
    out = tmp_path / f"o.{fmt}"
    assert main(["check", huge_names, *rule, "--format", fmt, "-o", str(out)]) == 1
    text = out.read_text()
    assert len(text) < 20_000, len(text)
    assert "chars)" in text  # the cut is said
    out_json = tmp_path / "o.json"
    assert main(["check", huge_names, *rule, "--format", "json", "-o", str(out_json)]) == 1
    assert "Z" * 1_000_000 in out_json.read_text()
