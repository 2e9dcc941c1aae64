"""docs/api_facts.md: each TikTok fact names a test, and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_REFERENCE = re.compile(r"`(test_\w+\.py)(?:::(test_\w+))?`")


def tiktok_rows() -> list[str]:
    text = (ROOT / "docs" / "api_facts.md").read_text(encoding="utf-8")
    section = text.split("## TikTok API for Business v1.3", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    return [row for row in rows if not row.startswith(("| fact ", "| --- "))]


def test_each_tiktok_fact_names_a_test_that_exists() -> None:
    rows = tiktok_rows()
    assert len(rows) >= 20
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split(" | ")]
        assert len(cells) == 5, row
        references = TEST_REFERENCE.findall(cells[4])
        assert references, f"no test named for: {cells[0]}"
        for file_name, test_name in references:
            source = (ROOT / "tests" / file_name).read_text(encoding="utf-8")
            assert not test_name or f"def {test_name}(" in source, f"{file_name}::{test_name} does not exist"
