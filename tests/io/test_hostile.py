"""Hostile and broken inputs: nothing outside the file is read unless asked, nothing hangs,
every bad input is one line with exit code 3, and the input is never changed."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import ExternalDataError, ResourceLimitError, UnreadableFileError

from ..helpers import file_digest, make_data

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


# --- declared sizes, chunk bounds ---------------------------------------------------------


def test_declared_but_unwritten_rows_are_refused(tmp_path):
    for layout in ("contiguous", "chunked"):
        path = tmp_path / f"{layout}.h5"
        kw = {"chunks": (1000, 100)} if layout == "chunked" else {}
        with h5py.File(path, "w") as f:
            f.create_dataset("features", shape=(10**6, 1000), dtype="f4", **kw)  # 4 GB declared
            f.create_dataset("labels", shape=(10**6,), dtype="u1", **kw and {"chunks": (1000,)})
        assert path.stat().st_size < 1 << 20
        rc, _, err = cli("report", path, timeout=60)
        assert rc == 3, err
        line = one_error_line(err)
        assert "/labels" in line and "fill values" in line
        with h5py.File(path, "a") as f:  # labels written: now the features are refused
            del f["labels"]
            f["labels"] = (np.arange(10**6) % 3).astype("u1")
        rc, _, err = cli("report", path, timeout=120)
        assert rc == 3, err
        line = one_error_line(err)
        assert "/features" in line and "fill values" in line
    # a chunked dataset with some chunks written is refused too
    path = tmp_path / "partial.h5"
    h, y, _ = make_data(C=3, d=5, n=10)
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("features", shape=(30, 5), chunks=(5, 5), dtype="f8")
        ds[:10] = h[:10]
        f["labels"] = y
    with pytest.raises(UnreadableFileError, match="chunks but only 2 are written"):
        ncinspect.analyze_file(path)


def test_chunk_larger_than_the_budget_is_refused_before_decompressing(tmp_path):
    h, y, _ = make_data(C=3, d=5, n=400)
    path = tmp_path / "bigchunk.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "features", data=np.tile(h, (1, 200)), chunks=(1200, 1000), compression="gzip"
        )
        f["labels"] = y
    rc, _, err = cli("report", path, "--memory-limit", "2MiB")  # the whole process: refused
    assert rc == 3
    assert "--memory-limit" in one_error_line(err)
    # the library's limit bounds what the analysis adds: the chunk is what does not fit
    with pytest.raises(ResourceLimitError) as info:
        ncinspect.analyze_file(path, memory_limit=2 << 20)
    line = str(info.value)
    assert "chunk" in line and "memory limit" in line and "--memory-limit" in line
    assert cli("report", path, "--memory-limit", "256MiB")[0] == 0


# --- a snapshot being written is skipped, the others reported ------------------------------

_WRITER = r"""
import sys, time
import numpy as np
from ncinspect.io.writer import DumpWriter
rng = np.random.default_rng(0)
y = np.repeat(np.arange(4), 100)
with DumpWriter(sys.argv[1], "w") as w:
    w.write("labels", y)
    e = 0
    t0 = time.time()
    while time.time() - t0 < float(sys.argv[2]):
        with w.snapshot(f"epoch_{e:05d}", epoch=e) as snap:  # complete at the block's end
            for a in range(0, 400, 20):
                snap.append(features=rng.standard_normal((20, 8)) + y[a : a + 20, None])
                time.sleep(0.01)
            snap.write(weights=rng.standard_normal((4, 8)))
        if e == 0:
            print("ready", flush=True)
        e += 1
