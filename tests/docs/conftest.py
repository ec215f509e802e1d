"""Report the documentation examples that the tests skip, at the end of every session."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reports = [
        r
        for r in terminalreporter.stats.get("passed", [])
        if "test_examples_run" in getattr(r, "nodeid", "")
    ]
    if not reports:
        return
    skipped = [
        value
        for report in reports
        for name, value in report.user_properties
        if name == "skipped_example"
    ]
    terminalreporter.write_line(
        f"documentation examples: {len(skipped)} blocks skipped in {len(reports)} files"
        + "".join(f"\n  {line}" for line in skipped)
    )
