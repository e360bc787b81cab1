"""The layer-wise law of data separation (He & Su 2023): the least-squares fit of log nc1
against the layer position (plain Python + numpy)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .nulls import MetricValues
from .registry import LAW_KEYS

__all__ = ["LAW_KEYS", "MIN_LAYERS", "SAME_LOG_NC1", "fit_layer_law"]

MIN_LAYERS = 3  #: fewer layers than this give no law
SAME_LOG_NC1 = 1e-12  #: log nc1 within this of its mean at every layer: nc1 is constant


def fit_layer_law(
    positions: Sequence[float], nc1: Sequence[float | None], names: Sequence[str] | None = None
) -> MetricValues:
    """``layer_rate``, ``layer_law_intercept``, ``layer_law_r`` and ``layer_law_layers``.

    Parameters
    ----------
    positions : the layer positions l (``layer_<k>`` -> k, the penultimate layer K + 1).
    nc1 : the nc1 of each layer (None where undefined).
    names : the layers' names, for the reasons (default the positions).

    Notes
    -----
    With ``z_l = log nc1_l``: ``slope = S_lz / S_ll`` and ``intercept = mean(z) - slope
    mean(l)`` (ordinary least squares), ``layer_rate = exp(slope)`` (the factor by which
    each layer divides nc1: rho < 1 separates), ``layer_law_r = S_lz / sqrt(S_ll S_zz)``
    (Pearson), with ``S`` the centred sums of products, formed from centred values (two
    passes). ``layer_law_layers`` is the number of layers and is always set; the others are
    null below :data:`MIN_LAYERS` layers, when some nc1 is null or 0 (its log is undefined),
    when every layer has the same position (``layer_rate``, intercept, r) or the same nc1
    (r only; "the same" to 12 digits, |log nc1_l - mean| <= :data:`SAME_LOG_NC1`, since
    the last digits of nc1 are round-off).
    """
    out = MetricValues.of_keys(LAW_KEYS)
    n = len(positions)
    names = [str(p) for p in positions] if names is None else list(names)
    out.set("layer_law_layers", n)
    fit = LAW_KEYS[:3]
    if n < MIN_LAYERS:
        out.set_all(fit, None, f"fewer than {MIN_LAYERS} layers to fit (found {n})")
        return out
    bad = [(nm, v) for nm, v in zip(names, nc1, strict=True) if v is None or not v > 0]
    if bad:
        nm, v = bad[0]
        why = "null" if v is None else f"{v:g}, whose log is undefined"
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        out.set_all(fit, None, f"nc1 of layer {nm} is {why}{more}")
        return out
    x = np.asarray(positions, dtype=np.float64)
    z = np.log(np.asarray(nc1, dtype=np.float64))
    dx, dz = x - x.mean(), z - z.mean()
    sxx, sxz, szz = float(dx @ dx), float(dx @ dz), float(dz @ dz)
    if sxx == 0:
        out.set_all(fit, None, "every layer has the same position")
        return out
    slope = sxz / sxx
    out.set("layer_rate", math.exp(slope))
    out.set("layer_law_intercept", float(z.mean() - slope * x.mean()))
    # nc1 equal at every layer to ~12 digits (e.g. layers that are scaled copies: nc1 is
    # scale-free) is constant within its own round-off: r would correlate ulps with l
    same = float(np.max(np.abs(dz))) <= SAME_LOG_NC1
    r = None if same else max(-1.0, min(1.0, sxz / math.sqrt(sxx * szz)))
    out.set("layer_law_r", r, "nc1 is the same at every layer (to 12 digits)")
    return out
