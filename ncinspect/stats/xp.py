"""Pass-1 and pass-2 kernels written against the array-API standard.

:class:`ncinspect.stats.FirstPass` and :class:`~ncinspect.stats.SecondPass` call these for
arrays that are not numpy (torch on CPU or CUDA, CuPy, JAX, ``array-api-strict``), with the
namespace looked up once at their entry (:func:`ncinspect.stats.namespace.get_namespace`). The
rows stay where they live; only the small sums come back to the host, as float64 numpy.
Only functions of the standard are called (no in-place updates, no data-dependent shapes
but one ``nonzero`` in the float32 recheck); the tests run it on ``array-api-strict``.

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
from .namespace import device_of, host, on_device
from .pairs import xp_pair_sums

__all__ = ["first_sums", "second_sums", "xp_block_rows", "precision_gamma"]

#: bytes of one block of float64 work arrays (rows x (d + 3C)); fixed, so that the same
#: input gives the same sums on every machine
XP_BLOCK_BYTES = 128 << 20
_U32 = 2.0**-24
_GATHER_MAX = 1 << 22  #: entries of the largest C x C class-term table gathered per row


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


def _labels(xp: Any, y: Any, device: Any) -> Any:
    if isinstance(y, np.ndarray):
        y = on_device(xp, np.asarray(y, dtype=np.int64), device)
    return xp.astype(y, xp.int64)


def _indicator(xp: Any, y: Any, n_classes: int, device: Any) -> Any:
    """(C, m) bool: row c marks the rows of class c."""
    return y[None, :] == xp.arange(n_classes, dtype=xp.int64, device=device)[:, None]


def _group_sum(xp: Any, rows: Any, y: Any, n_classes: int, device: Any, step: int) -> Any:
    """(C, d) float64 class sums: one float64 indicator product per block of rows."""
    n, d = rows.shape
    total = xp.zeros((n_classes, d), dtype=xp.float64, device=device)
    for a in range(0, n, step):
        b = min(n, a + step)  # the standard leaves out-of-bounds slice ends unspecified
        ind = xp.astype(_indicator(xp, y[a:b], n_classes, device), xp.float64)
        total = total + ind @ rows[a:b, ...]
    return total


def first_sums(xp: Any, h: Any, y: Any, n_classes: int, row0: int = 0):
    """Pass 1 of one chunk on the arrays' device.

    Returns ``(counts, sums, n_nonfinite, first_nonfinite_row, sum_scale)`` on the host,
    with the meaning of :class:`ncinspect.stats.FirstPass`'s fields.
    """
    device = device_of(h)
    hf = _float64(xp, h, "features")
    y = _labels(xp, y, device)
    n, d = hf.shape
    step = xp_block_rows(d, n_classes)
    counts = xp.zeros((n_classes,), dtype=xp.int64, device=device)
    for a in range(0, n, step):
        ind = xp.astype(_indicator(xp, y[a : min(n, a + step)], n_classes, device), xp.int64)
        counts = counts + xp.sum(ind, axis=1)
    sums = _group_sum(xp, hf, y, n_classes, device, step)
    n_bad, first_bad, scale = 0, None, 1.0
    if not bool(xp.all(xp.isfinite(sums))):  # rare: find the rows, leave them out
        finite = xp.all(xp.isfinite(hf), axis=1)
        rows = hf
        n_bad = n - int(xp.sum(xp.astype(finite, xp.int64)))
        if n_bad:
            first_bad = row0 + int(xp.argmax(xp.astype(~finite, xp.int64)))
            rows = xp.where(finite[:, None], hf, xp.zeros_like(hf))
            sums = _group_sum(xp, rows, y, n_classes, device, step)
        if not bool(xp.all(xp.isfinite(sums))):  # finite rows whose sums overflow
            m = float(xp.max(xp.abs(rows)))
            scale = math.ldexp(1.0, min(math.frexp(m)[1] + n.bit_length(), 1023))
            sums = _group_sum(xp, rows / scale, y, n_classes, device, step)
    return host(counts).astype(np.int64), host(sums).astype(np.float64), n_bad, first_bad, scale


class _DeviceGeometry:
    """The constants pass 2 needs, as arrays on one device (built once per geometry)."""

    def __init__(self, xp: Any, geom: Any, device: Any):
        C = geom.n_classes
        f64 = xp.float64
        self.inv_scale = 1.0 / geom.scale
        self.mu = on_device(xp, geom.global_mean, device, f64)
        self.mu_scaled = on_device(xp, geom.global_mean * self.inv_scale, device, f64)
        centred = geom.centred if geom.scale == 1.0 else geom.centred / geom.scale
        self.centred = on_device(xp, centred, device, f64)
        self.basis_t = on_device(xp, np.ascontiguousarray(geom.basis.T), device, f64)  # (d, r)
        stack = geom.decision_matrix()  # (d, C) or (d, 2C)
        self.decide = on_device(xp, stack, device, f64)
        self._scores_layout(xp, geom, centred, stack, device)
        centres = geom.ncc_centres / geom.scale
        self.centre_sq = on_device(xp, np.einsum("ij,ij->i", centres, centres), device, f64)
        self.ncc_valid = on_device(xp, np.asarray(geom.ncc_valid, bool), device)
        present = geom.present if geom.present is not None else np.ones(C, bool)
        self.all_present = bool(np.all(present))
        self.present = on_device(xp, np.asarray(present, bool), device)
        # float32 copies and the norms of the recheck bound
        self.basis_t32 = xp.astype(self.basis_t, xp.float32)
        self.decide32 = xp.astype(self.decide, xp.float32)
        self.centre_norm = float(np.sqrt(np.max(np.einsum("ij,ij->i", centres, centres))))
        self.offset = None
        self.score_factor = 1.0
        self.logit_scales = (geom.scale, geom.weight_scale)
        self.weight_norm = 0.0
        if geom.weights is not None:
            with np.errstate(under="ignore", over="ignore"):
                w = geom.weights / geom.weight_scale
                self.weight_norm = float(np.sqrt(np.max(np.einsum("ij,ij->i", w, w))))
                offset = w @ (geom.global_mean / geom.scale)
                if geom.bias is not None:
                    bias = geom.bias / geom.scale / geom.weight_scale
                    if not np.isfinite(bias).all():  # the bias dwarfs W h: its own unit
                        unit = math.ldexp(1.0, math.frexp(float(np.abs(geom.bias).max()))[1])
                        self.score_factor = geom.scale / unit * geom.weight_scale
                        offset = offset * self.score_factor
                        self.logit_scales = (unit, 1.0)
                        bias = geom.bias / unit
                    offset = offset + bias
            self.offset = on_device(xp, offset, device, f64)

    def _scores_layout(self, xp, geom, centred, stack, device) -> None:
        """Float64 projection from the NCC scores: ``e V^T = (e M~^T) A``, ``A = M~ V^T /
        eigvals`` (C x r), and scores of ``h' = e + M~_y`` = those of ``e`` + a class term.
        Used for own NCC centres, C < d and round-off growth sqrt(sum/min eigvals) <= 256."""
        C, d = geom.means.shape
        r = geom.basis.shape[0]
        own = np.array_equal(geom.ncc_centres, geom.centred)
        amp = math.sqrt(float(np.sum(geom.eigvals)) / float(geom.eigvals[-1])) if r else 0.0
        self.from_scores = bool(r and own and C < d and C * C <= _GATHER_MAX and amp <= 256)
        if self.from_scores:
            proj_map = (centred @ geom.basis.T) / geom.eigvals  # A (C, r)
            self.proj_map = on_device(xp, proj_map, device, xp.float64)
            self.class_term = on_device(xp, centred @ stack, device, xp.float64)  # (C, C|2C)


def _device_geometry(xp: Any, geom: Any, device: Any) -> _DeviceGeometry:
    key = (xp.__name__, str(device))
    cache = geom.device_cache
    if key not in cache:
        cache[key] = _DeviceGeometry(xp, geom, device)
    return cache[key]


def _scalar(xp: Any, value: float, device: Any) -> Any:
    return xp.asarray(value, dtype=xp.float64, device=device)


def _count_by_class(xp: Any, ind: Any, flags: Any) -> Any:
    """(C,) float64 number of flagged rows per class (``ind`` the (C, m) indicator)."""
    return xp.sum(xp.astype(ind & flags[None, :], xp.float64), axis=1)


def _decisions(xp: Any, g: _DeviceGeometry, scores: Any, C: int, has_clf: bool, outputs: Any):
    """NCC and classifier decisions of a block's float64 scores (classifier None if none)."""
    dist = g.centre_sq[None, :] - 2.0 * scores[:, :C]  # ||h'-m'_c||^2 - ||h'||^2
    dist = xp.where(g.ncc_valid[None, :], dist, _scalar(xp, math.inf, device_of(dist)))
    ncc = xp.argmin(dist, axis=1)
    logits = None
    if has_clf:
        logits = scores[:, C:]
        if g.score_factor != 1.0:
            logits = logits * g.score_factor
        logits = logits + g.offset[None, :]
    clf_out = logits if logits is not None else outputs
    clf = None if clf_out is None else xp.argmax(clf_out, axis=1)
    return dist, ncc, logits, clf_out, clf


