"""A day's figures and top campaigns for asset metadata: exact sums, unreported metrics add nothing."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pyarrow as pa

from tiktok_amp_assets.core.ad_metrics import METRICS_SCHEMA, AdDayMetrics
from tiktok_amp_assets.core.metric_values import MetricTotals
from tiktok_amp_assets.core.reconciliation import TotalsGap
from tiktok_amp_assets.core.summaries import (
    ad_metrics_figures,
    top_campaigns_markdown,
    unattributed_spend_figures,
)

from .test_events import make_row

TOKYO = "7000000000000000002"


def _table(*rows: AdDayMetrics) -> pa.Table:
    return pa.Table.from_pylist([row._asdict() for row in rows], schema=METRICS_SCHEMA)


def test_figures_sum_each_metric_exactly_and_skip_what_was_not_reported() -> None:
    table = _table(
        make_row(ad_id="1", cost=Decimal("0.10"), impressions=7, clicks=None, conversions=1, utm_inferred=[]),
        make_row(ad_id="2", cost=Decimal("0.20"), impressions=None, clicks=5, conversions=None),
        make_row(ad_id="3", cost=None, impressions=3, clicks=1, conversions=2, utm_inferred=["utm_medium"]),
        make_row(advertiser_id=TOKYO, ad_id="4", currency="JPY", cost=Decimal("103767"), utm_inferred=[]),
    )
    assert ad_metrics_figures(table) == {
        "rows": 4,
        "accounts": 2,
        "impressions": 7 + 3 + 1000,
        "clicks": 5 + 1 + 12,
        "conversions": 1 + 2 + 3,
        "rows_with_inferred_utms": 2,
        "cost_JPY": 103767.0,
        "cost_USD": 0.3,  # 0.10 + 0.20 summed as decimals: a float sum would give 0.30000000000000004
    }


def test_figures_of_an_empty_day_are_zeros() -> None:
    assert ad_metrics_figures(METRICS_SCHEMA.empty_table()) == {
        "rows": 0,
        "accounts": 0,
        "impressions": 0,
        "clicks": 0,
        "conversions": 0,
        "rows_with_inferred_utms": 0,
    }
    assert top_campaigns_markdown(METRICS_SCHEMA.empty_table()) == "_no ad delivered on this day_"


def test_top_campaigns_keep_the_most_costly_ties_by_name_and_count_unreported_as_zero() -> None:
    rows = [
        make_row(ad_id=str(n), campaign_name=f"C{n:02d}", cost=Decimal(n), impressions=None, clicks=n)
        for n in range(1, 13)
    ]
    rows += [
        make_row(ad_id="13", campaign_name="C12", cost=None, clicks=1),  # same campaign, cost not reported
        make_row(ad_id="14", campaign_name="B tie", cost=Decimal(11)),
    ]
    lines = top_campaigns_markdown(_table(*rows), limit=3).splitlines()
    assert lines[0] == "**Cost in USD**"
    assert [line.split(" | ")[1:] for line in lines[4:]] == [
        ["C12", "12.00", "1000", "13", "6 |"],  # C12's two ads; a missing impressions count adds 0
        ["B tie", "11.00", "1000", "12", "3 |"],  # ties in cost: by campaign name
        ["C11", "11.00", "0", "11", "3 |"],
    ]


def test_unattributed_spend_is_summed_per_currency() -> None:
    day = date(2025, 3, 1)

    def gap(account: str, totals: str, rows: str, currency: str) -> TotalsGap:
        return TotalsGap(
            account,
            day,
            MetricTotals(Decimal(totals), 10, 1, 0),
            MetricTotals(Decimal(rows), 10, 1, 0),
            "unattributed",
            currency,
        )

    figures = unattributed_spend_figures(
        [
            gap("1", "112.34", "100.00", "USD"),
            gap("2", "5.00", "4.50", "USD"),
            gap("3", "1500", "1000", "JPY"),
        ]
    )
    assert figures == {"unattributed_spend_JPY": 500.0, "unattributed_spend_USD": 12.84}


def test_a_gap_shows_its_spend_as_tiktok_writes_amounts() -> None:
    # Ad rows summed from the money column carry its six decimals; the record (and the check's
    # message built from the same amount) shows TikTok's form, not 12.340000 or 12.340.
    gap = TotalsGap(
        "1",
        date(2025, 3, 1),
        MetricTotals(Decimal("112.34"), 10, 1, 0),
        MetricTotals(Decimal("100.000000"), 10, 1, 0),
        "unattributed",
        "USD",
    )
    assert gap.as_record()["unattributed_spend"] == "12.34"
