"""Normalizing one account-day of raw TikTok responses into the typed metrics table."""

from __future__ import annotations

import copy
import tempfile
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tiktok_amp_assets.core.ad_metrics import (
    METRICS_SCHEMA,
    AdDayMetrics,
    ReportRowError,
    account_timezone,
    landing_page,
    normalize_account_day,
    table_rows,
    table_totals,
)
from tiktok_amp_assets.core.metric_values import MetricTotals
from tiktok_amp_assets.storage.import_store import ImportStore, StoredMetricsError

ADVERTISER = "7000000000000000001"
DAY = "2026-11-23"
AD_LIVE = "1790000000000000002"
AD_DELETED = "1790000000000000001"


def normalized(raw: dict[str, Any]) -> list[AdDayMetrics]:
    """The rows of the account-day's table, after checking the table has exactly the metrics schema."""
    table = normalize_account_day(raw)
    assert table.schema.equals(METRICS_SCHEMA, check_metadata=True)
    return table_rows(table)


def report_row(ad_id: str, day: str = DAY, **metrics: str) -> dict[str, Any]:
    base = {
        "spend": "12.30",
        "impressions": "1000",
        "clicks": "12",
        "conversion": "3",
        "ad_name": f"Ad {ad_id[-1]}",
        "adgroup_id": "1810000000000000001",
        "adgroup_name": "US 18-34",
        "campaign_id": "1800000000000000001",
        "campaign_name": "Black Friday",
    }
    return {"dimensions": {"ad_id": ad_id, "stat_time_day": f"{day} 00:00:00"}, "metrics": base | metrics}


def ad_item(ad_id: str, **fields: str) -> dict[str, Any]:
    base = {
        "ad_id": ad_id,
        "ad_name": f"Ad {ad_id[-1]} (ad/get)",
        "adgroup_id": "1810000000000000001",
        "adgroup_name": "US 18-34 (ad/get)",
        "campaign_id": "1800000000000000001",
        "campaign_name": "Black Friday (ad/get)",
        "advertiser_id": ADVERTISER,
        "landing_page_url": "https://shop.example/p?utm_source=tiktok&utm_campaign=__CAMPAIGN_NAME__",
        "operation_status": "ENABLE",
        "secondary_status": "AD_STATUS_DELIVERY_OK",
    }
    return base | fields


def account_day(
    report_rows: list[dict[str, Any]], ads: list[dict[str, Any]] | None = None, **info: str
) -> dict:
    advertiser_info = {
        "advertiser_id": ADVERTISER,
        "name": "Acme Shop",
        "currency": "USD",
        "timezone": "Etc/GMT+8",
    } | info
    return {
        "advertiser_id": ADVERTISER,
        "stat_date": DAY,
        "advertiser_info": advertiser_info,
        "report_rows": report_rows,
        "ads": ads if ads is not None else [],
    }


def test_one_row_per_report_row_sorted_by_ad_id() -> None:
    rows = normalized(
        account_day([report_row(AD_LIVE), report_row(AD_DELETED)], [ad_item(AD_LIVE), ad_item(AD_DELETED)])
    )
    assert [row.ad_id for row in rows] == [AD_DELETED, AD_LIVE]
    row = rows[1]
    assert row.advertiser_id == ADVERTISER
    assert row.advertiser_name == "Acme Shop"
    assert row.stat_date == date(2026, 11, 23)
    assert row.cost == Decimal("12.30") and str(row.cost) == "12.30"
    assert (row.impressions, row.clicks, row.conversions) == (1000, 12, 3)
    # Report attributes win over ad/get when present.
    assert (row.ad_name, row.adgroup_name, row.campaign_name) == ("Ad 2", "US 18-34", "Black Friday")
    assert row.currency == "USD"
    assert row.timezone == "Etc/GMT+8"  # the zone the report days are in: UTC-8 all year
    assert row.landing_page_url == ad_item(AD_LIVE)["landing_page_url"]
    assert (row.utm_source, row.utm_medium, row.utm_campaign, row.utm_content) == (
        "tiktok",
        "paid_social",
        "Black Friday",
        "Ad 2",
    )
    assert row.utm_inferred == ["utm_content", "utm_medium"]


