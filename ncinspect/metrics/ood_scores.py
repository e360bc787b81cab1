"""OOD scores from the collapse geometry and their exact AUROC / FPR95 (spec, 0.3).

Against an in-distribution (ID) snapshot (its class means, ``mu_G`` and classifier), each
row h gets scores where higher means "more ID":

- ``ncspan`` = ``||P (h - mu_G)|| / ||h - mu_G||``, P the orthogonal projector on the span of
  the ID centred means M~ (NECO, Ammar et al. 2024, with the collapse subspace);
- ``nci`` = ``cos(h - mu_G, w_pred(h)) - alpha ||h||_1``, ``pred(h) = argmax_c (W h + b)_c``
  (lowest index on ties; Liu & Qin 2024);
- ``maxlogit`` = ``max_c (W h + b)_c``.

:class:`RowScores` is the mergeable statistic of one pass over row chunks (N floats per
score, never N x d); :func:`auroc` is the Mann-Whitney statistic (ties count one half),
exact: twice U is an integer; :func:`fpr95` the fraction of OOD rows at or above the largest
threshold that keeps 95% of the ID rows.

A row's scores depend on that row only, never on where it sits or how many rows share its
chunk: equal rows get equal scores bit for bit (their ties count one half), whatever the
chunking. A BLAS matrix product rounds a row by the shape of the call, and may round it by
its place in the call too (OpenBLAS takes other kernels for small products, whose leftover
rows sum in another order), so :func:`row_product` makes every product of ``h`` one call of
a fixed shape: :func:`score_rows` rows (the engine's blocks of d and C, which go to BLAS as
they are; a shorter block is copied into a zero-padded one), on one BLAS thread, once a
probe has shown that this BLAS rounds a row of that shape alike at every place
(:func:`same_at_every_row`); where it does not, one matrix-vector product per row (``gemv``:
as fast for a few classes, 2 to 8 times slower for C >= 100).

No IO here: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..blas import one_blas_thread
from ..stats.kernel import block_rows
from .registry_extra import OOD_SCORES

__all__ = [
    "OOD_SCORES",
    "OODScorer",
    "RowScores",
    "auroc",
    "fpr95",
    "row_product",
    "same_at_every_row",
    "score_chunk",
    "score_rows",
]


def score_rows(n_features: int, n_classes: int) -> int:
    """Rows of each BLAS product of the scores (``n_classes``: rows of W, 0 without W): the
    pass-2 block of d and C (:func:`~ncinspect.stats.kernel.block_rows`), the blocks of the
    engine's score pass (:class:`~ncinspect.engines.passes.ScoreRows`)."""
    return block_rows(int(n_features), int(n_classes))


#: (rows, b_t's shape, strides, dtype) -> whether BLAS rounds a row alike at every place
_PROBED: dict[tuple, bool] = {}


def same_at_every_row(rows: int, b_t: np.ndarray) -> bool:
    """Whether this process's BLAS (on one thread) gives each row of a C-ordered float64
    ``(rows, d) @ b_t`` the same bits at every place of the call: random rows, each
    repeated ``rows`` times, must give ``rows`` equal result rows (a row sums in another
    order at a place whose kernel differs: then almost surely another rounding somewhere in
    its ``k`` values; three rows are tried). BLAS never reads the values to pick its
    kernels, so the answer holds for every input of that shape and layout; it is probed
    once per process and layout."""
    key = (int(rows), b_t.shape, b_t.strides, b_t.dtype.str)
    ok = _PROBED.get(key)
    if ok is None:
        rng = np.random.default_rng(20261206)
        ok = True
        for _ in range(3):
            probe = np.repeat(rng.standard_normal((1, b_t.shape[0])), rows, axis=0)
            got = probe @ b_t
            ok = ok and bool((got == got[:1]).all())
        _PROBED[key] = ok
    return ok


def row_product(a: np.ndarray, b_t: np.ndarray, rows: int) -> np.ndarray:
    """``a @ b_t`` (``a`` (n, d), ``b_t`` (d, k)), each row of the result a function of that
    row of ``a`` alone, bit for bit, wherever it sits: calls of exactly ``rows`` rows on one
    BLAS thread (a short rest zero-padded to ``rows``) when :func:`same_at_every_row`; else
    one matrix-vector product per row (numpy's stacked ``matmul`` of ``(n, 1, d)`` by
    ``(d, k)``: one ``gemv`` a row, 2 to 8 times the time of a ``gemm`` for k >= 100)."""
    a = np.require(a, np.float64, ["C", "A"])
    b_t = np.require(b_t, np.float64, ["A"])
    n = a.shape[0]
    with one_blas_thread():
        if not same_at_every_row(rows, b_t):
            return np.matmul(a[:, None, :], b_t)[:, 0, :]
        if n == rows:
            return a @ b_t
        out = np.empty((n, b_t.shape[1]))
        full = n - n % rows
        for s in range(0, full, rows):
            out[s : s + rows] = a[s : s + rows] @ b_t
        if full < n:
            pad = np.zeros((rows, a.shape[1]))
            pad[: n - full] = a[full:]
            out[full:] = (pad @ b_t)[: n - full]
    return out


