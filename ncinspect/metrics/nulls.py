"""Metric values together with why each undefined one is undefined (plain Python + numpy).

A kernel that cannot determine a number returns None and its caller records a reason
(key -> why) in :class:`MetricValues`; the warning lines of a report are *rendered* from
those reasons by :func:`null_warnings`, so nobody ever has to parse them back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "MetricValues",
    "null_warnings",
    "null_message",
    "NOT_APPLICABLE",
    "MINORITY_NONE",
    "applicable_warnings",
]

#: minority_collapse's reason when the data has no minority classes (the JSON text kept)
MINORITY_NONE = "fewer than two classes with n_c below half the largest, or a zero classifier row"
#: (key, reason) pairs that say a metric does not apply to the data, not that something is
#: wrong: kept in JSON (``null_reasons``, ``warnings``), printed only with ``--verbose``
NOT_APPLICABLE: frozenset[tuple[str, str]] = frozenset({("minority_collapse", MINORITY_NONE)})


def _groups(reasons: Mapping[str, str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key, why in reasons.items():
        groups.setdefault(why, []).append(key)
    return groups


def null_warnings(reasons: Mapping[str, str]) -> list[str]:
    """One line ``k1, k2: null (why)`` per distinct reason, in the order the keys were set."""
    return [f"{', '.join(keys)}: null ({why})" for why, keys in _groups(reasons).items()]


def applicable_warnings(warnings: list[str], reasons: Mapping[str, str]) -> list[str]:
    """``warnings`` without the lines of :data:`NOT_APPLICABLE` nulls (a metric that does not
    apply to the data, e.g. ``minority_collapse`` on balanced classes, is not a warning)."""
    hidden = {
        f"{', '.join(keys)}: null ({why})"
        for why, keys in _groups(reasons).items()
        if all((k, why) in NOT_APPLICABLE for k in keys)
    }
    return [w for w in warnings if w not in hidden]


def null_message(reasons: Mapping[str, str], key: str) -> str:
    """``key: null (why)`` for one key (``no reason recorded`` when none was)."""
    return f"{key}: null ({reasons.get(key, 'no reason recorded')})"


@dataclass
class MetricValues:
    """Values by key (None where undefined), the reason of every None, and notes.

    ``per_class`` holds the per-class rows when they were asked for.
    """

    values: dict[str, object]
    null_reasons: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    per_class: list[dict[str, object]] | None = None

    @classmethod
    def of_keys(cls, keys: Iterable[str]) -> MetricValues:
        """Every key of ``keys`` unset (None, no reason yet)."""
        return cls(dict.fromkeys(keys))

    def set(self, key: str, value: object, reason: str | None = None) -> None:
        """Record ``value`` for ``key``; a None (or non-finite float) records ``reason``."""
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            self.values[key] = None
            self.null_reasons[key] = reason or ("undefined" if value is None else "not finite")
        else:
            self.values[key] = value
            self.null_reasons.pop(key, None)

    def set_items(self, items: Mapping[str, tuple[object, str | None]]) -> None:
        """:meth:`set` of every ``key -> (value, reason when None)`` of ``items``."""
        for key, (value, reason) in items.items():
            self.set(key, value, reason)

    def set_all(self, keys: Iterable[str], value: object, reason: str | None) -> None:
        for key in keys:
            self.set(key, value, reason)

    @property
    def warnings(self) -> list[str]:
        """The notes, then one line per reason a value is null."""
        return [*self.notes, *null_warnings(self.null_reasons)]
