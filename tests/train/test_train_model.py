"""The trainer's model and optimiser: gradient check, homogeneity, schedules."""

from __future__ import annotations

import numpy as np
import pytest

from ncinspect.errors import UsageError
from ncinspect.train.model import forward, init_params, objective_and_grads
from ncinspect.train.optim import SGD, learning_rate


def _problem(seed=0, widths=(5, 7, 6, 3), n=8, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = init_params(list(widths), rng, dtype=dtype)
    X = rng.standard_normal((n, widths[0])).astype(dtype)
    Y = np.eye(widths[-1], dtype=dtype)[rng.integers(0, widths[-1], n)]
    return params, X, Y


@pytest.mark.parametrize("n_total", [None, 40])
def test_gradient_matches_finite_differences(n_total):
    """The full objective, weight decay included, against central differences (float64)."""
    params, X, Y = _problem()
    kw = {"kappa": 0.3, "weight_decay": 0.1, "n_total": n_total}
    _, grads, _ = objective_and_grads(params, X, Y, **kw)
    h = 1e-6
    for W, g in zip(params, grads, strict=True):
        fd = np.zeros_like(W)
        for idx in np.ndindex(W.shape):
            orig = W[idx]
            W[idx] = orig + h
            up = objective_and_grads(params, X, Y, **kw)[0]
            W[idx] = orig - h
            down = objective_and_grads(params, X, Y, **kw)[0]
            W[idx] = orig
            fd[idx] = (up - down) / (2 * h)
        rel = np.linalg.norm(fd - g) / np.linalg.norm(g)
        assert rel < 1e-6, rel


def test_objective_value_is_the_documented_formula():
    params, X, Y = _problem(1)
    loss, _, out = objective_and_grads(params, X, Y, kappa=0.25, weight_decay=0.01, n_total=16)
    expected = 0.5 * 0.25 * (16 / 8) * np.sum((Y - out) ** 2) + 0.005 * sum(
        np.sum(W**2) for W in params
    )
    assert loss == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(out, forward(params, X)[0])


def test_minibatch_gradients_average_to_the_full_batch_gradient():
    params, X, Y = _problem(2, n=12)
    kw = {"kappa": 0.1, "weight_decay": 0.05}
    full = objective_and_grads(params, X, Y, **kw)[1]
    halves = [
        objective_and_grads(params, X[s], Y[s], n_total=12, **kw)[1]
        for s in (slice(0, 6), slice(6, 12))
    ]
    for g, a, b in zip(full, *halves, strict=True):
        np.testing.assert_allclose(g, (a + b) / 2, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("a", [0.3, 2.5])
def test_positive_homogeneity(a):
    params, X, _ = _problem(3, widths=(6, 9, 8, 7, 4), n=20)
    L = len(params)
    out = forward(params, X)[0]
    np.testing.assert_allclose(forward(params, a * X)[0], a * out, rtol=1e-12, atol=1e-12)
    scaled = [a * W for W in params]
    np.testing.assert_allclose(forward(scaled, X)[0], a**L * out, rtol=1e-12, atol=1e-12)


def test_forward_returns_every_hidden_layer_and_no_bias():
    params, X, _ = _problem(4)
    out, acts = forward(params, X)
    assert [a.shape for a in acts] == [(8, 5), (8, 7), (8, 6)]
    assert all((a >= 0).all() for a in acts[1:])
    assert out.shape == (8, 3)
    np.testing.assert_array_equal(forward(params, np.zeros_like(X))[0], 0)  # no biases


def test_init_is_he_and_seeded():
    rng = np.random.default_rng(0)
    params = init_params([400, 300, 10], rng, init_scale=0.5, dtype="float32")
    assert [W.shape for W in params] == [(300, 400), (10, 300)]
    assert params[0].dtype == np.float32
    assert np.std(params[0]) == pytest.approx(0.5 * np.sqrt(2 / 400), rel=0.02)
    again = init_params([400, 300, 10], np.random.default_rng(0), init_scale=0.5, dtype="float32")
    assert params[0].tobytes() == again[0].tobytes()


def test_float32_stays_float32():
    params, X, Y = _problem(5, dtype=np.float32)
    loss, grads, out = objective_and_grads(params, X, Y, kappa=0.1, weight_decay=0.01)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    opt = SGD(params, momentum=0.9)
    opt.step(grads, 0.1)
    assert all(W.dtype == np.float32 for W in params)


def test_sgd_momentum_is_pytorch_heavy_ball():
    W = np.array([1.0, 2.0])
    opt = SGD([W], momentum=0.5)
    opt.step([np.array([1.0, 1.0])], 0.1)  # v = g, W -= 0.1 g
    opt.step([np.array([1.0, 0.0])], 0.1)  # v = 0.5 v + g
    np.testing.assert_allclose(W, [1.0 - 0.1 - 0.15, 2.0 - 0.1 - 0.05])


def test_learning_rate_schedules():
    assert learning_rate("constant", 0.1, 7, 10) == 0.1
    assert learning_rate("step", 1.0, 0, 9) == 1.0
    assert learning_rate("step", 1.0, 3, 9) == pytest.approx(0.1)
    assert learning_rate("step", 1.0, 5, 100, step_every=2, gamma=0.5) == pytest.approx(0.25)
    assert learning_rate("cosine", 0.2, 0, 10) == pytest.approx(0.2)
    assert learning_rate("cosine", 0.2, 5, 10) == pytest.approx(0.1)
    assert learning_rate("cosine", 0.2, 10, 10, lr_min=0.01) == pytest.approx(0.01)
    with pytest.raises(UsageError, match="schedule"):
        learning_rate("linear", 0.1, 0, 10)
