"""safetensors as a third container; PyTorch pickles refused unread; PyTorch key names."""

from __future__ import annotations

import json
import os
import pickle
import sys
import zipfile

import h5py
import numpy as np
import pytest
import safetensors.numpy
import safetensors.torch
import torch

import ncinspect
from ncinspect.cli import main
from ncinspect.dump import detect_format, open_dump
from ncinspect.errors import MissingArrayError, UnreadableFileError

from ..helpers import file_digest, make_data
from ..reference import reference_metrics
from ..torchnet import direct_arrays, trained_mlp


def _close(got, ref, rtol=1e-10):
    for key, value in ref.items():
        if value is None or isinstance(value, bool):
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=rtol, abs=1e-12), key


def test_state_dict_style_file_matches_direct_computation(tmp_path):
    model, x, y = trained_mlp()
    h, out, w, b = direct_arrays(model, x)
    path = tmp_path / "dump.safetensors"
    safetensors.numpy.save_file(
        {"features": h, "labels": y.numpy(), "logits": out, "fc.weight": w, "fc.bias": b},
        str(path),
        metadata={"epoch": "5", "split": "train", "loss": "cross_entropy"},
    )
    assert detect_format(str(path)) == "safetensors"
    res = ncinspect.analyze_file(path, chunk_rows=17)[0]
    assert (res.epoch, res.split, res.meta["loss"]) == (5, "train", "cross_entropy")
    _close(res.metrics, reference_metrics(h, y.numpy(), W=w, b=b, outputs=out))


def test_groups_metadata_and_inheritance(tmp_path):
    h, y, m = make_data(C=3, d=4, n=10)
    path = tmp_path / "run.st"  # recognised by content, not by suffix
    tensors = {"labels": y, "test/labels": y[:12]}
    for e in (0, 10):
        tensors[f"epoch_{e:04d}/features"] = h + e
        tensors[f"epoch_{e:04d}/weights"] = m
        tensors[f"test/epoch_{e:04d}/features"] = h[:12] + e
    meta = {
        "epoch_0010/meta": json.dumps({"learning_rate": 0.1, "class_names": ["a", "b", "c"]}),
        "test/split": "test",
        "weight_decay": "0.0005",
    }
    safetensors.numpy.save_file(tensors, str(path), metadata=meta)
    rep = ncinspect.analyze_file(path)
    got = {(r.name, r.epoch, r.split, r.n_samples) for r in rep}
    assert got == {
        ("/epoch_0000", 0, None, 30),
        ("/epoch_0010", 10, None, 30),
        ("/test/epoch_0000", 0, "test", 12),
        ("/test/epoch_0010", 10, "test", 12),
    }
    last = next(r for r in rep if r.name == "/epoch_0010")
    assert last.meta["learning_rate"] == 0.1 and last.meta["weight_decay"] == 0.0005
    assert last.meta["class_names"] == ["a", "b", "c"]
    assert last.metrics["nc3_self_duality"] is not None
    ref = reference_metrics(h + 10, y, W=m)
    _close(last.metrics, ref)


