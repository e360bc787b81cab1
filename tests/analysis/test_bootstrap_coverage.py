"""Coverage of the bootstrap intervals where the population values are known.

Gaussian classes with known means and covariances and a fixed classifier: the population
nc1 and nc2_equinorm_means follow from the parameters (written out below), the population
nc4_ncc_mismatch is the mismatch rate of the classifier against nearest-centre decisions
with the true means, estimated from two million draws (standard error 2e-4, against a
sampling spread of 7e-3 at the test's sample size). Each of R independent data draws gets
its own bootstrap (B replicates, a seed independent of the data's); the 95% interval must
cover the population value in 90-99% of the draws.
"""

from __future__ import annotations

import numpy as np
import pytest

import ncinspect

C, D, N_PER_CLASS = 4, 5, 500
DRAWS, REPLICATES = 200, 60


def _population():
    g = np.random.default_rng(12345)
    mu = 1.5 * g.normal(size=(C, D))
    a = g.normal(size=(C, D, D)) / np.sqrt(D)  # class c: h = mu_c + a_c z, z ~ N(0, I)
    w = mu + g.normal(size=(C, D))
    b = 0.3 * g.normal(size=C)
    cov = np.einsum("cij,ckj->cik", a, a)
    sigma_w = cov.mean(axis=0)  # balanced classes: the pooled covariance
    centred = mu - mu.mean(axis=0)
    sigma_b = centred.T @ centred / C
    vals, vecs = np.linalg.eigh(sigma_b)
    vals, vecs = vals[-(C - 1) :], vecs[:, -(C - 1) :]  # rank C - 1
    nc1 = np.trace(sigma_w @ vecs @ np.diag(1 / vals) @ vecs.T) / C
    norms = np.linalg.norm(centred, axis=1)
    nc2 = norms.std(ddof=1) / norms.mean()
    big = 2_000_000
    yy = g.integers(0, C, big)
    hh = mu[yy] + np.einsum("nij,nj->ni", a[yy], g.normal(size=(big, D)))
    clf = np.argmax(hh @ w.T + b, axis=1)
    dist = np.stack([np.einsum("ij,ij->i", hh - m, hh - m) for m in mu], axis=1)
    nc4 = float(np.mean(clf != np.argmin(dist, axis=1)))
    truth = {"nc1": nc1, "nc2_equinorm_means": nc2, "nc4_ncc_mismatch": nc4}
    return mu, a, w, b, truth


@pytest.mark.slow
def test_percentile_intervals_cover_population_values():
    mu, a, w, b, truth = _population()
    assert 0.3 < truth["nc1"] < 1.0 and 0.1 < truth["nc2_equinorm_means"] < 0.4
    assert 0.05 < truth["nc4_ncc_mismatch"] < 0.2  # interior values, not a boundary
    y = np.repeat(np.arange(C), N_PER_CLASS)
    hits = dict.fromkeys(truth, 0)
    for r in range(DRAWS):
        z = np.random.default_rng(r).normal(size=(y.size, D))
        h = mu[y] + np.einsum("nij,nj->ni", a[y], z)
        res = ncinspect.analyze(h, y, weights=w, bias=b, bootstrap=REPLICATES, seed=10_000 + r)
        for key, value in truth.items():
            lo, hi = res.interval(key)
            hits[key] += lo <= value <= hi
    coverage = {k: v / DRAWS for k, v in hits.items()}
    print("coverage of the 95% intervals:", coverage)  # shown with pytest -s (docs/bootstrap.md)
    for key, cov in coverage.items():
        assert 0.90 <= cov <= 0.99, (key, coverage)
