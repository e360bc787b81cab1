"""A direct, small-matrix float64 implementation of spec/metrics.md, written independently
of the streaming code: d x d covariances, explicit eigendecomposition, explicit C x C Gram
matrices and per-sample distances. Only for tests on small data."""

from __future__ import annotations

import itertools

import numpy as np


def etf_error(a, b):
    C = a.shape[0]
    x = a @ b.T
    e = (np.eye(C) - np.ones((C, C)) / C) / np.sqrt(C - 1)
    return np.linalg.norm(x / np.linalg.norm(x) - e)


def _equinorm(v):
    n = np.linalg.norm(v, axis=1)
    return n.std(ddof=1) / n.mean()


def _pair_cos(v):
    C = v.shape[0]
    cos = [
        v[i] @ v[j] / (np.linalg.norm(v[i]) * np.linalg.norm(v[j]))
        for i, j in itertools.combinations(range(C), 2)
    ]
    cos = np.array(cos)
    return cos.std(ddof=0), np.mean(np.abs(cos + 1 / (C - 1)))


def _gnc2(v):
    """(var log(1/dist), var dist, mean log(1/dist)) over unordered pairs of unit vectors."""
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    dist = np.array(
        [np.linalg.norm(u[i] - u[j]) for i, j in itertools.combinations(range(len(u)), 2)]
    )
    logs = np.log(1 / dist)
    return logs.var(), dist.var(), logs.mean()


def of_error(a, b):
    x = a @ b.T
    C = a.shape[0]
    return np.linalg.norm(x / np.linalg.norm(x) - np.eye(C) / np.sqrt(C))


def seli_geometry(y, C):
    """SELI of Thrampoulidis et al. (2022) from the sample-level SVD, reduced to class level.

    Z^ = Y - (1/C) 1 1^T Y (Y the C x N one-hot matrix), thin SVD U L V^T (rank C - 1).
    Returns (U L U^T, class-level block of V L V^T, class-level columns of Z^), each C x C:
    the classifier Gram, the features' Gram and the logits, one sample per class picked.
    """
    N = len(y)
    Y = np.zeros((C, N))
    Y[y, np.arange(N)] = 1.0
    Z = Y - np.ones((C, C)) @ Y / C
    U, L, Vt = np.linalg.svd(Z, full_matrices=False)
    r = int(np.sum(L > 1e-10 * L[0]))
    U, L, Vt = U[:, :r], L[:r], Vt[:r]
    first = np.array([np.flatnonzero(y == c)[0] for c in range(C)])  # one sample per class
    feat = (Vt.T * L) @ Vt
    return (U * L) @ U.T, feat[np.ix_(first, first)], Z[:, first]


def _dist_to(x, t):
    return np.linalg.norm(x / np.linalg.norm(x) - t / np.linalg.norm(t))


def reference_cdnv_directional(H, codes, mu):
    """spec/metrics.md "Directional variability", directly: for each pair c < c',
    ``u = (mu_c - mu_c') / ||mu_c - mu_c'||``, ``q(c, u)`` the mean of ``((h_i - mu_c) . u)^2``
    over the rows of c, and the mean over pairs of ``(q(c,u) + q(c',u)) / (2 ||mu_c - mu_c'||^2)``.
    ``codes[i]`` is the row of ``mu`` of sample i."""
    vals = []
    for i, j in itertools.combinations(range(mu.shape[0]), 2):
        diff = mu[i] - mu[j]
        u = diff / np.linalg.norm(diff)
        qi = np.mean(((H[codes == i] - mu[i]) @ u) ** 2)
        qj = np.mean(((H[codes == j] - mu[j]) @ u) ** 2)
        vals.append((qi + qj) / (2 * diff @ diff))
    return float(np.mean(vals))


