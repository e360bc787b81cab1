"""Figures: artists carry the report's numbers, one line per run, log axes, every kind renders."""

from __future__ import annotations

import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from ncinspect import analyze, analyze_file  # noqa: E402
from ncinspect.analysis.projection import subsample_indices  # noqa: E402
from ncinspect.analysis.sampling import sample_arrays, sample_file, sample_snapshot  # noqa: E402
from ncinspect.cli import main  # noqa: E402
from ncinspect.dump import open_dump  # noqa: E402
from ncinspect.plots import (  # noqa: E402
    KINDS,
    figure_bytes,
    kind_allowed,
    plot_geometry,
    plot_gram,
    plot_layers,
    plot_projection,
    plot_spectrum,
    plot_sqi,
    plot_trajectory,
)
from tests.plots.test_plots_data import EPOCHS, write_run  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    wd = write_run(base / "wd.h5", weight_decay=True, seed=1)
    nowd = write_run(base / "nowd.h5", weight_decay=False, seed=2)
    return {"wd": (wd, analyze_file(wd)), "nowd": (nowd, analyze_file(nowd))}


def _lines(fig, gid):
    return [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == gid]


def _train(report, layer=None):
    return sorted(
        (r for r in report if r.split == "train" and r.layer == layer), key=lambda r: r.epoch
    )


# -- trajectory -------------------------------------------------------------------------------
def test_trajectory_lines_carry_the_report_values(runs):
    reports = [runs["wd"][1], runs["nowd"][1]]
    fig = plot_trajectory(reports, labels=["weight decay", "no weight decay"])
    for label, report in zip(["weight decay", "no weight decay"], reports, strict=True):
        train = _train(report)
        test = sorted(
            (r for r in report if r.split == "test" and r.layer is None), key=lambda r: r.epoch
        )
        for key in (
            "nc1",
            "nc2_equinorm_means",
            "nc2_equiangular_weights",
            "etf_error_means",
            "etf_error_weights_centered",
            "nc3_self_duality",
            "nc4_ncc_mismatch",
        ):
            (line,) = _lines(fig, f"{label}|{key}|train")
            np.testing.assert_array_equal(line.get_xdata(), [r.epoch for r in train])
            np.testing.assert_allclose(
                line.get_ydata(), [r.metrics[key] for r in train], rtol=0, atol=0
            )
        (acc,) = _lines(fig, f"{label}|accuracy_classifier|test")
        np.testing.assert_array_equal(
            acc.get_ydata(), [r.metrics["accuracy_classifier"] for r in test]
        )
    assert [t.get_text() for t in fig.legends[0].get_texts()][:2] == [
        "weight decay",
        "no weight decay",
    ]


def test_trajectory_one_line_per_run_and_consistent_colours(runs):
    fig = plot_trajectory([runs["wd"][1], runs["nowd"][1]], labels=["a", "b"])
    nc1_ax = next(ax for ax in fig.axes if any(ln.get_gid() == "a|nc1|train" for ln in ax.lines))
    train = [ln for ln in nc1_ax.lines if ln.get_gid().endswith("|train")]
    assert [ln.get_label() for ln in train] == ["a", "b"]
    assert nc1_ax.get_yscale() == "log"
    colours = {}
    for ax in fig.axes:
        for ln in ax.lines:
            colours.setdefault(ln.get_label(), set()).add(ln.get_color())
    assert len(colours["a"]) == 1 and len(colours["b"]) == 1 and colours["a"] != colours["b"]
    mismatch_ax = next(ax for ax in fig.axes if ax.get_title().startswith("NC4"))
    assert mismatch_ax.get_yscale() == "linear"


def test_trajectory_runs_with_identical_values_stay_visible(runs):
    # the same report twice: every series coincides; the first run must not be hidden
    report = runs["wd"][1]
    fig = plot_trajectory([report, report], labels=["a", "b"])
    for ax in fig.axes:
        for a_line in (ln for ln in ax.lines if ln.get_label() == "a"):
            split = a_line.get_gid().split("|", 1)[1]
            (b_line,) = _lines(fig, f"b|{split}")
            np.testing.assert_array_equal(a_line.get_ydata(), b_line.get_ydata())
            assert a_line.get_marker() != b_line.get_marker()
            assert a_line.get_markersize() > b_line.get_markersize()  # drawn below, larger
            assert a_line.get_linewidth() > b_line.get_linewidth()
            assert b_line.get_alpha() is not None and b_line.get_alpha() < 1
    handles = fig.legends[0].legend_handles
    assert handles[0].get_marker() != handles[1].get_marker()  # the legend says which is which


