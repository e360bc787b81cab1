"""Hostile round six, huge names (issue 22 item 5) in the Python API's own renderings: the
notebook HTML (``Report._repr_html_``, ``SnapshotResult._repr_html_``) and the reprs showed
a snapshot, split, layer or file name whole (a 1 MB snapshot name gave a 1 MB repr line and
a notebook cell of 2 MB); they are cut as ``report --html`` cuts them, the cut said, and the
JSON keeps the names whole."""

from __future__ import annotations

import json

import h5py

import ncinspect
from ncinspect.text import NAME_LIMIT, TEXT_LIMIT

from ..helpers import make_data

BIG = 1_000_000


def test_reprs_and_notebook_html_cut_huge_names(tmp_path):
    h, y, m = make_data(C=3, d=5, n=10)
    path = tmp_path / "big.h5"
    names = ["<script>" + "s" * BIG + "a", "<i>" + "s" * BIG + "b"]
    with h5py.File(path, "w") as f:
        f["labels"] = y
        for i, name in enumerate(names):
            g = f.create_group(name)
            g.attrs.update(epoch=i, split="<u>" + "p" * BIG, layer="L" * BIG)
            g["features"], g["weights"] = h * (1 + i), m
    report = ncinspect.analyze_file(str(path))
    bound = 4 * NAME_LIMIT + 2 * TEXT_LIMIT + 4000  # names, a warning or two, the table
    for text in (repr(report), repr(report[0]), report._repr_html_(), report[0]._repr_html_()):
        assert len(text) < bound, len(text)
        assert "chars)" in text  # the cut is said
    for html in (report._repr_html_(), report[0]._repr_html_()):
        assert "<script>" not in html and "<u>" not in html  # and the markup escaped
    assert {s["name"] for s in json.loads(report.to_json())["snapshots"]} == {
        "/" + n for n in names
    }


def test_layer_law_repr_cuts_and_escapes_the_split():
    from ncinspect.results.layer_laws import LayerLaw

    law = LayerLaw(epoch=0, split="\x1b[2J" + "s" * BIG, metrics={})
    text = repr(law)
    assert len(text) < 2 * NAME_LIMIT + 400 and "\x1b" not in text and "chars)" in text
