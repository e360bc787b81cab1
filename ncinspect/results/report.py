"""Results: :class:`SnapshotResult` (one snapshot) and :class:`Report` (one file), to JSON/CSV.

The JSON schema (version 1)::

    {"schema_version": 1, "ncinspect_version": ..., "file": ..., "conventions": {...},
     "snapshots": [{"name", "epoch", "split", "layer", "n_samples", "n_features",
                    "n_classes", "metrics": {key: value}, "per_class": [...] | null,
                    "warnings": [...], ...}], "layers": [...]}

``layers``: the layer-wise law per epoch and split (:mod:`ncinspect.results.layer_laws`), if any.

Keys are sorted, undefined values are ``null`` (never NaN), and reruns are byte-identical.

Each snapshot also says which loss the model was trained with (:func:`loss_of`): ``"loss"``
is the recorded loss name (``"square"``, ``"cross_entropy"``, ...) or null when the dump does
not record it, and ``"square_loss"`` is true, false or null accordingly. The square-loss
quantities (``sqi_*``, ``mse``, ``interpolates``) are always in ``metrics``; when the loss is
not square or not recorded, ``warnings`` says so (the table and the plots leave them out
unless ``--sqi`` is given).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._version import __version__
from ..io.atomic import atomic_write  # re-exported: the writer lives in io.atomic
from ..metrics import METRIC_KEYS
from ..metrics.nulls import applicable_warnings
from ..metrics.registry import extra_keys
from ..text import NAME_LIMIT, TEXT_LIMIT, clip, csv_text, cut, fmt, plain  # csv_text re-exported
from .conventions import (  # re-exported: part of the report's public names
    SQUARE_LOSS_GROUPS,
    conventions,
    jsonable,
    loss_of,
    square_loss_keys,
)
from .jsontext import dumps as json_text
from .layer_laws import law_columns, layer_laws
from .parts import ResultArrays, TheoryResult


def _shown(value: Any, limit: int = NAME_LIMIT) -> str:
    """A name from the file in a repr or notebook HTML: cut to ``limit`` characters (the cut
    said, :func:`ncinspect.text.cut`; a 10 MB snapshot name made a 10 MB repr) and control
    characters escaped; :meth:`Report.to_json` keeps it whole."""
    return plain(cut(value if isinstance(value, str) else str(value), limit))


__all__ = ["SCHEMA_VERSION", "SnapshotResult", "Report", "conventions", "atomic_write"]
__all__ += ["jsonable", "loss_of", "square_loss_keys", "SQUARE_LOSS_GROUPS"]

SCHEMA_VERSION = 1

_REPR_KEYS = (  # the headline numbers of a one-line repr
    ("nc1", "nc1"),
    ("etf_error_means", "etf"),
    ("nc3_self_duality", "nc3"),
    ("nc4_ncc_mismatch", "nc4"),
    ("accuracy_classifier", "acc"),
)


@dataclass(repr=False)
class SnapshotResult:
    """Metrics of one snapshot plus what the renderers and plots need.

    ``metrics`` holds every key of spec/metrics.md (None where undefined); ``per_class`` a
    list of per-class dicts (with ``class``) when requested. ``arrays`` (a
    :class:`~ncinspect.results.ResultArrays`; a dict of its field names is converted) holds
    the geometry for figures (class means, global mean, classifier, between-class
    eigenvalues, within-class variance along those directions); it is not written to JSON.
    ``theory`` is the :class:`~ncinspect.results.TheoryResult` of ``ncinspect theory``.
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
    ncc_centres: str = "own"
    meta: dict[str, Any] = field(default_factory=dict)
    file: str | None = None
    arrays: ResultArrays = field(default_factory=ResultArrays, repr=False)
    theory: TheoryResult | None = None
    task: str = "classification"  #: or "regression" (nrc1-3 only) or "ood" (no metrics)
    regression: dict[str, Any] | None = None  #: n_targets and nrc3's gamma (regression only)
    #: why each None of ``metrics`` is None (key -> reason); ``warnings`` holds the same as text
    null_reasons: dict[str, str] = field(default_factory=dict)
    #: percentile intervals from a within-class bootstrap (:mod:`ncinspect.analysis.bootstrap`),
    #: or None
    bootstrap: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.arrays = ResultArrays.of(self.arrays)

    def metric_keys(self) -> list[str]:
        """The metric keys this snapshot reports, in order (they depend on ``task``)."""
        return metric_keys_for(self)

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def __repr__(self) -> str:
        """One line: the snapshot, its size and the headline metrics."""
        nums = " ".join(f"{label}={fmt(self.metrics.get(k))}" for k, label in _REPR_KEYS)
        shown = applicable_warnings(self.warnings, self.null_reasons)  # JSON keeps all
        extra = f" ({len(shown)} warning(s))" if shown else ""
        return (
            f"<SnapshotResult {_shown(self.name)}: N={self.n_samples} d={self.n_features} "
            f"C={self.n_classes} {nums}{extra}>"
        )

    def _repr_html_(self) -> str:
        """An HTML table for notebooks (the square-loss section as in the terminal table)."""
        from html import escape

        from ..metrics.registry import metric_rows

        hidden = () if self.shows_square_loss() else square_loss_keys()
        rows = "".join(
            f"<tr><td>{escape(group)}</td><td><code>{escape(key)}</code></td>"
            f"<td style='text-align:right'>{escape(fmt(self.metrics.get(key)))}</td>"
            f"<td>{escape(meaning)}</td></tr>"
            for key, group, _, meaning in metric_rows(self.task, self.metrics)
            if key not in hidden
        )
        tags = "  ".join(
            f"{k}={_shown(v)}"
            for k, v in (("epoch", self.epoch), ("split", self.split), ("layer", self.layer))
            if v is not None
        )
        notes = [*applicable_warnings(self.warnings, self.null_reasons)]
        notes += [self.loss_note] if self.loss_note else []
        warn = "".join(f"<li>{escape(_shown(w, TEXT_LIMIT))}</li>" for w in notes)
        return (
            f"<div><b>{escape(_shown(self.name))}</b> N={self.n_samples} d={self.n_features} "
            f"C={self.n_classes} {escape(tags)}"
            "<table><thead><tr><th>group</th><th>metric</th><th>value</th><th>meaning</th>"
            f"</tr></thead><tbody>{rows}</tbody></table>"
            + (f"<ul>{warn}</ul>" if warn else "")
            + "</div>"
        )

    def to_json(self) -> str:
        """This snapshot as JSON (the snapshot object of the report schema), sorted keys."""
        return json_text(self.to_dict()) + "\n"

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
        return self._loss_note(*loss_of(self.meta))

    def _loss_note(self, name: str | None, square: bool | None) -> str | None:
        """:attr:`loss_note` of the loss ``(name, square)`` (:func:`loss_of`)."""
        keys = "sqi_*, mse, interpolates"
        if square or self.task != "classification":  # no SQI section to hide
            return None
        if name is None:
            return (
                f"loss not recorded: the square-loss quantities ({keys}) are left out of the "
                "table and plots; record metadata loss='square' (or the loss used) or pass --sqi"
            )
        return (
            f"loss {clip(repr(name))} is not a square loss: the square-loss quantities ({keys}) "
            "do not "
            "describe this model and are left out of the table and plots (--sqi shows them)"
        )

    def to_dict(self) -> dict[str, Any]:
        counts = self.class_counts or [0]
        loss, square = loss_of(self.meta)  # once (three properties read it)
        note = self._loss_note(loss, square)
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
            "ncc_means": self.ncc_centres,
            "metrics": {k: self.metrics.get(k) for k in self.metric_keys()},
            "per_class": self.per_class,
            "warnings": [*self.warnings, *([note] if note else [])],
            "meta": self.meta,
            "loss": loss,
            "square_loss": square,
        }
        if self.theory is not None:
            out["theory"] = self.theory.to_dict()
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
    """Metric keys of one result: METRIC_KEYS, plus the spectra and OOD keys it holds; nrc1-3 for a
    regression snapshot; none for an OOD snapshot."""
    if res.task == "regression":
        from ..metrics.regression import REGRESSION_KEYS

        return list(REGRESSION_KEYS)
    if res.task == "ood":
        return []
    return [*METRIC_KEYS, *extra_keys(res.metrics)]


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
    ncc_centres: str = "own"
    #: of pass 2's large products (see :class:`~ncinspect.engines.local.LocalEngine`)
    precision: str = "float64"

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
            raise KeyError(
                f"no snapshot {clip(repr(key))}; the snapshots are {names or 'none'}{more}"
            )
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
        names = self.names
        span = f" ({_shown(names[0])} .. {_shown(names[-1])})" if len(names) > 1 else ""
        if len(names) == 1:
            span = f" ({_shown(names[0])})"
        return f"<Report {_shown(self.file or '<arrays>')}: {len(self)} snapshot(s){span}>"

    def _repr_html_(self) -> str:
        """An HTML table, one row per snapshot (the compact table's columns)."""
        from html import escape

        from ..metrics.registry import COMPACT_METRICS, columns

        hidden = () if any(s.shows_square_loss() for s in self) else square_loss_keys()
        cols = [(k, t) for k, t in columns(COMPACT_METRICS) if k not in hidden]
        head = "".join(f"<th>{escape(t)}</th>" for t in ("snapshot", "epoch", "N"))
        head += "".join(f"<th>{escape(t)}</th>" for _, t in cols)
        rows = "".join(
            f"<tr><td><code>{escape(_shown(s.name))}</code></td><td>{fmt(s.epoch)}</td>"
            f"<td>{s.n_samples}</td>"
            + "".join(
                f"<td style='text-align:right'>{escape(fmt(s.metrics.get(k)))}</td>"
                for k, _ in cols
            )
            + "</tr>"
            for s in self
        )
        return (
            f"<div><b>{escape(_shown(self.file or '<arrays>'))}</b>: {len(self)} snapshot(s)"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>"
        )

    def to_pandas(self, per_class: bool = False):
        """A pandas DataFrame of the report (see :func:`ncinspect.results.frame.report_frame`;
        pandas is needed and imported only here)."""
        from .frame import report_frame

        return report_frame(self, per_class=per_class)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema_version": SCHEMA_VERSION,
            "ncinspect_version": __version__,
            "file": self.file,
            "conventions": conventions(self.center, self.ncc_centres, self.precision),
            "snapshots": [s.to_dict() for s in self.snapshots],
        }
        laws = [law.to_dict() for law in layer_laws(self.snapshots)]
        return {**out, "layers": jsonable(laws)} if laws else out

    def to_json(self) -> str:
        return json_text(self.to_dict()) + "\n"

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
        law_keys, law_values = law_columns(self.snapshots)  # its (epoch, split)'s law
        header += law_keys
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
            rows[-1] += law_values(s)
            if boot:
                b = s.bootstrap or {}
                rows[-1] += [b.get("B"), b.get("seed")]
                rows[-1] += [jsonable(v) for k in keys for v in (s.interval(k) or (None, None))]
        return header, rows

    def to_csv(self) -> str:
        return csv_text(*self.csv_rows())
