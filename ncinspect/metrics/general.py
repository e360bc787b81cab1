"""Generalized (2021-2024) metrics from the class-level statistics: spec/metrics.md sections
"Generalized metrics" and "Imbalanced data".

Pure numpy (no IO, no plotting). Every kernel works on class-level arrays only (class means,
classifier rows, counts, per-class variances), so no extra pass over the rows is needed, and
pairwise sums over classes come from one sweep of tiles (:mod:`ncinspect.metrics.pairs`), so that
C = 50,000 classes never holds a C x C matrix. Undefined values are ``None`` with a reason.

:func:`general_metrics` is the single entry point used by
:func:`ncinspect.metrics.compute_metrics`.
"""

from __future__ import annotations

import math

import numpy as np

from ..stats.passes import pow2_scale
from .kernels import cdnv_mean, etf_error
from .linalg import (
    CACHE_MAX_C,
    DIRECT_MAX_C,
    ClassProducts,
    cross_gram_norm2,
    fro,
    kept,
    normalised_gram,
    row_cos,
    unit,
)
from .nulls import MINORITY_NONE
from .pairs import (
    ClassPairs,
    cdnv_values,
    class_pairs,
    hyperspherical_values,
    minority_classes,
    pair_sweep,
    unit_rows,
)
from .seli import seli_error

__all__ = [
    "GENERAL_KEYS",
    "hyperspherical_stats",
    "cdnv_exp2",
    "uniform_duality",
    "bias_collapse",
    "of_error",
    "etf_floor",
    "minority_collapse",
    "general_metrics",
]


GENERAL_KEYS: tuple[str, ...] = (
    "nc1_cdnv_exp2",
    "etf_feasible",
    "etf_error_floor",
    "gnc2_log_means",
    "gnc2_dist_means",
    "gnc2_energy_log_means",
    "gnc2_log_weights",
    "gnc2_dist_weights",
    "gnc2_energy_log_weights",
    "unc3_uniform_duality",
    "bias_collapse",
    "of_error_weights",
    "of_error_means",
    "of_error_duality",
    "seli_error_weights",
    "seli_error_means",
    "seli_error_logits",
    "minority_collapse",
)


# --------------------------------------------------------------------------------------
# kernels
# --------------------------------------------------------------------------------------
def hyperspherical_stats(vectors: np.ndarray) -> tuple[float, float, float] | None:
    """GNC2 of C vectors: ``(var log(1/dist), var dist, mean log(1/dist))`` over pairs.

    Notes
    -----
    With ``u_c = v_c/||v_c||`` and ``dist_{cc'} = ||u_c - u_c'|| = sqrt(2 - 2 u_c.u_c')``
    over the C(C-1)/2 unordered pairs c < c':

    - ``gnc2_log_* = var_pop(log(1/dist))`` (Liu et al. 2023, Wu & Papyan 2024),
    - ``gnc2_dist_* = var_pop(dist)``,
    - ``gnc2_energy_log_* = mean(log(1/dist))`` (hyperspherical log energy); a simplex ETF
      has every ``dist^2 = 2C/(C-1)``, so energy ``-0.5 log(2C/(C-1))`` and both variances 0.

    One :func:`~ncinspect.metrics.pairs.pair_sweep` over the pairs, moments merged
    exactly (Chan): O(C^2 d) time, O(tile) memory. None when C < 2 or a vector is zero;
    the two log values None when two directions coincide (dist = 0).
    """
    units, norms = unit_rows(vectors)
    if vectors.shape[0] < 2 or np.any(norms == 0) or not np.all(np.isfinite(norms)):
        return None
    return hyperspherical_values(pair_sweep([units]).units[0])


def cdnv_exp2(variances: np.ndarray, centred: np.ndarray) -> float | None:
    """CDNV with the squared distance squared again (Wu & Papyan 2024).

    Notes
    -----
    ``mean_{c<c'} (v_c + v_c') / (2 ||mu_c - mu_c'||^4)``, ``v_c = (1/n_c) sum ||h_i - mu_c||^2``;
    distances from the centred means in tiles. Not scale-free: features times a gives the
    value divided by a^2. ``variances`` are in the units of ``centred`` squared; both are
    rescaled by a power of two for the sums (exact) and the result scaled back. None when two
    class means coincide or C < 2.
    """
    mean, s = cdnv_mean(variances, centred, power=2)
    if mean is None:
        return None
    with np.errstate(under="ignore", over="ignore"):
        return mean / s / s


