"""Round seven, valid-but-unusual dumps x output options: ``report --html``.

- A dump whose snapshots are regression snapshots (``targets`` (N, t) float): ``--html``
  exited 4 (``ImportError: REGRESSION_INFO``, a name the registry refactor removed) after the
  JSON, CSV and table were written. The page now shows nrc1-nrc3 as the table does.
- ``--spectra``: the HTML page left out every spectral metric (rank_effective, rankme,
  stable_rank, ...) and the OOD scores (ood_auroc_*, ood_fpr95_*) that the JSON, CSV and the
  terminal table carry. The page now takes its rows from the registry's ``metric_rows``, the
  list the terminal table uses, so the outputs agree.
"""

from __future__ import annotations

import json
import re

import h5py
import numpy as np

from ncinspect.cli import main


def _blobs(C=3, n=8, d=5, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(C, d)) * 3
    y = np.repeat(np.arange(C), n)
    return mu[y] + rng.normal(size=(C * n, d)), y, mu / np.linalg.norm(mu, axis=1, keepdims=True)


def _metric_cells(page: str) -> set[str]:
    return set(re.findall(r"<code>([a-z0-9_]+)</code>", page))


def test_html_of_a_regression_snapshot(tmp_path):
    x, _, _ = _blobs()
    path = tmp_path / "reg.h5"
    with h5py.File(path, "w") as f:
        f["features"] = x
        f["targets"] = np.random.default_rng(1).normal(size=(len(x), 2))
    page, out = tmp_path / "r.html", tmp_path / "r.json"
    assert main(["report", str(path), "-q", "--html", str(page), "--json", str(out)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.rstrip().endswith("</html>")
    metrics = json.loads(out.read_text())["snapshots"][0]["metrics"]
    shown = _metric_cells(text)
    assert {"nrc1", "nrc2", "nrc3"} <= shown
    assert {"nrc1", "nrc2", "nrc3"} <= set(metrics)


def test_html_of_regression_trajectory_and_layer_metadata(tmp_path):
    path = tmp_path / "reg_ep.h5"
    rng = np.random.default_rng(2)
    with h5py.File(path, "w") as f:
        for e in range(2):
            g = f.create_group(f"epoch_{e}")
            g["features"] = _blobs(seed=e)[0]
            g["targets"] = rng.normal(size=(24, 1))
            g.attrs["task"] = "regression"
            g.attrs["layer"] = "block3"
    page = tmp_path / "r.html"
    assert main(["report", str(path), "-q", "--html", str(page)]) == 0
    assert "nrc1" in page.read_text(encoding="utf-8")


def test_html_shows_the_spectral_and_ood_keys_the_json_has(tmp_path):
    x, y, w = _blobs()
    path = tmp_path / "ood.h5"
    rng = np.random.default_rng(3)
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["epoch_0/features"] = x
        f["epoch_0/weights"] = w
        f["ood_svhn/epoch_0/features"] = rng.normal(size=(10, 5)) * 5
        f["ood_svhn/epoch_0"].attrs["split"] = "ood_svhn"
    page, out = tmp_path / "s.html", tmp_path / "s.json"
    args = ["report", str(path), "-q", "--spectra", "--full", "--html", str(page)]
    assert main([*args, "--json", str(out)]) == 0
    shown = _metric_cells(page.read_text(encoding="utf-8"))
    snap = next(s for s in json.loads(out.read_text())["snapshots"] if s["name"] == "/epoch_0")
    for key in ("rank_effective", "rankme", "stable_rank"):
        assert key in snap["metrics"] and key in shown, key
    ood_keys = [k for k in snap["metrics"] if k.startswith(("ood_auroc", "nc5_"))]
    assert ood_keys
    assert set(ood_keys) <= shown


def test_html_worst_classes_of_tiny_features(tmp_path):
    """Features near 1e-300: ``||mu_c - mu_G||^2`` underflows to 0 while the norm does not,
    and the worst-classes section divided by it (exit 4, ZeroDivisionError)."""
    x, y, w = _blobs()
    path = tmp_path / "tiny.h5"
    with h5py.File(path, "w") as f:
        f["features"] = x * 1e-300
        f["labels"] = y
        f["weights"] = w
    page = tmp_path / "t.html"
    assert main(["report", str(path), "-q", "--per-class", "--html", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert text.rstrip().endswith("</html>")
    assert "classes with the" in text


def test_html_worst_classes_of_identical_features_is_not_infinite(tmp_path):
    """Every feature equal: v_c = 0 and ||mu_c - mu_G|| = 0, a 0/0 the page showed as inf
    (the least collapsed classes) where nothing is defined: n/a."""
    y = np.repeat(np.arange(3), 8)
    path = tmp_path / "same.h5"
    with h5py.File(path, "w") as f:
        f["features"] = np.ones((len(y), 5))
        f["labels"] = y
        f["weights"] = np.eye(3, 5)
    page = tmp_path / "s.html"
    assert main(["report", str(path), "-q", "--per-class", "--html", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    section = text[text.index("classes with the") :]
    assert '<td class="num">inf</td>' not in section


def test_html_draws_the_trajectory_of_regression_snapshots(tmp_path):
    """Regression snapshots at several epochs: ``plot`` draws their nrc trajectory, but the
    page left the figure out (only classification trajectories counted)."""
    path = tmp_path / "reg3.h5"
    rng = np.random.default_rng(4)
    with h5py.File(path, "w") as f:
        for e in range(3):
            f[f"epoch_{e}/features"] = _blobs(seed=e)[0]
            f[f"epoch_{e}/targets"] = rng.normal(size=(24, 2))
    page = tmp_path / "r.html"
    assert main(["report", str(path), "-q", "--html", str(page)]) == 0
    text = page.read_text(encoding="utf-8")
    assert "<h2>Trajectories</h2>" in text
    assert "data:image/png;base64," in text
