"""Directional pair tables: per class c and every class c', the pass-2 sum over the rows of c
of ``(e_i . (m_c - m_c'))^2`` (the sums behind ``nc1_cdnv_directional``).

With ``e_i = h_i - mu_c`` the within-class residuals and ``m = mu - mu_G`` the centred means,
spec/metrics.md names two C x C tables, ``T1[c, c'] = sum (e_i . m_c')^2`` and
``T2[c, c'] = sum (e_i . m_c)(e_i . m_c')``; the directional variance of class c along the
axis of the pair (c, c') needs exactly ``T1[c, c] - 2 T2[c, c'] + T1[c, c']``, which equals
``sum (e_i . m_c - e_i . m_c')^2``. ncinspect accumulates that combination directly (one
table, no cancellation when two centred means are long and close), from the products
``e_i . m_c'`` that pass 2 forms anyway for the NCC scores. Rows are grouped by class with
a stable sort and :func:`numpy.add.reduceat` (no C x rows indicator), in float64; a block
holds only the rows of its classes, added in place into one running C x C table.
"""

from __future__ import annotations

import numpy as np

from ..budget import DEFAULT_MEMORY, fmt_bytes

__all__ = ["AUTO", "pair_table_bytes", "pair_tables_reason", "block_pairs", "add_pairs"]
__all__ += ["merge_pairs"]

AUTO = "auto"  #: Geometry.pair_reason before the budget was consulted


def pair_table_bytes(n_classes: int) -> int:
    """Bytes counted for the directional tables: two C x C float64 (the running table and
    one partial being merged into it)."""
    return 16 * int(n_classes) * int(n_classes)


def pair_tables_reason(n_classes: int, memory_limit: int | None = None) -> str | None:
    """None when the tables fit the memory budget, else why ``nc1_cdnv_directional`` is null.

    They may take the fixed default budget (256 MiB: C <= 4096), or half of
    ``memory_limit`` when one is given; fixed, so results never depend on the machine.
    """
    need = pair_table_bytes(n_classes)
    budget = DEFAULT_MEMORY if memory_limit is None else int(memory_limit) // 2
    if need <= budget:
        return None
    where = "the default budget" if memory_limit is None else "half of --memory-limit"
    return (
        f"its C x C tables (C = {n_classes}) need {fmt_bytes(need)}, more than {where} "
        f"({fmt_bytes(budget)}); give a larger --memory-limit"
    )


def block_pairs(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, sums)`` of one block: the distinct classes of ``y`` (increasing) and, for
    each, the (C,) sums over its rows of ``(s[i, y_i] - s[i, c'])^2``.

    ``scores`` (m, C) float64 holds ``e_i . m_c'`` (any common units); ``y`` (m,) the codes.
    """
    m = scores.shape[0]
    order = y.argsort(kind="stable")
    # the rows grouped by class first (one copy, then written in place): the same
    # differences as taken before the sort
    ys, diff = y[order], scores[order]
    own = diff[np.arange(m), ys]
    np.subtract(own[:, None], diff, out=diff)
    np.square(diff, out=diff)
    first = np.empty(m, dtype=bool)  # the first row of each class
    first[:1] = True
    np.not_equal(ys[1:], ys[:-1], out=first[1:])
    starts = first.nonzero()[0]
    return ys[starts], np.add.reduceat(diff, starts, axis=0)


def add_pairs(acc: np.ndarray | None, part, n_classes: int) -> np.ndarray:
    """``acc`` (C, C) with a block's ``(classes, sums)`` added in place (allocated on first use)."""
    if acc is None:
        acc = np.zeros((n_classes, n_classes))
    classes, sums = part
    acc[classes] += sums
    return acc


def merge_pairs(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """The sum of two tables (None counts as zeros): a new array, or the one given when the
    other is None (no C x C copy per block; only :func:`add_pairs` writes in place, into the
    running table of one chunk)."""
    if a is None:
        return b
    return a if b is None else a + b
