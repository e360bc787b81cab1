"""The sums over training rows that the seed theory's identities need, merged over chunks.

:class:`TheoryPass` is a mergeable statistic like those of :mod:`ncinspect.stats`: it rides
pass 2 of the engines (the same chunk of features and outputs feeds both), so the theory
reads the training rows in the same two passes as the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .passes import to_float64

__all__ = ["TheoryPass"]


@dataclass
class TheoryPass:
    """Sums over the training rows that the identities need; merge chunk statistics exactly.

    Attributes
    ----------
    rh : (C, d) ``sum_i r_i h_i^T``.
    rf : ``sum_i <r_i, f(x_i)>``.
    rr : ``sum_i ||r_i||^2``.
    count : number of rows.
    class_r : (C, C) row c = ``sum_{y_i = c} r_i`` (the class-mean residual pattern).
    class_n : (C,) rows per class.
    """

    rh: np.ndarray
    rf: float = 0.0
    rr: float = 0.0
    count: int = 0
    class_r: np.ndarray | None = None
    class_n: np.ndarray | None = None

    @classmethod
    def empty(cls, n_classes: int, n_features: int) -> TheoryPass:
        return cls(
            np.zeros((n_classes, n_features)),
            class_r=np.zeros((n_classes, n_classes)),
            class_n=np.zeros(n_classes, np.int64),
        )

    @classmethod
    def of_chunk(cls, h: np.ndarray, y: np.ndarray, outputs: np.ndarray) -> TheoryPass:
        """Sums of one chunk: features ``h`` (n, d), codes ``y`` (n,), outputs ``f`` (n, C)."""
        h = np.asarray(h, dtype=np.float64)
        f = np.asarray(outputs, dtype=np.float64)
        C = f.shape[1]
        r = -f  # (n, C) residuals r_i = onehot(y_i) - f(x_i)
        r[np.arange(f.shape[0]), y] += 1.0
        class_r = np.zeros((C, C))
        np.add.at(class_r, y, r)
        return cls(
            r.T @ h,
            float(np.einsum("ij,ij->", r, f)),
            float(np.einsum("ij,ij->", r, r)),
            int(h.shape[0]),
            class_r,
            np.bincount(y, minlength=C).astype(np.int64),
        )

    @classmethod
    def of_rows(
        cls,
        block: np.ndarray,
        y: np.ndarray,
        outputs: np.ndarray | None,
        weights: np.ndarray | None,
        bias: np.ndarray | None,
    ) -> TheoryPass:
        """Sums of one chunk of stored features: outputs as stored, else ``W_L h (+ b)``."""
        h = to_float64(block)  # (rows, d)
        f = outputs
        if f is None:
            f = h @ weights.T  # (rows, d) @ (d, C)
            if bias is not None:
                f += bias
        return cls.of_chunk(h, y, f)

    def merge(self, other: TheoryPass) -> TheoryPass:
        return TheoryPass(
            self.rh + other.rh,
            self.rf + other.rf,
            self.rr + other.rr,
            self.count + other.count,
            self.class_r + other.class_r,
            self.class_n + other.class_n,
        )
