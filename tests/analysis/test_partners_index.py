"""The train partners of a file's snapshots, found through an index by (epoch, layer), are
those :func:`train_partner` picks one by one (the first train snapshot of the same epoch
and layer, else the first split-less one; none for train or split-less snapshots), and
only with ``ncc_centres="train"``."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from ncinspect.analysis.file import partners, train_partner


def _snaps(seed: int):
    rng = random.Random(seed)
    snaps = []
    for i in range(60):
        snaps.append(
            SimpleNamespace(
                name=f"/s{i}",
                split=rng.choice([None, "train", "train", "test", "val"]),
                epoch=rng.choice([None, 0, 1, 2]),
                layer=rng.choice([None, "layer_1"]),
            )
        )
    return snaps


@pytest.mark.parametrize("seed", range(5))
def test_indexed_partners_equal_the_one_by_one_search(seed):
    snaps = _snaps(seed)
    selected = snaps[::2]
    kinds = {s.name: "classification" for s in snaps}
    got = partners(selected, snaps, kinds, "train")
    want = {s.name: train_partner(s, snaps) for s in selected}
    assert got == want
    assert any(v is not None for v in got.values())
    assert all(v is None for v in partners(selected, snaps, kinds, "own").values())


def test_partners_of_other_kinds_are_dropped():
    snaps = _snaps(0)
    kinds = {
        s.name: ("regression" if i % 3 == 0 else "classification") for i, s in enumerate(snaps)
    }
    got = partners(snaps, snaps, kinds, "train")
    for name, p in got.items():
        want = train_partner(next(s for s in snaps if s.name == name), snaps)
        ok = want is not None and kinds[want.name] == kinds[name] == "classification"
        assert p is (want if ok else None)