def reference_metrics(H, y, W=None, b=None, outputs=None, center="classes"):
    H = np.asarray(H, dtype=np.float64)
    classes, codes = np.unique(np.asarray(y), return_inverse=True)
    C = len(classes)
    N, d = H.shape
    mu = np.stack([H[codes == c].mean(axis=0) for c in range(C)])
    mu_g = mu.mean(axis=0) if center == "classes" else H.mean(axis=0)
    mt = mu - mu_g
    r = H - mu[codes]
    sw = r.T @ r / N
    sb = mt.T @ mt / C
    lam, vec = np.linalg.eigh(sb)
    order = np.argsort(lam)[::-1]
    lam, vec = lam[order], vec[:, order]
    k = min(C - 1, d)
    lam, vec = lam[:k], vec[:, :k]
    keep = lam >= 1e-12 * lam[0]
    lam, vec = lam[keep], vec[:, keep]
    sb_pinv = vec @ np.diag(1 / lam) @ vec.T
    out = {
        "nc1": np.trace(sw @ sb_pinv) / C,
        "nc1_trace_ratio": np.trace(sw) / np.trace(sb),
    }
    var = np.array([np.mean(np.sum((H[codes == c] - mu[c]) ** 2, axis=1)) for c in range(C)])
    out["nc1_cdnv"] = np.mean(
        [
            (var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2))
            for i, j in itertools.combinations(range(C), 2)
        ]
    )
    out["nc1_cdnv_directional"] = reference_cdnv_directional(H, codes, mu)
    out["nc1_cdnv_exp2"] = np.mean(
        [
            (var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2) ** 2)
            for i, j in itertools.combinations(range(C), 2)
        ]
    )
    out["nc2_equinorm_means"] = _equinorm(mt)
    out["nc2_equiangular_means"], out["nc2_maxangle_means"] = _pair_cos(mt)
    out["etf_error_means"] = etf_error(mt, mt)
    out["etf_feasible"] = bool(d >= C - 1)
    out["etf_error_floor"] = 0.0 if d >= C - 1 else np.sqrt(2 - 2 * np.sqrt(d / (C - 1)))
    (out["gnc2_log_means"], out["gnc2_dist_means"], out["gnc2_energy_log_means"]) = _gnc2(mt)
    out["of_error_means"] = of_error(mu, mu)
    counts = np.array([np.sum(codes == c) for c in range(C)])
    seli_w, seli_h, seli_z = seli_geometry(codes, C)
    out["seli_error_means"] = _dist_to(mu @ mu.T, seli_h)
    out["minority_collapse"] = None
    # NCC by explicit per-sample distances
    dist = np.stack([np.sum((H - mu[c]) ** 2, axis=1) for c in range(C)], axis=1)
    ncc = np.argmin(dist, axis=1)
    out["accuracy_ncc"] = np.mean(ncc == codes)
    f = None
    if W is not None:
        W = np.asarray(W, dtype=np.float64)
        out["nc2_equinorm_weights"] = _equinorm(W)
        out["nc2_equiangular_weights"], out["nc2_maxangle_weights"] = _pair_cos(W)
        out["etf_error_weights"] = etf_error(W, W)
        wc = W - W.mean(axis=0)
        out["etf_error_weights_centered"] = etf_error(wc, wc)
        out["nc3_self_duality"] = np.sum((W / np.linalg.norm(W) - mt / np.linalg.norm(mt)) ** 2)
        out["nc3_duality_etf_error"] = etf_error(W, mt)
        out["nc3_duality_cos"] = np.mean(
            [W[c] @ mt[c] / np.linalg.norm(W[c]) / np.linalg.norm(mt[c]) for c in range(C)]
        )
        (out["gnc2_log_weights"], out["gnc2_dist_weights"], out["gnc2_energy_log_weights"]) = _gnc2(
            W
        )
        dual = [W[c] @ mt[c] / np.linalg.norm(W[c]) / np.linalg.norm(mt[c]) for c in range(C)]
        out["unc3_uniform_duality"] = np.var(dual)
        out["bias_collapse"] = np.linalg.norm(W @ mu_g + (0 if b is None else b))
        out["of_error_weights"] = of_error(W, W)
        out["of_error_duality"] = of_error(W, mu)
        out["seli_error_weights"] = _dist_to(W @ W.T, seli_w)
        out["seli_error_logits"] = _dist_to(W @ mu.T, seli_z)
        minority = np.flatnonzero(counts < counts.max() / 2)
        if len(minority) >= 2:
            out["minority_collapse"] = np.mean(
                [
                    W[i] @ W[j] / np.linalg.norm(W[i]) / np.linalg.norm(W[j])
                    for i, j in itertools.combinations(minority, 2)
                ]
            )
        logits = H @ W.T + (0 if b is None else np.asarray(b, dtype=np.float64))
        clf = np.argmax(logits, axis=1)
        out["nc4_ncc_mismatch"] = np.mean(clf != ncc)
        out["accuracy_classifier"] = np.mean(clf == codes)
        f = logits
    if outputs is not None:
        f = np.asarray(outputs, dtype=np.float64)
    if f is not None:
        onehot = np.eye(C)[codes]
        true = f[np.arange(N), codes]
        wrong = f[onehot == 0]
        eps1 = 1 - true.mean()
        eps2 = wrong.mean()
        out["sqi_eps1"], out["sqi_eps2"] = eps1, eps2
        out["sqi_delta"] = eps1 - (C - 1) * eps2
        out["sqi_ratio"] = eps1 / ((C - 1) * eps2)
        t = np.where(onehot == 1, 1 - eps1, eps2)
        out["sqi_spread"] = np.linalg.norm(f - t) / np.linalg.norm(t)
        out["mse"] = np.sum((f - onehot) ** 2) / (N * C)
        out["interpolates"] = bool(np.max(np.abs(f - onehot)) < 1e-3)
    return {k: (float(v) if not isinstance(v, bool | None) else v) for k, v in out.items()}


