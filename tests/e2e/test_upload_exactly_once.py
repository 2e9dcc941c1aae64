"""Exactly once, end to end: TikTok emulator → Dagster → Amplitude emulator, over real HTTP.

Whatever happens on the way — a process killed between two batches, throttling, server errors,
rejected events, a re-run after Amplitude has forgotten its insert_ids — Amplitude ends up counting
each of TikTok's ad-days once. Amplitude settings (small batches, short pauses, dry run) are given
as run config, as an operator would give them with ``--config-json``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
from tiktok_amp_emulators.amplitude_server import AmplitudeEmulator
from tiktok_amp_emulators.faults import Fault

from tiktok_amp_assets import upload
from tiktok_amp_assets.assets import DELIVERY_CHECK, UPLOAD_ASSET
from tiktok_amp_assets.clients.amplitude import AmplitudeClient
from tiktok_amp_assets.core.ad_metrics import table_rows
from tiktok_amp_assets.core.amplitude_contract import HTTP_V2_PATH
from tiktok_amp_assets.core.upload_plan import plan_events
from tiktok_amp_assets.storage.import_store import ImportStore, MissingPartitionError
from tiktok_amp_assets.upload import DayUploader

from ..conftest import API_KEY, Project

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DAY = date(2025, 3, 1)  # 40 ad-days in the test catalogue
BATCH = 10
FAST = {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.05, "throttle_pause_seconds": 0.05}
WRONG_KEY = "wrong-amplitude-key-5e7a9c1b3d"


def amplitude_config(**fields: Any) -> dict[str, Any]:
    """Run config for the amplitude resource: key and URL from the environment, as in definitions.py."""
    config = {"api_key": {"env": "AMPLITUDE_API_KEY"}, "api_url": {"env": "AMPLITUDE_API_URL"}, **fields}
    return {"resources": {"tiktok_ads_amplitude": {"config": config}}}


def materialize(project: Project, day: date, **fields: Any) -> dg.ExecuteInProcessResult:
    """One day, with ``fields`` set on the amplitude resource."""
    return project.materialize(day, raise_on_error=False, amplitude_config=fields)


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    return next(event for event in result.all_events if event.is_step_failure).step_failure_data.error.message


def ledger_rows(project: Project) -> list[dict[str, Any]]:
    return ImportStore(project.data_dir).ledger().rows()


def counted_ad_days(project: Project) -> list[tuple[str, str, str]]:
    return [
        (e["event_properties"]["ad_account_id"], e["event_properties"]["ad_id"], e["insert_id"])
        for e in project.amplitude.counted_events(API_KEY)
    ]


def wait_until(condition: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_crash_between_two_batches_then_a_rerun_counts_each_ad_day_once(
    project: Project, tmp_path: Path
) -> None:
    crash_between_two_batches_then_rerun(project, ImportStore(project.data_dir), tmp_path)


def crash_between_two_batches_then_rerun(project: Project, store: ImportStore, tmp_path: Path) -> None:
    """A run killed while its second request is in flight, then run again: the re-run resends
    exactly the unacknowledged events. ``store`` is where ``project.env`` keeps the state (local, or
    S3 and PostgreSQL in tests/e2e/test_cluster_state.py)."""
    truth = project.tiktok_truth(DAY)
    assert len(truth) >= 3 * BATCH
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "tiktok_amp_assets.definitions",
        "--select", "group:tiktok_ads", "--partition", DAY.isoformat(),
        "--config-json", json.dumps(amplitude_config(max_events_per_request=BATCH)),
    ]  # fmt: skip
    env = {**os.environ, **project.env, "DAGSTER_HOME": project.instance.root_directory}
    ledger = store.ledger()

    # The second request waits inside the emulator: the run is killed while it is in flight.
    project.amplitude.hold_requests(after=1)
    try:
        with (tmp_path / "first_run.log").open("w") as output:
            # A session of its own: the kill reaches Dagster's step processes too.
            first = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            try:
                wait_until(lambda: project.amplitude.held_requests == 1 or first.poll() is not None, 120)
                assert first.poll() is None, (tmp_path / "first_run.log").read_text()[-3000:]
                # The first batch's acknowledgement reaches the ledger while the second request is in
                # flight: answers are written beside the sending, so under load it may land a moment
                # after the second request went out.
                wait_until(lambda: len(ledger.counted([DAY])) == BATCH, 30)
                assert len(ledger.pending()) == len(truth) - BATCH
            finally:
                os.killpg(first.pid, signal.SIGKILL)
                first.wait(30)
    finally:
        project.amplitude.release()
    # The held request is then ingested, answered to nobody: Amplitude counted 2 batches, the ledger 1.
    wait_until(lambda: len(project.amplitude.request_log) == 2, 10)
    assert len(project.amplitude.counted_events(API_KEY)) == 2 * BATCH

    rerun = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    assert project.amplitude_sums(DAY) == truth
    counted = counted_ad_days(project)
    assert len(counted) == len(truth) == len(set(counted))
    assert {(account, ad) for account, ad, _ in counted} == set(truth)
    # The re-run resent exactly what was unacknowledged and planned nothing new; of what it resent,
    # Amplitude dropped the batch it had already counted.
    results = store.read_upload_results(DAY)
    assert results["events_resent_after_interruption"] == len(truth) - BATCH
    assert results["events_planned"] == 0
    rerun_requests = project.amplitude.request_log[2:]
    assert sum(entry["events"] for entry in rerun_requests) == len(truth) - BATCH
    assert sum(entry["ingested"] for entry in rerun_requests) == len(truth) - 2 * BATCH


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clocked_project(project: Project, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """The project pointed at an Amplitude emulator whose clock the test moves."""
    with AmplitudeEmulator(api_keys={API_KEY}, clock=clock) as amplitude:
        monkeypatch.setenv("AMPLITUDE_API_URL", amplitude.url)
        project.env["AMPLITUDE_API_URL"] = amplitude.url
        project.amplitude = amplitude
        yield project


def test_a_rerun_after_amplitudes_7_day_window_counts_nothing_new(
    clocked_project: Project, clock: FakeClock
) -> None:
    project = clocked_project
    assert materialize(project, DAY).success
    counted = counted_ad_days(project)
    requests_before = project.amplitude.requests_count()

    clock.now += 8 * 86_400
    assert materialize(project, DAY).success

    assert counted_ad_days(project) == counted
    assert project.amplitude.requests_count() == requests_before
    assert project.amplitude_sums(DAY) == project.tiktok_truth(DAY)
    # Amplitude really has forgotten: the same event sent again by anyone else would count twice.
    event = {k: v for k, v in project.amplitude.counted_events(API_KEY)[0].items() if k != "endpoint"}
    body = {"api_key": API_KEY, "events": [event]}
    again = requests.post(f"{project.amplitude.url}{HTTP_V2_PATH}", json=body, timeout=5)
    assert again.status_code == 200
    assert len(project.amplitude.counted_events(API_KEY)) == len(counted) + 1


def test_a_dry_run_records_the_events_sends_nothing_and_leaves_the_ledger_alone(project: Project) -> None:
    assert materialize(project, DAY - timedelta(days=1)).success  # a ledger with rows in it
    rows_before = ledger_rows(project)
    requests_before = project.amplitude.requests_count()

    assert materialize(project, DAY, dry_run=True).success

    assert project.amplitude.requests_count() == requests_before
    assert ledger_rows(project) == rows_before
    store = ImportStore(project.data_dir)
    assert not store.upload_results_path(DAY).exists()  # no real upload results for an unsent day
    results = store.read_upload_results(DAY, dry_run=True)
    truth = project.tiktok_truth(DAY)
    assert results["dry_run"] is True and results["endpoint"] is None
    assert results["events_planned"] == results["events_new"] == len(truth)
    assert {event["status"] for event in results["events"]} == {"dry_run"}
    # Nothing reached Amplitude, so the day stays missing: an observation records the dry run.
    upload_asset = project.connection.asset_key(UPLOAD_ASSET)
    assert DAY.isoformat() not in project.instance.get_materialized_partitions(upload_asset)
    observation = project.instance.fetch_observations(upload_asset, limit=1).records[0].asset_observation
    assert observation is not None and observation.partition == DAY.isoformat()
    assert observation.metadata["dry_run"].value is True
    assert observation.metadata["events_planned"].value == len(truth)
    # The cost as an exact decimal string (its value TikTok's, whether TikTok wrote "60.000" or "60.00").
    assert {
        (e["ad_account_id"], e["ad_id"]): {**e["sent"], "cost": Decimal(e["sent"]["cost"])}
        for e in results["events"]
    } == {
        key: {"cost": v["cost"], **{n: int(v[n]) for n in ("impressions", "clicks", "conversions")}}
        for key, v in truth.items()
    }

    # A dry run of a day already counted plans nothing, and leaves what the real run sent on record.
    sent_before = store.upload_results_path(DAY - timedelta(days=1)).read_bytes()
    assert materialize(project, DAY - timedelta(days=1), dry_run=True).success
    assert store.read_upload_results(DAY - timedelta(days=1), dry_run=True)["events_planned"] == 0
    assert store.upload_results_path(DAY - timedelta(days=1)).read_bytes() == sent_before
    assert project.amplitude.requests_count() == requests_before


def test_the_delivery_check_alone_asks_for_the_upload_and_sends_nothing(project: Project) -> None:
    assert materialize(project, DAY - timedelta(days=1)).success
    requests_before = project.amplitude.requests_count()
    check_only = project.defs.resolve_job_def(project.connection.job_name).get_subset(
        asset_selection=set(),
        asset_check_selection={dg.AssetCheckKey(project.connection.asset_key(UPLOAD_ASSET), DELIVERY_CHECK)},
    )
    result = check_only.execute_in_process(
        partition_key=DAY.isoformat(), instance=project.instance, raise_on_error=False
    )
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert f"materialize tiktok_ads/{UPLOAD_ASSET}" in failure.step_failure_data.error.message
    assert project.amplitude.requests_count() == requests_before


def test_rejected_events_fail_the_run_with_a_summary_and_the_rest_is_delivered(project: Project) -> None:
    truth = project.tiktok_truth(DAY)
    refused_account, refused_ad = sorted(truth)[0]
    project.amplitude.silenced_devices.add(f"tiktok-ad-{refused_ad}")

    result = materialize(project, DAY, max_events_per_request=BATCH, **FAST)

    assert not result.success
    assert "Amplitude rejected 1 events; the rest were delivered" in failure_message(result)
    delivered = {key: figures for key, figures in truth.items() if key != (refused_account, refused_ad)}
    assert project.amplitude_sums(DAY) == delivered
    results = ImportStore(project.data_dir).read_upload_results(DAY)
    assert results["events_rejected"] == 1 and results["events_accepted"] == len(truth) - 1
    [rejected] = [event for event in results["events"] if event["status"] == "rejected"]
    assert (rejected["ad_id"], rejected["reason"]) == (refused_ad, "device silenced by Amplitude")

    # Once Amplitude takes the device again, a re-run sends that one event and nothing else.
    project.amplitude.silenced_devices.clear()
    requests_before = project.amplitude.requests_count()
    assert materialize(project, DAY, max_events_per_request=BATCH, **FAST).success
    assert project.amplitude.requests_count() == requests_before + 1
    assert project.amplitude_sums(DAY) == truth
    assert len(counted_ad_days(project)) == len(truth)


def test_devices_over_amplitudes_daily_quota_are_parked_reported_and_sent_by_the_next_run(
    project: Project,
) -> None:
    # A quota of 1 event per device a day: the first day's events go through, and each ad's second
    # day puts its device over the quota in Amplitude's eyes.
    first = DAY - timedelta(days=1)
    project.amplitude.daily_quota_per_id = 1
    config = {"max_events_per_request": BATCH, **FAST}
    result = project.materialize(first, DAY, raise_on_error=False, amplitude_config=config)

    assert result.success, "the other devices' events were delivered; the run goes on"
    store = ImportStore(project.data_dir)
    days = (first, DAY)
    results = {day: store.read_upload_results(day) for day in days}
    assert all(results[day]["endpoint"] == "/batch" for day in days)
    parked = [event for day in days for event in results[day]["events"] if event["status"] == "parked"]
    accepted = [event for day in days for event in results[day]["events"] if event["status"] == "accepted"]
    assert parked and accepted
    assert sum(results[day]["events_parked"] for day in days) == len(parked)
    assert all(
        "daily quota" in event["reason"] and f"tiktok-ad-{event['ad_id']}" in event["reason"]
        for event in parked
    )
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == DELIVERY_CHECK]
    assert not check.passed and "daily quota" in check.description

    # A day later (here: the quota lifted), the next run sends the parked events first and all is in.
    project.amplitude.daily_quota_per_id = 500_000
    rerun = project.materialize(first, DAY, raise_on_error=False, amplitude_config=config)
    assert rerun.success
    [check] = [e for e in rerun.get_asset_check_evaluations() if e.check_name == DELIVERY_CHECK]
    assert check.passed
    for day in days:
        assert project.amplitude_sums(day) == project.tiktok_truth(day)
    assert len(counted_ad_days(project)) == sum(len(project.tiktok_truth(day)) for day in days)


def test_the_http_v2_pace_set_on_the_resource_holds_and_batch_runs_are_not_paced(project: Project) -> None:
    # 20 events/s for a day of 40 ad-days: requests of 20 events, a second apart on the emulator's
    # clock (real time: load can only slow it, so only the upper bound is asserted).
    assert materialize(project, DAY, http_v2_events_per_second=20).success
    arrivals = project.amplitude.request_log
    assert [(entry["path"], entry["events"]) for entry in arrivals] == [(HTTP_V2_PATH, 20)] * 2
    assert arrivals[1]["events"] / (arrivals[1]["at"] - arrivals[0]["at"]) <= 20 * 1.02
    assert project.amplitude_sums(DAY) == project.tiktok_truth(DAY)

    # A range goes through Batch, which Amplitude gives no project-wide figure: full requests.
    project.amplitude.reset()
    first = DAY + timedelta(days=1)
    result = project.materialize(
        first, first + timedelta(days=1), amplitude_config={"http_v2_events_per_second": 20}
    )
    assert result.success
    [request] = project.amplitude.request_log
    assert request["events"] == sum(len(project.tiktok_truth(first + timedelta(days=n))) for n in (0, 1))


def test_throttling_server_errors_and_splits_on_the_way_change_nothing(project: Project) -> None:
    faults = (Fault.RATE_LIMIT, Fault.ACCEPTED_THEN_ERROR, Fault.PAYLOAD_TOO_LARGE, Fault.DROP_CONNECTION)
    for fault in (*faults, Fault.SERVER_ERROR):
        project.amplitude.faults.inject(fault)

    assert materialize(project, DAY, max_events_per_request=BATCH, **FAST).success

    truth = project.tiktok_truth(DAY)
    assert project.amplitude_sums(DAY) == truth
    counted = counted_ad_days(project)
    assert len(counted) == len(truth) == len(set(counted))
    assert {429, 500, 413} <= {entry["status"] for entry in project.amplitude.request_log}
    results = ImportStore(project.data_dir).read_upload_results(DAY)
    assert results["events_accepted"] == len(truth)
    assert {429, 500, 413, None, 200} <= {record["status"] for record in results["requests"]}


def test_the_api_key_stays_out_of_logs_errors_files_and_the_request_log(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    truth = project.tiktok_truth(DAY)
    project.amplitude.silenced_devices.add(f"tiktok-ad-{sorted(truth)[0][1]}")
    for fault in (Fault.RATE_LIMIT, Fault.ACCEPTED_THEN_ERROR, Fault.DROP_CONNECTION):
        project.amplitude.faults.inject(fault)
    rejected_run = materialize(project, DAY, max_events_per_request=BATCH, **FAST)
    # A wrong key, which Amplitude quotes back in its error.
    project.amplitude.echo_invalid_api_key = True
    refused_run = materialize(project, DAY + timedelta(days=1), api_key=WRONG_KEY)

    assert not rejected_run.success and not refused_run.success
    assert "Invalid API key: <redacted>" in failure_message(refused_run)
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    files = [path for path in project.data_dir.rglob("*") if path.is_file()]
    assert any(path.name.startswith("amplitude_ledger.sqlite") for path in files)
    assert any(path.parent.name == "uploads" for path in files)
    run_logs = [
        record.user_message
        for run in project.instance.get_runs()
        for record in project.instance.all_logs(run.run_id)
    ]
    for key in (API_KEY, WRONG_KEY):
        assert key not in caplog.text
        assert key not in failure_message(rejected_run) + failure_message(refused_run)
        assert key not in repr(project.amplitude.request_log)
        assert key not in json.dumps(run_logs)
        for path in files:
            assert key.encode() not in path.read_bytes(), path


def test_events_left_pending_for_a_later_day_are_reported_with_that_day_once(project: Project) -> None:
    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)]
    assert project.materialize(days[0], days[-1], amplitude_config={"dry_run": True}).success
    store = ImportStore(project.data_dir)
    # A run that stopped after recording the last day's first events, before sending them.
    last_day_events = plan_events(
        table_rows(store.read_ad_metrics(days[-1])), {}, [days[-1]], policy="correct"
    )
    store.ledger().record_pending(event.ad_day_event for event in last_day_events[:5])

    client = AmplitudeClient(project.amplitude.url, API_KEY, max_events=BATCH)
    uploader = DayUploader(store, client, policy="correct", logger=logging.getLogger(__name__))
    with closing(client):
        finished = list(uploader.upload(days))

    # Each day finished once, after its own events were planned: the resent events, opened for the
    # last day at the start, did not finish that day early.
    assert [day.report.day for day in finished] == days
    assert [day.results["events_resent_after_interruption"] for day in finished] == [0, 0, 5]
    assert finished[-1].results["events_planned"] == len(last_day_events) - 5
    for day in days:
        assert project.amplitude_sums(day) == project.tiktok_truth(day)


def test_a_long_range_planned_in_its_own_process_counts_each_ad_day_once(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long ranges are planned in a spawned process (upload.py): same outcome, and a day that
    cannot be planned stops the range there (days before it finished once their requests went out;
    the events still waiting for a full request stay pending, for the next run)."""
    days = [DAY + timedelta(days=offset) for offset in range(4)]
    assert project.materialize(days[0], days[-1], amplitude_config={"dry_run": True}).success
    store = ImportStore(project.data_dir)
    monkeypatch.setattr(upload, "PLANNING_PROCESS_FROM_DAYS", 2)
    store.metrics_path(days[2]).rename(store.metrics_path(days[2]).with_suffix(".moved"))

    client = AmplitudeClient(project.amplitude.url, API_KEY, max_events=BATCH)
    uploader = DayUploader(store, client, policy="correct", logger=logging.getLogger(__name__))
    finished: list[date] = []
    with closing(client), pytest.raises(MissingPartitionError, match=f"{days[2]}"):
        finished.extend(day.report.day for day in uploader.upload(days))
    assert finished == days[: len(finished)] and days[2] not in finished
    assert finished, "the first day's requests were full: it was finished before the failure"

    store.metrics_path(days[2]).with_suffix(".moved").rename(store.metrics_path(days[2]))
    client = AmplitudeClient(project.amplitude.url, API_KEY, max_events=BATCH)
    uploader = DayUploader(store, client, policy="correct", logger=logging.getLogger(__name__))
    with closing(client):
        assert [day.report.day for day in uploader.upload(days)] == days
    for day in days:
        assert project.amplitude_sums(day) == project.tiktok_truth(day)
    assert len(project.amplitude.counted_events(API_KEY)) == sum(len(project.tiktok_truth(d)) for d in days)