"""


def test_report_while_a_writer_appends(tmp_path, capsys):
    path = tmp_path / "live.h5"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), "30"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        codes, skipped = [], 0
        for _ in range(20):
            rc = main(["report", str(path), "--json", "-", "-q"])
            out, err = capsys.readouterr()
            codes.append((rc, err))
            if rc == 0:
                snaps = json.loads(out)["snapshots"]
                assert snaps and all(s["n_samples"] == 400 for s in snaps)
                skipped += any("being written" in w for w in snaps[-1]["warnings"])
        assert all(rc == 0 for rc, _ in codes), codes
        assert skipped > 0 or proc.poll() is not None
    finally:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize("being_written", [True, False])
def test_a_failed_read_of_a_file_being_written_is_read_again(tmp_path, monkeypatch, being_written):
    """HDF5 without SWMR: a reader can meet a file between two of the writer's metadata
    writes (seen as 'no arrays'). Only a file a writer holds open is read again; a closed
    file's error is final at once."""
    from ncinspect import dump as dump_mod
    from ncinspect.errors import MissingArrayError

    h, y, m = make_data(C=3, d=4, n=12)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, m
    real, calls = dump_mod.Dump._open, []

    def flaky(self):
        calls.append(1)
        if len(calls) == 1:
            self.being_written = being_written
            raise MissingArrayError(f"{self.path}: no features array found")
        return real(self)

    monkeypatch.setattr(dump_mod, "_LIVE_WAIT", 0.0)
    monkeypatch.setattr(dump_mod.Dump, "_open", flaky)
    if being_written:
        with ncinspect.open_dump(path) as d:
            assert [s.name for s in d.snapshots] == ["/"]
        assert len(calls) == 2
    else:
        with pytest.raises(MissingArrayError):
            ncinspect.open_dump(path)
        assert len(calls) == 1


# --- NPZ members -----------------------------------------------------------------------------


def _npy(header: str, data: bytes = b"", version=(1, 0)) -> bytes:
    """A .npy file with a hand-written header (possibly lying about the data)."""
    text = header.encode("latin1")
    if version == (1, 0):
        pad = 64 - (10 + len(text) + 1) % 64
        return (
            b"\x93NUMPY\x01\x00"
            + struct.pack("<H", len(text) + pad + 1)
            + text
            + b" " * pad
            + b"\n"
            + data
        )
    pad = 64 - (12 + len(text) + 1) % 64
    return (
        b"\x93NUMPY\x02\x00"
        + struct.pack("<I", len(text) + pad + 1)
        + text
        + b" " * pad
        + b"\n"
        + data
    )


def _good_npz(tmp_path, name="run.npz", **extra):
    h, y, m = make_data(C=3, d=4, n=10)
    path = tmp_path / name
    np.savez(path, features=h, labels=y, weights=m, **extra)
    return path


