"""Money across currencies: ranked within its own currency, written with its own minor units."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest
import requests
from tiktok_amp_emulators.amplitude_server import DEFAULT_API_KEY, AmplitudeEmulator

from tiktok_amp_assets.core.ad_metrics import METRICS_SCHEMA
from tiktok_amp_assets.core.amplitude_contract import BATCH_PATH
from tiktok_amp_assets.core.currencies import format_amount, minor_units
from tiktok_amp_assets.core.events import daily_ad_metrics_event
from tiktok_amp_assets.core.summaries import top_campaigns_markdown

from .test_events import make_row


@pytest.mark.parametrize(
    ("amount", "currency", "written"),
    [
        (Decimal("103767.00"), "JPY", "103767"),
        (Decimal("103767"), "KRW", "103767"),
        (Decimal("12.3"), "USD", "12.30"),
        (Decimal("0"), "EUR", "0.00"),
        (Decimal("1.5"), "KWD", "1.500"),
        (Decimal("12.3"), "usd", "12.30"),
        # Finer than the currency allows: every digit stays, nothing is rounded out of sight.
        (Decimal("10.5"), "JPY", "10.5"),
    ],
)
def test_amounts_are_written_with_the_currency_minor_units(
    amount: Decimal, currency: str, written: str
) -> None:
    assert format_amount(amount, currency) == written


def test_minor_units_follow_iso_4217() -> None:
    assert [minor_units(code) for code in ("JPY", "KRW", "VND", "USD", "EUR", "GBP", "BHD", "CLF")] == [
        0, 0, 0, 2, 2, 2, 3, 4,
    ]  # fmt: skip


def _table_rows(markdown: str, currency: str) -> list[list[str]]:
    section = markdown.split(f"**Cost in {currency}**", 1)[1].split("**Cost in", 1)[0]
    return [
        [cell.strip() for cell in line.strip("|").split("|")] for line in section.strip().splitlines()[2:]
    ]


def test_top_campaigns_rank_within_each_currency() -> None:
    tokyo = "7000000000000000002"
    rows = [
        make_row(ad_id="1790000000000000001", campaign_name="US small", cost=Decimal("12.3")),
        make_row(ad_id="1790000000000000002", campaign_name="US big", cost=Decimal("900.5")),
        make_row(ad_id="1790000000000000003", campaign_name="US big", cost=Decimal("99.5")),
        make_row(
            advertiser_id=tokyo, ad_id="1790000000000000004", campaign_name="JP", currency="JPY",
            timezone="Asia/Tokyo", cost=Decimal("103767.00"),
        ),
    ]  # fmt: skip
    # The day's table as the metrics asset has it: Arrow types (exact decimal cost).
    table = pa.Table.from_pylist([row._asdict() for row in rows], schema=METRICS_SCHEMA)
    markdown = top_campaigns_markdown(table)
    # One table per currency: 103767 JPY never outranks 1000 USD, being a bigger number.
    assert markdown.index("**Cost in JPY**") < markdown.index("**Cost in USD**")
    assert _table_rows(markdown, "USD") == [
        ["7000000000000000001", "US big", "1000.00", "2000", "24", "6"],
        ["7000000000000000001", "US small", "12.30", "1000", "12", "3"],
    ]
    assert _table_rows(markdown, "JPY") == [[tokyo, "JP", "103767", "1000", "12", "3"]]
    assert "cost (JPY)" in markdown and "cost (USD)" in markdown


def test_the_amplitude_emulator_summary_sums_cost_as_amplitude_charts_it() -> None:
    """Amplitude sums ad_metrics.cost as plain numbers, whatever the currency (it converts no ad
    spend): the emulator's summary does the same, exactly, and leaves writing amounts to the product."""
    usd = daily_ad_metrics_event(make_row(cost=Decimal("12.3")))
    jpy = daily_ad_metrics_event(
        make_row(
            advertiser_id="7000000000000000002",
            currency="JPY",
            timezone="Asia/Tokyo",
            cost=Decimal("1790722"),
        )
    )
    with AmplitudeEmulator() as emulator:
        response = requests.post(
            f"{emulator.url}{BATCH_PATH}", json={"api_key": DEFAULT_API_KEY, "events": [usd, jpy]}, timeout=10
        )
        assert response.status_code == 200, response.text
        summary = requests.get(f"{emulator.url}/emulator/summary", timeout=10).json()
    assert Decimal(summary["ad_accounts"]["7000000000000000001"]["ad_metrics.cost"]) == Decimal("12.3")
    assert Decimal(summary["ad_accounts"]["7000000000000000002"]["ad_metrics.cost"]) == Decimal("1790722")
