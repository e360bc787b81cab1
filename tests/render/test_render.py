"""What users see: loss-aware square-loss section, tables at 80 columns, names from hostile
files shown literally, and the notebook API (repr, HTML, to_json, to_pandas, lookup)."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

import h5py
import numpy as np
import pytest
from rich.console import Console

from ncinspect.analysis.api import analyze, analyze_file
from ncinspect.cli import main
from ncinspect.metrics import METRIC_KEYS, PER_CLASS_KEYS
from ncinspect.render.table import fmt, render_report
from ncinspect.results.report import square_loss_keys

from ..helpers import make_data

SAMPLE = os.path.join(
    os.path.dirname(__file__), os.pardir, os.pardir, "sample_data", "trained_wd.h5"
)
SQUARE = set(square_loss_keys())


def write_flat(path, *, loss=None, group="/", class_names=None, epochs=(None,), seed=0):
    """A small dump: features, labels, weights (= class means) and outputs per snapshot."""
    h, y, m = make_data(C=4, d=8, n=20, seed=seed)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        if class_names is not None:
            f.attrs["class_names"] = np.array(class_names, dtype=h5py.string_dtype())
        for e in epochs:
            name = group if e is None else f"{group.rstrip('/')}/epoch_{e:04d}"
            g = f.require_group(name) if name != "/" else f
            g["features"] = h
            g["weights"] = m
            g["outputs"] = h @ m.T / 16.0
            if loss is not None:
                g.attrs["loss"] = loss
            if e is not None:
                g.attrs["epoch"] = e
    return str(path)


def _render(report, width, **kw):
    buf = io.StringIO()
    render_report(report, Console(file=buf, width=width, color_system=None), **kw)
    return buf.getvalue()


def _table(text: str) -> str:
    """Only the table lines of rendered output (not the notes and warnings)."""
    return "\n".join(ln for ln in text.splitlines() if ln[:1] in "┏┃┡│├└")


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[\s│┃|]+", text))


# -- 6. loss-aware square-loss section --------------------------------------------------------
def test_cross_entropy_model_gets_no_square_loss_section(tmp_path, capsys):
    path = write_flat(tmp_path / "ce.h5", loss="cross_entropy")
    assert main(["report", path]) == 0
    out = capsys.readouterr().out
    table = _table(out)
    assert "nc1" in table
    assert not any(key in table for key in ("sqi", "interpolates", "mse"))
    assert "not a square loss" in out and "--sqi" in out
    # forced on
    assert main(["report", path, "--sqi"]) == 0
    out = capsys.readouterr().out
    assert "sqi_eps1" in out and "mse" in out and "shown because of --sqi" in out
    # the JSON keeps every value, says which loss, and notes it
    assert main(["report", path, "--json", "-"]) == 0
    snap = json.loads(capsys.readouterr().out)["snapshots"][0]
    assert snap["loss"] == "cross_entropy" and snap["square_loss"] is False
    assert all(snap["metrics"][k] is not None for k in ("sqi_eps1", "mse", "sqi_spread"))
    assert any("not a square loss" in w for w in snap["warnings"])


def test_unrecorded_loss_hides_the_section_with_a_one_line_note(tmp_path, capsys):
    path = write_flat(tmp_path / "plain.h5")
    assert main(["report", path]) == 0
    out = capsys.readouterr().out
    assert "nc1" in _table(out) and "sqi_eps1" not in _table(out)
    notes = [ln for ln in out.splitlines() if "loss not recorded" in ln]
    assert len(notes) == 1 and "loss='square'" in notes[0] and "--sqi" in notes[0]
    assert main(["report", path, "--json", "-"]) == 0
    snap = json.loads(capsys.readouterr().out)["snapshots"][0]
    assert snap["loss"] is None and snap["square_loss"] is None
    assert snap["metrics"]["mse"] is not None
    assert any("loss not recorded" in w for w in snap["warnings"])


@pytest.mark.parametrize("loss", ["square", "mse", "MSELoss", "squared_error"])
def test_square_loss_model_shows_the_section_without_a_note(tmp_path, capsys, loss):
    path = write_flat(tmp_path / "sq.h5", loss=loss)
    assert main(["report", path]) == 0
    out = capsys.readouterr().out
    assert "sqi_eps1" in out and "interpolates" in out
    assert "square loss" not in out and "loss not recorded" not in out
    assert main(["report", path, "--json", "-"]) == 0
    snap = json.loads(capsys.readouterr().out)["snapshots"][0]
    assert snap["square_loss"] is True
    assert not any("loss" in w for w in snap["warnings"])


def test_bundled_trainer_dump_is_a_square_loss_model():
    # the trainer writes the loss value under `loss` and trainer = "ncinspect.train"
    report = analyze_file(SAMPLE, snapshot="epoch_6000")
    assert isinstance(report[0].meta["loss"], float)
    assert report[0].loss == "square" and report[0].square_loss is True
    assert "sqi_eps1" in _render(report, 120)


def test_compact_table_of_a_cross_entropy_run_has_no_mse_column(tmp_path):
    path = write_flat(tmp_path / "ce.h5", loss="cross_entropy", epochs=(0, 10, 20))
    report = analyze_file(path)
    assert "mse" not in _table(_render(report, 200))
    assert "mse" in _table(_render(report, 200, sqi=True))
    from ncinspect.render.table import compact_table

    headers = [c.header for c in compact_table(report).columns]
    assert "mse" not in headers and "mse" in [
        c.header for c in compact_table(report, sqi=True).columns
    ]


def test_sqi_figure_follows_the_loss(tmp_path, capsys):
    from ncinspect import plots

    ce = write_flat(tmp_path / "ce.h5", loss="cross_entropy")
    res = analyze_file(ce)
    assert "not a square loss" in plots.kind_allowed("sqi", list(res))
    assert plots.kind_allowed("sqi", list(res), sqi=True) is None
    assert (
        plots.kind_allowed("sqi", list(analyze_file(write_flat(tmp_path / "sq.h5", loss="square"))))
        is None
    )
    assert "loss not recorded" in plots.kind_allowed(
        "sqi", list(analyze_file(write_flat(tmp_path / "u.h5")))
    )
    out = tmp_path / "figs"
    assert main(["plot", ce, "-o", str(out), "--kind", "sqi", "--format", "png"]) == 3
    assert "not a square loss" in capsys.readouterr().err
    assert main(["plot", ce, "-o", str(out), "--kind", "sqi", "--format", "png", "--sqi"]) == 0
    assert os.path.exists(out / "sqi.png")


# -- 7. readable at 80 columns ----------------------------------------------------------------
def _every_value_whole(text: str, results) -> None:
    tokens = _tokens(text)
    for res in results:
        for key in METRIC_KEYS:
            if key in SQUARE and not res.shows_square_loss():
                continue
            value = fmt(res.metrics.get(key))
            assert value in tokens, f"{res.name} {key}={value} not shown whole"


@pytest.mark.parametrize("width", [80, 120])
def test_detailed_table_shows_every_value_whole(width):
    report = analyze_file(SAMPLE, snapshot="epoch_6000")
    text = _render(report, width)
    table_lines = [ln for ln in text.splitlines() if ln[:1] in "┏┃┡│├└"]
    assert table_lines and all(len(ln) <= width for ln in table_lines)
    assert "…" not in text
    _every_value_whole(text, report)
    for key in METRIC_KEYS:
        assert key in _tokens(text)


@pytest.mark.parametrize("width", [80, 120])
def test_compact_and_per_class_tables_show_every_value_whole(width):
    from ncinspect.render.table import COMPACT_KEYS

    report = analyze_file(SAMPLE, per_class=True)
    text = _render(report, width, per_class=True)
    assert "…" not in text
    assert all(len(ln) <= width for ln in text.splitlines() if ln[:1] in "┏┃┡│├└")
    tokens = _tokens(text)
    for res in report:
        for key, _ in COMPACT_KEYS:
            assert fmt(res.metrics.get(key)) in tokens
        for row in res.per_class:
            for key in PER_CLASS_KEYS:
                assert fmt(row.get(key)) in tokens
    # the README's first command, as JSON, against the table
    data = json.loads(report.to_json())
    for snap in data["snapshots"]:
        assert fmt(snap["metrics"]["nc1"]) in tokens


def test_very_narrow_terminal_goes_one_metric_per_line():
    report = analyze_file(SAMPLE, snapshot="epoch_6000")
    text = _render(report, 40)
    assert "…" not in text
    _every_value_whole(text, report)


@pytest.mark.parametrize("width", ["80", "120"])
def test_info_shows_whole_array_paths(width, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", width)
    assert main(["info", SAMPLE]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    tokens = _tokens(out)
    with h5py.File(SAMPLE) as f:
        paths = []
        f.visititems(lambda n, o: paths.append("/" + n) if isinstance(o, h5py.Dataset) else None)
    for p in paths:
        assert p in tokens, p
    assert all(len(ln) <= int(width) for ln in out.splitlines() if ln[:1] in "┏┃┡│├└")


@pytest.mark.parametrize("width", ["80", "120"])
def test_check_and_theory_tables_show_every_value_whole(width, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", width)
    code = main(["check", SAMPLE, "--no-config", "--max", "nc1=1e-9", "--min", "accuracy_ncc=0.5"])
    assert code == 1
    out = capsys.readouterr().out
    assert "…" not in out
    res = analyze_file(SAMPLE, snapshot="epoch_6000")[0]
    assert fmt(res.metrics["nc1"]) in _tokens(out)
    assert main(["theory", SAMPLE, "-s", "epoch_6000"]) == 0
    out = capsys.readouterr().out
    assert "…" not in out
    from ncinspect.theory import theory_file

    report, _ = theory_file(SAMPLE, snapshot="epoch_6000")
    tokens = _tokens(out)
    for line in report[0].theory.lines:
        if line.status == "ok":
            for key in ("predicted", "measured", "rel_error"):
                assert fmt(getattr(line, key)) in tokens, (line.quantity, key)


def test_piped_warnings_are_whole_lines():
    h, y, m = make_data(C=4, d=8, n=20)
    res = analyze(h, y, weights=m)
    long = "a warning that is much longer than eighty columns " * 4
    res.warnings.append(long.strip())
    from ncinspect.results.report import Report

    text = _render(Report("x.h5", [res]), 80)
    assert any(long.strip() in ln for ln in text.splitlines())


# -- names from the file are shown literally ----------------------------------------------------
@pytest.mark.parametrize("name", ["[/red]", "[bold red]boo", "a\\", "[link=x]y[/link]"])
def test_group_names_with_markup_are_shown_literally(tmp_path, capsys, name):
    path = write_flat(tmp_path / "m.h5", group=f"/{name}")
    assert main(["report", path, "--sqi"]) == 0
    out = capsys.readouterr().out
    assert f"/{name}" in out
    assert main(["info", path]) == 0
    assert f"/{name}/features" in capsys.readouterr().out


def test_file_name_with_brackets_is_shown_literally(tmp_path, capsys):
    path = write_flat(tmp_path / "run[best].h5")
    assert main(["report", path]) == 0
    assert "run[best].h5" in capsys.readouterr().out
    assert main(["info", path]) == 0
    assert "run[best].h5" in capsys.readouterr().out


def test_ansi_escapes_in_names_never_reach_the_terminal(tmp_path, capsys):
    evil = "\x1b[2J\x1b[31mred"
    path = write_flat(
        tmp_path / "a.h5", group=f"/g{evil}", class_names=[f"c{evil}", "b\x07", "c\n", "d\u202e"]
    )
    for argv in (
        ["report", path, "--per-class", "--sqi"],
        ["info", path],
        ["check", path, "--no-config", "--max", "nc1=1e-12"],
        ["check", path, "--no-config", "--max", "nc1=1e-12", "--format", "github"],
    ):
        main(argv)
        cap = capsys.readouterr()
        for stream in (cap.out, cap.err):
            assert "\x1b" not in stream and "\x07" not in stream and "\u202e" not in stream
        assert "\\x1b[2J" in cap.out
    assert main(["report", path, "--per-class", "--sqi"]) == 0
    out = capsys.readouterr().out
    assert "c\\x1b[2J\\x1b[31mred" in out and "\\u202e" in out


def test_error_messages_escape_names(tmp_path, capsys):
    path = str(tmp_path / "e.h5")
    with h5py.File(path, "w") as f:
        f["x\x1b[2J/features"] = np.zeros((4, 2))  # no labels anywhere
    assert main(["report", path]) == 3
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\\x1b[2J" in err and len(err.strip().splitlines()) == 1


def test_junit_is_well_formed_with_control_characters_in_names(tmp_path, capsys):
    path = write_flat(tmp_path / "j.h5", group="/g\x01\x1b[0m\x0c<&>\ufffe")
    out = tmp_path / "r.xml"
    code = main(
        ["check", path, "--no-config", "--max", "nc1=1e-12", "--format", "junit", "-o", str(out)]
    )
    assert code == 1
    root = ET.fromstring(out.read_bytes())
    names = [c.get("name") for c in root.iter("testcase")]
    assert names and "\\x01" in names[0] and "<&>" in names[0]
    capsys.readouterr()


def test_markup_escape_round_trips_through_rich():
    from ncinspect.render.safe import markup, plain, xml_text

    console = Console(file=io.StringIO(), width=200, color_system=None)
    for text in ["[/red]", "[bold]x", "a\\", "a\\\\", "a\\[b]", "x\\\\[/red]", "[1] [", "\\"]:
        console.print(f"[bold]{markup(text)}[/bold]|")
    lines = console.file.getvalue().splitlines()
    assert lines == [
        f"{t}|"
        for t in ["[/red]", "[bold]x", "a\\", "a\\\\", "a\\[b]", "x\\\\[/red]", "[1] [", "\\"]
    ]
    assert plain("a\x00b\x9bc\ud800") == "a\\x00b\\x9bc\\ud800"
    assert xml_text("\ufffe") == "\\ufffe"


# -- 8. notebook use ----------------------------------------------------------------------------
def test_reprs_are_short_and_html_is_escaped(tmp_path):
    path = write_flat(tmp_path / "n.h5", group="/<script>x", loss="square", epochs=(0, 5))
    report = analyze_file(path)
    res = report[0]
    line = repr(res)
    assert "\n" not in line and len(line) < 200
    assert res.name in line and f"nc1={fmt(res.metrics['nc1'])}" in line
    assert "\n" not in repr(report) and "2 snapshot(s)" in repr(report)
    html = res._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert fmt(res.metrics["nc1"]) in html and "sqi_eps1" in html
    assert (
        "<script>" not in report._repr_html_()
        and fmt(report[1].metrics["nc1"]) in report._repr_html_()
    )


def test_html_hides_square_loss_section_for_cross_entropy(tmp_path):
    res = analyze_file(write_flat(tmp_path / "ce.h5", loss="cross_entropy"))[0]
    html = res._repr_html_()
    assert "sqi_eps1" not in html and "not a square loss" in html


def test_snapshot_to_json_is_the_report_entry(tmp_path):
    report = analyze_file(write_flat(tmp_path / "j.h5", epochs=(0, 5)))
    assert json.loads(report[1].to_json()) == json.loads(report.to_json())["snapshots"][1]
    assert report[1].to_json().endswith("\n")


def test_lookup_by_snapshot_path_and_by_index(tmp_path):
    report = analyze_file(write_flat(tmp_path / "l.h5", epochs=(0, 5, 10)))
    assert report["/epoch_0005"] is report[1]
    assert report["epoch_0010"] is report[-1] is report[2]
    assert "/epoch_0000" in report and "/nope" not in report
    assert [r.name for r in report[0:2]] == ["/epoch_0000", "/epoch_0005"]
    with pytest.raises(KeyError, match="/epoch_0000"):
        report["/nope"]


def test_to_pandas_has_metrics_metadata_and_per_class_rows(tmp_path):
    path = write_flat(tmp_path / "p.h5", loss="cross_entropy", epochs=(0, 5))
    report = analyze_file(path, per_class=True)
    df = report.to_pandas()
    assert len(df) == 2 and list(df["snapshot"]) == ["/epoch_0000", "/epoch_0005"]
    assert set(METRIC_KEYS) <= set(df.columns)
    assert df.loc[1, "nc1"] == report[1].metrics["nc1"]
    assert list(df["loss"]) == ["cross_entropy"] * 2 and list(df["meta.epoch"]) == [0, 5]
    pc = report.to_pandas(per_class=True)
    assert len(pc) == 2 * 4 and set(PER_CLASS_KEYS) <= set(pc.columns)
    first = pc[pc["snapshot"] == "/epoch_0005"].iloc[0]
    assert (
        first["var"] == report[1].per_class[0]["var"]
        and first["class"] == report[1].per_class[0]["class"]
    )
    with pytest.raises(ValueError, match="per_class=True"):
        analyze_file(path).to_pandas(per_class=True)


def test_to_pandas_without_pandas_says_so(tmp_path, monkeypatch):
    report = analyze_file(write_flat(tmp_path / "p.h5"))
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        report.to_pandas()


def test_trainer_records_a_square_loss_and_in_memory_analysis_takes_one(tmp_path):
    from ncinspect.train import TrainConfig, fit, gaussian

    rng = np.random.default_rng(0)
    data = gaussian(rng, n_classes=3, n_per_class=8, n_test_per_class=2, input_dim=6, noise=0.2)
    cfg = TrainConfig(depth=3, width=16, epochs=2, batch_size=5, save_every=2, lr=0.05)
    path = str(tmp_path / "t.h5")
    fit(cfg, data, dump=path)
    with h5py.File(path) as f:
        assert f["epoch_0002"].attrs["loss_type"] == "square"
    res = analyze_file(path, snapshot="epoch_0002")[0]
    assert res.square_loss is True and "sqi_eps1" in _table(
        _render(analyze_file(path), 200, compact=False)
    )
    h, y, m = make_data(C=4, d=8, n=20)
    assert analyze(h, y, weights=m).square_loss is None
    ce = analyze(h, y, weights=m, loss="cross_entropy")
    assert ce.loss == "cross_entropy" and ce.square_loss is False
    assert json.loads(ce.to_json())["loss"] == "cross_entropy"


def test_names_with_dollar_signs_do_not_break_figures(tmp_path, capsys):
    path = write_flat(
        tmp_path / "f$x$.h5",
        group="/a$\\frac$b",
        class_names=["$\\frac{$", "b", "c", "d"],
        loss="square",
    )
    out = tmp_path / "figs"
    assert main(["plot", path, "-o", str(out), "-f", "png", "--dpi", "30", "-q"]) == 0
    assert {p.stem for p in out.iterdir()} >= {"gram", "sqi", "projection"}


def test_names_inside_metric_keys_are_escaped(tmp_path, capsys):
    # an OOD set's name becomes part of a metric key (and a column header)
    h, y, m = make_data(C=4, d=8, n=20)
    path = str(tmp_path / "ood.h5")
    with h5py.File(path, "w") as f:
        g = f.create_group("train")
        g["features"], g["labels"], g["weights"] = h, y, m
        g.attrs["split"] = "train"
        o = f.create_group("x")
        o["features"] = h[:10] + 5.0
        o.attrs["split"] = "ood_[/red]\x1b[2J"
    for argv in (["report", path], ["report", path, "-s", "/train"], ["info", path]):
        assert main(argv) == 0, argv
        out = capsys.readouterr().out
        assert "\x1b" not in out and "[/red]\\x1b[2J" in out