def _patch_central(path, member: str, offset: int, fmt: str, value) -> None:
    """Overwrite a field of ``member``'s central-directory record (offset from its signature)."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    pos = 0
    while True:
        pos = data.index(b"PK\x01\x02", pos)
        n = struct.unpack_from("<H", data, pos + 28)[0]
        if bytes(data[pos + 46 : pos + 46 + n]) == name:
            break
        pos += 4
    struct.pack_into(fmt, data, pos + offset, value)
    path.write_bytes(bytes(data))


def _write_member(path, name: str, payload: bytes, compress=zipfile.ZIP_STORED):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "a", compression=compress) as zf:
            zf.writestr(name, payload)


def _npz_cases(tmp_path):
    cases = {}
    p = _good_npz(tmp_path, "dup.npz")
    _write_member(
        p,
        "labels.npy",
        _npy("{'descr': '<i8', 'fortran_order': False, 'shape': (30,), }", b"\0" * 240),
    )
    cases[p] = "two members"
    p = _good_npz(tmp_path, "enc.npz")
    _patch_central(p, "features.npy", 8, "<H", 1)
    cases[p] = "encrypted"
    p = _good_npz(tmp_path, "method.npz")
    _patch_central(p, "features.npy", 10, "<H", 99)
    cases[p] = "compression method 99"
    p = _good_npz(tmp_path, "offset.npz")
    _patch_central(p, "features.npy", 42, "<I", 10**9)
    cases[p] = "features"
    p = _good_npz(tmp_path, "crc.npz")
    _patch_central(p, "features.npy", 16, "<I", 12345)
    cases[p] = "CRC"
    p = _good_npz(tmp_path, "neg.npz")
    _write_member(
        p, "x/features.npy", _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-3, 4), }")
    )
    cases[p] = "shape (-3, 4)"
    p = _good_npz(tmp_path, "lie.npz")
    _write_member(
        p,
        "x/features.npy",
        _npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1000000000, 1000), }", b"\0" * 64),
    )
    cases[p] = "holds"
    p = _good_npz(tmp_path, "lie_item.npz")
    _write_member(
        p,
        "x/features.npy",
        _npy("{'descr': '|V100000000', 'fortran_order': False, 'shape': (10, 4), }", b"\0" * 64),
        zipfile.ZIP_DEFLATED,
    )
    cases[p] = "holds"
    p = _good_npz(tmp_path, "hdr.npz")
    _write_member(
        p,
        "x/features.npy",
        _npy(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 1), }" + " " * 20000,
            b"\0" * 8,
            version=(2, 0),
        ),
    )
    cases[p] = "header"
    for label, text in {
        "utf8": b"\xff\xfe{}",
        "deep": b"[" * 100000 + b"]" * 100000,
        "digits": b'{"a": ' + b"9" * 5000 + b"}",
        "nested": b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    }.items():
        p = _good_npz(tmp_path, f"meta_{label}.npz")
        arr = np.array(text)
        buf = io.BytesIO()
        np.save(buf, arr)
        _write_member(p, "meta.npy", buf.getvalue())
        cases[p] = "meta"
    return cases


def test_broken_npz_members_are_one_line_exit_3(tmp_path):
    for path, expect in _npz_cases(tmp_path).items():
        digest = file_digest(path)
        for command in ("report", "info"):
            rc, out, err = cli(command, path)
            assert rc == 3, (path.name, err)
            line = one_error_line(err)
            assert expect in line, (path.name, line)
            assert "allow_pickle" not in line
        assert file_digest(path) == digest


def test_compressed_member_over_the_memory_limit_is_refused(tmp_path):
    h, y, _ = make_data(C=3, d=4, n=10)
    path = tmp_path / "big.npz"
    np.savez_compressed(path, features=np.zeros((20000, 200)), labels=np.arange(20000) % 3)
    rc, _, err = cli("report", path, "--memory-limit", "12MiB")
    assert rc == 3
    line = one_error_line(err)
    assert "compressed" in line and "--memory-limit" in line and "numpy.savez" in line


# --- the memory limit is a bound -------------------------------------------------------------

_MEASURE = r"""
import sys, tracemalloc
import h5py, numpy as np
path, n, d, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(0)
with h5py.File(path, "w") as f:
    ds = f.create_dataset("features", shape=(n, d), dtype="f4", chunks=(1, d))
    for a in range(0, n, 16):
        ds[a : a + 16] = rng.standard_normal((min(16, n - a), d)).astype("f4")
    f["labels"] = np.arange(n) % 4
import ncinspect.analysis.api, ncinspect.cli.report, ncinspect.render.table, rich.console
import scipy.sparse
from ncinspect.cli.common import parse_size
import ncinspect, json
tracemalloc.start()
try:  # the library's limit: what the analysis adds to the process (the CLI's covers it all)
    res = ncinspect.analyze_file(path, memory_limit=parse_size(limit))
    rc = 0
    metrics = {"snapshots": [{"metrics": res.snapshots[0].metrics}]}
    open(path + ".json", "w").write(json.dumps(metrics))
except ncinspect.errors.ResourceLimitError as exc:
    print(f"ncinspect: error: {exc}", file=sys.stderr)
    rc = 3
print(rc, tracemalloc.get_traced_memory()[1])
"""


def test_memory_limit_bounds_the_peak_or_refuses(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def measure(limit):
        proc = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(tmp_path / "wide.h5"), "300", "20000", limit],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        rc, peak = proc.stdout.split()[-2:]
        return int(rc), int(peak), proc.stderr

    rc, peak, err = measure("16MiB")  # 64 rows x 20000 float64 copies alone exceed this
    assert rc == 0, err
    assert peak < 16 << 20, peak / 2**20
    rc, peak, err = measure("4MiB")  # the class-level matrices alone need more
    assert rc == 3
    line = one_error_line(err)
    assert "needs at least" in line and "--memory-limit" in line
    full = ncinspect.analyze_file(tmp_path / "wide.h5").snapshots[0].metrics
    small = json.loads((tmp_path / "wide.h5.json").read_text())  # from the 16 MiB run
    assert small["snapshots"][0]["metrics"]["nc1"] == pytest.approx(full["nc1"], rel=1e-12)
