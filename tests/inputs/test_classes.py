"""Classes and class order (spec/metrics.md): integer labels are rows of W, string labels are
matched to ``class_names``, absent classes leave the class-level statistics while the
classifier still decides over every row of W, and ``min_class_count``."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import InvalidDataError
from ncinspect.metrics import METRIC_KEYS

from ..helpers import make_data
from ..reference import reference_metrics, reference_rows

# W-dependent metrics: null when the class order of string labels is unknown
W_KEYS = (
    "nc2_equinorm_weights",
    "nc2_equiangular_weights",
    "nc2_maxangle_weights",
    "etf_error_weights",
    "etf_error_weights_centered",
    "nc3_self_duality",
    "nc3_duality_etf_error",
    "nc3_duality_cos",
    "nc4_ncc_mismatch",
    "accuracy_classifier",
    "sqi_eps1",
    "sqi_eps2",
    "sqi_delta",
    "sqi_ratio",
    "sqi_spread",
    "mse",
    "interpolates",
)
FREE_KEYS = (
    "nc1",
    "nc1_trace_ratio",
    "nc1_cdnv",
    "nc2_equinorm_means",
    "nc2_equiangular_means",
    "nc2_maxangle_means",
    "etf_error_means",
    "accuracy_ncc",
)
ORDER = ["fox", "cat", "emu", "dog", "ant"]  # the classifier's class order: not alphabetical


def _close_all(got: dict, want: dict, rel: float = 1e-9) -> None:
    for key, value in want.items():
        if key not in METRIC_KEYS:
            continue
        if isinstance(value, bool) or value is None:
            assert got[key] == value, key
        else:
            assert got[key] == pytest.approx(value, rel=rel, abs=1e-13), key


def _five():
    """5 classes; a classifier whose rows do not follow the alphabetical order of ORDER."""
    h, y, m = make_data(C=5, d=8, n=30, sigma=0.9, seed=3)
    rng = np.random.default_rng(5)
    w = m + 0.3 * rng.standard_normal(m.shape)
    b = 0.2 * rng.standard_normal(5)
    return h, y, w, b


def _h5(path, **arrays):
    attrs = arrays.pop("attrs", {})
    with h5py.File(path, "w") as f:
        for name, value in arrays.items():
            if isinstance(value, np.ndarray) and value.dtype.kind == "U":
                value = value.astype(h5py.string_dtype())
            f[name] = value
        f.attrs.update(attrs)
    return path


# ---------------------------------------------------------------------------------------
# string labels and the class order
# ---------------------------------------------------------------------------------------
def test_string_labels_with_class_names_equal_integer_labels():
    h, y, w, b = _five()
    names = np.array(ORDER)[y]  # label of row k is ORDER[k]
    want = ncinspect.analyze(h, y, weights=w, bias=b).metrics
    got = ncinspect.analyze(h, names, weights=w, bias=b, class_names=ORDER, per_class=True)
    _close_all(got.metrics, want, rel=1e-12)
    assert [r["class"] for r in got.per_class] == ORDER
    assert got.class_names == ORDER
    # the direct reference agrees
    _close_all(got.metrics, reference_metrics(h, y, W=w, b=b))


@pytest.mark.parametrize("where", ["array", "attribute", "option"])
def test_class_names_from_the_dump_or_the_cli(tmp_path, where):
    h, y, w, b = _five()
    names = np.array(ORDER)[y]
    arrays = {"features": h, "labels": names, "weights": w, "bias": b}
    if where == "array":
        arrays["class_names"] = np.array(ORDER)
    elif where == "attribute":
        arrays["attrs"] = {"class_names": ORDER}
    path = _h5(tmp_path / "s.h5", **arrays)
    want = ncinspect.analyze(h, y, weights=w, bias=b).metrics
    js = tmp_path / "r.json"
    argv = ["report", str(path), "--json", str(js), "--quiet"]
    if where == "option":
        names_file = tmp_path / "classes.txt"
        names_file.write_text("\n".join(ORDER) + "\n")
        argv += ["--class-names", str(names_file)]
        got = ncinspect.analyze_file(path, class_names=ORDER)[0].metrics
        _close_all(got, want, rel=1e-12)
    else:
        got = ncinspect.analyze_file(path)[0].metrics
        _close_all(got, want, rel=1e-12)
    assert main(argv) == 0
    snap = json.loads(js.read_text())["snapshots"][0]
    _close_all(snap["metrics"], want, rel=1e-12)


def test_class_names_inherited_like_labels(tmp_path):
    h, y, w, b = _five()
    path = tmp_path / "run.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = np.array(ORDER)[y].astype(h5py.string_dtype())
        f["class_names"] = np.array(ORDER).astype(h5py.string_dtype())
        for e in (1, 2):
            f[f"epoch_{e}/features"] = h * e
            f[f"epoch_{e}/weights"] = w
    rep = ncinspect.analyze_file(path)
    for res, e in zip(rep, (1, 2), strict=True):
        _close_all(res.metrics, ncinspect.analyze(h * e, y, weights=w).metrics, rel=1e-12)


def test_string_labels_without_class_names_null_every_w_metric():
    h, y, w, b = _five()
    names = np.array(ORDER)[y]
    res = ncinspect.analyze(h, names, weights=w, bias=b)
    for key in W_KEYS:
        assert res.metrics[key] is None, key
    want = reference_metrics(h, y)  # W-free metrics do not depend on the order
    for key in FREE_KEYS:
        assert res.metrics[key] == pytest.approx(want[key], rel=1e-9), key
    reason = [line for line in res.warnings if "nc3_self_duality" in line]
    assert len(reason) == 1
    # arrays in memory: say what to pass to analyze() (no dump, no CLI flag here)
    assert "class_names=[...]" in reason[0] and "dump" not in reason[0]
    assert "strings" in reason[0]


def test_string_labels_without_class_names_in_the_cli(tmp_path):
    h, y, w, b = _five()
    path = _h5(tmp_path / "s.h5", features=h, labels=np.array(ORDER)[y], weights=w)
    js = tmp_path / "r.json"
    assert main(["report", str(path), "--json", str(js), "--quiet"]) == 0
    snap = json.loads(js.read_text())["snapshots"][0]
    assert snap["metrics"]["accuracy_classifier"] is None
    assert snap["metrics"]["nc3_self_duality"] is None
    assert snap["metrics"]["nc1"] is not None
    assert any("class_names" in line for line in snap["warnings"])


def test_label_not_in_the_class_order_is_bad_input(tmp_path, capsys):
    h, y, w, b = _five()
    names = np.array(ORDER)[y]
    names[7] = "gnu"
    with pytest.raises(InvalidDataError, match="'gnu'"):
        ncinspect.analyze(h, names, weights=w, class_names=ORDER)
    path = _h5(tmp_path / "s.h5", features=h, labels=names, weights=w, class_names=np.array(ORDER))
    assert main(["report", str(path), "--quiet"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "s.h5" in err[0] and "gnu" in err[0] and "labels" in err[0]


def test_class_names_of_the_wrong_length_is_bad_input():
    h, y, w, b = _five()
    with pytest.raises(InvalidDataError, match="class_names"):
        ncinspect.analyze(h, np.array(ORDER)[y], weights=w, class_names=ORDER[:4])


# ---------------------------------------------------------------------------------------
# integer labels are rows of W
# ---------------------------------------------------------------------------------------
def _absent():
    """6 rows of W, samples of classes {0, 1, 2, 4} only; row 3 wins the argmax for some."""
    rng = np.random.default_rng(11)
    d = 8
    means = 3.0 * rng.standard_normal((6, d))
    y = np.repeat([0, 1, 2, 4], [25, 30, 20, 28])
    h = means[y] + 1.2 * rng.standard_normal((len(y), d))
    w = means + 0.4 * rng.standard_normal(means.shape)
    w[3] = 1.1 * means[1]  # an absent row close to class 1: takes some of its samples
    b = 0.1 * rng.standard_normal(6)
    return h, y, w, b


def test_absent_classes_match_the_direct_computation():
    h, y, w, b = _absent()
    res = ncinspect.analyze(h, y, weights=w, bias=b, per_class=True)
    ref = reference_rows(h, y, w, b)
    _close_all(res.metrics, ref)
    assert 0 < ref["accuracy_classifier"] < 1  # the absent row 3 does take decisions
    assert res.n_classes == 4 and res.n_classes_total == 6
    lines = [line for line in res.warnings if "absent" in line]
    assert len(lines) == 1 and "2 of 6" in lines[0]
    assert [r["class"] for r in res.per_class] == [0, 1, 2, 4]
    assert [r["n"] for r in res.per_class] == [25, 30, 20, 28]
    d = res.to_dict()
    assert d["n_classes"] == 4 and d["n_classes_total"] == 6


def test_labels_0_1_2_4_with_a_5_row_classifier(tmp_path):
    h, y, w, b = _absent()
    w5, b5 = w[:5], b[:5]
    res = ncinspect.analyze(h, y, weights=w5, bias=b5)
    _close_all(res.metrics, reference_rows(h, y, w5, b5))
    path = _h5(tmp_path / "a.h5", features=h, labels=y, weights=w5, bias=b5)
    js = tmp_path / "a.json"
    assert main(["report", str(path), "--json", str(js), "--quiet"]) == 0
    snap = json.loads(js.read_text())["snapshots"][0]
    assert snap["n_classes"] == 4 and snap["n_classes_total"] == 5
    _close_all(snap["metrics"], reference_rows(h, y, w5, b5))
    csv = tmp_path / "a.csv"
    assert main(["report", str(path), "--csv", str(csv), "--quiet"]) == 0
    header, row = csv.read_text().splitlines()[:2]
    cols = dict(zip(header.split(","), row.split(","), strict=True))
    assert cols["n_classes"] == "4" and cols["n_classes_total"] == "5"


def test_absent_classes_same_on_dask():
    import dask.array as da

    h, y, w, b = _absent()
    local = ncinspect.analyze(h, y, weights=w, bias=b, min_class_count=21).metrics
    got = ncinspect.analyze(
        da.from_array(h, chunks=(17, 8)), y, weights=w, bias=b, min_class_count=21
    ).metrics
    _close_all(got, local, rel=1e-12)


def test_integer_labels_are_rows_not_ranks():
    # labels 1..5 with a 5-row W: label 5 is no row of W (was silently shifted by one)
    h, y, w, b = _five()
    with pytest.raises(InvalidDataError, match="weights"):
        ncinspect.analyze(h, y + 1, weights=w)


def test_out_of_range_label_exits_3(tmp_path, capsys):
    h, y, w, b = _five()
    path = _h5(tmp_path / "o.h5", features=h, labels=y + 1, weights=w)
    assert main(["report", str(path), "--quiet"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "o.h5" in err[0] and "labels" in err[0] and "5" in err[0]
    assert "Traceback" not in err[0]


def test_without_weights_classes_are_the_distinct_values():
    h, y, _, _ = _five()
    res = ncinspect.analyze(h, np.array([3, 10, 42, 99, 7])[y])
    assert res.n_classes == 5 and res.n_classes_total == 5
    assert res.class_names == [3, 7, 10, 42, 99]


def test_onehot_labels_are_rows_too():
    h, y, w, b = _absent()
    res = ncinspect.analyze(h, np.eye(6)[y], weights=w, bias=b)
    _close_all(res.metrics, reference_rows(h, y, w, b))


# ---------------------------------------------------------------------------------------
# min_class_count
# ---------------------------------------------------------------------------------------
def test_min_class_count_equals_leaving_those_samples_out(tmp_path):
    h, y, w, b = _absent()  # counts 25, 30, 20, 28
    res = ncinspect.analyze(h, y, weights=w, bias=b, min_class_count=26)
    keep = np.isin(y, [1, 4])
    _close_all(res.metrics, reference_rows(h[keep], y[keep], w, b))
    assert res.n_classes == 2 and res.n_classes_total == 6
    assert len([line for line in res.warnings if "absent" in line]) == 1
    # the CLI option
    path = _h5(tmp_path / "m.h5", features=h, labels=y, weights=w, bias=b)
    js = tmp_path / "m.json"
    assert main(["report", str(path), "--json", str(js), "--quiet", "--min-class-count", "26"]) == 0
    snap = json.loads(js.read_text())["snapshots"][0]
    assert snap["n_classes"] == 2
    _close_all(snap["metrics"], reference_rows(h[keep], y[keep], w, b))


def test_min_class_count_leaving_one_class_nulls_class_level_metrics():
    h, y, w, b = _absent()
    res = ncinspect.analyze(h, y, weights=w, bias=b, min_class_count=29)
    assert res.metrics["nc1"] is None and res.metrics["nc3_self_duality"] is None
    keep = y == 1
    clf = np.argmax(h[keep] @ w.T + b, axis=1)
    assert res.metrics["accuracy_classifier"] == pytest.approx(np.mean(clf == 1), abs=1e-15)
    assert any("fewer than two" in line for line in res.warnings)


# ---------------------------------------------------------------------------------------
# every command that reads features
# ---------------------------------------------------------------------------------------
def _string_absent_dump(tmp_path):
    """String labels (4 of the 6 classes present) and a class-names file for the CLI."""
    h, y, w, b = _absent()
    order = ["zebra", "ant", "yak", "bee", "xerus", "cow"]
    path = _h5(tmp_path / "sa.h5", features=h, labels=np.array(order)[y], weights=w, bias=b)
    names_file = tmp_path / "names.txt"
    names_file.write_text("\n".join(order) + "\n")
    return path, names_file, (h, y, w, b), order


def test_check_follows_the_class_order(tmp_path, capsys):
    path, names_file, (h, y, w, b), order = _string_absent_dump(tmp_path)
    acc = reference_rows(h, y, w, b)["accuracy_classifier"]
    base = ["check", str(path), "--no-config", "--format", "json"]
    # without the class order the classifier's accuracy is null: the rule cannot pass
    assert main([*base, "--min", "accuracy_classifier=0.1"]) == 1
    capsys.readouterr()
    assert (
        main(
            [*base, "--min", f"accuracy_classifier={acc - 1e-9}", "--class-names", str(names_file)]
        )
        == 0
    )
    assert (
        main(
            [*base, "--min", f"accuracy_classifier={acc + 1e-9}", "--class-names", str(names_file)]
        )
        == 1
    )
    capsys.readouterr()
    keep = np.isin(y, [1, 4])
    acc26 = reference_rows(h[keep], y[keep], w, b)["accuracy_classifier"]
    argv = [*base, "--class-names", str(names_file), "--min-class-count", "26"]
    assert main([*argv, "--min", f"accuracy_classifier={acc26 - 1e-9}"]) == 0
    assert main([*argv, "--max", f"accuracy_classifier={acc26 - 1e-6}"]) == 1


def test_per_class_rows_name_the_present_classes(tmp_path):
    path, names_file, (h, y, w, b), order = _string_absent_dump(tmp_path)
    js = tmp_path / "p.json"
    argv = ["report", str(path), "--per-class", "--json", str(js), "--quiet"]
    assert main([*argv, "--class-names", str(names_file)]) == 0
    snap = json.loads(js.read_text())["snapshots"][0]
    assert [r["class"] for r in snap["per_class"]] == ["zebra", "ant", "yak", "xerus"]
    assert snap["class_names"] == ["zebra", "ant", "yak", "xerus"]
    assert [r["n"] for r in snap["per_class"]] == [25, 30, 20, 28]
    clf = np.argmax(h @ w.T + b, axis=1)
    for r, c in zip(snap["per_class"], [0, 1, 2, 4], strict=True):
        assert r["accuracy_classifier"] == pytest.approx(np.mean(clf[y == c] == c), abs=1e-15)
        assert r["weight_norm"] == pytest.approx(np.linalg.norm(w[c]), rel=1e-12)


def test_plot_with_absent_classes_and_string_labels(tmp_path, capsys):
    path, names_file, _, _ = _string_absent_dump(tmp_path)
    out = tmp_path / "figs"
    argv = [
        "plot",
        str(path),
        "-o",
        str(out),
        "-f",
        "png",
        "--dpi",
        "30",
        "--class-names",
        str(names_file),
    ]
    assert main([*argv, "--min-class-count", "21"]) == 0
    names = sorted(p.name for p in out.iterdir())
    for kind in ("gram", "geometry", "projection"):
        assert f"{kind}.png" in names


def test_theory_takes_the_class_names_option(tmp_path, capsys):
    path, names_file, _, _ = _string_absent_dump(tmp_path)
    js = tmp_path / "t.json"
    assert main(["theory", str(path), "--json", str(js), "--class-names", str(names_file)]) == 0
    snap = json.loads(js.read_text())["snapshots"][0]
    assert snap["metrics"]["accuracy_classifier"] is not None


def test_class_names_file_errors(tmp_path, capsys):
    path, names_file, _, order = _string_absent_dump(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("zebra\n\nyak\n")
    assert main(["report", str(path), "--quiet", "--class-names", str(bad)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.txt" in err[0] and "line 2" in err[0]
    short = tmp_path / "short.txt"
    short.write_text("\n".join(order[:5]) + "\n")
    assert main(["report", str(path), "--quiet", "--class-names", str(short)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "5 class names" in err[0] and "6 rows" in err[0]


def test_generalized_metrics_use_the_present_classes():
    from ncinspect.metrics.general import GENERAL_KEYS

    h, y, w, b = _absent()
    present = np.array([0, 1, 2, 4])
    compact = np.searchsorted(present, y)  # the same samples, W cut to the present rows
    got = ncinspect.analyze(h, y, weights=w, bias=b).metrics
    want = ncinspect.analyze(h, compact, weights=w[present], bias=b[present]).metrics
    checked = 0
    for key in GENERAL_KEYS:
        if isinstance(want[key], float):
            assert got[key] == pytest.approx(want[key], rel=1e-10, abs=1e-14), key
            checked += 1
        else:
            assert got[key] == want[key], key
    assert checked >= 8


def test_table_header_shows_present_and_total_classes(tmp_path, capsys):
    h, y, w, b = _absent()
    path = _h5(tmp_path / "t.h5", features=h, labels=y, weights=w, bias=b)
    assert main(["report", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "C=4 of 6" in out
