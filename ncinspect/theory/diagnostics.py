"""The theory section of one snapshot: the table of identities evaluated, with a summary.

:func:`theory_diagnostics` returns a :class:`~ncinspect.results.TheoryResult`: ``lines``
(:class:`~ncinspect.results.TheoryLine`: ``key, group, quantity, predicted, measured,
rel_error, status, note, missing, holds``; status is ``ok``, ``missing`` or
``not_applicable``), ``constants``, ``applicable`` (lambda > 0), ``layer_norms_sq``,
``layer_norm_differences``, ``missing`` (key -> how to record it), ``notes``,
``max_rel_error_critical`` (the identities of every critical point: balancedness and
stationarity) and ``max_rel_error_closed_forms`` (those that also need symmetric
class-constant outputs).

Relative errors are ``||measured - predicted|| / ||predicted||`` over the whole vector or
matrix, except the stationarity residual, which is
``||lambda W_L - kappa sum_i r_i h_i^T||_F / ||lambda W_L||_F`` (spec) and the layer-norm
spread ``(max_l - min_l) / mean_l`` of ``||W_l||_F^2``. Matrices are shown by their Frobenius
norms. The exact identities need lambda > 0; with lambda = 0 they are reported as not
applicable and the (conserved) layer-norm differences are shown instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..results.parts import TheoryLine, TheoryResult
from ..stats.theory import TheoryPass
from .constants import HOW_TO_RECORD, Constants
from .context import CRIT, SYM, Context, build_context
from .identities import identity_lines

__all__ = ["theory_diagnostics", "tolerance_failures"]


def tolerance_failures(theory: TheoryResult, tolerance: float) -> tuple[int, list[tuple]]:
    """How many identities were checked, and ``(key, rel_error)`` of those above ``tolerance``.

    Only lines that state an identity (``holds`` set) with a computed relative error count.
    """
    checked = [ln for ln in theory.lines if ln.holds and ln.rel_error is not None]
    return len(checked), [(ln.key, ln.rel_error) for ln in checked if ln.rel_error > tolerance]


def _worst(lines: list[TheoryLine], holds: str) -> float | None:
    errs = [ln.rel_error for ln in lines if ln.holds == holds and ln.rel_error is not None]
    return max(errs) if errs else None


def _closing_notes(ctx: Context) -> list[str]:
    notes = []
    if ctx.has_out and ctx.eps1 > 1.0 - 1e-6 and abs(ctx.eps2) < 1e-6:
        notes.append(
            "the outputs are ~0 (eps1 = 1, eps2 = 0): the network sits at the trivial "
            "critical point W = 0, where the relative errors mean nothing"
        )
    if ctx.regularised is False:
        notes.append(
            "lambda = 0: the balancedness, stationarity and closed-form identities do "
            "not apply; the layer-norm differences are conserved under gradient flow"
        )
    return notes


def theory_diagnostics(
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
    initial_layer_norms: Sequence[float] | None = None,
    initial_name: str | None = None,
    missing: Sequence[str] = (),
) -> TheoryResult:
    """Every quantity of spec/theory.md: predicted, measured and relative error.

    Parameters
    ----------
    means : (C, d) array or None
        Class means of the penultimate features (``SnapshotResult.arrays.means``).
    class_counts : sequence of int
        Samples per class (the closed forms assume balanced classes).
    constants : Constants
        lambda, kappa, N, Lambda (see :func:`resolve_constants`).
    sums : TheoryPass or None
        The sums over the training rows; None when the outputs are not available.
    params, last_layer : optional
        ``[W_1, ..., W_L]`` (input side first) and ``W_L`` (``params[-1]`` or the weights).
    eps1, eps2, sqi_spread, mse, interpolates : optional
        The analysis' ``sqi_eps1``, ``sqi_eps2``, ``sqi_spread``, ``mse``, ``interpolates``.
    initial_layer_norms, initial_name : optional
        ``||W_l||_F^2`` at the start of the run and the snapshot they come from: with
        lambda = 0 the differences of consecutive layers are conserved under gradient flow.
    missing : sequence of str
        Keys known to be absent from the dump (``params``, ``outputs``, ``weights``, ...).

    Returns
    -------
    TheoryResult
        The lines (status ``ok``, ``missing`` or ``not_applicable``; ``holds`` says where
        each identity holds), the constants, notes, keys to record and the worst relative
        errors of the exact identities and of the closed forms (see the module docstring).
    """
    ctx = build_context(
        means=means,
        class_counts=class_counts,
        constants=constants,
        sums=sums,
        params=params,
        last_layer=last_layer,
        eps1=eps1,
        eps2=eps2,
        sqi_spread=sqi_spread,
        mse=mse,
        interpolates=interpolates,
        missing=missing,
    )
    lines, diffs = identity_lines(ctx, initial_layer_norms, initial_name)
    missing_keys = sorted({k for line in lines for k in line.missing})
    regularised = ctx.regularised
    return TheoryResult(
        applicable=bool(regularised) if regularised is not None else None,
        constants={**constants.to_dict(), "n_classes": ctx.C, "depth": ctx.L},
        lines=lines,
        layer_norms_sq=ctx.norms,
        layer_norm_differences=diffs,
        missing={k: HOW_TO_RECORD.get(k, "") for k in missing_keys},
        notes=[*ctx.notes, *_closing_notes(ctx)],
        max_rel_error_critical=_worst(lines, CRIT),
        max_rel_error_closed_forms=_worst(lines, SYM),
    )
