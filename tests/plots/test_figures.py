"""Figures that explain themselves: one line style per meaning, named axes, class subsets."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ncinspect import analyze_file  # noqa: E402
from ncinspect.analysis.sampling import sample_file  # noqa: E402
from ncinspect.cli import main  # noqa: E402
from ncinspect.plots import (  # noqa: E402
    Worst,
    parse_classes,
    pick_classes,
    plot_geometry,
    plot_gram,
    plot_layers,
    plot_projection,
    plot_trajectory,
)
from tests.plots.test_plots import _overlaps  # noqa: E402
from tests.plots.test_plots_data import write_run  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = write_run(tmp_path_factory.mktemp("fig") / "wd.h5", seed=3)
    return path, analyze_file(path)


def _train_final(report):
    train = [r for r in report if r.split == "train" and r.layer is None]
    return max(train, key=lambda r: r.epoch)


def _meaning(line) -> tuple[str, str]:
    """(split, role) of a trajectory line from its gid ``label|metric|split``."""
    _, key, split = line.get_gid().split("|")
    role = "classifier" if "weights" in key else "data"
    return ("any" if role == "classifier" else split), role


def test_one_line_style_per_meaning_across_panels(run):
    fig = plot_trajectory(run[1])
    style_of: dict[tuple[str, str], set[str]] = {}
    for ax in fig.axes:
        for line in ax.lines:
            style_of.setdefault(_meaning(line), set()).add(line.get_linestyle())
    assert all(len(s) == 1 for s in style_of.values()), style_of  # one style per meaning
    styles = [next(iter(s)) for s in style_of.values()]
    assert len(styles) == len(set(styles)), style_of  # and no style means two things
    assert {("train", "data"), ("test", "data"), ("any", "classifier")} <= set(style_of)


def test_test_split_curves_for_nc1_to_nc3(run):
    path, report = run
    fig = plot_trajectory(report)
    gids = {ln.get_gid() for ax in fig.axes for ln in ax.lines}
    for key in ("nc1", "nc2_equinorm_means", "etf_error_means", "nc3_self_duality"):
        assert f"wd|{key}|test" in gids, key
    test = sorted(
        (r for r in report if r.split == "test" and r.layer is None), key=lambda r: r.epoch
    )
    (line,) = [ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == "wd|nc1|test"]
    np.testing.assert_array_equal(line.get_ydata(), [r.metrics["nc1"] for r in test])


def test_axes_name_their_metric_ticks_and_title(run):
    fig = plot_trajectory(run[1], labels=["weight decay"])
    for ax in (a for a in fig.axes if a.get_visible() and a.lines):
        keys = {ln.get_gid().split("|")[1] for ln in ax.lines}
        ylabel = ax.get_ylabel()
        assert any(ylabel.startswith(k) or k.startswith(ylabel.split("\n")[0]) for k in keys)
        lo, hi = ax.get_xlim()
        inside = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert len(inside) >= 3, (ax.get_title(), inside)
    assert "weight decay" in fig.texts[0].get_text() or "weight decay" in fig._suptitle.get_text()


def test_several_runs_are_named_in_the_title(tmp_path, run):
    other = analyze_file(write_run(tmp_path / "nowd.h5", weight_decay=False, seed=4))
    fig = plot_trajectory([run[1], other], labels=["wd", "no wd"])
    assert fig._suptitle.get_text() == "wd vs no wd"
    assert plot_trajectory(run[1], title="")._suptitle is None
    fig = plot_layers([run[1], other], labels=["wd", "no wd"])
    assert fig._suptitle.get_text().startswith("wd vs no wd")


def test_accuracy_axes_end_at_one(run):
    fig = plot_trajectory(run[1])
    acc = next(ax for ax in fig.axes if ax.get_title() == "accuracy")
    assert acc.get_ylim()[1] == 1.0
    assert all(np.nanmax(ln.get_ydata()) <= 1.0 for ln in acc.lines)
    fig = plot_layers(run[1])
    ncc = next(ax for ax in fig.axes if ax.get_title() == "NCC accuracy")
    assert ncc.get_ylim()[1] == 1.0


def test_every_figure_takes_ax(run):
    report = run[1]
    res = _train_final(report)
    fig0, grid = plt.subplots(3, 4)  # ten trajectory panels
    assert plot_trajectory(report, ax=grid) is fig0
    fig1, three = plt.subplots(1, 3)
    assert plot_gram(res, ax=three) is fig1
    fig2, two = plt.subplots(1, 2)
    assert plot_geometry(res, ax=two) is fig2
    fig3, three = plt.subplots(1, 3)
    assert plot_layers(report, ax=three) is fig3
    with pytest.raises(TypeError, match="axes"):
        plot_gram(res, ax=three, axes=three)  # the 0.2 alias is gone


def test_geometry_honours_centered_weights(run):
    res = _train_final(run[1])
    fig = plot_geometry(res, centered_weights=True)
    w = res.arrays.weights - res.arrays.weights.mean(0)
    norms = np.linalg.norm(w, axis=1)
    (line,) = [
        ln for ax in fig.axes for ln in ax.lines if ln.get_gid() == "norms|classifier rows, centred"
    ]
    np.testing.assert_allclose(line.get_ydata(), norms / norms.mean(), rtol=1e-12)


def test_parse_classes():
    assert parse_classes("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_classes("worst:5") == Worst(5)
    assert parse_classes("worst10") == Worst(10)
    for bad in ("", "a-b", "3-1", "worst:0", "worst:1", "worst:x", "1,,x"):
        with pytest.raises(ValueError):
            parse_classes(bad)


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    path = write_run(
        tmp_path_factory.mktemp("many") / "c100.h5",
        n_classes=100,
        dim=102,
        n_per=3,
        epochs=(0, 5),
        layers=0,
        test=False,
    )
    res = _train_final(analyze_file(path))
    sample_file(path, [res], size=300)
    return res


def test_gram_class_subset_is_the_submatrix(many):
    res = many
    fig = plot_gram(res, classes=range(10))
    img = np.asarray(fig.axes[0].images[0].get_array())
    m = res.arrays.means - res.arrays.global_mean
    sub = m[:10]
    n = np.linalg.norm(sub, axis=1)
    np.testing.assert_allclose(img, (sub @ sub.T) / np.outer(n, n), atol=1e-12)
    etf = np.asarray(fig.axes[2].images[0].get_array())
    assert etf.shape == (10, 10) and etf[0, 1] == pytest.approx(-1 / 99)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [str(c) for c in range(10)]
    assert "10 of 100 classes" in fig._suptitle.get_text()
    assert _overlaps(fig) == []


def test_worst_classes_are_the_least_collapsed(many):
    res = many
    rows = pick_classes(res, Worst(7))
    m = res.arrays.means - res.arrays.global_mean
    spread = res.arrays.class_var / np.einsum("ij,ij->i", m, m)
    assert set(rows) == set(np.argsort(spread)[-7:])
    with pytest.raises(ValueError, match="outside"):
        pick_classes(res, [0, 100])


def test_projection_class_subset(many):
    fig = plot_projection(many, classes="0-9")
    gids = {c.get_gid() for ax in fig.axes for c in ax.collections if c.get_gid()}
    scatter = {g for g in gids if g.startswith("class|")}
    assert scatter and scatter <= {f"class|{c}" for c in range(10)}
    means = [c for ax in fig.axes for c in ax.collections if c.get_gid() == "means"]
    assert sum(len(c.get_offsets()) for c in means) == 10  # one marker per class
    assert _overlaps(fig) == []


def test_cli_classes_option(tmp_path, capsys):
    path = write_run(tmp_path / "c12.h5", n_classes=12, dim=14, n_per=4, epochs=(0, 5), layers=0)
    out = tmp_path / "figs"
    base = ["plot", path, "-o", str(out), "-k", "gram", "-f", "png", "-q"]
    assert main([*base, "--classes", "worst:4"]) == 0
    assert (out / "gram.png").exists()
    for bad in ("worst:1", "12", "0-200"):  # rows the 12 classes cannot give: usage, no folder
        other = tmp_path / f"none-{bad.replace(':', '')}"
        args = ["plot", path, "-o", str(other), "-k", "gram", "-q", "--classes", bad]
        assert main(args) == 2
        assert not other.exists()
    capsys.readouterr()
    assert main([*base, "--classes", "x"]) == 2
    err = capsys.readouterr().err
    assert "--classes" in err and "worst:K" in err


def test_panel_titles_come_from_the_registry():
    """Titles, directions and units of figure panels are the registry's (issue 25 item 5)."""
    from ncinspect.metrics.registry import PANEL_TITLES, lookup, panel_title
    from ncinspect.plots.panels import LAYER_PANELS, TRAJECTORY_PANELS

    for panel in (*TRAJECTORY_PANELS, *LAYER_PANELS):
        key = panel.lines[0][0]
        assert panel.title == panel_title(key) == PANEL_TITLES[key]
        assert lookup(key) is not None
    assert all(lookup(key) is not None for key in PANEL_TITLES)  # no heading of a non-metric
