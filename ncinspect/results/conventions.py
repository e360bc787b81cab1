"""What a report states besides its numbers: the loss a model was trained with, the
conventions it was computed with, and JSON-safe values (no NaN, plain Python types)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

__all__ = [
    "SQUARE_LOSS_GROUPS",
    "conventions",
    "jsonable",
    "loss_of",
    "square_loss_keys",
]


#: Metric groups (of the registry) that describe a square-loss model only.
SQUARE_LOSS_GROUPS = ("SQI",)

#: Loss names (lower case, ``-``/spaces as ``_``, a ``loss`` suffix ignored) taken as square.
_SQUARE_NAMES = frozenset(
    {
        "square",
        "squared",
        "square_error",
        "squared_error",
        "mean_squared_error",
        "mean_square_error",
        "mse",
        "l2",
        "least_squares",
        "quadratic",
    }
)

#: The trainer that writes numeric ``loss`` values and trains with the square loss only.
_SQUARE_TRAINERS = frozenset({"ncinspect.train"})


def square_loss_keys() -> tuple[str, ...]:
    """The metric keys of the square-loss section (the groups of :data:`SQUARE_LOSS_GROUPS`)."""
    from ..metrics.registry import REGISTRY

    return tuple(m.key for m in REGISTRY if m.group in SQUARE_LOSS_GROUPS)


def _loss_name(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.strip():
        return None
    return re.sub(r"[\s\-]+", "_", value.strip().lower())


def loss_of(meta: dict[str, Any]) -> tuple[str | None, bool | None]:
    """The loss a snapshot's model was trained with: ``(name, is_square)`` from its metadata.

    A string ``loss`` (or ``loss_type``) names it: ``square``/``mse``/``squared_error``/``l2``
    (also with a ``loss`` suffix, e.g. ``MSELoss``) are square, anything else (e.g.
    ``cross_entropy``) is not. The bundled trainer (``trainer = "ncinspect.train"``) writes
    the loss *value* under ``loss`` and trains with the square loss. Otherwise the loss is not
    recorded: ``(None, None)``.
    """
    for key in ("loss", "loss_type"):
        name = _loss_name(meta.get(key))
        if name is not None:
            bare = name[:-4].rstrip("_") if name.endswith("loss") and name != "loss" else name
            return name, name in _SQUARE_NAMES or bare in _SQUARE_NAMES
    trainer = meta.get("trainer")
    if isinstance(trainer, str) and trainer in _SQUARE_TRAINERS:
        return "square", True
    return None, None


def conventions(
    center: str, ncc_centres: str = "own", precision: str = "float64"
) -> dict[str, str]:
    """The conventions a report was computed with (recorded in its JSON). ``precision``
    is recorded when it is not the default float64."""
    out = {
        "center": center,
        "global_mean": "mean of class means" if center == "classes" else "sample mean",
        "nc1": "Tr(Sigma_W Sigma_B^+)/C with the rank-limited (min(C-1,d)) eigen pseudo-inverse; "
        "the original Papyan et al. notebook logs C*nc1",
        "sigma_w": "pooled, sample-weighted: (1/N) sum_i (h_i - mu_y)(h_i - mu_y)^T",
        "sigma_b": "class-weighted: (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T",
        "ncc_means": ncc_centres,
        "decisions": "classifier = argmax(W h + b) when weights are present, else argmax(outputs); "
        "ties go to the lowest class index",
        "sqi_outputs": "stored outputs when present, else W h + b",
    }
    if precision != "float64":
        out["precision"] = PRECISION_NOTES.get(precision, precision)
    return out


#: what ``conventions()["precision"]`` says for a precision other than float64
PRECISION_NOTES = {
    "float32": "float32: pass 2's projections and decision scores are float32 products of "
    "float64-centred rows, summed in float64 (nc1 within the bound of docs/array-api.md); "
    "NCC and classifier decisions are exact (near ties decided again in float64)",
}


def jsonable(value: Any) -> Any:
    """Plain-Python, NaN-free version of ``value`` for JSON."""
    kind = type(value)
    if kind is str or kind is int or value is None:  # most leaves: as they are
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():  # plain leaves inline (most of a report): as above
            leaf = type(v)
            if leaf is float:
                out[str(k)] = v if math.isfinite(v) else None
            elif leaf is str or leaf is int or v is None:
                out[str(k)] = v
            else:
                out[str(k)] = jsonable(v)
        return out
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value
