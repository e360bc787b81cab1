"""The spellings removed in 0.3 fail with a message that names what replaces them."""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect
from ncinspect.cli import main
from ncinspect.errors import UsageError
from ncinspect.metrics import between_class_geometry
from ncinspect.results.parts import ResultArrays, TheoryLine
from ncinspect.stats.passes import FirstPass

from ..helpers import make_data


def test_results_are_read_by_attribute_only():
    h, y, m = make_data(C=4, d=6, n=200)
    res = ncinspect.analyze(h, y, weights=m)
    assert isinstance(res.arrays, ResultArrays)
    for obj, key in ((res.arrays, "means"), (TheoryLine(key="k", group="g", quantity="q"), "key")):
        with pytest.raises(TypeError):
            obj[key]
        assert not hasattr(obj, "get")


def test_between_class_geometry_checks_center_and_refuses_the_removed_name():
    h, y, m = make_data(C=4, d=6, n=200)
    first = FirstPass.of_chunk(h, y, 4)
    with pytest.raises(ValueError, match="center"):
        between_class_geometry(first, center="Classes")
    centres = first.class_means() + 0.3
    geo = between_class_geometry(first, ncc_centres=centres)
    np.testing.assert_allclose(geo.ncc_centres + geo.global_mean, centres, rtol=0, atol=1e-12)
    with pytest.raises(UsageError, match=r"ncc_means=\.\.\.\) was removed in 0\.3.*ncc_centres"):
        between_class_geometry(first, ncc_means=centres)


def test_analyze_takes_ncc_centres_and_refuses_ncc_means():
    h, y, m = make_data(C=4, d=6, n=200)
    own = ncinspect.analyze(h, y, weights=m)
    assert own.ncc_centres == "own"
    assert ncinspect.analyze(h, y, weights=m, ncc_centres="own").metrics == own.metrics
    with pytest.raises(UsageError, match="ncc_centres"):
        ncinspect.analyze(h, y, weights=m, ncc_means=own.arrays.means)
    with pytest.raises(UsageError, match="'train' needs a dump"):
        ncinspect.analyze(h, y, weights=m, ncc_centres="train")
    with pytest.raises(UsageError, match="ncc_centres"):
        ncinspect.analyze_file("unused.h5", ncc_means="train")


def test_plot_functions_refuse_the_removed_axes_keyword():
    from ncinspect.plots import plot_gram, plot_trajectory

    h, y, m = make_data(C=4, d=6, n=200)
    res = ncinspect.analyze(h, y, weights=m)
    for func in (plot_gram, plot_trajectory):
        with pytest.raises(TypeError, match="axes"):
            func(res if func is plot_gram else [res], axes=None)


def test_cli_names_the_renamed_ncc_option(tmp_path, capsys):
    assert main(["report", str(tmp_path / "x.h5"), "--ncc-means", "train"]) == 2
    assert "--ncc-means was renamed --ncc-centres" in capsys.readouterr().err
