"""OOD scores (ncspan, nci, maxlogit) and their exact AUROC / FPR95: by hand, a direct
reference, streaming, Dask, dumps and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

import ncinspect
from ncinspect.analysis.api import analyze_file
from ncinspect.cli import main
from ncinspect.errors import UsageError
from ncinspect.io.writer import DumpWriter
from ncinspect.metrics.ood_scores import OODScorer, auroc, fpr95, score_chunk

from ..helpers import make_data

KEYS = [f"ood_{stat}_{s}" for stat in ("auroc", "fpr95") for s in ("ncspan", "nci", "maxlogit")]


def _auroc_by_hand(pos, neg):
    """The Mann-Whitney statistic by its definition: every (ID, OOD) pair."""
    total = 0.0
    for p in pos:
        for q in neg:
            total += 1.0 if p > q else 0.5 if p == q else 0.0
    return total / (len(pos) * len(neg))


def test_auroc_by_hand_with_ties():
    pos, neg = [3, 2, 2, 1], [2, 0, 4]
    # neg 2: one pos above, two tied (1 + 2/2); neg 0: four above; neg 4: none -> 6 / 12
    assert auroc(pos, neg) == 0.5
    assert auroc([1, 1], [1, 1, 1]) == 0.5
    assert auroc([2, 3], [0, 1]) == 1.0 and auroc([0, 1], [2, 3]) == 0.0
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos, neg = rng.integers(0, 6, rng.integers(1, 30)), rng.integers(0, 6, rng.integers(1, 30))
        assert auroc(pos, neg) == pytest.approx(_auroc_by_hand(pos, neg), abs=1e-15)
    assert auroc([], [1.0]) is None and auroc([1.0], []) is None


def test_fpr95_by_hand():
    pos = np.arange(1, 21)  # 20 ID rows: keeping 19 of them, the threshold is 2
    neg = [0, 1, 2, 2, 3, 25]
    assert fpr95(pos, neg) == 4 / 6
    assert fpr95(np.arange(1, 22), neg) == 4 / 6  # 21 rows: ceil(19.95) = 20 kept, t = 2
    assert fpr95(np.arange(1, 101), [5, 6, 7]) == 2 / 3  # 100 rows: 95 kept, t = 6
    ties = [5.0] * 10 + [1.0] * 10  # 19 must be kept: t = 1, every OOD row >= 1 counts
    assert fpr95(ties, [1.0, 0.5, 7.0]) == 2 / 3
    assert fpr95([1.0], []) is None


def _scores_reference(h_id, y, w, b, h_ood, alpha=0.0, center="classes"):
    """The three scores of ID and OOD rows from the spec alone (dense projector)."""
    classes = np.unique(y)
    mu = np.stack([h_id[y == c].mean(0) for c in classes])
    mu_g = mu.mean(0) if center == "classes" else h_id.mean(0)
    m = mu - mu_g
    proj = m.T @ np.linalg.pinv(m @ m.T) @ m  # projector on span(M~)

    def scores(h):
        x = h - mu_g
        span = np.linalg.norm(x @ proj, axis=1) / np.linalg.norm(x, axis=1)
        logits = h @ w.T + b
        pred = np.argmax(logits, axis=1)
        wp = w[pred]
        cos = np.sum(x * wp, 1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(wp, axis=1))
        return {
            "ncspan": span,
            "nci": cos - alpha * np.abs(h).sum(1),
            "maxlogit": logits.max(1),
        }

    return scores(h_id), scores(h_ood)


def _reference_keys(ids, ood):
    out = {}
    for s in ("ncspan", "nci", "maxlogit"):
        pos, neg = ids[s], ood[s]
        out[f"ood_auroc_{s}"] = _auroc_by_hand(pos, neg)
        k = int(np.ceil(0.95 * len(pos) - 1e-9))
        t = np.sort(pos)[::-1][k - 1]
        out[f"ood_fpr95_{s}"] = float(np.mean(neg >= t))
    return out


def _data(seed=0):
    h, y, m = make_data(C=4, d=9, n=15, offset=0.4, sigma=1.2, seed=seed)
    rng = np.random.default_rng(seed + 1)
    w = m + 0.3 * rng.standard_normal(m.shape)
    b = 0.2 * rng.standard_normal(4)
    ood = 1.5 * rng.standard_normal((33, 9)) + 0.5
    return h, y, w, b, ood


@pytest.mark.parametrize("alpha", [0.0, 0.05])
@pytest.mark.parametrize("center", ["classes", "samples"])
def test_direct_reference(alpha, center):
    h, y, w, b, ood = _data()
    res = ncinspect.analyze(
        h, y, weights=w, bias=b, ood_features=ood, nci_alpha=alpha, center=center
    )
    ref = _reference_keys(*_scores_reference(h, y, w, b, ood, alpha, center))
    for key in KEYS:
        assert res.metrics[key] == pytest.approx(ref[key], abs=1e-12), key
    assert 0.5 < res.metrics["ood_auroc_maxlogit"] < 1.0  # a case that is not trivial


def test_streaming_and_dask_equal_one_chunk():
    import dask.array as da

    h, y, w, b, ood = _data(seed=3)
    one = ncinspect.analyze(h, y, weights=w, bias=b, ood_features=ood).metrics
    many = ncinspect.analyze(h, y, weights=w, bias=b, ood_features=ood, chunk_rows=7).metrics
    dsk = ncinspect.analyze(
        da.from_array(h, chunks=(11, 9)), y, weights=w, bias=b,
        ood_features=da.from_array(ood, chunks=(8, 9)),
    ).metrics  # fmt: skip
    for key in KEYS:
        assert many[key] == pytest.approx(one[key], abs=1e-12), key
        assert dsk[key] == pytest.approx(one[key], abs=1e-12), key


def test_null_without_w_and_undefined_rows():
    h, y, w, b, ood = _data()
    res = ncinspect.analyze(h, y, ood_features=ood)
    assert res.metrics["ood_auroc_ncspan"] is not None
    for key in KEYS:
        if "ncspan" not in key:
            assert res.metrics[key] is None
            assert "no classifier W" in res.null_reasons[key]
    # an OOD row exactly at mu_G: ncspan and nci are undefined there, maxlogit is not
    mu_g = np.stack([h[y == c].mean(0) for c in range(4)]).mean(0)
    res = ncinspect.analyze(h, y, weights=w, bias=b, ood_features=np.vstack([ood, mu_g]))
    assert res.metrics["ood_auroc_ncspan"] is None and res.metrics["ood_auroc_nci"] is None
    assert "1 OOD row" in res.null_reasons["ood_auroc_ncspan"]
    assert res.metrics["ood_auroc_maxlogit"] is not None
    with pytest.raises(UsageError, match="nci_alpha"):
        ncinspect.analyze(h, y, ood_features=ood, nci_alpha=float("nan"))


def _dump(path, splits, weights, ood_sets):
    with DumpWriter(path, "w") as wr:
        for split, (h, y) in splits.items():
            s = wr.snapshot(f"{split}/epoch_1", epoch=1, split=split)
            s.append(features=h, labels=y)
            if weights is not None:
                s.write(weights=weights)
        for name, feats in ood_sets.items():
            s = wr.snapshot(f"{name}/epoch_1", epoch=1, split=name)
            s.append(features=feats)
    return path


def test_dump_scores_against_test_split_else_train(tmp_path):
    h, y, w, b, ood = _data()
    ht, yt, *_ = _data(seed=7)
    both = _dump(tmp_path / "a.h5", {"train": (h, y), "test": (ht, yt)}, w, {"ood": ood})
    rep = analyze_file(both)
    by = {r.split: r for r in rep}
    assert "ood_auroc_ncspan" not in by["train"].metrics
    ref = _reference_keys(*_scores_reference(ht, yt, w, 0.0, ood))
    for key in KEYS:
        assert by["test"].metrics[key] == pytest.approx(ref[key], abs=1e-12), key
    only = _dump(tmp_path / "b.h5", {"train": (h, y)}, w, {"ood_svhn": ood, "ood_noise": 2 * ood})
    (res,) = [r for r in analyze_file(only, chunk_rows=8) if r.split == "train"]
    ref = _reference_keys(*_scores_reference(h, y, w, 0.0, 2 * ood))
    for key in KEYS:
        assert res.metrics[f"{key}_noise"] == pytest.approx(ref[key], abs=1e-12), key
        assert f"{key}_svhn" in res.metrics and key not in res.metrics  # two named sets


def test_cli_table_csv_check_and_alpha(tmp_path):
    h, y, w, b, ood = _data()
    path = _dump(tmp_path / "c.h5", {"train": (h, y)}, w, {"ood": ood})
    out = tmp_path / "r.json"
    assert main(["report", str(path), "--json", str(out), "--nci-alpha", "0.05", "-q"]) == 0
    got = json.loads(out.read_text())["snapshots"]
    (train,) = [s for s in got if s["split"] == "train"]
    ref = _reference_keys(*_scores_reference(h, y, w, 0.0, ood, alpha=0.05))
    for key in KEYS:
        assert train["metrics"][key] == pytest.approx(ref[key], abs=1e-12), key
    csv = tmp_path / "r.csv"
    assert main(["report", str(path), "--csv", str(csv), "-q"]) == 0
    assert "ood_auroc_ncspan" in csv.read_text().splitlines()[0]
    auc = train["metrics"]["ood_auroc_ncspan"]
    assert main(["check", str(path), "--min", f"ood_auroc_ncspan={auc - 0.01}"]) == 0
    assert main(["check", str(path), "--min", f"ood_auroc_ncspan={auc + 0.01}"]) == 1


@pytest.mark.slow
def test_digits_example_runs():
    """examples/ood_digits.py end to end on one seed and a few epochs (real features)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "ood_digits.py"
    spec = importlib.util.spec_from_file_location("ood_digits", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.run([0], 3, (3,))
    (values,) = rows[3]
    got = dict(zip(mod.KEYS, values, strict=True))
    for key in KEYS:
        assert 0.0 <= got[key] <= 1.0, key
    assert got["accuracy_classifier"] > 0.5
    assert "| 3 |" in mod.table(rows)


def test_dump_on_the_dask_engine_equals_local(tmp_path):
    import pickle

    from ncinspect.analysis.scores import scorer_of
    from ncinspect.engines.dask import DaskEngine

    h, y, w, b, ood = _data(seed=2)
    path = _dump(tmp_path / "d.h5", {"train": (h, y)}, w, {"ood_svhn": ood})
    local = [r for r in analyze_file(path, chunk_rows=9) if r.split == "train"][0]
    with DaskEngine() as engine:
        dsk = [r for r in analyze_file(path, chunk_rows=9, engine=engine) if r.split == "train"][0]
    for key in KEYS:
        assert dsk.metrics[key] == pytest.approx(local.metrics[key], abs=1e-12), key
        assert dsk.metrics[f"{key}_svhn"] == dsk.metrics[key]  # one named set: both keys
    scorer = scorer_of(local)
    assert pickle.loads(pickle.dumps(scorer)).weights.shape == w.shape  # ships to workers


@pytest.mark.parametrize("gemv", [False, True], ids=["probed", "gemv"])
@pytest.mark.parametrize("d, C", [(37, 5), (2000, 3), (512, 100)])
def test_a_rows_scores_do_not_depend_on_its_chunk_or_its_place(d, C, gemv, monkeypatch):
    """Each row's scores are a function of that row alone, bit for bit: the rows scored all
    at once, in chunks of 1, 7 and 131 rows (the engine's walk) and in reverse order agree
    exactly. The BLAS products rounded a row by the number of rows in the call (1 ulp
    apart; with d = 2000 the call's blocks are 130 rows, so chunks mix full and short
    blocks; OpenBLAS's small-product kernel rounds rows 128-129 of those 130 otherwise).
    ``gemv``: the path of a BLAS whose probe fails (one matrix-vector product a row)."""
    from ncinspect.analysis.ood import ood_feature_sum
    from ncinspect.metrics import ood_scores

    if gemv:
        monkeypatch.setattr(ood_scores, "same_at_every_row", lambda rows, b_t: False)

    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, d))
    w = rng.standard_normal((C, d))
    basis = np.linalg.qr(rng.standard_normal((d, C - 1)))[0].T
    scorer = OODScorer(rng.standard_normal(d), basis, w, rng.standard_normal(C))
    ref = score_chunk(scorer, 0, x)
    rev = score_chunk(scorer, 0, x[::-1])
    for s in scorer.names():
        np.testing.assert_array_equal(rev.array(s)[::-1], ref.array(s), err_msg=s)
    for rows in (1, 7, 131):
        _, got = ood_feature_sum(x, rows=rows, scorer=scorer)
        for s in scorer.names():
            np.testing.assert_array_equal(got.array(s), ref.array(s), err_msg=f"{s} {rows}")
