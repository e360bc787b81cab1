"""Hostile round six: what the terminal, the CI log and the echoed lines show of hostile names.

- **Legacy workflow commands.** A GitHub Actions runner reads ``##[name]data`` as a workflow
  command *anywhere* in a line of a job's log (actions/runner ``ActionCommand.TryParse``
  finds the prefix with ``IndexOf``; only the ``::name::`` form must start the line), and
  ``add-mask``, ``stop-commands``, ``error``... are registered names (case-insensitive).
  Round five guarded line starts only: a snapshot, split, layer or class name
  ``##[stop-commands]x`` reached every table, note, annotation, JUnit and JSON line and
  switched the runner's command processing off for the rest of the step (the gate's own
  annotations then never show). Now every shown name has its ``[`` written ``\\x5b``, JSON
  writes it ``\\u005b`` (the same string once parsed) and a CSV on stdout likewise.
- **Emoji codes.** rich replaces ``:thumbs_up:`` in markup by an emoji: a class named
  ``:red_circle:`` showed as a red circle, the same as one named with the emoji itself.
- **Echoed lines outside the error handler.** ``theory``'s notes and tolerance failures,
  ``plot``'s notes and its listing of the files written, ``sweep``'s summary printed paths
  and names with ``click.echo`` (no cap: a 50,000-character line; control characters raw
  on a terminal), and ``train`` printed its ``-o`` path as rich markup (``-o '[/red]x.h5'``
  exited 4 after the whole run).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import unicodedata
from pathlib import Path

import h5py
import numpy as np
import pytest

from ncinspect.cli import main

from ..helpers import SMALL_TRAIN, make_data

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "synthetic.h5"

# the runner's registered command names (ActionCommandManager plus stop-commands)
_COMMANDS = (
    "set-env set-output save-state add-mask add-path add-matcher remove-matcher debug "
    "warning error notice group endgroup echo stop-commands"
).split()


def _runs_a_command(line: str) -> str | None:
    """The legacy command a runner would run from ``line`` (its prefix found after the
    characters a culture-sensitive search ignores), else None."""
    seen = "".join(c for c in line if not _ignorable(c))
    for m in re.finditer(r"##\[([^\]]*)\]", seen):
        name = m.group(1).split(" ")[0].lower()
        if name in _COMMANDS:
            return m.group()
    return None


def _ignorable(c: str) -> bool:
    return (
        unicodedata.category(c) == "Cf"
        or c in "\u034f\u115f\u1160\u3164\uffa0"
        or "\ufe00" <= c <= "\ufe0f"
    )


def _no_command_in(text: str) -> None:
    for line in text.splitlines():
        assert _runs_a_command(line) is None, line[:200]
        seen = "".join(c for c in line if not _ignorable(c)).lstrip()
        assert not seen.startswith("::") or line.startswith("::error title=ncinspect"), line


_NAMES = [
    "ep ##[add-mask]secret",
    "ep ##[STOP-COMMANDS]tok",
    "ep #\u200b#[error]zw",
    "ep #\ufeff#\u2060[warning]bom",
]


def _hostile_dump(path, *, layer=None) -> Path:
    h, y, m = make_data(C=3, d=5, n=10)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        names = ["##[error]cls", "b ##[group]g", "c"]
        f["class_names"] = np.array([n.encode() for n in names])
        for i, name in enumerate(_NAMES):
            g = f.create_group(name)
            g.attrs["epoch"] = i
            g.attrs["split"] = "train ##[notice]split" if layer is None else "train"
            if layer is not None:
                g.attrs["layer"] = layer
            g.attrs["note"] = "##[endgroup]meta"
            g["features"] = h * (1 + i)
            g["weights"] = m
    return Path(path)


_CHECK = ["--no-config", "--max", "nc1=1e-9", "--min", "per_class.ncc_agreement=2"]


@pytest.mark.parametrize(
    "args",
    [
        ["report", "{f}"],
        ["report", "{f}", "--full", "--per-class", "--verbose"],
        ["report", "{f}", "--json", "-"],
        ["report", "{f}", "--csv", "-"],
        ["report", "{f}", "{g}", "--aggregate", "--csv", "-"],
        ["report", "{f}", "{g}", "--aggregate", "--json", "-"],
        ["info", "{f}"],
        ["theory", "{f}"],
        ["check", "{f}", *_CHECK, "--snapshot", "all"],
        ["check", "{f}", *_CHECK, "--snapshot", "all", "--format", "github"],
        ["check", "{f}", *_CHECK, "--snapshot", "all", "--format", "junit"],
        ["check", "{f}", *_CHECK, "--snapshot", "all", "--format", "json"],
        ["check", "{l}", *_CHECK, "--layer", "all"],
        ["report", "{l}", "--per-class"],
    ],
    ids=lambda a: "-".join(x for x in a if not x.startswith("{"))[:60],
)
def test_no_line_runs_a_legacy_workflow_command(tmp_path, monkeypatch, capsys, args):
    f = _hostile_dump(tmp_path / "r ##[add-mask]file.h5")
    shutil.copy(f, tmp_path / "s ##[error]seed.h5")
    _hostile_dump(tmp_path / "l.h5", layer="blk ##[stop-commands]layer")
    monkeypatch.chdir(tmp_path)
    files = {"{f}": f.name, "{g}": "s ##[error]seed.h5", "{l}": "l.h5"}
    code = main([files.get(a, a) for a in args])
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    _no_command_in(out.out + out.err)
    if "--json" in args:  # the data is the same once parsed: names whole
        text = json.dumps(json.loads(out.out), ensure_ascii=False)
        assert "ep ##[add-mask]secret" in text and "train ##[notice]split" in text


def test_github_annotations_of_a_failing_gate_run_no_command(tmp_path, monkeypatch, capsys):
    """The default output on GitHub (GITHUB_ACTIONS=true) and ``-o`` files of every format:
    the gate's annotations are the only commands, the JUnit file stays well-formed."""
    import xml.etree.ElementTree as ET

    f = _hostile_dump(tmp_path / "run.h5")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code = main(["check", str(f), *_CHECK, "--snapshot", "all"])
    out = capsys.readouterr().out
    assert code == 1 and out.count("::error title=") == 2 * len(_NAMES) + 1
    _no_command_in(out)
    for fmt in ("junit", "github", "json", "table"):
        target = tmp_path / f"out.{fmt}"
        assert main(["check", str(f), *_CHECK, "--format", fmt, "-o", str(target)]) == 1
        capsys.readouterr()
        _no_command_in(target.read_text(encoding="utf-8"))
    ET.parse(tmp_path / "out.junit")


