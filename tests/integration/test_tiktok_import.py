"""TikTok's harder answers through the whole path, TikTok emulator → Dagster assets → Amplitude
emulator, over real HTTP: a window TikTok finds too large (40067), an account above TikTok's
per-query ad cap, an account whose time zone is a fixed offset (``Etc/GMT+8``), ads whose landing
pages come as a list, an ad-day of all zeros. Each ends with Amplitude holding exactly TikTok's
figures."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
from tiktok_amp_emulators.catalogue import DELETE

from tiktok_amp_assets.assets import RECONCILIATION_CHECK, TIMEZONE_CHECK
from tiktok_amp_assets.core.utms import landing_page_utms
from tiktok_amp_assets.storage.import_store import ImportStore

from ..conftest import API_KEY, Project
from .test_pipeline import day_with_deleted_spend
from .test_restatements import check_result

WINTER, SUMMER = date(2025, 1, 15), date(2025, 7, 15)


def run_figure(project: Project, name: str) -> int:
    event = project.instance.get_latest_materialization_event(
        dg.AssetKey(["tiktok_ads", "tiktok_raw_reports"])
    )
    assert event is not None and event.asset_materialization is not None
    return int(event.asset_materialization.metadata[name].value)


def assert_amplitude_equals_tiktok(project: Project, first: date, days: int) -> None:
    for offset in range(days):
        day = first + timedelta(days=offset)
        assert project.amplitude_sums(day) == project.tiktok_truth(day), day


def test_a_window_tiktok_finds_too_large_is_imported_in_halves(project: Project) -> None:
    project.tiktok.query_too_large_days = 2  # ad-level reports over more than 2 days: code 40067
    first = day_with_deleted_spend(project)
    result = project.materialize(first, first + timedelta(days=4))
    assert result.success
    assert check_result(result, RECONCILIATION_CHECK).passed
    assert_amplitude_equals_tiktok(project, first, 5)
    # 5 days -> 3 + 2 -> (2 + 1) + 2, for each account.
    assert run_figure(project, "run_tiktok_narrowed_queries") == 2 * 2
    answered = [
        entry
        for entry in project.tiktok.request_log
        if entry["params"].get("data_level") == "AUCTION_AD" and entry["code"] == 0
    ]
    assert all(
        (date.fromisoformat(e["params"]["end_date"]) - date.fromisoformat(e["params"]["start_date"])).days < 2
        for e in answered
    )


def test_an_account_above_the_ad_cap_is_imported_completely(project: Project) -> None:
    project.tiktok.max_ads_per_query = 8  # each account has 30 ads, more than 8 deliver every day
    first = day_with_deleted_spend(project)
    result = project.materialize(first, first + timedelta(days=2))
    assert result.success
    assert check_result(result, RECONCILIATION_CHECK).passed
    # Every ad-day, deleted ads included, counted once in Amplitude.
    assert_amplitude_equals_tiktok(project, first, 3)
    counted = {event["event_properties"]["ad_id"] for event in project.amplitude.counted_events(API_KEY)}
    assert counted & {ad.ad_id for ad in project.catalogue.ads.values() if ad.status == DELETE}
    expected = sum(len(project.tiktok_truth(first + timedelta(days=n))) for n in range(3))
    assert len(project.amplitude.counted_events(API_KEY)) == expected
    assert run_figure(project, "run_tiktok_windows_in_parts") == 2  # the one window of each account
    # The reports said service_type AUCTION and asked for no currency (the emulator refuses it).
    reports = [
        e["params"] for e in project.tiktok.request_log if e["path"].endswith("/report/integrated/get/")
    ]
    assert reports and all(p["service_type"] == "AUCTION" for p in reports)
    assert not any("currency" in json.loads(p["metrics"]) for p in reports)


def acme(project: Project) -> str:
    (advertiser_id,) = [a for a, ad in project.catalogue.advertisers.items() if ad.timezone == "Etc/GMT+8"]
    return advertiser_id


@pytest.mark.parametrize("day", [WINTER, SUMMER], ids=["winter", "summer"])
def test_an_etc_gmt_account_keeps_its_days_and_local_noon(project: Project, day: date) -> None:
    advertiser_id = acme(project)
    assert project.materialize(day).success
    raw = ImportStore(project.data_dir).read_raw_report(day, advertiser_id)
    assert raw["advertiser_info"]["timezone"] == "Etc/GMT+8"
    assert {row["dimensions"]["stat_time_day"] for row in raw["report_rows"]} == {f"{day} 00:00:00"}
    events = [
        event
        for event in project.amplitude.counted_events(API_KEY)
        if event["event_properties"]["ad_account_id"] == advertiser_id
    ]
    assert events and {event["event_properties"]["stat_date"] for event in events} == {day.isoformat()}
    # Noon at UTC-8, summer and winter alike (no daylight saving): 20:00 UTC of the same day.
    noon = datetime(day.year, day.month, day.day, 20, tzinfo=UTC)
    assert {event["time"] for event in events} == {int(noon.timestamp() * 1000)}
    assert project.amplitude_sums(day) == project.tiktok_truth(day)


def test_the_time_zone_check_reads_etc_gmt_names(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    advertiser_id = acme(project)
    # Partitions in Los Angeles: UTC-8 in winter but UTC-7 in summer, so the account closes its day
    # an hour later half the year.
    los_angeles = check_result(project.materialize(WINTER), TIMEZONE_CHECK)
    assert not los_angeles.passed
    assert f"ad account {advertiser_id} reports days in Etc/GMT+8 (UTC-8 all year)" in (
        los_angeles.description or ""
    )
    monkeypatch.setenv("TIKTOK_AMP_TIMEZONE", "Etc/GMT+8")
    project.rebuild()
    # The same zone as the account's, and Tokyo's days end first: nothing to warn about.
    same_zone = check_result(project.materialize(WINTER + timedelta(days=1)), TIMEZONE_CHECK)
    assert same_zone.passed and same_zone.description is None
    assert same_zone.metadata["partitions_timezone"].value == "Etc/GMT+8"


def test_utms_are_read_from_landing_page_urls(project: Project) -> None:
    catalogue = project.catalogue
    listed = [
        ad
        for ad in catalogue.ads.values()
        if ad.landing_page_urls and "utm_" in ad.landing_page.lower() and not ad.utm_params
    ]
    assert listed, "the catalogue has no ad whose UTMs come as a list"
    day, ad = next(
        (project.connection.start_date + timedelta(days=n), ad)
        for n in range(200)
        for ad in listed
        if catalogue.daily_metrics(ad.ad_id, project.connection.start_date + timedelta(days=n))
    )
    assert project.materialize(day).success
    (event,) = [
        event
        for event in project.amplitude.counted_events(API_KEY)
        if event["event_properties"]["ad_id"] == ad.ad_id
    ]
    expected = landing_page_utms(
        ad.landing_page,
        campaign_name=catalogue.campaigns[ad.campaign_id].name,
        ad_name=ad.name,
        adgroup_name=catalogue.adgroups[ad.adgroup_id].name,
        campaign_id=ad.campaign_id,
        adgroup_id=ad.adgroup_id,
        ad_id=ad.ad_id,
    )
    assert "utm_source" not in expected.inferred
    assert event["user_properties"] == {
        key: getattr(expected, key)[:1024]
        for key in ("utm_source", "utm_medium", "utm_campaign", "utm_content")
    }


def test_an_ad_day_of_all_zeros_arrives_as_tiktok_sent_it(project: Project) -> None:
    """Real answers hold ad-level daily rows of all zeros (Airbyte's expected_records.jsonl,
    ads_reports_daily): such a row is an ad-day like any other, sent with its zeros."""
    day = date(2025, 3, 1)
    catalogue = project.catalogue
    advertiser_id = project.advertiser_ids[0]
    ad = next(ad for ad in catalogue.ads_of(advertiser_id) if catalogue.daily_metrics(ad.ad_id, day))
    catalogue.restate(ad.ad_id, day, {"spend": "0", "impressions": "0", "clicks": "0", "conversion": "0"})
    assert catalogue.daily_metrics(ad.ad_id, day) == {
        "spend": "0.000",
        "impressions": "0",
        "clicks": "0",
        "conversion": "0",
    }
    assert project.materialize(day).success
    (event,) = [
        event
        for event in project.amplitude.counted_events(API_KEY)
        if event["event_properties"]["ad_id"] == ad.ad_id
    ]
    properties = event["event_properties"]
    assert [
        properties[f"ad_metrics.{name}"] for name in ("cost", "impressions", "clicks", "conversions")
    ] == [
        0,
        0,
        0,
        0,
    ]
    assert_amplitude_equals_tiktok(project, day, 1)
