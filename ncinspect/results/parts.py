"""Typed parts of a result (:class:`~ncinspect.results.report.SnapshotResult`): arrays, theory.

:class:`ResultArrays` names every array a result can carry (the geometry for figures, the
``sample_*`` subsample, regression and aggregation extras); :class:`TheoryResult` and
:class:`TheoryLine` hold the theory section. All three are dataclasses, read by attribute
(``result.arrays.means``, ``result.theory.lines[0].rel_error``); ``to_dict`` gives the JSON
form of the theory section. (The dict-style reads of 0.1 were removed in 0.3.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

__all__ = ["ResultArrays", "TheoryLine", "TheoryResult"]


@dataclass
class ResultArrays:
    """The arrays of one result (None: not computed for it). Never written to JSON.

    Classes are the present ones (in the order of ``class_names``) unless named ``*_all``,
    which keep every row of the classifier (absent classes included).
    """

    means: np.ndarray | None = None  #: (C, d) class means
    global_mean: np.ndarray | None = None  #: (d,) mu_G under the result's ``center``
    weights: np.ndarray | None = None  #: (C, d) classifier rows
    bias: np.ndarray | None = None  #: (C,)
    between_eigvals: np.ndarray | None = None  #: (k,) eigenvalues of Sigma_B
    within_along: np.ndarray | None = None  #: (k,) v_k^T Sigma_W v_k along them
    basis: np.ndarray | None = None  #: (k, d) the between-class directions v_k
    class_var: np.ndarray | None = None  #: (C,) within-class variance per class
    class_index: np.ndarray | None = None  #: (C,) row of W of each present class
    weights_all: np.ndarray | None = None  #: (C_total, d)
    bias_all: np.ndarray | None = None  #: (C_total,)
    means_all: np.ndarray | None = None  #: (C_total, d), NaN rows for absent classes
    class_counts_all: np.ndarray | None = None  #: (C_total,)
    sample_index: np.ndarray | None = None  #: (n,) subsampled rows, increasing
    sample_codes: np.ndarray | None = None  #: (n,) position in ``class_names`` (-1: absent)
    sample_proj: np.ndarray | None = None  #: (n, k <= 2) projection on the leading v_k
    sample_true_out: np.ndarray | None = None  #: (n,) f_{y_i}(x_i)
    sample_wrong_out: np.ndarray | None = None  #: (n (C-1),) f_c(x_i), c != y_i
    target_covariance: np.ndarray | None = None  #: regression: (t, t)
    feature_eigvals: np.ndarray | None = None  #: regression: feature covariance spectrum
    ci_low: dict[str, Any] | None = None  #: aggregated views: lower interval end per key
    ci_high: dict[str, Any] | None = None  #: aggregated views: upper interval end per key
    released: bool = False  #: the class-level arrays were dropped (:meth:`release`)
    had_weights: bool = False  #: released, and ``weights`` was there before

    #: the arrays :meth:`release` drops: those of C x d and larger (the small per-class
    #: vectors, the interval dicts and the sample subsample stay)
    LARGE = ("means", "weights", "basis", "weights_all", "means_all")

    def release(self) -> None:
        """Drop the class-level arrays of C x d and larger (:data:`LARGE`): what a figure of
        this result would read. A run over many snapshots keeps them only for the snapshots
        its figures can show (``analyze_file(..., arrays="last")``), so its memory does not
        grow by several C x d arrays per snapshot."""
        self.had_weights = self.had_weights or self.weights is not None
        for name in self.LARGE:
            setattr(self, name, None)
        self.released = True

    def update(self, values: dict[str, Any]) -> None:
        """Set fields from ``values`` (an unknown name raises ``KeyError``)."""
        names = {f.name for f in fields(self)}
        for key, value in values.items():
            if key not in names:
                raise KeyError(f"ResultArrays has no field {key!r}")
            setattr(self, key, value)

    @classmethod
    def of(cls, value: ResultArrays | dict[str, Any] | None) -> ResultArrays:
        """``value`` as :class:`ResultArrays` (from a dict of field names, or empty)."""
        if isinstance(value, ResultArrays):
            return value
        out = cls()
        out.update(dict(value or {}))
        return out


@dataclass
class TheoryLine:
    """One line of the theory table: predicted against measured (spec/theory.md).

    ``status`` is ``ok``, ``missing`` (``missing`` names the keys to record) or
    ``not_applicable`` (``note`` says why); ``holds`` says where the identity holds (None
    for context lines).
    """

    key: str
    group: str
    quantity: str
    predicted: Any = None
    measured: Any = None
    rel_error: float | None = None
    status: str = "ok"
    note: str | None = None
    missing: list[str] = field(default_factory=list)
    holds: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class TheoryResult:
    """The theory section of one snapshot (``"theory"`` in the JSON)."""

    applicable: bool | None
    constants: dict[str, Any]
    lines: list[TheoryLine]
    layer_norms_sq: list[float] | None
    layer_norm_differences: list[float] | None
    missing: dict[str, str]  #: key -> how to record it
    notes: list[str]
    max_rel_error_critical: float | None
    max_rel_error_closed_forms: float | None

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["lines"] = [line.to_dict() for line in self.lines]
        return out