def test_bfloat16_tensors_read_exactly(tmp_path):
    rng = np.random.default_rng(5)
    h = torch.tensor(rng.standard_normal((45, 6))).bfloat16()
    y = torch.arange(45) % 3
    w = torch.tensor(rng.standard_normal((3, 6))).bfloat16()
    path = tmp_path / "bf16.safetensors"
    safetensors.torch.save_file({"features": h, "labels": y, "weights": w}, str(path))
    with open_dump(path) as d:
        snap = d.snapshots[0]
        assert snap.features.dtype == np.float32
        assert np.array_equal(snap.features.read(), h.float().numpy())
        assert np.array_equal(snap.features.read(10, 20), h[10:20].float().numpy())
    res = ncinspect.analyze_file(path, chunk_rows=8)[0]
    ref = reference_metrics(h.double().numpy(), y.numpy(), W=w.double().numpy())
    _close(res.metrics, ref)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_float8_read_exactly(tmp_path, dtype):
    rng = np.random.default_rng(6)
    h = torch.tensor(rng.standard_normal((30, 4)) * 3).to(dtype)
    bits = torch.arange(256, dtype=torch.uint8).view(dtype)  # every bit pattern
    y = np.arange(30) % 3
    path = tmp_path / "f8.safetensors"
    safetensors.torch.save_file({"features": h, "labels": torch.tensor(y), "all": bits}, str(path))
    with open_dump(path) as d:
        got = d.snapshots[0].features.read()
        every = d.tree.arrays["all"].read()
    assert np.array_equal(got, h.float().numpy())
    want = bits.float().numpy()
    assert np.array_equal(np.isnan(every), np.isnan(want))
    assert np.array_equal(every[~np.isnan(want)], want[~np.isnan(want)])
    res = ncinspect.analyze_file(path)[0]
    _close(res.metrics, reference_metrics(h.double().numpy(), y))


def test_unsupported_dtype_refused_only_when_used(tmp_path, capsys):
    h, y, _ = make_data(C=3, d=4, n=10)
    path = tmp_path / "c.safetensors"
    tensors = {
        "features": torch.tensor(h),
        "labels": torch.tensor(y),
        "extra": torch.tensor(h).to(torch.complex64),
    }
    safetensors.torch.save_file(tensors, str(path))
    assert ncinspect.analyze_file(path)[0].n_samples == len(y)
    assert main(["report", str(path), "--features-key", "extra"]) == 3
    err = capsys.readouterr().err
    assert f"{path}:/extra" in err and "complex64" in err


def test_ddp_prefix_and_torchvision_classifier(tmp_path):
    model, x, y = trained_mlp()
    h, out, w, b = direct_arrays(model, x)
    ref = reference_metrics(h, y.numpy(), W=w, b=b)
    # DistributedDataParallel: every state-dict name starts with "module."
    ddp = {f"module.{k}": v.numpy() for k, v in model.state_dict().items()}
    for fmt in ("safetensors", "npz", "h5"):
        path = tmp_path / f"ddp.{fmt}"
        arrays = {"features": h, "labels": y.numpy(), **ddp}
        if fmt == "safetensors":
            safetensors.numpy.save_file(arrays, str(path))
        elif fmt == "npz":
            np.savez(path, **arrays)
        else:
            with h5py.File(path, "w") as f:
                for k, v in arrays.items():
                    f[k] = v
        res = ncinspect.analyze_file(path)[0]
        _close(res.metrics, ref)
        assert not any("taken as the classifier" in wn for wn in res.warnings)
    # torchvision VGG/AlexNet naming: classifier.0 / .3 / .6 (two candidates of width d)
    d = w.shape[1]
    rng = np.random.default_rng(0)
    vgg = {
        "features.0.weight": rng.standard_normal((d, 3, 3, 3)),  # a conv: 4-D, never taken
        "classifier.0.weight": rng.standard_normal((d, 40)),
        "classifier.0.bias": rng.standard_normal(d),
        "classifier.3.weight": rng.standard_normal((d, d)),
        "classifier.3.bias": rng.standard_normal(d),
        "classifier.6.weight": w,
        "classifier.6.bias": b,
    }
    path = tmp_path / "vgg.safetensors"
    safetensors.numpy.save_file({"features": h, "labels": y.numpy(), **vgg}, str(path))
    res = ncinspect.analyze_file(path)[0]
    _close(res.metrics, ref)
    note = [wn for wn in res.warnings if "taken as the classifier" in wn]
    assert len(note) == 1
    assert f"{path}:/classifier.6.weight" in note[0] and "classifier.6.bias" in note[0]
    assert "--weights-key" in note[0]
    # and the JSON report says so too
    js = tmp_path / "r.json"
    assert main(["report", str(path), "--json", str(js)]) == 0
    assert "classifier.6.weight" in json.dumps(json.loads(js.read_text())["snapshots"][0])
    # explicit keys still win
    other = ncinspect.analyze_file(
        path, keys={"weights": "classifier.3.weight", "bias": "classifier.3.bias"}
    )[0]
    assert other.metrics["nc3_self_duality"] != res.metrics["nc3_self_duality"]
    assert not any("taken as the classifier" in wn for wn in other.warnings)


