"""A high-precision reference of spec/metrics.md (mpmath, 200-bit), for differential tests.

The stored floats are converted exactly (``mpf(float)`` is exact), so the reference is the
value the spec defines *on the data as stored*, to far more digits than float64 holds: a
cancellation in the tool (a common offset, nearly coincident means) shows as a disagreement
here instead of being shared by a float64 reference. A quantity that divides by an exact 0
is ``None`` (undefined). Small inputs only (N, d, C of a few dozen).
"""

from __future__ import annotations

from itertools import combinations

import mpmath as mp
import numpy as np

PREC = 200


def _m(x):
    return mp.mpf(float(x))


def _vec(a):
    return [_m(v) for v in np.asarray(a, dtype=np.float64).ravel()]


def _dot(a, b):
    return mp.fsum(x * y for x, y in zip(a, b, strict=True))


def _sub(a, b):
    return [x - y for x, y in zip(a, b, strict=True)]


def _norm(a):
    return mp.sqrt(_dot(a, a))


def _div(a, b):
    return None if b == 0 else a / b


def _cos(a, b):
    na, nb = _norm(a), _norm(b)
    return None if na == 0 or nb == 0 else _dot(a, b) / (na * nb)


def _mean(xs):
    xs = list(xs)
    return None if not xs or any(x is None for x in xs) else mp.fsum(xs) / len(xs)


def _pvar(xs):
    xs = list(xs)
    if not xs or any(x is None for x in xs):
        return None
    m = mp.fsum(xs) / len(xs)
    return mp.fsum((x - m) ** 2 for x in xs) / len(xs)


def _fro(A):
    return mp.sqrt(mp.fsum(x * x for row in A for x in row))


def _gram(A, B):
    return [[_dot(a, b) for b in B] for a in A]


def _gram_dist(G, T):
    """|| G/||G|| - T/||T|| ||_F; None when G = 0."""
    g, t = _fro(G), _fro(T)
    if g == 0 or t == 0:
        return None
    n = len(G)
    return mp.sqrt(mp.fsum((G[i][j] / g - T[i][j] / t) ** 2 for i in range(n) for j in range(n)))


def _etf(C):
    s = mp.sqrt(C - 1)
    return [[((1 if i == j else 0) - mp.mpf(1) / C) / s for j in range(C)] for i in range(C)]


def _eye(C):
    return [[mp.mpf(1 if i == j else 0) for j in range(C)] for i in range(C)]


def etf_error(A, B):
    if len(A) < 2:
        return None
    return _gram_dist(_gram(A, B), _etf(len(A)))


def _equinorm(rows):
    n = [_norm(r) for r in rows]
    m = mp.fsum(n) / len(n)
    if m == 0 or len(n) < 2:
        return None
    return mp.sqrt(mp.fsum((x - m) ** 2 for x in n) / (len(n) - 1)) / m


def _pairs_cos(rows):
    C = len(rows)
    cos = [_cos(rows[i], rows[j]) for i, j in combinations(range(C), 2)]
    if not cos or any(c is None for c in cos):
        return None, None
    return mp.sqrt(_pvar(cos)), _mean(abs(c + mp.mpf(1) / (C - 1)) for c in cos)


def _gnc2(rows):
    if any(_norm(r) == 0 for r in rows):
        return None, None, None
    u = [[x / _norm(r) for x in r] for r in rows]
    dist = [_norm(_sub(u[i], u[j])) for i, j in combinations(range(len(u)), 2)]
    if not dist:
        return None, None, None
    if any(x == 0 for x in dist):
        return None, _pvar(dist), None
    logs = [-mp.log(x) for x in dist]
    return _pvar(logs), _pvar(dist), _mean(logs)


def _argmax(vals):
    best = 0
    for k, v in enumerate(vals):
        if v > vals[best]:
            best = k
    return best


def _argmin(vals):
    best = 0
    for k, v in enumerate(vals):
        if v < vals[best]:
            best = k
    return best


def _eig_sym(G):
    """Eigenpairs of a symmetric mp matrix, eigenvalues descending."""
    E, Q = mp.eigsy(mp.matrix(G))
    n = len(G)
    pairs = sorted(((E[k], [Q[i, k] for i in range(n)]) for k in range(n)), key=lambda p: -p[0])
    return pairs