def test_trajectory_accepts_axes_and_single_run(runs):
    report = runs["wd"][1]
    fig0, axes = plt.subplots(3, 4)  # ten panels
    fig = plot_trajectory(report, ax=axes)
    assert fig is fig0
    assert _lines(fig, "wd|nc1|train")  # default label: the file name without suffix


def test_trajectory_label_count_must_match(runs):
    with pytest.raises(ValueError, match="label"):
        plot_trajectory([runs["wd"][1], runs["nowd"][1]], labels=["only one"])


def test_trajectory_skips_panels_without_data():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    results = []
    for e in (0, 5):
        res = analyze(rng.normal(size=(30, 4)) + 3 * np.eye(4)[y], y)  # no classifier
        res.epoch = e
        results.append(res)
    fig = plot_trajectory(results)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert any(t.startswith("NC1") for t in titles)
    assert not any("self-duality" in t for t in titles)


# -- layers -----------------------------------------------------------------------------------
def test_layers_plot_metrics_against_depth(runs):
    report = runs["wd"][1]
    fig = plot_layers(report, labels=["wd"])
    last = max(EPOCHS)
    by = {(r.layer, r.split): r for r in report if r.epoch == last}
    expected = [by[("layer_1", "train")], by[("layer_2", "train")], by[(None, "train")]]
    for key in ("nc1", "nc1_trace_ratio", "accuracy_ncc"):
        (line,) = _lines(fig, f"wd|{key}|layers")
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])
        np.testing.assert_array_equal(line.get_ydata(), [r.metrics[key] for r in expected])
    nc1_ax = _lines(fig, "wd|nc1|layers")[0].axes
    assert nc1_ax.get_yscale() == "log"
    assert [t.get_text() for t in nc1_ax.get_xticklabels()] == ["1", "2", "3 (penult.)"]


def test_layers_runs_have_distinct_markers(runs):
    fig = plot_layers([runs["wd"][1], runs["nowd"][1]], labels=["a", "b"])
    (a,) = _lines(fig, "a|nc1|layers")
    (b,) = _lines(fig, "b|nc1|layers")
    assert a.get_marker() != b.get_marker() and a.get_color() != b.get_color()


def test_layers_needs_layer_snapshots(tmp_path):
    report = analyze_file(write_run(tmp_path / "flat.h5", layers=0, test=False))
    assert kind_allowed("layers", report) is not None
    with pytest.raises(ValueError, match="layers"):
        plot_layers(report)


# -- single-snapshot kinds ----------------------------------------------------------------------
def _final(report):
    return _train(report)[-1]


def _independent_means(path, name):
    with open_dump(path) as dump:
        snap = next(s for s in dump.snapshots if s.name == name)
        h = snap.features.read_all().astype(np.float64)
        y = snap.labels.read_all()
        w = snap.weights.read_all()
    means = np.stack([h[y == c].mean(0) for c in np.unique(y)])
    return h, y, means, w


def test_gram_shows_cosines_with_a_shared_scale(runs):
    path, report = runs["wd"]
    res = _final(report)
    _, _, means, w = _independent_means(path, res.name)
    m = means - means.mean(0)
    cos_m = (m @ m.T) / np.outer(np.linalg.norm(m, axis=1), np.linalg.norm(m, axis=1))
    cos_w = (w @ w.T) / np.outer(np.linalg.norm(w, axis=1), np.linalg.norm(w, axis=1))
    fig = plot_gram(res)
    images = [im for ax in fig.axes for im in ax.images]
    assert len(images) == 3
    np.testing.assert_allclose(images[0].get_array(), cos_m, atol=1e-12)
    np.testing.assert_allclose(images[1].get_array(), cos_w, atol=1e-12)
    C = res.n_classes
    ideal = images[2].get_array()
    np.testing.assert_allclose(ideal[~np.eye(C, dtype=bool)], -1.0 / (C - 1))
    assert {im.get_clim() for im in images} == {(-1.0, 1.0)}


def _no_weights_result(n_classes):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), 3)
    h = 3 * np.eye(n_classes + 2)[y] + 0.2 * rng.normal(size=(3 * n_classes, n_classes + 2))
    return analyze(h, y)