def _gap(xp: Any, values: Any, best: Any, largest: bool) -> Any:
    """Per row: distance between the best and the second-best of ``values``."""
    m, k = values.shape
    device = device_of(values)
    if k < 2:
        return xp.full((m,), math.inf, dtype=xp.float64, device=device)
    cols = xp.arange(k, dtype=xp.int64, device=device)[None, :]
    is_best = cols == xp.astype(best, xp.int64)[:, None]
    fill = _scalar(xp, -math.inf if largest else math.inf, device)
    rest = xp.where(is_best, fill, values)
    if largest:
        return xp.max(values, axis=1) - xp.max(rest, axis=1)
    return xp.min(rest, axis=1) - xp.min(values, axis=1)


def second_sums(
    xp: Any,
    geom: Any,
    h: Any,
    y: Any,
    outputs: Any = None,
    *,
    precision: str = "float64",
) -> list[dict]:
    """Pass 2 of one chunk on the arrays' device, one dict of host values per block.

    Each dict has the fields of :class:`ncinspect.stats.SecondPass` (counts as float64
    arrays, the output moments as ``(count, mean, m2)``); the caller merges them.
    """
    device = device_of(h)
    g = _device_geometry(xp, geom, device)
    C, d = geom.n_classes, h.shape[1]
    y = _labels(xp, y, device)
    if outputs is not None and isinstance(outputs, np.ndarray):
        outputs = on_device(xp, outputs, device)
    step, n = xp_block_rows(d, C), h.shape[0]
    blocks = []
    for a in range(0, n, step):
        b = min(n, a + step)  # the standard leaves out-of-bounds slice ends unspecified
        out = None if outputs is None else _float64(xp, outputs[a:b, ...], "outputs")
        hb, yb = h[a:b, ...], y[a:b]
        if not g.all_present:  # rows of classes below min_count take no part
            keep = xp.nonzero(xp.take(g.present, yb, axis=0))[0]
            if keep.shape[0] == 0:
                continue
            hb, yb = xp.take(hb, keep, axis=0), xp.take(yb, keep, axis=0)
            out = None if out is None else xp.take(out, keep, axis=0)
        part = _second_block(xp, g, geom, hb, yb, out, precision)
        if part is not None:
            blocks.append(part)
    return blocks


