"""Snapshots that carry a ``layer`` name for the classifier's layer (issue 22 item 4): the
HTML page, the plots and ``check`` treat it as the classifier's layer instead of finding
nothing."""

from __future__ import annotations

import h5py
import pytest

from ncinspect.cli import main
from ncinspect.results.trajectory import classifier_layer, final_snapshot, trajectory

from ..helpers import make_data


def _named(path, layer="block4", *, hidden=False, test=False, epochs=3) -> None:
    h, y, m = make_data(C=3, d=5, n=30)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for e in range(epochs):
            for split in ("train", "test") if test else ("train",):
                g = f.create_group(f"{split}/epoch_{e}")
                g.attrs.update(epoch=e, split=split, layer=layer)
                g["features"], g["weights"] = h * (1 + 0.3 * e), m
                if hidden:
                    k = g.create_group("layer_1")
                    k.attrs["layer"] = "layer_1"
                    k["features"] = h * 2


@pytest.mark.parametrize(
    "layer,hidden,test",
    [
        ("block4", False, False),
        ("penultimate", True, False),
        ("fc_in", False, True),
        ("layer_9", True, True),
    ],
)
def test_html_page_of_a_named_layer(tmp_path, capsys, layer, hidden, test):
    path = tmp_path / "named.h5"
    _named(path, layer, hidden=hidden, test=test)
    out = tmp_path / "page.html"
    assert main(["report", str(path), "--html", str(out), "-q"]) == 0, capsys.readouterr().err
    text = out.read_text()
    assert "Metrics against epoch" in text  # the trajectory figure is drawn


def test_html_page_when_only_a_hidden_layer_has_two_epochs(tmp_path, capsys):
    h, y, m = make_data(C=3, d=5, n=30)
    path = tmp_path / "hidden.h5"
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for e in range(3):
            f[f"epoch_{e}/layer_1/features"] = h * (1 + e)
            f[f"epoch_{e}"].attrs["epoch"] = e
        f["epoch_2/features"], f["epoch_2/weights"] = h, m
    out = tmp_path / "page.html"
    assert main(["report", str(path), "--html", str(out), "-q"]) == 0, capsys.readouterr().err


def test_plot_and_check_of_a_named_layer(tmp_path, capsys):
    path = tmp_path / "named.h5"
    _named(path, "block4", test=True)
    assert (
        main(
            [
                "plot",
                str(path),
                "-k",
                "trajectory",
                "-f",
                "png",
                "--dpi",
                "30",
                "-o",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    assert (tmp_path / "p" / "trajectory.png").exists()
    assert main(["check", str(path), "--max", "nc1=1e9", "--decreasing", "nc1"]) in (0, 1)
    out = capsys.readouterr()
    assert "no snapshot of layer" not in out.err, out.err


def test_classifier_layer_rules():
    class R:
        def __init__(self, layer, epoch=0, weights=None):
            self.layer, self.epoch, self.split, self.weights = layer, epoch, "train", weights

    assert classifier_layer([R(None), R("layer_1")]) is None
    assert classifier_layer([R("block4"), R("block4", 1)]) == "block4"
    # several named layers: the one with classifier weights, else the deepest
    assert classifier_layer([R("layer_1"), R("head", weights=1)]) == "head"
    assert classifier_layer([R("layer_1"), R("layer_3"), R("layer_2")]) == "layer_3"
    runs = [R("block4", 0), R("block4", 2), R("block4", 1)]
    assert [r.epoch for r in trajectory(runs)] == [0, 1, 2]
    assert final_snapshot(runs).epoch == 2
    assert trajectory(runs, layer=None) == []  # an explicit layer is still honoured
