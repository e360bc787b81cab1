"""Rules for ``ncinspect check``: a CI gate on the metrics of dumped checkpoints.

A :class:`Rule` bounds one metric. Four families exist:

- thresholds: ``max`` (value <= bound) and ``min`` (value >= bound) on any key of
  :data:`~ncinspect.metrics.METRIC_KEYS`;
- per-class worst case: the same on ``per_class.<key>`` (a key of
  :data:`~ncinspect.metrics.PER_CLASS_KEYS`): ``min per_class.ncc_agreement >= 0.95`` holds
  when the *lowest* class value is >= 0.95, ``max per_class.var <= 0.1`` when the *highest*
  class value is <= 0.1;
- trends over a trajectory (the snapshots of one split and layer ordered by epoch):
  ``decreasing`` / ``increasing`` compare the last epoch with the first (strictly);
  ``non_increasing`` / ``non_decreasing`` compare each consecutive pair over the last ``last``
  snapshots (all by default), allowing a step of ``atol + rtol * |previous|`` the wrong way.

By default the rules apply to the classifier's layer only (the penultimate features, the
snapshots whose ``layer`` is None): hidden-layer snapshots (``layer_k``) have no classifier,
so NC3, NC4, SQI and the classifier's accuracy are undefined there. ``layer="all"`` or a layer
name gates hidden layers on purpose.

A rule on a value that is undefined (``None``, e.g. NC3 without weights) fails with the
snapshot's reason; it never passes silently.

Rules come from a TOML table (``[check]`` in ``ncinspect.toml`` or ``[tool.ncinspect.check]``
in ``pyproject.toml``, found from the current directory upwards) and from the command line,
whose rules add to the file's or replace the file's rule of the same kind and metric.
This module holds the logic only; :mod:`ncinspect.render.check` formats the results.
"""

from __future__ import annotations

import difflib
import glob
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, UsageError
from .metrics import METRIC_KEYS, PER_CLASS_KEYS
from .metrics.nulls import null_message
from .report import jsonable
from .trajectory import group_trajectories

__all__ = [
    "THRESHOLD_KINDS",
    "TREND_KINDS",
    "CONFIG_FILES",
    "LAYER_CHOICES",
    "Rule",
    "CheckConfig",
    "Outcome",
    "CheckResult",
    "parse_threshold",
    "parse_trend",
    "rules_from_table",
    "find_config",
    "load_config",
    "merge_rules",
    "select_last",
    "select_layer",
    "trajectories",
    "evaluate",
    "run_check",
]

THRESHOLD_KINDS = ("max", "min")
TREND_KINDS = ("decreasing", "increasing", "non_increasing", "non_decreasing")
PER_CLASS_PREFIX = "per_class."
#: Layer selections besides a layer name: every layer, or the classifier's (``layer`` None).
LAYER_CHOICES = ("penultimate", "all")
#: Options each trend kind accepts (CLI ``METRIC:opt=value,...``; TOML ``METRIC = {opt = value}``).
TREND_OPTIONS = {
    "decreasing": (),
    "increasing": (),
    "non_increasing": ("last", "rtol", "atol"),
    "non_decreasing": ("last", "rtol", "atol"),
}
#: (file name, keys leading to the check table), searched in this order in each folder.
CONFIG_FILES = (("ncinspect.toml", ("check",)), ("pyproject.toml", ("tool", "ncinspect", "check")))
#: The aggregate metric whose null reason explains an undefined per-class value.
_PER_CLASS_REASON = {
    "var": "nc1",
    "mean_norm": "nc1",
    "weight_norm": "nc2_equinorm_weights",
    "duality_cos": "nc3_duality_cos",
    "ncc_agreement": "nc4_ncc_mismatch",
    "accuracy_classifier": "accuracy_classifier",
}


# --------------------------------------------------------------------------------------
# rules
# --------------------------------------------------------------------------------------
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
        return None if self.bound is None else _num(self.bound)

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
            f", {name} {_num(getattr(self, name))}"
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