def _second_block(xp, g, geom, block, y, outputs, precision) -> dict:
    C, r = geom.n_classes, geom.basis.shape[0]
    device = device_of(block)
    hf = _float64(xp, block, "features")
    if g.inv_scale == 1.0:
        hc = hf - g.mu[None, :]  # h' = h - mu_G
    else:  # h' = h / scale - mu_G / scale: exact scaling first, so nothing overflows
        hc = hf * g.inv_scale - g.mu_scaled[None, :]
    ind = _indicator(xp, y, C, device)  # (C, m)
    indf = xp.astype(ind, xp.float64)
    e = hc - xp.take(g.centred, y, axis=0)  # (m, d) within-class residuals
    f32 = precision == "float32"
    vec = []  # float64 device values, copied to the host in one transfer
    scores, proj, es = scores_projection(xp, g, e, hc, y, C, r, f32)
    if r:
        vec.append(xp.sum(proj * proj, axis=0))
    vec.append(indf @ xp.sum(e * e, axis=1))  # class_sq (C,)
    pairs = geom.pair_reason is None  # the directional table (ncinspect.stats.pairs)
    if pairs:
        vec.append(xp_pair_sums(xp, g.centred, e, ind, indf, f32, es))

    has_clf = geom.weights is not None
    dist, ncc, logits, clf_out, clf = _decisions(xp, g, scores, C, has_clf, outputs)
    ncc_ok = ncc == y
    agree_ok = None if clf is None else clf == ncc
    clf_ok = None if clf is None else clf == y
    n_rechecked = 0
    if f32:
        rows_norm = xp.sqrt(xp.sum(hc * hc, axis=1))
        bound = 2.0 * precision_gamma(hc.shape[1]) * rows_norm
        flag = _gap(xp, dist, ncc, largest=False) <= 2.0 * bound * g.centre_norm
        if has_clf:
            flag = flag | (
                _gap(xp, logits, clf, largest=True) <= bound * g.weight_norm * abs(g.score_factor)
            )
        idx = xp.nonzero(flag)[0]
        n_rechecked = int(idx.shape[0])
        if n_rechecked:  # decide the close rows again in float64
            sub = xp.take(hc, idx, axis=0)
            sub_out = None if outputs is None else xp.take(outputs, idx, axis=0)
            _, ncc_x, _, _, clf_x = _decisions(xp, g, sub @ g.decide, C, has_clf, sub_out)
            y_x = xp.take(y, idx, axis=0)
            ncc_ok = _patch(xp, ncc_ok, flag, idx, ncc_x == y_x)
            if clf is not None:
                clf_ok = _patch(xp, clf_ok, flag, idx, clf_x == y_x)
                agree_ok = _patch(xp, agree_ok, flag, idx, clf_x == ncc_x)
    vec.append(_count_by_class(xp, ind, ncc_ok))
    if clf is not None:
        vec.append(_count_by_class(xp, ind, clf_ok))
        vec.append(_count_by_class(xp, ind, agree_ok))
    out = outputs if outputs is not None else logits
    s_h, s_w = g.logit_scales
    if logits is not None and outputs is None and s_h * s_w != 1.0:
        out = logits * (s_h * s_w)
    if out is not None:
        vec.extend(_output_sums(xp, out, ind))
    flat = host(xp.concat([xp.reshape(v, (-1,)) for v in vec]))
    return _unpack(flat, C, r, clf is not None, out is not None, n_rechecked, pairs)