def uniform_duality(
    weights: np.ndarray, centred: np.ndarray, memo: ClassProducts | None = None
) -> float | None:
    """UNC3 (Wu & Papyan 2024): ``var_pop over c of cos(w_c, mu_c - mu_G)``.

    None when a classifier row or centred mean is zero. ``memo``: the snapshot's
    :class:`~ncinspect.metrics.linalg.ClassProducts` (NC3's cosines are the same).
    """
    cos = row_cos(weights, centred, memo)  # rescales each argument
    if cos.size == 0 or not np.isfinite(cos).all():
        return None
    # np.var(cos): the same sum, division, deviations and sum of their squares, in numpy's
    # order, without its dispatch (five times the cost of the arithmetic on C values)
    n = cos.size
    dev = cos - np.add.reduce(cos) / n
    np.multiply(dev, dev, out=dev)
    return float(np.add.reduce(dev) / n)


def bias_collapse(
    weights: np.ndarray,
    global_mean: np.ndarray,
    bias: np.ndarray | None,
    memo: ClassProducts | None = None,
) -> float:
    """Bias collapse (Zhu et al. 2021): ``||W mu_G + b||_2`` with b = 0 when absent.

    W and mu_G are divided by powers of two for the product (exact), so it neither
    overflows nor underflows unless the result itself does (then inf, reported null).
    ``memo``: the snapshot's :class:`~ncinspect.metrics.linalg.ClassProducts` (W divided
    by its power of two is the pair sweep's and the Grams' :func:`unit` of W).
    """
    sg = pow2_scale(global_mean)
    if memo is None:
        sw = pow2_scale(weights)
        w, g = weights / sw, global_mean / sg
    else:  # the snapshot's C-ordered rows of W and mu_G: x / 1.0 would be a copy of x
        sw, w = memo.unit_scale(weights), memo.unit(weights)
        g = global_mean if sg == 1.0 else global_mean / sg
    with np.errstate(under="ignore", over="ignore"):
        v = w @ g
        if bias is not None:
            v = v + bias / sw / sg
        return fro(v) * sw * sg


def of_error(a: np.ndarray, b: np.ndarray, memo: ClassProducts | None = None) -> float | None:
    """Distance of the normalised cross-Gram ``A B^T`` to the orthogonal frame (Dang et al. 2023).

    Notes
    -----
    ``|| A B^T/||A B^T||_F - I/sqrt(C) ||_F``, in [0, 2]. For C <= 2048 the C x C matrix is
    formed; above, ``|| G/||G|| - I/sqrt(C) ||^2 = 2 - 2 Tr(G) / (||G||_F sqrt(C))`` with
    ``Tr(A B^T) = sum_c a_c . b_c`` and ``||A B^T||_F^2`` from d x d Grams or tiles.
    None when ``A B^T = 0``. ``memo``: the snapshot's
    :class:`~ncinspect.metrics.linalg.ClassProducts` (the normalised product is shared with
    the ETF and SELI errors).
    """
    C = a.shape[0]
    if C <= DIRECT_MAX_C:
        g, _ = normalised_gram(a, b, memo)
        if g is None:
            return None
        frame = kept(("of", C), lambda: np.eye(C) / np.sqrt(C)) if C <= CACHE_MAX_C else None
        return fro(g - (np.eye(C) / np.sqrt(C) if frame is None else frame))
    norm2 = cross_gram_norm2(a, b, memo)  # of unit(a), unit(b): the same rescaling
    a, b = unit(a, memo), unit(b, memo)  # scale-free in each: exact rescaling
    if norm2 <= 0 or not np.isfinite(norm2):
        return None
    trace = float(np.einsum("ij,ij->", a, b))
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * trace / (np.sqrt(norm2) * np.sqrt(C)))))