def test_ids_stay_strings() -> None:
    raw = account_day([report_row(AD_LIVE)])
    raw["report_rows"][0]["dimensions"]["ad_id"] = int(AD_LIVE)  # JSON may carry an id as a number
    (row,) = normalized(raw)
    assert (
        isinstance(row.ad_id, str) and isinstance(row.campaign_id, str) and isinstance(row.advertiser_id, str)
    )
    assert row.ad_id == AD_LIVE
    for name in ("advertiser_id", "ad_id", "adgroup_id", "campaign_id"):
        assert METRICS_SCHEMA.field(name).type == pa.string()


@pytest.mark.parametrize("marker", ["-", "", "  ", "\u3000-\u3000", "\xa0N/A\t", "\x1c--"])
def test_deleted_ad_attributes_fall_back_to_ad_get(marker: str) -> None:
    raw = account_day(
        [
            report_row(
                AD_DELETED,
                ad_name=marker,
                adgroup_id=marker,
                adgroup_name=marker,
                campaign_id=marker,
                campaign_name=marker,
            )
        ],
        [
            ad_item(
                AD_DELETED,
                adgroup_id="1810000000000000009",
                operation_status="DISABLE",
                secondary_status="AD_STATUS_DELETE",
            )
        ],
    )
    (row,) = normalized(raw)
    assert row.ad_name == "Ad 1 (ad/get)"
    assert row.adgroup_id == "1810000000000000009"
    assert row.adgroup_name == "US 18-34 (ad/get)"
    assert row.campaign_name == "Black Friday (ad/get)"
    # The macro takes the name the row ends up with.
    assert row.utm_campaign == "Black Friday (ad/get)"


def test_attribute_missing_everywhere_names_the_field() -> None:
    raw = account_day([report_row(AD_DELETED, campaign_name="-")], [ad_item(AD_DELETED, campaign_name="")])
    with pytest.raises(ReportRowError) as caught:
        normalized(raw)
    error = caught.value
    assert (error.advertiser_id, error.stat_date, error.ad_id) == (ADVERTISER, DAY, AD_DELETED)
    assert error.field == "campaign_name"
    for part in (ADVERTISER, DAY, AD_DELETED, "campaign_name", "missing"):
        assert part in str(error)


def test_attribute_missing_and_no_ad_get_item_hints_at_deleted_ads() -> None:
    with pytest.raises(ReportRowError, match="STATUS_ALL"):
        normalized(account_day([report_row(AD_DELETED, ad_name="-")]))


def test_row_for_another_day_is_an_error() -> None:
    raw = account_day([report_row(AD_LIVE), report_row(AD_DELETED, day="2026-11-22")])
    with pytest.raises(ReportRowError) as caught:
        normalized(raw)
    message = str(caught.value)
    assert caught.value.field == "stat_time_day"
    for part in (ADVERTISER, DAY, AD_DELETED, "stat_time_day", "2026-11-22"):
        assert part in message


def test_row_with_a_time_of_day_is_an_error() -> None:
    raw = account_day([report_row(AD_LIVE)])
    raw["report_rows"][0]["dimensions"]["stat_time_day"] = f"{DAY} 13:00:00"
    with pytest.raises(ReportRowError, match="stat_time_day"):
        normalized(raw)


def test_duplicate_ad_is_an_error() -> None:
    raw = account_day([report_row(AD_LIVE), report_row(AD_DELETED), report_row(AD_LIVE, spend="1.00")])
    with pytest.raises(ReportRowError) as caught:
        normalized(raw)
    assert (caught.value.ad_id, caught.value.field) == (AD_LIVE, "ad_id")
    assert "more than once" in str(caught.value)
    assert ADVERTISER in str(caught.value) and DAY in str(caught.value)


@pytest.mark.parametrize("ad_id", [None, "", "-", "17 90", "../x", "1790\n"])
def test_missing_or_bad_ad_id(ad_id: str | None) -> None:
    raw = account_day([report_row(AD_LIVE)])
    raw["report_rows"][0]["dimensions"]["ad_id"] = ad_id
    with pytest.raises(ReportRowError) as caught:
        normalized(raw)
    assert caught.value.field == "ad_id"
    assert ADVERTISER in str(caught.value) and DAY in str(caught.value)