def reference(H, y, W=None, b=None, center="classes"):
    """Metrics by key (mp numbers, bools or None) plus ``n_classes``.

    ``y``: integer codes. With ``W`` they are rows of W (C_total rows; absent rows take no
    part in the class-level statistics, decisions take the argmax over every row); without
    W, the classes are the distinct codes in increasing order.
    """
    with mp.workprec(PREC):
        return _reference(H, y, W, b, center)


def _reference(H, y, W, b, center):
    H = np.asarray(H)
    y = np.asarray(y).astype(np.int64)
    N, d = H.shape
    rows = [_vec(h) for h in H]
    P = sorted(set(y.tolist()))
    C = len(P)
    pos = {c: j for j, c in enumerate(P)}
    j_of = [pos[int(v)] for v in y]
    members = [[i for i in range(N) if j_of[i] == j] for j in range(C)]
    n = [len(m) for m in members]
    mu = [[mp.fsum(rows[i][k] for i in members[j]) / n[j] for k in range(d)] for j in range(C)]
    if center == "classes":
        mu_g = [mp.fsum(mu[j][k] for j in range(C)) / C for k in range(d)]
    else:
        mu_g = [mp.fsum(r[k] for r in rows) / N for k in range(d)]
    mt = [_sub(m, mu_g) for m in mu]
    res = [_sub(rows[i], mu[j_of[i]]) for i in range(N)]
    out: dict = {"n_classes": C}
    # NC1 through the C x C Gram of M~
    G = _gram(mt, mt)
    tr_w = mp.fsum(_dot(r, r) for r in res) / N
    tr_b = mp.fsum(G[j][j] for j in range(C)) / C
    out["nc1_trace_ratio"] = _div(tr_w, tr_b)
    nc1 = None
    if C >= 2 and tr_b != 0:
        pairs = _eig_sym(G)[: min(C - 1, d)]
        top = pairs[0][0]
        kept = [(lam, a) for lam, a in pairs if lam >= mp.mpf("1e-12") * top and lam > 0]
        total = mp.mpf(0)
        for lam, a in kept:
            v = [mp.fsum(a[j] * mt[j][k] for j in range(C)) / mp.sqrt(lam) for k in range(d)]
            q = mp.fsum(_dot(r, v) ** 2 for r in res) / N
            total += q / (lam / C)
        nc1 = total / C
    out["nc1"] = nc1
    var = [mp.fsum(_dot(res[i], res[i]) for i in members[j]) / n[j] for j in range(C)]
    cd, cd2, cdd = [], [], []
    for i, j in combinations(range(C), 2):
        diff = _sub(mu[i], mu[j])
        dd = _dot(diff, diff)
        if dd == 0:
            cd = cd2 = cdd = None
            break
        cd.append((var[i] + var[j]) / (2 * dd))
        cd2.append((var[i] + var[j]) / (2 * dd * dd))
        u = [x / mp.sqrt(dd) for x in diff]
        qi = mp.fsum(_dot(res[t], u) ** 2 for t in members[i]) / n[i]
        qj = mp.fsum(_dot(res[t], u) ** 2 for t in members[j]) / n[j]
        cdd.append((qi + qj) / (2 * dd))
    out["nc1_cdnv"] = _mean(cd) if cd else None
    out["nc1_cdnv_exp2"] = _mean(cd2) if cd2 else None
    out["nc1_cdnv_directional"] = _mean(cdd) if cdd else None
    out["nc2_equinorm_means"] = _equinorm(mt) if C >= 2 else None
    s, a = _pairs_cos(mt) if C >= 2 else (None, None)
    out["nc2_equiangular_means"], out["nc2_maxangle_means"] = s, a
    out["etf_error_means"] = etf_error(mt, mt) if C >= 2 else None
    out["etf_feasible"] = bool(d >= C - 1)
    if C >= 2:
        out["etf_error_floor"] = (
            mp.mpf(0) if d >= C - 1 else mp.sqrt(2 - 2 * mp.sqrt(mp.mpf(d) / (C - 1)))
        )
    g = _gnc2(mt) if C >= 2 else (None, None, None)
    out["gnc2_log_means"], out["gnc2_dist_means"], out["gnc2_energy_log_means"] = g
    out["of_error_means"] = _gram_dist(_gram(mu, mu), _eye(C))
    # NCC by explicit distances (lowest index on ties), codes are rows of W / positions
    dist = [[_dot(_sub(r, m), _sub(r, m)) for m in mu] for r in rows]
    ncc = [P[_argmin(dv)] for dv in dist]
    out["accuracy_ncc"] = mp.mpf(sum(int(ncc[i] == y[i]) for i in range(N))) / N
    if W is None:
        return out
    Wall = [_vec(w) for w in np.asarray(W)]
    C_total = len(Wall)
    Wp = [Wall[c] for c in P]
    bb = [mp.mpf(0)] * C_total if b is None else _vec(b)
    out["nc2_equinorm_weights"] = _equinorm(Wp)
    s, a = _pairs_cos(Wp)
    out["nc2_equiangular_weights"], out["nc2_maxangle_weights"] = s, a
    out["etf_error_weights"] = etf_error(Wp, Wp)
    wbar = [mp.fsum(w[k] for w in Wp) / C for k in range(d)]
    wc = [_sub(w, wbar) for w in Wp]
    out["etf_error_weights_centered"] = etf_error(wc, wc)
    fw, fm = _fro(Wp), _fro(mt)
    out["nc3_self_duality"] = (
        None
        if fw == 0 or fm == 0
        else mp.fsum((Wp[j][k] / fw - mt[j][k] / fm) ** 2 for j in range(C) for k in range(d))
    )
    out["nc3_duality_etf_error"] = etf_error(Wp, mt)
    dual = [_cos(Wp[j], mt[j]) for j in range(C)]
    out["nc3_duality_cos"] = _mean(dual)
    out["unc3_uniform_duality"] = _pvar(dual)
    g = _gnc2(Wp)
    out["gnc2_log_weights"], out["gnc2_dist_weights"], out["gnc2_energy_log_weights"] = g
    bsel = [bb[c] for c in P]
    out["bias_collapse"] = _norm([_dot(w, mu_g) + bc for w, bc in zip(Wp, bsel, strict=True)])
    minority = [j for j in range(C) if 2 * n[j] < max(n)]
    mc = [_cos(Wp[i], Wp[j]) for i, j in combinations(minority, 2)]
    out["minority_collapse"] = _mean(mc) if mc else None
    out["of_error_weights"] = _gram_dist(_gram(Wp, Wp), _eye(C))
    out["of_error_duality"] = _gram_dist(_gram(Wp, mu), _eye(C))
    logits = [[_dot(w, r) + bc for w, bc in zip(Wall, bb, strict=True)] for r in rows]
    clf = [_argmax(z) for z in logits]
    out["nc4_ncc_mismatch"] = mp.mpf(sum(int(clf[i] != ncc[i]) for i in range(N))) / N
    out["accuracy_classifier"] = mp.mpf(sum(int(clf[i] == y[i]) for i in range(N))) / N
    true = [logits[i][y[i]] for i in range(N)]
    wrong = [logits[i][c] for i in range(N) for c in range(C_total) if c != y[i]]
    eps1 = 1 - mp.fsum(true) / N
    eps2 = mp.fsum(wrong) / len(wrong) if wrong else None
    out["sqi_eps1"], out["sqi_eps2"] = eps1, eps2
    if eps2 is not None:
        out["sqi_delta"] = eps1 - (C_total - 1) * eps2
        out["sqi_ratio"] = _div(eps1, (C_total - 1) * eps2)
        tt = [[(1 - eps1) if c == y[i] else eps2 for c in range(C_total)] for i in range(N)]
        num = mp.sqrt(
            mp.fsum((logits[i][c] - tt[i][c]) ** 2 for i in range(N) for c in range(C_total))
        )
        out["sqi_spread"] = _div(num, _fro(tt))
    out["mse"] = mp.fsum(
        (logits[i][c] - (1 if c == y[i] else 0)) ** 2 for i in range(N) for c in range(C_total)
    ) / (N * C_total)
    out["interpolates"] = bool(
        max(abs(logits[i][c] - (1 if c == y[i] else 0)) for i in range(N) for c in range(C_total))
        < mp.mpf("1e-3")
    )
    return out


def as_float(v):
    if v is None or isinstance(v, bool | int):
        return v
    return float(v)
