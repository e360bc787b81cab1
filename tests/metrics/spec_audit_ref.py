"""An independent float64 reference for every key of spec/metrics.md (the spec audit).

Written from the spec text alone (not from ncinspect's implementation, nor from
tests/reference.py): explicit loops over samples, classes and pairs on tiny N, d, C, with
d x d matrices allowed, since the reference needs no streaming. Used by the
tests/metrics/test_spec_audit*.py files.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np


def _norm(v):
    return math.sqrt(float(np.dot(v, v)))


def _cos(a, b):
    return float(np.dot(a, b)) / (_norm(a) * _norm(b))


def _pop_var(xs):
    xs = np.asarray(xs, dtype=np.float64)
    m = xs.sum() / len(xs)
    return float(((xs - m) ** 2).sum() / len(xs))


def _pop_std(xs):
    return math.sqrt(_pop_var(xs))


def _std1(xs):
    xs = np.asarray(xs, dtype=np.float64)
    m = xs.sum() / len(xs)
    return math.sqrt(float(((xs - m) ** 2).sum() / (len(xs) - 1)))


def etf_matrix(C):
    """E = (I_C - 11^T/C) / sqrt(C-1)."""
    return (np.eye(C) - np.ones((C, C)) / C) / math.sqrt(C - 1)


def fro(A):
    return math.sqrt(float((np.asarray(A) ** 2).sum()))


def gram_distance(G, T):
    """|| G/||G||_F - T/||T||_F ||_F (the normalisation of etf_error)."""
    return fro(G / fro(G) - T / fro(T))


def etf_error(A, B):
    G = A @ B.T
    return fro(G / fro(G) - etf_matrix(A.shape[0]))


def class_stats(H, y, center="classes"):
    """Present classes (sorted), counts, class means, mu_G, centred means."""
    H = np.asarray(H, dtype=np.float64)
    present = sorted(set(int(v) for v in y))
    n = {c: 0 for c in present}
    s = {c: np.zeros(H.shape[1]) for c in present}
    for i in range(H.shape[0]):
        n[int(y[i])] += 1
        s[int(y[i])] = s[int(y[i])] + H[i]
    mu = np.array([s[c] / n[c] for c in present])
    if center == "classes":
        muG = mu.sum(axis=0) / len(present)
    else:
        muG = H.sum(axis=0) / H.shape[0]
    return present, np.array([n[c] for c in present]), mu, muG, mu - muG


def sigma_w(H, y, present, mu):
    H = np.asarray(H, dtype=np.float64)
    idx = {c: k for k, c in enumerate(present)}
    S = np.zeros((H.shape[1], H.shape[1]))
    for i in range(H.shape[0]):
        e = H[i] - mu[idx[int(y[i])]]
        S += np.outer(e, e)
    return S / H.shape[0]


def class_var(H, y, present, mu):
    """v_c = (1/n_c) sum ||h_i - mu_c||^2, in the order of ``present``."""
    out = []
    for k, c in enumerate(present):
        rows = [np.asarray(H[i], dtype=np.float64) for i in range(len(y)) if int(y[i]) == c]
        out.append(sum(float(np.dot(r - mu[k], r - mu[k])) for r in rows) / len(rows))
    return out


def nc1_value(Sw, Mt):
    C, d = Mt.shape
    Sb = Mt.T @ Mt / C
    lam, V = np.linalg.eigh(Sb)
    order = np.argsort(lam)[::-1]
    lam, V = lam[order], V[:, order]
    r = min(C - 1, d)
    total = 0.0
    for k in range(r):
        if lam[k] < 1e-12 * lam[0]:
            continue
        v = V[:, k]
        total += float(v @ Sw @ v) / lam[k]
    return total / C


def argmax_low(v):
    best = 0
    for k in range(1, len(v)):
        if v[k] > v[best]:
            best = k
    return best


def argmin_low(v):
    best = 0
    for k in range(1, len(v)):
        if v[k] < v[best]:
            best = k
    return best


def reference_metrics(H, y, W=None, b=None, outputs=None, center="classes", ncc_means=None):
    """Every NC1-NC4, SQI and generalized key of spec/metrics.md, by the spec's definitions.

    ``y`` are integer labels (rows of W when W is given). Absent classes (rows of W with
    no sample) are left out of the class-level values; decisions take every row of W.
    ``ncc_means``: (C_total, d) centres for the NCC decisions (default the own class means).
    """
    H = np.asarray(H, dtype=np.float64)
    y = np.asarray(y)
    N, d = H.shape
    present, n, mu, muG, Mt = class_stats(H, y, center)
    C = len(present)
    out = {}
    Sw = sigma_w(H, y, present, mu)
    Sb = Mt.T @ Mt / C
    out["nc1"] = nc1_value(Sw, Mt)
    out["nc1_trace_ratio"] = float(np.trace(Sw) / np.trace(Sb))
    v = class_var(H, y, present, mu)
    pairs = list(combinations(range(C), 2))
    out["nc1_cdnv"] = float(
        np.mean([(v[a] + v[c]) / (2 * _norm(mu[a] - mu[c]) ** 2) for a, c in pairs])
    )
    out["nc1_cdnv_exp2"] = float(
        np.mean([(v[a] + v[c]) / (2 * _norm(mu[a] - mu[c]) ** 4) for a, c in pairs])
    )
    # directional CDNV
    vals = []
    for a, c in pairs:
        dist = _norm(mu[a] - mu[c])
        u = (mu[a] - mu[c]) / dist
        qs = []
        for k in (a, c):
            rows = [H[i] for i in range(N) if int(y[i]) == present[k]]
            qs.append(sum(float(np.dot(r - mu[k], u)) ** 2 for r in rows) / len(rows))
        vals.append((qs[0] + qs[1]) / (2 * dist**2))
    out["nc1_cdnv_directional"] = float(np.mean(vals))
    norms = [_norm(m) for m in Mt]
    out["nc2_equinorm_means"] = _std1(norms) / float(np.mean(norms))
    cos_m = [_cos(Mt[a], Mt[c]) for a, c in pairs]
    out["nc2_equiangular_means"] = _pop_std(cos_m)
    out["nc2_maxangle_means"] = float(np.mean([abs(x + 1 / (C - 1)) for x in cos_m]))
    out["etf_error_means"] = etf_error(Mt, Mt)
    u = np.array([m / _norm(m) for m in Mt])
    dist_u = [_norm(u[a] - u[c]) for a, c in pairs]
    out["gnc2_log_means"] = _pop_var([math.log(1 / x) for x in dist_u])
    out["gnc2_dist_means"] = _pop_var(dist_u)
    out["gnc2_energy_log_means"] = float(np.mean([math.log(1 / x) for x in dist_u]))
    out["of_error_means"] = gram_distance(mu @ mu.T, np.eye(C))
    out["etf_feasible"] = bool(d >= C - 1)
    out["etf_error_floor"] = 0.0 if d >= C - 1 else math.sqrt(2 - 2 * math.sqrt(d / (C - 1)))
    seli_w, seli_m, seli_l = seli_targets(n)
    out["seli_error_means"] = gram_distance(mu @ mu.T, seli_m)
    centres = mu if ncc_means is None else np.asarray(ncc_means, dtype=np.float64)[present]
    ncc = [present[argmin_low([_norm(H[i] - m) ** 2 for m in centres])] for i in range(N)]
    out["accuracy_ncc"] = sum(int(ncc[i] == int(y[i])) for i in range(N)) / N
    if W is None:
        return out
    W = np.asarray(W, dtype=np.float64)
    bb = np.zeros(W.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
    Wp = W[present]
    wn = [_norm(w) for w in Wp]
    out["nc2_equinorm_weights"] = _std1(wn) / float(np.mean(wn))
    cos_w = [_cos(Wp[a], Wp[c]) for a, c in pairs]
    out["nc2_equiangular_weights"] = _pop_std(cos_w)
    out["nc2_maxangle_weights"] = float(np.mean([abs(x + 1 / (C - 1)) for x in cos_w]))
    out["etf_error_weights"] = etf_error(Wp, Wp)
    Wc = Wp - Wp.mean(axis=0)
    out["etf_error_weights_centered"] = etf_error(Wc, Wc)
    out["nc3_self_duality"] = fro(Wp / fro(Wp) - Mt / fro(Mt)) ** 2
    out["nc3_duality_etf_error"] = etf_error(Wp, Mt)
    dcos = [_cos(Wp[k], Mt[k]) for k in range(C)]
    out["nc3_duality_cos"] = float(np.mean(dcos))
    out["unc3_uniform_duality"] = _pop_var(dcos)
    wh = np.array([w / _norm(w) for w in Wp])
    dist_w = [_norm(wh[a] - wh[c]) for a, c in pairs]
    out["gnc2_log_weights"] = _pop_var([math.log(1 / x) for x in dist_w])
    out["gnc2_dist_weights"] = _pop_var(dist_w)
    out["gnc2_energy_log_weights"] = float(np.mean([math.log(1 / x) for x in dist_w]))
    out["bias_collapse"] = _norm(Wp @ muG + bb[present])
    out["of_error_weights"] = gram_distance(Wp @ Wp.T, np.eye(C))
    out["of_error_duality"] = gram_distance(Wp @ mu.T, np.eye(C))
    out["seli_error_weights"] = gram_distance(Wp @ Wp.T, seli_w)
    out["seli_error_logits"] = gram_distance(Wp @ mu.T, seli_l)
    half = max(n) / 2
    minority = [k for k in range(C) if n[k] < half]
    if len(minority) >= 2:
        out["minority_collapse"] = float(
            np.mean([_cos(Wp[a], Wp[c]) for a, c in combinations(minority, 2)])
        )
    else:
        out["minority_collapse"] = None
    # decisions over every row of W
    logits = np.array([W @ H[i] + bb for i in range(N)])
    cls = [argmax_low(logits[i]) for i in range(N)]
    out["nc4_ncc_mismatch"] = sum(int(cls[i] != ncc[i]) for i in range(N)) / N
    out["accuracy_classifier"] = sum(int(cls[i] == int(y[i])) for i in range(N)) / N
    F = logits if outputs is None else np.asarray(outputs, dtype=np.float64)
    Ct = F.shape[1]
    eps1 = 1 - sum(F[i, int(y[i])] for i in range(N)) / N
    eps2 = sum(F[i, c] for i in range(N) for c in range(Ct) if c != int(y[i])) / (N * (Ct - 1))
    out["sqi_eps1"] = float(eps1)
    out["sqi_eps2"] = float(eps2)
    out["sqi_delta"] = float(eps1 - (Ct - 1) * eps2)
    out["sqi_ratio"] = None if eps2 == 0 else float(eps1 / ((Ct - 1) * eps2))
    T = np.full((N, Ct), eps2)
    for i in range(N):
        T[i, int(y[i])] = 1 - eps1
    out["sqi_spread"] = fro(F - T) / fro(T)
    onehot = np.zeros((N, Ct))
    for i in range(N):
        onehot[i, int(y[i])] = 1.0
    out["mse"] = float(((F - onehot) ** 2).sum() / (N * Ct))
    out["interpolates"] = bool(max(np.abs(F[i] - onehot[i]).max() for i in range(N)) < 1e-3)
    return out


def reference_per_class(H, y, W, b=None, center="classes"):
    """Per-class values: n, var, mean_norm, weight_norm, duality_cos, ncc_agreement and
    accuracy_classifier (ncc_agreement read as: the fraction of the class's samples on which
    the classifier and the nearest class centre decide the same)."""
    H = np.asarray(H, dtype=np.float64)
    present, n, mu, muG, Mt = class_stats(H, y, center)
    W = np.asarray(W, dtype=np.float64)
    bb = np.zeros(W.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
    v = class_var(H, y, present, mu)
    rows = []
    for k, c in enumerate(present):
        members = [i for i in range(len(y)) if int(y[i]) == c]
        agree = acc = 0
        for i in members:
            cls = argmax_low(W @ H[i] + bb)
            ncc = present[argmin_low([_norm(H[i] - m) ** 2 for m in mu])]
            agree += int(cls == ncc)
            acc += int(cls == c)
        rows.append(
            dict(
                cls=c,
                n=int(n[k]),
                var=v[k],
                mean_norm=_norm(Mt[k]),
                weight_norm=_norm(W[c]),
                duality_cos=_cos(W[c], Mt[k]),
                ncc_agreement=agree / len(members),
                accuracy_classifier=acc / len(members),
            )
        )
    return rows


def seli_targets(n):
    """SELI's class-level Grams from the spec's construction: Y (C x N) one-hot, Z^ = Y -
    (1/C) 11^T Y, thin SVD U L V^T (the C-1 nonzero singular values); classifier Gram
    U L U^T, features' Gram V L V^T reduced to one column (sample) per class, logits Z^
    reduced likewise."""
    C = len(n)
    labels = [c for c in range(C) for _ in range(int(n[c]))]
    N = len(labels)
    Y = np.zeros((C, N))
    for i, c in enumerate(labels):
        Y[c, i] = 1.0
    Z = Y - np.ones((C, C)) @ Y / C
    U, L, Vt = np.linalg.svd(Z, full_matrices=False)
    keep = L > 1e-10 * L[0]
    U, L, V = U[:, keep], L[keep], Vt[keep].T
    first = [labels.index(c) for c in range(C)]
    G_w = U @ np.diag(L) @ U.T
    G_h = (V @ np.diag(L) @ V.T)[np.ix_(first, first)]
    G_l = Z[:, first]
    return G_w, G_h, G_l


def _squared_singular(A, d):
    s = np.linalg.svd(A, compute_uv=False)
    s = np.where(s <= s[0] * max(A.shape) * np.finfo(np.float64).eps, 0.0, s)
    return np.concatenate([s**2, np.zeros(d - len(s))])


def eff_rank(s):
    s = np.asarray(s, dtype=np.float64)
    p = s / s.sum()
    return math.exp(-sum(float(x * math.log(x)) for x in p if x > 0))


def reference_spectra(H, y, center="classes"):
    """rank_effective, rank_effective_within, rank_effective_means, rankme, stable_rank,
    alpha_req from the spec's definitions (d x d matrices formed directly)."""
    H = np.asarray(H, dtype=np.float64)
    N, d = H.shape
    present, n, mu, muG, Mt = class_stats(H, y, center)
    hbar = H.sum(axis=0) / N
    St = sum(np.outer(h - hbar, h - hbar) for h in H) / N
    idx = {c: k for k, c in enumerate(present)}
    E = np.array([H[i] - mu[idx[int(y[i])]] for i in range(N)])
    # eigenvalues of Sigma_T and Sigma_W as squared singular values of the centred rows /
    # sqrt(N), exact zeros where the singular value is a round-off zero (numpy's
    # matrix_rank tolerance): the spec's exact spectrum has them (p_k = 0 contributes 0)
    lt, lw = _squared_singular(H - hbar, d), _squared_singular(E, d)
    lt, lw = lt / N, lw / N
    out = {
        "rank_effective": eff_rank(np.sqrt(lt)),
        "rank_effective_within": eff_rank(np.sqrt(lw)),
        "rank_effective_means": eff_rank(np.linalg.svd(Mt, compute_uv=False)),
        "stable_rank": float(np.trace(St) / lt[0]),
    }
    sp = np.linalg.svd(H, compute_uv=False)
    p = sp / sp.sum() + 1e-7
    out["rankme"] = math.exp(-float((p * np.log(p)).sum()))
    K = min(int((lt > 1e-12 * lt[0]).sum()), d, N - 1)
    if K < 3:
        out["alpha_req"] = None
    else:
        k = np.arange(1, K + 1, dtype=np.float64)
        x, z = np.log(k), np.log(lt[:K])
        slope = ((x - x.mean()) * (z - z.mean())).sum() / ((x - x.mean()) ** 2).sum()
        out["alpha_req"] = float(-slope)
    return out


