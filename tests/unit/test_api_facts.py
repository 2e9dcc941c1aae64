"""docs/api_facts.md: each fact, TikTok's and Amplitude's, names a test, and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_REFERENCE = re.compile(r"`(test_\w+\.py)(?:::(test_\w+))?`")


def fact_rows(heading: str) -> list[str]:
    text = (ROOT / "docs" / "api_facts.md").read_text(encoding="utf-8")
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [row for row in rows if not row.startswith(("| fact ", "| --- "))]


@pytest.mark.parametrize(
    ("heading", "at_least"),
    [("## TikTok API for Business v1.3", 20), ("## Amplitude ingestion", 15)],
)
def test_each_fact_names_a_test_that_exists(heading: str, at_least: int) -> None:
    rows = fact_rows(heading)
    assert len(rows) >= at_least
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 5, row
        references = TEST_REFERENCE.findall(cells[4])
        assert references, f"no test named for: {cells[0]}"
        for file_name, test_name in references:
            (path,) = (ROOT / "tests").rglob(file_name)  # in whichever tier it lives
            source = path.read_text(encoding="utf-8")
            assert not test_name or f"def {test_name}(" in source, f"{file_name}::{test_name} does not exist"
