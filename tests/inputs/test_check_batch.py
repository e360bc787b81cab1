"""One input checker (issue 25 item 3): every host entry (arrays, files, regression, OOD)
refuses the same mistake with the same message and error type, on any array namespace,
reading only shapes and dtypes."""

from __future__ import annotations

import array_api_strict as xps
import numpy as np
import pytest
import torch

import ncinspect
from ncinspect.analysis.ood import add_nc5_arrays
from ncinspect.analysis.regression import prepare_regression
from ncinspect.errors import (
    InvalidDataError,
    ShapeMismatchError,
    UnsupportedDtypeError,
    UsageError,
)
from ncinspect.inputs import check_batch, check_center, dtype_kind

from ..helpers import make_data

H, Y, W = make_data(C=3, d=4, n=12)

BAD_FEATURES = [
    (H[:, 0], ShapeMismatchError, "features must be 2-D (N, d), got shape (36,)"),
    (H[None], ShapeMismatchError, "features must be 2-D (N, d), got shape (1, 36, 4)"),
    (H.astype(complex), UnsupportedDtypeError, "has unsupported dtype complex128"),
    (H.astype(bool), UnsupportedDtypeError, "has unsupported dtype bool"),
    (H.astype(str), UnsupportedDtypeError, "has unsupported dtype <U"),
    (H[:0], InvalidDataError, "features are empty (shape (0, 4))"),
    (H[:, :0], InvalidDataError, "features are empty (shape (36, 0))"),
]


def _entries(features):
    """Each host entry, called with ``features`` (and matching good other inputs)."""
    n = features.shape[0] if np.ndim(features) else 0
    return {
        "analyze": lambda: ncinspect.analyze(features, Y[: max(n, 0)] if n else Y),
        "regression": lambda: prepare_regression(features, np.zeros((max(n, 1), 2))),
    }


@pytest.mark.parametrize("features,error,message", BAD_FEATURES)
def test_every_entry_one_message_one_type(features, error, message):
    for name, call in _entries(features).items():
        with pytest.raises(error) as info:
            call()
        assert message in str(info.value), (name, str(info.value))


@pytest.mark.parametrize("features,error,message", BAD_FEATURES[:2] + BAD_FEATURES[5:6])
def test_ood_entry_same_types(features, error, message):
    res = ncinspect.analyze(H, Y, weights=W)
    with pytest.raises(error) as info:
        add_nc5_arrays(res, features)
    assert message.replace("features", "OOD features") in str(info.value)


def test_file_entry_same_message(tmp_path):
    import h5py

    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["features"], f["labels"] = H.astype(complex), Y
    with pytest.raises(UnsupportedDtypeError, match="features has unsupported dtype complex128"):
        ncinspect.analyze_file(path)


def test_labels_rows():
    with pytest.raises(ShapeMismatchError, match="labels have 35 rows but features has N = 36"):
        ncinspect.analyze(H, Y[:-1])


@pytest.mark.parametrize("center", ["class", None, 1, "SAMPLES"])
def test_center_one_place_one_type(center):
    with pytest.raises(UsageError, match="center must be 'classes' or 'samples'"):
        check_center(center)
    with pytest.raises(UsageError, match="center must be 'classes' or 'samples'"):
        ncinspect.analyze(H, Y, center=center)
    with pytest.raises(UsageError, match="center must be 'classes' or 'samples'"):
        ncinspect.Meter(W, center=center)


@pytest.mark.parametrize(
    "make",
    [
        lambda a: a,
        lambda a: torch.from_numpy(a),
        lambda a: xps.asarray(a),
    ],
    ids=["numpy", "torch", "array-api-strict"],
)
def test_any_namespace(make):
    from array_api_compat import array_namespace

    h, y = make(np.asarray(H, dtype=np.float32)), make(np.asarray(Y))
    xp = array_namespace(h)
    assert check_batch(xp, h, y) == (36, 4)
    assert check_batch(xp, h[:0, :], y[:0], empty_ok=True) == (0, 4)
    with pytest.raises(ShapeMismatchError, match=r"features must be 2-D \(N, d\)"):
        check_batch(xp, h[:, 0], y)
    with pytest.raises(ShapeMismatchError, match="labels have 35 rows"):
        check_batch(xp, h, y[:35])
    with pytest.raises(UnsupportedDtypeError, match="unsupported dtype"):
        check_batch(xp, make(np.ones((3, 2), dtype=bool)))
    with pytest.raises(UsageError):
        check_batch(xp, h, y, center="mean")


def test_meta_device_needs_no_values():
    """Shapes and dtypes only: a tensor without storage (the meta device) is checked."""
    h = torch.empty((5, 3), device="meta")
    y = torch.empty((5,), dtype=torch.int64, device="meta")
    from array_api_compat import array_namespace

    assert check_batch(array_namespace(h), h, y) == (5, 3)


def test_dtype_kind():
    assert dtype_kind(np.float16) == "f" and dtype_kind("int32") == "i"
    assert dtype_kind(torch.bfloat16) == "f" and dtype_kind(torch.uint8) == "u"
    assert dtype_kind(torch.bool) == "b" and dtype_kind(torch.complex64) == "c"
    assert dtype_kind(xps.float32, xps) == "f" and dtype_kind(xps.int8, xps) == "i"
