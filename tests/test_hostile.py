"""Hostile and broken inputs: nothing outside the file is read unless asked, nothing hangs,
every bad input is one line with exit code 3, and the input is never changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
from conftest import file_digest, make_data

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import ExternalDataError, UnreadableFileError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ncinspect.__file__)))
SECRET = b"NCI_SECRET_TOKEN=hunter2\n"


def cli(*args, timeout: float = 60, cwd=None) -> tuple[int, str, str]:
    """Run the CLI in a subprocess, so that a hang fails the test instead of blocking CI."""
    code = "import sys; from ncinspect.cli import main; sys.exit(main(sys.argv[1:]))"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )
    return proc.returncode, proc.stdout, proc.stderr


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err and lines[0].startswith("ncinspect: error:"), err
    assert len(lines[0]) < 600, lines[0]
    return lines[0]


def write_basic(path, *, labels=True):
    h, y, m = make_data(C=3, d=5, n=10)
    with h5py.File(path, "w") as f:
        f["features"] = h
        if labels:
            f["labels"] = y
        f["weights"] = m
    return h, y


# --- external data: refused by default, followed with --allow-external -------------------


def _secret_labels_file(tmp_path, n):
    secret = tmp_path / "secret.bin"
    secret.write_bytes((np.arange(n) % 3).astype("<i8").tobytes())
    return secret


def _external_storage_dump(tmp_path, n=30):
    secret = _secret_labels_file(tmp_path, n)
    h, _, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "ext.h5"
    with h5py.File(path, "w") as f:
        f["features"] = h
        f.create_dataset("labels", shape=(n,), dtype="<i8", external=[(str(secret), 0, 8 * n)])
    return path


def _external_link_dump(tmp_path):
    h, y, _ = make_data(C=3, d=5, n=10)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["y"] = y
    path = tmp_path / "elink.h5"
    with h5py.File(path, "w") as f:
        f["features"] = h
        f["labels"] = h5py.ExternalLink(str(other), "/y")
    return path


def _virtual_dump(tmp_path, *, drop_source=False):
    h, y, _ = make_data(C=3, d=5, n=10)
    src = tmp_path / "src.h5"
    with h5py.File(src, "w") as f:
        f["y"] = y
    layout = h5py.VirtualLayout(shape=y.shape, dtype=y.dtype)
    layout[:] = h5py.VirtualSource(str(src), "y", shape=y.shape)
    path = tmp_path / "vds.h5"
    with h5py.File(path, "w") as f:
        f["features"] = h
        f.create_virtual_dataset("labels", layout, fillvalue=0)
    if drop_source:
        src.unlink()
    return path


@pytest.mark.parametrize(
    "make, expect",
    [
        (_external_storage_dump, "stored outside the file"),
        (_external_link_dump, "external link"),
        (_virtual_dump, "virtual dataset"),
    ],
)
def test_external_data_refused_by_default_and_followed_on_request(tmp_path, make, expect):
    path = make(tmp_path)
    digest = file_digest(path)
    for command in ("report", "info"):
        rc, out, err = cli(command, path)
        assert rc == 3, (out, err)
        line = one_error_line(err)
        assert expect in line and str(path) in line and "/labels" in line
        assert "--allow-external" in line
    with pytest.raises(ExternalDataError):
        ncinspect.open_dump(path)
    with pytest.raises(ExternalDataError):
        ncinspect.analyze_file(path)
    rc, out, err = cli("report", path, "--allow-external", "--json", "-")
    assert rc == 0, err
    assert json.loads(out)["snapshots"][0]["n_classes"] == 3
    rep = ncinspect.analyze_file(path, allow_external=True)
    assert rep.snapshots[0].n_samples == 30
    assert file_digest(path) == digest


def test_environment_file_is_not_published(tmp_path):
    """The attack of the report: labels stored in another local file become class names."""
    secret = tmp_path / "environ"
    secret.write_bytes(SECRET * 8)
    n = secret.stat().st_size
    path = tmp_path / "leak.h5"
    with h5py.File(path, "w") as f:
        f["features"] = np.random.default_rng(0).standard_normal((n, 3))
        f.create_dataset("labels", shape=(n,), dtype="u1", external=[(str(secret), 0, n)])
    rc, out, err = cli("report", path, "--per-class", "--json", "-")
    assert rc == 3 and "hunter2" not in out + err and "NCI_SECRET" not in out + err


def test_missing_virtual_source_is_reported_not_filled(tmp_path):
    path = _virtual_dump(tmp_path, drop_source=True)
    rc, out, err = cli("report", path, "--allow-external")
    assert rc == 3
    line = one_error_line(err)
    assert "missing" in line and "src.h5" in line
    with pytest.raises(UnreadableFileError, match="missing"):
        ncinspect.analyze_file(path, allow_external=True)


def test_soft_link_through_an_external_link_is_refused(tmp_path):
    path = _external_link_dump(tmp_path)
    with h5py.File(path, "a") as f:
        y = np.arange(10) % 2
        del f["labels"]
        f["labels"] = y
        f["outside"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/")
        f["grp/labels"] = h5py.SoftLink("/outside/y")
    with pytest.raises(ExternalDataError, match="/outside"):
        ncinspect.open_dump(path)


@pytest.mark.parametrize("kind", ["link", "storage"])
def test_unused_external_fifo_does_not_hang(tmp_path, kind):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    path = tmp_path / "fifo.h5"
    write_basic(path)
    with h5py.File(path, "a") as f:
        if kind == "link":
            f["unused"] = h5py.ExternalLink(str(fifo), "/x")
        else:
            f.create_dataset("unused", shape=(4,), dtype="u1", external=[(str(fifo), 0, 4)])
    for extra in ([], ["--allow-external"]):
        for command in ("info", "report"):
            rc, _, err = cli(command, path, *extra, timeout=60)
            assert rc == 3, err
            line = one_error_line(err)
            assert "/unused" in line
            if extra:
                assert "FIFO" in line


# --- the input path itself -----------------------------------------------------------------


def test_special_input_paths_are_one_line_exit_3(tmp_path):
    fifo = tmp_path / "in.h5"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.h5"
    os.symlink(loop, loop)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    broken = tmp_path / "broken.h5"
    os.symlink(tmp_path / "nothing", broken)
    cases = {
        fifo: "FIFO",
        tmp_path: "directory",
        "/dev/zero": "device",
        "/dev/null": "device",
        loop: "symbolic links",
        plain / "x.h5": "not a folder",
        tmp_path / ("n" * 300): "longer than",
        broken: "broken symbolic link",
        tmp_path / "absent.h5": "no such file",
    }
    for path, expect in cases.items():
        for command in ("report", "info"):
            rc, out, err = cli(command, path, timeout=60)
            assert rc == 3, (path, err)
            assert expect in one_error_line(err), (path, err)


def test_unreadable_input_is_exit_3_not_a_usage_error(tmp_path, capsys, monkeypatch):
    path = tmp_path / "locked.h5"
    write_basic(path)
    real_open = os.open

    def deny(p, *a, **k):
        if os.fspath(p) == str(path):
            raise PermissionError(13, "Permission denied", str(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    assert main(["report", str(path)]) == 3
    err = capsys.readouterr().err
    assert "permission denied" in one_error_line(err)


def test_deeply_nested_valid_file_and_link_cycle(tmp_path):
    path = tmp_path / "deep.h5"
    h, y, m = make_data(C=3, d=4, n=8)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        name = "/".join(f"g{i}" for i in range(1200))
        f[f"{name}/features"] = h
        f["g0/g1/back"] = h5py.SoftLink("/g0")  # a cycle
        f["g0/hard_back"] = f["g0"]  # a hard link back to the parent too
    rc, out, err = cli("report", path, "--json", "-")
    assert rc == 0, err
    snaps = json.loads(out)["snapshots"]
    assert len(snaps) == 1 and snaps[0]["n_samples"] == len(y)
    rc, out, err = cli("info", path)
    assert rc == 0, err


# --- attributes and values that used to be internal errors ----------------------------------


def test_odd_epoch_attributes_and_names(tmp_path):
    path = tmp_path / "odd.h5"
    h, y, m = make_data(C=3, d=4, n=8)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for i, value in enumerate(
            [np.inf, 1 + 2j, h5py.Empty("f8"), None, 2.5, "json:" + "9" * 5000]
        ):
            g = f.create_group(f"ep_{i}")
            g["features"] = h
            if value is None:
                g.attrs["epoch"] = f.ref
            else:
                g.attrs["epoch"] = value
            g.attrs["deep"] = "json:" + "[" * 5000 + "]" * 5000
        f["tmp/features"] = h
        x = f.create_group("x")
        x.id.links.create_hard(b"bad\xffname", f["/"].id, b"tmp")
        del f["tmp"]
    rc, out, err = cli("report", path, "--json", "-")
    assert rc == 0, err
    snaps = json.loads(out)["snapshots"]
    # non-integral epochs fall back to the group name (ep_<i>)
    assert sorted(s["epoch"] for s in snaps if s["name"].startswith("/ep_")) == list(range(6))
    assert any(s["name"].startswith("/x/bad") for s in snaps)
    rc, out, err = cli("info", path)
    assert rc == 0, err


def test_null_dataspace_features(tmp_path):
    path = tmp_path / "null.h5"
    with h5py.File(path, "w") as f:
        f["features"] = h5py.Empty("f8")
        f["labels"] = np.arange(4)
    rc, _, err = cli("report", path)
    assert rc == 3
    assert "features" in one_error_line(err)


def test_huge_attribute_is_skipped_with_a_note(tmp_path):
    path = tmp_path / "attr.h5"
    h, y, _ = make_data(C=3, d=5, n=10)
    with h5py.File(path, "w", libver="latest") as f:
        f["features"], f["labels"] = h, y
        f.attrs.create("blob", np.zeros(3 << 20, "u1"))
        f.attrs["epoch"] = 3
    with ncinspect.open_dump(path) as dump:
        assert "blob" not in dump.snapshots[0].meta and dump.snapshots[0].epoch == 3
        assert any("blob" in n and "skipped" in n for n in dump.notes)
