"""The Lightning callback under DDP (issue 23 item 6): two CPU processes (gloo), the validation
split laid out so that one rank sees no row of class 3. Every rank logs the same numbers, those
of one process over all rows: equal to analyze() on the whole split with the final weights,
and to a single-process fit of the same data (to float32 training rounding)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

import ncinspect

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, os.pardir, os.pardir))
SCRIPT = os.path.join(HERE, "ddp_lightning.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fit(out, devices: int) -> list[dict]:
    out.mkdir()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT, *filter(None, [env.get("PYTHONPATH")])])
    env.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), OMP_NUM_THREADS="1")
    env["TMPDIR"] = str(out)
    proc = subprocess.run(
        [sys.executable, SCRIPT, str(out), str(devices)],
        cwd=out,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    records = []
    for rank in range(devices):
        with open(out / f"rank{rank}.json") as f:
            records.append(json.load(f))
    return records


def _key(r):
    return (r["epoch"], r["split"], r["layer"])


@pytest.mark.slow
def test_ddp_with_a_class_absent_on_one_rank_equals_one_process(tmp_path):
    sys.path.insert(0, HERE)
    try:
        import ddp_lightning as script
    finally:
        sys.path.remove(HERE)
    ddp = _fit(tmp_path / "ddp", 2)
    (single,) = _fit(tmp_path / "single", 1)
    assert [r["world_size"] for r in ddp] == [2, 2] and single["world_size"] == 1

    # the layout holds: rank 1 saw no class 3, rank 0 did
    assert 3 in ddp[0]["val_labels_seen"] and 3 not in ddp[1]["val_labels_seen"]
    assert sorted(ddp[0]["val_labels_seen"] + ddp[1]["val_labels_seen"]) == sorted(
        single["val_labels_seen"]
    )

    # every rank holds the same numbers, bit for bit
    assert ddp[0]["results"] == ddp[1]["results"]
    results = {_key(r): r for r in ddp[0]["results"]}
    assert set(results) == {
        (e, s, layer) for e in (1, 2) for s in ("train", "val") for layer in (None, "body.1")
    }
    assert all(r["n"] == 96 if r["split"] == "train" else r["n"] == 24 for r in results.values())

    # those of one process over every row: analyze() with the final weights ...
    _, _, xv, yv = script.data()
    model = script.Net()
    weights = np.load(tmp_path / "ddp" / "weights.npz")
    model.load_state_dict({k: torch.from_numpy(weights[k]) for k in weights.files})
    with torch.no_grad():
        hidden = model.body[:2](xv).double().numpy()
        h = model.body(xv).double().numpy()
    want = {
        None: ncinspect.analyze(
            h,
            yv.numpy(),
            weights=weights["fc.weight"].astype(float),
            bias=weights["fc.bias"].astype(float),
        ).metrics,
        "body.1": ncinspect.analyze(hidden, yv.numpy()).metrics,
    }
    for layer, metrics in want.items():
        got = results[(2, "val", layer)]["metrics"]
        for key, value in metrics.items():
            if value is None or not isinstance(value, (int, float)):
                continue
            assert got[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (layer, key)
        assert metrics["nc1"] is not None

    # ... and a single-process fit of the same global batches
    for r in single["results"]:
        got = results[_key(r)]["metrics"]
        for key, value in r["metrics"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-6), (_key(r), key)
            else:
                assert got[key] == value, (_key(r), key)
