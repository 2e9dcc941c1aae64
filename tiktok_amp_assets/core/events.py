"""The Amplitude ``Daily Ad Metrics`` event for one ad-day: the contract with Amplitude's dashboards.

The event has the shape of Amplitude's own TikTok Ads source, so the Ad Performance dashboard of
Out-of-the-box Marketing Analytics reads it unchanged: flat event properties ``ad_metrics.cost``,
``ad_metrics.impressions``, ``ad_metrics.clicks``, ``ad_metrics.conversions``, ``ad_account_id``,
``ad_group_id``, ``ad_group_name``, ``ad_id``, ``ad_name``, ``ad_platform``, ``campaign_id``,
``campaign_name`` (plus ``currency``, ``advertiser_name`` and ``stat_date``), and user properties
``utm_source``, ``utm_medium``, ``utm_campaign``, ``utm_content``.

Restatements: TikTok revises a day's figures for days and weeks. A correction is sent as another
event for the same ad-day whose ``ad_metrics.*`` are the difference (current - already sent), with
``revision`` > 0 and ``ad_metrics_correction: true``, so sums over the ad-day come out right while
the first import stays untouched.
"""

from __future__ import annotations

import functools
import hashlib
import math
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tiktok_amp_assets.core.ad_metrics import AdDayMetrics
from tiktok_amp_assets.core.amplitude_contract import AD_PLATFORM, EVENT_TYPE, MAX_STRING_LENGTH
from tiktok_amp_assets.core.metric_values import MetricTotals

DEVICE_ID_PREFIX = "tiktok-ad-"
INSERT_ID_PREFIX = "tiktok-"
# 7 + 48 = 55 characters: well under 64, and 192 bits of hash leave no room for collisions.
_INSERT_ID_HASH_CHARS = 48

COST = "ad_metrics.cost"
IMPRESSIONS = "ad_metrics.impressions"
CLICKS = "ad_metrics.clicks"
CONVERSIONS = "ad_metrics.conversions"
METRIC_PROPERTIES = (COST, IMPRESSIONS, CLICKS, CONVERSIONS)
CORRECTION_PROPERTY = "ad_metrics_correction"
REVISION_PROPERTY = "ad_metrics_revision"

# What differs between an ad's events of different days and revisions; the rest of an event (its ad's
# ids, names, UTMs, device) is the ad's description, the same for all of them (see split_event).
_OWN_FIELDS = ("insert_id", "time")
_OWN_PROPERTIES = ("stat_date", *METRIC_PROPERTIES, CORRECTION_PROPERTY, REVISION_PROPERTY)

