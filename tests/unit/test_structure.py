"""Rules of the code's shape that a reader relies on: short functions, the environment read in one
module, nothing changed in a process by importing the package, and pandas only where a user gets a
DataFrame."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tiktok_amp_assets.core.ad_metrics import normalize_account_day, table_rows
from tiktok_amp_assets.core.events import daily_ad_metrics_event
from tiktok_amp_assets.pipeline import stage

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tiktok_amp_assets"
MAX_FUNCTION_LINES = 80
# The one module that reads environment variables (issue 23 folds it into a Dagster component).
ENVIRONMENT_MODULE = PACKAGE / "settings.py"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_no_function_is_longer_than_80_lines(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"  # type: ignore[operator]
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES  # type: ignore[operator]
    ]
    assert long == [], f"split into named steps: {long}"


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_the_environment_is_read_in_one_module(path: Path) -> None:
    if path == ENVIRONMENT_MODULE:
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    reads = [
        node.lineno
        for node in ast.walk(tree)
        if (isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"))
        or (isinstance(node, ast.Name) and node.id in ("environ", "getenv"))
    ]
    assert reads == [], f"read environment variables through tiktok_amp_assets.settings (lines {reads})"


# Imports every module of the package in a fresh interpreter and reports what changed in it.
_PROBE = """
import gc, json, os, pkgutil, sys, importlib
before = (dict(os.environ), gc.get_threshold())
import tiktok_amp_assets
for module in pkgutil.walk_packages(tiktok_amp_assets.__path__, "tiktok_amp_assets."):
    importlib.import_module(module.name)
changed = sorted(k for k in set(os.environ) | set(before[0]) if os.environ.get(k) != before[0].get(k))
print(json.dumps({"environment": changed, "gc": gc.get_threshold() != before[1]}))
"""


def test_importing_the_package_changes_nothing_in_the_process() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(done.stdout.splitlines()[-1]) == {"environment": [], "gc": False}


def _metrics_path_in_a_stage(items: Iterable[int]) -> Iterator[bool]:
    """What a stage process of a long range does (normalize, store, read back, build events):
    whether pandas was imported on the way."""
    raw = {
        "advertiser_id": "7",
        "stat_date": "2026-01-02",
        "advertiser_info": {"currency": "USD", "timezone": "UTC"},
        "report_rows": [
            {
                "dimensions": {"ad_id": "1", "stat_time_day": "2026-01-02 00:00:00"},
                "metrics": {"spend": "1.20", "impressions": "3", "clicks": "1", "conversion": "0",
                            "ad_name": "a", "adgroup_id": "2", "adgroup_name": "g", "campaign_id": "3",
                            "campaign_name": "c"},
            }
        ],
        "ads": [],
    }  # fmt: skip
    for _ in items:
        sink = io.BytesIO()
        pq.write_table(normalize_account_day(raw), sink)
        (row,) = table_rows(pq.read_table(io.BytesIO(sink.getvalue())))
        daily_ad_metrics_event(row)
        yield "pandas" in sys.modules


def test_a_stage_process_runs_the_metrics_path_without_pandas() -> None:
    assert list(stage(_metrics_path_in_a_stage, [1], depth=1, processes=1)) == [False]


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(ROOT)))
def test_only_the_io_manager_imports_pandas(path: Path) -> None:
    if path == PACKAGE / "io_managers.py":
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = [
        node.lineno
        for node in ast.walk(tree)
        if (
            isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "pandas" for alias in node.names)
        )
        or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "pandas")
    ]
    assert imported == []


def test_the_image_sets_the_process_settings_the_package_does_not() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "ARROW_DEFAULT_MEMORY_POOL=system" in dockerfile and "MALLOC_ARENA_MAX=1" in dockerfile
