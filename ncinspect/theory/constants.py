"""The objective's constants (lambda, kappa, N, Lambda) read from snapshot metadata."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidDataError

__all__ = ["Constants", "HOW_TO_RECORD", "resolve_constants"]

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
    _check_usable(out, where)
    return out


def _check_usable(c: Constants, where: str) -> None:
    """Refuse constants that are each in range but together unusable: lambda and Lambda
    disagreeing on whether the objective is regularised (``weight_decay = 2e-3`` beside a
    recorded ``Lambda = 0``: the closed forms divided by zero), or a kappa/lambda or a
    Lambda that overflows or underflows (``kappa = 1e308``: infinite predictions shown as
    holding)."""
    shown = ", ".join(
        f"{k} = {_shown(getattr(c, k))}"
        for k in ("weight_decay", "kappa", "n_samples", "Lambda")
        if getattr(c, k) is not None
    )
    if c.weight_decay is not None and c.Lambda is not None:
        if (c.weight_decay > 0) != (c.Lambda > 0):
            raise InvalidDataError(
                f"{where}: metadata {shown} disagree on whether the objective is "
                "regularised (lambda > 0); record consistent constants"
            )
    ratio = c.ratio
    if c.regularised and (
        (ratio is not None and not (math.isfinite(ratio) and ratio > 0))
        or (c.Lambda is not None and not (math.isfinite(c.Lambda) and c.Lambda > 0))
    ):
        raise InvalidDataError(
            f"{where}: metadata {shown} give kappa/lambda or Lambda = lambda/(kappa N) "
            "beyond float64 (overflow or underflow); record them in a usable range"
        )
