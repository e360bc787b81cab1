"""A deep homogeneous (bias-free) ReLU network, its square-loss objective and its gradient.

``f(x) = W_L relu(W_{L-1} ... relu(W_1 x))``: no biases and no normalisation layers, so f is
positively homogeneous of degree 1 in x and of degree L in the weights (theory.md). Rows are
samples: ``X`` is (B, d) and ``W_l`` is (out, in), as in PyTorch's ``nn.Linear``.

The objective on a batch of B of the N training samples is the unbiased estimate of

    (kappa/2) sum_i ||y_i - f(x_i)||^2 + (lambda/2) sum_l ||W_l||_F^2

i.e. ``(kappa N / B)/2 * sum_{i in batch} ||r_i||^2 + (lambda/2) sum_l ||W_l||_F^2`` with
``r_i = y_i - f(x_i)``; for a full batch (B = N) it is the objective itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["init_params", "forward", "objective_and_grads", "hidden_features"]


def init_params(
    widths: Sequence[int],
    rng: np.random.Generator,
    *,
    init_scale: float = 1.0,
    dtype: np.dtype | str = np.float64,
) -> list[np.ndarray]:
    """He-initialised weights for layer widths ``[d, w_1, ..., w_{L-1}, C]``.

    Parameters
    ----------
    widths : sequence of int
        Input dimension, hidden widths and number of classes (length L + 1).
    rng : numpy.random.Generator
        The only source of randomness.
    init_scale : float, keyword-only
        Multiplies every He-initialised matrix; small values (e.g. 0.1) start the net in the
        "rich" regime, since f scales like ``init_scale ** L``.
    dtype : dtype, keyword-only
        float64 (default) or float32.

    Returns
    -------
    list of ndarray
        ``[W_1, ..., W_L]``, ``W_l`` of shape ``(widths[l], widths[l-1])``.

    Notes
    -----
    He initialisation: entries ``N(0, 2 / fan_in)``, which keeps the mean square of the
    ReLU activations constant with depth.
    """
    params = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        w = rng.standard_normal((fan_out, fan_in)) * (init_scale * np.sqrt(2.0 / fan_in))
        params.append(w.astype(dtype))
    return params


def forward(params: Sequence[np.ndarray], X: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Outputs and the post-ReLU activations of every hidden layer.

    Parameters
    ----------
    params : sequence of ndarray
        ``[W_1, ..., W_L]``.
    X : ndarray, shape (B, d)

    Returns
    -------
    out : ndarray, shape (B, C)
        ``f(X)``.
    acts : list of ndarray
        ``[X, a_1, ..., a_{L-1}]`` where ``a_l = relu(a_{l-1} W_l^T)``; ``acts[-1]`` is the
        penultimate feature matrix H (the input of W_L).
    """
    acts = [X]
    a = X
    for W in params[:-1]:
        a = a @ W.T  # (B, in) @ (in, out) -> (B, out)
        np.maximum(a, 0, out=a)  # relu in place: a is a fresh array
        acts.append(a)
    out = a @ params[-1].T  # (B, w_{L-1}) @ (w_{L-1}, C) -> (B, C)
    return out, acts


def hidden_features(params: Sequence[np.ndarray], X: np.ndarray) -> list[np.ndarray]:
    """The post-ReLU features of layers 1 .. L-1 (the last one is the penultimate layer)."""
    return forward(params, X)[1][1:]


def objective_and_grads(
    params: Sequence[np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    *,
    kappa: float,
    weight_decay: float,
    n_total: int | None = None,
) -> tuple[float, list[np.ndarray], np.ndarray]:
    """Square loss plus weight decay on a batch, and its gradient with respect to every W_l.

    Parameters
    ----------
    params : sequence of ndarray
        ``[W_1, ..., W_L]``.
    X : ndarray, shape (B, d)
    Y : ndarray, shape (B, C)
        One-hot targets.
    kappa : float, keyword-only
        Weight of the data term (the paper's ``1 / (N C)``).
    weight_decay : float, keyword-only
        lambda.
    n_total : int, optional, keyword-only
        N, the number of training samples; the data term is scaled by ``N / B`` so a minibatch
        gives an unbiased estimate of the full objective. Defaults to B (full batch).

    Returns
    -------
    loss : float
        ``(kappa N / B)/2 sum_batch ||y - f||^2 + (lambda/2) sum_l ||W_l||_F^2``.
    grads : list of ndarray
        d loss / d W_l, same shapes as params.
    out : ndarray, shape (B, C)
        The outputs f(X) (for the accuracy of the batch).

    Notes
    -----
    With ``r = Y - f`` the backward pass is ``dL/df = -(kappa N / B) r``,
    ``dL/dW_L = (dL/df)^T a_{L-1} + lambda W_L``, ``dL/da_{l-1} = (dL/dz_l) W_l`` and
    ``dL/dz_l = dL/da_l * [z_l > 0]``.
    """
    B = X.shape[0]
    scale = kappa * (B if n_total is None else n_total) / B
    out, acts = forward(params, X)  # out (B, C), acts [X (B, d), a_1 (B, w_1), ...]
    R = Y - out  # (B, C) residuals r_i
    data_term = 0.5 * scale * float(np.vdot(R, R))
    reg_term = 0.5 * weight_decay * sum(float(np.vdot(W, W)) for W in params)

    grads: list[np.ndarray] = [None] * len(params)  # type: ignore[list-item]
    delta = (-scale) * R  # (B, C) dL/df
    for layer in range(len(params) - 1, -1, -1):
        a_in = acts[layer]  # (B, in)
        grads[layer] = delta.T @ a_in  # (out, B) @ (B, in) -> (out, in)
        if weight_decay:
            grads[layer] += weight_decay * params[layer]
        if layer > 0:
            delta = delta @ params[layer]  # (B, out) @ (out, in) -> (B, in) dL/da_{layer}
            delta *= a_in > 0  # through the relu: a_in > 0 exactly where z > 0
    return data_term + reg_term, grads, out