def etf_floor(n_features: int, n_classes: int) -> tuple[bool, float]:
    """``(etf_feasible, etf_error_floor)``: ``d >= C - 1`` and ``sqrt(2 - 2 sqrt(d/(C-1)))``.

    Notes
    -----
    A Gram of C centred means in d < C - 1 dimensions has rank <= d; among unit-Frobenius
    PSD matrices of rank d the closest to E (C - 1 eigenvalues ``1/sqrt(C-1)``) is the
    projector onto d of E's eigenvectors over ``sqrt(d)``, with inner product
    ``sqrt(d/(C-1))``; hence the floor. 0 when feasible.
    """
    feasible = n_features >= n_classes - 1
    if feasible:
        return True, 0.0
    return False, float(np.sqrt(max(0.0, 2.0 - 2.0 * np.sqrt(n_features / (n_classes - 1)))))


def minority_collapse(weights: np.ndarray, counts: np.ndarray) -> float | None:
    """Minority collapse (Fang et al. 2021): mean pairwise ``cos(w_c, w_c')`` of minority classes.

    Notes
    -----
    Minority classes: ``n_c < max(n) / 2``. Tends to 1 as their classifier rows collapse onto
    one direction. None when fewer than two minority classes exist or one row is zero.
    """
    minority = minority_classes(counts)
    if np.count_nonzero(minority) < 2:
        return None
    units, norms = unit_rows(weights[minority])
    if np.any(norms == 0):
        return None
    p = pair_sweep([units], minority=[np.ones(units.shape[0], bool)]).units[0]
    return p.minority_sum / p.minority_count


# --------------------------------------------------------------------------------------
# everything at once
# --------------------------------------------------------------------------------------
def general_metrics(
    means: np.ndarray,
    centred: np.ndarray,
    global_mean: np.ndarray,
    weights: np.ndarray | None,
    bias: np.ndarray | None,
    counts: np.ndarray,
    variances: np.ndarray | None,
    *,
    present: np.ndarray | None = None,
    scale: float = 1.0,
    no_weights: str = "no classifier weights",
    pairs: ClassPairs | None = None,
    pair_map=map,
    memo: ClassProducts | None = None,
) -> dict[str, tuple[object, str | None]]:
    """Every key of :data:`GENERAL_KEYS` as ``key -> (value, reason when None)``.

    The class-level arrays are those :func:`ncinspect.metrics.compute_metrics` works with
    (rows per class of W); only the classes in ``present`` (default: ``counts > 0``) take
    part, using their rows of W and entries of b. ``means`` are the uncentred class means,
    ``centred`` the rows ``mu_c - mu_G``; ``variances`` (v_c) are in units of ``scale**2``
    (the pass-2 sums of :class:`~ncinspect.stats.Geometry` with its ``scale``), read only
    when ``pairs`` is not given (None then will do).
    ``pairs``: the pair sums of these classes when the caller has swept them already
    (:func:`~ncinspect.metrics.pairs.class_pairs`); otherwise they are swept here, the tiles
    run through ``pair_map`` (a ``map``-like callable; the values do not depend on it).
    ``memo``: the snapshot's :class:`~ncinspect.metrics.linalg.ClassProducts`, shared with
    the caller's other metrics (``present`` is then the caller's own mask array).
    """
    present = counts > 0 if present is None else np.asarray(present, dtype=bool)
    memo = ClassProducts() if memo is None else memo
    # through the memo: the caller's rows of the same arrays (the counts too), not copies
    mu, mt, n = memo.take(means, present), memo.take(centred, present), memo.take(counts, present)
    w = memo.take(weights, present)
    C, d = mt.shape
    out: dict[str, tuple[object, str | None]] = {}
    few = f"fewer than 2 classes with samples (C = {C})"

    feasible, floor = etf_floor(d, C)
    out["etf_feasible"] = (feasible, None)
    out["etf_error_floor"] = (floor, None)
    # the largest count (C >= 2): is every count below 2, and which classes are minority
    n_max = np.maximum.reduce(n) if C >= 2 else None
    if pairs is None:
        cdnv = (variances[present], mt / scale) if C >= 2 and not n_max < 2 else None
        pairs = class_pairs(mt, w, n, cdnv=cdnv, map=pair_map)
    out["nc1_cdnv_exp2"] = _cdnv_exp2_entry(pairs, n_max, scale, few)
    _gnc2(out, "means", mt, pairs.means, pairs.means_ok, "centred class means", few, no_weights)
    w_pairs, w_ok = pairs.weights, pairs.weights_ok
    _gnc2(out, "weights", w, w_pairs, w_ok, "classifier rows", few, no_weights)

    w_keys = ("unc3_uniform_duality", "bias_collapse", "of_error_weights", "of_error_duality")
    w_keys += ("seli_error_weights", "seli_error_logits", "minority_collapse")
    if C < 2:
        out.update({k: (None, few) for k in (*w_keys, "of_error_means", "seli_error_means")})
    if w is None:
        out.update({k: (None, no_weights) for k in w_keys})
    if C < 2:
        return out

    out["of_error_means"] = (of_error(mu, mu, memo), "the class means are all zero")
    out["seli_error_means"] = seli_error(mu, mu, n, -1, memo)
    if w is not None:
        b = None if bias is None else bias[present]
        _weight_entries(out, w, b, mu, mt, global_mean, n, memo)
        out["minority_collapse"] = (
            _minority_value(pairs),
            MINORITY_NONE
            if np.count_nonzero(n < n_max / 2.0) < 2
            else "a minority class has a zero classifier row",
        )
    return out


