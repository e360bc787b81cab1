"""Round eight: the output paths, options and configuration of the command line.

The promise: a bad input or option is one clear line (exit 3 for bad input, 2 for a usage
error) and no file changes except the outputs asked for; an output is written whole or not
at all, and a command that fails writes none of its outputs. Every file here lives under
``tmp_path``.
"""

from __future__ import annotations

import os

import pytest

from ncinspect.cli import main

from ..helpers import SMALL_TRAIN, file_digest, two_epoch_run


@pytest.fixture
def run_file(tmp_path):
    return str(two_epoch_run(tmp_path / "run.h5"))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _files(folder) -> dict[str, str]:
    """Every file under ``folder`` with its digest (what a run may not change)."""
    out = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            out[os.path.relpath(path, folder)] = file_digest(path)
    return out


# -- the --class-names file is an input --------------------------------------------------

CLASS_NAMES_OUTPUTS = [
    ("report", ["-q", "--json"]),
    ("report", ["-q", "--csv"]),
    ("report", ["-q", "--html"]),
    ("check", ["--no-config", "--max", "nc1=100", "-o"]),
    ("check", ["--no-config", "--max", "nc1=100", "--format", "junit", "-o"]),
    ("theory", ["--json"]),
]


@pytest.mark.parametrize(("cmd", "opts"), CLASS_NAMES_OUTPUTS)
def test_an_output_that_is_the_class_names_file_is_refused(
    run_file, tmp_path, monkeypatch, capsys, cmd, opts
):
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\n")
    link = tmp_path / "link.txt"
    link.symlink_to(names.name)
    monkeypatch.chdir(tmp_path)
    for spelling in ("names.txt", "./names.txt", str(names), "link.txt"):
        before = _files(tmp_path)
        args = [cmd, run_file, "--class-names", "names.txt", *opts, spelling]
        assert main(args) == 3, spelling
        line = _one_error_line(capsys)
        assert "input" in line and "names.txt" in line
        assert _files(tmp_path) == before  # nothing written, the names untouched


def test_a_plot_figure_that_is_the_class_names_file_is_refused(run_file, tmp_path, capsys):
    out = tmp_path / "figs"
    out.mkdir()
    names = out / "trajectory.png"
    names.write_text("a\nb\nc\n")
    before = _files(tmp_path)
    args = ["plot", run_file, "-o", str(out), "-k", "trajectory", "-f", "png", "--dpi", "10"]
    assert main([*args, "--class-names", str(names), "-q"]) == 3
    assert "input" in _one_error_line(capsys)
    assert _files(tmp_path) == before


# -- every output path is checked before any work, and written all or none -----------------


def _bad_paths(tmp_path) -> dict[str, str]:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    (tmp_path / "a-file").write_text("x")
    return {
        "a folder": str(folder),
        "a trailing slash": str(tmp_path / "new.json") + "/",
        "a path through a file": str(tmp_path / "a-file" / "x.json"),
        "empty": "",
    }


@pytest.mark.parametrize("bad", ["a folder", "a trailing slash", "a path through a file", "empty"])
@pytest.mark.parametrize("option", ["--json", "--csv"])
def test_a_bad_second_output_leaves_the_first_unwritten(run_file, tmp_path, capsys, bad, option):
    path = _bad_paths(tmp_path)[bad]
    old = tmp_path / "page.html"
    old.write_text("the old page")
    before = _files(tmp_path)
    assert main(["report", run_file, "-q", "--html", str(old), option, path]) == 2
    line = _one_error_line(capsys)
    assert option in line or "folder" in line or "directory" in line or "file" in line
    assert _files(tmp_path) == before  # the page is not replaced, no new.json made
    assert not os.path.exists(str(tmp_path / "new.json"))


