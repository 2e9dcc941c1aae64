"""docs/currencies.md: each fact about the ECB's feed and Amplitude's currencies names its source and
a test, and every test it names exists (as docs/api_facts.md's facts do)."""

from __future__ import annotations

from pathlib import Path

from .test_api_facts import TEST_REFERENCE

ROOT = Path(__file__).resolve().parents[2]


def test_each_currency_fact_names_a_source_and_a_test_that_exists() -> None:
    text = (ROOT / "docs" / "currencies.md").read_text(encoding="utf-8")
    section = text.split("## Facts and their sources", 1)[1].split("\n## ", 1)[0]
    rows = [
        line
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith(("| fact ", "| --- "))
    ]
    assert len(rows) >= 5
    for row in rows:
        fact, source, _code, _emulator, tests = (cell.strip() for cell in row.strip("|").split(" | "))
        assert source, f"no source for: {fact}"
        for file_name, test_name in TEST_REFERENCE.findall(tests):
            (path,) = (ROOT / "tests").rglob(file_name)
            assert f"def {test_name}(" in path.read_text(encoding="utf-8"), (
                f"{file_name}::{test_name} does not exist"
            )
