"""Hostile round seven: what a training loop hands ``analyze``, the ``Meter`` and the writer.

Each case failed on the branch point (bd9715b) and passes now:

- a numpy masked array (features, labels, weights) was analysed with its masked values as
  data (numpy's conversion drops the mask): a silent wrong number; the Meter crashed on
  masked labels with numpy's ``ValueError``; the writer stored the masked values;
- the Meter given (N, 1), one-hot or nested-list labels raised numpy's ``ValueError`` or
  torch's ``IndexError``; labels on PyTorch's ``meta`` device beside CPU features raised
  ``NotImplementedError``.
"""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect
from ncinspect import DumpWriter, Meter
from ncinspect.errors import (
    InvalidDataError,
    ShapeMismatchError,
    UnsupportedDtypeError,
    UsageError,
)

RNG = np.random.default_rng(7)
Y = np.arange(40) % 4
X = np.eye(4, 8)[Y] * 3.0 + RNG.normal(size=(40, 8))
W = np.eye(4, 8)


def _meter(h, y, w=W):
    m = Meter(weights=w)
    m.update(h, y)
    m.next_pass()
    m.update(h, y)
    return m.compute()


def _masked(arr, where):
    mask = np.zeros(arr.shape, bool)
    mask[where] = True
    return np.ma.masked_array(arr, mask=mask)


CASES = {
    "features": lambda: (_masked(X, (3, 2)), Y, W),
    "labels": lambda: (X, _masked(Y, 5), W),
    "weights": lambda: (X, Y, _masked(W, (1, 1))),
}


@pytest.mark.parametrize("role", list(CASES))
def test_a_masked_array_that_masks_values_is_refused(tmp_path, role):
    h, y, w = CASES[role]()
    with pytest.raises(InvalidDataError, match="masked"):
        ncinspect.analyze(h, y, weights=w)
    with pytest.raises(InvalidDataError, match="masked"):
        _meter(h, y, w)
    with DumpWriter(tmp_path / "run.h5") as writer:
        with writer.snapshot("e1") as s:
            with pytest.raises(InvalidDataError, match="masked"):
                if role == "weights":
                    s.write(weights=w)
                else:
                    s.append(features=h, labels=y)


def test_a_masked_array_that_masks_nothing_is_its_values():
    plain = ncinspect.analyze(X, Y, weights=W).metrics["nc1"]
    h, y, w = (np.ma.masked_array(a) for a in (X, Y, W))
    assert ncinspect.analyze(h, y, weights=w).metrics["nc1"] == pytest.approx(plain)
    assert _meter(h, y, w).metrics["nc1"] == pytest.approx(plain)


@pytest.mark.parametrize(
    "labels",
    [
        lambda: Y.reshape(-1, 1),
        lambda: np.eye(4, dtype=np.int64)[Y],
        lambda: [[int(v)] for v in Y],
        lambda: np.int64(1),
    ],
    ids=["column", "one_hot", "nested_list", "scalar"],
)
def test_meter_labels_must_be_one_per_row(labels):
    with pytest.raises(ShapeMismatchError, match="one integer label a row"):
        Meter(weights=W).update(X, labels())


torch = pytest.importorskip("torch")


@pytest.mark.parametrize("shape", [(40, 1), (40, 4)])
def test_meter_tensor_labels_must_be_one_per_row(shape):
    y = torch.zeros(shape, dtype=torch.long)
    with pytest.raises(ShapeMismatchError, match="one integer label a row"):
        Meter(weights=W).update(torch.tensor(X), y)


def test_meter_refuses_labels_on_the_meta_device_beside_real_features():
    y = torch.empty(40, dtype=torch.long, device="meta")
    with pytest.raises(UnsupportedDtypeError, match="labels: a tensor on PyTorch's meta"):
        Meter(weights=W).update(torch.tensor(X), y)


def test_a_meter_reset_half_way_leaves_rows_no_later_meter_continues(tmp_path):
    """A meter's pass 1 reset half way leaves its rows marked in the caller's writer; a new
    meter of the same snapshot appended its rows to them and marked the whole complete
    (twice the first batch, analysed as one epoch)."""
    path = tmp_path / "run.h5"
    with DumpWriter(path) as w:
        first = Meter(weights=W, dump=w, snapshot="e1")
        first.update(X[:20], Y[:20])
        first.reset()  # an error caught, the epoch measured again
        again = Meter(weights=W, dump=w, snapshot="e1")
        with pytest.raises(UsageError, match="unfinished.*replace=True"):
            again.update(X, Y)
        w.snapshot("e1", replace=True).finish()  # start it over, as the message says
        again.update(X, Y)
        again.next_pass()
    (snap,) = ncinspect.analyze_file(str(path)).snapshots
    assert snap.n_samples == 40


@pytest.mark.parametrize("what", ["weights", "bias"])
def test_a_classifier_that_changed_shape_is_named_so(what):
    """A live parameter given new storage of another shape (a head resized between the
    passes) was "changed"; the message now says the shape, both ways."""
    p = torch.nn.Parameter(torch.tensor(W))
    b = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    m = Meter(weights=p, bias=b)
    m.update(X, Y)
    with torch.no_grad():
        if what == "weights":
            p.data = torch.zeros(5, 8, dtype=torch.float64)
        else:
            b.data = torch.zeros(5, dtype=torch.float64)
    with pytest.raises(InvalidDataError, match=rf"{what} changed shape .*-> \(5"):
        m.next_pass()