@pytest.mark.parametrize("n_classes", [10, 100])
def test_gram_is_one_or_two_columns_wide(runs, n_classes):
    assert plot_gram(_final(runs["wd"][1])).get_size_inches()[0] == pytest.approx(7.0)
    fig = plot_gram(_no_weights_result(n_classes))  # means and ETF only: one column
    assert len([ax for ax in fig.axes if ax.images]) == 2
    assert fig.get_size_inches()[0] == pytest.approx(3.5)
    assert _overlaps(fig) == []


def test_gram_centred_weights_option(runs):
    res = _final(runs["nowd"][1])
    w = res.arrays.weights - res.arrays.weights.mean(0)
    fig = plot_gram(res, centered_weights=True)
    img = fig.axes[1].images[0].get_array()
    expected = (w @ w.T) / np.outer(np.linalg.norm(w, axis=1), np.linalg.norm(w, axis=1))
    np.testing.assert_allclose(img, expected, atol=1e-12)


def test_geometry_norms_and_cosines(tmp_path):
    path = write_run(tmp_path / "g.h5", n_classes=5, layers=0, test=False)
    report = analyze_file(path, per_class=True)
    res = _final(report)
    fig = plot_geometry(res)
    (means_line,) = _lines(fig, "norms|centred means")
    norms = np.array([row["mean_norm"] for row in res.per_class])
    np.testing.assert_allclose(means_line.get_ydata(), norms / norms.mean(), rtol=1e-12)
    (w_line,) = _lines(fig, "norms|classifier rows")
    wn = np.array([row["weight_norm"] for row in res.per_class])
    np.testing.assert_allclose(w_line.get_ydata(), wn / wn.mean(), rtol=1e-12)
    (etf,) = _lines(fig, "etf")
    assert etf.get_xdata()[0] == pytest.approx(-1.0 / 4)
    hist_ax = etf.axes
    # step histograms (one per series) hold every pair: fractions sum to 1
    for patch in hist_ax.patches:
        verts = patch.get_path().vertices
        heights = verts[1:-1:2, 1]
        assert heights.sum() == pytest.approx(1.0)


def test_spectrum_is_what_nc1_sums(runs):
    res = _final(runs["wd"][1])
    fig = plot_spectrum(res)
    (between,) = _lines(fig, "between")
    (within,) = _lines(fig, "within")
    ratio = np.asarray(within.get_ydata()) / np.asarray(between.get_ydata())
    assert ratio.sum() / res.n_classes == pytest.approx(res.metrics["nc1"], rel=1e-10)
    assert between.axes.get_yscale() == "log"
    np.testing.assert_array_equal(between.get_xdata(), np.arange(1, res.n_classes))


# -- subsample figures -----------------------------------------------------------------------
def test_subsample_indices_are_seeded_sorted_and_unique():
    a = subsample_indices(1000, 50, seed=3)
    assert len(a) == 50 and len(np.unique(a)) == 50 and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, subsample_indices(1000, 50, seed=3))
    assert not np.array_equal(a, subsample_indices(1000, 50, seed=4))
    np.testing.assert_array_equal(subsample_indices(7, 50), np.arange(7))


def test_sample_projection_matches_an_independent_projection(runs):
    path, report = runs["wd"]
    res = _final(report)
    h, _, means, _ = _independent_means(path, res.name)
    with open_dump(path) as dump:
        snap = next(s for s in dump.snapshots if s.name == res.name)
        arrs = sample_snapshot(snap, res, size=17, seed=5, chunk_rows=7)
        again = sample_snapshot(snap, res, size=17, seed=5)
    np.testing.assert_array_equal(arrs["sample_proj"], again["sample_proj"])
    idx = arrs["sample_index"]
    basis = res.arrays.basis[:2]
    mu_g = means.mean(0)
    np.testing.assert_allclose(arrs["sample_proj"], (h[idx] - mu_g) @ basis.T, atol=1e-12)
    res.arrays.update(arrs)
    fig = plot_projection(res)
    ax = fig.axes[0]
    centres = np.concatenate(  # one collection per class (its own marker), in class order
        [c.get_offsets() for c in ax.collections if c.get_gid() == "means"]
    )
    np.testing.assert_allclose(centres, (means - mu_g) @ basis.T, atol=1e-12)
    points = sum(
        len(c.get_offsets()) for c in ax.collections if (c.get_gid() or "").startswith("class|")
    )
    assert points == 17


