"""DumpWriter never doubles a snapshot; appends within one writer still stream."""

from __future__ import annotations

import os
import re

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.errors import NCInspectError, UsageError

from ..helpers import make_data
from ..torchnet import loader, trained_mlp

README = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "README.md")


def _write(path, h, y, mode="a", **snap_kw):
    with ncinspect.DumpWriter(path, mode) as w:
        s = w.snapshot("epoch_0001", epoch=1, **snap_kw)
        for i in range(0, len(y), 9):  # many batches in one session: always fine
            s.append(features=h[i : i + 9], labels=y[i : i + 9])
        s.write(weights=np.ones((3, h.shape[1])))


def _rows(path, name="epoch_0001/features"):
    with h5py.File(path, "r") as f:
        return f[name].shape[0]


def test_second_writer_refused_and_file_unchanged(tmp_path):
    h, y, _ = make_data(C=3, d=4, n=10)
    path = tmp_path / "run.h5"
    _write(path, h, y)
    before = path.read_bytes()
    with pytest.raises(UsageError) as exc:
        _write(path, h, y)
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"{path}:/epoch_0001" in msg
    assert "append=True" in msg and "mode='w'" in msg and "replace=True" in msg
    assert _rows(path) == len(y)
    assert path.read_bytes() == before  # refused before anything was written
    assert ncinspect.analyze_file(path)[0].n_samples == len(y)


def test_explicit_append_replace_and_file_replace(tmp_path):
    h, y, _ = make_data(C=3, d=4, n=10)
    path = tmp_path / "run.h5"
    _write(path, h, y)
    _write(path, h, y, append=True)
    assert _rows(path) == 2 * len(y) and _rows(path, "epoch_0001/labels") == 2 * len(y)
    _write(path, h, y, mode="append")
    assert _rows(path) == 3 * len(y)
    _write(path, h[:12], y[:12], replace=True)
    assert _rows(path) == 12
    _write(path, h, y, mode="w")
    assert _rows(path) == len(y)
    with pytest.raises(UsageError):
        ncinspect.DumpWriter(path, "r+")
    with pytest.raises(UsageError):
        with ncinspect.DumpWriter(path) as w:
            w.snapshot("x", append=True, replace=True)


def test_new_snapshots_may_be_added_to_an_existing_file(tmp_path):
    h, y, _ = make_data(C=3, d=4, n=10)
    path = tmp_path / "run.h5"
    with ncinspect.DumpWriter(path, "w") as w:
        w.write("labels", y)
        w.snapshot("epoch_0001").append(features=h)
    with ncinspect.DumpWriter(path) as w:  # a later script adds the next epoch
        w.write("labels", y)  # whole arrays are replaced, never appended
        s = w.snapshot("epoch_0002")
        s.append(features=h[:15])
        w.snapshot("epoch_0002").append(features=h[15:])  # reopened within the session
    assert _rows(path, "labels") == len(y)
    assert _rows(path, "epoch_0001/features") == _rows(path, "epoch_0002/features") == len(y)


def test_flat_snapshot_rerun_refused(tmp_path):
    h, y, _ = make_data(C=3, d=4, n=10)
    path = tmp_path / "flat.h5"
    refused = []
    for _ in range(2):
        try:
            with ncinspect.DumpWriter(path) as w:
                w.snapshot("/").append(features=h, labels=y)
        except NCInspectError as exc:
            refused.append(str(exc))
    assert len(refused) == 1 and f"snapshot {path}:/ already holds" in refused[0]
    assert _rows(path, "features") == len(y)


def _readme_snippet() -> str:
    text = open(README, encoding="utf-8").read()
    section = text[text.index("### Writing a dump from PyTorch") :]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m and "DumpWriter" in m.group(1)
    return m.group(1)


def test_readme_snippet_twice_is_refused_not_doubled(tmp_path, monkeypatch):
    model, x, y = trained_mlp()
    code = _readme_snippet()
    monkeypatch.chdir(tmp_path)
    env = {"model": model, "train_loader": loader(x, y), "epoch": 5, "wd": 5e-4, "lr": 0.05}
    exec(compile(code, "README.md", "exec"), dict(env))
    first = ncinspect.analyze_file("run.h5")[0]
    assert first.n_samples == len(y) and first.metrics["nc3_self_duality"] is not None
    with pytest.raises(NCInspectError, match="append=True"):
        exec(compile(code, "README.md", "exec"), dict(env))
    again = ncinspect.analyze_file("run.h5")[0]
    assert again.n_samples == len(y)
    assert again.metrics == first.metrics
    # the documented way to rerun on purpose replaces the file
    replacing = code.replace('DumpWriter("run.h5")', 'DumpWriter("run.h5", mode="w")')
    assert replacing != code
    exec(compile(replacing, "README.md", "exec"), dict(env))
    assert ncinspect.analyze_file("run.h5")[0].n_samples == len(y)