def _num(x: float) -> str:
    """A bound as written: ``0.1``, ``1e-05``, ``1`` (not ``1.0``)."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))


def _extra_metric_keys() -> list[str]:
    """Keys outside METRIC_KEYS a rule may use: nrc1-3 (regression) and nc5 (OOD sets)."""
    from .metrics.ood import NC5_KEY
    from .metrics.regression import REGRESSION_KEYS

    return [NC5_KEY, *REGRESSION_KEYS]


def _is_extra_metric(name: str) -> bool:
    from .metrics.ood import NC5_KEY

    return name in _extra_metric_keys() or name.startswith(NC5_KEY + "_")


def _reports(res, metric: str) -> bool:
    """Does ``res`` report ``metric`` at all (nrc1 is not a metric of a classification
    snapshot, nc1 not one of a regression snapshot, an OOD snapshot has none)?"""
    keys = getattr(res, "metric_keys", None)
    if keys is None:
        return True
    if metric.startswith(PER_CLASS_PREFIX):
        return getattr(res, "task", "classification") == "classification"
    return metric in keys() or (_is_extra_metric(metric) and res.task == "classification")


def _valid_metric_names() -> list[str]:
    return [*METRIC_KEYS, *_extra_metric_keys(), *(PER_CLASS_PREFIX + k for k in PER_CLASS_KEYS)]


def _check_metric(name: str, where: str, *, trend: bool) -> str:
    """``name`` if it is a metric a rule can use; else a UsageError that lists the valid ones."""
    name = name.strip()
    if name in METRIC_KEYS or _is_extra_metric(name):
        return name
    if name.startswith(PER_CLASS_PREFIX) and name[len(PER_CLASS_PREFIX) :] in PER_CLASS_KEYS:
        if trend:
            raise UsageError(
                f"{where}: trend rules take an aggregate metric, not {name!r} "
                "(use a min/max per-class rule on each snapshot instead)"
            )
        return name
    valid = [*METRIC_KEYS, *_extra_metric_keys()] if trend else _valid_metric_names()
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    per_class = "" if trend else (f"; per-class worst case: per_class.<{'|'.join(PER_CLASS_KEYS)}>")
    valid = ", ".join([*METRIC_KEYS, *_extra_metric_keys()])
    raise UsageError(f"{where}: unknown metric {name!r}{hint}; valid metrics: {valid}{per_class}")


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
        raise UsageError(f"{where}: unknown threshold kind {kind!r}; expected max or min")
    metric = _check_metric(metric, where, trend=False)
    return Rule(kind, metric, bound=_number(bound, where, f"the bound of {metric}"))


def _trend(kind: str, metric: str, options: Mapping[str, Any], where: str) -> Rule:
    if kind not in TREND_KINDS:
        raise UsageError(f"{where}: unknown trend kind {kind!r}; expected one of {TREND_KINDS}")
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
            raise UsageError(f"{where}: last must be an integer >= 2, got {last!r}")
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
            raise UsageError(f"{where}: expected METRIC[:option=value,...], got option {item!r}")
        options[name.strip()] = value.strip()
    return _trend(kind, metric, options, where)


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"per_class": {"var": 1}}`` (TOML's unquoted dotted key) -> ``{"per_class.var": 1}``."""
    out: dict[str, Any] = {}
    for name, value in table.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{name}."))
        else:
            out[f"{prefix}{name}"] = value
    return out


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
            raise UsageError(f"{where}: {name} must be a non-empty string, got {value!r}")
        selections[name] = value
    rules: list[Rule] = []
    for kind in THRESHOLD_KINDS:
        bounds = table.get(kind, {})
        if not isinstance(bounds, Mapping):
            raise UsageError(f"{where}: {kind} must be a table of metric = bound, got {bounds!r}")
        rules += [_threshold(kind, m, b, f"{where} [{kind}]") for m, b in _flatten(bounds).items()]
    for kind in TREND_KINDS:
        spec = table.get(kind, [])
        here = f"{where} [{kind}]"
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
                    f"metric = {{{', '.join(TREND_OPTIONS[kind])}}}, got {spec!r}"
                )
            rules.append(_trend(kind, metric, options, here))
    return CheckConfig(rules=rules, **selections)


