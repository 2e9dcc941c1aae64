"""The schedule as Dagster's scheduler daemon runs it: a tick launches one run over the lookback window.

Uses Dagster's own test utilities for the daemon (internal, version-pinned with dagster itself).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.workspace.load_target import ModuleTarget
from dagster._scheduler.scheduler import launch_scheduled_runs

from tiktok_amp_assets.schedules import SCHEDULE_NAME

from ..conftest import Project

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_a_tick_imports_yesterday_and_the_lookback_window(project: Project, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TIKTOK_AMP_TIMEZONE", "UTC")
    monkeypatch.setenv("TIKTOK_AMP_LOOKBACK_DAYS", "3")
    target = ModuleTarget(
        module_name="tiktok_amp_assets.definitions",
        attribute="defs",
        working_directory=str(PROJECT_ROOT),
        location_name="tiktok_amp_assets",
    )
    (tmp_path / "daemon_home").mkdir()
    with (
        dg.instance_for_test(
            temp_dir=str(tmp_path / "daemon_home"),
            synchronous_run_coordinator=True,
            synchronous_run_launcher=True,
        ) as instance,
        create_test_daemon_workspace_context(target, instance) as workspace,
    ):
        # The schedule is on by default: the first iteration sees it, the second crosses 06:00.
        for moment in (datetime(2025, 3, 10, 5, 59, tzinfo=UTC), datetime(2025, 3, 10, 6, 1, tzinfo=UTC)):
            with freeze_time(moment):
                list(launch_scheduled_runs(workspace, logging.getLogger(__name__), moment, {}))
        runs = instance.get_runs()
        assert len(runs) == 1
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags["dagster/schedule_name"] == SCHEDULE_NAME
        assert (
            run.tags["dagster/asset_partition_range_start"],
            run.tags["dagster/asset_partition_range_end"],
        ) == (
            "2025-03-06",
            "2025-03-09",
        )
        assert instance.get_materialized_partitions(dg.AssetKey("amplitude_upload_results")) == {
            "2025-03-06", "2025-03-07", "2025-03-08", "2025-03-09",
        }  # fmt: skip
    for day in range(6, 10):
        assert project.amplitude_sums(date(2025, 3, day)) == project.tiktok_truth(date(2025, 3, day))