def test_sqi_lines_and_full_sample_means_agree_with_the_report(runs):
    path, report = runs["wd"]
    res = _final(report)
    sample_file(path, [res], size=10**6)  # every row: the sample means are eps1 and eps2
    assert res.arrays.sample_true_out.mean() == pytest.approx(
        1 - res.metrics["sqi_eps1"], rel=1e-12
    )
    assert res.arrays.sample_wrong_out.mean() == pytest.approx(res.metrics["sqi_eps2"], rel=1e-12)
    fig = plot_sqi(res)
    (one_minus,) = _lines(fig, "1-eps1")
    (eps2,) = _lines(fig, "eps2")
    assert one_minus.get_xdata()[0] == pytest.approx(1 - res.metrics["sqi_eps1"])
    assert eps2.get_xdata()[0] == pytest.approx(res.metrics["sqi_eps2"])


def test_sqi_marker_lines_have_the_colour_of_their_histogram(runs):
    path, report = runs["wd"]
    res = _final(report)
    sample_file(path, [res], size=50)
    fig = plot_sqi(res)
    ax = fig.axes[0]
    # hist() labels the first bar of each histogram: "wrong class ..." / "true class ..."
    hists = {p.get_label().split(" ")[0]: p for p in ax.patches if p.get_label()[:1] != "_"}
    assert sorted(hists) == ["true", "wrong"]
    for gid, which in (("eps2", "wrong"), ("1-eps1", "true")):
        (line,) = _lines(fig, gid)
        assert to_rgb(line.get_color()) == to_rgb(hists[which].get_facecolor())
    assert to_rgb(_lines(fig, "eps2")[0].get_color()) != to_rgb(
        _lines(fig, "1-eps1")[0].get_color()
    )


def test_sqi_without_stored_outputs_uses_w_h_plus_b():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 20)
    h = 2 * np.eye(3)[y] + 0.1 * rng.normal(size=(60, 3))
    w = np.eye(3) * 0.5
    res = analyze(h, y, weights=w)
    arrs = sample_arrays(h, y, res)
    assert arrs["sample_true_out"].mean() == pytest.approx(1 - res.metrics["sqi_eps1"])
    np.testing.assert_allclose(arrs["sample_true_out"], (h @ w.T)[np.arange(60), y])


def test_sample_figures_need_a_sample(runs):
    res = analyze_file(runs["wd"][0], snapshot="/epoch_0000")[0]
    with pytest.raises(ValueError, match="sample"):
        plot_projection(res)


# -- paper quality ---------------------------------------------------------------------------------
def _drawn_texts(fig):
    """Visible, non-empty texts as drawn: titles, axis labels, legends and in-view tick labels."""
    texts = list(fig.texts) + [t for lg in fig.legends for t in lg.get_texts()]  # + suptitle
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
        if ax.get_legend() is not None:
            texts += list(ax.get_legend().get_texts())
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            pad = 1e-9 * max(1.0, abs(hi - lo))
            for tick, loc in zip(axis.get_major_ticks(), axis.get_majorticklocs(), strict=False):
                if lo - pad <= loc <= hi + pad:
                    texts += [tick.label1, tick.label2]
    unique = {id(t): t for t in texts}.values()
    return [t for t in unique if t.get_visible() and t.get_text().strip()]


