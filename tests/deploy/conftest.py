"""The Docker tier's phase timings, and how its interrupted runs failed, printed after the test
session's results (whatever pytest captured), so CI's log shows where the tier's minutes went."""

from __future__ import annotations

import pytest

from .docker_deployment import NOTES, PHASES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not PHASES:
        return
    terminalreporter.section("Docker deployment tier: phase timings")
    for name, seconds in PHASES:
        terminalreporter.write_line(f"{seconds:7.1f} s  {name}")
    for note in NOTES:
        terminalreporter.write_line(note)
