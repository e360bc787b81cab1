"""The theory table names its columns for what they are (a norm or mean; an RMS relative
error over entries) and, on a network with biases, says once that the identities are for
bias-free nets instead of printing rows of "missing"."""

from __future__ import annotations

import json

import h5py
import numpy as np

from ncinspect.cli import main
from ncinspect.render.theory import LEGEND, MEASURED, REL_ERROR


def _dump(path, bias):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 30)
    m = 3 * rng.standard_normal((4, 8))
    with h5py.File(path, "w") as f:
        f["features"] = m[y] + rng.standard_normal((120, 8))
        f["labels"], f["weights"] = y, m
        if bias:
            f["bias"] = rng.standard_normal(4)
    return path


def test_columns_and_legend(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert main(["theory", str(_dump(tmp_path / "nobias.h5", False))]) == 0
    out = capsys.readouterr().out
    assert MEASURED in out and REL_ERROR in out
    assert out.count(LEGEND[:40]) == 1
    assert "missing" in out  # without a bias the missing inputs are listed with how to record


def test_biased_network_says_it_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    path = _dump(tmp_path / "bias.h5", True)
    assert main(["theory", str(path)]) == 0
    out = capsys.readouterr().out
    assert "missing" not in out
    assert out.count("bias-free") == 1
    assert "classifier_row_cosines" not in out and "cos(W_L^c" in out  # rows with numbers stay
    js = tmp_path / "t.json"
    assert main(["theory", str(path), "--json", str(js)]) == 0
    lines = json.loads(js.read_text())["snapshots"][0]["theory"]["lines"]
    assert any(line["status"] == "missing" for line in lines)  # JSON keeps every line
