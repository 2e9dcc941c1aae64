"""Comparing figures that must agree: ad-level rows against TikTok's account totals, and what
Amplitude has counted against what TikTok reports now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa

from tiktok_amp_assets.core import tiktok_contract as api
from tiktok_amp_assets.core.ad_metrics import table_totals
from tiktok_amp_assets.core.metric_values import MetricTotals, parse_count, parse_money
from tiktok_amp_assets.core.upload_plan import AdDayKey


@dataclass(frozen=True)
class Mismatch:
    """Two sums that should be equal and are not."""

    advertiser_id: str
    stat_date: date
    expected: MetricTotals
    found: MetricTotals
    ad_id: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "advertiser_id": self.advertiser_id,
            "stat_date": self.stat_date.isoformat(),
            **({"ad_id": self.ad_id} if self.ad_id else {}),
            "expected": self.expected.as_record(),
            "found": self.found.as_record(),
        }


def account_totals(totals_row: Mapping[str, Any] | None) -> MetricTotals:
    """TikTok's account-level row for a day as totals; no row means no delivery that day."""
    if totals_row is None:
        return MetricTotals.zero()
    metrics = totals_row.get("metrics") or {}
    return MetricTotals(
        cost=parse_money(metrics.get(api.SPEND), field=api.SPEND) or MetricTotals.zero().cost,
        impressions=parse_count(metrics.get(api.IMPRESSIONS), field=api.IMPRESSIONS) or 0,
        clicks=parse_count(metrics.get(api.CLICKS), field=api.CLICKS) or 0,
        conversions=parse_count(metrics.get(api.CONVERSIONS), field=api.CONVERSIONS) or 0,
    )


def reconcile_account_day(
    advertiser_id: str, stat_date: date, table: pa.Table, totals_row: Mapping[str, Any] | None
) -> Mismatch | None:
    """A mismatch when the ad-level rows of one account and day (a metrics table) do not add up to
    TikTok's own total (a partial import: rows lost in paging, deleted ads left out, a truncated raw
    file)."""
    expected = account_totals(totals_row)
    found = table_totals(table)
    if expected == found:
        return None
    return Mismatch(advertiser_id, stat_date, expected, found)


def undelivered_ad_days(
    current: Mapping[AdDayKey, MetricTotals],
    counted: Mapping[AdDayKey, MetricTotals],
    stat_dates: Iterable[date],
) -> list[Mismatch]:
    """Ad-days where Amplitude's counted sums differ from TikTok's ``current`` figures (an ad-day TikTok
    no longer reports should be counted as zero)."""
    days = set(stat_dates)
    mismatches = []
    for key in sorted(current.keys() | {key for key in counted if key[2] in days}):
        expected = current.get(key, MetricTotals.zero())
        found = counted.get(key, MetricTotals.zero())
        if expected != found:
            mismatches.append(Mismatch(key[0], key[2], expected, found, ad_id=key[1]))
    return mismatches
