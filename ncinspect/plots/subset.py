"""Which classes a per-class figure shows: all, a list of rows, or the k least collapsed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..results.report import SnapshotResult
from ..text import clip

__all__ = ["Worst", "parse_classes", "pick_classes"]


@dataclass(frozen=True)
class Worst:
    """The ``k`` classes with the largest ``v_c / ||mu_c - mu_G||^2`` (least collapsed)."""

    k: int


def _digits(text: str) -> bool:
    """ASCII digits only (``str.isdigit`` also holds for ``\u00b2`` and circled digits,
    which int() refuses: ``--classes \u00b2`` showed int()'s own error)."""
    return text.isascii() and text.isdigit()


def parse_classes(spec: str) -> list[int] | Worst:
    """``"0-9,12"`` -> ``[0, ..., 9, 12]``; ``"worst:10"`` (or ``"worst10"``) -> ``Worst(10)``.

    Raises ValueError with a one-line message on anything else.
    """
    text = spec.strip().lower()
    if text.startswith("worst"):
        k = text[5:].lstrip(":= ")
        if not _digits(k) or int(k) < 2:
            raise ValueError(
                f"{clip(repr(spec))}: expected worst:K with K >= 2 (a subset of two or more)"
            )
        return Worst(int(k))
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        lo, sep, hi = part.partition("-")
        if not _digits(lo) or (sep and not _digits(hi)):
            raise ValueError(
                f"{clip(repr(spec))}: expected class rows like 0-9,12 or worst:K, "
                f"got {clip(repr(part))}"
            )
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"{clip(repr(spec))}: range {clip(repr(part))} runs backwards")
        if b - a > 1_000_000:
            raise ValueError(f"{clip(repr(spec))}: range {clip(repr(part))} is too long")
        out.extend(range(a, b + 1))
    if not out:
        raise ValueError(f"{clip(repr(spec))}: no class given")
    return list(dict.fromkeys(out))


def _spread(result: SnapshotResult) -> np.ndarray:
    """``v_c / ||mu_c - mu_G||^2`` per class (NaN for classes without samples)."""
    means = np.asarray(result.arrays.means, dtype=np.float64)
    centred = means - np.asarray(result.arrays.global_mean, dtype=np.float64)
    dist = np.einsum("ij,ij->i", centred, centred)
    var = result.arrays.class_var
    var = np.asarray(np.full(len(means), np.nan) if var is None else var, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dist > 0, var / dist, np.inf)


def pick_classes(
    result: SnapshotResult, classes: Sequence[int] | Worst | str | None
) -> np.ndarray | None:
    """The row indices a per-class figure shows, in increasing order (None: every class).

    ``classes`` is a list of rows, a :class:`Worst`, or a string for :func:`parse_classes`.
    Rows outside the snapshot's classes raise ValueError naming them.
    """
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = parse_classes(classes)
    n = len(np.asarray(result.arrays.means))
    if isinstance(classes, Worst):
        spread = _spread(result)
        order = np.argsort(-np.nan_to_num(spread, nan=-np.inf), kind="stable")
        present = [int(c) for c in order if np.isfinite(spread[c]) or spread[c] == np.inf]
        rows = sorted(present[: classes.k])
    else:
        rows = sorted(dict.fromkeys(int(c) for c in classes))
        bad = [c for c in rows if not 0 <= c < n]
        if bad:
            raise ValueError(f"class row(s) {bad[:5]} outside 0..{n - 1}")
    if len(rows) < 2:
        raise ValueError("a class subset needs at least two classes")
    return np.asarray(rows, dtype=np.intp)
