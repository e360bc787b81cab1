"""Check rules: :class:`Rule`, their parsing from the command line and from a TOML table.

A :class:`Rule` bounds one metric. Four families exist:

- thresholds: ``max`` (value <= bound) and ``min`` (value >= bound) on any metric of the
  registry (:mod:`ncinspect.metrics.registry`);
- per-class worst case: the same on ``per_class.<key>`` (a key of
  :data:`~ncinspect.metrics.PER_CLASS_KEYS`): ``min per_class.ncc_agreement >= 0.95`` holds
  when the *lowest* class value is >= 0.95, ``max per_class.var <= 0.1`` when the *highest*
  class value is <= 0.1;
- trends over a trajectory (the snapshots of one split and layer ordered by epoch):
  ``decreasing`` / ``increasing`` compare the last epoch with the first (strictly);
  ``non_increasing`` / ``non_decreasing`` compare each consecutive pair over the last ``last``
  snapshots (all by default), allowing a step of ``atol + rtol * |previous|`` the wrong way.

Command-line rules add to the file's or replace the file's rule of the same kind and
metric (:func:`merge_rules`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError
from ..metrics import METRIC_KEYS, PER_CLASS_KEYS
from ..metrics.registry import LAW_REGISTRY, OOD_REGISTRY, REGRESSION_REGISTRY, SPECTRA_REGISTRY
from ..text import clip

__all__ = [
    "THRESHOLD_KINDS",
    "TREND_KINDS",
    "TREND_OPTIONS",
    "PER_CLASS_PREFIX",
    "Rule",
    "CheckConfig",
    "parse_threshold",
    "parse_trend",
    "rules_from_table",
    "merge_rules",
    "command_line_rules",
    "is_extra_metric",
    "num_text",
]

THRESHOLD_KINDS = ("max", "min")
TREND_KINDS = ("decreasing", "increasing", "non_increasing", "non_decreasing")
PER_CLASS_PREFIX = "per_class."
#: Options each trend kind accepts (CLI ``METRIC:opt=value,...``; TOML ``METRIC = {opt = value}``).
TREND_OPTIONS = {
    "decreasing": (),
    "increasing": (),
    "non_increasing": ("last", "rtol", "atol"),
    "non_decreasing": ("last", "rtol", "atol"),
}


@dataclass(frozen=True)
class Rule:
    """One condition on one metric.

    Parameters
    ----------
    kind : str
        One of :data:`THRESHOLD_KINDS` or :data:`TREND_KINDS`.
    metric : str
        A key of ``METRIC_KEYS``, or ``per_class.<key>`` for threshold rules.
    bound : float, optional
        The threshold of a ``max``/``min`` rule.
    last : int, optional
        Trend rules ``non_*``: consider only the last ``last`` snapshots (all when None).
    rtol, atol : float
        Trend rules ``non_*``: a step may go the wrong way by ``atol + rtol * |previous|``.
    """

    kind: str
    metric: str
    bound: float | None = None
    last: int | None = None
    rtol: float = 0.0
    atol: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        """Identity for merging: a command-line rule replaces a file rule with the same key."""
        return self.kind, self.metric

    @property
    def is_trend(self) -> bool:
        return self.kind in TREND_KINDS

    @property
    def per_class_key(self) -> str | None:
        """``ncc_agreement`` for ``per_class.ncc_agreement``; None for an aggregate metric."""
        if self.metric.startswith(PER_CLASS_PREFIX):
            return self.metric[len(PER_CLASS_PREFIX) :]
        return None

    @property
    def bound_text(self) -> str | None:
        """The bound of a threshold rule as written in :attr:`text` (``0.0001``, ``1e-05``)."""
        return None if self.bound is None else num_text(self.bound)

    @property
    def text(self) -> str:
        """Human form, e.g. ``nc1 <= 0.1`` or ``min per_class.ncc_agreement >= 0.95``."""
        if self.kind in THRESHOLD_KINDS:
            op = "<=" if self.kind == "max" else ">="
            worst = f"{self.kind} " if self.per_class_key else ""
            return f"{worst}{self.metric} {op} {self.bound_text}"
        if self.kind in ("decreasing", "increasing"):
            op = "<" if self.kind == "decreasing" else ">"
            return f"{self.metric} {self.kind} (last {op} first)"
        span = f"last {self.last}" if self.last else "all snapshots"
        tol = "".join(
            f", {name} {num_text(getattr(self, name))}"
            for name in ("rtol", "atol")
            if getattr(self, name)
        )
        return f"{self.metric} {self.kind.replace('_', '-')} ({span}{tol})"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "metric": self.metric, "text": self.text}
        if self.is_trend:
            out.update(last=self.last, rtol=self.rtol, atol=self.atol)
        else:
            out["bound"] = self.bound
        return out


def num_text(x: float) -> str:
    """A bound as written: ``0.1``, ``1e-05``, ``1`` (not ``1.0``)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _extra_metric_keys() -> list[str]:
    """Keys outside METRIC_KEYS a rule may use: nc5 and the OOD scores (OOD sets), the
    spectra (``--spectra``), nrc1-3 (regression) and the layer-wise law (one value per epoch
    and split)."""
    keys = (*OOD_REGISTRY, *SPECTRA_REGISTRY, *REGRESSION_REGISTRY, *LAW_REGISTRY)
    return [m.key for m in keys]


