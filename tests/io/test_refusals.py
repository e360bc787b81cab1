"""Issue 22 items 8b, 10, 11, 12: what ncinspect refuses says what is wrong, in one bounded
line, exit 3 (integer labels at every dtype extreme, pickles of every protocol, user input
echoed in messages, NaN/Inf classifier weights given to a Meter)."""

from __future__ import annotations

import os
import pickle
import zipfile

import h5py
import numpy as np
import pytest
import safetensors.numpy
import torch

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import InvalidDataError, UnreadableFileError
from ncinspect.io.detect import detect_format
from ncinspect.text import MAX_ECHO, MAX_LINE, clip, clip_line

from ..helpers import file_digest, make_data


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _run(capsys, *args) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    return rc, capsys.readouterr().err


# --- 8b: integer labels at every dtype extreme ------------------------------------------------

_INTS = ["u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8"]


def _write(fmt: str, path, h, y, w=None):
    arrays = {"features": h, "labels": y} | ({} if w is None else {"weights": w})
    if fmt == "npz":
        np.savez(path, **arrays)
    elif fmt == "hdf5":
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v
    else:
        safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, path)


@pytest.mark.parametrize("fmt", ["npz", "hdf5", "safetensors"])
def test_integer_label_extremes_are_analysed_or_refused_in_one_line(tmp_path, capsys, fmt):
    """Every integer dtype at its min and max, with and without a classifier: exit 0 (the
    value is a class) or 3 (one line naming the file and labels), never 4."""
    h = make_data(C=3, d=4, n=10)[0]  # 30 rows
    w = np.random.default_rng(0).standard_normal((3, 4))
    for dt in _INTS:
        info = np.iinfo(dt)
        for value in (info.min, info.max):
            y = (np.arange(30) % 3).astype(dt)
            y[7] = value
            for weights in (None, w):
                path = tmp_path / f"{dt}_{value}_{weights is None}.{fmt}"
                _write(fmt, str(path), h, y, weights)
                rc, err = _run(capsys, "report", path, "--json", tmp_path / "o.json", "-q")
                case = (fmt, dt, value, weights is None)
                assert rc in (0, 3), (case, err)
                if rc == 3:
                    line = _one_line(err)
                    assert "labels" in line and path.name in line, (case, line)
                beyond = value > np.iinfo(np.int64).max
                assert rc == (3 if beyond or weights is not None and value not in (0, 1, 2) else 0)


def test_uint64_labels_beyond_int64_name_the_value_and_row(tmp_path, capsys):
    h = make_data(C=3, d=4, n=10)[0]  # 30 rows
    y = (np.arange(30) % 3).astype("u8")
    y[[4, 9]] = np.iinfo("u8").max
    path = tmp_path / "u64.npz"
    np.savez(path, features=h, labels=y)
    rc, err = _run(capsys, "report", path)
    assert rc == 3
    line = _one_line(err)
    assert "u64.npz:/labels" in line and "int64 range" in line
    assert str(np.iinfo("u8").max) in line and "row 4" in line and "2 such rows" in line
    with pytest.raises(InvalidDataError, match="int64 range"):
        ncinspect.analyze(h, y)  # the in-memory API too


# --- 10: pickles of every protocol, torch files of every protocol --------------------------


