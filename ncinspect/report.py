"""Results: :class:`SnapshotResult` (one snapshot) and :class:`Report` (one file), to JSON/CSV.

The JSON schema (version 1)::

    {"schema_version": 1, "ncinspect_version": ..., "file": ..., "conventions": {...},
     "snapshots": [{"name", "epoch", "split", "layer", "n_samples", "n_features",
                    "n_classes", "metrics": {key: value}, "per_class": [...] | null,
                    "warnings": [...], ...}]}

Keys are sorted, undefined values are ``null`` (never NaN), and reruns are byte-identical.

Each snapshot also says which loss the model was trained with (:func:`loss_of`): ``"loss"``
is the recorded loss name (``"square"``, ``"cross_entropy"``, ...) or null when the dump does
not record it, and ``"square_loss"`` is true, false or null accordingly. The square-loss
quantities (``sqi_*``, ``mse``, ``interpolates``) are always in ``metrics``; when the loss is
not square or not recorded, ``warnings`` says so (the table and the plots leave them out
unless ``--sqi`` is given).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._version import __version__
from .io.atomic import atomic_write  # re-exported: the writer lives in io.atomic
from .metrics import METRIC_KEYS

__all__ = [
    "SCHEMA_VERSION",
    "SnapshotResult",
    "Report",
    "conventions",
    "atomic_write",
    "jsonable",
    "loss_of",
    "square_loss_keys",
    "SQUARE_LOSS_GROUPS",
]

SCHEMA_VERSION = 1

#: Metric groups (of the registry) that describe a square-loss model only.
SQUARE_LOSS_GROUPS = ("SQI",)

#: Loss names (lower case, ``-``/spaces as ``_``, a ``loss`` suffix ignored) taken as square.
_SQUARE_NAMES = frozenset(
    {
        "square",
        "squared",
        "square_error",
        "squared_error",
        "mean_squared_error",
        "mean_square_error",
        "mse",
        "l2",
        "least_squares",
        "quadratic",
    }
)

#: The trainer that writes numeric ``loss`` values and trains with the square loss only.
_SQUARE_TRAINERS = frozenset({"ncinspect.train"})


def square_loss_keys() -> tuple[str, ...]:
    """The metric keys of the square-loss section (the groups of :data:`SQUARE_LOSS_GROUPS`)."""
    from .metrics.registry import REGISTRY

    return tuple(m.key for m in REGISTRY if m.group in SQUARE_LOSS_GROUPS)


def _loss_name(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.strip():
        return None
    return re.sub(r"[\s\-]+", "_", value.strip().lower())


def loss_of(meta: dict[str, Any]) -> tuple[str | None, bool | None]:
    """The loss a snapshot's model was trained with: ``(name, is_square)`` from its metadata.

    A string ``loss`` (or ``loss_type``) names it: ``square``/``mse``/``squared_error``/``l2``
    (also with a ``loss`` suffix, e.g. ``MSELoss``) are square, anything else (e.g.
    ``cross_entropy``) is not. The bundled trainer (``trainer = "ncinspect.train"``) writes
    the loss *value* under ``loss`` and trains with the square loss. Otherwise the loss is not
    recorded: ``(None, None)``.
    """
    for key in ("loss", "loss_type"):
        name = _loss_name(meta.get(key))
        if name is not None:
            bare = name[:-4].rstrip("_") if name.endswith("loss") and name != "loss" else name
            return name, name in _SQUARE_NAMES or bare in _SQUARE_NAMES
    trainer = meta.get("trainer")
    if isinstance(trainer, str) and trainer in _SQUARE_TRAINERS:
        return "square", True
    return None, None


def conventions(center: str, ncc_means: str = "own") -> dict[str, str]:
    """The conventions a report was computed with (recorded in its JSON)."""
    return {
        "center": center,
        "global_mean": "mean of class means" if center == "classes" else "sample mean",
        "nc1": "Tr(Sigma_W Sigma_B^+)/C with the rank-limited (min(C-1,d)) eigen pseudo-inverse; "
        "the original Papyan et al. notebook logs C*nc1",
        "sigma_w": "pooled, sample-weighted: (1/N) sum_i (h_i - mu_y)(h_i - mu_y)^T",
        "sigma_b": "class-weighted: (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T",
        "ncc_means": ncc_means,
        "decisions": "classifier = argmax(W h + b) when weights are present, else argmax(outputs); "
        "ties go to the lowest class index",
        "sqi_outputs": "stored outputs when present, else W h + b",
    }


def jsonable(value: Any) -> Any:
    """Plain-Python, NaN-free version of ``value`` for JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


