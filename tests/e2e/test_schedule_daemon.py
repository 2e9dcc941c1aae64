"""The schedule as Dagster's scheduler daemon runs it: a tick launches one run over the lookback window;
the run retry daemon re-executes a run that could not import an account.

Uses Dagster's own test utilities for the daemon (internal, version-pinned with dagster itself).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import (
    consume_new_runs_for_automatic_reexecution,
)
from dagster._scheduler.scheduler import launch_scheduled_runs
from tiktok_amp_emulators.amplitude_server import AmplitudeEmulator
from tiktok_amp_emulators.catalogue import AdvertiserSpec, generate_catalogue
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from ..conftest import API_KEY, START_DATE, TOKEN, Project

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def daemon_target() -> ModuleTarget:
    """The code location as the daemon loads it (its settings read from the environment then)."""
    return ModuleTarget(
        module_name="tiktok_amp_assets.definitions",
        attribute="defs",
        working_directory=str(PROJECT_ROOT),
        location_name="tiktok_amp_assets",
    )


def test_a_tick_imports_yesterday_and_the_lookback_window(project: Project, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TIKTOK_AMP_TIMEZONE", "UTC")
    monkeypatch.setenv("TIKTOK_AMP_LOOKBACK_DAYS", "3")
    target = daemon_target()
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
        assert run.tags["dagster/schedule_name"] == "tiktok_ads_daily"
        assert (
            run.tags["dagster/asset_partition_range_start"],
            run.tags["dagster/asset_partition_range_end"],
        ) == (
            "2025-03-06",
            "2025-03-09",
        )
        assert instance.get_materialized_partitions(dg.AssetKey(["tiktok_ads", "amplitude_upload_results"])) == {
            "2025-03-06", "2025-03-07", "2025-03-08", "2025-03-09",
        }  # fmt: skip
    for day in range(6, 10):
        assert project.amplitude_sums(date(2025, 3, day)) == project.tiktok_truth(date(2025, 3, day))


ACCOUNTS = [f"70000000000000001{index:02d}" for index in range(30)]


def test_one_account_out_for_a_day_costs_the_other_29_nothing_and_the_retry_imports_only_its_days(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daily tick of 30 accounts while one of them cannot be read: the 29 others are delivered by
    that run, which ends failed naming the one; Dagster's run retry daemon re-executes all its steps
    (the tags the run gave itself) and the retry fetches and sends exactly that account's days."""
    catalogue = generate_catalogue(
        seed=5,
        advertisers=[
            AdvertiserSpec(advertiser_id, f"Client {n}", "USD", "UTC")
            for n, advertiser_id in enumerate(ACCOUNTS)
        ],
        ads_per_advertiser=4,
        start=START_DATE,
    )
    out = ACCOUNTS[17]
    days = [date(2025, 3, 7), date(2025, 3, 8), date(2025, 3, 9)]  # yesterday and a lookback of 2
    (tmp_path / "daemon_home").mkdir()
    with (
        TikTokEmulator(catalogue, access_tokens={TOKEN: None}) as tiktok,
        AmplitudeEmulator(api_keys={API_KEY}) as amplitude,
    ):
        env = {
            "TIKTOK_ACCESS_TOKEN": TOKEN,
            "TIKTOK_ADVERTISER_IDS": ",".join(ACCOUNTS),
            "TIKTOK_API_URL": tiktok.url,
            "AMPLITUDE_API_KEY": API_KEY,
            "AMPLITUDE_API_URL": amplitude.url,
            "TIKTOK_AMP_START_DATE": START_DATE.isoformat(),
            "TIKTOK_AMP_TIMEZONE": "UTC",
            "TIKTOK_AMP_LOOKBACK_DAYS": "2",
            "TIKTOK_AMP_DATA_DIR": str(tmp_path / "data"),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        tiktok.refuse_account(out, code=40001, endpoints=["report"])

        def counted() -> Counter[tuple[str, str, str]]:
            return Counter(
                (p["ad_account_id"], p["ad_id"], p["stat_date"])
                for p in (event["event_properties"] for event in amplitude.counted_events(API_KEY))
            )

        truth = {
            (ad.advertiser_id, ad.ad_id, day.isoformat())
            for day in days
            for advertiser_id in ACCOUNTS
            for ad in catalogue.ads_of(advertiser_id)
            if catalogue.daily_metrics(ad.ad_id, day) is not None
        }
        with (
            dg.instance_for_test(
                temp_dir=str(tmp_path / "daemon_home"),
                synchronous_run_coordinator=True,
                synchronous_run_launcher=True,
                # The run retries of the project's own instance file (dagster.yaml), as dagster dev uses it.
                overrides={
                    "run_retries": yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())["run_retries"]
                },
            ) as instance,
            create_test_daemon_workspace_context(daemon_target(), instance) as workspace,
        ):
            for moment in (datetime(2025, 3, 10, 5, 59, tzinfo=UTC), datetime(2025, 3, 10, 6, 1, tzinfo=UTC)):
                with freeze_time(moment):
                    list(launch_scheduled_runs(workspace, logging.getLogger(__name__), moment, {}))
            (tick_run,) = instance.get_runs()
            assert tick_run.status == dg.DagsterRunStatus.FAILURE
            # The 29 others are in Amplitude, each ad-day once; nothing of the one out.
            assert counted() == Counter({key: 1 for key in truth if key[0] != out})
            check = next(
                record.get_dagster_event().event_specific_data
                for record in instance.all_logs(
                    tick_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
                )
                if record.get_dagster_event().event_specific_data.check_name == "every_account_day_imported"
            )
            assert not check.passed
            assert check.description.startswith("1 of 30 ad accounts could not be imported")
            assert f"ad account {out}: {days[0]} to {days[-1]} (3 days)" in check.description

            # The account is readable again by the time the retry daemon looks at the failed run.
            tiktok.readable_again(out)
            reports_before = len(tiktok.request_log)
            sent_before = amplitude.requests_count()
            list(
                consume_new_runs_for_automatic_reexecution(
                    workspace, [instance.get_run_record_by_id(tick_run.run_id)], logging.getLogger(__name__)
                )
            )
            retry = next(run for run in instance.get_runs() if run.run_id != tick_run.run_id)
            assert retry.status == dg.DagsterRunStatus.SUCCESS
            assert retry.tags["dagster/parent_run_id"] == tick_run.run_id
            assert retry.tags["dagster/retry_strategy"] == "ALL_STEPS"
            # The retry asked TikTok about the one account only, and sent only its ad-days.
            asked = {
                entry["advertiser_id"]
                for entry in tiktok.request_log[reports_before:]
                if entry["advertiser_id"]
            }
            assert asked == {out}
            assert counted() == Counter(dict.fromkeys(truth, 1))
            sent = sum(request["events"] for request in amplitude.request_log[sent_before:])
            assert sent == sum(1 for key in truth if key[0] == out)
            assert instance.get_materialized_partitions(
                dg.AssetKey(["tiktok_ads", "amplitude_upload_results"])
            ) == {day.isoformat() for day in days}
