"""Formatters for ``ncinspect check`` results: rich table, JSON, JUnit XML, GitHub annotations.

Each takes a :class:`~ncinspect.check.CheckResult` and returns text (the table returns a rich
renderable); none prints or decides an exit code.
"""

from __future__ import annotations

import json

from ..check import CheckResult, Outcome
from ..text import NAME_LIMIT, TEXT_LIMIT, cut, json_safe, line_start
from .layout import column, fit
from .safe import markup, plain, xml_text
from .table import fmt

__all__ = [
    "check_table",
    "check_parts",
    "render_check",
    "summary_line",
    "to_json",
    "to_junit",
    "to_github",
    "to_text",
    "render",
]

_TOOL = "ncinspect check"


def summary_line(result: CheckResult) -> str:
    """``3 rule(s), 5 check(s): 4 passed, 1 failed`` (plain text)."""
    n_fail = len(result.failures)
    return (
        f"{len(result.rules)} rule(s), {len(result.outcomes)} check(s): "
        f"{len(result.outcomes) - n_fail} passed, {n_fail} failed"
    )


def check_parts(result: CheckResult, width: int | None = None) -> list:
    """The renderables of :func:`check_table`, the table fitted to ``width`` when given.

    Names from the file (snapshot paths, the file name, rule texts) are shown literally with
    control characters escaped; no number is cut at any width (render.layout).
    """
    from rich.table import Table
    from rich.text import Text

    config = f"  config: {plain(result.config)}" if result.config else ""
    layer = "" if result.layer == "penultimate" else f"  layer: {plain(cut(result.layer))}"
    # a line of its own, not the table's title, which would wrap at the table's width
    header = Text.assemble((plain(line_start(result.file)), "bold"), f"{layer}{config}")
    table = Table()
    column(table, "rule", "key")
    column(table, "snapshot", "key")
    column(table, "value", "value", justify="right")
    column(table, "bound", "value", justify="right")
    column(table, "result", "value")
    for o in result.outcomes:
        verdict = "[green]pass[/green]" if o.passed else "[bold red]FAIL[/bold red]"
        # a threshold's bound as the rule text writes it; a trend's (the first value) measured
        if o.bound is None:
            bound = ""
        else:
            bound = fmt(o.bound) if o.rule.is_trend else markup(o.rule.bound_text)
        target = markup(o.target, NAME_LIMIT)
        table.add_row(markup(o.rule.text), target, fmt(o.value), bound, verdict)
    reasons = [
        Text.assemble(("FAIL ", "bold red"), plain(f"{_shown_case_name(o)}: {o.message}"))
        for o in result.failures
    ]
    # a note names snapshots from the file (one being written, skipped): cut as tables cut
    notes = [Text.assemble(("note ", "yellow"), plain(cut(n, TEXT_LIMIT))) for n in result.notes]
    colour = "green" if result.passed else "bold red"
    body = [table] if width is None else fit(table, width)
    return [header, *body, *reasons, *notes, Text(summary_line(result), style=colour)]


def check_table(result: CheckResult, width: int | None = None):
    """A rich table (rule, snapshot, value, bound, pass/fail), then each failure's reason."""
    from rich.console import Group

    return Group(*check_parts(result, width))


def render_check(result: CheckResult, console) -> None:
    """Print the check table fitted to the console: lines whole when not a terminal."""
    from rich.text import Text

    for part in check_parts(result, console.width):
        if isinstance(part, Text):
            console.print(part, soft_wrap=not console.is_terminal)
        else:
            console.print(part)


def to_json(result: CheckResult) -> str:
    """The result as JSON with sorted keys (null for undefined values); the ``[`` of a
    ``##[`` inside a string is written ``\\u005b`` (:func:`ncinspect.text.json_safe`)."""
    text = json.dumps(result.to_dict(), sort_keys=True, indent=2, allow_nan=False)
    return json_safe(text) + "\n"


def _case_name(o: Outcome) -> str:
    return f"{o.rule.text} [{o.target}]"


def _shown_case_name(o: Outcome) -> str:
    """:func:`_case_name` for people (the table, GitHub annotations): a snapshot path from
    the file cut to :data:`~ncinspect.text.NAME_LIMIT` characters, the cut said; JSON and
    JUnit (case names must stay distinct) keep it whole."""
    return f"{o.rule.text} [{cut(o.target, NAME_LIMIT)}]"


def to_junit(result: CheckResult) -> str:
    """JUnit XML: one test case per rule and snapshot (or trajectory), failures with a message."""
    import xml.etree.ElementTree as ET

    n, n_fail = len(result.outcomes), len(result.failures)
    counts = {"tests": str(n), "failures": str(n_fail), "errors": "0", "skipped": "0"}
    x = xml_text  # names from the file may hold characters XML 1.0 forbids
    root = ET.Element("testsuites", name=_TOOL, **counts)
    suite = ET.SubElement(root, "testsuite", name=x(f"{_TOOL}: {result.file}"), **counts)
    if result.config:
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="config", value=x(result.config))
    for o in result.outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=x(f"ncinspect.check.{o.rule.metric}"),
            name=x(_case_name(o)),
            time="0",
        )
        if not o.passed:
            failure = ET.SubElement(case, "failure", message=x(o.message), type="CheckFailed")
            failure.text = x(f"{o.rule.text} failed on {o.target} in {result.file}: {o.message}")
        else:
            ET.SubElement(case, "system-out").text = x(o.message)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _escape_data(text: str) -> str:
    text = plain(text)  # no raw terminal control reaches the log
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(result: CheckResult) -> str:
    """GitHub Actions workflow commands: ``::error title=...::...`` per failure, then a notice."""
    lines = [
        f"::error title={_escape_property(f'{_TOOL}: {o.rule.text}')}::"
        f"{_escape_data(f'{cut(o.target, NAME_LIMIT)} in {result.file}: {o.message}')}"
        for o in result.failures
    ]
    lines += [
        f"::warning title={_escape_property(_TOOL)}::{_escape_data(cut(n, TEXT_LIMIT))}"
        for n in result.notes
    ]
    level = "notice" if result.passed else "error"
    lines.append(
        f"::{level} title={_escape_property(_TOOL)}::"
        f"{_escape_data(f'{result.file}: {summary_line(result)}')}"
    )
    return "\n".join(lines) + "\n"


def to_text(result: CheckResult, width: int = 160) -> str:
    """The table as plain text (no colour), for ``--format table --output PATH``."""
    import io

    from rich.console import Console

    buf = io.StringIO()
    render_check(result, Console(file=buf, width=width, color_system=None, highlight=False))
    return buf.getvalue()


def render(result: CheckResult, fmt_name: str) -> str:
    """The text of ``result`` as ``table`` (plain text), ``json``, ``junit`` or ``github``."""
    writers = {"table": to_text, "json": to_json, "junit": to_junit, "github": to_github}
    return writers[fmt_name](result)
