"""The d x d sums of the spectral metrics (``--spectra``), merged over chunks.

:class:`SpectraPass` is a mergeable statistic like :class:`~ncinspect.stats.theory.TheoryPass`:
it rides pass 2 of the engines (the class means are known then), so the spectra read the rows
in the same two passes as the metrics. Per row it adds ``e_i e_i^T`` with the residual
``e_i = h_i - mu_{y_i}`` (never ``E[h h^T] - mu mu^T``: the cancellation loses every digit at
strong collapse) and ``h_i h_i^T`` (the uncentred Gram RankMe needs), both float64 and in
units of ``geom.scale**2`` (every spectral metric is scale-free). Rows of classes below
``min_class_count`` take no part, as in pass 2.

Memory: two d x d float64 sums held and two more per chunk in flight,
:func:`spectra_bytes`; :func:`spectra_budget` says whether they fit the memory budget.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..budget import fmt_bytes, held_by_process, read_bound
from ..errors import ResourceLimitError
from .passes import Geometry

__all__ = ["SpectraPass", "merged", "spectra_bytes", "spectra_budget", "spectra_plan", "PANEL"]

#: columns of one panel of the d x d products (a fixed number: results never depend on threads)
PANEL = 512


def spectra_bytes(n_features: int) -> int:
    """Bytes the spectra hold: two d x d float64 sums, and a chunk's two partial sums."""
    d = int(n_features)
    return 4 * 8 * d * d


def spectra_budget(n_features: int, memory_limit: int | None) -> str | None:
    """None when the d x d sums fit the budget, else the reason they are not computed.

    The budget is ``memory_limit`` (``--memory-limit``, less what the process already holds
    when it covers the process) when given (the chunks then get what is left), else the
    bound of one read (:func:`ncinspect.budget.read_bound`: half the available memory, at
    most 4 GiB, at least 256 MiB).
    """
    need = spectra_bytes(n_features)
    if memory_limit is None:
        budget = read_bound(None)
    else:
        budget = max(int(memory_limit) - held_by_process(memory_limit), 0)
    if need <= budget:
        return None
    name = "--memory-limit" if memory_limit is not None else "the default memory budget"
    return (
        f"--spectra needs {fmt_bytes(need)} for its d x d sums (d = {int(n_features)}), "
        f"more than {name} of {fmt_bytes(budget)}"
        + ("" if memory_limit is not None else " (give a larger --memory-limit)")
    )


def spectra_plan(
    spectra: bool,
    prep: Any,
    memory_limit: int | None,
    chunk_rows: int | None,
    plan: Callable[[Any, int | None], int],
) -> tuple[int, str | None]:
    """``(rows, reason)`` of a run over ``prep`` (validated inputs): the rows per chunk
    (``chunk_rows``, else ``plan(prep, limit)``), the d x d sums of ``spectra`` taken out of
    ``memory_limit`` first, and why the spectra asked for are not computed (None when they
    are, or when not asked)."""
    rows = chunk_rows or plan(prep, memory_limit)
    if not spectra:
        return rows, None
    d = prep.n_features
    reason = spectra_budget(d, memory_limit)
    if reason is not None or memory_limit is None:
        return rows, reason
    need = spectra_bytes(d)
    try:
        left = int(memory_limit) - held_by_process(memory_limit) - need  # a plain limit now
        return chunk_rows or plan(prep, left), None
    except ResourceLimitError:
        return rows, (
            f"--spectra needs {fmt_bytes(need)} for its d x d sums (d = {int(d)}), "
            f"more than --memory-limit {fmt_bytes(memory_limit)} leaves beside the chunks"
        )


def merged(a: SpectraPass | None, b: SpectraPass | None) -> SpectraPass | None:
    """``a.merge(b)``, or None when ``a`` is None (the spectra were not asked for)."""
    return None if a is None else a.merge(b)


@dataclass
class SpectraPass:
    """Float64 d x d sums over the rows that take part.

    Attributes
    ----------
    scatter : (d, d) ``sum_i e_i e_i^T``, ``e_i = (h_i - mu_{y_i}) / scale``.
    gram : (d, d) ``sum_i h_i h_i^T / scale^2`` (uncentred).
    count : rows summed.
    """

    scatter: np.ndarray
    gram: np.ndarray
    count: int = 0

    @classmethod
    def empty(cls, n_features: int) -> SpectraPass:
        d = int(n_features)
        return cls(np.zeros((d, d)), np.zeros((d, d)), 0)

    @classmethod
    def of_chunk(
        cls, geom: Geometry, h: np.ndarray, y: np.ndarray, *, map: Callable = map
    ) -> SpectraPass:
        """Sums of one chunk: stored features ``h`` (n, d) (not modified), codes ``y`` (n,).

        The d x d products run in column panels of :data:`PANEL` columns (``map`` may run
        them on a thread pool; each entry is computed the same way whatever runs it).
        """
        d = h.shape[1]
        y = np.asarray(y)
        if geom.present is not None:
            keep = geom.present[y]
            if not keep.all():
                h, y = h[keep], y[keep]
        if h.shape[0] == 0:
            return cls.empty(d)
        x = np.array(h, dtype=np.float64)  # a float64 copy, scaled exactly by a power of 2
        if geom.scale != 1.0:
            x *= 1.0 / geom.scale
        means = np.where(np.isfinite(geom.means), geom.means, 0.0) / geom.scale
        e = x - np.take(means, y, axis=0)
        scatter, gram = np.empty((d, d)), np.empty((d, d))

        def panel(a: int) -> None:
            b = min(d, a + PANEL)
            np.matmul(e.T, e[:, a:b], out=scatter[:, a:b])
            np.matmul(x.T, x[:, a:b], out=gram[:, a:b])

        for _ in map(panel, range(0, d, PANEL)):
            pass
        return cls(scatter, gram, int(x.shape[0]))

    def merge(self, other: SpectraPass) -> SpectraPass:
        return SpectraPass(
            self.scatter + other.scatter, self.gram + other.gram, self.count + other.count
        )
