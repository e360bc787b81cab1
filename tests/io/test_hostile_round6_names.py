"""Two names for one thing, round six: look-alike names, ``..`` components, and state-dict
names spelled with dots and slashes mixed (issue 22 item 3's class, hidden variants).

Each case is refused in one line naming both spellings (exit 3), in every container, and the
input is left as it was."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from safetensors.numpy import save_file

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import AmbiguousArrayError

from ..helpers import file_digest, make_data, write_npz_members

#: names that differ from the first only in what shows nothing, blanks around it or Unicode
#: normalisation (the rule class names follow)
LOOKALIKES = [
    ("features", "features\u200b"),  # zero-width space
    ("features", "\ufefffeatures"),  # BOM
    ("features", "features\u200e"),  # left-to-right mark
    ("features", "features "),  # a trailing blank
    ("labels", " labels"),
    ("\u00e9/features", "e\u0301/features"),  # precomposed and decomposed e-acute groups
    ("a/features", "a\u2060/features"),  # word joiner in a group name
]


def _data():
    h, y, m = make_data(C=3, d=4, n=6)
    return h.astype(np.float32), y, m.astype(np.float32)


def _write(fmt: str, path, arrays: dict[str, np.ndarray]) -> None:
    if fmt == "safetensors":
        save_file(arrays, str(path))
    elif fmt == "npz":
        write_npz_members(path, {f"{k}.npy": v for k, v in arrays.items()})
    else:
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v


def _refused(path, capsys, *names) -> str:
    before = file_digest(path)
    with pytest.raises(AmbiguousArrayError) as info:
        ncinspect.analyze_file(path)
    for name in names:
        assert ascii(name) in str(info.value) or repr(name) in str(info.value), str(info.value)
    for command in ("report", "info"):
        assert main([command, str(path)]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
    assert file_digest(path) == before
    return str(info.value)


@pytest.mark.parametrize("fmt", ["safetensors", "npz", "hdf5"])
@pytest.mark.parametrize("first,second", LOOKALIKES)
def test_names_that_look_the_same_are_refused(tmp_path, capsys, fmt, first, second):
    h, y, m = _data()
    arrays = {"labels": y, "features": h, "weights": m}
    arrays[first] = y if first.strip() == "labels" else h
    arrays[second] = y[::-1].copy() if second.strip() == "labels" else h + 1
    path = tmp_path / f"look.{'h5' if fmt == 'hdf5' else fmt}"
    _write(fmt, path, arrays)
    # the message names the two differing components, escaped so they are told apart
    a, b = next((p, q) for p, q in zip(first.split("/"), second.split("/"), strict=True) if p != q)
    message = _refused(path, capsys, a, b)
    assert "look the same" in message


def test_metadata_keys_that_look_the_same_are_refused(tmp_path, capsys):
    h, y, _ = _data()
    path = tmp_path / "attrs.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"] = h, y
        f.attrs["epoch"], f.attrs["epoch\u200b"] = 1, 2
    assert "metadata keys" in _refused(path, capsys, "epoch", "epoch\u200b")


def test_distinct_names_are_not_called_lookalikes(tmp_path):
    """Names that differ in what shows (case, full-width letters, another script, a joiner
    that changes how a script renders) are different names, as for class names."""
    h, y, m = _data()
    for other in ("Features", "\uff46eatures", "feature\u0455", "a\u200db"):
        path = tmp_path / "ok.safetensors"
        save_file({"features": h, "labels": y, "weights": m, other: h + 1}, str(path))
        assert ncinspect.analyze_file(path).snapshots[0].metrics["nc1"] is not None


@pytest.mark.parametrize("fmt", ["safetensors", "npz"])
@pytest.mark.parametrize("name", ["../features", "a/../a/features", "a/b/../../labels"])
def test_a_dotdot_component_is_refused(tmp_path, capsys, fmt, name):
    h, y, m = _data()
    arrays = {"features": h, "labels": y, "a/features": h, name: h + 1}
    path = tmp_path / f"dots.{fmt}"
    _write(fmt, path, arrays)
    message = _refused(path, capsys, name + (".npy" if fmt == "npz" else ""))
    assert "'..'" in message


def test_a_dotdot_metadata_key_is_refused(tmp_path, capsys):
    h, y, _ = _data()
    path = tmp_path / "meta.safetensors"
    save_file({"features": h, "labels": y}, str(path), metadata={"a/../epoch": "3"})
    _refused(path, capsys, "a/../epoch")


@pytest.mark.parametrize(
    "first,second",
    [
        ("fc.weight", "module.fc/weight"),  # a mix of dots and slashes
        ("classifier.weight", "module/classifier.weight"),
        ("fc.weight", "module._orig_mod.fc.weight"),  # DDP around torch.compile
        ("fc.weight", "_orig_mod.module.fc.weight"),
        ("head.bias", "module._orig_mod/head/bias"),
    ],
)
@pytest.mark.parametrize("fmt", ["safetensors", "hdf5"])
def test_state_dict_names_spelled_two_ways_are_refused(tmp_path, capsys, fmt, first, second):
    h, y, m = _data()
    part = m if first.endswith("weight") else np.zeros(3, np.float32)
    arrays = {"features": h, "labels": y, first: part, second: part * 2}
    path = tmp_path / f"sd.{'h5' if fmt == 'hdf5' else fmt}"
    _write(fmt, path, arrays)
    _refused(path, capsys, first, second)


def test_a_doubly_wrapped_name_alone_is_the_classifier(tmp_path):
    h, y, m = _data()
    path = tmp_path / "wrapped.safetensors"
    save_file({"features": h, "labels": y, "module._orig_mod.fc.weight": m}, str(path))
    snap = ncinspect.analyze_file(path).snapshots[0]
    assert snap.metrics["nc3_duality_cos"] is not None
    assert not any("taken as the classifier" in w for w in snap.warnings)


@pytest.mark.parametrize("nested", ["l/weight", "l/bias"])
def test_the_classifier_fallback_refuses_a_name_stored_two_ways(tmp_path, capsys, nested):
    """No alias matches: the last ``*.weight`` of shape (C, d) is taken, unless the same
    state-dict entry (or its bias) is also stored nested."""
    h, y, m = _data()
    arrays = {"features": h, "labels": y, "l.weight": m, "l.bias": np.zeros(3, np.float32)}
    arrays[nested] = arrays[nested.replace("/", ".")] * 2
    path = tmp_path / "fallback.safetensors"
    save_file(arrays, str(path))
    _refused(path, capsys, nested.replace("/", "."), nested)


def test_a_listed_name_shows_its_invisible_characters(tmp_path, capsys):
    """``--features-key feats`` against a file holding ``feats`` + a zero-width space: the
    refusal listed the file's arrays with the character raw, so it read as holding 'feats'."""
    h, y, _ = _data()
    path = tmp_path / "key.safetensors"
    save_file({"feats\u200b": h, "labels": y}, str(path))
    assert main(["report", str(path), "--features-key", "feats"]) == 3
    err = capsys.readouterr().err
    assert "/feats\\u200b (18, 4)" in err and "\u200b" not in err, err