def _cdnv_exp2_entry(
    pairs: ClassPairs, n_max: np.generic | None, scale: float, few: str
) -> tuple[object, str | None]:
    """``n_max``: the largest count, None when fewer than two classes take part."""
    if n_max is None:
        return None, few
    if n_max < 2:
        return None, "fewer than 2 samples in every class"
    value = cdnv_values(pairs.cdnv, pairs.cdnv_scale)[1]  # in units of 1/scale^2
    if value is None:
        return None, "two class means coincide"
    # Python floats (cdnv_values' sums are): no floating-point state to set for their
    # under- or overflow, which gives 0 or inf as numpy's would
    got = value / float(scale) / float(scale)
    if not math.isfinite(got) or (got == 0 and value > 0):
        # not scale-free (features times a divide it by a^2): its value lies outside float64
        return None, (
            f"its value ({value:.3g} x 2^{-2 * math.frexp(scale)[1] + 2}) lies outside float64's "
            "range (it scales as 1/|features|^2); rescale the features to read it"
        )
    return got, "two class means coincide"


def _gnc2(
    out: dict[str, tuple[object, str | None]],
    suffix: str,
    vectors: np.ndarray | None,
    sums,
    ok: bool,
    what: str,
    few: str,
    no_weights: str,
) -> None:
    keys = [f"gnc2_{k}_{suffix}" for k in ("log", "dist", "energy_log")]
    if vectors is None:
        out.update({k: (None, no_weights) for k in keys})
        return
    C = vectors.shape[0]
    stats = hyperspherical_values(sums) if C >= 2 and ok else None
    why = few if C < 2 else f"one of the {what} is zero"
    if stats is not None and stats[0] is None:  # two directions coincide: log(1/0)
        why = f"two of the {what} point the same way (a distance of 0: log(1/dist) is undefined)"
    values = (None, None, None) if stats is None else stats
    out.update({k: (v, why) for k, v in zip(keys, values, strict=True)})


def _weight_entries(
    out: dict[str, tuple[object, str | None]],
    w: np.ndarray,
    b: np.ndarray | None,
    mu: np.ndarray,
    mt: np.ndarray,
    global_mean: np.ndarray,
    n: np.ndarray,
    memo: ClassProducts,
) -> None:
    """The generalized metrics that need the classifier (C >= 2)."""
    out["unc3_uniform_duality"] = (
        uniform_duality(w, mt, memo),
        "a classifier row or centred mean is zero",
    )
    out["bias_collapse"] = (bias_collapse(w, global_mean, b, memo), None)
    out["of_error_weights"] = (of_error(w, w, memo), "W is zero")
    out["of_error_duality"] = (of_error(w, mu, memo), "W M^T is zero")
    out["seli_error_weights"] = seli_error(w, w, n, 1, memo)
    logits = etf_error(w, mu, memo)  # the SELI logits are P Y: the ETF at class level
    out["seli_error_logits"] = (logits, "W M^T is zero")


def _minority_value(pairs: ClassPairs) -> float | None:
    p = pairs.weights
    if not pairs.minority_ok or p is None or p.minority_count == 0:
        return None
    return p.minority_sum / p.minority_count