def merge_rules(base: Iterable[Rule], override: Iterable[Rule]) -> list[Rule]:
    """``base`` plus ``override``, whose rules replace those of the same kind and metric.

    Order: the base rules in their order (replaced in place), then the new ones.
    """
    merged = {r.key: r for r in base}
    merged.update({r.key: r for r in override})
    return list(merged.values())


# --------------------------------------------------------------------------------------
# configuration files
# --------------------------------------------------------------------------------------
@dataclass
class CheckConfig:
    """Rules and snapshot/layer selections read from a configuration file (``path``), if any."""

    rules: list[Rule] = field(default_factory=list)
    snapshot: str | None = None
    layer: str | None = None
    path: str | None = None


#: A configuration file larger than this is refused (rules fit in a few kB).
MAX_CONFIG_BYTES = 16 * 2**20


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse the TOML file ``path``; anything that stops it is one line, exit code 3.

    The file type is checked before reading: a FIFO, device or socket is refused (reading
    one could block forever), as is a file over :data:`MAX_CONFIG_BYTES`.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        import tomli as tomllib
    raw = _read_config_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a UTF-8 text file (byte {exc.start}); TOML files are UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: invalid TOML ({first})") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML (arrays or tables nested too deeply)") from None
    except (ValueError, OverflowError):  # an integer over Python's digit limit
        raise ConfigError(f"{path}: invalid TOML (a number with too many digits)") from None


def _read_config_bytes(path: Path) -> bytes:
    import stat

    try:
        st = os.stat(path)
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{path}: cannot read the configuration ({why})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path}: is a directory, expected a TOML file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(
            f"{path}: not a regular file (a FIFO, device or socket); expected a TOML file"
        )
    if st.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {st.st_size} bytes, more than a configuration file may have "
            f"({MAX_CONFIG_BYTES // 2**20} MiB)"
        )
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: a file swapped for a FIFO cannot block
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ConfigError(f"{path}: not a regular file; expected a TOML file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: more than {MAX_CONFIG_BYTES // 2**20} MiB")
    return raw


def _unrelated(path: Path) -> bool:
    """A pyproject.toml that does not mention ncinspect (its errors are not ours to report)."""
    try:
        return path.name == "pyproject.toml" and b"ncinspect" not in _read_config_bytes(path)
    except ConfigError:
        return True


def _section(data: Mapping[str, Any], keys: Sequence[str]) -> Mapping[str, Any] | None:
    for k in keys:
        if not isinstance(data, Mapping) or k not in data:
            return None
        data = data[k]
    return data


def find_config(start: str | os.PathLike | None = None) -> Path | None:
    """The first configuration file with a check section, from ``start`` (cwd) upwards.

    In each folder ``ncinspect.toml`` (section ``[check]``) is looked at before
    ``pyproject.toml`` (section ``[tool.ncinspect.check]``); a file without the section is
    skipped, as pytest and ruff do.
    """
    folder = Path(start or os.getcwd()).resolve()
    for here in (folder, *folder.parents):
        for name, keys in CONFIG_FILES:
            path = here / name
            if not path.is_file():
                continue
            try:
                data = _read_toml(path)
            except ConfigError:
                if _unrelated(path):  # another tool's broken file: not a reason to fail
                    continue
                raise
            if _section(data, keys) is not None:
                return path
    return None


def load_config(path: str | os.PathLike) -> CheckConfig:
    """Read the check section of ``path`` (``ncinspect.toml`` layout unless it is a pyproject)."""
    path = Path(path)
    keys = dict(CONFIG_FILES).get(path.name, CONFIG_FILES[0][1])
    section = _section(_read_toml(path), keys)
    label = "[" + ".".join(keys) + "]"
    if section is None:
        raise UsageError(f"{path}: no {label} section")
    if not isinstance(section, Mapping):
        raise UsageError(f"{path}: {label} must be a table")
    config = rules_from_table(section, f"{path} {label}")
    config.path = os.fspath(path)
    return config