# ---------------------------------------------------------------------------------------
# regression collapse (NRC1-3) and NC5, directly from spec/metrics.md
# ---------------------------------------------------------------------------------------
def reference_nc5(H, y, H_ood):
    """mean over classes of |cos(mu_c, mean of H_ood)|, uncentred class means."""
    H = np.asarray(H, dtype=np.float64)
    classes = np.unique(np.asarray(y))
    g = np.asarray(H_ood, dtype=np.float64).mean(axis=0)
    cos = []
    for c in classes:
        mu = H[np.asarray(y) == c].mean(axis=0)
        cos.append(abs(mu @ g) / (np.linalg.norm(mu) * np.linalg.norm(g)))
    return float(np.mean(cos))


def _sqrtm_psd(S):
    lam, V = np.linalg.eigh(S)
    return V @ np.diag(np.sqrt(np.clip(lam, 0, None))) @ V.T


def reference_nrc3_objective(W, Y, gamma):
    W = np.asarray(W, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
    Yc = Y - Y.mean(axis=0)
    sigma = Yc.T @ Yc / len(Y)
    A = W @ W.T
    A = A / np.linalg.norm(A)
    B = _sqrtm_psd(sigma) - np.sqrt(gamma) * np.eye(sigma.shape[0])
    with np.errstate(all="ignore"):
        return float(np.linalg.norm(A - B / np.linalg.norm(B)) ** 2)


def reference_nrc(H, Y, W=None):
    """nrc1, nrc2, nrc3 with d x d projectors, an explicit eigendecomposition and a dense
    gamma grid refined by scipy's bounded scalar minimiser."""
    from scipy.optimize import minimize_scalar

    H = np.asarray(H, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(H), -1)
    N, d = H.shape
    t = Y.shape[1]
    Hn = H / np.linalg.norm(H, axis=1, keepdims=True)
    Hc = H - H.mean(axis=0)  # P_pca: principal directions of the centred features (spec)
    lam, vec = np.linalg.eigh(Hc.T @ Hc / N)
    U = vec[:, np.argsort(lam)[::-1][: min(t, d)]]
    P = U @ U.T
    out = {"nrc1": float(np.mean(np.sum((Hn - Hn @ P) ** 2, axis=1)))}
    if W is None:
        out["nrc2"] = out["nrc3"] = None
        return out
    W = np.asarray(W, dtype=np.float64)
    PW = np.linalg.pinv(W) @ W  # projector on the row space of W
    out["nrc2"] = float(np.mean(np.sum((Hn - Hn @ PW) ** 2, axis=1)))
    Yc = Y - Y.mean(axis=0)
    lam_min = max(float(np.linalg.eigvalsh(Yc.T @ Yc / N).min()), 0.0)
    grid = np.linspace(0.0, lam_min, 2001)
    vals = []
    for g in grid:
        v = reference_nrc3_objective(W, Y, g)
        vals.append(v if np.isfinite(v) else np.inf)
    vals = np.array(vals)
    k = int(np.argmin(vals))
    best = vals[k]
    if lam_min > 0:
        lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
        r = minimize_scalar(
            lambda g: reference_nrc3_objective(W, Y, g),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-14 * max(lam_min, 1e-300)},
        )
        if np.isfinite(r.fun):
            best = min(best, float(r.fun))
    out["nrc3"] = float(best)
    return out