@pytest.mark.parametrize("what", ["split", "layer"])
@pytest.mark.parametrize("other", ["{}\u200b", " {}", "{}\ufeff"])
def test_splits_or_layers_that_look_the_same_are_refused(tmp_path, capsys, what, other):
    """Two trajectories (or two rows of the depth table) under one shown name: the splits
    ``test`` and ``test`` + a zero-width space, the layers ``block4`` and ``block4 ``."""
    h, y, m = _data()
    base = "test" if what == "split" else "block4"
    path = tmp_path / "values.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for epoch in (1, 2):
            for i, value in enumerate((base, other.format(base))):
                g = f.create_group(f"e{epoch}/g{i}")
                g["features"] = h * (epoch + i)
                g.attrs["epoch"], g.attrs[what] = epoch, value
    message = _refused(path, capsys, base, other.format(base))
    assert f"the {what}s" in message and "look the same" in message


@pytest.mark.parametrize(
    "present,dangling,shown",
    [
        ("H", "features", "features"),
        ("features", "feats", "feats"),
        ("labels", "y", "y"),
        ("e1/weights", "e1/fc.weight", "fc.weight"),
        ("e1/weights", "e1/classifier/weight", "classifier/weight"),  # nested, in a subgroup
    ],
)
def test_an_alias_that_is_a_link_to_nothing_beside_another_is_refused(
    tmp_path, capsys, present, dangling, shown
):
    """HDF5 soft links named as a role's alias but leading nowhere (the dataset deleted):
    the other alias was taken with no word of it (``info`` alone noted the dangling link).
    Naming the array with ``--<role>-key`` still reads the file."""
    h, y, m = _data()
    path = tmp_path / "dangling.h5"
    arrays = {"labels": y, "e1/features": h, "e1/weights": m}
    if present in ("H", "features"):
        arrays = {"labels": y, present: h}
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            f[name] = value
        f[dangling] = h5py.SoftLink("/deleted/array")
    assert "link to nothing" in _refused(path, capsys, shown)
    role = {"H": "features", "features": "features", "labels": "labels"}.get(present, "weights")
    rep = ncinspect.analyze_file(path, keys={role: present.rsplit("/", 1)[-1]})
    assert rep.snapshots