# --------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """The verdict of one rule on one snapshot (or, for trend rules, one trajectory)."""

    rule: Rule
    target: str
    passed: bool
    value: Any
    message: str
    bound: Any = None
    epoch: int | None = None
    split: str | None = None
    layer: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.to_dict(),
            "target": self.target,
            "passed": self.passed,
            "value": self.value,
            "bound": self.bound,
            "message": self.message,
            "epoch": self.epoch,
            "split": self.split,
            "layer": self.layer,
        }


@dataclass
class CheckResult:
    """Every outcome of a check run, with what was checked."""

    file: str | None
    outcomes: list[Outcome]
    rules: list[Rule]
    snapshot: str = "last"
    config: str | None = None
    layer: str = "penultimate"

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    def to_dict(self) -> dict[str, Any]:
        n_failed = len(self.failures)
        return jsonable(
            {
                "schema_version": 1,
                "file": self.file,
                "config": self.config,
                "snapshot": self.snapshot,
                "layer": self.layer,
                "passed": self.passed,
                "summary": {
                    "rules": len(self.rules),
                    "checks": len(self.outcomes),
                    "passed": len(self.outcomes) - n_failed,
                    "failed": n_failed,
                },
                "results": [o.to_dict() for o in self.outcomes],
            }
        )


def trajectories(items: Iterable[Any]) -> list[list[Any]]:
    """Items (snapshots or results) grouped by (split, layer), each group ordered by epoch.

    The grouping of :func:`ncinspect.trajectory.group_trajectories` (which only reads
    ``split``, ``layer`` and ``epoch``, so dump snapshots work too): items without an epoch
    keep their file order after those with one.
    """
    return list(group_trajectories(items).values())


def select_last(items: Iterable[Any]) -> list[Any]:
    """The last epoch of each (split, layer) group (the last in file order when none has one)."""
    out = []
    for group in trajectories(items):
        dated = [s for s in group if s.epoch is not None]
        out.append(dated[-1] if dated else group[-1])
    return out


def _layer_label(layer: str | None) -> str:
    return "penultimate" if layer is None else layer


def select_layer(items: Iterable[Any], layer: str = "penultimate") -> list[Any]:
    """The items (snapshots or results) of ``layer``.

    ``"penultimate"``: the classifier's layer (``item.layer`` None); ``"all"``: every item;
    any other string: the hidden layer of that name (``"layer_1"``).
    """
    if layer == "all":
        return list(items)
    want = None if layer == "penultimate" else layer
    return [s for s in items if s.layer == want]


def _null_reason(res, key: str) -> str:
    """``key: null (why)`` from the reason the result recorded for ``key``."""
    return null_message(res.null_reasons, key)


