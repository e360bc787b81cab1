"""The 0.1 spellings that 0.2 renamed still work for a release, and warn."""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect
from ncinspect.metrics import between_class_geometry
from ncinspect.results import TheoryLine
from ncinspect.stats import FirstPass

from ..helpers import make_data


def test_dict_style_reads_of_results_warn_and_return_the_fields():
    h, y, m = make_data(C=4, d=6, n=200)
    res = ncinspect.analyze(h, y, weights=m)
    with pytest.warns(DeprecationWarning, match=r"resultarrays\.means"):
        means = res.arrays["means"]
    np.testing.assert_array_equal(means, res.arrays.means)
    with pytest.warns(DeprecationWarning):
        assert "means" in res.arrays
    with pytest.warns(DeprecationWarning):
        assert res.arrays.get("sample_proj", "none") == "none"  # a field left None
    with pytest.warns(DeprecationWarning), pytest.raises(KeyError):
        res.arrays["no_such_field"]
    line = TheoryLine(key="k", group="g", quantity="q", status="ok")
    with pytest.warns(DeprecationWarning):
        assert line["key"] == "k"


def test_between_class_geometry_checks_center_and_keeps_the_older_name():
    h, y, m = make_data(C=4, d=6, n=200)
    first = FirstPass.of_chunk(h, y, 4)
    with pytest.raises(ValueError, match="center"):
        between_class_geometry(first, center="Classes")
    centres = first.class_means() + 0.3
    new = between_class_geometry(first, ncc_centres=centres)
    with pytest.warns(DeprecationWarning, match="ncc_centres"):
        old = between_class_geometry(first, ncc_means=centres)
    np.testing.assert_array_equal(old.ncc_centres, new.ncc_centres)
    with pytest.raises(ValueError, match="not both"):
        between_class_geometry(first, ncc_centres=centres, ncc_means=centres)