@dataclass
class OODScorer:
    """What the scores need from the ID snapshot (float64).

    Attributes
    ----------
    global_mean : (d,) mu_G of the ID snapshot (under its ``center``).
    basis : (r, d) orthonormal basis of the span of the ID centred means (None: none).
    weights, bias : the classifier, every row (None without W).
    alpha : the ``alpha`` of ``nci``.
    """

    global_mean: np.ndarray
    basis: np.ndarray | None
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None
    alpha: float = 0.0

    def names(self) -> tuple[str, ...]:
        """The scores this scorer can give (``nci`` and ``maxlogit`` need W)."""
        return OOD_SCORES if self.weights is not None else ("ncspan",)

    def rows(self) -> int:
        """Rows of each BLAS product (:func:`score_rows` of d and the rows of W)."""
        width = 0 if self.weights is None else int(np.shape(self.weights)[0])
        return score_rows(int(np.shape(self.global_mean)[0]), width)

    def scores(self, h: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Scores of the rows ``h`` (n, d) and, per score, the rows where it is undefined
        (their value is NaN): ``h = mu_G`` for both cosines, a zero row ``w_pred``.

        Each row's scores are a function of that row alone (bit for bit): its products by
        :func:`row_product` (calls of :meth:`rows` rows), the rest row by row."""
        x = np.asarray(h, dtype=np.float64)
        rows = self.rows()
        c = x - self.global_mean
        norm = np.linalg.norm(c, axis=1)
        zero = norm == 0
        safe = np.where(zero, 1.0, norm)
        out, bad = {}, {}
        if self.basis is not None and self.basis.shape[0] >= x.shape[1]:
            # span(M~) is all of R^d (C - 1 >= d): P = I and the score is exactly 1 on
            # every row; the quotient below would rank equal rows by its round-off
            span = np.ones(x.shape[0])
        elif self.basis is not None and self.basis.shape[0]:
            span = np.linalg.norm(row_product(c, self.basis.T, rows), axis=1) / safe
        else:
            span = np.zeros(x.shape[0])
        out["ncspan"] = np.where(zero, np.nan, np.minimum(span, 1.0))
        bad["ncspan"] = int(zero.sum())
        if self.weights is not None:
            logits = row_product(x, self.weights.T, rows)
            if self.bias is not None:
                logits += self.bias
            pred = np.argmax(logits, axis=1)
            out["maxlogit"] = logits[np.arange(x.shape[0]), pred]
            bad["maxlogit"] = 0
            w = self.weights[pred]
            wn = np.linalg.norm(w, axis=1)
            undefined = zero | (wn == 0)
            cos = np.einsum("ij,ij->i", c, w) / (safe * np.where(wn == 0, 1.0, wn))
            nci = cos - self.alpha * np.abs(x).sum(axis=1) if self.alpha else cos
            out["nci"] = np.where(undefined, np.nan, nci)
            bad["nci"] = int(undefined.sum())
        return out, bad


@dataclass
class RowScores:
    """Per-row scores of some rows, in row order (merge concatenates), and undefined counts."""

    values: dict[str, list[np.ndarray]] = field(default_factory=dict)
    undefined: dict[str, int] = field(default_factory=dict)
    n_nonfinite: int = 0
    first_nonfinite_row: int | None = None

    def merge(self, other: RowScores) -> RowScores:
        keys = list(dict.fromkeys([*self.values, *other.values]))
        firsts = [r for r in (self.first_nonfinite_row, other.first_nonfinite_row) if r is not None]
        return RowScores(
            {k: [*self.values.get(k, []), *other.values.get(k, [])] for k in keys},
            {k: self.undefined.get(k, 0) + other.undefined.get(k, 0) for k in keys},
            self.n_nonfinite + other.n_nonfinite,
            min(firsts) if firsts else None,
        )

    def array(self, name: str) -> np.ndarray:
        """The scores ``name`` of every row, in row order (float64, N values)."""
        parts = self.values.get(name, [])
        return np.concatenate(parts) if parts else np.zeros(0)


def score_chunk(scorer: OODScorer, row0: int, h: np.ndarray) -> RowScores:
    """The :class:`RowScores` of one chunk of rows starting at ``row0`` (a module-level
    function, so that a Dask worker can run it); rows holding NaN/Inf are counted."""
    x = np.asarray(h, dtype=np.float64)
    # a row's sum is finite when all its entries are (unless it overflows): the entry-wise
    # NaN/Inf test runs only on a block where some row's sum is not
    with np.errstate(over="ignore", invalid="ignore"):
        sums_ok = bool(np.isfinite(np.add.reduce(x, axis=1)).all())
    bad = np.zeros(0, dtype=np.intp) if sums_ok else np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        return RowScores(n_nonfinite=int(bad.size), first_nonfinite_row=int(row0 + bad[0]))
    values, undefined = scorer.scores(x)
    return RowScores({k: [v] for k, v in values.items()}, undefined)


def auroc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """Area under the ROC curve of ``pos`` (ID, positives) against ``neg`` (OOD): the
    fraction of (pos, neg) pairs with ``pos > neg``, ties counted one half (Mann-Whitney
    U / (n_pos n_neg)). Computed exactly: ``2U`` is an integer. None when a side is empty."""
    p = np.sort(np.asarray(pos, dtype=np.float64))
    q = np.asarray(neg, dtype=np.float64)
    if p.size == 0 or q.size == 0:
        return None
    below = np.searchsorted(p, q, side="left")  # positives < each negative
    upto = np.searchsorted(p, q, side="right")  # positives <= each negative
    greater = p.size - upto
    twice_u = int(np.sum(2 * greater + (upto - below), dtype=np.int64))
    return twice_u / (2 * p.size * q.size)


def fpr95(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """Fraction of ``neg`` (OOD) rows with a score at least ``t``, ``t`` the largest
    threshold that keeps at least 95% of ``pos`` (ID) rows (``score >= t``): the
    ``ceil(0.95 n_pos)``-th largest ID score. None when a side is empty."""
    p = np.sort(np.asarray(pos, dtype=np.float64))[::-1]
    q = np.asarray(neg, dtype=np.float64)
    if p.size == 0 or q.size == 0:
        return None
    k = (95 * p.size + 99) // 100  # ceil(0.95 n) in integers
    t = p[k - 1]
    return int(np.count_nonzero(q >= t)) / q.size
