"""The code location as users run it: the `dagster` CLI in its own process, over real HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from tiktok_amp_assets.storage.import_store import ImportStore

from .conftest import API_KEY, Project

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def dagster_cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **project.env, "DAGSTER_HOME": project.instance.root_directory}
    return subprocess.run(
        [sys.executable, "-m", "dagster", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_materialize_one_partition_and_a_range_from_the_cli(project: Project) -> None:
    day = date(2025, 3, 1)
    single = dagster_cli(
        project,
        "asset",
        "materialize",
        "-m",
        "tiktok_amp_assets.definitions",
        "--select",
        "*",
        "--partition",
        day.isoformat(),
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert project.amplitude_sums(day) == project.tiktok_truth(day)

    first, last = day + timedelta(days=1), day + timedelta(days=3)
    ranged = dagster_cli(
        project,
        "asset", "materialize", "-m", "tiktok_amp_assets.definitions", "--select", "*",
        "--partition-range", f"{first.isoformat()}...{last.isoformat()}",
    )  # fmt: skip
    assert ranged.returncode == 0, ranged.stderr[-3000:]
    instance = dg.DagsterInstance.from_config(project.instance.root_directory)
    expected = {(day + timedelta(days=offset)).isoformat() for offset in range(4)}
    for asset in ("tiktok_raw_reports", "tiktok_ad_metrics", "amplitude_upload_results"):
        assert instance.get_materialized_partitions(dg.AssetKey(asset)) == expected
    for offset in range(1, 4):
        assert project.amplitude_sums(day + timedelta(days=offset)) == project.tiktok_truth(
            day + timedelta(days=offset)
        )
    # One run for the whole range, as a single-run backfill launches it.
    assert len(instance.get_runs()) == 2
    assert all(
        event["event_properties"]["ad_platform"] == "tiktok"
        for event in project.amplitude.counted_events(API_KEY)
    )


def test_the_workspace_loads_the_code_location(project: Project) -> None:
    listed = dagster_cli(project, "definitions", "validate", "-w", "workspace.yaml")
    assert listed.returncode == 0, listed.stderr[-3000:]


def test_the_readme_dry_run_config_sends_nothing(project: Project, tmp_path: Path) -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    config = readme.split("```yaml\nresources:\n  amplitude:", 1)[1].split("```", 1)[0]
    config_file = tmp_path / "dry-run.yaml"
    config_file.write_text("resources:\n  amplitude:" + config)
    day = date(2025, 3, 1)
    result = dagster_cli(
        project,
        "asset", "materialize", "-m", "tiktok_amp_assets.definitions", "--select", "*",
        "--partition", day.isoformat(), "-c", str(config_file),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert project.amplitude.requests_count() == 0
    results = ImportStore(project.data_dir).read_upload_results(day, dry_run=True)
    assert results["dry_run"] is True and results["events_planned"] == len(project.tiktok_truth(day))


def test_a_run_without_credentials_fails_in_one_line_naming_them(project: Project) -> None:
    env = {
        name: value
        for name, value in project.env.items()
        if name not in ("TIKTOK_ACCESS_TOKEN", "AMPLITUDE_API_KEY")
    }
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "tiktok_amp_assets.definitions",
         "--select", "*", "--partition", "2025-03-01"],
        cwd=PROJECT_ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in project.env}, **env,
             "DAGSTER_HOME": project.instance.root_directory},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "TIKTOK_ACCESS_TOKEN, AMPLITUDE_API_KEY are not set: set them in the environment" in output
    assert "PostProcessingError" not in output and "You have attempted to fetch" not in output
    assert project.tiktok.request_log == []
