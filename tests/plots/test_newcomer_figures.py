"""What a newcomer trips on in the figures: class colours that cannot be told apart, a panel
title naming one of its two series, epoch tick labels printed on top of each other."""

from __future__ import annotations

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ncinspect import analyze_file  # noqa: E402
from ncinspect.analysis.sampling import sample_file  # noqa: E402
from ncinspect.plots import plot_projection, plot_trajectory  # noqa: E402
from ncinspect.plots._style import CLASS20, class_colors, class_markers  # noqa: E402
from ncinspect.plots.panels import TRAJECTORY_PANELS  # noqa: E402
from tests.plots.test_plots_data import write_run  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _lab(colors) -> np.ndarray:
    """CIELAB (D65) of matplotlib colours, from the sRGB definition (IEC 61966-2-1)."""
    rgb = np.array([matplotlib.colors.to_rgb(c) for c in colors])
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    d = 6 / 29
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], 1)


def test_lab_reference_values():
    np.testing.assert_allclose(_lab(["#ffffff"])[0], [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(_lab(["#ff0000"])[0], [53.24, 80.09, 67.20], atol=0.05)


@pytest.mark.parametrize("n", [10, 12, 20])
def test_class_colours_are_distinguishable_up_to_20(n):
    lab = _lab(class_colors(n))
    markers = class_markers(n)
    for i, j in itertools.combinations(range(n), 2):
        delta = float(np.linalg.norm(lab[i] - lab[j]))
        assert delta >= 25, (i, j, delta)  # Petroff-10's classes 3 and 8 were 19.3 apart
    pairs = {(tuple(np.round(lab[i], 3)), markers[i]) for i in range(n)}
    assert len(pairs) == n
    assert len(set(markers[:5])) == 5  # neighbouring classes differ in shape too
    assert all(_lab([c])[0, 0] < 85 for c in CLASS20)  # no tint that vanishes on white


def _projection_run(tmp_path, n_classes):
    path = write_run(
        tmp_path / f"c{n_classes}.h5",
        n_classes=n_classes,
        dim=n_classes + 2,
        n_per=3,
        epochs=(0, 5),
        layers=0,
        test=False,
    )
    res = [r for r in analyze_file(path) if r.epoch == 5][0]
    sample_file(path, [res], size=300)
    return res


def test_projection_legend_up_to_20_classes(tmp_path):
    res = _projection_run(tmp_path, 15)
    fig = plot_projection(res)
    legend = fig.axes[0].get_legend()
    assert legend is not None and len(legend.get_texts()) == 15
    scatters = [c for c in fig.axes[0].collections if (c.get_gid() or "").startswith("class|")]
    looks = {
        (tuple(np.round(c.get_facecolor()[0][:3], 4)), c.get_paths()[0].vertices.tobytes())
        for c in scatters
    }
    assert len(looks) == len(scatters) == 15  # colour and marker: one look per class


def test_projection_beyond_20_classes_says_they_are_grouped(tmp_path):
    fig = plot_projection(_projection_run(tmp_path, 24))
    assert fig.axes[0].get_legend() is None
    labels = [ax.get_ylabel() for ax in fig.axes[1:]]
    assert any("grouped" in lab and "24" in lab for lab in labels), labels


def test_panels_title_every_series_they_draw():
    panel = next(p for p in TRAJECTORY_PANELS if p.lines[0][0] == "etf_error_means")
    assert "means" in panel.title and "W centred" in panel.title


def _tick_overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of visible tick labels on one axis whose drawn boxes intersect."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    bad = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            labels = [
                t.label1
                for t, loc in zip(axis.get_major_ticks(), axis.get_majorticklocs(), strict=False)
                if lo <= loc <= hi and t.label1.get_visible() and t.label1.get_text()
            ]
            boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels]
            for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
                if a.overlaps(b):
                    bad.append((ta, tb))
    return bad


def test_tick_overlap_detector_finds_overlap():
    fig, ax = plt.subplots(figsize=(1.0, 1.0))
    ax.plot([0, 6000], [0, 1])
    ax.set_xticks([0, 1500, 3000, 4500, 6000])
    assert _tick_overlaps(fig)


def test_epoch_ticks_of_a_long_run_do_not_overlap(tmp_path):
    """The five-seed figure's case: epochs up to 6000, two runs, the 4-column panel grid."""
    epochs = (0, 1500, 3000, 4500, 6000)
    a = analyze_file(write_run(tmp_path / "a.h5", epochs=epochs, layers=0, seed=1))
    b = analyze_file(write_run(tmp_path / "b.h5", epochs=epochs, layers=0, seed=2))
    fig = plot_trajectory([a, b], labels=["weight decay", "no weight decay"])
    xticks = [t.get_text() for t in fig.axes[0].get_xticklabels() if t.get_text()]
    assert xticks  # the check below has tick labels to check
    assert _tick_overlaps(fig) == []