def test_missing_performance_metrics_are_none_not_zero() -> None:
    raw = account_day([report_row(AD_LIVE, spend="-", conversion="", clicks="0")])
    del raw["report_rows"][0]["metrics"]["impressions"]
    (row,) = normalized(raw)
    assert (row.cost, row.impressions, row.clicks, row.conversions) == (None, None, 0, None)
    assert row.totals() == MetricTotals(cost=Decimal(0), impressions=0, clicks=0, conversions=0)


def test_unparsable_metric_names_the_field() -> None:
    with pytest.raises(ReportRowError) as caught:
        normalized(account_day([report_row(AD_LIVE, clicks="12.5")]))
    assert (caught.value.field, caught.value.ad_id) == ("clicks", AD_LIVE)
    assert "12.5" in str(caught.value)


def test_currency_comes_from_the_account() -> None:
    raw = account_day([report_row(AD_LIVE)], currency="EUR")
    assert normalized(raw)[0].currency == "EUR"
    # A report row carries no currency (no public schema lists it as a metric): one there is ignored.
    raw = account_day([report_row(AD_LIVE, currency="JPY")], currency="EUR")
    assert normalized(raw)[0].currency == "EUR"
    raw = account_day([report_row(AD_LIVE)], currency=" eur ")
    assert normalized(raw)[0].currency == "EUR"


@pytest.mark.parametrize("currency", ["", "-", "EURO", "€"])
def test_an_account_without_a_currency_code_is_an_error(currency: str) -> None:
    raw = account_day([report_row(AD_LIVE)], currency=currency)
    with pytest.raises(ReportRowError, match="currency"):
        normalized(raw)


def test_the_timezone_is_the_accounts_timezone() -> None:
    # The report days are in "timezone" (a fixed offset all year, per TikTok's help).
    raw = account_day([report_row(AD_LIVE)], timezone="Etc/GMT-9")
    assert normalized(raw)[0].timezone == "Etc/GMT-9"
    raw = account_day([report_row(AD_LIVE)], timezone="Asia/Tokyo")
    assert normalized(raw)[0].timezone == "Asia/Tokyo"


def test_account_timezone() -> None:
    assert account_timezone({"timezone": "Etc/GMT-9"}) == "Etc/GMT-9"
    assert account_timezone({"timezone": "Etc/GMT+8"}) == "Etc/GMT+8"
    assert account_timezone({"timezone": "UTC+9"}) is None
    assert account_timezone({"timezone": "localtime"}) is None
    assert account_timezone({}) is None


def test_no_iana_timezone_is_an_error() -> None:
    raw = account_day([report_row(AD_LIVE)], timezone="GMT-08:00")
    with pytest.raises(ReportRowError) as caught:
        normalized(raw)
    assert caught.value.field == "timezone"
    assert "GMT-08:00" in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # Ads with several landing pages carry them in landing_page_urls: the first usable one.
        (
            {"landing_page_url": None, "landing_page_urls": ["", "https://a.example/?utm_source=x"]},
            "https://a.example/?utm_source=x",
        ),
        (
            {"landing_page_url": "", "landing_page_urls": ["https://a.example/1", "https://a.example/2"]},
            "https://a.example/1",
        ),
        ({"landing_page_urls": [{"landing_page_url": "https://a.example/o"}]}, "https://a.example/o"),
        ({"landing_page_url": None, "landing_page_urls": "https://a.example/s"}, "https://a.example/s"),
        ({"landing_page_urls": ["  ", "app://open", "https://a.example/w"]}, "https://a.example/w"),
        ({"landing_page_urls": ["app://open"]}, "app://open"),
        (
            {"landing_page_url": "https://a.example/single", "landing_page_urls": ["https://a.example/l"]},
            "https://a.example/single",
        ),
        ({"landing_page_url": None, "landing_page_urls": None}, None),
        ({"landing_page_url": None, "landing_page_urls": [None, 7, {"x": 1}]}, None),
    ],
)
def test_landing_page_urls_stand_in_for_an_empty_landing_page_url(
    fields: dict[str, Any], expected: str | None
) -> None:
    item = {key: value for key, value in ad_item(AD_LIVE).items() if key != "landing_page_url"} | fields
    (row,) = normalized(account_day([report_row(AD_LIVE)], [item]))
    assert row.landing_page_url == expected
    assert landing_page(item) == expected


