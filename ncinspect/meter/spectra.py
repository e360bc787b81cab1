"""The spectral sums of a :class:`~ncinspect.Meter` made with ``spectra=True``.

Pass 2's batches add their ``sum e e^T`` and ``sum h h^T`` (:class:`SpectraPass`, on the host:
device batches are copied there for these d x d products); the sums merge across meters
(:meth:`Meter.merge`), travel in ``state_dict`` under ``spectra_*`` keys and give the spectral
keys at ``compute()``. They are not part of the declared pass state
(:mod:`ncinspect.stats.protocol`), so the collective ``all_reduce`` of a distributed run does
not carry them: merge meters, or reduce their ``state_dict``, instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.build import add_spectra
from ..arrays import to_host
from ..stats.spectra import SpectraPass, spectra_budget

__all__ = ["MeterSpectra"]


class MeterSpectra:
    """The d x d sums of one meter (``on``: whether it was asked for)."""

    def __init__(self, on: bool):
        self.on = bool(on)
        self.sums: SpectraPass | None = None
        self.reason: str | None = None

    def start(self, n_features: int) -> None:
        """At ``next_pass``: empty sums, or the budget's reason why there are none."""
        if self.on:
            self.reason = spectra_budget(n_features, None)
            self.sums = None if self.reason else SpectraPass.empty(n_features)

    def add(self, geom, h: Any, y: Any, ignore: int | None = None) -> None:
        """Add one pass-2 batch (features ``h`` and codes ``y``, any array library; rows
        labelled ``ignore`` left out)."""
        if self.sums is not None:
            hh, yh = to_host(h, "features"), to_host(y, "labels")
            # device labels are checked only at the pass end: keep the rows whose label is a
            # class row (whole number in [0, C)); the others are refused at compute()
            yv = yh.astype(np.float64)
            ok = (yv == np.round(yv)) & (yv >= 0) & (yv < geom.present.shape[0])
            if ignore is not None:
                ok &= yv != ignore
            part = SpectraPass.of_chunk(geom, hh[ok], yh[ok].astype(np.int64))
            self.sums = self.sums.merge(part)

    def merge(self, other: MeterSpectra) -> None:
        if self.sums is not None and other.sums is not None:
            self.sums = self.sums.merge(other.sums)

    def settings(self) -> dict[str, Any]:
        """The meter setting (only when on, so that older states still load)."""
        return {"spectra": True} if self.on else {}

    def save(self, state: dict[str, Any]) -> dict[str, Any]:
        if self.sums is not None:
            state["spectra_scatter"], state["spectra_gram"] = self.sums.scatter, self.sums.gram
            state["spectra_count"] = int(self.sums.count)
        return state

    def load(self, state) -> None:
        if "spectra_scatter" not in state:
            self.sums = None
            return
        sums = (np.asarray(state[k], dtype=np.float64) for k in ("spectra_scatter", "spectra_gram"))
        self.sums = SpectraPass(*sums, int(state["spectra_count"]))

    def finish(self, res, geom, first):
        """``res`` with the spectral keys when on."""
        if self.on:
            add_spectra(res, self.sums, geom, first, self.reason)
        return res