_REPR_KEYS = (  # the headline numbers of a one-line repr
    ("nc1", "nc1"),
    ("etf_error_means", "etf"),
    ("nc3_self_duality", "nc3"),
    ("nc4_ncc_mismatch", "nc4"),
    ("accuracy_classifier", "acc"),
)


def _short(value: Any) -> str:
    from .render.table import fmt

    return fmt(value)


@dataclass(repr=False)
class SnapshotResult:
    """Metrics of one snapshot plus what the renderers and plots need.

    ``metrics`` holds every key of spec/metrics.md (None where undefined); ``per_class`` a
    list of per-class dicts (with ``class``) when requested. ``arrays`` holds the geometry
    for figures (class means, global mean, classifier, between-class eigenvalues, within-
    class variance along those directions); it is not written to JSON.
    """

    name: str
    n_samples: int
    n_features: int
    n_classes: int
    metrics: dict[str, Any]
    #: rows of the classifier (``n_classes`` counts the present classes only); None: same
    n_classes_total: int | None = None
    warnings: list[str] = field(default_factory=list)
    per_class: list[dict[str, Any]] | None = None
    epoch: int | None = None
    split: str | None = None
    layer: str | None = None
    dtype: str = "float64"
    class_names: list[Any] = field(default_factory=list)
    class_counts: list[int] = field(default_factory=list)
    center: str = "classes"
    ncc_means: str = "own"
    meta: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    theory: dict[str, Any] | None = None
    task: str = "classification"  #: or "regression" (nrc1-3 only) or "ood" (no metrics)
    regression: dict[str, Any] | None = None  #: n_targets and nrc3's gamma (regression only)
    #: why each None of ``metrics`` is None (key -> reason); ``warnings`` holds the same as text
    null_reasons: dict[str, str] = field(default_factory=dict)
    #: percentile intervals from a within-class bootstrap (:mod:`ncinspect.bootstrap`), or None
    bootstrap: dict[str, Any] | None = None

    def metric_keys(self) -> list[str]:
        """The metric keys this snapshot reports, in order (they depend on ``task``)."""
        return metric_keys_for(self)

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def __repr__(self) -> str:
        """One line: the snapshot, its size and the headline metrics."""
        from .render.safe import plain

        nums = " ".join(f"{label}={_short(self.metrics.get(k))}" for k, label in _REPR_KEYS)
        extra = f" ({len(self.warnings)} warning(s))" if self.warnings else ""
        return (
            f"<SnapshotResult {plain(self.name)}: N={self.n_samples} d={self.n_features} "
            f"C={self.n_classes} {nums}{extra}>"
        )

    def _repr_html_(self) -> str:
        """An HTML table for notebooks (the square-loss section as in the terminal table)."""
        from html import escape

        from .metrics.registry import metric_rows
        from .render.safe import plain

        hidden = () if self.shows_square_loss() else square_loss_keys()
        rows = "".join(
            f"<tr><td>{escape(group)}</td><td><code>{escape(key)}</code></td>"
            f"<td style='text-align:right'>{escape(_short(self.metrics.get(key)))}</td>"
            f"<td>{escape(meaning)}</td></tr>"
            for key, group, _, meaning in metric_rows(self.task, self.metrics)
            if key not in hidden
        )
        tags = "  ".join(
            f"{k}={plain(v)}"
            for k, v in (("epoch", self.epoch), ("split", self.split), ("layer", self.layer))
            if v is not None
        )
        notes = [*self.warnings, *([self.loss_note] if self.loss_note else [])]
        warn = "".join(f"<li>{escape(plain(w))}</li>" for w in notes)
        return (
            f"<div><b>{escape(plain(self.name))}</b> N={self.n_samples} d={self.n_features} "
            f"C={self.n_classes} {escape(tags)}"
            "<table><thead><tr><th>group</th><th>metric</th><th>value</th><th>meaning</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
            + (f"<ul>{warn}</ul>" if warn else "")
            + "</div>"
        )

    def to_json(self) -> str:
        """This snapshot as JSON (the snapshot object of the report schema), sorted keys."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"

    @property
    def loss(self) -> str | None:
        """The recorded loss name (:func:`loss_of`), None when the dump does not record it."""
        return loss_of(self.meta)[0]

    @property
    def square_loss(self) -> bool | None:
        """True for a square-loss model, False for another loss, None when not recorded."""
        return loss_of(self.meta)[1]

    def shows_square_loss(self, force: bool = False) -> bool:
        """Whether tables and plots show the square-loss section (always with ``force``)."""
        return bool(force or self.square_loss)

    @property
    def loss_note(self) -> str | None:
        """Why the square-loss section is hidden (None for a square-loss model)."""
        keys = "sqi_*, mse, interpolates"
        name, square = loss_of(self.meta)
        if square or self.task != "classification":  # no SQI section to hide
            return None
        if name is None:
            return (
                f"loss not recorded: the square-loss quantities ({keys}) are left out of the "
                "table and plots; record metadata loss='square' (or the loss used) or pass --sqi"
            )
        return (
            f"loss {name!r} is not a square loss: the square-loss quantities ({keys}) do not "
            "describe this model and are left out of the table and plots (--sqi shows them)"
        )

    def to_dict(self) -> dict[str, Any]:
        counts = self.class_counts or [0]
        out = {
            "name": self.name,
            "epoch": self.epoch,
            "split": self.split,
            "layer": self.layer,
            "n_samples": self.n_samples,
            "n_features": self.n_features,
            "n_classes": self.n_classes,
            "n_classes_total": self.n_classes_total or self.n_classes,
            "dtype": self.dtype,
            "class_names": self.class_names,
            "class_balance": {"min": int(min(counts)), "max": int(max(counts))},
            "center": self.center,
            "ncc_means": self.ncc_means,
            "metrics": {k: self.metrics.get(k) for k in self.metric_keys()},
            "per_class": self.per_class,
            "warnings": [*self.warnings, *([self.loss_note] if self.loss_note else [])],
            "meta": self.meta,
            "loss": self.loss,
            "square_loss": self.square_loss,
        }
        if self.theory is not None:
            out["theory"] = self.theory
        if self.task != "classification":
            out["task"] = self.task
        if self.regression is not None:
            out["regression"] = self.regression
        if self.bootstrap is not None:
            out["bootstrap"] = self.bootstrap
        return jsonable(out)

    def interval(self, key: str) -> tuple[float | None, float | None] | None:
        """The bootstrap interval ``(lo, hi)`` of a metric, None without ``--bootstrap``."""
        if self.bootstrap is None:
            return None
        iv = self.bootstrap["intervals"].get(key) or {}
        return iv.get("lo"), iv.get("hi")


def metric_keys_for(res: SnapshotResult) -> list[str]:
    """Metric keys of one result: METRIC_KEYS, plus the nc5 keys it holds; nrc1-3 for a
    regression snapshot; none for an OOD snapshot."""
    if res.task == "regression":
        from .metrics.regression import REGRESSION_KEYS

        return list(REGRESSION_KEYS)
    if res.task == "ood":
        return []
    from .metrics.ood import NC5_KEY

    return [*METRIC_KEYS, *sorted(k for k in res.metrics if k.startswith(NC5_KEY))]


def report_metric_keys(results) -> list[str]:
    """Union of :func:`metric_keys_for` over ``results``, METRIC_KEYS first (CSV columns)."""
    keys: dict[str, None] = dict.fromkeys(METRIC_KEYS)
    for res in results:
        keys.update(dict.fromkeys(metric_keys_for(res)))
    return list(keys)


@dataclass(repr=False)
class Report:
    """Results for the snapshots of one file (or one in-memory analysis)."""

    file: str | None
    snapshots: list[SnapshotResult]
    center: str = "classes"
    ncc_means: str = "own"

    def __iter__(self):
        return iter(self.snapshots)

    def __len__(self) -> int:
        return len(self.snapshots)

    def __getitem__(self, key: int | slice | str) -> SnapshotResult:
        """A snapshot by position (``report[0]``, ``report[-1]``, slices) or by path
        (``report["/epoch_0010"]``, the leading ``/`` optional)."""
        if isinstance(key, str):
            want = key if key.startswith("/") else f"/{key}"
            for s in self.snapshots:
                if s.name in (key, want):
                    return s
            names = ", ".join(s.name for s in self.snapshots[:5])
            more = f", ... ({len(self.snapshots)} in all)" if len(self.snapshots) > 5 else ""
            raise KeyError(f"no snapshot {key!r}; the snapshots are {names or 'none'}{more}")
        return self.snapshots[key]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    @property
    def names(self) -> list[str]:
        """The snapshot paths, in report order."""
        return [s.name for s in self.snapshots]

    def __repr__(self) -> str:
        from .render.safe import plain

        names = self.names
        span = f" ({plain(names[0])} .. {plain(names[-1])})" if len(names) > 1 else ""
        if len(names) == 1:
            span = f" ({plain(names[0])})"
        return f"<Report {plain(self.file or '<arrays>')}: {len(self)} snapshot(s){span}>"

    def _repr_html_(self) -> str:
        """An HTML table, one row per snapshot (the compact table's columns)."""
        from html import escape

        from .metrics.registry import COMPACT_METRICS, columns
        from .render.safe import plain

        hidden = () if any(s.shows_square_loss() for s in self) else square_loss_keys()
        cols = [(k, t) for k, t in columns(COMPACT_METRICS) if k not in hidden]
        head = "".join(f"<th>{escape(t)}</th>" for t in ("snapshot", "epoch", "N"))
        head += "".join(f"<th>{escape(t)}</th>" for _, t in cols)
        rows = "".join(
            f"<tr><td><code>{escape(plain(s.name))}</code></td><td>{_short(s.epoch)}</td>"
            f"<td>{s.n_samples}</td>"
            + "".join(
                f"<td style='text-align:right'>{escape(_short(s.metrics.get(k)))}</td>"
                for k, _ in cols
            )
            + "</tr>"
            for s in self
        )
        return (
            f"<div><b>{escape(plain(self.file or '<arrays>'))}</b>: {len(self)} snapshot(s)"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        )

    def to_pandas(self, per_class: bool = False):
        """A pandas DataFrame of the report (pandas is needed; it is imported only here).

        ``per_class=False``: one row per snapshot with the columns ``file``, ``snapshot``,
        ``epoch``, ``split``, ``layer``, ``n_samples``, ``n_features``, ``n_classes``,
        ``dtype``, ``loss``, ``square_loss``, one column per metric key (spec/metrics.md;
        None where undefined), ``warnings`` (a list) and ``meta.<key>`` for every metadata
        key of the dump. ``per_class=True``: one row per snapshot and class with the
        identifying columns, ``class`` and the per-class keys (needs a report computed with
        ``per_class=True``).
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "Report.to_pandas() needs pandas, which is not installed: pip install pandas"
            ) from None
        from .metrics import PER_CLASS_KEYS

        if per_class and any(s.per_class is None for s in self.snapshots):
            raise ValueError("no per-class values: compute the report with per_class=True")
        ident = ("file", "snapshot", "epoch", "split", "layer", "n_samples", "n_features")
        records = []
        for s in self.snapshots:
            base = {
                "file": self.file,
                "snapshot": s.name,
                "epoch": s.epoch,
                "split": s.split,
                "layer": s.layer,
                "n_samples": s.n_samples,
                "n_features": s.n_features,
                "n_classes": s.n_classes,
            }
            if per_class:
                for row in s.per_class or []:
                    records.append({**base, "class": row.get("class"), **jsonable(row)})
                continue
            records.append(
                {
                    **base,
                    "dtype": s.dtype,
                    "loss": s.loss,
                    "square_loss": s.square_loss,
                    **{k: jsonable(s.metrics.get(k)) for k in METRIC_KEYS},
                    "warnings": [*s.warnings, *([s.loss_note] if s.loss_note else [])],
                    **{f"meta.{k}": jsonable(v) for k, v in s.meta.items()},
                }
            )
        if per_class:
            columns = [*ident, "n_classes", "class", *PER_CLASS_KEYS]
            return pd.DataFrame.from_records(records, columns=columns)
        return pd.DataFrame.from_records(records)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "ncinspect_version": __version__,
            "file": self.file,
            "conventions": conventions(self.center, self.ncc_means),
            "snapshots": [s.to_dict() for s in self.snapshots],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"

    def csv_rows(self) -> tuple[list[str], list[list[Any]]]:
        """Tidy rows: one per snapshot, one column per metric (plus identifying columns)."""
        header = [
            "file",
            "snapshot",
            "epoch",
            "split",
            "layer",
            "n_samples",
            "n_features",
            "n_classes",
            "n_classes_total",
            *(keys := report_metric_keys(self.snapshots)),
        ]
        boot = any(s.bootstrap is not None for s in self.snapshots)
        if boot:  # the interval of each metric after the values: key_lo, key_hi
            header += ["bootstrap_B", "bootstrap_seed"]
            header += [f"{k}_{end}" for k in keys for end in ("lo", "hi")]
        rows = []
        for s in self.snapshots:
            rows.append(
                [
                    self.file,
                    s.name,
                    s.epoch,
                    s.split,
                    s.layer,
                    s.n_samples,
                    s.n_features,
                    s.n_classes,
                    s.n_classes_total or s.n_classes,
                    *(jsonable(s.metrics.get(k)) for k in keys),
                ]
            )
            if boot:
                b = s.bootstrap or {}
                rows[-1] += [b.get("B"), b.get("seed")]
                rows[-1] += [jsonable(v) for k in keys for v in (s.interval(k) or (None, None))]
        return header, rows

    def to_csv(self) -> str:
        return csv_text(*self.csv_rows())


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    """CSV text of ``header`` and ``rows`` (None as an empty cell, ``\\n`` line ends)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()
