"""`ncinspect report` and `info` through the CLI: outputs, exit codes, bad input."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from ncinspect.cli import main
from ncinspect.metrics import METRIC_KEYS

from ..helpers import file_digest, make_data


@pytest.fixture
def run_file(tmp_path):
    h, y, m = make_data(C=4, d=6, n=15)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for ep in (1, 5, 9):
            g = f.create_group(f"epoch_{ep:04d}")
            g["features"] = (h * (1 + 1 / ep)).astype(np.float32)
            g["weights"] = m
            g.attrs["epoch"] = ep
    return path


def test_report_table_and_json(run_file, tmp_path, capsys):
    assert main(["report", str(run_file), "--snapshot", "epoch_0009"]) == 0
    out = capsys.readouterr().out
    assert "nc1" in out and "NC3" in out and "N=60" in out and "d=6" in out
    js = tmp_path / "r.json"
    assert main(["report", str(run_file), "--json", str(js), "--per-class"]) == 0
    data = json.loads(js.read_text())
    assert data["schema_version"] == 1 and data["conventions"]["center"] == "classes"
    assert [s["epoch"] for s in data["snapshots"]] == [1, 5, 9]
    snap = data["snapshots"][0]
    assert set(snap["metrics"]) == set(METRIC_KEYS)
    for key in (
        "name",
        "epoch",
        "split",
        "layer",
        "n_samples",
        "n_features",
        "n_classes",
        "metrics",
        "per_class",
        "warnings",
    ):
        assert key in snap
    assert len(snap["per_class"]) == 4
    # byte-identical reruns
    js2 = tmp_path / "r2.json"
    assert main(["report", str(run_file), "--json", str(js2), "--per-class"]) == 0
    assert js.read_bytes() == js2.read_bytes()


def test_report_json_stdout_and_csv(run_file, tmp_path, capsys):
    assert main(["report", str(run_file), "--json", "-"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["snapshots"]) == 3
    csv_path = tmp_path / "r.csv"
    assert main(["report", str(run_file), "--csv", str(csv_path)]) == 0
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("file,snapshot,epoch,split,layer")
    assert len(lines) == 4
    nc1_col = lines[0].split(",").index("nc1")
    assert float(lines[1].split(",")[nc1_col]) == pytest.approx(
        data["snapshots"][0]["metrics"]["nc1"]
    )


def test_center_samples_recorded(run_file, capsys):
    assert main(["report", str(run_file), "--center", "samples", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["conventions"]["center"] == "samples"


def test_info_lists_snapshots_and_arrays(run_file, capsys):
    assert main(["info", str(run_file)]) == 0
    out = capsys.readouterr().out
    assert "/epoch_0005" in out and "/labels" in out


def test_unknown_option_is_usage_error(run_file, capsys):
    assert main(["report", str(run_file), "--no-such-option"]) == 2
    assert main(["report", str(run_file), "--center", "median"]) == 2
    assert main(["report", str(run_file), "--snapshot", "nomatch*"]) == 2


# ---------------------------------------------------------------------------------------
# bad input: exit 3, one line naming file/array/problem, input untouched
# ---------------------------------------------------------------------------------------
def _h5(path, **arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v


def _bad_cases(tmp_path):
    h, y, m = make_data(C=3, d=4, n=5)
    cases = {}

    def add(name, maker, expect):
        p = tmp_path / name
        maker(p)
        cases[name] = (p, expect)

    add("nolabels.h5", lambda p: _h5(p, features=h), "no labels")
    add("nofeatures.h5", lambda p: _h5(p, stuff=h, labels=y), "no features array found")
    add(
        "ambiguous.h5",
        lambda p: _h5(p, features=h, embeddings=h, labels=y),
        "'features' and 'embeddings'",
    )
    add("n_mismatch.h5", lambda p: _h5(p, features=h, labels=y[:-2]), "N = 15")
    add("d_mismatch.h5", lambda p: _h5(p, features=h, labels=y, weights=m[:, :3]), "d = 4")
    add("c_mismatch.h5", lambda p: _h5(p, features=h, labels=y, weights=m[:2]), "C = 2 rows")
    hn = h.copy()
    hn[3, 1] = np.nan
    add("nan.h5", lambda p: _h5(p, features=hn, labels=y), "first at row 3")
    add("fractional.h5", lambda p: _h5(p, features=h, labels=y + 0.25), "fractional")
    add(
        "oneclass.h5",
        lambda p: _h5(p, features=h, labels=np.zeros(len(y))),
        "fewer than two classes",
    )
    add("empty.h5", lambda p: _h5(p, features=np.zeros((0, 4)), labels=np.zeros(0)), "empty")
    add("complex.h5", lambda p: _h5(p, features=h.astype(complex), labels=y), "unsupported dtype")
    add("zero.h5", lambda p: p.write_bytes(b""), "empty")
    add("text.h5", lambda p: p.write_text("not,a,dump\n1,2,3\n"), "not an HDF5 or NPZ")
    add("corrupt.npz", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(range(200))), "NPZ")
    add(
        "pickle.npz",
        lambda p: np.savez(p, features=h, labels=np.array(list(y), dtype=object)),
        "unpickling",
    )

    def truncated(p):
        big, yb, _ = make_data(C=3, d=64, n=300)
        _h5(p, features=big, labels=yb)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])

    add("truncated.h5", truncated, "")
    return cases


def test_every_bad_input_exits_3_with_one_line(tmp_path, capsys):
    for name, (path, expect) in _bad_cases(tmp_path).items():
        before = file_digest(path)
        code = main(["report", str(path)])
        err = capsys.readouterr().err
        assert code == 3, (name, err)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1, (name, err)
        assert lines[0].startswith("ncinspect: error: ") and str(path) in lines[0], (name, err)
        assert expect in lines[0], (name, lines[0])
        assert "Traceback" not in err
        assert file_digest(path) == before, name


def test_missing_file_exits_3(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope.h5")]) == 3
    assert "no such file" in capsys.readouterr().err


def test_outputs_written_atomically_with_usual_permissions(run_file, tmp_path):
    import os

    js = tmp_path / "out" / "r.json"
    assert main(["report", str(run_file), "--json", str(js)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert (js.stat().st_mode & 0o777) == (0o666 & ~umask)
    assert not [p for p in js.parent.iterdir() if p.name.startswith(".ncinspect-")]


def test_directory_is_bad_input_and_unwritable_output_is_usage_error(run_file, tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 3
    assert "is a directory" in capsys.readouterr().err
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    assert main(["report", str(run_file), "--json", str(blocker / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "internal error" not in err
    assert main(["report", str(run_file), "--json", "-", "--csv", "-"]) == 2