def _fmt(value: Any) -> str:
    """A measured value with enough digits to compare with a bound."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _where(res) -> dict[str, Any]:
    return {"epoch": res.epoch, "split": res.split, "layer": res.layer}


def _threshold_outcome(rule: Rule, res) -> Outcome:
    ok = (lambda v: v <= rule.bound) if rule.kind == "max" else (lambda v: v >= rule.bound)
    op, bad = ("<=", ">") if rule.kind == "max" else (">=", "<")
    base = {"rule": rule, "target": res.name, "bound": rule.bound, **_where(res)}
    key = rule.per_class_key
    if key is None:
        value = res.metrics.get(rule.metric)
        if value is None:
            return Outcome(passed=False, value=None, message=_null_reason(res, rule.metric), **base)
        passed = bool(ok(value))
        message = f"{rule.metric} = {_fmt(value)} {op if passed else bad} {_num(rule.bound)}"
        return Outcome(passed=passed, value=value, message=message, **base)
    rows = res.per_class
    if not rows:
        return Outcome(
            passed=False,
            value=None,
            **base,
            message=f"{rule.metric}: no per-class values for this snapshot",
        )
    undefined = [str(r.get("class")) for r in rows if r.get(key) is None]
    if undefined:
        agg = _PER_CLASS_REASON.get(key)
        why = _null_reason(res, agg) if agg and res.metrics.get(agg) is None else "undefined"
        classes = ", ".join(undefined[:10])
        return Outcome(
            passed=False,
            value=None,
            **base,
            message=f"{rule.metric} undefined for class(es) {classes}: {why}",
        )
    pick = min if rule.kind == "min" else max
    worst = pick(rows, key=lambda r: r[key])
    value = worst[key]
    passed = bool(ok(value))
    return Outcome(
        passed=passed,
        value=value,
        **base,
        message=f"worst class {worst.get('class')!s}: {key} = {_fmt(value)} "
        f"{op if passed else bad} {_num(rule.bound)}",
    )


def _trend_outcome(rule: Rule, group: list[Any]) -> Outcome:
    if rule.last:
        group = group[-rule.last :]
    first, last = group[0], group[-1]
    target = f"{first.name} .. {last.name}" if len(group) > 1 else first.name
    base = {
        "rule": rule,
        "target": target,
        "split": last.split,
        "layer": last.layer,
        "epoch": last.epoch,
    }

    def fail(message: str, value: Any = None) -> Outcome:
        return Outcome(passed=False, value=value, message=message, **base)

    need = rule.last or 2
    if len(group) < need:
        return fail(
            f"needs {need} snapshots in this trajectory (split {last.split}, "
            f"layer {_layer_label(last.layer)}), found {len(group)}"
        )
    undated = [s.name for s in group if s.epoch is None]
    if undated:
        return fail(f"snapshot(s) without an epoch cannot be ordered: {', '.join(undated[:5])}")
    values = [s.metrics.get(rule.metric) for s in group]
    for s in group:
        if s.metrics.get(rule.metric) is None:
            return fail(f"{s.name}: {_null_reason(s, rule.metric)}")
    sign = 1.0 if rule.kind in ("decreasing", "non_increasing") else -1.0
    if rule.kind in ("decreasing", "increasing"):
        passed = bool(sign * (values[-1] - values[0]) < 0)
        word = "fell" if values[-1] < values[0] else "rose" if values[-1] > values[0] else "stayed"
        return Outcome(
            passed=passed,
            value=values[-1],
            **{**base, "bound": values[0]},
            message=f"{rule.metric} {word} from {_fmt(values[0])} (epoch {first.epoch}) "
            f"to {_fmt(values[-1])} (epoch {last.epoch})",
        )
    for i in range(1, len(group)):
        va, vb = values[i - 1], values[i]
        allowed = rule.atol + rule.rtol * abs(va)
        if sign * (vb - va) > allowed:
            return fail(
                f"{rule.metric} went the wrong way from epoch {group[i - 1].epoch} to "
                f"{group[i].epoch}: {_fmt(va)} -> {_fmt(vb)} (allowed {_fmt(allowed)})",
                vb,
            )
    return Outcome(
        passed=True,
        value=values[-1],
        **base,
        message=f"{rule.metric} monotone over epochs {first.epoch}..{last.epoch}: "
        f"{_fmt(values[0])} -> {_fmt(values[-1])}",
    )


def evaluate(
    rules: Sequence[Rule], results: Sequence[Any], *, targets: Sequence[Any] | None = None
) -> list[Outcome]:
    """Apply ``rules`` to analysed snapshots.

    Parameters
    ----------
    rules : sequence of Rule
    results : sequence of SnapshotResult
        Every analysed snapshot; trend rules run over each (split, layer) trajectory of them.
    targets : sequence of SnapshotResult, optional
        The snapshots the threshold rules apply to (default: all of ``results``).

    Returns
    -------
    list of Outcome
        Rule by rule, one per target (threshold rules) or per trajectory (trend rules).
    """
    targets = list(results) if targets is None else list(targets)
    groups = trajectories(results)
    out: list[Outcome] = []
    for rule in rules:
        # snapshots that do not report the metric (a regression snapshot for nc1, an OOD
        # snapshot for any) are not its targets, unless none reports it (then it fails)
        if rule.is_trend:
            mine = [g for g in groups if all(_reports(s, rule.metric) for s in g)]
            out += [_trend_outcome(rule, g) for g in (mine or groups)]
        else:
            mine = [res for res in targets if _reports(res, rule.metric)]
            out += [_threshold_outcome(rule, res) for res in (mine or targets)]
    return out


def _names_pattern(names: Sequence[str]) -> str | None:
    """A glob matching exactly ``names`` (None, meaning all, when a name has a comma)."""
    if any("," in n for n in names):
        return None
    return ",".join(glob.escape(n) for n in names)


def run_check(
    path: str | os.PathLike,
    rules: Sequence[Rule],
    *,
    snapshot: str | None = "last",
    layer: str | None = "penultimate",
    keys: dict[str, str] | None = None,
    config: str | None = None,
    chunk_rows: int | None = None,
    memory_limit: int | None = None,
    engine: Any = None,
    allow_external: bool = False,
    class_names: Any = None,
    min_class_count: int = 1,
) -> CheckResult:
    """Analyse the snapshots of a dump that ``rules`` need and evaluate them.

    Parameters
    ----------
    path : str or PathLike
        The dump (HDF5 or NPZ).
    rules : sequence of Rule
        At least one.
    snapshot : str
        ``"last"`` (default: the last epoch of each split and layer), ``"all"``, or a glob on
        snapshot paths (comma-separated for several). With ``"last"``, trend rules still see
        every snapshot of each trajectory; with a glob they see the matching ones.
    layer : str
        ``"penultimate"`` (default: the classifier's layer, snapshots without a ``layer``),
        ``"all"``, or a hidden layer's name (``"layer_1"``). Every rule, trends included,
        sees only these snapshots. A rule that needs the classifier (NC3, NC4, SQI, the
        classifier's accuracy) fails on a hidden layer, which has no weights.
    keys : dict, optional
        Explicit array names by role, as for :func:`~ncinspect.analyze.analyze_file`.
    config : str, optional
        The configuration file the rules came from (recorded in the result).
    chunk_rows, memory_limit, engine, class_names, min_class_count : optional
        As for :func:`~ncinspect.analyze.analyze_file`.
    allow_external : bool
        As for :func:`~ncinspect.analyze.analyze_file`.

    Raises
    ------
    UsageError
        No rules; a pattern that matches no snapshot; no selected snapshot of ``layer``.
    """
    from .analyze import analyze_file
    from .dump import open_dump

    if not rules:
        raise UsageError(
            "no rules to check: give --max/--min/--decreasing/... or a config file "
            "(ncinspect.toml [check] or pyproject.toml [tool.ncinspect.check])"
        )
    snapshot = snapshot or "last"
    layer = layer or "penultimate"
    needs_trajectory = any(r.is_trend for r in rules)
    pattern = None if snapshot in ("last", "all") else snapshot
    with open_dump(path, keys=keys, allow_external=allow_external) as dump:
        pool = dump.select(pattern)
        chosen = select_layer(pool, layer)
        if not chosen:
            have = ", ".join(dict.fromkeys(_layer_label(s.layer) for s in pool))
            raise UsageError(
                f"{os.fspath(path)}: no {'' if pattern is None else 'matching '}snapshot of "
                f"layer {layer!r}; layers there: {have} (choose one with --layer, or all)"
            )
        if snapshot == "last" and not needs_trajectory:
            chosen = select_last(chosen)
        names = {s.name for s in chosen}
    report = analyze_file(
        path,
        snapshot=_names_pattern(sorted(names)),
        keys=keys,
        per_class=any(r.per_class_key for r in rules),
        chunk_rows=chunk_rows,
        memory_limit=memory_limit,
        engine=engine,
        allow_external=allow_external,
        class_names=class_names,
        min_class_count=min_class_count,
    )
    results = [r for r in report.snapshots if r.name in names]
    targets = select_last(results) if snapshot == "last" else results
    return CheckResult(
        file=os.fspath(path),
        outcomes=evaluate(rules, results, targets=targets),
        rules=list(rules),
        snapshot=snapshot,
        config=config,
        layer=layer,
    )