def test_csv_and_json_files_keep_the_names(tmp_path, capsys):
    """Files are data: the JSON holds each name exactly once parsed, the CSV file its cells
    as they were (only a CSV on stdout shows ``\\x5b``)."""
    import csv

    f = _hostile_dump(tmp_path / "run.h5")
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    assert main(["report", str(f), "--json", str(js), "--csv", str(cs), "-q"]) == 0
    capsys.readouterr()
    assert "##[" not in js.read_text()
    names = [s["name"] for s in json.loads(js.read_text())["snapshots"]]
    assert sorted(names) == sorted("/" + n for n in _NAMES)
    with open(cs, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["snapshot"] for r in rows) == sorted("/" + n for n in _NAMES)


_EMOJI = [":thumbs_up:", ":red_circle: x", "a:fire:", ":warning-emoji:"]


def test_emoji_codes_in_names_are_shown_as_written(tmp_path, capsys):
    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["class_names"] = np.array([n.encode() for n in _EMOJI[:3]])
        for i, name in enumerate(_EMOJI):
            g = f.create_group(name)
            g.attrs["epoch"] = i
            g.attrs["split"] = "train"
            g.attrs["layer"] = ":smile:"
            g["features"] = h * (1 + i)
            g["weights"] = m
    for args in (
        ["report", str(path), "--per-class"],
        ["report", str(path), "--full"],
        ["info", str(path)],
        ["check", str(path), *_CHECK, "--snapshot", "all", "--format", "table"],
    ):
        code = main(args)
        out = capsys.readouterr().out
        assert code in (0, 1)
        assert not re.search("[\U0001f300-\U0001faff\u2600-\u27bf]", out), (args, out[:400])
        assert ":thumbs_up:" in out and ":smile:" in out or args[0] == "check"
        if args[0] != "info":
            assert ":red_circle:" in out or args[0] == "check" and ":thumbs_up:" in out


