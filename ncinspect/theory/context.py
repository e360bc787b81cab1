"""What every line of the theory table reads: the inputs and the quantities derived once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..stats.theory import TheoryPass
from .constants import Constants

__all__ = ["CRIT", "SYM", "Context", "build_context", "frob", "layer_norms_sq", "relative_error"]

CRIT = "any critical point"  #: where the exact identities hold
SYM = "critical point with symmetric class-constant outputs"  #: where the closed forms hold


def frob(a: np.ndarray) -> float:
    """Frobenius norm."""
    return float(np.linalg.norm(a))


def relative_error(measured: Any, predicted: Any) -> float | None:
    """``||measured - predicted|| / ||predicted||`` (Frobenius/Euclidean); None if undefined."""
    if measured is None or predicted is None:
        return None
    m, p = np.asarray(measured, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    den = float(np.linalg.norm(p))
    if den == 0 or not np.all(np.isfinite(m)) or not np.all(np.isfinite(p)):
        return None
    return float(np.linalg.norm(m - p) / den)


def layer_norms_sq(params: Sequence[np.ndarray]) -> list[float]:
    """``||W_l||_F^2`` of every layer, input side first."""
    return [float(np.vdot(w, w)) for w in (np.asarray(p, dtype=np.float64) for p in params)]


@dataclass
class Context:
    """The inputs of the theory table and what is derived from them once.

    ``e = eps1 + eps2``, ``dl = delta = eps1 - (C-1) eps2``, ``diag`` and ``off`` the closed
    forms' row norm and inner product numerators (None without outputs); ``mu_G`` the mean
    of the class means and ``centred`` the centred means (None unless every class has one).
    """

    C: int
    constants: Constants
    sums: TheoryPass | None
    params: Sequence[np.ndarray] | None
    last_layer: np.ndarray | None
    eps1: float | None
    eps2: float | None
    sqi_spread: float | None
    mse: float | None
    interpolates: bool | None
    absent: frozenset[str]
    norms: list[float] | None = None
    has_out: bool = False
    means_ok: bool = False
    mu_G: np.ndarray | None = None
    centred: np.ndarray | None = None
    balance: float | None = None
    e: float | None = None
    dl: float | None = None
    diag: float | None = None
    off: float | None = None
    partial: str | None = None
    closed_note: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def L(self) -> int | None:
        return len(self.norms) if self.norms is not None else None

    @property
    def ratio(self) -> float | None:
        return self.constants.ratio

    @property
    def Lam(self) -> float | None:
        return self.constants.Lambda

    @property
    def regularised(self) -> bool | None:
        return self.constants.regularised

    def missing(self, requires: Sequence[str]) -> list[str]:
        """The keys a line needs that are missing, in display order.

        ``mse`` and ``interpolates`` need the outputs only when the analysis lacks them.
        """
        out: list[str] = []
        for k in requires:
            if k in ("mse", "interpolates"):
                if getattr(self, k) is not None:
                    continue
                k = "outputs"
            if k == "ratio":
                out += self.constants.missing_for_ratio()
            elif k == "Lambda":
                out += self.constants.missing_for_Lambda()
            elif k == "params" and self.params is None:
                out.append("params")
            elif k == "weights" and self.last_layer is None:
                out.append("weights")
            elif k == "outputs" and not self.has_out:
                out.append("outputs")
            elif k == "means" and not self.means_ok:
                out.append("means")
            elif k in self.absent and k not in out:
                out.append(k)
        return list(dict.fromkeys(out))


def _derive(ctx: Context, means: np.ndarray | None, class_counts: Sequence[int]) -> None:
    """The derived quantities and the notes they raise, in the table's order."""
    sums, n = ctx.sums, ctx.constants.n_samples
    # the two exact identities sum over every sample of the loss: a snapshot holding only
    # part of the training set cannot check them (its sums are partial)
    if sums is not None and n and sums.count != n:
        ctx.partial = (
            f"the snapshot holds {sums.count} of the N = {n} samples "
            "of the loss: the sums over i need all of them"
        )
        ctx.notes.append(ctx.partial)
    if ctx.has_out and ctx.ratio is not None:
        ctx.balance = ctx.ratio * sums.rf  # (kappa/lambda) sum_i <r_i, f(x_i)>
    counts = np.asarray(class_counts)
    if counts.size and counts.min() != counts.max():
        ctx.closed_note = (
            f"classes are unbalanced ({int(counts.min())}..{int(counts.max())} "
            "samples): the closed forms assume balanced classes"
        )
        ctx.notes.append(ctx.closed_note)
    ctx.means_ok = bool(means is not None and np.all(np.isfinite(means)))
    if means is not None and not ctx.means_ok:
        ctx.notes.append("a class has no samples: the closed forms need every class mean")
    if ctx.means_ok:
        ctx.mu_G = means.mean(axis=0)  # mean of class means: what the identities need
        ctx.centred = means - ctx.mu_G
    if ctx.has_out:
        eps1, eps2, C = ctx.eps1, ctx.eps2, ctx.C
        ctx.e, ctx.dl = eps1 + eps2, eps1 - (C - 1) * eps2
        ctx.diag = eps1 * (1.0 - eps1) - (C - 1) * eps2**2
        ctx.off = eps2 * (2.0 * eps1 - 1.0 - (C - 2) * eps2)


def build_context(
    *,
    means: np.ndarray | None,
    class_counts: Sequence[int],
    constants: Constants,
    sums: TheoryPass | None,
    params: Sequence[np.ndarray] | None,
    last_layer: np.ndarray | None,
    eps1: float | None,
    eps2: float | None,
    sqi_spread: float | None = None,
    mse: float | None = None,
    interpolates: bool | None = None,
    missing: Sequence[str] = (),
) -> Context:
    """The :class:`Context` of one snapshot (arguments as :func:`theory_diagnostics`)."""
    ctx = Context(
        C=len(class_counts),
        constants=constants,
        sums=sums,
        params=params,
        last_layer=last_layer,
        eps1=eps1,
        eps2=eps2,
        sqi_spread=sqi_spread,
        mse=mse,
        interpolates=interpolates,
        absent=frozenset(missing),
        norms=layer_norms_sq(params) if params is not None else None,
        has_out=sums is not None and eps1 is not None and eps2 is not None,
        notes=list(constants.notes),
    )
    _derive(ctx, means, class_counts)
    return ctx
