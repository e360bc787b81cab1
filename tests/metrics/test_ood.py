"""OOD snapshots and nc5_ood_orthogonality: known answers, reference, pairing, CLI, Dask."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from ncinspect.analysis.api import analyze_file
from ncinspect.cli import main
from ncinspect.engines.dask import DaskEngine
from ncinspect.io.writer import DumpWriter
from ncinspect.metrics.ood import (
    FeatureSum,
    class_mean_bounds,
    is_ood_split,
    nc5_key,
    ood_orthogonality,
)

from ..helpers import make_data
from ..reference import reference_nc5


def _write(path, snaps, labels=None):
    """snaps: list of (group, meta, features, weights-or-None)."""
    with DumpWriter(path, "w") as w:
        if labels is not None:
            w.write("labels", labels)
        for group, meta, feats, weights in snaps:
            s = w.snapshot(group, **meta)
            s.append(features=feats)
            if weights is not None:
                s.write(weights=weights)
    return path


def _id_and_ood(seed=0, n_ood=37):
    h, y, m = make_data(C=4, d=8, n=20, offset=0.7, seed=seed)
    rng = np.random.default_rng(seed)
    ood = rng.standard_normal((n_ood, 8)) + rng.standard_normal(8)
    return h, y, m, ood


def test_split_names():
    assert is_ood_split("ood") and is_ood_split("ood_svhn") and not is_ood_split("test")
    assert nc5_key("ood") == "nc5_ood_orthogonality"
    assert nc5_key("ood_svhn") == "nc5_ood_orthogonality_svhn"


def test_orthogonal_gives_zero_and_parallel_gives_one(tmp_path):
    rng = np.random.default_rng(1)
    d = 6
    # class means in span(e0, e1, e2); the OOD mean along e4 (rows +-v around it)
    means = np.zeros((3, d))
    means[:, :3] = rng.standard_normal((3, 3)) + 2.0
    y = np.repeat(np.arange(3), 10)
    h = means[y] + np.concatenate([np.zeros((30, 3)), np.zeros((30, d - 3))], axis=1)
    v = np.zeros(d)
    v[[0, 5]] = rng.standard_normal(2)
    e4 = np.eye(d)[4] * 3.0
    ood = np.stack([e4 + v, e4 - v] * 5)
    path = _write(
        tmp_path / "o.h5",
        [
            ("epoch_1", {"epoch": 1, "split": "train"}, h, None),
            ("ood/epoch_1", {"epoch": 1, "split": "ood"}, ood, None),
        ],
        labels=y,
    )
    res = analyze_file(path).snapshots[0]
    assert res.metrics["nc5_ood_orthogonality"] < 1e-15
    # parallel: every class mean a (signed) multiple of the OOD mean
    g = rng.standard_normal(d)
    h2 = np.array([2.0, -0.5, 1.5])[y][:, None] * g
    path2 = _write(
        tmp_path / "p.h5",
        [
            ("epoch_1", {"epoch": 1}, h2, None),
            ("ood/epoch_1", {"epoch": 1, "split": "ood"}, np.tile(3 * g, (4, 1)), None),
        ],
        labels=y,
    )
    assert abs(analyze_file(path2).snapshots[0].metrics["nc5_ood_orthogonality"] - 1) < 1e-14


def test_matches_reference_and_streaming(tmp_path):
    h, y, m, ood = _id_and_ood()
    path = _write(
        tmp_path / "r.h5",
        [
            ("epoch_3", {"epoch": 3, "split": "train"}, h, m),
            ("ood/epoch_3", {"epoch": 3, "split": "ood"}, ood, None),
        ],
        labels=y,
    )
    ref = reference_nc5(h, y, ood)
    for rows in (1, 5, 1000):
        got = analyze_file(path, chunk_rows=rows).snapshots[0].metrics["nc5_ood_orthogonality"]
        assert got == pytest.approx(ref, rel=1e-12)
    with DaskEngine() as eng:
        got = analyze_file(path, engine=eng, chunk_rows=9).snapshots[0].metrics
    assert got["nc5_ood_orthogonality"] == pytest.approx(ref, rel=1e-12)


def test_invariances():
    h, y, m, ood = _id_and_ood(seed=2)
    present = np.ones(4, bool)
    means = np.stack([h[y == c].mean(0) for c in range(4)])
    base = ood_orthogonality(means, present, ood.mean(0))[0]
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((8, 8)))[0]
    assert ood_orthogonality(means @ q, present, ood.mean(0) @ q)[0] == pytest.approx(base)
    assert ood_orthogonality(1e-150 * means, present, 1e150 * ood.mean(0))[0] == pytest.approx(
        base, rel=1e-12
    )
    assert ood_orthogonality(means, present, -ood.mean(0))[0] == pytest.approx(base)
    s = FeatureSum.of_chunk(0, ood[:10]).merge(FeatureSum.of_chunk(10, ood[10:]))
    assert np.allclose(s.mean, ood.mean(0), rtol=1e-14)


def test_absent_classes_and_several_sets(tmp_path):
    h, y, m, ood = _id_and_ood(seed=3)
    keep = y != 2  # class 2 absent, W still has 4 rows
    noise = np.random.default_rng(5).standard_normal((12, 8))
    path = _write(
        tmp_path / "s.h5",
        [
            ("epoch_2", {"epoch": 2}, h[keep], m),
            ("ood_a/epoch_2", {"epoch": 2}, ood, None),
            ("ood_b/epoch_2", {"epoch": 2}, noise, None),
        ],
        labels=y[keep],
    )
    rep = analyze_file(path)
    res = rep.snapshots[0]
    assert res.metrics["nc5_ood_orthogonality_a"] == pytest.approx(
        reference_nc5(h[keep], y[keep], ood), rel=1e-12
    )
    assert res.metrics["nc5_ood_orthogonality_b"] == pytest.approx(
        reference_nc5(h[keep], y[keep], noise), rel=1e-12
    )
    assert res.metrics["nc5_ood_orthogonality"] is None
    assert any("nc5_ood_orthogonality: null (2 named OOD sets" in w for w in res.warnings)
    assert [r.task for r in rep.snapshots] == ["classification", "ood", "ood"]
    data = json.loads(rep.to_json())["snapshots"]
    assert "nc5_ood_orthogonality_a" in data[0]["metrics"] and data[1]["task"] == "ood"
    assert data[1]["metrics"] == {}


def test_single_named_set_and_missing_partner(tmp_path):
    h, y, m, ood = _id_and_ood(seed=4)
    path = _write(
        tmp_path / "n.h5",
        [
            ("epoch_1", {"epoch": 1}, h, m),
            ("epoch_2", {"epoch": 2}, h, m),
            ("ood_svhn/epoch_1", {"epoch": 1}, ood, None),
        ],
        labels=y,
    )
    first, second, _ = analyze_file(path).snapshots
    assert first.metrics["nc5_ood_orthogonality"] == first.metrics["nc5_ood_orthogonality_svhn"]
    assert first.metrics["nc5_ood_orthogonality"] == pytest.approx(reference_nc5(h, y, ood))
    assert second.metrics["nc5_ood_orthogonality_svhn"] is None
    assert any("no 'ood_svhn' snapshot of epoch 2" in w for w in second.warnings)
    # a file without OOD snapshots has no nc5 keys at all
    plain = _write(tmp_path / "plain.h5", [("epoch_1", {"epoch": 1}, h, m)], labels=y)
    assert not any(k.startswith("nc5") for k in analyze_file(plain).snapshots[0].metrics)


def test_cli_info_report_check(tmp_path, capsys):
    h, y, m, ood = _id_and_ood(seed=6)
    path = _write(
        tmp_path / "c.h5",
        [
            ("epoch_1", {"epoch": 1, "split": "train"}, h, m),
            ("epoch_9", {"epoch": 9, "split": "train"}, 0.5 * h, m),
            ("ood/epoch_1", {"epoch": 1, "split": "ood"}, ood, None),
            ("ood/epoch_9", {"epoch": 9, "split": "ood"}, ood, None),
        ],
        labels=y,
    )
    with h5py.File(path) as f:
        assert "labels" not in f["ood/epoch_1"]  # written without labels
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "/ood/epoch_1" in out and "ood" in out
    assert main(["report", str(path), "--snapshot", "/epoch_9"]) == 0
    out = capsys.readouterr().out
    value = reference_nc5(0.5 * h, y, ood)
    assert "nc5_ood_orthogonality" in out and f"{value:.4f}"[:5] in out
    assert main(["report", str(path)]) == 0
    assert "NC5" in capsys.readouterr().out
    assert main(["check", str(path), "--max", f"nc5_ood_orthogonality={value + 1e-6}"]) == 0
    assert main(["check", str(path), "--max", f"nc5_ood_orthogonality={value - 1e-6}"]) == 1
    assert main(["check", str(path), "--max", "nc1=100"]) == 0  # OOD snapshots not targets
    capsys.readouterr()


def test_in_memory_ood_features_and_dask():
    import dask.array as da

    import ncinspect

    h, y, m, ood = _id_and_ood(seed=7)
    ref = reference_nc5(h, y, ood)
    res = ncinspect.analyze(h, y, weights=m, ood_features=ood, chunk_rows=6)
    assert res.metrics["nc5_ood_orthogonality"] == pytest.approx(ref, rel=1e-12)
    both = ncinspect.analyze(h, y, ood_features={"ood": ood, "noise": ood[::-1] + 1})
    assert both.metrics["nc5_ood_orthogonality"] == pytest.approx(ref, rel=1e-12)
    assert both.metrics["nc5_ood_orthogonality_noise"] == pytest.approx(
        reference_nc5(h, y, ood + 1), rel=1e-12
    )
    dk = ncinspect.analyze(h, y, ood_features=da.from_array(ood, chunks=(8, -1)))
    assert dk.metrics["nc5_ood_orthogonality"] == pytest.approx(ref, rel=1e-12)
    assert "nc5_ood_orthogonality" in json.loads(dk.to_json())["metrics"]


def test_min_class_count_leaves_small_classes_out():
    import ncinspect

    h, y, m, ood = _id_and_ood(seed=8)
    keep = (y != 1) | (np.arange(len(y)) % 10 == 0)  # class 1 keeps 2 of its 20 rows
    h, y = h[keep], y[keep]
    res = ncinspect.analyze(h, y, weights=m, min_class_count=3, ood_features=ood)
    big = y != 1
    want = reference_nc5(h[big], y[big], ood)
    assert res.metrics["nc5_ood_orthogonality"] == pytest.approx(want, rel=1e-12)
    assert want != pytest.approx(reference_nc5(h, y, ood), rel=1e-6)


def test_trajectory_panels_for_nc5_and_nrc(tmp_path):
    from ncinspect.plots.runs import available_panels

    h, y, m, ood = _id_and_ood(seed=9)
    path = _write(
        tmp_path / "t.h5",
        [
            ("epoch_1", {"epoch": 1}, h, m),
            ("epoch_2", {"epoch": 2}, 0.5 * h, m),
            ("ood/epoch_1", {"epoch": 1, "split": "ood"}, ood, None),
            ("ood/epoch_2", {"epoch": 2, "split": "ood"}, ood, None),
        ],
        labels=y,
    )
    runs = [("run", list(analyze_file(path)))]
    titles = [p.title for p in available_panels(runs)]
    assert any(t.startswith("NC5") for t in titles)
    assert not any(t.startswith("NRC") for t in titles)
    assert main(["plot", str(path), "-o", str(tmp_path / "fig"), "--kind", "trajectory"]) == 0


@pytest.mark.parametrize("pattern", [None, "/epoch_2", "/ood*"])
def test_progress_announces_the_rows_it_reads(tmp_path, pattern):
    h, y, m, ood = _id_and_ood(seed=10)
    path = _write(
        tmp_path / "p.h5",
        [
            ("epoch_2", {"epoch": 2, "split": "train"}, h, m),
            ("test/epoch_2", {"epoch": 2, "split": "test"}, h[:30], m),
            ("ood/epoch_2", {"epoch": 2, "split": "ood"}, ood, None),
        ],
        labels=y,
    )
    with h5py.File(path, "a") as f:
        f["test/labels"] = y[:30]

    class Progress:
        done, expected = 0, None

        def expect(self, rows, nbytes):
            self.expected = rows

        def __call__(self, n):
            self.done += n

    p = Progress()
    analyze_file(path, snapshot=pattern, progress=p, ncc_centres="train")
    assert p.expected == p.done > 0


@pytest.mark.parametrize("scale", [1.0, 2.0**498, 2.0**-498])
def test_a_mean_zero_up_to_rounding_is_zero_at_every_scale(scale):
    """OOD rows x and -x (or a class of rows a and -a) have a mean of 0 in exact arithmetic;
    the float sums leave ~1e-17 (relative), whose direction is noise: nc5 is null, with the
    reason, at any scale of the features (the bound is relative, no square overflows). A
    mean of 1e-9 (relative) is far above that rounding and keeps a number. Before, only a
    mean of exactly 0.0 was null."""
    rng = np.random.default_rng(4)
    x = scale * (rng.standard_normal((9, 5)) + 2.0)
    rows = np.r_[x, -x[::-1]]
    total = FeatureSum.of_chunk(0, rows[:7]).merge(FeatureSum.of_chunk(7, rows[7:]))
    assert np.any(total.mean != 0)  # the rounding noise
    means = scale * rng.standard_normal((3, 5))
    present = np.ones(3, bool)
    value, why = ood_orthogonality(means, present, total.mean, ood_bound=total.mean_bound())
    assert value is None and "rounding" in why
    moved = FeatureSum.of_chunk(0, np.r_[x, -x + 1e-9 * scale])
    assert ood_orthogonality(means, present, moved.mean, ood_bound=moved.mean_bound())[1] is None
    # a class of rows a and -a: its variance v_c bounds its sum's rounding
    a = scale * rng.standard_normal((4, 5))
    cls = np.r_[a, -a]
    mu = cls.sum(axis=0) / 8
    v = np.mean(np.sum((cls / scale - mu / scale) ** 2, axis=1)) * scale**2
    bounds = class_mean_bounds(np.array([8, 8, 8]), np.array([v, v, v]))
    means[1] = mu
    value, why = ood_orthogonality(means, present, x.mean(0), class_bound=bounds)
    assert value is None and "class mean" in why
    means[1] = mu + 1e-9 * scale
    assert ood_orthogonality(means, present, x.mean(0), class_bound=bounds)[1] is None


def test_rounding_bounds_unknown_are_not_zero():
    """No bound (no sum of absolute values; a class variance that overflowed or is 0)
    never makes a mean zero: nc5 keeps its number."""
    assert FeatureSum(3, np.ones(2)).mean_bound() is None
    assert (
        FeatureSum(3, np.ones(2)).merge(FeatureSum.of_chunk(3, np.ones((2, 2)))).abs_total is None
    )
    bounds = class_mean_bounds(np.array([5, 5]), np.array([np.inf, 0.0]))
    assert np.isnan(bounds).all()
    means = np.array([[1e-30, 0.0], [0.0, 1e-30]])
    assert ood_orthogonality(means, np.ones(2, bool), np.ones(2), class_bound=bounds)[0] > 0


def test_nonfinite_rows_are_found_when_the_sums_test_them():
    """The row-by-row NaN/Inf test runs only when the sums of |h| (FeatureSum) or the row
    sums (score_chunk) are not finite: NaN and Inf rows are still counted, with the first
    one's row, and finite rows whose sums overflow are not taken for NaN/Inf rows."""
    from ncinspect.metrics.ood_scores import OODScorer, score_chunk

    x = np.ones((6, 3))
    x[2, 1], x[4, 0], x[5, 2] = np.nan, np.inf, -np.inf
    got = FeatureSum.of_chunk(10, x)
    assert (got.count, got.n_nonfinite, got.first_nonfinite_row) == (3, 3, 12)
    assert got.total.tolist() == [3.0, 3.0, 3.0] and got.abs_total.tolist() == [3.0] * 3
    scorer = OODScorer(np.zeros(3), None, np.eye(3))
    scores = score_chunk(scorer, 10, x)
    assert (scores.n_nonfinite, scores.first_nonfinite_row) == (3, 12)
    big = np.full((4, 3), 1e308)
    with np.errstate(over="ignore"):
        assert FeatureSum.of_chunk(0, big).n_nonfinite == 0
        assert score_chunk(scorer, 0, big).n_nonfinite == 0


def test_an_ood_mean_that_overflowed_is_named_so_not_zero():
    """An OOD mean of inf (its sum overflowed) was reported as 'the OOD features' mean is
    zero'."""
    from ncinspect.metrics.ood import ood_orthogonality

    means = np.array([[1.0, 0.0], [0.0, 1.0]])
    value, why = ood_orthogonality(means, np.ones(2, bool), np.array([np.inf, 1.0]))
    assert value is None and "not finite" in why and "zero" not in why
    value, why = ood_orthogonality(means, np.ones(2, bool), np.zeros(2))
    assert value is None and "is zero" in why