def test_theory_lines_are_bounded_and_escaped(tmp_path, monkeypatch, capsys):
    """``theory``'s "no train-split snapshot" note names the path; its tolerance failures
    name the snapshot: each one line within the cap, control characters escaped."""
    monkeypatch.chdir(tmp_path)
    deep = os.path.join(*(["d\x07" + "x" * 150] * 12))
    os.makedirs(deep)
    h, y, m = make_data(C=3, d=5, n=10)
    path = os.path.join(deep, "t\rz.h5")
    with h5py.File(path, "w") as f:
        f["labels"] = y
        g = f.create_group("ep")
        g.attrs["split"] = "test"
        g["features"], g["weights"] = h, m
    assert main(["theory", path]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "no train-split" in ln]
    assert len(lines) == 1 and len(lines[0]) <= 4000
    assert "\x07" not in err and "\r" not in err

    long = tmp_path / "long.h5"
    with h5py.File(long, "w") as f:
        f["labels"] = y
        g = f.create_group("s" * 50_000 + "\x07")
        g.attrs["split"] = "train"
        g["features"], g["weights"] = h, m
    assert main(["theory", str(long), "--tolerance", "1e-300"]) == 1
    err = capsys.readouterr().err
    failures = [ln for ln in err.splitlines() if "relative error" in ln]
    assert failures and all(len(ln) <= 4000 for ln in failures), max(map(len, failures))
    assert "\x07" not in err


