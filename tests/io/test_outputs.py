"""Output paths: an input is never replaced, devices and FIFOs are written into, symlinks kept.

Every test writes only under ``tmp_path``. Device nodes are never opened for writing here:
the character-device rule is tested on the ``os.stat`` result of ``/dev/null`` (read-only)
applied to a regular file of ``tmp_path``.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import threading

import numpy as np
import pytest

from ncinspect.cli import main

from ..helpers import SMALL_TRAIN, file_digest, two_epoch_run


@pytest.fixture
def run_file(tmp_path):
    return two_epoch_run(tmp_path / "run.h5")


def _spellings(path, tmp_path, monkeypatch):
    """The same file under several names: ./NAME, ../dir/NAME, absolute, a/../NAME,
    a symlink and a hard link."""
    monkeypatch.chdir(path.parent)
    (path.parent / "sub").mkdir(exist_ok=True)
    link = path.parent / f"link-{path.name}"
    link.symlink_to(path.name)
    hard = path.parent / f"hard-{path.name}"
    os.link(path, hard)
    return [
        path.name,
        f"./{path.name}",
        f"../{path.parent.name}/{path.name}",
        str(path),
        f"sub/../{path.name}",
        link.name,
        hard.name,
    ]


OUTPUT_OPTIONS = [
    ("report", ["--json"]),
    ("report", ["--csv"]),
    ("theory", ["--json"]),
    ("check", ["--max", "nc1=100", "--output"]),
    ("check", ["--max", "nc1=100", "--format", "junit", "--output"]),
    ("check", ["--max", "nc1=100", "--format", "github", "-o"]),
]


@pytest.mark.parametrize(("cmd", "opts"), OUTPUT_OPTIONS)
def test_an_output_that_is_the_input_is_refused(run_file, tmp_path, monkeypatch, capsys, cmd, opts):
    before = file_digest(run_file)
    for spelling in _spellings(run_file, tmp_path, monkeypatch):
        assert main([cmd, "run.h5", *opts, spelling]) == 3, spelling
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "internal error" not in err, err
        assert spelling in err and "run.h5" in err and "input" in err
        assert file_digest(run_file) == before
    assert os.path.islink("link-run.h5") and os.stat("hard-run.h5").st_nlink == 2
    assert sorted(os.listdir(".")) == ["hard-run.h5", "link-run.h5", "run.h5", "sub"]


def test_check_output_that_is_the_config_is_refused(run_file, tmp_path, monkeypatch, capsys):
    config = tmp_path / "rules.toml"
    config.write_text("[check]\nmax = { nc1 = 100 }\n")
    before = file_digest(config)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "run.h5", "--config", "rules.toml", "-o", "./rules.toml"]) == 3
    assert "rules.toml" in capsys.readouterr().err
    assert file_digest(config) == before


def test_check_output_that_is_the_discovered_pyproject_is_refused(
    run_file, tmp_path, monkeypatch, capsys
):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.ncinspect.check]\nmax = { nc1 = 100 }\n")
    before = file_digest(pyproject)
    monkeypatch.chdir(tmp_path)
    assert main(["check", "run.h5", "-o", "pyproject.toml", "--format", "junit"]) == 3
    assert "pyproject.toml" in capsys.readouterr().err
    assert file_digest(pyproject) == before


def test_plot_file_named_like_the_input_is_refused(run_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "figs"
    out.mkdir()
    victim = out / "trajectory.png"  # an input that has the name of a figure
    os.link(run_file, victim)
    monkeypatch.chdir(tmp_path)
    before = file_digest(run_file)
    for inp, folder in [
        ("figs/trajectory.png", "figs"),
        ("figs/trajectory.png", "./figs"),
        ("figs/trajectory.png", f"../{tmp_path.name}/figs"),
        ("run.h5", "figs"),  # a hard link of the input
    ]:
        assert main(["plot", inp, "-o", folder, "-k", "trajectory", "-f", "png", "-q"]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "input" in err and "internal error" not in err
        assert file_digest(run_file) == before == file_digest(victim)
    assert sorted(os.listdir(out)) == ["trajectory.png"]  # nothing else drawn either


def test_train_output_that_is_its_dataset_is_refused(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, X=rng.standard_normal((20, 3)), y=np.arange(20) % 2)
    before = file_digest(data)
    for spelling in _spellings(data, tmp_path, monkeypatch):
        args = ["train", "-o", spelling, "--dataset", "d.npz", *SMALL_TRAIN]
        assert main(args) == 3, spelling
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "d.npz" in err and "input" in err
        assert file_digest(data) == before
    # the check compares files, not names: another spelling of --dataset is caught too
    assert main(["train", "-o", "d.npz", "--dataset", "./sub/../d.npz", *SMALL_TRAIN]) == 3
    assert file_digest(data) == before


def _read_fifo(path, box):
    with open(path, "rb") as f:
        box["data"] = f.read()


@pytest.mark.parametrize(
    ("cmd", "opts"),
    [("report", ["--json"]), ("report", ["--csv"]), ("check", ["--max", "nc1=100", "-o"])],
)
def test_fifo_output_is_written_through(run_file, tmp_path, capsys, cmd, opts):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    box: dict = {}
    reader = threading.Thread(target=_read_fifo, args=(fifo, box), daemon=True)
    reader.start()
    code = main([cmd, str(run_file), *opts, str(fifo)])
    reader.join(timeout=30)
    assert not reader.is_alive()
    assert code == 0
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO, not a regular file
    text = box["data"].decode()
    if opts[-1] == "--json":
        assert json.loads(text)["snapshots"]
    elif opts[-1] == "--csv":
        assert text.startswith("file,") and text.count("\n") == 3
    else:
        assert "nc1" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe", "run.h5"]


def test_symlink_output_replaces_its_target_and_stays_a_link(run_file, tmp_path, capsys):
    real = tmp_path / "results" / "r.json"
    real.parent.mkdir()
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    assert main(["report", str(run_file), "--json", str(link), "-q"]) == 0
    assert os.path.islink(link) and os.readlink(link) == str(real)
    assert json.loads(real.read_text())["snapshots"]
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the target's permissions are kept
    assert sorted(p.name for p in real.parent.iterdir()) == ["r.json"]  # no temporary left
    # a dangling link: the file is created where it points, the link stays
    dangling = tmp_path / "next.csv"
    dangling.symlink_to(tmp_path / "results" / "new.csv")
    assert main(["report", str(run_file), "--csv", str(dangling), "-q"]) == 0
    assert os.path.islink(dangling) and (tmp_path / "results" / "new.csv").read_text()


def test_check_output_dash_is_stdout(run_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["check", str(run_file), "--max", "nc1=100", "--format", "json", "-o", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["passed"] is True
    assert not (tmp_path / "-").exists()


def test_character_devices_are_written_in_place_never_replaced(tmp_path, monkeypatch):
    from ncinspect.io import atomic

    null = os.stat(os.devnull)  # only stat()ed: nothing here opens a device
    assert stat.S_ISCHR(null.st_mode)
    assert atomic.write_mode("/some/where", null) == atomic.IN_PLACE
    fifo_like = os.stat_result((stat.S_IFIFO | 0o600,) + tuple(null)[1:])
    assert atomic.write_mode("/some/where", fifo_like) == atomic.IN_PLACE
    for name in ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"):
        assert atomic.write_mode(name) == atomic.STDOUT

    # a regular file of tmp_path that stat()s as a character device: written into, in place
    target = tmp_path / "device"
    target.write_bytes(b"0123456789")
    inode = target.stat().st_ino
    real_stat = atomic._stat
    monkeypatch.setattr(
        atomic, "_stat", lambda p: null if os.fspath(p) == str(target) else real_stat(p)
    )

    def forbidden(*args, **kwargs):
        raise AssertionError("a device must never be replaced")

    monkeypatch.setattr(atomic.os, "replace", forbidden)
    monkeypatch.setattr(atomic.tempfile, "mkstemp", forbidden)
    assert atomic.write_output(target, "abc") == atomic.IN_PLACE
    assert target.stat().st_ino == inode and target.read_bytes() == b"abc3456789"


def test_a_full_device_is_one_line_exit_3(run_file, tmp_path, monkeypatch, capsys):
    from ncinspect.io import atomic

    target = tmp_path / "full"
    target.write_bytes(b"")
    null = os.stat(os.devnull)
    real_stat = atomic._stat
    monkeypatch.setattr(
        atomic, "_stat", lambda p: null if os.fspath(p) == str(target) else real_stat(p)
    )

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "write", full)
    assert main(["report", str(run_file), "--json", str(target), "-q"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left" in err and str(target) in err


@pytest.mark.parametrize("where", ["makedirs", "mkstemp", "replace"])
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_plot_on_a_full_or_read_only_disk_exits_3(
    run_file, tmp_path, monkeypatch, capsys, where, code
):
    import tempfile

    out = tmp_path / "new" / "figs"

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    target = {"makedirs": (os, "makedirs"), "mkstemp": (tempfile, "mkstemp")}
    target["replace"] = (os, "replace")
    module, name = target[where]
    real = getattr(module, name)

    def patched(*args, **kwargs):
        path = os.fspath(args[0] if args else kwargs.get("dir", ""))
        if where == "mkstemp":
            path = os.fspath(kwargs.get("dir", ""))
        if str(tmp_path) in path:
            refuse()
        return real(*args, **kwargs)

    if where != "makedirs":
        out.mkdir(parents=True)
    monkeypatch.setattr(module, name, patched)
    args = ["plot", str(run_file), "-o", str(out), "-k", "trajectory", "-f", "png", "-q"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err
    assert os.strerror(code) in err
    monkeypatch.undo()
    if out.exists():
        assert os.listdir(out) == []  # no temporary file left behind


def test_report_json_and_csv_to_one_file_is_refused(run_file, tmp_path, capsys):
    out = tmp_path / "x.out"
    assert (
        main(["report", str(run_file), "--json", str(out), "--csv", str(tmp_path / "./x.out")]) == 2
    )
    assert not out.exists()


def _run_with_unblock(args, fifo):
    """main(args) in a thread; a run blocked on the FIFO is released (and reported)."""
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(code=main(args)), daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        try:
            with open(fifo, "rb"):  # a writer blocked on the FIFO: let it through
                pass
        except OSError:
            pass
        worker.join(timeout=10)
        pytest.fail(f"{args[0]} blocked on the FIFO {fifo}")
    return box["code"]


def test_fifo_without_a_reader_is_an_error_not_a_hang(run_file, tmp_path, monkeypatch, capsys):
    from ncinspect.io import atomic

    monkeypatch.setattr(atomic, "FIFO_WAIT_SECONDS", 0.3)
    fifo = tmp_path / "nobody"
    os.mkfifo(fifo)
    assert _run_with_unblock(["report", str(run_file), "--json", str(fifo), "-q"], fifo) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no process is reading" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_train_refuses_a_fifo_as_its_dump(tmp_path, capsys):
    fifo = tmp_path / "dump.h5"
    os.mkfifo(fifo)
    assert _run_with_unblock(["train", "-o", str(fifo), *SMALL_TRAIN], fifo) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "regular file" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_folder_as_the_output_file_is_a_usage_error(run_file, tmp_path, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    assert main(["report", str(run_file), "--json", str(folder), "-q"]) == 2
    assert "is a directory" in capsys.readouterr().err
    assert folder.is_dir() and not any(folder.iterdir())
