"""The Daily Ad Metrics event: ids, time, properties, corrections and limits."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tiktok_amp_assets.core.ad_metrics import AdDayMetrics
from tiktok_amp_assets.core.amplitude_contract import (
    AD_PLATFORM,
    EVENT_TYPE,
    MAX_STRING_LENGTH,
    MIN_ID_LENGTH,
)
from tiktok_amp_assets.core.events import (
    ad_day_insert_id,
    ad_device_id,
    daily_ad_metrics_event,
    event_time_ms,
    joined_event,
    split_event,
)
from tiktok_amp_assets.core.metric_values import MetricTotals
from tiktok_amp_assets.core.utms import UTM_KEYS

CONTRACT_EVENT_PROPERTIES = {
    "ad_account_id",
    "ad_group_id",
    "ad_group_name",
    "ad_id",
    "ad_name",
    "ad_platform",
    "campaign_id",
    "campaign_name",
    "currency",
    "advertiser_name",
    "stat_date",
}
METRIC_PROPERTIES = {
    "ad_metrics.cost",
    "ad_metrics.impressions",
    "ad_metrics.clicks",
    "ad_metrics.conversions",
}


def make_row(**overrides: Any) -> AdDayMetrics:
    fields: dict[str, Any] = {
        "advertiser_id": "7000000000000000001",
        "advertiser_name": "Acme Shop",
        "ad_id": "1790000000000000002",
        "stat_date": date(2026, 11, 23),
        "ad_name": "Video A",
        "adgroup_id": "1810000000000000001",
        "adgroup_name": "US 18-34",
        "campaign_id": "1800000000000000001",
        "campaign_name": "Black Friday",
        "currency": "USD",
        "timezone": "America/Los_Angeles",
        "cost": Decimal("12.30"),
        "impressions": 1000,
        "clicks": 12,
        "conversions": 3,
        "landing_page_url": "https://shop.example/?utm_source=tiktok",
        "utm_source": "tiktok",
        "utm_medium": "paid_social",
        "utm_campaign": "Black Friday",
        "utm_content": "Video A",
        "utm_inferred": ["utm_campaign", "utm_content", "utm_medium"],
    }
    return AdDayMetrics(**(fields | overrides))


def test_event_shape() -> None:
    event = daily_ad_metrics_event(make_row())
    assert event == {
        "event_type": EVENT_TYPE,
        "device_id": "tiktok-ad-1790000000000000002",
        "insert_id": ad_day_insert_id("7000000000000000001", "1790000000000000002", date(2026, 11, 23)),
        "time": event_time_ms(date(2026, 11, 23), "America/Los_Angeles"),
        "event_properties": {
            "ad_account_id": "7000000000000000001",
            "ad_group_id": "1810000000000000001",
            "ad_group_name": "US 18-34",
            "ad_id": "1790000000000000002",
            "ad_name": "Video A",
            "ad_platform": "tiktok",
            "campaign_id": "1800000000000000001",
            "campaign_name": "Black Friday",
            "ad_metrics.cost": 12.3,
            "ad_metrics.impressions": 1000,
            "ad_metrics.clicks": 12,
            "ad_metrics.conversions": 3,
            "currency": "USD",
            "advertiser_name": "Acme Shop",
            "stat_date": "2026-11-23",
        },
        "user_properties": {
            "utm_source": "tiktok",
            "utm_medium": "paid_social",
            "utm_campaign": "Black Friday",
            "utm_content": "Video A",
        },
    }
    assert "platform" not in event
    assert AD_PLATFORM == "tiktok"
    json.dumps(event, allow_nan=False)


def test_cost_is_a_float_and_counts_are_ints() -> None:
    properties = daily_ad_metrics_event(make_row(cost=Decimal("12.30")))["event_properties"]
    assert type(properties["ad_metrics.cost"]) is float and properties["ad_metrics.cost"] == 12.3
    for name in ("ad_metrics.impressions", "ad_metrics.clicks", "ad_metrics.conversions"):
        assert type(properties[name]) is int


def test_none_metrics_are_left_out() -> None:
    properties = daily_ad_metrics_event(make_row(cost=None, conversions=None, clicks=0))["event_properties"]
    assert "ad_metrics.cost" not in properties
    assert "ad_metrics.conversions" not in properties
    assert properties["ad_metrics.clicks"] == 0  # a reported zero is sent
    assert None not in properties.values()


def test_correction_replaces_metrics_and_sends_all_four() -> None:
    correction = MetricTotals(cost=Decimal("-0.45"), impressions=10, clicks=0, conversions=0)
    event = daily_ad_metrics_event(make_row(conversions=None), metrics=correction, revision=2)
    properties = event["event_properties"]
    assert {key: properties[key] for key in METRIC_PROPERTIES} == {
        "ad_metrics.cost": -0.45,
        "ad_metrics.impressions": 10,
        "ad_metrics.clicks": 0,
        "ad_metrics.conversions": 0,
    }
    assert properties["ad_metrics_correction"] is True
    assert properties["ad_metrics_revision"] == 2
    assert event["insert_id"] == ad_day_insert_id(
        "7000000000000000001", "1790000000000000002", date(2026, 11, 23), 2
    )
    assert event["insert_id"] != daily_ad_metrics_event(make_row())["insert_id"]


def test_revision_zero_has_no_correction_marker() -> None:
    properties = daily_ad_metrics_event(make_row())["event_properties"]
    assert "ad_metrics_correction" not in properties and "ad_metrics_revision" not in properties


def test_device_id() -> None:
    assert ad_device_id("1790000000000000002") == "tiktok-ad-1790000000000000002"
    assert len(ad_device_id("1")) >= MIN_ID_LENGTH
    with pytest.raises(ValueError):
        ad_device_id("")


def test_insert_id_is_deterministic_and_bounded() -> None:
    first = ad_day_insert_id("7000000000000000001", "1790000000000000002", date(2026, 11, 23))
    assert first == ad_day_insert_id("7000000000000000001", "1790000000000000002", date(2026, 11, 23), 0)
    assert first.startswith("tiktok-") and len(first) <= 64


def test_insert_id_is_stable_across_processes() -> None:
    # hash() of a str changes per process (PYTHONHASHSEED); the insert id must not.
    code = (
        "from datetime import date; from tiktok_amp_assets.core.events import ad_day_insert_id; "
        "print(ad_day_insert_id('7000000000000000001', '1790000000000000002', date(2026, 11, 23), 1))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
            cwd=Path(__file__).parents[1],
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {ad_day_insert_id("7000000000000000001", "1790000000000000002", date(2026, 11, 23), 1)}


def test_insert_ids_differ_per_revision_ad_day_and_account() -> None:
    day = date(2026, 11, 23)
    ids = {
        ad_day_insert_id("7000000000000000001", "1790000000000000002", day, revision)
        for revision in range(50)
    }
    ids |= {
        ad_day_insert_id("7000000000000000001", "1790000000000000003", day),
        ad_day_insert_id("7000000000000000001", "1790000000000000002", day + timedelta(days=1)),
        ad_day_insert_id("7000000000000000009", "1790000000000000002", day),
    }
    assert len(ids) == 53
    with pytest.raises(ValueError):
        ad_day_insert_id("7000000000000000001", "1790000000000000002", day, -1)


@pytest.mark.parametrize(
    "tz", ["Pacific/Kiritimati", "America/Los_Angeles", "Asia/Tokyo", "UTC", "Pacific/Pago_Pago"]
)
@pytest.mark.parametrize("day", [date(2026, 11, 23), date(2026, 3, 8), date(2026, 11, 1), date(2024, 2, 29)])
def test_event_time_is_local_noon_inside_the_day(tz: str, day: date) -> None:
    ms = event_time_ms(day, tz)
    local = datetime.fromtimestamp(ms / 1000, tz=ZoneInfo(tz))
    assert local.date() == day
    assert (local.hour, local.minute, local.second) == (12, 0, 0)
    assert isinstance(ms, int)


def test_event_time_values() -> None:
    # Kiritimati is UTC+14: local noon is 22:00 UTC the day before.
    assert event_time_ms(date(2026, 11, 23), "Pacific/Kiritimati") == int(
        datetime(2026, 11, 22, 22, tzinfo=UTC).timestamp() * 1000
    )
    assert event_time_ms(date(2026, 11, 23), "UTC") == 1795435200000
    # Noon stays on the same calendar day for a project less than 12 h away from the account
    # (Los Angeles is UTC-8: London is 8 h away, Honolulu 2 h, Tokyo 17 h).
    ms = event_time_ms(date(2026, 11, 23), "America/Los_Angeles")
    for project_tz in ("Europe/London", "Pacific/Honolulu", "America/New_York", "Etc/GMT-3"):
        assert datetime.fromtimestamp(ms / 1000, tz=ZoneInfo(project_tz)).date() == date(2026, 11, 23)
    assert datetime.fromtimestamp(ms / 1000, tz=ZoneInfo("Asia/Tokyo")).date() == date(2026, 11, 24)


def test_unknown_timezone_raises() -> None:
    with pytest.raises(ZoneInfoNotFoundError):
        event_time_ms(date(2026, 11, 23), "Mars/Olympus")


def test_long_unicode_names_are_cut_by_characters() -> None:
    name = "広告🎉é" * 500  # 2,000 characters, many of them multi-byte in UTF-8
    assert len(name) == 2000
    event = daily_ad_metrics_event(make_row(ad_name=name, campaign_name=name, utm_campaign=name))
    for value in (
        event["event_properties"]["ad_name"],
        event["event_properties"]["campaign_name"],
        event["user_properties"]["utm_campaign"],
    ):
        assert len(value) == MAX_STRING_LENGTH
        assert value == name[:MAX_STRING_LENGTH]
        value.encode("utf-8")  # no broken character
    assert json.loads(json.dumps(event))["event_properties"]["ad_name"] == name[:MAX_STRING_LENGTH]


def test_event_properties_are_flat() -> None:
    event = daily_ad_metrics_event(make_row())
    assert not any(isinstance(value, (dict, list)) for value in event["event_properties"].values())


_ids = st.from_regex(r"[0-9]{1,19}", fullmatch=True)
_names = st.text(min_size=1, max_size=1500)
_counts = st.one_of(st.none(), st.integers(min_value=0, max_value=10**12))
_rows = st.builds(
    make_row,
    advertiser_id=_ids,
    advertiser_name=st.text(max_size=50),
    ad_id=_ids,
    stat_date=st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
    ad_name=_names,
    adgroup_name=_names,
    campaign_name=_names,
    timezone=st.sampled_from(
        [
            "Pacific/Kiritimati",
            "Pacific/Pago_Pago",
            "America/Los_Angeles",
            "UTC",
            "Etc/GMT+8",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
        ]
    ),
    cost=st.one_of(st.none(), st.decimals(min_value=0, max_value=10**9, places=2)),
    impressions=_counts,
    clicks=_counts,
    conversions=_counts,
    utm_campaign=_names,
    utm_content=_names,
)


@given(_rows, st.integers(min_value=0, max_value=100))
def test_any_valid_row_gives_a_serializable_contract_event(row: AdDayMetrics, revision: int) -> None:
    event = daily_ad_metrics_event(row, revision=revision)
    text = json.dumps(event, allow_nan=False)
    assert json.loads(text) == event
    assert set(event) == {
        "event_type",
        "device_id",
        "insert_id",
        "time",
        "event_properties",
        "user_properties",
    }
    assert set(event["event_properties"]) >= CONTRACT_EVENT_PROPERTIES
    assert set(event["user_properties"]) == set(UTM_KEYS)
    for value in list(event["event_properties"].values()) + list(event["user_properties"].values()):
        assert not isinstance(value, str) or len(value) <= MAX_STRING_LENGTH
    reported = {
        "ad_metrics.cost": row.cost,
        "ad_metrics.impressions": row.impressions,
        "ad_metrics.clicks": row.clicks,
        "ad_metrics.conversions": row.conversions,
    }
    sent = {key for key in METRIC_PROPERTIES if key in event["event_properties"]}
    assert sent == {key for key, value in reported.items() if value is not None}
    local = datetime.fromtimestamp(event["time"] / 1000, tz=ZoneInfo(row.timezone))
    assert local.date() == row.stat_date


@given(
    _rows,
    st.builds(
        MetricTotals,
        cost=st.decimals(min_value=-(10**6), max_value=10**6, places=2),
        impressions=st.integers(-(10**6), 10**6),
        clicks=st.integers(-(10**6), 10**6),
        conversions=st.integers(-(10**6), 10**6),
    ),
)
def test_any_correction_event_is_serializable(row: AdDayMetrics, correction: MetricTotals) -> None:
    event = daily_ad_metrics_event(row, metrics=correction, revision=1)
    json.dumps(event, allow_nan=False)
    assert set(event["event_properties"]) >= METRIC_PROPERTIES
    assert event["event_properties"]["ad_metrics.cost"] == float(correction.cost)


@given(_rows, st.integers(min_value=0, max_value=100))
def test_an_event_split_for_the_ledger_joins_back_to_the_same_event(row: AdDayMetrics, revision: int) -> None:
    event = daily_ad_metrics_event(row, revision=revision)
    description, own = split_event(event)
    assert joined_event(description, own) == event
    # JSON in between, as the ledger stores both parts.
    assert joined_event(json.loads(json.dumps(description)), json.loads(json.dumps(own))) == event


def test_an_ads_events_of_every_day_and_revision_share_one_description() -> None:
    first = daily_ad_metrics_event(make_row())
    later = daily_ad_metrics_event(
        make_row(stat_date=date(2025, 3, 2), cost=Decimal("9.99")),
        metrics=MetricTotals(Decimal("-1.5"), -10, -1, 0),
        revision=3,
    )
    assert split_event(first)[0] == split_event(later)[0]
    own = split_event(later)[1]
    assert own["insert_id"] == later["insert_id"] and own["time"] == later["time"]
    assert own["event_properties"] == {
        "stat_date": "2025-03-02",
        "ad_metrics.cost": -1.5,
        "ad_metrics.impressions": -10,
        "ad_metrics.clicks": -1,
        "ad_metrics.conversions": 0,
        "ad_metrics_correction": True,
        "ad_metrics_revision": 3,
    }
    renamed = daily_ad_metrics_event(make_row(ad_name="Spring sale v2"))
    assert split_event(renamed)[0] != split_event(first)[0]
