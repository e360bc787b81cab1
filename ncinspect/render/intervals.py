"""Bootstrap intervals as text: one form for the tables and the HTML page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["interval_text", "interval_title"]


def interval_title(res: Any) -> str:
    """Title of the interval column: the level and the number of bootstrap replicates."""
    b = res.bootstrap or {}
    return f"{round(100 * b.get('level', 0.95))}% interval (B={b.get('B')})"


def interval_text(interval: tuple[Any, Any] | None, fmt: Callable[[Any], str]) -> str:
    """``[lo, hi]`` of a bootstrap interval, each end in ``fmt``; 'n/a' when undefined and
    '' without a bootstrap."""
    if interval is None:
        return ""
    lo, hi = interval
    if lo is None or hi is None:
        return "n/a"
    return f"[{fmt(lo)}, {fmt(hi)}]"
