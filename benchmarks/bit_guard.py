"""Every output of ncinspect on a spread of inputs, as text, so that speed work can be held
byte for byte to the code it started from.

Run from the repository root (not part of the test suite)::

    python benchmarks/bit_guard.py OLD_CHECKOUT old.json   # e.g. a `git worktree` of the base
    python benchmarks/bit_guard.py . new.json
    python benchmarks/bit_guard.py --compare old.json new.json   # "0 differ", else the cases

Each run imports ncinspect from the checkout it is given (an editable install is bypassed)
and writes, per case, the JSON of the result with every float as its ``repr``:
``analyze()`` over some 90 configurations (float16/32/64 and integer inputs, biases, stored
outputs, exact classifier ties, rows of zeros, equal classes, equal classifier rows, absent
classes, ``min_class_count``, offsets, tiny scales, one-hot and text labels, given NCC
centres, a bootstrap, chunking, float32 products, spectra, OOD sets, C up to 80), and
``ncinspect report --json`` over two generated dumps and the checkout's ``sample_data/`` on
one and two worker processes (with ``--per-class --spectra`` and ``--chunk-rows 9``). BLAS
runs on one thread. Temporary files go to a temporary folder, removed at the end.

The eleventh stop's speed work was measured with it and with instruction counts, which no
other load on the machine moves (docs/performance.md)::

    PYTHONHASHSEED=0 OPENBLAS_NUM_THREADS=1 valgrind --tool=cachegrind --cache-sim=no \
        --cachegrind-out-file=/dev/null python LOOP.py N   # two N: the slope per snapshot
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path


def strip_editable(root):
    """Import ncinspect from ``root``: an editable install's finder would take another."""
    sys.meta_path = [
        f
        for f in sys.meta_path
        if "editable" not in (type(f).__module__ + getattr(f, "__name__", "")).lower()
    ]
    sys.path.insert(0, root)