# -- train --dataset: the same rule for X, y, X_test and y_test --------------------------------


def _train_data(fmt: str, path, names: dict[str, str]) -> None:
    """An X/y data set for ``train --dataset`` with its arrays stored under ``names``."""
    h, y, _ = make_data(C=3, d=4, n=10)
    arrays = {"X": h, "y": y, "X_test": h[:6], "y_test": y[:6]}
    _write(fmt, path, {names.get(k, k): v for k, v in arrays.items()})


def _train_refused(path, tmp_path, capsys, *words) -> str:
    before = file_digest(path)
    out = tmp_path / "run.h5"
    args = ["train", "-o", str(out), "--dataset", str(path), "--epochs", "1", "--quiet"]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    assert file_digest(path) == before and not out.exists()
    return err


@pytest.mark.parametrize("fmt", ["npz", "h5"])
@pytest.mark.parametrize("key,other", [("X", "X\u200b"), ("y", "\ufeffy"), ("X_test", "X_test ")])
def test_train_dataset_names_that_look_the_same_are_refused(tmp_path, capsys, fmt, key, other):
    """``X`` beside ``X`` + a zero-width space: ``train --dataset`` read the exact name while
    every listing shows two arrays alike; the dump readers refuse it, and now so does it."""
    path = tmp_path / f"data.{fmt}"
    _train_data(fmt, path, {})
    if fmt == "h5":
        with h5py.File(path, "a") as f:
            f[other] = f[key][()]
    else:
        h, y, _ = make_data(C=3, d=4, n=10)
        arrays = {"X": h, "y": y, "X_test": h[:6], "y_test": y[:6], other: y}
        write_npz_members(path, {f"{k}.npy": v for k, v in arrays.items()})
    _train_refused(path, tmp_path, capsys, ascii(other), "look the same")


@pytest.mark.parametrize("fmt", ["npz", "h5"])
def test_train_dataset_with_only_a_lookalike_says_so(tmp_path, capsys, fmt):
    """No ``y``, only ``y`` + a word joiner: said as such (the user sees a ``y``)."""
    path = tmp_path / f"data.{fmt}"
    _train_data(fmt, path, {"y": "y\u2060"})
    _train_refused(path, tmp_path, capsys, "'y\\u2060' looks like 'y' but is not")


def test_train_dataset_with_unrelated_names_is_read(tmp_path):
    """Other arrays (even two that look alike) beside X and y are no concern of train."""
    from ncinspect.train.data import from_file

    path = tmp_path / "data.h5"
    _train_data("h5", path, {})
    with h5py.File(path, "a") as f:
        f["notes"], f["notes\u200b"] = np.arange(3), np.arange(3)
    data = from_file(path, np.random.default_rng(0))
    assert data.X.shape == (10 * 3, 4) and data.X_test.shape == (6, 4)