def least_squares(xs, zs):
    """(slope, intercept, Pearson r) of z against x."""
    x = np.asarray(xs, dtype=np.float64)
    z = np.asarray(zs, dtype=np.float64)
    xm, zm = x.mean(), z.mean()
    sxx = ((x - xm) ** 2).sum()
    sxz = ((x - xm) * (z - zm)).sum()
    szz = ((z - zm) ** 2).sum()
    slope = sxz / sxx
    return float(slope), float(zm - slope * xm), float(sxz / math.sqrt(sxx * szz))


def ood_scores(H, W, b, mu, muG, Mt, alpha=0.0):
    """Per-row ncspan, nci, maxlogit against ID statistics (spec: OOD scores)."""
    H = np.asarray(H, dtype=np.float64)
    # orthonormal basis of span(M~) from its SVD, rank by a relative tolerance
    U, s, Vt = np.linalg.svd(Mt, full_matrices=False)
    B = Vt[s > 1e-12 * s[0]]
    P = np.eye(Mt.shape[1]) if B.shape[0] == Mt.shape[1] else B.T @ B  # full span: P = I
    out = {"ncspan": [], "nci": [], "maxlogit": []}
    for h in H:
        r = h - muG
        out["ncspan"].append(_norm(P @ r) / _norm(r))
        if W is not None:
            bb = np.zeros(W.shape[0]) if b is None else b
            lg = W @ h + bb
            c = argmax_low(lg)
            out["nci"].append(_cos(r, W[c]) - alpha * float(np.abs(h).sum()))
            out["maxlogit"].append(float(lg.max()))
    return out