@pytest.mark.parametrize(
    ("cmd", "opts"),
    [
        ("report", ["-q", "--json"]),
        ("report", ["-q", "--csv"]),
        ("report", ["-q", "--html"]),
        ("check", ["--no-config", "--max", "nc1=100", "-o"]),
        ("theory", ["--json"]),
        ("plot", ["-k", "trajectory", "-f", "png", "-q", "-o"]),
    ],
)
@pytest.mark.parametrize("bad", ["a trailing slash", "a path through a file", "empty"])
def test_an_unusable_output_path_is_one_usage_line_before_any_work(
    run_file, tmp_path, monkeypatch, capsys, cmd, opts, bad
):
    path = _bad_paths(tmp_path)[bad]
    if cmd == "plot" and bad == "a trailing slash":
        path = str(tmp_path / "a-file") + "/"  # a folder name that is a file
    import ncinspect.analysis.api as api

    def no_work(*args, **kwargs):
        raise AssertionError("the output path must be refused before any analysis")

    monkeypatch.setattr(api, "analyze_file", no_work)
    monkeypatch.setattr("ncinspect.theory.theory_file", no_work)
    monkeypatch.setattr("ncinspect.check.run_check", no_work)
    before = _files(tmp_path)
    assert main([cmd, run_file, *opts, path]) == 2
    _one_error_line(capsys)
    assert _files(tmp_path) == before


def test_a_failed_write_of_a_later_output_keeps_every_earlier_one(
    run_file, tmp_path, monkeypatch, capsys
):
    import errno
    import tempfile

    from ncinspect.io import atomic

    page, data, table = (tmp_path / n for n in ("page.html", "data.json", "table.csv"))
    for path in (page, data, table):
        path.write_text(f"old {path.name}")
    before = _files(tmp_path)
    real = tempfile.mkstemp
    calls = []

    def full_on_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", full_on_the_third)
    args = ["report", run_file, "-q", "--html", str(page), "--json", str(data), "--csv", str(table)]
    assert main(args) == 3
    assert "No space left" in _one_error_line(capsys)
    assert _files(tmp_path) == before  # all three kept as they were, no temporary file left


def test_report_writes_all_its_outputs(run_file, tmp_path, capsys):
    outs = [tmp_path / n for n in ("p.html", "d.json", "t.csv")]
    args = ["report", run_file, "-q", "--html", str(outs[0]), "--json", str(outs[1])]
    assert main([*args, "--csv", str(outs[2])]) == 0
    assert all(p.stat().st_size > 0 for p in outs)
    assert sorted(os.listdir(tmp_path)) == sorted(["run.h5", *(p.name for p in outs)])


def test_plot_repeated_formats_and_kinds_write_each_file_once(run_file, tmp_path, capsys):
    out = tmp_path / "figs"
    args = ["plot", run_file, "-o", str(out), "-k", "trajectory", "-k", "trajectory"]
    assert main([*args, "-f", "png", "-f", "png", "--dpi", "10"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed == [str(out / "trajectory.png")]


# -- float options of train and sweep ------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--schedule", "step", "--gamma", "-1"], "gamma"),
        (["--schedule", "step", "--gamma", "0"], "gamma"),
        (["--schedule", "step", "--gamma", "-0"], "gamma"),
        (["--schedule", "step", "--gamma", "10"], "gamma"),
        (["--lr-min", "-1"], "lr_min"),
        (["--lr-min", "0.5", "--lr", "0.01"], "lr_min"),
    ],
)
def test_train_schedules_that_make_the_learning_rate_negative_or_grow_are_refused(
    tmp_path, capsys, args, words
):
    out = tmp_path / "dump.h5"
    assert main(["train", "-o", str(out), *SMALL_TRAIN, *args]) == 2
    assert words in _one_error_line(capsys)
    assert not out.exists()


def test_train_that_diverges_at_its_last_epoch_writes_no_non_finite_snapshot(tmp_path, capsys):
    from ncinspect.dump import open_dump

    out = tmp_path / "dump.h5"
    args = ["train", "-o", str(out), "--n-classes", "3", "--n-per-class", "5", "--lr", "1e300"]
    code = main([*args, "--n-test-per-class", "2", "--input-dim", "4", *SMALL_TRAIN])
    assert code == 2
    assert "diverged" in _one_error_line(capsys)
    with open_dump(str(out)) as dump:  # what is left is finite (epoch 0), or marked unfinished
        epochs = sorted(s.epoch for s in dump.snapshots if s.split in (None, "train"))
    assert epochs == [0]


def test_sweep_zero_and_minus_zero_are_one_weight_decay(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "-o", str(out), "--weight-decays", "0,-0", "--epochs", "1", "--depth", "2"]
    assert main([*args, "--width", "4", "--no-figure"]) == 2
    assert "-0" in _one_error_line(capsys)
    assert not out.exists() or not os.listdir(out)


