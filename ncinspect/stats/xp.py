"""Pass-1 and pass-2 kernels written against the array-API standard.

:class:`ncinspect.stats.FirstPass` calls :func:`first_sums` for every chunk (numpy through
its fast path); the pass-2 kernel of arrays that are not numpy (and of the Meter) is
:class:`ncinspect.stats.device.SecondState`, built from the pieces here. The namespace
(torch on CPU or CUDA, CuPy, JAX, ``array-api-strict``, numpy) is looked up once at the
entry (:func:`ncinspect.stats.namespace.get_namespace`). The rows stay where they live;
only the small sums come back to the host, as float64 numpy.
Only functions of the standard are called (no in-place updates; class sums by
:func:`~ncinspect.stats.namespace.scatter_add`); the tests run it on ``array-api-strict``.

Precision
---------
``"float64"`` (default): every product and sum in float64; results equal the numpy kernels'
up to the order of float64 roundings (~1e-15 relative). ``"float32"``: pass 1 unchanged;
pass 2's projections and decision scores are float32 products of the float64-centred rows,
converted to float64 before they are squared and summed. With ``g`` of
:func:`precision_gamma`: each projected scatter ``P_k`` errs by at most ``(2g + g^2) sum_i
||e_i||^2``, nc1 by ``(2g + g^2) tr(S_W) tr(S_B^+) / C``, each logit by ``g ||h'|| ||w_c||``;
decisions are exact (rows closer than the bound are decided again in float64). The bounds,
their derivation and measured errors are in docs/array-api.md.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import UnsupportedDtypeError
from .blocks import first_rows, group_sum
from .namespace import device_of, host, is_numpy, on_device, product32, scatter_add, take_rows

__all__ = ["first_sums", "class_sums", "xp_block_rows", "precision_gamma"]
__all__ += ["as_labels", "decisions", "gap", "scores_projection"]

#: bytes of one block of float64 work arrays (rows x (d + 3C)); fixed, so that the same
#: input gives the same sums on every machine
XP_BLOCK_BYTES = 128 << 20
_U32 = 2.0**-24


def xp_block_rows(n_features: int, n_classes: int) -> int:
    """Rows of one device block: about :data:`XP_BLOCK_BYTES` of float64 work, >= 32 rows."""
    return max(32, XP_BLOCK_BYTES // (8 * (3 * n_features + 5 * n_classes)))


def precision_gamma(n_features: int) -> float:
    """``g = (d + 2) u / (1 - (d + 2) u)``, ``u = 2**-24``: the float32 product bound factor."""
    k = (n_features + 2) * _U32
    return k / (1.0 - k)


def _float64(xp: Any, x: Any, where: str) -> Any:
    if x.dtype == xp.bool or not xp.isdtype(x.dtype, ("real floating", "integral")):
        raise UnsupportedDtypeError(f"{where} have unsupported dtype {x.dtype}: use floats")
    try:
        out = xp.astype(x, xp.float64)
    except (TypeError, RuntimeError) as exc:
        raise UnsupportedDtypeError(
            f"{where}: the device of these arrays has no float64 ({exc}); "
            "move them to a device that has it, or pass numpy arrays"
        ) from exc
    if out.dtype != xp.float64:  # e.g. JAX without jax_enable_x64
        raise UnsupportedDtypeError(
            f"{where}: {xp.__name__} gave {out.dtype} for float64 (for JAX set "
            "jax_enable_x64); the statistics accumulate in float64"
        )
    return out


def as_labels(xp: Any, y: Any, device: Any) -> Any:
    """Labels as int64 ``xp`` on ``device`` (host numpy labels are copied there)."""
    if isinstance(y, np.ndarray):
        y = on_device(xp, np.asarray(y, dtype=np.int64), device)
    return xp.astype(y, xp.int64)


def class_sums(xp: Any, acc: Any, rows: Any, y: Any, step: int) -> Any:
    """``acc`` (C, d) float64 plus the rows of ``rows`` (any real dtype) summed by label,
    converted to float64 ``step`` rows at a time (scatter-adds,
    :func:`~ncinspect.stats.namespace.scatter_add`; never a dense C x rows indicator at
    large C). Pass 1 of the file path and of the Meter."""
    n = rows.shape[0]
    for a in range(0, n, step):
        b = min(n, a + step)  # the standard leaves out-of-bounds slice ends unspecified
        acc = scatter_add(xp, acc, y[a:b], _float64(xp, rows[a:b, ...], "features"))
    return acc


def first_sums(xp: Any, h: Any, y: Any, n_classes: int, row0: int = 0, *, map=map):
    """Pass 1 of one chunk where its rows live (numpy included).

    Returns ``(counts, sums, n_nonfinite, first_nonfinite_row, sum_scale)`` on the host,
    with the meaning of :class:`ncinspect.stats.FirstPass`'s fields. Rows holding NaN/Inf
    are counted and left out of the sums; finite rows whose sums overflow are summed divided
    by a power of two (``sum_scale``). Numpy's fast path: cache-sized parts summed by
    :func:`~ncinspect.stats.blocks.group_sum` (``map`` may run them on threads; merged in row
    order), ``bincount`` counts.
    """
    numpy = is_numpy(xp)
    n, d = h.shape
    if numpy:
        counts = np.bincount(y, minlength=n_classes).astype(np.int64)
        step = first_rows(d, n_classes)
        sums = np.zeros((n_classes, d))
        parts = map(
            lambda a: group_sum(h[a : a + step], y[a : a + step], n_classes), range(0, n, step)
        )
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite sums: handled below
            for part in parts:  # merged in row order, whatever ran them
                sums += part
    else:
        device = device_of(h)
        y = as_labels(xp, y, device)
        _float64(xp, h[:0, ...], "features")  # the dtype check, on no rows
        step = xp_block_rows(d, n_classes)
        ones = xp.ones((n,), dtype=xp.int64, device=device)
        counts = scatter_add(xp, xp.zeros((n_classes,), dtype=xp.int64, device=device), y, ones)
        sums = _class_total(xp, h, y, n_classes, step)
    n_bad, first_bad, scale = 0, None, 1.0
    if not bool(xp.all(xp.isfinite(sums))):  # rare: find the rows, leave them out
        rows = h if numpy else _float64(xp, h, "features")
        finite = xp.all(xp.isfinite(rows), axis=1)
        n_bad = n - int(xp.sum(xp.astype(finite, xp.int64)))
        if n_bad:
            first_bad = row0 + int(xp.argmax(xp.astype(~finite, xp.int64)))
            rows = xp.where(finite[:, None], rows, xp.zeros_like(rows))
            sums = _class_total(xp, rows, y, n_classes, step)
        if not bool(xp.all(xp.isfinite(sums))):  # finite rows whose sums overflow
            m = float(xp.max(xp.abs(rows)))
            scale = math.ldexp(1.0, min(math.frexp(m)[1] + n.bit_length(), 1023))
            sums = _class_total(xp, xp.astype(rows, xp.float64) / scale, y, n_classes, step)
    if numpy:
        return counts, sums, n_bad, first_bad, scale
    return host(counts).astype(np.int64), host(sums).astype(np.float64), n_bad, first_bad, scale


def _class_total(xp: Any, rows: Any, y: Any, n_classes: int, step: int) -> Any:
    """(C, d) float64 class sums of a whole chunk (numpy: one :func:`group_sum`)."""
    if is_numpy(xp):
        return group_sum(rows, y, n_classes)
    zeros = xp.zeros((n_classes, rows.shape[1]), dtype=xp.float64, device=device_of(rows))
    return class_sums(xp, zeros, rows, y, step)


def decisions(
    xp: Any, g: Any, scores: Any, C: int, has_clf: bool, outputs: Any, zero_rows: Any = None
):
    """NCC and classifier decisions of a block's float64 scores (classifier None if none).
    ``zero_rows``: the rows whose features are all zero, whose logits are ``b`` exactly
    (every class tied without a bias): their class is ``g.zero_class``, the first largest
    entry of ``b`` (the centred form rounds that tie apart; the numpy kernel decides every
    near tie again from ``W h + b``, :func:`ncinspect.stats.kernel.tie_rows`)."""
    dist = g.centre_sq[None, :] - 2.0 * scores[:, :C]  # ||h'-m'_c||^2 - ||h'||^2
    if not g.all_ncc_valid:  # a centre NCC may not pick: never the nearest
        dist = xp.where(g.ncc_valid[None, :], dist, _scalar(xp, math.inf, device_of(dist)))
    ncc = xp.argmin(dist, axis=1)
    if g.ncc_twins is not None:  # equal centres: the lowest class wins (Kernel.lowest_twins)
        ncc = xp.take(g.ncc_twins, ncc)
    logits = None
    if has_clf:
        logits = scores[:, C:]
        if g.score_factor != 1.0:
            logits = logits * g.score_factor
        logits = logits + g.offset[None, :]
    clf_out = logits if logits is not None else outputs
    clf = None if clf_out is None else xp.argmax(clf_out, axis=1)
    if logits is not None and g.clf_twins is not None:  # equal classifier rows: the lowest
        clf = xp.take(g.clf_twins, clf)
    if logits is not None and zero_rows is not None:
        clf = xp.where(zero_rows, g.zero_class, clf)
    return dist, ncc, logits, clf_out, clf


def _scalar(xp: Any, value: float, device: Any) -> Any:
    """A float64 0-d array on ``device``, filled there (``asarray`` of a Python number
    copies it from the host, which on a GPU waits for the stream)."""
    return xp.full((), value, dtype=xp.float64, device=device)


def gap(xp: Any, values: Any, best: Any, largest: bool, cols: Any = None) -> Any:
    """Per row: distance between the best and the second-best of ``values``; ``cols``:
    the (1, k) int64 column indices, when the caller holds them on the device."""
    m, k = values.shape
    device = device_of(values)
    if k < 2:
        return xp.full((m,), math.inf, dtype=xp.float64, device=device)
    if cols is None:
        cols = xp.arange(k, dtype=xp.int64, device=device)[None, :]
    if best.dtype != xp.int64:
        best = xp.astype(best, xp.int64)
    is_best = cols == best[:, None]
    fill = _scalar(xp, -math.inf if largest else math.inf, device)
    rest = xp.where(is_best, fill, values)
    if largest:
        return xp.max(values, axis=1) - xp.max(rest, axis=1)
    return xp.min(rest, axis=1) - xp.min(values, axis=1)


def scores_projection(xp: Any, g: Any, e: Any, hc: Any, y: Any, C: int, r: int, f32: bool):
    """Pass 2's one product per row block: ``(scores, proj, es)``: the decision scores of
    the centred rows ``hc`` against ``[M~ | W]`` (NCC and classifier), the projection of the
    residuals ``e`` on the ``r`` between-class directions (None when ``r`` is 0), and
    ``e . m'_c'`` when the product formed it (the directional table's products; else None).
    In float32 both products run in float32; with ``g.from_scores`` the projection is taken
    from the scores of the residuals (``h' = e + M~_y``)."""
    proj = es = None
    if f32:
        if r:
            proj = product32(xp, e, g.basis_t32)
        scores = product32(xp, hc, g.decide32)
    elif g.from_scores:  # e [M~ | W]^T, the projection from it, then h' = e + M~_y
        scores = e @ g.decide
        es = scores[:, :C]
        proj = es @ g.proj_map
        scores = scores + take_rows(xp, g.class_term, y)
    else:
        if r:
            proj = e @ g.basis_t
        scores = hc @ g.decide
    return scores, proj, es


as_float64 = _float64  # stats/device.py
