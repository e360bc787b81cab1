"""The report as a pandas DataFrame (pandas is imported only when asked for)."""

from __future__ import annotations

from ..metrics import METRIC_KEYS
from .conventions import jsonable

__all__ = ["report_frame"]


def report_frame(report, per_class: bool = False):
    """A pandas DataFrame of ``report`` (pandas is needed; it is imported only here).

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
    from ..metrics import PER_CLASS_KEYS

    if per_class and any(s.per_class is None for s in report.snapshots):
        raise ValueError("no per-class values: compute the report with per_class=True")
    ident = ("file", "snapshot", "epoch", "split", "layer", "n_samples", "n_features")
    records = []
    for s in report.snapshots:
        base = {
            "file": report.file,
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
