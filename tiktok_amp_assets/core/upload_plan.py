"""Which events to send so that Amplitude's sums equal TikTok's current figures, exactly once.

Given today's normalized rows and what Amplitude has already counted per ad-day (from the ledger),
each ad-day gets one of:

- ``new``: never counted: the full event (revision 0);
- ``correction``: counted, but TikTok's figures changed: an event carrying the difference
  (current − counted) under a new revision, so the sum over the ad-day becomes current;
- ``removal``: counted, but TikTok no longer reports the ad-day: a correction down to zero;
- nothing: counted and unchanged, or changed while the policy is ``freeze``.

An account whose day could not be imported is absent from the rows, yet TikTok did not stop
reporting its ads: only accounts the day's table holds whole (``imported_accounts``) can have
ad-days removed. Amplitude keeps what it counted for the others until their day is imported.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

from tiktok_amp_assets.core.ad_metrics import AdDayMetrics
from tiktok_amp_assets.core.events import (
    CLICKS,
    CONVERSIONS,
    CORRECTION_PROPERTY,
    COST,
    IMPRESSIONS,
    REVISION_PROPERTY,
    ad_day_insert_id,
    daily_ad_metrics_event,
    joined_event,
)
from tiktok_amp_assets.core.json_codec import load_json
from tiktok_amp_assets.core.metric_values import MetricTotals

RestatementPolicy = Literal["correct", "freeze"]
AdDayKey = tuple[str, str, date]  # (advertiser_id, ad_id, stat_date)


@dataclass(frozen=True)
class AdDayEvent:
    """One event for an ad-day: its key, what it adds to the ad-day's sums, and the exact payload."""

    insert_id: str
    advertiser_id: str
    ad_id: str
    stat_date: date
    revision: int
    totals: MetricTotals
    payload: dict[str, Any]

    @property
    def ad_day(self) -> AdDayKey:
        return (self.advertiser_id, self.ad_id, self.stat_date)


@dataclass(frozen=True)
class CountedAdDay:
    """What Amplitude has counted for one ad-day: the sum of its acknowledged events."""

    totals: MetricTotals
    next_revision: int
    # The last counted event as the ledger stores it (JSON texts), parsed only for the rare removal
    # correction: its own part, and its ad's description.
    last_event_json: str
    last_description_json: str

    def last_payload(self) -> dict[str, Any]:
        return joined_event(load_json(self.last_description_json), load_json(self.last_event_json))


EventKind = Literal["new", "correction", "removal"]


@dataclass(frozen=True)
class PlannedEvent:
    kind: EventKind
    ad_day_event: AdDayEvent
    before: MetricTotals | None  # what Amplitude had counted for the ad-day (None: nothing)
    after: MetricTotals  # what it will have counted once this event is acknowledged


def plan_events(
    rows: Iterable[AdDayMetrics],
    counted: Mapping[AdDayKey, CountedAdDay],
    stat_dates: Iterable[date],
    *,
    policy: RestatementPolicy = "correct",
    imported_accounts: Collection[str] | None = None,
) -> list[PlannedEvent]:
    """The events to send for ``stat_dates``, given current ``rows`` (a metrics table's,
    :func:`~tiktok_amp_assets.core.ad_metrics.table_rows`) and the ledger's ``counted``;
    ``imported_accounts``: the accounts the rows hold whole (None: every account)."""
    days = set(stat_dates)
    planned: list[PlannedEvent] = []
    seen: set[AdDayKey] = set()
    for row in rows:
        key: AdDayKey = (row.advertiser_id, row.ad_id, row.stat_date)
        seen.add(key)
        already = counted.get(key)
        current = row.totals()
        if already is None:
            event = daily_ad_metrics_event(row)
            planned.append(PlannedEvent("new", _ad_day_event(key, 0, current, event), None, current))
            continue
        difference = current - already.totals
        if difference.is_zero() or policy == "freeze":
            continue
        event = daily_ad_metrics_event(row, metrics=difference, revision=already.next_revision)
        planned.append(
            PlannedEvent(
                "correction",
                _ad_day_event(key, already.next_revision, difference, event),
                already.totals,
                current,
            )
        )
    if policy == "correct":
        for key, already in sorted(counted.items()):
            if key in seen or key[2] not in days or already.totals.is_zero():
                continue
            if imported_accounts is not None and key[0] not in imported_accounts:
                continue  # the account's day was not imported: its ads were not removed
            difference = MetricTotals.zero() - already.totals
            event = _correction_of(already.last_payload(), key, difference, already.next_revision)
            planned.append(
                PlannedEvent(
                    "removal",
                    _ad_day_event(key, already.next_revision, difference, event),
                    already.totals,
                    MetricTotals.zero(),
                )
            )
    return planned


def _ad_day_event(key: AdDayKey, revision: int, totals: MetricTotals, event: dict[str, Any]) -> AdDayEvent:
    advertiser_id, ad_id, stat_date = key
    return AdDayEvent(
        insert_id=event["insert_id"],
        advertiser_id=advertiser_id,
        ad_id=ad_id,
        stat_date=stat_date,
        revision=revision,
        totals=totals,
        payload=event,
    )


def _correction_of(
    previous: dict[str, Any], key: AdDayKey, metrics: MetricTotals, revision: int
) -> dict[str, Any]:
    """A correction built from the ad-day's last counted event, for an ad-day TikTok no longer
    reports: same ids, names and UTMs; figures and insert_id replaced."""
    event = copy.deepcopy(previous)
    properties = event["event_properties"]
    properties[COST] = float(metrics.cost)
    properties[IMPRESSIONS] = metrics.impressions
    properties[CLICKS] = metrics.clicks
    properties[CONVERSIONS] = metrics.conversions
    properties[CORRECTION_PROPERTY] = True
    properties[REVISION_PROPERTY] = revision
    event["insert_id"] = ad_day_insert_id(key[0], key[1], key[2], revision)
    return event
