"""The README is the door to docs/: every page is listed under "Where to go next", every relative link
of the README and the pages leads to a file that exists, and every test a page names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)\s]*)?\)")
TEST_FILE = re.compile(r"`(tests/[\w/]+\.py)")


def where_to_go_next() -> str:
    text = README.read_text(encoding="utf-8")
    assert "\n## Where to go next\n" in text
    return text.split("\n## Where to go next\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_each_page_has_its_line_under_where_to_go_next(page: Path) -> None:
    lines = [line for line in where_to_go_next().splitlines() if line.startswith("- ")]
    assert [line for line in lines if line.startswith(f"- [docs/{page.name}](docs/{page.name})")], (
        f"add one line for docs/{page.name} to the README's 'Where to go next'"
    )


@pytest.mark.parametrize("page", [README, *PAGES], ids=lambda page: page.name)
def test_relative_links_lead_to_files_that_exist(page: Path) -> None:
    links = [link for link in LINK.findall(page.read_text(encoding="utf-8")) if "://" not in link]
    missing = [link for link in links if not (page.parent / link).exists()]
    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.name)
def test_the_tests_a_page_names_exist(page: Path) -> None:
    named = TEST_FILE.findall(page.read_text(encoding="utf-8"))
    assert [name for name in named if not (ROOT / name).exists()] == []