def is_extra_metric(name: str) -> bool:
    """A key of another snapshot kind or option: nrc1-3, the spectra, nc5 and the OOD keys,
    and their per-set ``<key>_<name>`` forms."""
    return name in _extra_metric_keys() or any(name.startswith(m.key + "_") for m in OOD_REGISTRY)


def _valid_metric_names() -> list[str]:
    return [*METRIC_KEYS, *_extra_metric_keys(), *(PER_CLASS_PREFIX + k for k in PER_CLASS_KEYS)]


def _check_metric(name: str, where: str, *, trend: bool) -> str:
    """``name`` if it is a metric a rule can use; else a UsageError that lists the valid ones."""
    name = name.strip()
    if name in METRIC_KEYS or is_extra_metric(name):
        return name
    if name.startswith(PER_CLASS_PREFIX) and name[len(PER_CLASS_PREFIX) :] in PER_CLASS_KEYS:
        if trend:
            raise UsageError(
                f"{where}: trend rules take an aggregate metric, not {clip(repr(name))} "
                "(use a min/max per-class rule on each snapshot instead)"
            )
        return name
    valid = [*METRIC_KEYS, *_extra_metric_keys()] if trend else _valid_metric_names()
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {clip(repr(close[0]))}?)" if close else ""
    per_class = "" if trend else (f"; per-class worst case: per_class.<{'|'.join(PER_CLASS_KEYS)}>")
    valid = ", ".join([*METRIC_KEYS, *_extra_metric_keys()])
    raise UsageError(
        f"{where}: unknown metric {clip(repr(name))}{hint}; valid metrics: {valid}{per_class}"
    )


def _number(text: Any, where: str, what: str) -> float:
    if isinstance(text, bool):  # TOML's true/false are no bounds (true is not 1)
        raise UsageError(f"{where}: {what} must be a number, got {str(text).lower()}")
    try:
        value = float(text)
    except OverflowError:
        raise UsageError(f"{where}: {what} must be finite, got {_short(text)}") from None
    except (TypeError, ValueError):
        raise UsageError(f"{where}: {what} must be a number, got {_short(text)}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"{where}: {what} must be finite, got {_short(text)}")
    return value


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a message stays one short line)."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print
        return "a number too long to print"
    return text if len(text) <= limit else f"{text[: limit - 15]}... ({len(text)} chars)"


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text)} chars)"


def _threshold(kind: str, metric: str, bound: Any, where: str) -> Rule:
    if kind not in THRESHOLD_KINDS:
        raise UsageError(f"{where}: unknown threshold kind {clip(repr(kind))}; expected max or min")
    metric = _check_metric(metric, where, trend=False)
    return Rule(kind, metric, bound=_number(bound, where, f"the bound of {metric}"))


