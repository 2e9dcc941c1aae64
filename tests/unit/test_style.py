"""One format and one import order for the whole repository (ruff, configured in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("command", "fix"),
    [(("format", "--check", "."), "ruff format ."), (("check", "."), "ruff check --fix .")],
    ids=["format", "lint"],
)
def test_the_code_follows_the_configured_style(command: tuple[str, ...], fix: str) -> None:
    result = ruff(*command)
    assert result.returncode == 0, f"run `{fix}` and review the change:\n{result.stdout}{result.stderr}"