@pytest.mark.parametrize("values", ["0,", ",1e-3", "0,,1e-3", " , "])
def test_sweep_an_empty_weight_decay_in_the_list_is_a_usage_error(tmp_path, capsys, values):
    """'0,' (or '$A,$B' with B unset) ran one lambda less without a word."""
    out = tmp_path / "sweep"
    args = ["sweep", "-o", str(out), "--weight-decays", values, "--epochs", "1", "--depth", "2"]
    assert main([*args, "--width", "4", "--no-figure"]) == 2
    assert "empty value" in _one_error_line(capsys)
    assert not out.exists() or not os.listdir(out)


def test_sweep_minus_zero_alone_is_lambda_zero(tmp_path, capsys):
    import json
    import math

    out = tmp_path / "sweep"
    args = ["sweep", "-o", str(out), "--weight-decays", "-0", "--epochs", "1", "--depth", "2"]
    assert main([*args, "--width", "4", "--no-figure"]) == 0
    (row,) = json.loads((out / "sweep.json").read_text())
    assert row["weight_decay"] == 0 and math.copysign(1, row["weight_decay"]) == 1
    assert sorted(p.name for p in out.glob("*.h5")) == ["wd_0.h5"]


# -- check configuration files -------------------------------------------------------------


def test_a_config_with_a_byte_order_mark_is_named_so(run_file, tmp_path, capsys):
    config = tmp_path / "rules.toml"
    config.write_bytes(b"\xef\xbb\xbf[check]\nmax = {nc1 = 100}\n")
    out = tmp_path / "out.xml"
    assert main(["check", run_file, "--config", str(config), "-o", str(out)]) == 3
    line = _one_error_line(capsys)
    assert "byte order mark" in line and "rules.toml" in line
    assert not out.exists()


# -- an empty option value is not the option left out -------------------------------------

EMPTY_VALUES = [
    ("report", ["-q", "--snapshot"]),
    ("report", ["-q", "--features-key"]),
    ("report", ["-q", "--labels-key"]),
    ("report", ["-q", "--class-names"]),
    ("theory", ["--class-names"]),
    ("theory", ["--snapshot"]),
    ("check", ["--no-config", "--max", "nc1=100", "--snapshot"]),
    ("check", ["--no-config", "--max", "nc1=100", "--layer"]),
    ("check", ["--max", "nc1=100", "--config"]),
    ("plot", ["-o", "figs", "-k", "trajectory", "-f", "png", "--snapshot"]),
]