class _Marker:
    """Unpickling this creates a directory: proof that nothing was unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def _check_pickle_refusal(capsys, path, marker):
    before = file_digest(path)
    rc, err = _run(capsys, "report", path)
    assert rc == 3, err
    line = _one_line(err)
    assert path.name in line and "pickle" in line and "never unpickles" in line, line
    assert "safetensors" in line and "numpy.savez" in line and "DumpWriter" in line, line
    assert "not an HDF5" in line  # says what it is not, too
    extra = {"plot": ["-o", path.parent / "figs"], "check": ["--no-config", "--max", "nc1=1"]}
    for command in ("info", "plot", "check"):
        rc, err = _run(capsys, command, path, *extra.get(command, []))
        assert rc == 3 and "never unpickles" in _one_line(err), (command, err)
    with pytest.raises(UnreadableFileError, match="pickle"):
        detect_format(str(path))
    assert file_digest(path) == before
    assert not os.path.exists(marker)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_pickles_of_every_protocol_are_named_and_never_loaded(tmp_path, capsys, protocol):
    marker = str(tmp_path / "unpickled")
    h, y, _ = make_data(C=3, d=4, n=12)
    for name, obj in (
        ("arrays", {"features": h, "labels": y}),
        ("hostile", {"features": _Marker(marker), "labels": [1, 2]}),
        ("list", [h, y]),
    ):
        path = tmp_path / f"{name}_p{protocol}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        _check_pickle_refusal(capsys, path, marker)
        line = _run(capsys, "info", path)[1]
        assert f"protocol {protocol}" in line or (protocol < 2 and "protocol 0 or 1" in line)


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_torch_files_of_every_protocol_are_named_and_never_loaded(tmp_path, capsys, protocol):
    marker = str(tmp_path / "unpickled")
    state = {"features": torch.randn(12, 4), "labels": torch.arange(12) % 3}
    for suffix, zipped in ((".pt", True), (".ckpt", True), (".pth", False)):
        path = tmp_path / f"model_p{protocol}{suffix}"
        torch.save(state, path, pickle_protocol=protocol, _use_new_zipfile_serialization=zipped)
        _check_pickle_refusal(capsys, path, marker)
        assert "PyTorch" in _run(capsys, "info", path)[1]
    # a zip holding a hostile data.pkl, as torch.save writes it
    path = tmp_path / f"hostile_p{protocol}.ckpt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": _Marker(marker)}, protocol=protocol))
        zf.writestr("archive/version", "3\n")
    _check_pickle_refusal(capsys, path, marker)


def test_text_that_is_not_a_pickle_is_not_called_one(tmp_path, capsys):
    for i, blob in enumerate(
        [b"(this is a note)\n" * 20, b"N,features,labels\n1,2,3\n", b"]]]]", b"c" * 5000]
    ):
        path = tmp_path / f"text{i}.bin"
        path.write_bytes(blob)
        rc, err = _run(capsys, "info", path)
        assert rc == 3
        assert "is a Python pickle" not in _one_line(err) and "not an HDF5" in err


# --- 11: echoed user input is bounded ------------------------------------------------------


def test_clip_helpers():
    assert clip("short") == "short"
    long = "a" * 3000 + "TAIL"
    out = clip(long)
    assert len(out) <= MAX_ECHO and out.startswith("aaa") and out.endswith("TAIL")
    assert "chars left out" in out
    assert clip("x\x1b[2Jy") == "x\\x1b[2Jy"  # control characters escaped
    assert len(clip_line("b" * 100_000)) <= MAX_ECHO
    assert len(clip_line("b " * 100_000)) <= MAX_LINE
    listing = ", ".join(f"metric_{i}" for i in range(200))  # long lists of short words stay
    assert clip_line(listing) == listing
    for n in range(MAX_ECHO - 5, MAX_ECHO + 40):
        assert len(clip("z" * n)) <= MAX_ECHO


def _toml(tmp_path, body: str):
    (tmp_path / "ncinspect.toml").write_text(body)


def test_long_values_are_capped_in_every_error_line(tmp_path, capsys, monkeypatch):
    """A 5,000-character glob (TOML or option), metric name, key name, path, metadata value:
    each error line stays short (it gave a 5,150-character line)."""
    monkeypatch.chdir(tmp_path)
    h, y, _ = make_data(C=3, d=4, n=30)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"] = h, y
        f.attrs["loss"] = "L" * 5000
    big = "g" * 5000
    cases = []
    _toml(tmp_path, f'[check]\nsnapshot = "{big}"\n[check.max]\nnc1 = 1\n')
    cases.append(("check", path))
    cases.append(("report", path, "--snapshot", big))
    cases.append(("check", path, "--no-config", "--max", f"{big}=1"))
    cases.append(("check", path, "--no-config", "--max", f"nc1={big}"))
    cases.append(("report", path, "--features-key", big))
    cases.append(("report", path, "--memory-limit", big))
    cases.append(("report", tmp_path / (big[:200] + ".h5")))
    cases.append(("report", path, "--class-names", tmp_path / ("c" * 200)))
    _toml(tmp_path, f'[check]\nlayer = "{big}"\n[check.max]\nnc1 = 1\n')
    cases.append(("check", path))
    cases.append(("check", path, "--config", tmp_path / "ncinspect.toml", "--snapshot", big))
    for args in cases:
        rc, err = _run(capsys, *args)
        assert rc in (2, 3), (args[:2], err[:300])
        for line in err.splitlines():
            assert len(line) <= MAX_LINE, (args[:2], len(line))
            assert big[:400] not in line and "c" * 400 not in line, (args[:2], len(line))


# --- 12: NaN/Inf classifier weights given to a Meter ---------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_meter_refuses_non_finite_weights_saying_so(bad):
    w = np.ones((3, 4))
    w[1, 2] = bad
    with pytest.raises(InvalidDataError, match="weights are not finite") as info:
        ncinspect.Meter(weights=w)
    assert "changed" not in str(info.value) and "(1, 2)" in str(info.value)
    b = np.zeros(3)
    b[0] = bad
    with pytest.raises(InvalidDataError, match="bias is not finite"):
        ncinspect.Meter(weights=np.ones((3, 4)), bias=b)


def test_meter_weights_that_become_non_finite_are_named_as_such():
    w = torch.ones(3, 4)
    meter = ncinspect.Meter(weights=w)
    h, y, _ = make_data(C=3, d=4, n=30)
    meter.update(h, y)
    w[0, 0] = float("nan")  # training diverged between the passes
    with pytest.raises(InvalidDataError, match="not finite") as info:
        meter.next_pass()
    assert "changed since" not in str(info.value)


# --- 8a: one huge gzip chunk in a small file ------------------------------------------------


def _huge_chunk_file(path, key: str, chunk_rows: int):
    """A small file whose ``key`` dataset declares one chunk of ``chunk_rows`` rows (more
    than the dataset holds: HDF5 still inflates the whole chunk for any read of it)."""
    rng = np.random.default_rng(0)
    n, d = 40, 8
    arrays = {"features": rng.standard_normal((n, d)).astype("f4"), "labels": np.arange(n) % 4}
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            if name != key:
                f[name] = value
                continue
            ds = f.create_dataset(
                name,
                shape=value.shape,
                maxshape=(None,) + value.shape[1:],
                chunks=(chunk_rows,) + value.shape[1:],
                dtype=value.dtype,
                compression="gzip",
            )
            ds[...] = value
    return path


@pytest.mark.parametrize("key", ["features", "labels"])
def test_huge_gzip_chunk_is_refused_before_inflating(tmp_path, capsys, key):
    """Without --memory-limit the bound of one chunk is the default chunk budget (256 MiB):
    a 320 MiB chunk that compresses to almost nothing is refused up front (0.2 inflated it,
    once per read of a row range, with a bound of up to 4 GiB)."""
    rows = (320 << 20) // (32 if key == "features" else 8)
    path = _huge_chunk_file(tmp_path / f"{key}.h5", key, rows)
    assert path.stat().st_size < 4 << 20
    for command in ("report", "check", "plot"):
        extra = {"check": ["--no-config", "--max", "nc1=9"], "plot": ["-o", tmp_path / "f"]}
        rc, err = _run(capsys, command, path, *extra.get(command, []))
        assert rc == 3, (command, err)
        line = _one_line(err)
        assert f"{path.name}:/{key}" in line and "chunk" in line and "320 MiB" in line
        assert "--memory-limit" in line
    # with a limit that the process and the chunk exceed, it is refused too (by the chunk,
    # or first by the plan when this test process already holds more than the limit)
    rc, err = _run(capsys, "report", path, "--memory-limit", "300MiB")
    line = _one_line(err)
    assert rc == 3 and "--memory-limit" in line
    assert f"{key}: one HDF5 chunk" in line or "already holds" in line
