"""One self-contained HTML file of a report: tables, figures, warnings and conventions.

The page holds everything it shows: the CSS is inline, the figures are inline PNG
(``data:`` URIs) and there is no script at all; a Content-Security-Policy meta tag forbids
the browser to load anything else, so the page opens the same offline, as a CI artifact or
from an e-mail. It reflows to a phone's width (viewport meta, tables scroll sideways in
their own box) and prints on paper (print CSS: no scroll boxes, figures kept whole).

Every text that came from the file (snapshot, class, layer and split names, warnings,
metadata) goes through :func:`ncinspect.render.safe.plain` and is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import math
from typing import Any

from ..metrics.nulls import applicable_warnings
from ..metrics.registry import compact_columns, metric_rows, no_etf_note
from ..results.report import Report, SnapshotResult, conventions, square_loss_keys
from ..text import NAME_LIMIT, TEXT_LIMIT, cut
from .intervals import interval_text
from .safe import plain
from .table import COMPACT_KEYS, extra_compact_columns, fmt

__all__ = ["html_report", "last_classified", "CSP"]

#: nothing but the page itself: inline styles and ``data:`` images, no script, no fetch
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'"

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  margin: 0 auto; padding: 1rem; max-width: 72rem; color: #1a1a1a; background: #fff; }
h1 { font-size: 1.35rem; margin: 0 0 .3rem; overflow-wrap: anywhere; }
h2 { font-size: 1.1rem; margin: 1.6rem 0 .5rem; border-bottom: 1px solid #ccc; }
h3 { font-size: 1rem; margin: 1rem 0 .4rem; overflow-wrap: anywhere; }
p.sub { margin: 0 0 1rem; color: #555; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; max-width: 100%; }
table { border-collapse: collapse; font-size: .85rem; margin: .3rem 0 .8rem; }
th, td { padding: .25rem .5rem; border-bottom: 1px solid #e2e2e2; text-align: left;
  vertical-align: top; }
th { background: #f3f3f3; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.iv { color: #555; }
td code { white-space: nowrap; }
li code { overflow-wrap: anywhere; }
figure { margin: .5rem 0 1rem; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .85rem; color: #555; margin-top: .3rem; }
ul.warn li { margin-bottom: .3rem; overflow-wrap: anywhere; }
dl.conv { display: grid; grid-template-columns: minmax(6rem, max-content) 1fr; gap: .2rem 1rem;
  font-size: .85rem; }
dl.conv dt { font-weight: 600; } dl.conv dd { margin: 0; overflow-wrap: anywhere; }
.note { background: #fff8e1; border-left: 4px solid #e0a800; padding: .4rem .6rem; }
@media (max-width: 600px) {
  body { padding: .6rem; font-size: 14px; }
  dl.conv { grid-template-columns: 1fr; }
  dl.conv dd { margin-bottom: .4rem; }
}
@media print {
  body { max-width: none; padding: 0; font-size: 10pt; }
  .scroll { overflow: visible; }
  table { font-size: 8pt; page-break-inside: auto; }
  tr, figure, img { page-break-inside: avoid; break-inside: avoid; }
  h2 { page-break-after: avoid; break-after: avoid; }
  figure img { max-width: 100%; border: none; }
}
"""


def _t(value: Any, limit: int = TEXT_LIMIT) -> str:
    """Text from the file (or anything) made safe for HTML: cut to ``limit`` characters (the
    cut said, :func:`ncinspect.text.cut`), controls escaped, then markup."""
    raw = value if isinstance(value, str) else str(value)
    return html.escape(plain(cut(raw, limit)), quote=True)


def _n(value: Any) -> str:
    """A name from the file (snapshot, class, file) for HTML: :func:`_t` cut to
    :data:`ncinspect.text.NAME_LIMIT` characters; the JSON keeps the name whole."""
    return _t(value, NAME_LIMIT)