def test_plot_listing_and_notes_escape_what_they_echo(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    shutil.copy(SAMPLE, tmp_path / "run.h5")
    out_dir = "fig\x07\r::error::x"
    code = main(["plot", "run.h5", "-o", out_dir, "-k", "trajectory", "-f", "png", "--dpi", "20"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert os.path.isdir(out_dir)  # the folder asked for
    assert "\x07" not in out.out + out.err and "\r" not in out.out + out.err
    listed = [ln for ln in out.out.splitlines() if ln.strip()]
    assert listed and all(ln.startswith("fig\\x07\\x0d::error::x/") for ln in listed)


def test_train_summary_shows_a_markup_path_literally(tmp_path, monkeypatch, capsys):
    """``train -o '[/red]x.h5'``: the run finishes (0.2-0.5: exit 4 from rich's markup
    parser after the whole run) and the summary names the file as given."""
    monkeypatch.chdir(tmp_path)
    name = "[/red][bold]:fire:x.h5"
    code = main(["train", "-o", name, *SMALL_TRAIN])
    err = capsys.readouterr().err
    assert code == 0, err[-500:]
    assert os.path.exists(name)
    assert f"{name}: snapshots at epochs" in err


_LONG = "\x1b[31m##[error]x\nline2 " + "v" * 5000 + " w" * 3000


@pytest.mark.parametrize(
    "args",
    [
        [_LONG],  # click: No such command '...' (the value as repr writes it)
        ["report", "--" + _LONG],
        ["report", "s.h5", "--ncc-centres", _LONG],  # '...' is not one of ...
        ["report", "s.h5", "--precision", _LONG],
        ["plot", "s.h5", "-o", "o", "--kind", _LONG],
        ["plot", "s.h5", "-o", "o", "--format", _LONG],
        ["report", "s.h5", "--snapshot", _LONG],
        ["info", _LONG],
    ],
    ids=["command", "option", "ncc-centres", "precision", "kind", "format", "snapshot", "info"],
)
def test_usage_lines_clip_a_value_click_quotes_with_repr(tmp_path, monkeypatch, capsys, args):
    """click quotes a bad value as Python's repr does (``\\n`` where the value has a line
    feed), which the echoed-value rule missed: the value was cut only by the 4,000-character
    line cap, and click's "Error: Invalid value for '--x': " went past it."""
    shutil.copy(SAMPLE, tmp_path / "s.h5")
    monkeypatch.chdir(tmp_path)
    assert main(args) in (2, 3)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines and all(len(ln) < 1000 for ln in lines), max(map(len, lines))
    assert not any("\x1b" in ln or "##[" in ln for ln in lines)


def test_check_notes_cut_a_huge_snapshot_name(tmp_path, capsys):
    """``check``'s notes (a snapshot being written, skipped) named the snapshot whole in the
    table and in GitHub annotations: a 500,000-character name gave a 500 kB line. They are
    cut as the report's notes are; JSON and JUnit keep the name."""
    path = _hostile_dump(tmp_path / "run.h5")
    big = "Q" * 500_000
    with h5py.File(path, "a") as f:
        g = f.create_group(big)
        g.attrs.update(epoch=9, ncinspect_in_progress=1)
        g["features"] = np.zeros((30, 5))
    for fmt in ("table", "github"):
        code = main(["check", str(path), *_CHECK, "--format", fmt, "--layer", "all"])
        out = capsys.readouterr().out
        assert code == 1 and "QQQQ" in out  # the note is there
        assert max(map(len, out.splitlines())) < 5000, fmt
    assert main(["check", str(path), *_CHECK, "--format", "json"]) == 1
    assert big in capsys.readouterr().out


@pytest.mark.parametrize("name", ["\u200b::error::x.h5", ":\ufeff:add-mask::y.h5", " \u2060::w.h5"])
@pytest.mark.parametrize(
    "args",
    [["report"], ["report", "--full"], ["info"], ["theory"], ["report", "--csv", "-"]]
    + [["check", "--no-config", "--max", "nc1=1e-9"]],
    ids=["report", "full", "info", "theory", "csv", "check"],
)
def test_a_file_name_with_invisible_characters_never_starts_a_command(
    tmp_path, monkeypatch, capsys, name, args
):
    """Round four showed a file name that starts with ``::`` as ``./::``, but looked past
    blanks only: a runner whose StartsWith is culture-sensitive also skips a zero-width space,
    a BOM or a word joiner before or between the colons."""
    shutil.copy(SAMPLE, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    code = main([args[0], name, *args[1:]])
    out = capsys.readouterr()
    assert code in (0, 1), out.err
    _no_command_in(out.out + out.err)


def test_names_without_glyphs_print_no_warning_lines(tmp_path, monkeypatch, capsys):
    """Class names in characters the figure font lacks (CJK, emoji) made matplotlib print
    two stderr lines per character and draw ("Glyph 128293 (\\N{FIRE}) missing from
    font(s)"), outside the command's one-line messages; the figures show boxes quietly."""
    import warnings

    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["class_names"] = np.array([n.encode() for n in ("\U0001f525a", "\u65e5\u672c", "c")])
        for e in range(3):
            g = f.create_group(f"ep{e}")
            g.attrs.update(epoch=e, split="train")
            g["features"], g["weights"] = h * (1 + e), m
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main(["plot", "g.h5", "-o", "figs", "-f", "png", "--dpi", "20", "-q"]) == 0
        assert main(["report", "g.h5", "--html", "g.html", "-q"]) == 0
    capsys.readouterr()
    assert not [w for w in seen if "missing from" in str(w.message)]