# Local noon: see event_time_ms.
_EVENT_LOCAL_TIME = time(12, 0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ad_device_id(ad_id: str) -> str:
    """The synthetic Amplitude device id of an ad: ``tiktok-ad-<ad_id>``.

    Ad events map to no real user (TikTok exports no user identifiers), so each ad gets its own
    synthetic device. One device per ad, rather than one per account, does two things: Amplitude
    throttles per device (30 events/s on HTTP V2), so a large account's upload spreads over many
    devices instead of being serialized through one; and a device's user properties are that ad's
    UTM values, which Amplitude joins to product events — a shared device would keep only the last
    ad's UTMs. The prefix keeps the id above Amplitude's 5-character minimum for any ad id.
    """
    if not ad_id:
        raise ValueError("ad_id is empty: an ad event needs an ad id for its device id")
    return f"{DEVICE_ID_PREFIX}{ad_id}"


def ad_day_insert_id(advertiser_id: str, ad_id: str, stat_date: date, revision: int = 0) -> str:
    """Amplitude's dedup key for one ad-day at one revision, the same in every process and run.

    sha256 over ``advertiser|ad|date|revision`` (not ``hash()``, which changes per process), so a
    resent batch is dropped by Amplitude as a duplicate within its 7-day window, while each
    correction (a new revision) is a new event.
    """
    if revision < 0:
        raise ValueError(f"revision must be 0 or more, got {revision}")
    key = f"{advertiser_id}|{ad_id}|{stat_date.isoformat()}|{revision}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return INSERT_ID_PREFIX + digest[:_INSERT_ID_HASH_CHARS]


@functools.lru_cache(maxsize=4096)  # one value per account time zone and day
def event_time_ms(stat_date: date, timezone: str) -> int:
    """12:00 of ``stat_date`` in the account's IANA ``timezone``, in milliseconds since the epoch.

    TikTok's day is the account's local day, while Amplitude charts days in the project's time zone.
    An event at local noon falls on the same calendar day in any project time zone less than 12 hours
    away from the account's (so anything within ±11 h), where midnight would slip into the previous
    day for every project west of the account. Noon is never skipped or repeated by a DST change.
    """
    local_noon = datetime.combine(stat_date, _EVENT_LOCAL_TIME, tzinfo=ZoneInfo(timezone))
    # Integer arithmetic on timedeltas: no float rounding in the millisecond count.
    return (local_noon - _EPOCH) // timedelta(milliseconds=1)


def _cut(value: str) -> str:
    """A string cut to Amplitude's limit by characters (code points), so no character is split."""
    return value if len(value) <= MAX_STRING_LENGTH else value[:MAX_STRING_LENGTH]


def _cost_number(cost: Any) -> float:
    number = float(cost)
    if not math.isfinite(number):
        # json.dumps would write "Infinity", which is not JSON and which Amplitude rejects.
        raise ValueError(f"cost {cost} does not fit in a JSON number")
    return number


def daily_ad_metrics_event(
    row: AdDayMetrics, *, metrics: MetricTotals | None = None, revision: int = 0
) -> dict[str, Any]:
    """The JSON-ready ``Daily Ad Metrics`` event for ``row``.

    Without ``metrics`` the row's own figures are sent and a metric TikTok did not report is left
    out (absent, not 0 or null, so Amplitude's sums are not diluted by fake zeros). With ``metrics``
    (a restatement correction) those figures are sent instead, all four, zeros included. A
    ``revision`` above 0 marks the event as a correction.
    """
    # Every text value is cut to Amplitude's limit; the figures are numbers.
    event_properties: dict[str, Any] = {
        "ad_account_id": _cut(row.advertiser_id),
        "ad_group_id": _cut(row.adgroup_id),
        "ad_group_name": _cut(row.adgroup_name),
        "ad_id": _cut(row.ad_id),
        "ad_name": _cut(row.ad_name),
        "ad_platform": AD_PLATFORM,
        "campaign_id": _cut(row.campaign_id),
        "campaign_name": _cut(row.campaign_name),
        "currency": row.currency,
        "advertiser_name": _cut(row.advertiser_name),
        "stat_date": row.stat_date.isoformat(),
    }
    if metrics is not None:
        event_properties[COST] = _cost_number(metrics.cost)
        event_properties[IMPRESSIONS] = metrics.impressions
        event_properties[CLICKS] = metrics.clicks
        event_properties[CONVERSIONS] = metrics.conversions
    else:
        if row.cost is not None:
            event_properties[COST] = _cost_number(row.cost)
        if row.impressions is not None:
            event_properties[IMPRESSIONS] = row.impressions
        if row.clicks is not None:
            event_properties[CLICKS] = row.clicks
        if row.conversions is not None:
            event_properties[CONVERSIONS] = row.conversions
    if revision > 0:
        event_properties[CORRECTION_PROPERTY] = True
        event_properties[REVISION_PROPERTY] = revision
    return {
        "event_type": EVENT_TYPE,
        "device_id": ad_device_id(row.ad_id),
        "insert_id": ad_day_insert_id(row.advertiser_id, row.ad_id, row.stat_date, revision),
        "time": event_time_ms(row.stat_date, row.timezone),
        "event_properties": event_properties,
        "user_properties": {
            "utm_source": _cut(row.utm_source),
            "utm_medium": _cut(row.utm_medium),
            "utm_campaign": _cut(row.utm_campaign),
            "utm_content": _cut(row.utm_content),
        },
    }


def split_event(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``event`` as (its ad's description, its own part): ``joined_event`` puts them back together.

    The ledger keeps every event it recorded, to resend it exactly or to correct it later; an ad's
    description repeats in each of its events (two thirds of an event's JSON), so the ledger stores
    each distinct description once and every event's own part (day, time, figures, revision) apart.
    """
    properties = event["event_properties"]
    description = {key: value for key, value in event.items() if key not in _OWN_FIELDS}
    description["event_properties"] = {
        key: value for key, value in properties.items() if key not in _OWN_PROPERTIES
    }
    own = {key: event[key] for key in _OWN_FIELDS if key in event}
    own["event_properties"] = {key: properties[key] for key in _OWN_PROPERTIES if key in properties}
    return description, own


def joined_event(description: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """The event :func:`split_event` split."""
    return {
        **description,
        **own,
        "event_properties": {**description["event_properties"], **own["event_properties"]},
    }