def canon(x):
    """``x`` as plain JSON data, every float as its ``repr`` (the last bit shows)."""
    import numpy as np

    if isinstance(x, dict):
        return {str(k): canon(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [canon(v) for v in x]
    if isinstance(x, np.ndarray):
        return canon(x.tolist())
    if isinstance(x, (np.floating, float)):
        return repr(float(x))
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    return repr(x)


def configs(np):
    """``(name, features, labels, analyze() keywords)`` of every analyze() case."""
    rng = np.random.default_rng(1234)
    out = []

    def add(name, f, y, **kw):
        out.append((name, f, y, kw))

    for dt in ("f4", "f8"):
        for n, d, C in [(40, 8, 4), (200, 16, 10), (300, 5, 12), (90, 64, 3), (400, 30, 80)]:
            f = rng.standard_normal((n, d)).astype(dt) + np.repeat(
                rng.standard_normal((C, d)), -(-n // C), 0
            )[:n].astype(dt)
            y = np.arange(n) % C
            W = rng.standard_normal((C, d)).astype(dt)
            b = rng.standard_normal(C).astype(dt)
            add(f"plain-{dt}-{n}-{d}-{C}", f, y)
            add(f"w-{dt}-{n}-{d}-{C}", f, y, weights=W)
            add(f"wb-{dt}-{n}-{d}-{C}", f, y, weights=W, bias=b, per_class=True)
            add(f"wb-chunk-{dt}-{n}-{d}-{C}", f, y, weights=W, bias=b, chunk_rows=7)
            add(f"wb-f32prec-{dt}-{n}-{d}-{C}", f, y, weights=W, bias=b, engine="f32")
            add(f"samples-{dt}-{n}-{d}-{C}", f, y, weights=W, center="samples")
            if d <= 64:
                add(f"spectra-{dt}-{n}-{d}-{C}", f, y, weights=W, spectra=True)
            add(
                f"ood-{dt}-{n}-{d}-{C}",
                f,
                y,
                weights=W,
                ood_features=rng.standard_normal((30, d)).astype(dt),
            )
            add(f"outputs-{dt}-{n}-{d}-{C}", f, y, outputs=(f.astype("f8") @ W.T.astype("f8")))
    # degenerate
    n, d, C = 60, 6, 4
    y = np.arange(n) % C
    fi = rng.integers(-3, 4, (n, d)).astype("f8")
    Wi = rng.integers(-2, 3, (C, d)).astype("f8")
    add("int-ties", fi, y, weights=Wi)
    add("int-ties-f32", fi.astype("f4"), y, weights=Wi.astype("f4"))
    fz = rng.standard_normal((n, d))
    fz[::5] = 0
    add("zero-rows", fz, y, weights=rng.standard_normal((C, d)))
    add("zero-rows-bias", fz, y, weights=np.zeros((C, d)), bias=np.array([0.5, 1.0, 1.0, 0.2]))
    same = np.tile(rng.standard_normal((n // C, d)), (C, 1))
    ys = np.repeat(np.arange(C), n // C)
    add("equal-classes", same, ys, weights=rng.standard_normal((C, d)))
    We = np.tile(rng.standard_normal((1, d)), (C, 1))
    add("equal-clf-rows", rng.standard_normal((n, d)), y, weights=We)
    add("absent-class", rng.standard_normal((n, d)), y % 3, weights=rng.standard_normal((C, d)))
    add(
        "min-count",
        rng.standard_normal((n, d)),
        np.r_[np.zeros(3, int), np.arange(n - 3) % C],
        weights=rng.standard_normal((C, d)),
        min_class_count=5,
    )
    add("offset", rng.standard_normal((n, d)) + 1e6, y, weights=rng.standard_normal((C, d)))
    add("tiny", rng.standard_normal((n, d)) * 1e-200, y, weights=rng.standard_normal((C, d)))
    add("ints", rng.integers(0, 9, (n, d)), y, weights=rng.standard_normal((C, d)))
    add(
        "f16",
        rng.standard_normal((n, d)).astype("f2"),
        y,
        weights=rng.standard_normal((C, d)).astype("f2"),
    )
    add("onehot", rng.standard_normal((n, d)), np.eye(C)[y], weights=rng.standard_normal((C, d)))
    add(
        "strings",
        rng.standard_normal((n, d)),
        np.array(["a", "b", "c", "d"])[y],
        weights=rng.standard_normal((C, d)),
        class_names=["a", "b", "c", "d"],
    )
    add(
        "ncc-given",
        rng.standard_normal((n, d)),
        y,
        weights=rng.standard_normal((C, d)),
        ncc_centres=rng.standard_normal((C, d)),
    )
    add(
        "bootstrap",
        rng.standard_normal((n, d)),
        y,
        weights=rng.standard_normal((C, d)),
        bootstrap=3,
    )
    add("one-class", rng.standard_normal((n, d)), np.zeros(n, int))
    add(
        "two-rows",
        rng.standard_normal((2, d)),
        np.array([0, 1]),
        weights=rng.standard_normal((2, d)),
    )
    return out


def dumps(np, h5py, tmp):
    """Two HDF5 dumps in ``tmp``: 60 small snapshots (a bias on every third), and train/test
    splits of 12 epochs each with their own labels."""
    rng = np.random.default_rng(99)
    files = []
    p = os.path.join(tmp, "bench.h5")
    with h5py.File(p, "w") as f:
        n, d, C = 40, 8, 4
        f["labels"] = np.arange(n) % C
        for e in range(60):
            g = f.create_group(f"epoch_{e:05d}")
            g["features"] = rng.standard_normal((n, d)).astype("f4")
            g["weights"] = rng.standard_normal((C, d)).astype("f4")
            if e % 3 == 0:
                g["bias"] = rng.standard_normal(C).astype("f4")
            g.attrs["epoch"] = e
    files.append(p)
    p = os.path.join(tmp, "splits.h5")
    with h5py.File(p, "w") as f:
        n, d, C = 50, 6, 5
        for split in ("train", "test"):
            for e in range(12):
                g = f.create_group(f"{split}/epoch_{e:03d}")
                g["features"] = rng.standard_normal((n, d)) + (np.arange(n) % C)[:, None]
                g["labels"] = np.arange(n) % C
                g["weights"] = rng.standard_normal((C, d))
                g.attrs["epoch"] = e
    files.append(p)
    return files


def main():
    if len(sys.argv) != (4 if sys.argv[1:2] == ["--compare"] else 3):
        raise SystemExit(__doc__)
    if sys.argv[1] == "--compare":
        a, b = (json.loads(Path(x).read_text()) for x in sys.argv[2:4])
        bad = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        for k in bad[:40]:
            print("DIFFERS:", k)
            A, B = json.dumps(a.get(k), sort_keys=True), json.dumps(b.get(k), sort_keys=True)
            i = next((j for j in range(min(len(A), len(B))) if A[j] != B[j]), min(len(A), len(B)))
            print("   A:", A[max(0, i - 120) : i + 120])
            print("   B:", B[max(0, i - 120) : i + 120])
        print(f"{len(a)} vs {len(b)} cases; {len(bad)} differ")
        sys.exit(1 if bad else 0)
    root, out_path = sys.argv[1], sys.argv[2]
    strip_editable(root)
    import h5py
    import numpy as np

    import ncinspect

    assert ncinspect.__file__.startswith(os.path.abspath(root)), ncinspect.__file__
    from threadpoolctl import threadpool_limits

    from ncinspect import analyze
    from ncinspect.cli import main as cli
    from ncinspect.engines.local import LocalEngine

    res = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name, f, y, kw in configs(np):
            kw = dict(kw)
            if kw.pop("engine", None) == "f32":
                kw["engine"] = LocalEngine(threads=1, precision="float32")
            else:
                kw["engine"] = LocalEngine(threads=1)
            try:
                r = analyze(f, y, **kw)
                d = r.to_dict()
                arr = getattr(r, "arrays", None)
                d["_arrays"] = None if arr is None else {k: v for k, v in vars(arr).items()}
                res["analyze:" + name] = json.dumps(canon(d), sort_keys=True)
            except Exception as exc:  # noqa: BLE001 - a refusal is an output too
                res["analyze:" + name] = "ERROR " + type(exc).__name__ + ": " + str(exc)
    with tempfile.TemporaryDirectory() as tmp:
        files = dumps(np, h5py, tmp)
        sd = os.path.join(os.path.abspath(root), "sample_data")
        files += [os.path.join(sd, x) for x in ("trained_wd.h5", "synthetic.h5", "regression.h5")]
        for fpath in files:
            for extra in (
                ["--threads", "1"],
                ["--threads", "2"],
                ["--per-class", "--spectra", "--threads", "2"],
                ["--chunk-rows", "9", "--threads", "1"],
            ):
                o = os.path.join(tmp, "o.json")
                with (
                    contextlib.redirect_stdout(io.StringIO()),
                    contextlib.redirect_stderr(io.StringIO()),
                ):
                    rc = cli(["report", fpath, "--json", o, "--quiet", *extra])
                key = f"report:{os.path.basename(fpath)}:{' '.join(extra)}"
                if rc != 0:
                    res[key] = f"rc {rc}"
                    continue
                doc = json.loads(Path(o).read_text())
                doc.pop("ncinspect_version", None)
                text = json.dumps(doc, sort_keys=True).replace(tmp, "TMP")
                res[key] = text.replace(json.dumps(sd)[1:-1], "SAMPLE_DATA")  # either tree
    Path(out_path).write_text(json.dumps(res, sort_keys=True))
    print(f"{len(res)} cases written to {out_path}")


if __name__ == "__main__":
    main()
