"""Huge names from a file (issue 22 item 5): what is rendered (HTML, tables, figures) is cut
with an ellipsis that says so; the JSON keeps every name whole."""

from __future__ import annotations

import json

import h5py
import numpy as np

from ncinspect.cli import main
from ncinspect.text import LABEL_LIMIT, NAME_LIMIT, TEXT_LIMIT, cut, markup, mpl_text

from ..helpers import make_data

BIG = 1_000_000  # a 1 MB class name made report --html run for minutes before the cap


def _dump(path, n=BIG) -> tuple[str, str]:
    h, y, m = make_data(C=3, d=5, n=30)
    cls, split = "=C$" + "c" * n, "[red]" + "s" * n
    with h5py.File(path, "w") as f:
        f["labels"] = y
        f["class_names"] = np.array([cls, "b", "c"], dtype=object).astype(h5py.string_dtype())
        for e in range(2):
            g = f.create_group(f"epoch_{e}")
            g.attrs.update(epoch=e, split=split)
            g["features"], g["weights"] = h * (1 + e), m
    return cls, split


def test_clip_says_the_cut():
    assert cut("abc", 10) == "abc"
    cut_text = cut("x" * 10_000, 60)
    assert len(cut_text) <= 60 and cut_text.endswith("\u2026 (10,000 chars)")
    assert cut_text.startswith("xx")
    assert len(markup("y" * 10**6)) < TEXT_LIMIT + 40
    assert len(mpl_text("$" * 10**6)) < 2 * NAME_LIMIT + 40  # "$" escaped after the cut
    assert len(mpl_text("z" * 10**6, LABEL_LIMIT)) <= LABEL_LIMIT


def test_html_table_and_json_of_a_huge_class_name(tmp_path, capsys):
    path = tmp_path / "big.h5"
    cls, split = _dump(path)
    page, js = tmp_path / "r.html", tmp_path / "r.json"
    rc = main(["report", str(path), "--html", str(page), "--json", str(js), "-q"])
    assert rc == 0, capsys.readouterr().err
    html = page.read_text()
    assert len(html) < 2_000_000  # figures included; the names are cut
    assert cls not in html and "chars)" in html
    assert "=C$ccc" in html  # the start of the name is shown
    doc = json.loads(js.read_text())  # the JSON keeps the names whole
    assert doc["snapshots"][0]["split"] == split
    assert cls in js.read_text()
    capsys.readouterr()
    assert main(["report", str(path), "--per-class"]) == 0
    out = capsys.readouterr().out
    assert len(out) < 100_000 and "chars)" in out and cls not in out


def test_figures_of_a_huge_class_name(tmp_path, capsys):
    path = tmp_path / "big.h5"
    _dump(path)
    out = tmp_path / "figs"
    rc = main(["plot", str(path), "-f", "svg", "-k", "geometry", "-k", "gram", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    for svg in out.glob("*.svg"):
        assert svg.stat().st_size < 2_000_000