def _trend(kind: str, metric: str, options: Mapping[str, Any], where: str) -> Rule:
    if kind not in TREND_KINDS:
        raise UsageError(
            f"{where}: unknown trend kind {clip(repr(kind))}; expected one of {TREND_KINDS}"
        )
    metric = _check_metric(metric, where, trend=True)
    allowed = TREND_OPTIONS[kind]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        ok = ", ".join(allowed) if allowed else "none"
        raise UsageError(f"{where}: {kind} takes no option {', '.join(unknown)} (options: {ok})")
    last = options.get("last")
    if last is not None:
        value = _number(last, where, "last")
        if value != int(value) or value < 2:
            raise UsageError(f"{where}: last must be an integer >= 2, got {clip(repr(last))}")
        last = int(value)
    tols = {name: _number(options.get(name, 0), where, name) for name in ("rtol", "atol")}
    if min(tols.values()) < 0:
        raise UsageError(f"{where}: rtol and atol must be >= 0, got {tols}")
    return Rule(kind, metric, last=last, **tols)


def parse_threshold(kind: str, spec: str) -> Rule:
    """A ``max``/``min`` rule from the command-line form ``METRIC=VALUE``.

    Examples
    --------
    >>> parse_threshold("max", "nc1=0.1").text
    'nc1 <= 0.1'
    """
    where = f"--{kind} {_clip(spec)}"
    metric, sep, value = spec.partition("=")
    if not sep or not metric.strip() or not value.strip():
        raise UsageError(f"{where}: expected METRIC=VALUE, e.g. --{kind} nc1=0.1")
    return _threshold(kind, metric, value.strip(), where)


def parse_trend(kind: str, spec: str) -> Rule:
    """A trend rule from the command-line form ``METRIC`` or ``METRIC:opt=value,...``.

    Examples
    --------
    >>> parse_trend("non_increasing", "nc1:last=5,rtol=0.05").text
    'nc1 non-increasing (last 5, rtol 0.05)'
    """
    where = f"--{kind.replace('_', '-')} {_clip(spec)}"
    metric, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(
                f"{where}: expected METRIC[:option=value,...], got option {clip(repr(item))}"
            )
        key = name.strip()
        if key in options and options[key] != value.strip():
            raise UsageError(
                f"{where}: option {clip(key)} given twice ({clip(options[key])} and "
                f"{clip(value.strip())}); give it once"
            )
        options[key] = value.strip()
    return _trend(kind, metric, options, where)


@dataclass
class CheckConfig:
    """Rules and snapshot/layer selections read from a configuration file (``path``), if any."""

    rules: list[Rule] = field(default_factory=list)
    snapshot: str | None = None
    layer: str | None = None
    path: str | None = None


def _flatten(table: Mapping[str, Any], where: str, prefix: str = "") -> dict[str, Any]:
    """``{"per_class": {"var": 1}}`` (TOML's unquoted dotted key) -> ``{"per_class.var": 1}``;
    a key that both spellings give (``"per_class.var"`` quoted beside ``per_class.var``) is
    refused, naming it, rather than one bound silently replacing the other."""
    out: dict[str, Any] = {}
    for name, value in table.items():
        items = (
            _flatten(value, where, f"{prefix}{name}.")
            if isinstance(value, Mapping)
            else {f"{prefix}{name}": value}
        )
        for key, item in items.items():
            if key in out:
                raise UsageError(
                    f"{where}: {clip(key)} is given twice (as a dotted key and as a quoted "
                    f"one: {clip(repr(out[key]))} and {clip(repr(item))}); give it once"
                )
            out[key] = item
    return out


#: Entries one kind of a check table may hold: there are a few hundred distinct rules of a
#: kind; 2.5 million copies of one (a 15 MB file) took 21 s and 1.1 GB to read.
MAX_TABLE_ENTRIES = 10_000


def _bounded(entries: Any, where: str) -> Any:
    if hasattr(entries, "__len__") and len(entries) > MAX_TABLE_ENTRIES:
        raise UsageError(
            f"{where}: {len(entries)} entries; at most {MAX_TABLE_ENTRIES} (each metric once)"
        )
    return entries