def test_utms_are_read_from_landing_page_urls() -> None:
    item = ad_item(
        AD_LIVE,
        landing_page_url=None,
        landing_page_urls=["", "https://shop.example/p?utm_source=tt&utm_medium=video&utm_content=__CID__"],
    )
    (row,) = normalized(account_day([report_row(AD_LIVE)], [item]))
    assert (row.utm_source, row.utm_medium, row.utm_content) == ("tt", "video", AD_LIVE)
    assert row.utm_inferred == ["utm_campaign"]


def test_landing_page_url_only_from_ad_get() -> None:
    rows = normalized(
        account_day([report_row(AD_LIVE), report_row(AD_DELETED)], [ad_item(AD_LIVE, landing_page_url="")])
    )
    assert [row.landing_page_url for row in rows] == [None, None]
    assert rows[0].utm_inferred == ["utm_campaign", "utm_content", "utm_medium", "utm_source"]


def test_advertiser_info_for_another_account_is_an_error() -> None:
    raw = account_day([report_row(AD_LIVE)], advertiser_id="7000000000000000999")
    with pytest.raises(ReportRowError, match="7000000000000000999"):
        normalized(raw)


def test_bad_stat_date_is_an_error() -> None:
    raw = account_day([report_row(AD_LIVE)])
    raw["stat_date"] = "23/11/2026"
    with pytest.raises(ReportRowError) as caught:
        normalized(raw)
    assert caught.value.field == "stat_date"


def test_empty_day_gives_no_rows() -> None:
    assert normalized(account_day([])) == []
    assert normalize_account_day(account_day([])).schema.equals(METRICS_SCHEMA)


def test_input_is_not_modified() -> None:
    raw = account_day([report_row(AD_DELETED, ad_name="-")], [ad_item(AD_DELETED)])
    before = copy.deepcopy(raw)
    normalized(raw)
    assert raw == before


def test_table_round_trip_is_exact_through_parquet() -> None:
    table = normalize_account_day(
        account_day(
            [report_row(AD_LIVE, spend="0.10", conversion="-"), report_row(AD_DELETED)], [ad_item(AD_LIVE)]
        )
    )
    day = date.fromisoformat(DAY)
    with tempfile.TemporaryDirectory() as folder:
        store = ImportStore(Path(folder))
        path = store.write_ad_metrics(day, table)
        assert path.name == f"{DAY}.parquet"
        back = store.read_ad_metrics(day)
    assert back.equals(table) and back.schema.equals(METRICS_SCHEMA)
    rows = table_rows(back)
    assert rows[1].cost == Decimal("0.10") and isinstance(rows[1].cost, Decimal)
    assert rows[1].conversions is None
    assert rows[0].stat_date == day
    # Money is an exact decimal column, never a float; counts are 64-bit integers.
    assert back.schema.field("cost").type == pa.decimal128(21, 6)
    assert back.schema.field("conversions").type == pa.int64()
    assert back.schema.field("stat_date").type == pa.date32()


def test_a_metrics_file_of_another_shape_is_refused() -> None:
    day = date.fromisoformat(DAY)
    table = normalize_account_day(account_day([report_row(AD_LIVE)]))
    cost_as_float = table.set_column(
        table.schema.get_field_index("cost"), "cost", table.column("cost").cast(pa.float64())
    )
    with tempfile.TemporaryDirectory() as folder:
        store = ImportStore(Path(folder))
        with pytest.raises(StoredMetricsError) as caught:
            store.write_ad_metrics(day, cost_as_float)
        assert "cost" in str(caught.value)
        store.write_ad_metrics(day, table)
        pq.write_table(cost_as_float, store.metrics_path(day))
        with pytest.raises(StoredMetricsError) as caught:
            store.read_ad_metrics(day)
        message = str(caught.value)
        assert DAY in message and "cost" in message and "tiktok_ad_metrics" in message


def test_totals() -> None:
    (row,) = normalized(account_day([report_row(AD_LIVE)]))
    assert row.totals() == MetricTotals(cost=Decimal("12.30"), impressions=1000, clicks=12, conversions=3)
    table = normalize_account_day(
        account_day([report_row(AD_LIVE), report_row(AD_DELETED, spend="0.01", clicks="-")])
    )
    assert table_totals(table) == MetricTotals(
        cost=Decimal("12.31"), impressions=2000, clicks=12, conversions=6
    )


