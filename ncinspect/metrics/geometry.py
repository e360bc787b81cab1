"""Between-class geometry from pass 1: class means, global mean and the eigenbasis of
Sigma_B that pass 2 projects on (numpy only)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidDataError, refuse_removed
from ..stats.passes import FirstPass, Geometry, pow2_scale

__all__ = ["EIG_RTOL", "between_class_geometry"]

EIG_RTOL = 1e-12  #: eigenvalues of Sigma_B below this fraction of the largest are dropped


@refuse_removed(ncc_means="pass ncc_centres= (the array of centres)")
def between_class_geometry(
    first: FirstPass,
    *,
    center: str = "classes",
    weights: np.ndarray | None = None,
    bias: np.ndarray | None = None,
    ncc_centres: np.ndarray | None = None,
    min_count: int = 1,
    scale_band: tuple[float, float] | None = None,
) -> Geometry:
    """Class means, global mean and the between-class eigenbasis from pass-1 statistics.

    Parameters
    ----------
    first : FirstPass
        Per-class counts and sums.
    center : {"classes", "samples"}
        mu_G is the mean of class means (default) or the sample mean; anything else raises
        ``ValueError`` (the commands check it first, with a usage message).
    weights, bias : arrays, optional
        The classifier (C, d) and bias (C,), stored in the geometry for pass 2.
    ncc_centres : (C, d) array, optional
        Centres for the NCC decisions (e.g. the train means for a test split); default the
        class means of ``first``.
    min_count : int
        Classes with fewer samples are absent (``min_class_count``); classes with none
        always are. Absent classes have NaN means, zero centred rows and no NCC centre, take
        no part in mu_G or the eigenbasis, and their rows are left out of pass 2.
    scale_band : (lo, hi), optional
        The magnitudes of ``M~`` left unscaled (:func:`pow2_scale`; default float64's band).
        A pass 2 in float32 gives :data:`~ncinspect.stats.blocks.FLOAT32_BAND`: its products
        then see features of any magnitude at unit scale (the float64 numbers are the same:
        a power of two scales them exactly).

    Notes
    -----
    ``M~`` has rows ``mu_c - mu_G``. Its thin SVD ``M~ = U S V^T`` gives the eigenpairs of
    ``M~^T M~ = C Sigma_B`` without a d x d matrix (work is O(C d min(C, d))). Kept are at
    most ``r = min(C-1, d)`` leading pairs, and only those with eigenvalue at least
    ``1e-12`` times the largest, so float32 round-off never yields a spurious direction.
    The SVD runs on ``M~ / scale`` (``scale`` a power of two from :func:`pow2_scale`), so
    the eigenvalues stay inside float64 for features of any magnitude; they are stored in
    units of ``scale**2`` (see :class:`Geometry`).
    """
    _check_center(center)
    counts = first.counts
    present = counts >= max(1, int(min_count))
    n_present = int(np.add.reduce(present))
    # every class present (the common case): no row to blank or zero (the mask's
    # assignment and np.where would copy the same values)
    every = n_present == present.size
    means = first.class_means()
    if not every:
        means[~present] = np.nan
    mu_g = _global_mean(first, means, present, center, n_present)
    with np.errstate(over="ignore", invalid="ignore"):
        centred = means - mu_g
        if not every:
            centred = np.where(present[:, None], centred, 0.0)
    if not np.isfinite(centred).all():
        raise InvalidDataError(
            "features: class means differ by more than float64 can hold "
            "(|mu_c - mu_G| > 1.8e308); rescale the features"
        )
    scale = pow2_scale(centred, scale_band)
    if not centred.any() and n_present:  # means coincide: the residuals still need a unit
        scale = pow2_scale(means[present], scale_band)
    eig, vt, keep = _eigenbasis(centred, present, scale, n_present)
    if ncc_centres is None:
        ncc_centres, ncc_valid = centred.copy(), present.copy()
    else:
        given = np.asarray(ncc_centres, dtype=np.float64)
        ncc_valid = np.isfinite(given).all(axis=1)
        ncc_centres = np.where(ncc_valid[:, None], given - mu_g, 0.0)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    return Geometry(
        means=means,
        global_mean=mu_g,
        centred=centred,
        basis=np.ascontiguousarray(vt[:keep]),
        eigvals=eig[:keep].copy(),
        ncc_centres=ncc_centres,
        ncc_valid=ncc_valid,
        weights=w,
        bias=None if bias is None else np.asarray(bias, dtype=np.float64),
        scale=scale,
        weight_scale=1.0 if w is None else pow2_scale(w),
        present=present,
        min_count=max(1, int(min_count)),
        counts=counts,
    )


def _check_center(center: str) -> None:
    """Refuse an unknown ``center`` (the public entry of the metrics layer checks its own)."""
    if center not in ("classes", "samples"):
        raise ValueError(f"center must be 'classes' or 'samples', got {center!r}")


def _global_mean(
    first: FirstPass, means: np.ndarray, present: np.ndarray, center: str, n_present: int
) -> np.ndarray:
    """mu_G over the present classes (``n_present`` of them): the mean of their means or
    of their samples."""
    counts = first.counts
    d = means.shape[1]
    if not n_present:
        return np.zeros(d)
    if center == "classes":
        rows = means if n_present == present.size else means[present]
        with np.errstate(over="ignore"):  # rows.mean(axis=0): the same sum and division
            mu_g = np.add.reduce(rows, axis=0) / rows.shape[0]
        if not np.isfinite(mu_g).all():  # means near the float64 limit: sum them scaled
            s = pow2_scale(means[present])
            mu_g = (means[present] / s).mean(axis=0) * s
        return mu_g
    if not np.any((counts > 0) & ~present):  # no class below min_count was dropped
        return first.sample_mean()
    # the samples of the present classes only
    n = int(counts[present].sum())
    s = pow2_scale(means[present])
    return (counts[present, None] / n * (means[present] / s)).sum(axis=0) * s


def _eigenbasis(
    centred: np.ndarray, present: np.ndarray, scale: float, n_present: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(eig, vt, keep)``: the SVD of the present classes' ``M~ / scale`` (absent rows are
    0 and add nothing; ``n_present`` classes) and how many leading pairs to keep."""
    d = centred.shape[1]
    if n_present:
        rows = centred if n_present == centred.shape[0] else centred[present]
        # the SVD reads a copy of its input (it never writes it): x / 1.0 is x, bit for bit
        _, s, vt = np.linalg.svd(rows if scale == 1.0 else rows / scale, full_matrices=False)
    else:
        s, vt = np.zeros(0), np.zeros((0, d))
    eig = s * s
    keep = max(0, min(n_present - 1, d))
    if eig.size and eig[0] > 0:
        keep = min(keep, int(np.count_nonzero(eig >= EIG_RTOL * eig[0])))
    else:
        keep = 0
    return eig, vt, keep