def rules_from_table(table: Mapping[str, Any], where: str) -> CheckConfig:
    """Rules and the ``snapshot`` / ``layer`` selections (None when unset) of a check table.

    Parameters
    ----------
    table : mapping
        ``{"snapshot": "last", "layer": "penultimate", "max": {"nc1": 0.1},
        "min": {"per_class.ncc_agreement": 0.95}, "decreasing": ["nc1"],
        "non_increasing": {"nc1": {"last": 5, "rtol": 0.05}}}``.
    where : str
        Where the table comes from, for error messages.
    """
    known = ("snapshot", "layer", *THRESHOLD_KINDS, *TREND_KINDS)
    unknown = sorted(set(table) - set(known))
    if unknown:
        raise UsageError(
            f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(known)}"
        )
    selections = {}
    for name in ("snapshot", "layer"):
        value = table.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise UsageError(f"{where}: {name} must be a non-empty string, got {clip(repr(value))}")
        selections[name] = value
    rules: list[Rule] = []
    for kind in THRESHOLD_KINDS:
        bounds = _bounded(table.get(kind, {}), f"{where} [{kind}]")
        if not isinstance(bounds, Mapping):
            raise UsageError(
                f"{where}: {kind} must be a table of metric = bound, got {clip(repr(bounds))}"
            )
        rules += [
            _threshold(kind, m, b, f"{where} [{kind}]")
            for m, b in _flatten(bounds, f"{where} [{kind}]").items()
        ]
    for kind in TREND_KINDS:
        here = f"{where} [{kind}]"
        spec = _bounded(table.get(kind, []), here)
        if isinstance(spec, str):
            spec = [spec]
        if isinstance(spec, Mapping):
            items = [(m, o if isinstance(o, Mapping) else None) for m, o in spec.items()]
        elif isinstance(spec, list) and all(isinstance(m, str) for m in spec):
            items = [(m, {}) for m in spec]
        else:
            items = [(None, None)]
        for metric, options in items:
            if options is None:
                raise UsageError(
                    f"{here}: expected a list of metrics or a table of "
                    f"metric = {{{', '.join(TREND_OPTIONS[kind])}}}, got {clip(repr(spec))}"
                )
            rules.append(_trend(kind, metric, options, here))
    return CheckConfig(rules=_distinct(rules, where), **selections)


def merge_rules(base: Iterable[Rule], override: Iterable[Rule]) -> list[Rule]:
    """``base`` plus ``override``, whose rules replace those of the same kind and metric.

    Order: the base rules in their order (replaced in place), then the new ones.
    """
    merged = {r.key: r for r in base}
    merged.update({r.key: r for r in override})
    return list(merged.values())


def command_line_rules(
    max_specs: Iterable[str] = (),
    min_specs: Iterable[str] = (),
    trends: Mapping[str, Iterable[str]] | None = None,
) -> list[Rule]:
    """The rules of ``--max METRIC=VALUE``, ``--min ...`` and the trend options (kind ->
    specs, e.g. ``{"non_increasing": ["nc1:last=5"]}``), in that order."""
    rules = [parse_threshold("max", s) for s in max_specs]
    rules += [parse_threshold("min", s) for s in min_specs]
    trends = trends or {}
    rules += [parse_trend(kind, s) for kind in TREND_KINDS for s in trends.get(kind, ())]
    return _distinct(rules, "the command line")


def _distinct(rules: list[Rule], where: str) -> list[Rule]:
    """``rules`` without repeats; two different rules of one kind and metric from one source
    (``--max nc1=0.1 --max ' nc1=5'``, or TOML's ``max.per_class.x`` beside
    ``max."per_class.x"``) are refused, naming both: which one holds would be a silent pick
    (a command-line rule replacing a file's rule is :func:`merge_rules`, on purpose)."""
    seen: dict[tuple[str, str], Rule] = {}
    for rule in rules:
        other = seen.setdefault(rule.key, rule)
        if other != rule:
            raise UsageError(
                f"{where}: two {rule.kind} rules for {clip(rule.metric)} ({clip(other.text)} "
                f"and {clip(rule.text)}); give one"
            )
    return list(seen.values())
