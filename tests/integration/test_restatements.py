"""TikTok revises past days; Amplitude follows, exactly, and asset checks guard every step."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time

from tiktok_amp_assets.assets import DELIVERY_CHECK, RECONCILIATION_CHECK, TIMEZONE_CHECK
from tiktok_amp_assets.storage.files import atomic_write_json
from tiktok_amp_assets.storage.import_store import ImportStore

from ..conftest import API_KEY, Project, ended_failed_after_delivering

DAY = date(2025, 3, 3)
ZERO = dict.fromkeys(("cost", "impressions", "clicks", "conversions"), Decimal(0))


def restate_three_ads(project: Project, day: date) -> tuple[str, str, str]:
    """Late conversions on one ad, an invalid-traffic refund on another, a third ad-day gone."""
    truth = project.tiktok_truth(day)
    (_, more_conversions), (_, refunded), (_, gone) = sorted(truth)[:3]
    before = {ad_id: figures for (_, ad_id), figures in truth.items()}
    project.catalogue.restate(
        more_conversions, day, {"conversion": str(int(before[more_conversions]["conversions"]) + 7)}
    )
    project.catalogue.restate(
        refunded, day, {"spend": str((before[refunded]["cost"] * Decimal("0.6")).quantize(Decimal("0.01")))}
    )
    project.catalogue.restate(gone, day, None)
    return more_conversions, refunded, gone


def check_result(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    return next(
        evaluation for evaluation in result.get_asset_check_evaluations() if evaluation.check_name == name
    )


def test_the_next_scheduled_run_corrects_amplitude_to_the_new_figures(project: Project) -> None:
    first = project.materialize(DAY)
    assert check_result(first, DELIVERY_CHECK).passed
    counted_before = len(project.amplitude.counted_events(API_KEY))
    _, _, gone = restate_three_ads(project, DAY)
    gone_key = next(key for key in project.amplitude_sums(DAY) if key[1] == gone)

    # The daily tick re-imports the lookback window: DAY is inside it.
    rerun = project.materialize(DAY - timedelta(days=2), DAY + timedelta(days=1))
    assert rerun.success and check_result(rerun, DELIVERY_CHECK).passed
    assert project.amplitude_sums(DAY) == {**project.tiktok_truth(DAY), gone_key: ZERO}
    corrections = project.amplitude.counted_events(API_KEY)[counted_before:]
    day_corrections = [
        event for event in corrections if event["event_properties"]["stat_date"] == DAY.isoformat()
    ]
    assert len(day_corrections) == 3
    assert all(event["event_properties"]["ad_metrics_correction"] is True for event in day_corrections)
    assert all(event["event_properties"]["ad_metrics_revision"] == 1 for event in day_corrections)

    results = ImportStore(project.data_dir).read_upload_results(DAY)
    assert results["events_corrections"] == 3 and results["events_new"] == 0
    changed = [account for account in results["accounts"].values() if account["before"] != account["after"]]
    assert changed, "the results should show the day's figures before and after"
    day_event = next(
        record.asset_materialization
        for record in project.instance.fetch_materializations(
            dg.AssetKey(["tiktok_ads", "amplitude_upload_results"]), limit=20
        ).records
        if record.asset_materialization.partition == DAY.isoformat()
    )
    assert "changes" in day_event.metadata
    assert day_event.metadata["events_corrections"].value == 3

    # A further run finds nothing to send.
    requests = project.amplitude.requests_count()
    assert project.materialize(DAY).success
    assert project.amplitude.requests_count() == requests


def test_freeze_never_sends_changes_for_a_counted_day(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOK_AMP_RESTATEMENT_POLICY", "freeze")
    project.rebuild()
    first_truth = project.tiktok_truth(DAY)
    project.materialize(DAY)
    requests = project.amplitude.requests_count()
    restate_three_ads(project, DAY)
    result = project.materialize(DAY)
    assert result.success and check_result(result, DELIVERY_CHECK).passed
    assert project.amplitude.requests_count() == requests
    assert project.amplitude_sums(DAY) == first_truth


def test_a_raw_day_whose_rows_were_not_examined_is_not_uploaded_and_the_other_account_is(
    project: Project,
) -> None:
    job = project.defs.resolve_job_def("tiktok_ads_job")
    raw_only = project.defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey(["tiktok_ads", "tiktok_raw_reports"])}
    )
    assert raw_only.execute_in_process(partition_key=DAY.isoformat(), instance=project.instance).success
    # A partial import: one report row lost between TikTok and the store, after the extraction
    # checked the answer (so the raw day carries no judgement of the gap).
    store = ImportStore(project.data_dir)
    advertiser_id, other = project.advertiser_ids
    raw = store.read_raw_report(DAY, advertiser_id)
    raw["report_rows"] = raw["report_rows"][1:]
    atomic_write_json(store.raw_report_path(DAY, advertiser_id), raw)

    result = job.get_subset(
        asset_selection={
            dg.AssetKey(["tiktok_ads", "tiktok_ad_metrics"]),
            dg.AssetKey(["tiktok_ads", "amplitude_upload_results"]),
        }
    ).execute_in_process(partition_key=DAY.isoformat(), instance=project.instance, raise_on_error=False)
    check = ended_failed_after_delivering(result)
    assert f"ad account {advertiser_id}: {DAY}" in str(check.description)
    assert "were not examined when fetched" in str(check.description)
    assert check_result(result, RECONCILIATION_CHECK).passed  # no gap delivered
    sums = project.amplitude_sums(DAY)
    assert {key[0] for key in sums} == {other}
    assert sums == {key: value for key, value in project.tiktok_truth(DAY).items() if key[0] == other}


def test_the_time_zone_check_warns_about_an_account_whose_days_end_later(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Partitions in the US account's own zone: the Tokyo account's days are over before theirs, nothing
    # to warn about.
    monkeypatch.setenv("TIKTOK_AMP_TIMEZONE", "Etc/GMT+8")
    project.rebuild()
    result = project.materialize(DAY)
    assert check_result(result, TIMEZONE_CHECK).passed
    assert check_result(result, RECONCILIATION_CHECK).passed

    # Partitions in Tokyo: the schedule could read a US day before it is over.
    monkeypatch.setenv("TIKTOK_AMP_TIMEZONE", "Asia/Tokyo")
    project.rebuild()
    evaluation = check_result(project.materialize(DAY), TIMEZONE_CHECK)
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    los_angeles = next(
        a for a in project.catalogue.advertisers.values() if a.display_timezone == "America/Los_Angeles"
    )
    assert evaluation.description and los_angeles.advertiser_id in evaluation.description
    tokyo = next(a for a in project.catalogue.advertisers.values() if a.display_timezone == "Asia/Tokyo")
    assert tokyo.advertiser_id not in evaluation.description


def test_freshness_check_fails_when_yesterday_is_missing_after_the_deadline(project: Project) -> None:
    checks = [check for check in project.defs.asset_checks if "freshness_check" in str(check.check_keys)]
    assert checks, "the freshness check should be defined"
    job = dg.define_asset_job("freshness_probe", selection=dg.AssetSelection.checks(*checks))
    defs = dg.Definitions.merge(project.defs, dg.Definitions(jobs=[job]))
    # 20:00 in Los Angeles on the day after DAY: DAY is complete and the 10:00 deadline has passed.
    late = datetime.combine(DAY + timedelta(days=2), datetime.min.time(), UTC) + timedelta(hours=4)
    probe = defs.resolve_job_def("freshness_probe")
    with freeze_time(late):
        missing = probe.execute_in_process(instance=project.instance, raise_on_error=False)
    assert not missing.get_asset_check_evaluations()[0].passed

    project.materialize(DAY)
    with freeze_time(late):
        fresh = probe.execute_in_process(instance=project.instance, raise_on_error=False)
    assert fresh.get_asset_check_evaluations()[0].passed
