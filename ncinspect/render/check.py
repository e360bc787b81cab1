"""Formatters for ``ncinspect check`` results: rich table, JSON, JUnit XML, GitHub annotations.

Each takes a :class:`~ncinspect.check.CheckResult` and returns text (the table returns a rich
renderable); none prints or decides an exit code.
"""

from __future__ import annotations

import json

from ..check import CheckResult, Outcome
from .table import fmt

__all__ = ["check_table", "summary_line", "to_json", "to_junit", "to_github", "to_text", "render"]

_TOOL = "ncinspect check"


def summary_line(result: CheckResult) -> str:
    """``3 rule(s), 5 check(s): 4 passed, 1 failed`` (plain text)."""
    n_fail = len(result.failures)
    return (
        f"{len(result.rules)} rule(s), {len(result.outcomes)} check(s): "
        f"{len(result.outcomes) - n_fail} passed, {n_fail} failed"
    )


def check_table(result: CheckResult):
    """A rich table (rule, snapshot, value, bound, pass/fail), then each failure's reason."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    config = f"  config: {result.config}" if result.config else ""
    layer = "" if result.layer == "penultimate" else f"  layer: {result.layer}"
    # a line of its own, not the table's title, which would wrap at the table's width
    header = Text.assemble((str(result.file), "bold"), f"{layer}{config}")
    table = Table()
    for col in ("rule", "snapshot", "value", "bound", "result"):
        table.add_column(col, justify="right" if col in ("value", "bound") else "left")
    for o in result.outcomes:
        verdict = "[green]pass[/green]" if o.passed else "[bold red]FAIL[/bold red]"
        # a threshold's bound as the rule text writes it; a trend's (the first value) measured
        if o.bound is None:
            bound = ""
        else:
            bound = fmt(o.bound) if o.rule.is_trend else o.rule.bound_text
        table.add_row(o.rule.text, o.target, fmt(o.value), bound, verdict)
    reasons = [
        Text.assemble(("FAIL ", "bold red"), f"{_case_name(o)}: {o.message}")
        for o in result.failures
    ]
    colour = "green" if result.passed else "bold red"
    return Group(header, table, *reasons, Text(summary_line(result), style=colour))


def to_json(result: CheckResult) -> str:
    """The result as JSON with sorted keys (null for undefined values)."""
    return json.dumps(result.to_dict(), sort_keys=True, indent=2, allow_nan=False) + "\n"


def _case_name(o: Outcome) -> str:
    return f"{o.rule.text} [{o.target}]"


def to_junit(result: CheckResult) -> str:
    """JUnit XML: one test case per rule and snapshot (or trajectory), failures with a message."""
    import xml.etree.ElementTree as ET

    n, n_fail = len(result.outcomes), len(result.failures)
    counts = {"tests": str(n), "failures": str(n_fail), "errors": "0", "skipped": "0"}
    root = ET.Element("testsuites", name=_TOOL, **counts)
    suite = ET.SubElement(root, "testsuite", name=f"{_TOOL}: {result.file}", **counts)
    if result.config:
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="config", value=result.config)
    for o in result.outcomes:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"ncinspect.check.{o.rule.metric}",
            name=_case_name(o),
            time="0",
        )
        if not o.passed:
            failure = ET.SubElement(case, "failure", message=o.message, type="CheckFailed")
            failure.text = f"{o.rule.text} failed on {o.target} in {result.file}: {o.message}"
        else:
            ET.SubElement(case, "system-out").text = o.message
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def to_github(result: CheckResult) -> str:
    """GitHub Actions workflow commands: ``::error title=...::...`` per failure, then a notice."""
    lines = [
        f"::error title={_escape_property(f'{_TOOL}: {o.rule.text}')}::"
        f"{_escape_data(f'{o.target} in {result.file}: {o.message}')}"
        for o in result.failures
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
    Console(file=buf, width=width, color_system=None, highlight=False).print(check_table(result))
    return buf.getvalue()


def render(result: CheckResult, fmt_name: str) -> str:
    """The text of ``result`` as ``table`` (plain text), ``json``, ``junit`` or ``github``."""
    writers = {"table": to_text, "json": to_json, "junit": to_junit, "github": to_github}
    return writers[fmt_name](result)
