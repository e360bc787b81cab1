"""Integer options are bounded and ``sweep -o FILE`` is a usage error (issue 22 item 7): a
huge or negative integer is one usage line (exit 2) before any work, never a run that does
not end or an internal error."""

from __future__ import annotations

import pytest

from ncinspect.cli import main

from ..helpers import make_data

HUGE = [str(10**9), str(2**64 + 5), "-1"]


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    import h5py

    h, y, m = make_data(C=3, d=4, n=12)
    path = tmp_path_factory.mktemp("d") / "d.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, m
    return str(path)


def _usage_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no message"
    return err[-1]


#: options whose range ends above 1e9: only 2**64 + 5 and -1 are out of it
WIDE = {"--seed", "--chunk-rows", "--min-class-count", "--batch-size", "--save-every"}


def _cases(options):
    return [(o, v) for o in options for v in HUGE if not (o in WIDE and v == str(10**9))]


@pytest.mark.parametrize(
    "option,value",
    _cases(["--bootstrap", "--seed", "--chunk-rows", "--threads", "--min-class-count"]),
)
def test_report_integer_options(dump, tmp_path, capsys, option, value):
    out = tmp_path / "r.json"
    args = ["report", dump, option, value, "--json", str(out)]
    if option == "--seed":
        args += ["--bootstrap", "2"]
    assert main(args) == 2
    line = _usage_line(capsys)
    assert option in line and "range" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "option,value", _cases(["--seeds", "--jobs", "--seed", "--batch-size", "--save-every"])
)
def test_sweep_integer_options(tmp_path, capsys, option, value):
    out = tmp_path / "sweep"
    assert main(["sweep", "-o", str(out), "--epochs", "1", option, value]) == 2
    line = _usage_line(capsys)
    assert "range" in line or "must be" in line
    assert not out.exists()


def test_sweep_seed_plus_seeds_beyond_the_range(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "-o", str(out), "--seed", str(2**63 - 2), "--seeds", "5", "--epochs", "1"]
    assert main(args) == 2
    assert "--seed" in _usage_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("value", [str(2**64 + 5), "-1"])
@pytest.mark.parametrize("option", ["--sample-size", "--seed", "--dpi", "--chunk-rows"])
def test_plot_integer_options(dump, tmp_path, capsys, option, value):
    out = tmp_path / "figs"
    assert main(["plot", dump, "-o", str(out), option, value]) == 2
    assert "range" in _usage_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize("option", ["--batch-size", "--save-every", "--step-every", "--n-targets"])
def test_train_integer_options(tmp_path, capsys, option):
    out = tmp_path / "t.h5"
    args = ["train", "-o", str(out), "--epochs", "1", option, str(2**64 + 5)]
    if option == "--n-targets":
        args += ["--task", "regression"]
    assert main(args) == 2
    line = _usage_line(capsys)
    assert "range" in line or "n_targets must be in" in line
    assert not out.exists()


def test_sweep_out_is_an_existing_file(tmp_path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("keep me")
    assert main(["sweep", "-o", str(target), "--epochs", "1"]) == 2
    line = _usage_line(capsys)
    assert "taken.txt" in line and "file" in line
    assert target.read_text() == "keep me"
    # below a file too: one usage line, nothing written
    assert main(["sweep", "-o", str(target / "sub"), "--epochs", "1"]) in (2, 3)
    assert "internal error" not in capsys.readouterr().err
    assert target.read_text() == "keep me"
