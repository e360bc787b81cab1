"""The seed theory as diagnostics: predicted against measured quantities (spec/theory.md).

For a bias-free ReLU network ``f(x) = W_L s(... s(W_1 x))`` trained on
``(kappa/2) sum_i ||y_i - f(x_i)||^2 + (lambda/2) sum_l ||W_l||_F^2`` with one-hot y, and
``r_i = y_i - f(x_i)``, ``h_i`` the penultimate features (the input of W_L),
``Lambda = lambda / (kappa N)``, every critical point satisfies

- stationarity of the last layer: ``lambda W_L = kappa sum_i r_i h_i^T``;
- balancedness: ``lambda ||W_l||_F^2 = kappa sum_i <r_i, f(x_i)>`` for every layer l.

When the training outputs are class-constant **and** class-symmetric (true class ``1 - eps1``,
every other class ``eps2``, i.e. ``sqi_spread = 0``) and the classes are balanced, the closed
forms below hold as well, with ``mu_G`` the mean of the class means and
``Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T``:

- ``W_L^c = [(eps1 + eps2)(mu_c - mu_G) + delta mu_G] / (Lambda C)``, ``delta = eps1 - (C-1) eps2``;
- ``||W_L^c||^2 = [eps1 (1 - eps1) - (C-1) eps2^2] / (Lambda C)`` and
  ``<W_L^c, W_L^c'> = eps2 [2 eps1 - 1 - (C-2) eps2] / (Lambda C)``;
- row-centred ``W_L = (eps1 + eps2) (M - mu_G) / (Lambda C)``;
- ``||W_l||_F^2 = [eps1 (1 - eps1) - (C-1) eps2^2] / Lambda`` for every l;
- ``delta = Lambda / (Lambda + ||mu_G||^2)`` and
  ``eps1 + eps2 = Lambda (C-1) / (Lambda (C-1) + Tr Sigma_B)``.

Class-constant outputs alone are not enough: with class-constant outputs the C x C output
pattern is ``F = (Lambda C I + G)^{-1} G`` with G the Gram matrix of the class means, which has
the symmetric form only when G does. On other critical points the residuals of the closed
forms measure how far the outputs are from that symmetric class-constant pattern, while the
two identities above still hold exactly.

This module is pure numpy: the sums over samples arrive as a :class:`TheoryPass` (mergeable
over row chunks, like :mod:`ncinspect.stats`), the class means and the SQI numbers from the
analysis result. :func:`theory_diagnostics` turns them into lines of predicted value,
measured value and relative error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidDataError

__all__ = [
    "TheoryPass",
    "Constants",
    "resolve_constants",
    "relative_error",
    "layer_norms_sq",
    "theory_diagnostics",
    "HOW_TO_RECORD",
    "LINE_KEYS",
]

#: How to record each key a line may need (shown in "missing: <key> (...)" lines).
HOW_TO_RECORD: dict[str, str] = {
    "weight_decay": "record lambda with DumpWriter metadata: writer.set_meta(weight_decay=...)",
    "kappa": "record the data-term weight with DumpWriter metadata: writer.set_meta(kappa=...)",
    "n_samples": "record N of the loss with DumpWriter metadata: writer.set_meta(n_samples=...)",
    "Lambda": "record weight_decay, kappa and n_samples (or Lambda = lambda/(kappa N)) "
    "with DumpWriter metadata: writer.set_meta(...)",
    "params": "record every layer's weights with SnapshotWriter.write_params([W1, ..., WL])",
    "means": "every class needs at least one sample in this snapshot",
    "weights": "record the last layer with SnapshotWriter.write(weights=W_L) "
    "or write_params([W1, ..., WL])",
    "outputs": "record the network outputs with SnapshotWriter.append(outputs=...) "
    "(or the last layer as weights)",
}

#: Every line key, in table order (layer-wise keys are ``balance_W<l>`` / ``layer_norm_diff_<l>``).
LINE_KEYS: tuple[str, ...] = (
    "balance_W*",
    "layer_norm_spread",
    "stationarity_last_layer",
    "classifier_closed_form",
    "classifier_row_norms_sq",
    "classifier_row_cosines",
    "classifier_centered",
    "layer_norms_closed_form",
    "output_spread",
    "residual_asymmetry",
    "delta",
    "eps_sum",
    "loss_floor",
    "interpolates",
    "layer_norm_diff_*",
)


@dataclass
class TheoryPass:
    """Sums over the training rows that the identities need; merge chunk statistics exactly.

    Attributes
    ----------
    rh : (C, d) ``sum_i r_i h_i^T``.
    rf : ``sum_i <r_i, f(x_i)>``.
    rr : ``sum_i ||r_i||^2``.
    count : number of rows.
    class_r : (C, C) row c = ``sum_{y_i = c} r_i`` (the class-mean residual pattern).
    class_n : (C,) rows per class.
    """

    rh: np.ndarray
    rf: float = 0.0
    rr: float = 0.0
    count: int = 0
    class_r: np.ndarray | None = None
    class_n: np.ndarray | None = None

    @classmethod
    def empty(cls, n_classes: int, n_features: int) -> TheoryPass:
        return cls(
            np.zeros((n_classes, n_features)),
            class_r=np.zeros((n_classes, n_classes)),
            class_n=np.zeros(n_classes, np.int64),
        )

    @classmethod
    def of_chunk(cls, h: np.ndarray, y: np.ndarray, outputs: np.ndarray) -> TheoryPass:
        """Sums of one chunk: features ``h`` (n, d), codes ``y`` (n,), outputs ``f`` (n, C)."""
        h = np.asarray(h, dtype=np.float64)
        f = np.asarray(outputs, dtype=np.float64)
        C = f.shape[1]
        r = -f  # (n, C) residuals r_i = onehot(y_i) - f(x_i)
        r[np.arange(f.shape[0]), y] += 1.0
        class_r = np.zeros((C, C))
        np.add.at(class_r, y, r)
        return cls(
            r.T @ h,
            float(np.einsum("ij,ij->", r, f)),
            float(np.einsum("ij,ij->", r, r)),
            int(h.shape[0]),
            class_r,
            np.bincount(y, minlength=C).astype(np.int64),
        )

    def merge(self, other: TheoryPass) -> TheoryPass:
        return TheoryPass(
            self.rh + other.rh,
            self.rf + other.rf,
            self.rr + other.rr,
            self.count + other.count,
            self.class_r + other.class_r,
            self.class_n + other.class_n,
        )


@dataclass
class Constants:
    """The objective's constants: lambda, kappa, N and Lambda = lambda / (kappa N).

    Any of them may be unknown (None). :attr:`ratio` is ``kappa / lambda`` (from lambda and
    kappa, or from ``1 / (Lambda N)``), which is all the two exact identities need.
    """

    weight_decay: float | None = None
    kappa: float | None = None
    n_samples: int | None = None
    Lambda: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        if self.weight_decay is not None and self.kappa is not None:
            return self.kappa / self.weight_decay if self.weight_decay else None
        if self.Lambda and self.n_samples:
            return 1.0 / (self.Lambda * self.n_samples)
        return None

    @property
    def regularised(self) -> bool | None:
        """True when lambda > 0, False when lambda = 0, None when unknown."""
        value = self.weight_decay if self.weight_decay is not None else self.Lambda
        return None if value is None else value > 0

    def missing_for_ratio(self) -> list[str]:
        if self.ratio is not None or self.regularised is False:
            return []
        if self.Lambda is not None:
            return ["n_samples"]
        return [k for k in ("weight_decay", "kappa") if getattr(self, k) is None]

    def missing_for_Lambda(self) -> list[str]:
        if self.Lambda is not None:
            return []
        return [k for k in ("weight_decay", "kappa", "n_samples") if getattr(self, k) is None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "weight_decay": self.weight_decay,
            "kappa": self.kappa,
            "n_samples": self.n_samples,
            "Lambda": self.Lambda,
        }


#: The recorded constants and the values each may take.
_PARAM_RULES = {
    "weight_decay": ("a finite number >= 0", lambda v: v >= 0),
    "kappa": ("a finite number > 0", lambda v: v > 0),
    "n_samples": ("a positive integer", lambda v: v >= 1 and v == int(v)),
    "Lambda": ("a finite number >= 0", lambda v: v >= 0),
}


def _param(meta: Mapping[str, Any], key: str, where: str) -> float | None:
    """The recorded constant ``key`` (None when not recorded); an unusable value raises.

    A value that is recorded but is not a real number of the allowed range (a string,
    complex, a boolean, an array, NaN/Inf, a negative lambda, kappa <= 0) is an
    :class:`~ncinspect.errors.InvalidDataError` (exit code 3): never read as "missing".
    """
    if key not in meta or meta[key] is None:
        return None
    value = meta[key]
    expected, ok = _PARAM_RULES[key]
    shown = _shown(value)
    prefix = f"{where}: metadata {key} = {shown}"
    if isinstance(value, np.ndarray):
        if value.shape not in ((), (1,)):
            raise InvalidDataError(
                f"{prefix} is an array of shape {value.shape}; expected {expected}"
            )
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kinds = {str: "a string", bytes: "bytes", bool: "a boolean", complex: "complex"}
        kinds.update({list: "a list", tuple: "a list", dict: "a table"})
        kind = kinds.get(type(value), f"of type {type(value).__name__}")
        raise InvalidDataError(f"{prefix} is invalid ({kind}); expected {expected}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or not ok(number):
        raise InvalidDataError(f"{prefix} is invalid; expected {expected}")
    return number


def _shown(value: Any, limit: int = 40) -> str:
    try:
        text = repr(value.item() if isinstance(value, np.generic) else value)
    except ValueError:
        text = "<a number too long to print>"
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def resolve_constants(meta: Mapping[str, Any], *, where: str = "metadata") -> Constants:
    """The objective's constants from snapshot metadata (``weight_decay``, ``kappa``,
    ``n_samples``, ``Lambda``); Lambda is derived when only the other three are recorded.

    Parameters
    ----------
    meta : mapping
        Snapshot metadata (merged from the root down).
    where : str
        The snapshot, for the message of an invalid value.

    Returns
    -------
    Constants
        With a note when a recorded Lambda disagrees with ``lambda / (kappa N)``.
    """
    lam, kappa = _param(meta, "weight_decay", where), _param(meta, "kappa", where)
    n = _param(meta, "n_samples", where)
    n_samples = int(n) if n is not None else None
    Lam = _param(meta, "Lambda", where)
    out = Constants(lam, kappa, n_samples, Lam)
    if lam is not None and kappa and n_samples:
        derived = lam / (kappa * n_samples)
        if Lam is None:
            out.Lambda = derived
        elif not math.isclose(Lam, derived, rel_tol=1e-9, abs_tol=1e-300):
            out.notes.append(
                f"recorded Lambda = {Lam:.6g} differs from weight_decay/(kappa "
                f"n_samples) = {derived:.6g}; using the recorded Lambda"
            )
    return out


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


def tolerance_failures(theory: dict[str, Any], tolerance: float) -> tuple[int, list[tuple]]:
    """How many identities were checked, and ``(key, rel_error)`` of those above ``tolerance``.

    Only lines that state an identity (``holds`` set) with a computed relative error count.
    """
    checked = [ln for ln in theory["lines"] if ln["holds"] and ln["rel_error"] is not None]
    return len(checked), [
        (ln["key"], ln["rel_error"]) for ln in checked if ln["rel_error"] > tolerance
    ]


def _line(
    key: str,
    group: str,
    quantity: str,
    predicted: Any = None,
    measured: Any = None,
    rel_error: float | None = None,
    *,
    status: str = "ok",
    note: str | None = None,
    missing: list[str] | None = None,
    holds: str | None = None,
) -> dict[str, Any]:
    return {
        "key": key,
        "group": group,
        "quantity": quantity,
        "predicted": predicted,
        "measured": measured,
        "rel_error": rel_error,
        "status": status,
        "note": note,
        "missing": list(missing or []),
        "holds": holds,
    }


CRIT = "any critical point"  #: where the exact identities hold
SYM = "critical point with symmetric class-constant outputs"  #: where the closed forms hold


def _frob(a: np.ndarray) -> float:
    return float(np.linalg.norm(a))


def _pair_cosine_error(weights: np.ndarray, predicted: float) -> tuple[float, float] | None:
    """(mean pairwise row cosine, ||cos - predicted|| over pairs / ||predicted 1||), in tiles."""
    from .metrics.linalg import pairwise_upper

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
) -> dict[str, Any]:
    """Every quantity of issue 6 / spec/theory.md: predicted, measured and relative error.

    Parameters
    ----------
    means : (C, d) array or None
        Class means of the penultimate features (``SnapshotResult.arrays["means"]``).
    class_counts : sequence of int
        Samples per class (the closed forms assume balanced classes).
    constants : Constants
        lambda, kappa, N, Lambda (see :func:`resolve_constants`).
    sums : TheoryPass or None
        ``sum_i r_i h_i^T``, ``sum_i <r_i, f_i>``, ``sum_i ||r_i||^2`` over the training rows;
        None when the outputs are not available.
    params : sequence of (out, in) arrays or None
        ``[W_1, ..., W_L]`` (input side first), or None when the dump lacks them.
    last_layer : (C, d) array or None
        ``W_L`` (``params[-1]`` or the dump's ``weights``).
    eps1, eps2 : float or None
        ``sqi_eps1`` and ``sqi_eps2`` of the analysis.
    sqi_spread, mse, interpolates : optional
        The analysis' ``sqi_spread``, ``mse`` and ``interpolates``.
    initial_layer_norms : sequence of float, optional
        ``||W_l||_F^2`` at the start of the run (the earliest snapshot): with lambda = 0 the
        differences of consecutive layers are conserved under gradient flow.
    initial_name : str, optional
        Name of the snapshot ``initial_layer_norms`` come from.
    missing : sequence of str
        Keys known to be absent from the dump (``params``, ``outputs``, ``weights``, ...).

    Returns
    -------
    dict
        ``lines`` (list of dicts with ``key, group, quantity, predicted, measured, rel_error,
        status, note, missing``; status is ``ok``, ``missing`` or ``not_applicable``),
        ``constants``, ``applicable`` (lambda > 0), ``layer_norms_sq``,
        ``layer_norm_differences``, ``missing`` (key -> how to record it), ``notes``,
        ``max_rel_error_critical`` (the identities of every critical point: balancedness and
        stationarity) and ``max_rel_error_closed_forms`` (those that also need symmetric
        class-constant outputs). Each line's ``holds`` says which kind it is (None for
        context lines).

    Notes
    -----
    Relative errors are ``||measured - predicted|| / ||predicted||`` over the whole vector
    or matrix, except the stationarity residual, which is
    ``||lambda W_L - kappa sum_i r_i h_i^T||_F / ||lambda W_L||_F`` (spec) and the layer-norm
    spread ``(max_l - min_l) / mean_l`` of ``||W_l||_F^2``. Matrices are shown by their
    Frobenius norms. The exact identities need lambda > 0; with lambda = 0 they are reported
    as not applicable and the (conserved) layer-norm differences are shown instead.
    """
    lines: list[dict[str, Any]] = []
    notes = list(constants.notes)
    absent = set(missing)
    C = len(class_counts)
    regularised = constants.regularised
    ratio = constants.ratio
    Lam = constants.Lambda
    no_decay = "lambda = 0: the identity holds only at critical points of a regularised loss"
    norms = layer_norms_sq(params) if params is not None else None
    L = len(norms) if norms is not None else None
    has_out = sums is not None and eps1 is not None and eps2 is not None

    def need(*keys: str) -> list[str]:
        """The keys a line needs that are missing, in display order."""
        out: list[str] = []
        for k in keys:
            if k == "ratio":
                out += constants.missing_for_ratio()
            elif k == "Lambda":
                out += constants.missing_for_Lambda()
            elif k == "params" and params is None:
                out.append("params")
            elif k == "weights" and last_layer is None:
                out.append("weights")
            elif k == "outputs" and not has_out:
                out.append("outputs")
            elif k == "means" and not means_ok:
                out.append("means")
            elif k in absent and k not in out:
                out.append(k)
        return list(dict.fromkeys(out))

    # The two exact identities sum over every sample of the loss: a snapshot holding only
    # part of the training set cannot check them (its sums are partial).
    partial = None
    if sums is not None and constants.n_samples and sums.count != constants.n_samples:
        partial = (
            f"the snapshot holds {sums.count} of the N = {constants.n_samples} samples "
            "of the loss: the sums over i need all of them"
        )
        notes.append(partial)

    def add(key, group, quantity, requires, compute, *, holds=None, measured=None):
        miss = need(*requires)
        not_applicable = None
        if regularised is False and holds is not None:
            not_applicable = no_decay
        elif partial is not None and holds == CRIT:
            not_applicable = partial
        if not_applicable is not None:
            lines.append(
                _line(
                    key,
                    group,
                    quantity,
                    None,
                    measured,
                    status="not_applicable",
                    note=not_applicable,
                    holds=holds,
                )
            )
        elif miss:
            lines.append(_line(key, group, quantity, status="missing", missing=miss, holds=holds))
        else:
            predicted, measured, rel, note = compute()
            lines.append(
                _line(key, group, quantity, predicted, measured, rel, note=note, holds=holds)
            )

    # --- balancedness ---------------------------------------------------------------
    balance = None
    if has_out and ratio is not None:
        balance = ratio * sums.rf  # (kappa/lambda) sum_i <r_i, f(x_i)>
    for i in range(L or 1):
        name = f"W{i + 1}" if L else "W_l"
        add(
            f"balance_{name}" if L else "balance_W",
            "balancedness",
            f"||{name}||_F^2 = (kappa/lambda) sum <r_i, f_i>",
            ("params", "ratio", "outputs"),
            lambda i=i: (balance, norms[i], relative_error(norms[i], balance), None),
            holds=CRIT,
            measured=norms[i] if norms is not None else None,
        )

    def spread():
        mean = float(np.mean(norms))
        value = (max(norms) - min(norms)) / mean if mean > 0 else None
        return 0.0, value, value, None

    add(
        "layer_norm_spread",
        "balancedness",
        "(max - min)/mean of ||W_l||_F^2 (equal)",
        ("params",),
        spread,
        holds=CRIT,
        measured=spread()[1] if norms is not None and len(norms) else None,
    )

    # --- stationarity of the last layer -----------------------------------------------
    def stationarity():
        target = ratio * sums.rh  # (kappa/lambda) sum_i r_i h_i^T, (C, d)
        den = _frob(last_layer)
        value = _frob(last_layer - target) / den if den > 0 else None
        return _frob(target), den, value, "Frobenius norms; error relative to ||lambda W_L||"

    add(
        "stationarity_last_layer",
        "stationarity",
        "lambda W_L = kappa sum r_i h_i^T",
        ("weights", "ratio", "outputs"),
        stationarity,
        holds=CRIT,
    )

    # --- closed forms ---------------------------------------------------------------
    closed_note = None
    counts = np.asarray(class_counts)
    if counts.size and counts.min() != counts.max():
        closed_note = (
            f"classes are unbalanced ({int(counts.min())}..{int(counts.max())} "
            "samples): the closed forms assume balanced classes"
        )
        notes.append(closed_note)
    means_ok = means is not None and np.all(np.isfinite(means))
    if means is not None and not means_ok:
        notes.append("a class has no samples: the closed forms need every class mean")
    mu_G = centred = None
    if means_ok:
        mu_G = means.mean(axis=0)  # mean of class means: the normalisation the identities need
        centred = means - mu_G
    group = "closed forms"
    if has_out:
        e, dl = eps1 + eps2, eps1 - (C - 1) * eps2
        diag = eps1 * (1.0 - eps1) - (C - 1) * eps2**2
        off = eps2 * (2.0 * eps1 - 1.0 - (C - 2) * eps2)
    closed_requires = ("weights", "Lambda", "outputs")

    def closed_form():
        pred = (e * centred + dl * mu_G) / (Lam * C)
        return _frob(pred), _frob(last_layer), relative_error(last_layer, pred), closed_note

    def row_norms():
        pred = diag / (Lam * C)
        rows = np.einsum("ij,ij->i", last_layer, last_layer)
        return pred, float(rows.mean()), relative_error(rows, np.full(C, pred)), "mean over rows"

    def row_cosines():
        pred = off / diag if diag else None
        got = _pair_cosine_error(last_layer, pred) if pred is not None else None
        if got is None:
            return pred, None, None, "undefined (zero row or zero prediction)"
        return pred, got[0], got[1], "closed form in eps1, eps2; mean over pairs"

    def centred_rows():
        pred = e * centred / (Lam * C)
        got = last_layer - last_layer.mean(axis=0)
        return _frob(pred), _frob(got), relative_error(got, pred), "Frobenius norms"

    def layer_closed():
        pred = diag / Lam
        return pred, float(np.mean(norms)), relative_error(norms, [pred] * L), "mean over layers"

    means_req = () if means_ok else ("means",)
    add(
        "classifier_closed_form",
        group,
        "W_L = [(eps1+eps2)(M - mu_G) + delta mu_G]/(Lambda C)",
        closed_requires + means_req,
        closed_form,
        holds=SYM,
    )
    add(
        "classifier_row_norms_sq",
        group,
        "||W_L^c||^2 = [eps1(1-eps1)-(C-1)eps2^2]/(Lambda C)",
        closed_requires,
        row_norms,
        holds=SYM,
    )
    add(
        "classifier_row_cosines",
        group,
        "cos(W_L^c, W_L^c') = <W_L^c, W_L^c'> / ||W_L^c||^2",
        ("weights", "outputs"),
        row_cosines,
        holds=SYM,
    )
    add(
        "classifier_centered",
        group,
        "W_L - mean row = (eps1+eps2)(M - mu_G)/(Lambda C)",
        closed_requires + means_req,
        centred_rows,
        holds=SYM,
    )
    add(
        "layer_norms_closed_form",
        group,
        "||W_l||_F^2 = [eps1(1-eps1)-(C-1)eps2^2]/Lambda",
        ("params", "Lambda", "outputs"),
        layer_closed,
        holds=SYM,
    )
    add(
        "output_spread",
        group,
        "sqi_spread: outputs vs symmetric class-constant",
        ("outputs",),
        lambda: (0.0, sqi_spread, None, "context: the closed forms need 0"),
    )

    def asymmetry():
        if np.any(sums.class_n == 0):
            return 0.0, None, None, "a class has no samples"
        mean_r = sums.class_r / sums.class_n[:, None]  # (C, C) class-mean residuals
        sym = e * np.eye(C) - eps2 * np.ones((C, C))  # the pattern (eps1+eps2) I - eps2 11^T
        den = _frob(sym)
        value = _frob(mean_r - sym) / den if den > 0 else None
        return 0.0, value, None, "context: class-mean residuals vs their symmetric part"

    add(
        "residual_asymmetry",
        group,
        "class-mean residuals vs (eps1+eps2) I - eps2 11^T",
        ("outputs",),
        asymmetry,
    )

    # --- SQI: delta and eps1 + eps2 ----------------------------------------------------
    def delta():
        pred = Lam / (Lam + float(mu_G @ mu_G))
        return (
            pred,
            dl,
            relative_error(dl, pred),
            ("delta = eps1 - (C-1) eps2; mu_G = mean of class means"),
        )

    def eps_sum():
        tr_sb = float(np.einsum("ij,ij->", centred, centred)) / C  # Tr Sigma_B (class-weighted)
        pred = Lam * (C - 1) / (Lam * (C - 1) + tr_sb)
        return pred, e, relative_error(e, pred), "Sigma_B class-weighted"

    add(
        "delta",
        "SQI",
        "delta = Lambda/(Lambda + ||mu_G||^2)",
        ("Lambda", "outputs") + means_req,
        delta,
        holds=SYM,
    )
    add(
        "eps_sum",
        "SQI",
        "eps1 + eps2 = Lambda(C-1)/(Lambda(C-1) + Tr Sigma_B)",
        ("Lambda", "outputs") + means_req,
        eps_sum,
        holds=SYM,
    )

    # --- Lemma 1 and interpolation --------------------------------------------------
    def floor():
        loss = C * mse / 2.0  # (1/(2N)) sum_i ||r_i||^2
        below = loss < 1.0 / (2 * C)
        note = (
            "below the floor: the outputs are not the zero-sum collapsed form"
            if below
            else "at or above the floor of collapsed outputs"
        )
        return 1.0 / (2 * C), loss, None, note

    add(
        "loss_floor",
        "Lemma 1",
        "loss (1/2N) sum ||r_i||^2 vs floor 1/(2C)",
        ("outputs",) if mse is None else (),
        floor,
    )

    def interp():
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

    add(
        "interpolates",
        "Lemma 1",
        "interpolates (max_i |f_i - y_i|_inf < 1e-3)",
        ("outputs",) if interpolates is None else (),
        interp,
    )

    # --- layer-norm differences (conserved when lambda = 0) ------------------------
    diffs = None
    if norms is not None and L >= 2:
        diffs = [norms[i] - norms[i + 1] for i in range(L - 1)]
        init = scale = None
        if initial_layer_norms is not None and len(initial_layer_norms) == L:
            init = [initial_layer_norms[i] - initial_layer_norms[i + 1] for i in range(L - 1)]
            scale = [initial_layer_norms[i] + initial_layer_norms[i + 1] for i in range(L - 1)]
        for i, value in enumerate(diffs):
            q = f"||W{i + 1}||_F^2 - ||W{i + 2}||_F^2"
            if regularised is False:
                pred = rel = None
                note = "conserved under gradient flow; no earlier snapshot with params to compare"
                if init is not None:
                    pred = init[i]
                    rel = abs(value - pred) / scale[i] if scale[i] > 0 else None
                    note = (
                        f"conserved under gradient flow (predicted = value at "
                        f"{initial_name}); error relative to the sum of the two norms there"
                    )
                lines.append(
                    _line(
                        f"layer_norm_diff_{i + 1}", "conservation", q, pred, value, rel, note=note
                    )
                )
            else:
                note = (
                    "decays like exp(-2 lambda t) under gradient flow"
                    if regularised
                    else "lambda unknown"
                )
                lines.append(
                    _line(
                        f"layer_norm_diff_{i + 1}", "conservation", q, 0.0, value, None, note=note
                    )
                )
    elif norms is None:
        lines.append(
            _line(
                "layer_norm_diff",
                "conservation",
                "||W_l||_F^2 - ||W_l+1||_F^2",
                status="missing",
                missing=["params"],
            )
        )

    missing_keys = sorted({k for line in lines for k in line["missing"]})

    def worst(holds: str) -> float | None:
        errs = [
            ln["rel_error"] for ln in lines if ln["holds"] == holds and ln["rel_error"] is not None
        ]
        return max(errs) if errs else None

    if has_out and eps1 > 1.0 - 1e-6 and abs(eps2) < 1e-6:
        notes.append(
            "the outputs are ~0 (eps1 = 1, eps2 = 0): the network sits at the trivial "
            "critical point W = 0, where the relative errors mean nothing"
        )
    if regularised is False:
        notes.append(
            "lambda = 0: the balancedness, stationarity and closed-form identities do "
            "not apply; the layer-norm differences are conserved under gradient flow"
        )
    return {
        "applicable": bool(regularised) if regularised is not None else None,
        "constants": {**constants.to_dict(), "n_classes": C, "depth": L},
        "lines": lines,
        "layer_norms_sq": norms,
        "layer_norm_differences": diffs,
        "missing": {k: HOW_TO_RECORD.get(k, "") for k in missing_keys},
        "notes": notes,
        "max_rel_error_critical": worst(CRIT),
        "max_rel_error_closed_forms": worst(SYM),
    }