def test_rows_of_several_days_can_share_their_texts() -> None:
    table = normalize_account_day(account_day([report_row(AD_LIVE)], [ad_item(AD_LIVE)]))
    shared: dict[str, str] = {}
    (first,) = table_rows(table, shared_texts=shared)
    (second,) = table_rows(table, shared_texts=shared)
    assert first == second
    assert first.campaign_name is second.campaign_name and first.utm_source is second.utm_source
    (unshared,) = table_rows(table)
    assert unshared == first and unshared.campaign_name is not first.campaign_name


def test_a_row_of_all_zeros_is_kept_as_tiktok_sent_it() -> None:
    """Real answers hold ad-level daily rows of all zeros (Airbyte's expected_records.jsonl,
    ads_reports_daily: "spend": "0.000", "impressions": "0", ...): kept, zeros and not missing."""
    zero = report_row(AD_LIVE, spend="0.000", impressions="0", clicks="0", conversion="0")
    rows = normalized(account_day([zero, report_row(AD_DELETED, spend="60.000")], [ad_item(AD_LIVE)]))
    assert [row.ad_id for row in rows] == [AD_DELETED, AD_LIVE]
    kept = rows[1]
    assert (kept.cost, kept.impressions, kept.clicks, kept.conversions) == (Decimal(0), 0, 0, 0)
    assert rows[0].cost == Decimal("60.000")


def test_display_timezone_beside_timezone_is_accepted_and_timezone_rules() -> None:
    (row,) = normalized(account_day([report_row(AD_LIVE)], display_timezone="America/Los_Angeles"))
    assert row.timezone == "Etc/GMT+8"


def test_utm_params_are_appended_to_the_landing_page_as_at_click_time() -> None:
    params = [
        {"key": "utm_source", "value": "tiktok_builder"},
        {"key": "utm_campaign", "value": "__CAMPAIGN_NAME__"},
        {"key": "utm_content", "value": "__CID__"},
    ]
    plain = ad_item(AD_LIVE, landing_page_url="https://shop.example/p", utm_params=params)  # type: ignore[arg-type]
    # The URL's own utm_source stays as written; the others come from utm_params.
    written = ad_item(AD_DELETED, utm_params=params)  # type: ignore[arg-type]
    rows = normalized(account_day([report_row(AD_LIVE), report_row(AD_DELETED)], [plain, written]))
    by_id = {row.ad_id: row for row in rows}
    live = by_id[AD_LIVE]
    assert live.landing_page_url == (
        "https://shop.example/p?utm_source=tiktok_builder&utm_campaign=__CAMPAIGN_NAME__&utm_content=__CID__"
    )
    assert (live.utm_source, live.utm_campaign, live.utm_content) == (
        "tiktok_builder",
        "Black Friday",
        AD_LIVE,
    )
    assert live.utm_inferred == ["utm_medium"]
    deleted = by_id[AD_DELETED]
    assert (deleted.utm_source, deleted.utm_campaign, deleted.utm_content) == (
        "tiktok",
        "Black Friday",
        AD_DELETED,
    )


def test_a_smart_plus_ads_landing_pages_and_utm_params_come_from_its_smart_plus_item() -> None:
    smart_plus = {
        "smart_plus_ad_id": "1900000000000000002",
        "ad_name": "Smart+ spring",
        "landing_page_url_list": [
            {"landing_page_url": ""},
            {"landing_page_url": "https://shop.example/smart"},
        ],
        "ad_configuration": {
            "utm_params": [{"key": "utm_medium", "value": "smart_plus"}, {"key": ""}, "junk"]
        },
    }
    item = {
        **ad_item(AD_LIVE),
        "landing_page_url": None,
        "smart_plus_ad_id": "1900000000000000002",
        "smart_plus_ad": smart_plus,
    }
    (row,) = normalized(account_day([report_row(AD_LIVE)], [item]))
    assert row.landing_page_url == "https://shop.example/smart?utm_medium=smart_plus"
    assert row.utm_medium == "smart_plus" and row.utm_inferred == [
        "utm_campaign",
        "utm_content",
        "utm_source",
    ]