def auroc(id_s, ood_s):
    tot = 0.0
    for a in id_s:
        for o in ood_s:
            tot += 1.0 if a > o else (0.5 if a == o else 0.0)
    return tot / (len(id_s) * len(ood_s))


def fpr95(id_s, ood_s):
    """Fraction of OOD rows with score >= t, t the largest threshold keeping >= 95% of ID
    rows (searched over the ID scores: the kept fraction only changes there)."""
    n = len(id_s)
    best = None
    for t in id_s:
        kept = sum(1 for a in id_s if a >= t)
        if 100 * kept >= 95 * n and (best is None or t > best):
            best = t
    return sum(1 for o in ood_s if o >= best) / len(ood_s)


def _sym_sqrt(S):
    lam, V = np.linalg.eigh(S)
    return V @ np.diag(np.sqrt(np.clip(lam, 0, None))) @ V.T


def _nrc3_objective(W, SY, gamma):
    G = W @ W.T
    T = _sym_sqrt(SY) - math.sqrt(gamma) * np.eye(SY.shape[0])
    if fro(T) == 0:  # gamma = lambda_min of an isotropic Sigma_Y: undefined, not a minimum
        return math.inf
    return fro(G / fro(G) - T / fro(T)) ** 2


def reference_regression(H, Yt, W):
    """nrc1, nrc2 and nrc3 (spec: regression dumps). nrc3's minimum over gamma by a dense
    grid on [0, lambda_min(Sigma_Y)] refined by golden-section search around the best
    point (the objective is smooth in gamma)."""
    H = np.asarray(H, dtype=np.float64)
    Yt = np.asarray(Yt, dtype=np.float64)
    N, d = H.shape
    t = Yt.shape[1]
    hbar = H.sum(axis=0) / N
    S = sum(np.outer(h - hbar, h - hbar) for h in H) / N
    lam, V = np.linalg.eigh(S)
    top = V[:, np.argsort(lam)[::-1][:t]]
    P_pca = top @ top.T
    Qw, _ = np.linalg.qr(np.asarray(W, dtype=np.float64).T)  # d x t basis of W's row space
    P_w = Qw @ Qw.T
    hh = [h / _norm(h) for h in H]
    out = {
        "nrc1": sum(_norm(x - P_pca @ x) ** 2 for x in hh) / N,
        "nrc2": sum(_norm(x - P_w @ x) ** 2 for x in hh) / N,
    }
    Yc = Yt - Yt.sum(axis=0) / N
    SY = Yc.T @ Yc / N
    gmax = float(np.linalg.eigvalsh(SY)[0])
    grid = np.linspace(0.0, gmax, 2001)
    vals = [_nrc3_objective(W, SY, g) for g in grid]
    k = int(np.argmin(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    phi = (math.sqrt(5) - 1) / 2
    for _ in range(200):
        a, b = hi - phi * (hi - lo), lo + phi * (hi - lo)
        if _nrc3_objective(W, SY, a) <= _nrc3_objective(W, SY, b):
            hi = b
        else:
            lo = a
    cands = [0.0, gmax, (lo + hi) / 2]
    out["nrc3"] = min(_nrc3_objective(W, SY, g) for g in cands)
    return out