def test_lm_head_without_bias(tmp_path):
    h, y, m = make_data(C=5, d=6, n=8)
    path = tmp_path / "lm.safetensors"
    safetensors.numpy.save_file(
        {"features": h, "labels": y, "lm_head.weight": m, "norm.weight": np.ones(6)}, str(path)
    )
    res = ncinspect.analyze_file(path)[0]
    _close(res.metrics, reference_metrics(h, y, W=m))
    assert any(f"{path}:/lm_head.weight: taken as" in wn for wn in res.warnings)


class _Marker:
    """Unpickling this object creates a directory: proof that a file was (not) unpickled."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_torch_files_refused_without_unpickling(tmp_path, capsys):
    marker = str(tmp_path / "unpickled")
    payload = pickle.dumps({"features": _Marker(marker)}, protocol=2)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(payload)
    zipped = tmp_path / "model.pth"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("model/data.pkl", payload)
        zf.writestr("model/version", "3\n")
    real = tmp_path / "real.pt"
    torch.save({"features": torch.ones(4, 2), "labels": torch.arange(4)}, real)
    for path in (legacy, zipped, real):
        before = file_digest(path)
        assert main(["report", str(path)]) == 3
        err = capsys.readouterr().err
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and "Traceback" not in err
        assert str(path) in lines[0] and "never unpickles" in lines[0]
        assert "from safetensors.torch import save_file" in lines[0]
        assert "DumpWriter" in lines[0]
        assert file_digest(path) == before
        with pytest.raises(UnreadableFileError):
            detect_format(str(path))
    assert not os.path.exists(marker)


def test_missing_package_message(tmp_path, monkeypatch):
    h, y, _ = make_data(C=3, d=4, n=10)
    path = tmp_path / "x.safetensors"
    safetensors.numpy.save_file({"features": h, "labels": y}, str(path))
    monkeypatch.setitem(sys.modules, "safetensors", None)  # as if not installed
    with pytest.raises(UnreadableFileError, match=r"pip install 'ncinspect\[safetensors\]'"):
        ncinspect.analyze_file(path)


def test_corrupt_header_exits_3(tmp_path, capsys):
    h, y, _ = make_data(C=3, d=4, n=10)
    good = tmp_path / "g.safetensors"
    safetensors.numpy.save_file({"features": h, "labels": y}, str(good))
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) - 40])  # tensor bytes past the end of the file
    bad_json = tmp_path / "json.safetensors"
    n = int.from_bytes(data[:8], "little")
    bad_json.write_bytes(data[:8] + b"{" + b"x" * (n - 1) + data[8 + n :])
    for path in (cut, bad_json):
        assert main(["report", str(path)]) == 3
        err = capsys.readouterr().err
        assert len([ln for ln in err.splitlines() if ln.strip()]) == 1 and str(path) in err


def test_not_found_errors_list_arrays_and_key_options(tmp_path):
    h, y, _ = make_data(C=3, d=4, n=10)
    path = tmp_path / "odd.safetensors"
    safetensors.numpy.save_file({"penult_h": h, "cls": y}, str(path))
    with pytest.raises(MissingArrayError) as exc:
        ncinspect.analyze_file(path)
    msg = str(exc.value)
    assert "/penult_h (30, 4)" in msg and "/cls (30,)" in msg and "--features-key" in msg
    with pytest.raises(MissingArrayError) as exc:
        ncinspect.analyze_file(path, keys={"features": "penult_h"})
    msg = str(exc.value)
    assert "no labels" in msg and "/cls (30,)" in msg and "--labels-key" in msg
    res = ncinspect.analyze_file(path, keys={"features": "penult_h", "labels": "cls"})[0]
    assert res.n_samples == 30