def _img(png: bytes) -> str:
    """An ``<img>`` of PNG bytes as an inline ``data:`` URI."""
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _table(head: list[str], rows: list[list[tuple[str, str]]]) -> str:
    """A scrollable table; ``rows`` of ``(html, css class)`` cells (head already escaped)."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>" for v, c in r)
        + "</tr>"
        for r in rows
    )
    table = f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def _hidden(report: Report, sqi: bool) -> set[str]:
    return set() if any(r.shows_square_loss(sqi) for r in report) else set(square_loss_keys())


def _snapshot_section(res: SnapshotResult, hidden: set[str]) -> str:
    """Every metric of one snapshot: group, key, value, interval, meaning."""
    if res.task == "ood":
        return ""
    # the rows the terminal table shows: nrc1-3 for a regression snapshot, else the registry
    # with the spectral and OOD keys present (--spectra, nc5, ood_auroc_*)
    info = metric_rows(res.task, res.metrics)
    boot = res.bootstrap is not None
    head = ["group", "metric", "value"]
    if boot:
        b = res.bootstrap
        head.append(f"{round(100 * b.get('level', 0.95))}% interval (B={_t(b.get('B'))})")
    head.append("meaning")
    rows = []
    for key, group, _direction, meaning in info:
        if key in hidden:
            continue
        row = [
            (_t(group), ""),
            (f"<code>{_t(key)}</code>", ""),
            (_t(fmt(res.metrics.get(key))), "num"),
        ]
        if boot:
            row.append((_t(interval_text(res.interval(key), fmt)), "num iv"))
        row.append((_t(meaning), ""))
        rows.append(row)
    present = sum(1 for n in res.class_counts if n > 0) or res.n_classes
    note = no_etf_note(res.metrics, res.n_features, present)
    out = f"<h3>{_n(res.name)}</h3><p class='sub'>{_t(_tags(res))}</p>"
    if note:
        out += f"<p class='note'>{_t(note)}</p>"
    return out + _table(head, rows)


def _tags(res: SnapshotResult) -> str:
    parts = [f"N={res.n_samples}", f"d={res.n_features}", f"C={res.n_classes}"]
    for k, v in (("epoch", res.epoch), ("split", res.split), ("layer", res.layer)):
        if v is not None:
            parts.append(f"{k}={plain(v)}")
    if res.ncc_centres != "own":
        parts.append(f"ncc_centres={plain(res.ncc_centres)}")
    return "  ".join(parts)


def _compact_section(report: Report, hidden: set[str]) -> str:
    """One row per snapshot, the compact table's columns (intervals under the values)."""
    shown = [r for r in report if r.task != "ood"]
    columns = compact_columns(COMPACT_KEYS, [r.metrics for r in shown])
    columns = tuple(c for c in columns + extra_compact_columns(report) if c[0] not in hidden)
    head = ["snapshot", "epoch", "N", *(_t(title) for _, title in columns)]
    rows = []
    for res in shown:
        row = [
            (f"<code>{_n(res.name)}</code>", ""),
            (_t(fmt(res.epoch)), "num"),
            (str(res.n_samples), "num"),
        ]
        for key, _ in columns:
            cell = _t(fmt(res.metrics.get(key)))
            iv = res.interval(key)
            if iv is not None:
                cell += f"<br><span class='iv'>{_t(interval_text(iv, fmt))}</span>"
            row.append((cell, "num"))
        rows.append(row)
    return _table(head, rows)


def last_classified(report: Report) -> SnapshotResult | None:
    """The last train (or split-less) classification snapshot with class means, else any."""
    cands = [r for r in report if r.task == "classification" and r.arrays.means is not None]
    from ..results.trajectory import classifier_layer

    top = classifier_layer(cands)
    train = [r for r in cands if r.split in (None, "train") and r.layer == top]
    pool = train or cands
    if not pool:
        return None
    return max(pool, key=lambda r: (r.epoch is not None, r.epoch or 0))


def _figure(png: bytes, caption: str) -> str:
    return f"<figure>{_img(png)}<figcaption>{_t(caption)}</figcaption></figure>"


