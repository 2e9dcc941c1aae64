"""Comparing figures: ad-level rows against TikTok's account totals (a gap is recorded and reported,
not blocking: the extraction refuses only account-days whose rows are not known whole), and what
Amplitude has counted against what TikTok reports now (those must agree)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pyarrow as pa

from tiktok_amp_assets.core import tiktok_contract as api
from tiktok_amp_assets.core.ad_metrics import table_totals
from tiktok_amp_assets.core.metric_values import MetricTotals, money_as_written, parse_count, parse_money
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


@dataclass(frozen=True)
class TotalsGap:
    """An account-day whose ad rows do not add up to TikTok's account totals, delivered as reported.

    ``kind`` is the extraction's judgement (``clients/tiktok_extraction.py``): ``unattributed`` (the
    totals hold spend no ad row holds, e.g. GMV Max or shop campaigns) or ``settling`` (TikTok's
    figures moved between two reads, the latest day); ``unexamined`` when the raw day carries no
    judgement (stored by an earlier version, or changed since): ``normalize.py`` then refuses the
    account-day rather than deliver rows not known whole.
    """

    advertiser_id: str
    stat_date: date
    account_totals: MetricTotals
    ad_rows: MetricTotals
    kind: str
    currency: str | None = None

    @property
    def not_in_ad_rows(self) -> MetricTotals:
        """What the totals hold beyond the ad rows (negative where the rows hold more)."""
        return self.account_totals - self.ad_rows

    def as_record(self) -> dict[str, Any]:
        gap = self.not_in_ad_rows
        return {
            "advertiser_id": self.advertiser_id,
            "stat_date": self.stat_date.isoformat(),
            "kind": self.kind,
            "currency": self.currency,
            "unattributed_spend": str(money_as_written(gap.cost)),
            "unattributed_impressions": gap.impressions,
            "unattributed_clicks": gap.clicks,
            "unattributed_conversions": gap.conversions,
            "account_totals": self.account_totals.as_record(),
            "ad_rows": self.ad_rows.as_record(),
        }


UNEXAMINED = "unexamined"


def reconcile_account_day(
    advertiser_id: str,
    stat_date: date,
    table: pa.Table,
    totals_row: Mapping[str, Any] | None,
    kind: str | None,
    currency: str | None = None,
) -> TotalsGap | None:
    """The gap when the ad-level rows of one account and day (a metrics table) do not add up to
    TikTok's own total; ``kind`` is the extraction's judgement stored with the raw day."""
    expected = account_totals(totals_row)
    found = table_totals(table)
    if expected == found:
        return None
    return TotalsGap(advertiser_id, stat_date, expected, found, kind or UNEXAMINED, currency)


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
