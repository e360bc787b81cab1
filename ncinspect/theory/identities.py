"""The seed theory's lines (spec/theory.md) as a table, and the loop that evaluates them.

Each entry of :data:`IDENTITIES` is one line of the theory table: its key, group, the
quantity it compares, the inputs it requires and a compute function of the
:class:`~ncinspect.theory.context.Context` returning ``(predicted, measured, rel_error,
note)``. :func:`evaluate` turns an entry into a line: ``not_applicable`` when lambda = 0
(or the snapshot holds part of the training set, for the exact identities), ``missing``
with the keys to record when an input is absent, else the computed values.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..metrics.linalg import pairwise_upper
from ..results.parts import TheoryLine
from .context import CRIT, SYM, Context, frob, relative_error

__all__ = ["IDENTITIES", "Identity", "LINE_KEYS", "evaluate", "identity_lines"]

NO_DECAY = "lambda = 0: the identity holds only at critical points of a regularised loss"

Values = tuple[Any, Any, "float | None", "str | None"]


@dataclass(frozen=True)
class Identity:
    """One line of the theory table (``layered``: one line per layer, ``{key}``/``{name}``
    in the key and quantity are the layer's names)."""

    key: str
    group: str
    quantity: str
    requires: tuple[str, ...]
    compute: Callable[..., Values]
    holds: str | None = None
    layered: bool = False
    #: the measured value shown on a not-applicable line (None: not shown)
    shown: Callable[..., Any] | None = None


# --- balancedness and stationarity (any critical point) -----------------------------
def _balance(ctx: Context, i: int) -> Values:
    return ctx.balance, ctx.norms[i], relative_error(ctx.norms[i], ctx.balance), None


def _balance_shown(ctx: Context, i: int) -> Any:
    return ctx.norms[i] if ctx.norms is not None else None


def _spread(ctx: Context) -> Values:
    mean = float(np.mean(ctx.norms))
    value = (max(ctx.norms) - min(ctx.norms)) / mean if mean > 0 else None
    return 0.0, value, value, None


def _spread_shown(ctx: Context) -> Any:
    return _spread(ctx)[1] if ctx.norms is not None and len(ctx.norms) else None


def _stationarity(ctx: Context) -> Values:
    target = ctx.ratio * ctx.sums.rh  # (kappa/lambda) sum_i r_i h_i^T, (C, d)
    den = frob(ctx.last_layer)
    value = frob(ctx.last_layer - target) / den if den > 0 else None
    return frob(target), den, value, "Frobenius norms; error relative to ||lambda W_L||"


# --- closed forms (symmetric class-constant outputs) --------------------------------
def _closed_form(ctx: Context) -> Values:
    pred = (ctx.e * ctx.centred + ctx.dl * ctx.mu_G) / (ctx.Lam * ctx.C)
    W = ctx.last_layer
    return frob(pred), frob(W), relative_error(W, pred), ctx.closed_note


def _row_norms(ctx: Context) -> Values:
    pred = ctx.diag / (ctx.Lam * ctx.C)
    rows = np.einsum("ij,ij->i", ctx.last_layer, ctx.last_layer)
    return pred, float(rows.mean()), relative_error(rows, np.full(ctx.C, pred)), "mean over rows"


def _pair_cosine_error(weights: np.ndarray, predicted: float) -> tuple[float, float] | None:
    """(mean pairwise row cosine, ||cos - predicted|| over pairs / ||predicted 1||), in tiles."""
    norms = np.linalg.norm(weights, axis=1)
    C = weights.shape[0]
    if C < 2 or np.any(norms == 0) or predicted == 0:
        return None
    unit = weights / norms[:, None]
    total = sq = 0.0
    count = 0
    for cos in pairwise_upper(unit):
        total += float(cos.sum())
        sq += float(np.square(cos - predicted).sum())
        count += cos.size
    return total / count, math.sqrt(sq / count) / abs(predicted)


def _row_cosines(ctx: Context) -> Values:
    pred = ctx.off / ctx.diag if ctx.diag else None
    got = _pair_cosine_error(ctx.last_layer, pred) if pred is not None else None
    if got is None:
        return pred, None, None, "undefined (zero row or zero prediction)"
    return pred, got[0], got[1], "closed form in eps1, eps2; mean over pairs"


def _centred_rows(ctx: Context) -> Values:
    pred = ctx.e * ctx.centred / (ctx.Lam * ctx.C)
    got = ctx.last_layer - ctx.last_layer.mean(axis=0)
    return frob(pred), frob(got), relative_error(got, pred), "Frobenius norms"


def _layer_closed(ctx: Context) -> Values:
    pred = ctx.diag / ctx.Lam
    norms = ctx.norms
    return pred, float(np.mean(norms)), relative_error(norms, [pred] * ctx.L), "mean over layers"


def _output_spread(ctx: Context) -> Values:
    return 0.0, ctx.sqi_spread, None, "context: the closed forms need 0"


def _asymmetry(ctx: Context) -> Values:
    sums, C = ctx.sums, ctx.C
    if np.any(sums.class_n == 0):
        return 0.0, None, None, "a class has no samples"
    mean_r = sums.class_r / sums.class_n[:, None]  # (C, C) class-mean residuals
    sym = ctx.e * np.eye(C) - ctx.eps2 * np.ones((C, C))  # (eps1+eps2) I - eps2 11^T
    den = frob(sym)
    value = frob(mean_r - sym) / den if den > 0 else None
    return 0.0, value, None, "context: class-mean residuals vs their symmetric part"


# --- SQI: delta and eps1 + eps2 -------------------------------------------------------
def _delta(ctx: Context) -> Values:
    pred = ctx.Lam / (ctx.Lam + float(ctx.mu_G @ ctx.mu_G))
    note = "delta = eps1 - (C-1) eps2; mu_G = mean of class means"
    return pred, ctx.dl, relative_error(ctx.dl, pred), note


def _eps_sum(ctx: Context) -> Values:
    C, Lam = ctx.C, ctx.Lam
    tr_sb = float(np.einsum("ij,ij->", ctx.centred, ctx.centred)) / C  # Tr Sigma_B
    pred = Lam * (C - 1) / (Lam * (C - 1) + tr_sb)
    return pred, ctx.e, relative_error(ctx.e, pred), "Sigma_B class-weighted"


# --- Lemma 1 and interpolation ------------------------------------------------------
def _floor(ctx: Context) -> Values:
    C = ctx.C
    loss = C * ctx.mse / 2.0  # (1/(2N)) sum_i ||r_i||^2
    note = (
        "below the floor: the outputs are not the zero-sum collapsed form"
        if loss < 1.0 / (2 * C)
        else "at or above the floor of collapsed outputs"
    )
    return 1.0 / (2 * C), loss, None, note


def _interpolates(ctx: Context) -> Values:
    regularised, interpolates = ctx.regularised, ctx.interpolates
    if regularised is None:
        return None, interpolates, None, "lambda unknown"
    pred = False if regularised else None
    if regularised and interpolates:
        note = "contradicts claim 2: not at a critical point"
    elif regularised:
        note = "claim 2: no critical point interpolates when lambda > 0"
    else:
        note = "lambda = 0: interpolating minima exist"
    return pred, interpolates, None, note


_CLOSED = ("weights", "Lambda", "outputs")
_CF = "closed forms"

#: The lines of the theory table, in table order (the conservation lines follow them).
IDENTITIES: tuple[Identity, ...] = (
    Identity(
        "balance_{key}",
        "balancedness",
        "||{name}||_F^2 = (kappa/lambda) sum <r_i, f_i>",
        ("params", "ratio", "outputs"),
        _balance,
        CRIT,
        layered=True,
        shown=_balance_shown,
    ),
    Identity(
        "layer_norm_spread",
        "balancedness",
        "(max - min)/mean of ||W_l||_F^2 (equal)",
        ("params",),
        _spread,
        CRIT,
        shown=_spread_shown,
    ),
    Identity(
        "stationarity_last_layer",
        "stationarity",
        "lambda W_L = kappa sum r_i h_i^T",
        ("weights", "ratio", "outputs"),
        _stationarity,
        CRIT,
    ),
    Identity(
        "classifier_closed_form",
        _CF,
        "W_L = [(eps1+eps2)(M - mu_G) + delta mu_G]/(Lambda C)",
        (*_CLOSED, "means"),
        _closed_form,
        SYM,
    ),
    Identity(
        "classifier_row_norms_sq",
        _CF,
        "||W_L^c||^2 = [eps1(1-eps1)-(C-1)eps2^2]/(Lambda C)",
        _CLOSED,
        _row_norms,
        SYM,
    ),
    Identity(
        "classifier_row_cosines",
        _CF,
        "cos(W_L^c, W_L^c') = <W_L^c, W_L^c'> / ||W_L^c||^2",
        ("weights", "outputs"),
        _row_cosines,
        SYM,
    ),
    Identity(
        "classifier_centered",
        _CF,
        "W_L - mean row = (eps1+eps2)(M - mu_G)/(Lambda C)",
        (*_CLOSED, "means"),
        _centred_rows,
        SYM,
    ),
    Identity(
        "layer_norms_closed_form",
        _CF,
        "||W_l||_F^2 = [eps1(1-eps1)-(C-1)eps2^2]/Lambda",
        ("params", "Lambda", "outputs"),
        _layer_closed,
        SYM,
    ),
    Identity(
        "output_spread",
        _CF,
        "sqi_spread: outputs vs symmetric class-constant",
        ("outputs",),
        _output_spread,
    ),
    Identity(
        "residual_asymmetry",
        _CF,
        "class-mean residuals vs (eps1+eps2) I - eps2 11^T",
        ("outputs",),
        _asymmetry,
    ),
    Identity(
        "delta",
        "SQI",
        "delta = Lambda/(Lambda + ||mu_G||^2)",
        ("Lambda", "outputs", "means"),
        _delta,
        SYM,
    ),
    Identity(
        "eps_sum",
        "SQI",
        "eps1 + eps2 = Lambda(C-1)/(Lambda(C-1) + Tr Sigma_B)",
        ("Lambda", "outputs", "means"),
        _eps_sum,
        SYM,
    ),
    Identity(
        "loss_floor",
        "Lemma 1",
        "loss (1/2N) sum ||r_i||^2 vs floor 1/(2C)",
        ("mse",),
        _floor,
    ),
    Identity(
        "interpolates",
        "Lemma 1",
        "interpolates (max_i |f_i - y_i|_inf < 1e-3)",
        ("interpolates",),
        _interpolates,
    ),
)

#: Every line key, in table order (layer-wise keys are ``balance_W<l>`` / ``layer_norm_diff_<l>``).
LINE_KEYS: tuple[str, ...] = (
    "balance_W*",
    *(i.key for i in IDENTITIES[1:]),
    "layer_norm_diff_*",
)


def _layers(ident: Identity, ctx: Context):
    """``(layer, key, quantity)`` of each line of ``ident``."""
    if not ident.layered:
        yield None, ident.key, ident.quantity
        return
    for i in range(ctx.L or 1):
        key, name = (f"W{i + 1}", f"W{i + 1}") if ctx.L else ("W", "W_l")
        yield i, ident.key.format(key=key), ident.quantity.format(name=name)


def evaluate(ident: Identity, ctx: Context) -> list[TheoryLine]:
    """The line(s) of one table entry."""
    out = []
    for layer, key, quantity in _layers(ident, ctx):
        args = () if layer is None else (layer,)
        line = TheoryLine(key, ident.group, quantity, holds=ident.holds)
        why = None
        if ctx.regularised is False and ident.holds is not None:
            why = NO_DECAY
        elif ctx.partial is not None and ident.holds == CRIT:
            why = ctx.partial
        missing = ctx.missing(ident.requires)
        if why is not None:
            line.status, line.note = "not_applicable", why
            line.measured = ident.shown(ctx, *args) if ident.shown else None
        elif missing:
            line.status, line.missing = "missing", missing
        else:
            line.predicted, line.measured, line.rel_error, line.note = ident.compute(ctx, *args)
        out.append(line)
    return out


def _conservation(ctx: Context, initial: list[float] | None, initial_name: str | None):
    """The layer-norm differences: conserved under gradient flow when lambda = 0."""
    norms, L = ctx.norms, ctx.L
    if norms is None:
        q = "||W_l||_F^2 - ||W_l+1||_F^2"
        return None, [
            TheoryLine("layer_norm_diff", "conservation", q, status="missing", missing=["params"])
        ]
    if L < 2:
        return None, []
    diffs = [norms[i] - norms[i + 1] for i in range(L - 1)]
    init = scale = None
    if initial is not None and len(initial) == L:
        init = [initial[i] - initial[i + 1] for i in range(L - 1)]
        scale = [initial[i] + initial[i + 1] for i in range(L - 1)]
    lines = []
    for i, value in enumerate(diffs):
        pred, rel = 0.0, None
        if ctx.regularised is False:
            pred = None
            note = "conserved under gradient flow; no earlier snapshot with params to compare"
            if init is not None:
                pred = init[i]
                rel = abs(value - pred) / scale[i] if scale[i] > 0 else None
                note = (
                    f"conserved under gradient flow (predicted = value at "
                    f"{initial_name}); error relative to the sum of the two norms there"
                )
        elif ctx.regularised:
            note = "decays like exp(-2 lambda t) under gradient flow"
        else:
            note = "lambda unknown"
        q = f"||W{i + 1}||_F^2 - ||W{i + 2}||_F^2"
        lines.append(
            TheoryLine(f"layer_norm_diff_{i + 1}", "conservation", q, pred, value, rel, note=note)
        )
    return diffs, lines


def identity_lines(
    ctx: Context, initial: list[float] | None = None, initial_name: str | None = None
) -> tuple[list[TheoryLine], list[float] | None]:
    """Every line of the table for ``ctx``, and the layer-norm differences (None if < 2)."""
    lines = [line for ident in IDENTITIES for line in evaluate(ident, ctx)]
    diffs, more = _conservation(ctx, initial, initial_name)
    return lines + more, diffs