def _worst_section(res: SnapshotResult, k: int = 10) -> str:
    """The k classes with the largest within/between spread ``var / mean_norm^2``."""
    from ..metrics import PER_CLASS_KEYS

    rows = res.per_class or []
    if not rows:
        return ""

    def spread(row) -> float | None:
        var, norm = row.get("var"), row.get("mean_norm")
        if var is None or norm is None:
            return None
        if norm == 0:  # a mean on the global mean: unbounded, or 0/0 when nothing varies
            return float("inf") if var > 0 else None
        # divided twice: norm**2 underflows to 0 (features near 1e-160) or overflows
        ratio = var / norm / norm
        return ratio if math.isfinite(ratio) else None

    def order(row) -> float:
        value = spread(row)
        return float("-inf") if value is None else value

    worst = sorted(rows, key=order, reverse=True)[:k]
    head = ["class", "spread", *(_t(key) for key in PER_CLASS_KEYS)]
    body = [
        [(f"<code>{_n(r.get('class'))}</code>", ""), (_t(fmt(spread(r))), "num")]
        + [(_t(fmt(r.get(key))), "num") for key in PER_CLASS_KEYS]
        for r in worst
    ]
    return (
        f"<p class='sub'>{_n(res.name)}: the {len(worst)} of {len(rows)} classes with the "
        "largest spread var / mean_norm<sup>2</sup> (v<sub>c</sub> / ||mu<sub>c</sub> - "
        "mu<sub>G</sub>||<sup>2</sup>): the aggregate metrics hide them.</p>" + _table(head, body)
    )


def _warnings_section(report: Report, sqi: bool) -> str:
    seen: dict[str, list[str]] = {}
    for res in report:
        notes = applicable_warnings(res.warnings, res.null_reasons)
        if res.loss_note and not sqi:
            notes.append(res.loss_note)
        for w in notes:
            seen.setdefault(w, []).append(res.name)
    if not seen:
        return "<p>No warnings.</p>"
    items = "".join(
        f"<li><code>{_n(names[0])}</code>"
        + (f" and {len(names) - 1} more" if len(names) > 1 else "")
        + f": {_t(w)}</li>"
        for w, names in seen.items()
    )
    return f"<ul class='warn'>{items}</ul>"


def _conventions_section(report: Report) -> str:
    conv = conventions(report.center, report.ncc_centres, getattr(report, "precision", "float64"))
    boots = [r.bootstrap for r in report if r.bootstrap is not None]
    if boots:
        b = boots[0]
        conv["bootstrap"] = (
            f"{b['method']} {round(100 * b['level'])}% intervals from B = {b['B']} replicates "
            f"(seed {b['seed']}) resampling {b['resampling']}"
        )
    items = "".join(f"<dt>{_t(k)}</dt><dd>{_t(v)}</dd>" for k, v in conv.items())
    return f"<dl class='conv'>{items}</dl>"


def html_report(
    report: Report, *, sqi: bool = False, figures: dict[str, tuple[bytes, str]] | None = None
) -> str:
    """The whole report as one self-contained HTML page (a string).

    Parameters
    ----------
    report : Report
        The analysed file (compute it with ``per_class=True`` for the worst-classes table).
    sqi : bool
        Show the square-loss section whatever the recorded loss.
    figures : dict, optional
        ``{"trajectory": (png, caption), "gram": (png, caption)}``, drawn by
        :func:`ncinspect.plots.page.page_figures` (either may be missing).
    """
    from .._version import __version__

    hidden = _hidden(report, sqi)
    name = report.file or "<arrays>"
    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>ncinspect: {_n(name)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>ncinspect report: <code>{_n(name)}</code></h1>",
        f"<p class='sub'>{len(report)} snapshot(s); ncinspect {_t(__version__)}</p>",
        "<h2>Summary</h2>",
    ]
    if len(report) > 1:
        parts.append(_compact_section(report, hidden))
    last = last_classified(report)
    if len(report) == 1:
        parts.append(_snapshot_section(report[0], hidden))
    figures = figures or {}
    if "trajectory" in figures:
        parts += ["<h2>Trajectories</h2>", _figure(*figures["trajectory"])]
    if "gram" in figures:
        parts += ["<h2>Geometry</h2>", _figure(*figures["gram"])]
    if last is not None and last.per_class:
        parts += ["<h2>Worst classes</h2>", _worst_section(last)]
    if len(report) > 1 and last is not None:
        parts += ["<h2>Every metric of the last snapshot</h2>", _snapshot_section(last, hidden)]
    parts += ["<h2>Warnings</h2>", _warnings_section(report, sqi)]
    parts += ["<h2>Conventions</h2>", _conventions_section(report)]
    parts.append("</body></html>\n")
    return "\n".join(parts)