def _overlaps(fig):
    """Pairs of drawn texts whose boxes overlap by more than a few square pixels."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _drawn_texts(fig)]
    bad = []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i][1], boxes[j][1]
            inter = a.intersection(a, b)
            if inter is not None and inter.width * inter.height > 4:
                bad.append((boxes[i][0], boxes[j][0]))
    return bad


@pytest.mark.parametrize("n_classes", [10, 100])
def test_no_overlapping_text_for_10_or_100_classes(tmp_path, n_classes):
    path = write_run(
        tmp_path / "c.h5",
        n_classes=n_classes,
        dim=n_classes + 2,
        n_per=3,
        epochs=(0, 5),
        layers=0,
        test=False,
    )
    res = _final(analyze_file(path))
    sample_file(path, [res], size=300)
    for fig in (
        plot_gram(res),
        plot_geometry(res),
        plot_spectrum(res),
        plot_projection(res),
        plot_sqi(res),
    ):
        assert _overlaps(fig) == []
        if n_classes > 20:  # per-class tick labels hidden: a few indices only
            assert all(len(ax.get_xticks()) <= 12 for ax in fig.axes)


@pytest.mark.parametrize("n_runs", [1, 2])
def test_no_overlapping_text_in_trajectory_and_layers(runs, n_runs):
    reports = [runs["wd"][1], runs["nowd"][1]][:n_runs]
    labels = ["weight decay", "no weight decay"][:n_runs]
    for fig in (plot_trajectory(reports, labels=labels), plot_layers(reports, labels=labels)):
        assert _overlaps(fig) == []


def test_no_overlapping_text_with_long_class_names():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 5)
    h = 3 * np.eye(12)[y] + 0.2 * rng.normal(size=(50, 12))
    res = analyze(h, y, weights=np.eye(12)[:10], class_names=[f"class_{c}" for c in range(10)])
    for fig in (plot_gram(res), plot_geometry(res)):
        assert _overlaps(fig) == []


def test_overlap_check_can_fail():
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.set_xticks(range(30), [f"class {i}" for i in range(30)])
    assert _overlaps(fig)


def test_paper_sizes_and_embedded_fonts(runs):
    res = _final(runs["wd"][1])
    traj = plot_trajectory(runs["wd"][1])
    assert traj.get_size_inches()[0] == pytest.approx(7.0)
    spec = plot_spectrum(res)
    assert spec.get_size_inches()[0] == pytest.approx(3.5)
    pdf = figure_bytes(spec, "pdf")
    assert b"/FontFile2" in pdf  # TrueType embedded (pdf.fonttype 42)
    assert b"CreationDate" not in pdf
    assert b"<dc:date>" not in figure_bytes(spec, "svg")
    screen = plot_spectrum(res, style="screen")
    assert screen.get_size_inches()[0] > 3.5


@pytest.mark.slow
def test_every_kind_in_every_format_is_byte_identical_on_rerun(runs, tmp_path):
    args = [
        "plot",
        runs["wd"][0],
        "-f",
        "pdf",
        "-f",
        "png",
        "-f",
        "svg",
        "--sample-size",
        "40",
        "--dpi",
        "40",
        "--sqi",  # the synthetic run records no loss: draw the square-loss figure too
        "-q",
    ]
    assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert main([*args, "-o", str(tmp_path / "b")]) == 0
    made = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert made == sorted(f"{kind}.{fmt}" for kind in KINDS for fmt in ("pdf", "png", "svg"))
    for name in made:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_file_bytes_do_not_depend_on_the_formats_saved_before(runs, tmp_path):
    base = ["plot", runs["wd"][0], "-k", "layers", "-k", "gram", "--dpi", "40", "-q"]
    assert main([*base, "-f", "pdf", "-o", str(tmp_path / "a")]) == 0
    assert main([*base, "-f", "svg", "-f", "png", "-f", "pdf", "-o", str(tmp_path / "b")]) == 0
    assert main([*base, "-f", "png", "-f", "svg", "-o", str(tmp_path / "c")]) == 0
    for name in ("layers.pdf", "gram.pdf"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    for name in ("layers.svg", "gram.svg"):
        assert (tmp_path / "b" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name


def test_figure_bytes_freezes_the_layout(runs):
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    fig = plot_layers(runs["wd"][1])
    pdf = figure_bytes(plot_layers(runs["wd"][1]), "pdf")
    figure_bytes(fig, "svg")
    assert not isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    assert figure_bytes(fig, "pdf") == pdf  # the same as if it had been saved first


def test_file_names_of_runs_are_unique(runs, tmp_path, capsys):
    files = [runs["wd"][0], runs["nowd"][0]]
    base = ["plot", *files, "-k", "gram", "-f", "png", "--dpi", "30", "-q"]
    assert main([*base, "--label", "wd", "--label", "wd?", "-o", str(tmp_path / "a")]) == 0
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["gram-wd-2.png", "gram-wd.png"]
    assert main([*base, "--label", "λ", "--label", "μ", "-o", str(tmp_path / "b")]) == 0
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["gram-run-2.png", "gram-run.png"]


def test_unique_slugs_in_file_order():
    from ncinspect.plots import unique_slugs as _unique_slugs

    assert _unique_slugs(["wd", "wd?", "wd"]) == ["wd", "wd-2", "wd-3"]
    assert _unique_slugs(["λ", "μ", "ν"]) == ["run", "run-2", "run-3"]
    assert _unique_slugs(["WD", "wd"]) == ["WD", "wd-2"]  # case-insensitive file systems
    assert _unique_slugs(["wd", "wd-2", "wd"]) == ["wd", "wd-2", "wd-3"]
    assert _unique_slugs(["weight décay", "no weight decay"]) == ["weight-decay", "no-weight-decay"]


def test_two_runs_overlaid_and_one_file_per_run(runs, tmp_path, capsys):
    files = [runs["wd"][0], runs["nowd"][0]]
    code = main(
        [
            "plot",
            *files,
            "--label",
            "weight decay",
            "--label",
            "no weight decay",
            "-k",
            "trajectory",
            "-k",
            "gram",
            "-f",
            "png",
            "--dpi",
            "40",
            "-o",
            str(tmp_path),
        ]
    )
    assert code == 0
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == ["gram-no-weight-decay.png", "gram-weight-decay.png", "trajectory.png"]
    assert capsys.readouterr().out.split() == [
        str(tmp_path / n)
        for n in ("trajectory.png", "gram-weight-decay.png", "gram-no-weight-decay.png")
    ]


def test_cli_errors_map_to_exit_codes(runs, tmp_path, capsys):
    wd = runs["wd"][0]
    assert main(["plot", wd, wd, "--label", "one", "-o", str(tmp_path)]) == 2
    flat = write_run(tmp_path / "flat.h5", layers=0, test=False, epochs=(3,))
    assert main(["plot", flat, "-k", "layers", "-o", str(tmp_path / "x")]) == 3
    assert "layers" in capsys.readouterr().err
    # default kinds: only what a single-epoch file without layers allows (no sqi figure: the
    # file does not record a square loss, unless --sqi asks for it)
    assert main(["plot", flat, "-f", "png", "--dpi", "30", "-q", "-o", str(tmp_path / "y")]) == 0
    made = {p.stem for p in (tmp_path / "y").iterdir()}
    assert made == {"gram", "geometry", "projection", "spectrum"}
    args = ["plot", flat, "-f", "png", "--dpi", "30", "-q", "--sqi", "-o", str(tmp_path / "z")]
    assert main(args) == 0
    made = {p.stem for p in (tmp_path / "z").iterdir()}
    assert made == {"gram", "geometry", "projection", "spectrum", "sqi"}


def test_cli_kinds_match_the_library():
    from ncinspect.cli import plot as plot_cli

    (kind,) = [p for p in plot_cli.command.params if p.name == "kinds"]
    assert tuple(kind.type.choices) == KINDS


def test_plot_functions_never_show(runs, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("plt.show called")

    monkeypatch.setattr(plt, "show", boom)
    res = _final(runs["wd"][1])
    plot_trajectory(runs["wd"][1])
    plot_layers(runs["wd"][1])
    plot_gram(res)
    plot_geometry(res)
    plot_spectrum(res)


def test_maths_layers_do_not_import_matplotlib():
    code = (
        "import sys, ncinspect.metrics, ncinspect.analysis.projection, "
        "ncinspect.results.trajectory, "
        "ncinspect.analysis.sampling, ncinspect.plots; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plot_walks_each_file_once_and_an_open_dump_gives_the_same_report(
    runs, tmp_path, monkeypatch
):
    """The analysis and the samples of the figures read one open dump (one walk, one probe)
    per file; ``analyze_file`` of an open dump is that of its path, and leaves it open."""
    import ncinspect.dump as dump_mod
    from ncinspect.errors import UsageError

    wd, nowd = runs["wd"][0], runs["nowd"][0]
    opened = []
    real = dump_mod.open_dump

    def counted(path, *args, **kwargs):
        opened.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dump_mod, "open_dump", counted)
    args = ["-k", "projection", "-k", "spectrum", "-f", "png", "--dpi", "20", "-q"]
    assert main(["plot", wd, nowd, *args, "-o", str(tmp_path / "p")]) == 0
    assert opened == [wd, nowd]
    monkeypatch.undo()
    with real(wd) as dump:
        assert analyze_file(dump).to_json() == analyze_file(wd).to_json()
        assert (
            analyze_file(dump, snapshot="*epoch_*").names
            == analyze_file(wd, snapshot="*epoch_*").names
        )
        with pytest.raises(UsageError, match="keys apply when a dump is opened"):
            analyze_file(dump, keys={"features": "features"})
        assert len(dump.snapshots) and dump._h5 is not None  # still open
