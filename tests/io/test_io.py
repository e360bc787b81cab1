"""Reading dumps: formats by content, snapshots, aliases, inheritance, labels, streaming NPZ."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ncinspect
from ncinspect.dump import open_dump
from ncinspect.errors import (
    AmbiguousArrayError,
    InvalidDataError,
    MissingArrayError,
    ShapeMismatchError,
    UnreadableFileError,
    UnsupportedDtypeError,
)

from ..helpers import make_data


def _flat_h5(path, h, y, w=None, names=("features", "labels", "weights")):
    with h5py.File(path, "w") as f:
        f[names[0]] = h
        f[names[1]] = y
        if w is not None:
            f[names[2]] = w


def test_flat_hdf5_and_npz_give_the_same_numbers(tmp_path):
    h, y, m = make_data()
    _flat_h5(tmp_path / "a.dat", h, y, m)  # suffix does not matter: content decides
    np.savez(tmp_path / "b.bin", features=h, labels=y, weights=m)
    ra = ncinspect.analyze_file(tmp_path / "a.dat")
    rb = ncinspect.analyze_file(tmp_path / "b.bin.npz")
    direct = ncinspect.analyze(h, y, weights=m)
    assert len(ra) == len(rb) == 1 and ra[0].name == "/"
    for key, value in direct.metrics.items():
        assert ra[0].metrics[key] == value == rb[0].metrics[key]


def test_multi_snapshot_inheritance_and_epochs(tmp_path):
    h, y, m = make_data(C=3, d=6, n=10)
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f.attrs["weight_decay"] = 5e-4
        for ep in (0, 10):
            g = f.create_group(f"epoch_{ep:04d}")
            g["features"] = h + ep
            g["weights"] = m
            g.attrs["loss"] = 1.0 / (ep + 1)
            lg = g.create_group("layer_1")
            lg["features"] = h[:, :4]  # a hidden layer: inherits labels, not the classifier
        f.create_group("test")["labels"] = y[::-1]
        f["test"].create_group("ep7")["H"] = h  # alias + epoch parsed from 'ep7'
    with open_dump(path) as dump:
        snaps = {s.name: s for s in dump.snapshots}
        assert set(snaps) == {
            "/epoch_0000",
            "/epoch_0000/layer_1",
            "/epoch_0010",
            "/epoch_0010/layer_1",
            "/test/ep7",
        }
        s = snaps["/epoch_0010"]
        assert s.epoch == 10 and s.weights is not None and s.meta["weight_decay"] == 5e-4
        assert s.meta["loss"] == pytest.approx(1 / 11)
        hidden = snaps["/epoch_0010/layer_1"]
        assert hidden.layer == "layer_1" and hidden.weights is None and hidden.labels is not None
        test = snaps["/test/ep7"]
        assert test.epoch == 7 and test.split == "test"
        assert np.array_equal(test.labels.read_all(), y[::-1])
        assert [x.name for x in dump.select("epoch_*")] == [
            "/epoch_0000",
            "/epoch_0000/layer_1",
            "/epoch_0010",
            "/epoch_0010/layer_1",
        ]
        assert [x.name for x in dump.select("*/layer_1")] == [
            "/epoch_0000/layer_1",
            "/epoch_0010/layer_1",
        ]


def test_ambiguous_aliases_are_an_error(tmp_path):
    h, y, _ = make_data()
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["features"] = h
        f["H"] = h
        f["labels"] = y
    with pytest.raises(AmbiguousArrayError, match="'features' and 'H'"):
        open_dump(tmp_path / "x.h5")
    # an explicit key resolves it
    with open_dump(tmp_path / "x.h5", keys={"features": "H"}) as d:
        assert d.snapshots[0].features.where.endswith("/H")


def test_explicit_keys_and_state_dict_names(tmp_path):
    h, y, m = make_data()
    np.savez(tmp_path / "x.npz", penult_feats=h, gt=y, **{"fc.weight": m, "fc.bias": np.zeros(5)})
    rep = ncinspect.analyze_file(
        tmp_path / "x.npz", keys={"features": "penult_feats", "labels": "gt"}
    )
    assert rep[0].metrics["nc3_self_duality"] is not None
    with pytest.raises(MissingArrayError, match="tried features, H"):
        open_dump(tmp_path / "x.npz")


@pytest.mark.parametrize("kind", ["strings", "bytes", "noncontiguous", "onehot", "floatints"])
def test_label_encodings_agree(tmp_path, kind):
    h, y, m = make_data(C=4, d=6, n=12)
    names = np.array(["cat", "dog", "emu", "fox"])
    labels = {
        "strings": names[y],
        "bytes": names[y].astype("S"),
        "noncontiguous": np.array([3, 10, 42, 99])[y],
        "onehot": np.eye(4)[y],
        "floatints": y.astype(np.float32),
    }[kind]
    path = tmp_path / "l.h5"
    with_w = kind != "noncontiguous"  # integer labels are rows of W: 3..99 are not
    with h5py.File(path, "w") as f:
        f["features"] = h
        f["labels"] = labels if kind != "strings" else labels.astype(h5py.string_dtype())
        if with_w:
            f["weights"] = m
        if kind in ("strings", "bytes"):
            f["class_names"] = names.astype(h5py.string_dtype())  # the order of W's rows
    got = ncinspect.analyze_file(path, per_class=True)[0]
    ref = ncinspect.analyze(h, y, weights=m if with_w else None)
    assert got.metrics == ref.metrics
    if kind in ("strings", "bytes"):
        assert got.class_names == ["cat", "dog", "emu", "fox"]


def test_bad_labels(tmp_path):
    h, y, _ = make_data(C=3, n=5)
    with pytest.raises(InvalidDataError, match="fractional value 0.5 at row 2"):
        ncinspect.analyze(h, np.where(np.arange(len(y)) == 2, 0.5, y))
    with pytest.raises(InvalidDataError, match="fewer than two classes"):
        ncinspect.analyze(h, np.zeros(len(y)))
    with pytest.raises(ShapeMismatchError, match="labels have 14 rows but features has N = 15"):
        ncinspect.analyze(h, y[:-1])
    with pytest.raises(InvalidDataError, match="not one-hot"):
        ncinspect.analyze(h, np.full((len(y), 3), 1 / 3))
    with pytest.raises(InvalidDataError, match=r"store them as shape \(15,\)"):
        ncinspect.analyze(h, np.asarray(y)[:, None])  # codes in one column: (N, 1)


def test_nan_features_reported_with_count_and_first_row():
    h, y, _ = make_data()
    h[17, 2] = np.nan
    h[30, 0] = np.inf
    with pytest.raises(InvalidDataError, match="2 row\\(s\\) hold NaN/Inf values, first at row 17"):
        ncinspect.analyze(h, y, chunk_rows=8)


def test_npz_object_arrays_are_refused(tmp_path):
    h, y, _ = make_data()
    np.savez(tmp_path / "p.npz", features=h, labels=np.array(list(y), dtype=object))
    with pytest.raises(UnsupportedDtypeError, match="unpickling"):
        ncinspect.analyze_file(tmp_path / "p.npz")


def test_npz_streams_stored_members_and_reads_compressed_whole(tmp_path):
    h, y, m = make_data(d=10)
    h = h.astype(np.float32)
    np.savez(
        tmp_path / "s.npz",
        **{
            "epoch_0001/features": h,
            "labels": y,
            "epoch_0001/meta": np.array(json.dumps({"split": "train"})),
        },
    )
    np.savez_compressed(tmp_path / "c.npz", features=h, labels=y)
    with open_dump(tmp_path / "s.npz") as d:
        src = d.snapshots[0].features
        assert src._data_offset is not None  # stored: rows read by offset
        assert np.array_equal(src.read(5, 9), h[5:9])
        assert d.snapshots[0].split == "train" and d.snapshots[0].epoch == 1
    with open_dump(tmp_path / "c.npz") as d:
        src = d.snapshots[0].features
        assert src._data_offset is None
        assert np.array_equal(src.read(5, 9), h[5:9])


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "empty"),
        (b"hello world, not a dump", "not an HDF5 or NPZ"),
        (b"\x89HDF\r\n\x1a\n" + b"\0" * 100, "not a readable HDF5"),
        (b"PK\x03\x04garbage", "NPZ"),
    ],
)
def test_unreadable_files(tmp_path, content, match):
    p = tmp_path / "bad.h5"
    p.write_bytes(content)
    with pytest.raises(UnreadableFileError, match=match):
        open_dump(p)


def test_truncated_hdf5(tmp_path):
    h, y, _ = make_data(n=400, d=64)
    p = tmp_path / "t.h5"
    _flat_h5(p, h, y)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableFileError):
        ncinspect.analyze_file(p)


# ---------------------------------------------------------------------------------------
# DumpWriter round trips
# ---------------------------------------------------------------------------------------
def test_writer_batches_and_metadata_round_trip(tmp_path):
    h, y, m = make_data(C=3, d=5, n=20)
    path = tmp_path / "w.h5"
    with ncinspect.DumpWriter(path, "w") as w:
        w.write("labels", y)
        s = w.snapshot(
            "epoch_0003", epoch=3, split="train", class_names=["a", "b", "c"], config={"lr": 0.1}
        )
        for i in range(0, len(y), 7):
            s.append(features=h[i : i + 7].astype(np.float32))
        s.write(weights=m)
        s.write_params([np.eye(5), m])
    with open_dump(path) as d:
        snap = d.snapshots[0]
        assert snap.features.shape == h.shape and snap.epoch == 3
        assert snap.meta["class_names"] == ["a", "b", "c"] and snap.meta["config"] == {"lr": 0.1}
        assert sorted(snap.params) == ["W1", "W2"]
    res = ncinspect.analyze_file(path, per_class=True)[0]
    assert [r["class"] for r in res.per_class] == ["a", "b", "c"]


def test_writer_interrupted_leaves_readable_file(tmp_path):
    h, y, _ = make_data(C=3, d=5, n=20)
    path = tmp_path / "i.h5"
    with pytest.raises(KeyboardInterrupt):
        with ncinspect.DumpWriter(path, "w") as w:
            w.write("labels", y)
            w.snapshot("epoch_0001").append(features=h)
            w.snapshot("epoch_0002").append(features=h[:10])
            raise KeyboardInterrupt
    with open_dump(path) as d:  # the interrupted snapshot (half its rows) is left out, said
        assert [s.name for s in d.snapshots] == ["/epoch_0001"]
        assert any("/epoch_0002 skipped: it is incomplete" in n for n in d.notes)
    assert ncinspect.analyze_file(path, snapshot="epoch_0001")[0].n_samples == len(y)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    C=st.integers(2, 6),
    d=st.integers(1, 9),
    n=st.integers(1, 6),
    dtype=st.sampled_from([np.float16, np.float32, np.float64, np.int32]),
    fmt=st.sampled_from(["h5", "npz"]),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_dumps_round_trip(tmp_path, C, d, n, dtype, fmt, seed):
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.repeat(np.arange(C), n))
    h = (rng.standard_normal((len(y), d)) * 10).astype(dtype)
    w = rng.standard_normal((C, d))
    path = tmp_path / f"h.{fmt}"
    if fmt == "h5":
        with ncinspect.DumpWriter(path, "w") as wr:
            wr.write("labels", y)
            s = wr.snapshot("ep1")
            s.append(features=h[: len(y) // 2])
            s.append(features=h[len(y) // 2 :])
            s.write(weights=w)
    else:
        np.savez(path, **{"ep1/features": h, "labels": y, "ep1/weights": w})
    got = ncinspect.analyze_file(path, chunk_rows=3)[0]
    ref = ncinspect.analyze(h, y, weights=w)
    assert got.epoch == 1
    for key, value in ref.metrics.items():
        if value is None or isinstance(value, bool):
            assert got.metrics[key] == value
        else:
            assert got.metrics[key] == pytest.approx(value, rel=1e-9, abs=1e-12)


def test_layer_epoch_split_resolved_nearest_first(tmp_path):
    # root metadata must not override what a nearer group (or its name) says
    h, y, m = make_data(C=3, d=6, n=10)
    path = tmp_path / "n.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f.attrs.update({"split": "train", "epoch": 300})
        g = f.create_group("epoch_0300")
        g.attrs["layer"] = "penultimate"
        g["features"], g["weights"] = h, m
        g.create_group("layer_1")["features"] = h[:, :3]
        t = f.create_group("test")
        t["labels"] = y
        t.create_group("epoch_0010")["features"] = h
        f.create_group("layers")["features"] = h  # not a layer_<k> group: inherits W
        f["weights"] = m
    with open_dump(path) as d:
        snaps = {s.name: s for s in d.snapshots}
    assert snaps["/epoch_0300/layer_1"].layer == "layer_1"
    assert snaps["/epoch_0300/layer_1"].weights is None
    assert snaps["/test/epoch_0010"].split == "test" and snaps["/test/epoch_0010"].epoch == 10
    assert snaps["/layers"].layer is None and snaps["/layers"].weights is not None
    assert snaps["/layers"].epoch == 300 and snaps["/layers"].split == "train"


def test_explicit_key_that_names_nothing_is_an_error(tmp_path):
    h, y, m = make_data()
    _flat_h5(tmp_path / "k.h5", h, y, m)
    with pytest.raises(MissingArrayError, match="--weights-key 'nope' names no array"):
        open_dump(tmp_path / "k.h5", keys={"weights": "nope"})


def test_test_split_uses_own_means_unless_train_is_asked(tmp_path):
    h, y, m = make_data(C=3, d=6, n=30, sigma=1.5)
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for split, shift in (("train", 0.0), ("test", 0.7)):
            g = f.create_group(f"{split}/epoch_0001")
            g["features"], g["weights"] = h + shift, m
    own = ncinspect.analyze_file(path, snapshot="/test/*")[0]
    assert own.ncc_centres == "own"
    assert own.metrics == ncinspect.analyze(h + 0.7, y, weights=m).metrics
    train = ncinspect.analyze_file(path, snapshot="/test/*", ncc_centres="train")[0]
    assert train.ncc_centres == "train:/train/epoch_0001"
    means = ncinspect.analyze(h, y).arrays.means
    direct = ncinspect.analyze(h + 0.7, y, weights=m, ncc_centres=means)
    assert direct.ncc_centres == "given"
    assert train.metrics == direct.metrics


def test_file_being_written_is_read_without_the_lock_with_a_note(tmp_path):
    import subprocess
    import sys

    h, y, _ = make_data(C=3, d=5, n=10)
    path = tmp_path / "live.h5"
    writer = ncinspect.DumpWriter(path, "w")  # this process holds the write lock
    try:
        writer.write("labels", y)
        with writer.snapshot("epoch_0001") as snap:  # finished: complete while the file is open
            snap.append(features=h)
        cmd = [sys.executable, "-c", "from ncinspect.cli import main; main()"]
        run = subprocess.run(
            [*cmd, "report", str(path), "--json", "-"], capture_output=True, text=True, timeout=120
        )
    finally:
        writer.close()
    assert run.returncode == 0, run.stderr
    snap = json.loads(run.stdout)["snapshots"][0]
    assert snap["n_samples"] == len(y)
    assert any("open for writing elsewhere" in w for w in snap["warnings"])