def _patch(xp, values, flag, idx, exact):
    """``values`` with the rows ``idx`` (True in ``flag``) replaced, by a (k, m) match
    matrix (the standard has no scatter)."""
    m = flag.shape[0]
    rows = xp.arange(m, dtype=xp.int64, device=device_of(flag))
    match = xp.astype(idx, xp.int64)[:, None] == rows[None, :]  # (k, m)
    spread = xp.any(match & exact[:, None], axis=0)
    return xp.where(flag, spread, values)


def _output_sums(xp, out, ind):
    """Output statistics of one block: true-class and other-class moments, errors."""
    m, C = out.shape
    onehot = xp.permute_dims(ind, (1, 0))  # (m, C) true class
    zero = xp.zeros_like(out)
    true = xp.sum(xp.where(onehot, out, zero), axis=1)  # f_{y_i}(x_i), exact
    true_mean = xp.sum(true) / m
    dt = true - true_mean
    n_wrong = m * (C - 1)
    wrong_mean = xp.sum(xp.where(onehot, zero, out)) / max(n_wrong, 1)
    dw = xp.where(onehot, zero, out - wrong_mean)  # true entries count 0
    err = xp.where(onehot, out - 1.0, out)
    to = _scalar(xp, 0.0, device_of(out))
    return [
        xp.stack([to + m, true_mean, xp.sum(dt * dt), to + n_wrong, wrong_mean, xp.sum(dw * dw)]),
        xp.stack([xp.sum(err * err), xp.max(xp.abs(err)), xp.max(xp.abs(out))]),
    ]


def _unpack(
    flat: np.ndarray, C: int, r: int, has_clf: bool, has_out: bool, n_re: int, pairs: bool
) -> dict:
    k = 0

    def take(n):
        nonlocal k
        k += n
        return flat[k - n : k]

    res = {"proj_sq": take(r).copy(), "class_sq": take(C).copy(), "n_rechecked": n_re}
    res["pair_sq"] = take(C * C).reshape(C, C).copy() if pairs else None
    res["ncc_correct"] = np.rint(take(C)).astype(np.int64)
    zeros = np.zeros(C, np.int64)
    res["clf_correct"] = np.rint(take(C)).astype(np.int64) if has_clf else zeros
    res["agree"] = np.rint(take(C)).astype(np.int64) if has_clf else zeros.copy()
    res["has_decisions"] = has_clf
    res["has_outputs"] = has_out
    if has_out:
        nt, mt, m2t, nw, mw, m2w = take(6)
        res["true_out"] = (int(round(nt)), float(mt), float(m2t))
        res["wrong_out"] = (int(round(nw)), float(mw), float(m2w))
        sq, mx, om = take(3)
        res["sq_err"], res["max_abs_err"], res["out_abs_max"] = float(sq), float(mx), float(om)
    return res


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
            proj = xp.astype(xp.astype(e, xp.float32) @ g.basis_t32, xp.float64)
        scores = xp.astype(xp.astype(hc, xp.float32) @ g.decide32, xp.float64)
    elif g.from_scores:  # e [M~ | W]^T, the projection from it, then h' = e + M~_y
        scores = e @ g.decide
        es = scores[:, :C]
        proj = es @ g.proj_map
        scores = scores + xp.take(g.class_term, y, axis=0)
    else:
        if r:
            proj = e @ g.basis_t
        scores = hc @ g.decide
    return scores, proj, es


as_float64, decisions, device_geometry = _float64, _decisions, _device_geometry  # stats/device.py
gap, patch = _gap, _patch
