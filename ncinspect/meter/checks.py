"""The checks of a :class:`~ncinspect.Meter` pass, read once at its end from the counts its
device states kept (:mod:`ncinspect.stats.device`): integer labels in range, finite rows, and
in pass 2 the rows of pass 1 (the same class counts and class means)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidDataError

__all__ = ["problems", "check_second", "check_same_rows", "never_seen"]


def problems(values: dict[str, np.ndarray], n_classes: int, pass_number: int) -> str | None:
    """What a pass's checks found (host values of a state), as one message; None if fine."""
    if int(values["n_fractional"]):
        return (
            f"labels must be integers (row indices of the classifier): "
            f"{int(values['n_fractional'])} label(s) of pass {pass_number} are not"
        )
    lo, hi = int(values["label_min"]), int(values["label_max"])
    if int(values["n_rows"]) and (lo < 0 or hi >= n_classes):
        return f"label {lo if lo < 0 else hi} is not in [0, {n_classes}) (rows of the classifier)"
    n_bad = int(values["n_nonfinite"])
    if n_bad:
        return (
            f"features: {n_bad} row(s) of pass {pass_number} hold NaN/Inf values, first at row "
            f"{int(values['first_nonfinite'])}"
        )
    return None


def never_seen(c: int) -> InvalidDataError:
    return InvalidDataError(
        f"pass 2 saw class {c}, which pass 1 never saw: both passes must go over the same rows"
    )


def check_second(values: dict[str, np.ndarray], counts: np.ndarray, n_classes: int) -> None:
    """Pass 2 (host values of a :class:`SecondState`) must have seen pass 1's rows."""
    problem = problems(values, n_classes, 2)
    if problem:
        raise InvalidDataError(problem)
    unchecked = int(values.get("n_unchecked", 0))
    if unchecked:
        raise InvalidDataError(
            f"precision float32: {unchecked} row(s) of pass 2 lay within float32 rounding of "
            "a tie between two decisions, beyond the rows an accelerator decides again in "
            "float64 per batch (1/8 of its rows); their decisions are unknown: use "
            "precision='float64' (or smaller batches)"
        )
    counts = np.asarray(counts, dtype=np.int64)
    seen = values["seen"]
    new = (seen > 0) & (counts == 0)
    if new.any():
        raise never_seen(int(np.flatnonzero(new)[0]))
    if not np.array_equal(seen, counts):
        c = int(np.flatnonzero(seen != counts)[0])
        raise InvalidDataError(
            f"pass 2 saw {int(seen[c])} sample(s) of class {c} where pass 1 saw "
            f"{int(counts[c])}: both passes must go over the same rows"
        )


def check_same_rows(values: dict[str, np.ndarray], means: np.ndarray, scale: float) -> None:
    """Pass 2's class means must be pass 1's ``means`` (the same rows, in any order or
    split): the residual sums of a :class:`~ncinspect.stats.device.SecondState` (in units of
    ``scale``), divided by the counts, must vanish to 1e-9 of the largest class mean."""
    seen = values["seen"]
    has = seen > 0
    if not has.any():
        return
    top = max(float(np.max(np.abs(means[has]))), np.finfo(float).tiny)
    with np.errstate(over="ignore", invalid="ignore"):
        diff = float(np.max(np.abs(values["resid"][has]) / seen[has, None])) * scale
    if not diff <= 1e-9 * top:
        raise InvalidDataError(
            "pass 2 saw other features than pass 1 (class means differ by "
            f"{diff / top:.2g} relative): both passes must go over the same rows"
        )