def reference_rows(H, y, W, b=None, outputs=None, center="classes"):
    """spec/metrics.md "Classes and class order", directly: integer labels ``y`` are rows of
    ``W`` (C_total rows); the class-level metrics use the present classes P (those with a
    sample) and their rows W[P]; the classifier decides by the argmax over every row of W, and
    SQI/mse run over all C_total outputs. Returns the metrics plus ``n_classes`` (|P|)."""
    H = np.asarray(H, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    y = np.asarray(y)
    N, d = H.shape
    C_total = W.shape[0]
    P = np.array(sorted(set(y.tolist())))
    C = len(P)
    mu = np.stack([H[y == c].mean(axis=0) for c in P])  # (C, d), row j = class P[j]
    mu_g = mu.mean(axis=0) if center == "classes" else H.mean(axis=0)
    mt = mu - mu_g
    pos = {int(c): j for j, c in enumerate(P)}
    j_of = np.array([pos[int(v)] for v in y])
    r = H - mu[j_of]
    sw = r.T @ r / N
    sb = mt.T @ mt / C
    lam, vec = np.linalg.eigh(sb)
    order = np.argsort(lam)[::-1]
    lam, vec = lam[order][: min(C - 1, d)], vec[:, order][:, : min(C - 1, d)]
    keep = lam >= 1e-12 * lam[0]
    lam, vec = lam[keep], vec[:, keep]
    out = {
        "n_classes": C,
        "nc1": np.trace(sw @ vec @ np.diag(1 / lam) @ vec.T) / C,
        "nc1_trace_ratio": np.trace(sw) / np.trace(sb),
    }
    var = np.array([np.mean(np.sum((H[y == c] - mu[j]) ** 2, axis=1)) for j, c in enumerate(P)])
    out["nc1_cdnv"] = np.mean(
        [
            (var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2))
            for i, j in itertools.combinations(range(C), 2)
        ]
    )
    out["nc1_cdnv_directional"] = reference_cdnv_directional(H, j_of, mu)
    out["nc2_equinorm_means"] = _equinorm(mt)
    out["nc2_equiangular_means"], out["nc2_maxangle_means"] = _pair_cos(mt)
    out["etf_error_means"] = etf_error(mt, mt)
    Wp = W[P]
    out["nc2_equinorm_weights"] = _equinorm(Wp)
    out["nc2_equiangular_weights"], out["nc2_maxangle_weights"] = _pair_cos(Wp)
    out["etf_error_weights"] = etf_error(Wp, Wp)
    wc = Wp - Wp.mean(axis=0)
    out["etf_error_weights_centered"] = etf_error(wc, wc)
    out["nc3_self_duality"] = np.sum((Wp / np.linalg.norm(Wp) - mt / np.linalg.norm(mt)) ** 2)
    out["nc3_duality_etf_error"] = etf_error(Wp, mt)
    out["nc3_duality_cos"] = np.mean(
        [Wp[j] @ mt[j] / np.linalg.norm(Wp[j]) / np.linalg.norm(mt[j]) for j in range(C)]
    )
    dist = np.stack([np.sum((H - mu[j]) ** 2, axis=1) for j in range(C)], axis=1)
    ncc = P[np.argmin(dist, axis=1)]  # a row index of W
    logits = H @ W.T + (0 if b is None else np.asarray(b, dtype=np.float64))
    clf = np.argmax(logits, axis=1)  # over every row of W
    out["accuracy_ncc"] = np.mean(ncc == y)
    out["nc4_ncc_mismatch"] = np.mean(clf != ncc)
    out["accuracy_classifier"] = np.mean(clf == y)
    f = logits if outputs is None else np.asarray(outputs, dtype=np.float64)
    onehot = np.eye(C_total)[y]
    true = f[np.arange(N), y]
    wrong = f[onehot == 0]
    eps1, eps2 = 1 - true.mean(), wrong.mean()
    out["sqi_eps1"], out["sqi_eps2"] = eps1, eps2
    out["sqi_delta"] = eps1 - (C_total - 1) * eps2
    out["sqi_ratio"] = eps1 / ((C_total - 1) * eps2)
    t = np.where(onehot == 1, 1 - eps1, eps2)
    out["sqi_spread"] = np.linalg.norm(f - t) / np.linalg.norm(t)
    out["mse"] = np.sum((f - onehot) ** 2) / (N * C_total)
    out["interpolates"] = bool(np.max(np.abs(f - onehot)) < 1e-3)
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in out.items()}