@pytest.mark.parametrize(("cmd", "opts"), EMPTY_VALUES)
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_option_value_is_a_usage_error(
    run_file, tmp_path, monkeypatch, capsys, cmd, opts, value
):
    """``--class-names "$NAMES"`` with NAMES unset ran without the names, ``--config ''``
    read the discovered config instead, ``-s ''`` took every snapshot: each silently."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ncinspect.toml").write_text("[check]\nmax = {nc1 = 100}\n")
    before = _files(tmp_path)
    assert main([cmd, run_file, *opts, value]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and opts[-1] in err
    assert _files(tmp_path) == before


@pytest.mark.parametrize(
    "address", ["", "foo", "tcp://", "inproc://x", "http://127.0.0.1:8786", "tcp://h:0", "h:99999"]
)
def test_a_malformed_scheduler_address_is_one_usage_line(run_file, capsys, address):
    pytest.importorskip("distributed")
    assert main(["report", run_file, "-q", "--engine", "dask", "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert "--scheduler" in err and "internal error" not in err and "Traceback" not in err


# -- /dev/fd/N of a regular file: the shell's redirection is honoured ----------------------


def test_an_output_to_dev_fd_of_a_file_opened_for_appending_appends(run_file, tmp_path, capsys):
    """``--json /dev/fd/3 3>>log.json``: the JSON was written over the start of the file,
    leaving the old bytes after it (neither appended nor whole)."""
    import json

    log = tmp_path / "log.json"
    log.write_text("x" * 50_000 + "\n")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        assert main(["report", run_file, "-q", "--json", f"/dev/fd/{fd}"]) == 0
    finally:
        os.close(fd)
    text = log.read_text()
    assert text.startswith("x" * 50_000 + "\n")
    assert "conventions" in json.loads(text[50_001:])


def test_an_output_to_dev_fd_of_a_truncated_file_is_the_json_alone(run_file, tmp_path, capsys):
    import json

    out = tmp_path / "out.json"
    out.write_text("y" * 50_000)
    fd = os.open(out, os.O_WRONLY | os.O_TRUNC)
    try:
        assert main(["report", run_file, "-q", "--json", f"/proc/self/fd/{fd}"]) == 0
    finally:
        os.close(fd)
    assert "conventions" in json.loads(out.read_text())


# -- snapshot globs: bounded, so matching cannot hang ---------------------------------------


@pytest.mark.parametrize(
    "glob", ["[" * 20_000, "?*" * 5_000, ",".join(["e*"] * 5_000)], ids=["sets", "stars", "many"]
)
@pytest.mark.parametrize("where", ["report", "check-config"])
def test_a_huge_snapshot_glob_is_refused_not_matched(run_file, tmp_path, capsys, glob, where):
    """fnmatch translates a glob in time quadratic in its '[' (20,000: ~15 s; the 128 kB an
    argument may hold: ~12 min; a 10 MB glob in a TOML config: hours)."""
    if where == "report":
        args = ["report", run_file, "-q", "-s", glob]
    else:
        config = tmp_path / "rules.toml"
        config.write_text(f'[check]\nsnapshot = "{glob}"\nmax = {{nc1 = 100}}\n')
        args = ["check", run_file, "--config", str(config)]
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert "glob" in line and "at most" in line and len(line) < 1000


def test_many_literal_snapshot_names_are_still_looked_up(run_file, capsys):
    names = ",".join(f"/epoch_{i:04d}" for i in range(20_000))
    assert main(["report", run_file, "-q", "--json", "-", "-s", names]) == 0


def test_a_long_snapshot_name_is_looked_up_in_linear_memory(run_file):
    """A 2 MB name without wildcards (a TOML config holds up to 16 MiB) took ~140 bytes a
    character to classify (the literal-name regex's repeated group): 1.4 GB for 10 MB."""
    import tracemalloc

    from ncinspect.dump import open_dump
    from ncinspect.errors import UsageError

    name = "/" + "e" * 2_000_000
    with open_dump(run_file) as dump:
        tracemalloc.start()
        try:
            with pytest.raises(UsageError, match="no snapshot matches"):
                dump.select(name)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 40 * 2**20


@pytest.mark.parametrize("kind", ["decreasing", "max"])
def test_a_check_table_of_too_many_entries_is_refused(run_file, tmp_path, capsys, kind):
    """2.5 million copies of one trend rule (15 MB) took 21 s and 1.1 GB."""
    if kind == "decreasing":
        body = "decreasing = [" + ",".join(['"nc1"'] * 20_000) + "]"
    else:  # distinct keys: per-set OOD names are open-ended
        body = "[check.max]\n" + "\n".join(f"ood_auroc_nci_set{i} = 1" for i in range(20_000))
    config = tmp_path / "rules.toml"
    config.write_text(f"[check]\n{body}\n")
    assert main(["check", run_file, "--config", str(config)]) == 2
    assert "at most" in _one_error_line(capsys)


# -- train -o over a dump another process holds open ---------------------------------------


def test_train_over_a_dump_another_process_reads_never_empties_it(run_file, tmp_path, capsys):
    """HDF5's mode "w" truncated the file before it met the reader's lock: `train` failed
    (exit 3) and the dump it was to replace was left empty (0 bytes)."""
    import subprocess
    import sys

    held = tmp_path / "held.h5"
    held.write_bytes(open(run_file, "rb").read())
    reader = (
        "import sys, h5py\n"
        "f = h5py.File(sys.argv[1], 'r')\n"
        "print('open', flush=True)\n"
        "sys.stdin.readline()\n"
        "print(sorted(f), flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", reader, str(held)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "open"
        assert main(["train", "-o", str(held), *SMALL_TRAIN]) == 0
        out, _ = child.communicate("go\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "epoch_0001" in out  # the reader kept reading the old dump
    from ncinspect.dump import open_dump

    with open_dump(str(held)) as dump:  # the new dump is whole
        assert sorted({s.epoch for s in dump.snapshots}) == [0, 1]
    assert sorted(os.listdir(tmp_path)) == ["held.h5", "run.h5"]  # no temporary file left
