"""The whole path, TikTok emulator → Dagster assets → Amplitude emulator, over real HTTP."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from tiktok_amp_emulators.catalogue import DELETE

from tiktok_amp_assets import normalize
from tiktok_amp_assets.core.ad_metrics import imported_accounts
from tiktok_amp_assets.core.amplitude_contract import EVENT_TYPE
from tiktok_amp_assets.storage.import_store import ImportStore

from ..conftest import API_KEY, TOKEN, Project, ended_failed_after_delivering

EVENT_PROPERTIES = {
    "ad_account_id", "ad_group_id", "ad_group_name", "ad_id", "ad_name", "ad_platform", "campaign_id",
    "campaign_name", "ad_metrics.cost", "ad_metrics.impressions", "ad_metrics.clicks", "ad_metrics.conversions",
}  # fmt: skip
USER_PROPERTIES = {"utm_source", "utm_medium", "utm_campaign", "utm_content"}


def day_with_deleted_spend(project: Project) -> date:
    """A day on which at least one since-deleted ad spent money."""
    deleted = [ad for ad in project.catalogue.ads.values() if ad.status == DELETE]
    day = project.connection.start_date
    while day < date(2026, 11, 1):
        if any(project.catalogue.daily_metrics(ad.ad_id, day) for ad in deleted):
            return day
        day += timedelta(days=1)
    raise AssertionError("the catalogue has no deleted ad with spend")


def test_a_day_arrives_in_amplitude_exactly_once(project: Project) -> None:
    day = day_with_deleted_spend(project)
    truth = project.tiktok_truth(day)
    assert {advertiser for advertiser, _ in truth} == set(project.advertiser_ids)

    result = project.materialize(day)
    assert result.success

    assert project.amplitude_sums(day) == truth
    events = project.amplitude.counted_events(API_KEY)
    assert len(events) == len(truth)
    deleted_ad_ids = {ad.ad_id for ad in project.catalogue.ads.values() if ad.status == DELETE}
    assert deleted_ad_ids & {event["event_properties"]["ad_id"] for event in events}, (
        "deleted ads' spend is missing"
    )
    for event in events:
        ad = project.catalogue.ads[event["event_properties"]["ad_id"]]
        advertiser = project.catalogue.advertisers[ad.advertiser_id]
        properties = event["event_properties"]
        assert event["event_type"] == EVENT_TYPE
        assert EVENT_PROPERTIES <= properties.keys()
        assert set(event["user_properties"]) == USER_PROPERTIES
        assert properties["ad_platform"] == "tiktok"
        assert properties["ad_account_id"] == ad.advertiser_id
        assert properties["ad_name"] == ad.name[:1024]
        assert properties["campaign_name"] == project.catalogue.campaigns[ad.campaign_id].name[:1024]
        assert properties["ad_group_id"] == ad.adgroup_id
        assert properties["currency"] == advertiser.currency
        assert all(value for value in event["user_properties"].values())
        assert event["device_id"] == f"tiktok-ad-{ad.ad_id}"
        local = datetime.fromtimestamp(event["time"] / 1000, ZoneInfo(advertiser.display_timezone))
        assert local.date() == day
    assert len({event["insert_id"] for event in events}) == len(events)

    # The same day again: nothing new is counted, and nothing is even sent.
    requests_before = project.amplitude.requests_count()
    assert project.materialize(day).success
    assert len(project.amplitude.counted_events(API_KEY)) == len(truth)
    assert project.amplitude.requests_count() == requests_before
    results = ImportStore(project.data_dir).read_upload_results(day)
    assert results["events_planned"] == 0


def test_utms_come_from_the_landing_page_or_are_inferred(project: Project) -> None:
    day = day_with_deleted_spend(project)
    project.materialize(day)
    for event in project.amplitude.counted_events(API_KEY):
        ad = project.catalogue.ads[event["event_properties"]["ad_id"]]
        utms = event["user_properties"]
        # Set on the landing page itself, or with TikTok's URL-parameter builder (utm_params).
        set_keys = {key for key, _ in ad.utm_params}
        if "utm_source=" not in ad.landing_page.lower() and "utm_source" not in set_keys:
            assert utms["utm_source"] == "tiktok"
        if "utm_content=" not in ad.landing_page.lower() and "utm_content" not in set_keys:
            assert utms["utm_content"] == ad.name.strip()[:1024]


def test_partition_metadata_and_results_are_recorded(project: Project) -> None:
    day = day_with_deleted_spend(project)
    truth = project.tiktok_truth(day)
    project.materialize(day)
    metrics = project.instance.get_latest_materialization_event(
        dg.AssetKey(["tiktok_ads", "tiktok_ad_metrics"])
    )
    assert metrics is not None
    metadata = metrics.asset_materialization.metadata
    assert metrics.asset_materialization.partition == day.isoformat()
    assert metadata["rows"].value == len(truth)
    assert metadata["accounts"].value == 2
    assert metadata["impressions"].value == sum(int(v["impressions"]) for v in truth.values())
    upload = project.instance.get_latest_materialization_event(
        dg.AssetKey(["tiktok_ads", "amplitude_upload_results"])
    )
    assert upload.asset_materialization.metadata["events_accepted"].value == len(truth)
    results = ImportStore(project.data_dir).read_upload_results(day)
    assert results["events_accepted"] == len(truth)
    assert {event["status"] for event in results["events"]} == {"accepted"}
    assert results["requests"] and results["requests"][0]["status"] == 200


@pytest.mark.parametrize(
    "worker_processes", [False, True], ids=["in the run's process", "in worker processes"]
)
def test_a_range_run_materializes_every_day(
    project: Project, monkeypatch: pytest.MonkeyPatch, worker_processes: bool
) -> None:
    if worker_processes:  # the metrics of a long backfill are normalized in worker processes
        monkeypatch.setattr(normalize, "PARALLEL_FROM_ACCOUNT_DAYS", 1)
    first = day_with_deleted_spend(project)
    last = first + timedelta(days=2)
    assert project.materialize(first, last).success
    for asset in ("tiktok_raw_reports", "tiktok_ad_metrics", "amplitude_upload_results"):
        assert project.instance.get_materialized_partitions(dg.AssetKey(["tiktok_ads", asset])) == {
            (first + timedelta(days=offset)).isoformat() for offset in range(3)
        }
    for offset in range(3):
        day = first + timedelta(days=offset)
        assert project.amplitude_sums(day) == project.tiktok_truth(day)


def test_a_long_range_sends_as_few_requests_as_its_events_need(project: Project) -> None:
    first = date(2025, 4, 1)
    last = first + timedelta(days=34)  # three upload windows
    assert project.materialize(first, last, amplitude_config={"max_events_per_request": 97}).success
    events = len(project.amplitude.counted_events(API_KEY))
    requests = project.amplitude.request_log
    assert {entry["path"] for entry in requests} == {"/batch"}
    # Requests do not stop at window edges: only the very last one is partly filled.
    assert len(requests) == -(-events // 97)
    for offset in range(35):
        day = first + timedelta(days=offset)
        assert project.amplitude_sums(day) == project.tiktok_truth(day)


def test_revised_figures_are_corrected_without_double_counting(project: Project) -> None:
    day = day_with_deleted_spend(project)
    project.materialize(day)
    truth = project.tiktok_truth(day)
    (changed_account, changed_ad), (gone_account, gone_ad) = sorted(truth)[:2]
    project.catalogue.restate(
        changed_ad,
        day,
        {"conversion": str(int(truth[(changed_account, changed_ad)]["conversions"]) + 5), "spend": "0.50"},
    )
    project.catalogue.restate(gone_ad, day, None)

    assert project.materialize(day).success
    assert project.amplitude_sums(day) == {
        **{key: value for key, value in project.tiktok_truth(day).items()},
        (gone_account, gone_ad): dict.fromkeys(("cost", "impressions", "clicks", "conversions"), Decimal(0)),
    }
    results = ImportStore(project.data_dir).read_upload_results(day)
    assert results["events_corrections"] == 2
    counted = len(project.amplitude.counted_events(API_KEY))
    assert project.materialize(day).success
    assert len(project.amplitude.counted_events(API_KEY)) == counted


def test_one_failing_account_is_named_and_the_other_is_delivered(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed, refused = project.advertiser_ids
    project.tiktok.access_tokens[TOKEN] = {allowed}
    day = day_with_deleted_spend(project)
    check = ended_failed_after_delivering(project.materialize(day, raise_on_error=False))
    message = str(check.description)
    assert f"ad account {refused}: {day}" in message and "40001" in message and allowed not in message
    store = ImportStore(project.data_dir)
    assert store.read_raw_report(day, allowed)["report_rows"]
    assert not store.raw_report_path(day, refused).exists()
    assert project.amplitude_sums(day) == {
        key: value for key, value in project.tiktok_truth(day).items() if key[0] == allowed
    }


def test_no_secret_is_written_anywhere(project: Project, capfd: pytest.CaptureFixture[str]) -> None:
    day = day_with_deleted_spend(project)
    project.materialize(day)
    project.tiktok.access_tokens.clear()  # a revoked token: failures must not echo it either
    project.materialize(day + timedelta(days=1), raise_on_error=False)
    captured = capfd.readouterr()
    folders = (project.data_dir, Path(project.instance.root_directory))
    written = [path for folder in folders for path in folder.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in written), "the instance's event log should be among the files"
    for secret in (TOKEN, API_KEY):
        assert secret not in captured.out and secret not in captured.err
        for path in written:
            assert secret.encode() not in path.read_bytes(), path
        for run in project.instance.get_runs():
            for record in project.instance.all_logs(run.run_id):
                assert secret not in json.dumps(record.user_message)


def test_an_account_day_not_imported_is_never_taken_for_ads_removed(project: Project) -> None:
    """The restatement planner corrects to zero an ad-day TikTok no longer reports. An account whose
    day could not be imported is absent from the day's rows too, yet its ads were not removed: what
    Amplitude counted for it must stand."""
    allowed, refused = project.advertiser_ids
    day = day_with_deleted_spend(project)
    assert project.materialize(day).success
    counted_before = project.amplitude.counted_events(API_KEY)
    assert {key[0] for key in project.amplitude_sums(day)} == {allowed, refused}

    project.tiktok.refuse_account(refused, code=40001)  # access revoked before the next run
    ended_failed_after_delivering(project.materialize(day, raise_on_error=False))

    store = ImportStore(project.data_dir)
    assert imported_accounts(store.read_ad_metrics(day)) == {allowed}
    results = store.read_upload_results(day)
    assert results["events_planned"] == results["events_corrections"] == 0 and results["events"] == []
    assert project.amplitude.counted_events(API_KEY) == counted_before
    assert project.amplitude_sums(day) == project.tiktok_truth(day)

    # Readable again: the account's day is imported again and nothing is sent (Amplitude had it).
    project.tiktok.readable_again(refused)
    assert project.materialize(day).success
    assert project.amplitude.counted_events(API_KEY) == counted_before
    assert store.account_day_failures([day]) == {}
