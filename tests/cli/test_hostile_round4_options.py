"""Hostile round four, class 7 (integer options): the train and sweep settings that round
three left unbounded. Each value is one usage line (exit 2) before any work: never a run
that does not end (``--depth 1e9`` built a tuple of 1e9 widths), an internal error
(``--depth 2**64+5``, ``--class-counts 5,2**64+5``, ``--mnist1d-samples -3``) or a silent
nonsense run (``--step-every -3`` raised the learning rate every epoch)."""

from __future__ import annotations

import pytest

from ncinspect.cli import main

BIG = str(2**64 + 5)


def _last_line(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    lines = captured.err.strip().splitlines()
    assert lines, "no message"
    return lines[-1]


@pytest.mark.parametrize(
    "args,words",
    [
        (["--depth", BIG], "depth must be in"),
        (["--depth", str(10**9)], "depth must be in"),
        (["--depth", "65"], "depth must be in"),
        (["--class-counts", f"5,{BIG}"], "class_counts"),
        (["--n-classes", "2", "--class-counts", "5,100000000000"], "class_counts"),
        (["--dataset", "mnist1d", "--mnist1d-samples", "-3"], "mnist1d_samples"),
        (["--dataset", "mnist1d", "--mnist1d-samples", "0"], "mnist1d_samples"),
        (["--schedule", "step", "--step-every", "-3"], "step_every"),
    ],
)
@pytest.mark.parametrize("command", ["train", "sweep"])
def test_train_settings_out_of_range_are_one_usage_line(tmp_path, capsys, command, args, words):
    out = tmp_path / ("t.h5" if command == "train" else "sw")
    if command == "sweep":
        # sweep takes a few settings as options and the rest through --set FIELD=VALUE
        as_options = {"--depth", "--dataset"}
        pairs = list(zip(args[::2], args[1::2], strict=True))
        args = [
            x
            for opt, val in pairs
            for x in (
                [opt, val] if opt in as_options else ["--set", f"{opt[2:].replace('-', '_')}={val}"]
            )
        ]
        argv = ["sweep", "-o", str(out), "--epochs", "1", *args]
    else:
        argv = ["train", "-o", str(out), "-q", "--epochs", "1", *args]
    assert main(argv) == 2
    line = _last_line(capsys)
    assert words in line
    assert len(line) < 400
    assert not out.exists()


def test_sweep_weight_decays_are_bounded_in_number(tmp_path, capsys):
    out = tmp_path / "sw"
    many = ",".join(["1e-3"] * 1001)
    assert main(["sweep", "-o", str(out), "--epochs", "1", "--weight-decays", many]) == 2
    line = _last_line(capsys)
    assert "--weight-decays" in line and "1000" in line
    assert not out.exists()


@pytest.mark.parametrize("decays", ["1e-3,0.001", "0.001,0.0010000001", "0.5,0,5e-1"])
def test_sweep_two_weight_decays_of_one_dump_name_are_refused(tmp_path, capsys, decays):
    """Two lambdas whose dumps share a name (``wd_0.001.h5``): the second run replaced the
    first one's dump and both rows of sweep.json named the same file."""
    out = tmp_path / "sw"
    argv = ["sweep", "-o", str(out), "--epochs", "1", "--depth", "2", "--width", "4"]
    assert main([*argv, "--weight-decays", decays]) == 2
    line = _last_line(capsys)
    assert "would both write" in line and "wd_" in line
    assert not out.exists()


@pytest.mark.parametrize("name", ["wd_0.001.h5", "sweep.json", "headline.md", "wd_0.001.link"])
def test_sweep_never_writes_over_its_dataset(tmp_path, capsys, name):
    """``sweep --dataset runs/wd_0.001.h5 -o runs``: round three replaced the data file with
    the first run's dump (the second run then failed reading it), or with sweep.json; train
    refused the same for its -o. A link or hard link to such a file is the same file."""
    import os

    import h5py
    import numpy as np

    out = tmp_path / "runs"
    out.mkdir()
    rng = np.random.default_rng(0)
    data = tmp_path / "data.h5"
    with h5py.File(data, "w") as f:
        f["X"], f["y"] = rng.standard_normal((40, 6)), np.arange(40) % 4
    before = data.read_bytes()
    if name.endswith(".link"):
        os.link(data, out / "wd_0.001.h5")  # the dump name is a hard link to the data
        given = data
    else:
        os.replace(data, out / name)
        given = out / name
    argv = ["sweep", "--dataset", str(given), "-o", str(out), "--epochs", "1", "--depth", "2"]
    seeds = ["--seeds", "2"] if name == "headline.md" else []
    assert main([*argv, "--width", "4", "--weight-decays", "1e-3,2e-3", *seeds]) == 3
    assert "is the input file" in _last_line(capsys)
    assert given.read_bytes() == before


def test_long_paths_and_keys_of_words_are_clipped_in_error_lines(tmp_path, capsys):
    """Class 11: a path (or key) of words, ``a b c/a b c/...``, has spaces, so the CLI's
    last guard (runs of more than 160 characters without a space) never cut it: round three
    printed error lines of 2,900-4,000 characters echoing it whole. Now each command-line
    value is clipped where a message quotes it, as given or as its absolute path or folder."""
    import os

    import h5py

    from ..helpers import make_data

    folder = tmp_path.joinpath(*[("a b c d e " * 19)[:190]] * 12)
    folder.mkdir(parents=True)
    h, y, m = make_data(C=3, d=4, n=6)
    run = folder / "run.h5"
    with h5py.File(run, "w") as f:
        f["features"], f["labels"], f["weights"] = h, y, m
    (folder / "bad.h5").write_text("not a dump")
    (folder / "c.toml").write_text("[check]\nmax = {nc1 = 'x'}\n")
    cases = [
        ["report", str(folder / "bad.h5")],
        ["report", str(run), "--json", str(run)],
        ["check", str(run), "--config", str(folder / "c.toml")],
        ["report", str(run), "--features-key", "no pe " * 700],
        ["train", "-o", str(folder / "bad.h5" / "t.h5"), "--epochs", "1", "-q"],
        ["plot", str(run), "-o", str(folder / "bad.h5" / "x")],
    ]
    for argv in cases:
        assert main(argv) in (2, 3)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        longest = max(len(line) for line in err.splitlines())
        assert longest < 800, (argv[0], longest)
    assert os.path.exists(run)


def _data_file(tmp_path, kind):
    import pickle
    import zlib

    import h5py
    import numpy as np

    path = tmp_path / f"data_{kind}"
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 6)), np.arange(40) % 4
    if kind == "pickle0":
        path.write_bytes(pickle.dumps({"X": X.tolist(), "y": y.tolist()}, protocol=0))
    elif kind == "pickle4":
        path.write_bytes(pickle.dumps({"X": X, "y": y}, protocol=4))
    elif kind == "external_storage":
        raw = tmp_path / "elsewhere.bin"
        raw.write_bytes(X.astype("<f8").tobytes())
        with h5py.File(path, "w") as f:
            f.create_dataset("X", shape=X.shape, dtype="<f8", external=[(str(raw), 0, X.nbytes)])
            f["y"] = y
    elif kind == "external_link":
        with h5py.File(tmp_path / "other.h5", "w") as f:
            f["X"] = X
        with h5py.File(path, "w") as f:
            f["X"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/X")
            f["y"] = y
    elif kind == "fifo":
        import os

        os.mkfifo(path)
    elif kind == "npy_twice":  # X.npy and X: numpy's np.load(f)["X"] reads the second
        import io
        import zipfile

        with zipfile.ZipFile(path, "w") as zf:
            for name, value in (("X.npy", X), ("X", 9 * X), ("y.npy", y)):
                buf = io.BytesIO()
                np.save(buf, value)
                zf.writestr(name, buf.getvalue())
    elif kind == "huge_chunk":  # 4.5 GiB of zeros declared, a few MB stored
        with h5py.File(path, "w") as f:
            shape = (9 * 2**22, 16)
            ds = f.create_dataset(
                "X", shape=shape, dtype="f8", chunks=(2**22, 16), compression="gzip"
            )
            ds.id.write_direct_chunk((0, 0), zlib.compress(b"\0" * (2**22 * 16 * 8), 1))
            f["y"] = np.zeros(shape[0], dtype=np.int64)
    return str(path)


@pytest.mark.parametrize(
    "kind,words",
    [
        ("pickle0", "is a Python pickle"),
        ("pickle4", "is a Python pickle"),
        ("external_storage", "external storage"),
        ("external_link", "external link"),
        ("huge_chunk", "declares"),
        ("npy_twice", "does not pick one"),
        ("fifo", "is a FIFO"),  # was 'is a directory'
    ],
)
def test_train_dataset_file_is_read_as_a_dump_is(tmp_path, capsys, kind, words):
    """``train --dataset FILE`` read its own way: a pickle was 'not an NPZ or HDF5 file'
    (class 10: say pickle), HDF5 external storage and external links were followed (the
    dump readers refuse them), and a small file declaring a huge compressed X was inflated
    whole (4.4 GB resident for 2 GiB declared) before any check."""
    data = _data_file(tmp_path, kind)
    out = tmp_path / "t.h5"
    assert main(["train", "--dataset", data, "-o", str(out), "-q", "--epochs", "0"]) == 3
    line = _last_line(capsys)
    assert words in line and "data_" in line
    assert not out.exists()


@pytest.fixture(scope="module")
def one_sweep(tmp_path_factory):
    import json

    out = tmp_path_factory.mktemp("s") / "sw"
    argv = ["sweep", "-o", str(out), "--epochs", "1", "--depth", "2", "--width", "4"]
    assert main([*argv, "--weight-decays", "2e-3"]) == 0
    return json.loads((out / "sweep.json").read_text())


@pytest.mark.parametrize(
    "case",
    ["not_json", "object", "deep", "no_wd", "few_keys", "metric_text", "norms_text", "fifo"],
)
def test_sweep_extend_checks_the_earlier_sweep_json_before_any_run(
    tmp_path, capsys, one_sweep, case
):
    """``sweep --extend`` read the earlier sweep.json after every run had trained: a damaged
    or hand-edited one was an internal error (TypeError, KeyError, JSONDecodeError,
    RecursionError, ValueError: exit 4) and a FIFO a wait forever. Now it is checked first:
    one line naming the file, exit 3, nothing trained or written."""
    import json
    import os

    out = tmp_path / "sw"
    out.mkdir()
    target = out / "sweep.json"
    row = one_sweep[0]
    content = {
        "not_json": "not json",
        "object": json.dumps({"rows": []}),
        "deep": "[" * 100_000 + "]" * 100_000,
        "no_wd": json.dumps([{"x": 1}]),
        "few_keys": json.dumps([{"weight_decay": 0.002, "seed": 0}]),
        "metric_text": json.dumps([dict(row, metrics={k: "abc" for k in row["metrics"]})]),
        "norms_text": json.dumps([dict(row, layer_norms_sq="x")]),
    }.get(case)
    if case == "fifo":
        os.mkfifo(target)
    else:
        target.write_text(content)
    argv = ["sweep", "-o", str(out), "--extend", "--epochs", "1", "--depth", "2"]
    assert main([*argv, "--width", "4", "--weight-decays", "1e-3"]) == 3
    assert "sweep.json" in _last_line(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["sweep.json"]


def test_sweep_extend_still_grows_a_good_sweep(tmp_path, capsys, one_sweep):
    import json

    out = tmp_path / "sw"
    out.mkdir()
    (out / "sweep.json").write_text(json.dumps(one_sweep))
    argv = ["sweep", "-o", str(out), "--extend", "--epochs", "1", "--depth", "2"]
    assert main([*argv, "--width", "4", "--weight-decays", "1e-3"]) == 0
    rows = json.loads((out / "sweep.json").read_text())
    assert [r["weight_decay"] for r in rows] == [1e-3, 2e-3]
