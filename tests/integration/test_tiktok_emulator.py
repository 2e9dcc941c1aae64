"""The TikTok emulator over real HTTP, with plain ``requests``: no client of the project in between.

These pin the behaviours the importer relies on (pagination, the 30-day window, deleted ads left
out unless asked for, the per-query ad cap, id filters, error codes, faults) so that a client tested
against the emulator is tested against the real API's rules. Like the emulator, this module reads
the API on its own: it imports nothing of the client (``tiktok_amp_assets``), so names and limits
are written out here as the public sources write them (``docs/api_facts.md``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
import requests
from tiktok_amp_emulators.catalogue import (
    DELETE,
    DISABLE,
    LONG_NAME_LENGTH,
    AdvertiserSpec,
    Catalogue,
    generate_catalogue,
)
from tiktok_amp_emulators.faults import Fault, FaultInjector
from tiktok_amp_emulators.tiktok_server import (
    DEFAULT_ACCESS_TOKEN,
    HEALTH_PATH,
    KNOWN_METRICS,
    TikTokEmulator,
)

REPORT_PATH = "/open_api/v1.3/report/integrated/get/"
AD_PATH = "/open_api/v1.3/ad/get/"
ADGROUP_PATH = "/open_api/v1.3/adgroup/get/"
CAMPAIGN_PATH = "/open_api/v1.3/campaign/get/"
ADVERTISER_INFO_PATH = "/open_api/v1.3/advertiser/info/"
SMART_PLUS_AD_PATH = "/open_api/v1.3/smart_plus/ad/get/"
MAX_PAGE_SIZE = 1000
PERFORMANCE_METRICS = ("spend", "impressions", "clicks", "conversion")
AD_STATUS_ALL_FILTER = [{"field_name": "ad_status", "filter_type": "IN", "filter_value": '["STATUS_ALL"]'}]

ACME = "7000000000000000001"
SAKURA = "7000000000000000002"
BIG = "7000000000000000099"
ACME_ONLY_TOKEN = "acme-only-token"
START = date(2025, 1, 1)
METRICS = [
    *PERFORMANCE_METRICS,
    "ad_name",
    "adgroup_id",
    "adgroup_name",
    "campaign_id",
    "campaign_name",
]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return generate_catalogue()


@pytest.fixture(scope="module")
def emulator(catalogue: Catalogue) -> Iterator[TikTokEmulator]:
    tokens: dict[str, set[str] | None] = {DEFAULT_ACCESS_TOKEN: None, ACME_ONLY_TOKEN: {ACME}}
    server = TikTokEmulator(catalogue, access_tokens=tokens)
    with server:
        yield server


def get(
    server: TikTokEmulator, path: str, params: dict[str, Any], token: str | None = DEFAULT_ACCESS_TOKEN
) -> dict[str, Any]:
    """One GET with list/object parameters JSON-encoded, as TikTok wants them; the decoded body."""
    encoded = {
        name: value if isinstance(value, str | int) else json.dumps(value) for name, value in params.items()
    }
    headers = {} if token is None else {"Access-Token": token}
    response = requests.get(server.url + path, params=encoded, headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def report_params(advertiser_id: str, start: date, end: date, **extra: Any) -> dict[str, Any]:
    return {
        "advertiser_id": advertiser_id,
        "report_type": "BASIC",
        "service_type": "AUCTION",
        "data_level": "AUCTION_AD",
        "dimensions": ["ad_id", "stat_time_day"],
        "metrics": METRICS,
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "page_size": MAX_PAGE_SIZE,
        **extra,
    }


def account_params(advertiser_id: str, start: date, end: date) -> dict[str, Any]:
    return {
        **report_params(advertiser_id, start, end),
        "data_level": "AUCTION_ADVERTISER",
        "dimensions": ["stat_time_day"],
        "metrics": list(PERFORMANCE_METRICS),
    }


def all_rows(server: TikTokEmulator, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row of a report, following page_info."""
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        body = get(server, REPORT_PATH, {**params, "page": page})
        assert body["code"] == 0, body
        rows.extend(body["data"]["list"])
        if page >= body["data"]["page_info"]["total_page"]:
            return rows
        page += 1


def spend_by_day(rows: list[dict[str, Any]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = {}
    for row in rows:
        day = row["dimensions"]["stat_time_day"]
        totals[day] = totals.get(day, Decimal(0)) + Decimal(row["metrics"]["spend"])
    return totals


# ----- catalogue


def test_default_catalogue_shape(catalogue: Catalogue) -> None:
    assert set(catalogue.advertisers) == {ACME, SAKURA}
    assert catalogue.advertisers[ACME].currency == "USD"
    assert catalogue.advertisers[SAKURA].currency == "JPY"
    for entity_id in [*catalogue.campaigns, *catalogue.adgroups, *catalogue.ads]:
        assert re.fullmatch(r"\d{19}", entity_id)
    for advertiser_id in (ACME, SAKURA):
        ads = catalogue.ads_of(advertiser_id)
        assert len(ads) == 40
        assert sum(ad.status == DELETE for ad in ads) == 4
        assert sum(ad.status == DISABLE for ad in ads) == 4
        assert len(catalogue.campaigns_of(advertiser_id)) >= 2
        assert all(
            ad.last_day is not None and ad.last_day < date(2026, 1, 1) for ad in ads if ad.status == DELETE
        )
    names = [ad.name for ad in catalogue.ads.values()] + [c.name for c in catalogue.campaigns.values()]
    assert any(len(name) == LONG_NAME_LENGTH for name in names)
    assert any('"' in name for name in names) and any("🎉" in name for name in names)
    urls = [ad.landing_page_url for ad in catalogue.ads.values()]
    assert "" in urls and any("?" not in url and url for url in urls)
    assert any("__CAMPAIGN_NAME__" in url for url in urls) and any("%C3%89" in url for url in urls)


def test_daily_metrics_deterministic_and_formatted(catalogue: Catalogue) -> None:
    again = generate_catalogue()
    day = date(2025, 2, 3)
    assert all(
        again.daily_metrics(ad_id, day) == catalogue.daily_metrics(ad_id, day) for ad_id in catalogue.ads
    )
    other_seed = generate_catalogue(seed=8)
    assert [other_seed.daily_metrics(a.ad_id, day) for a in other_seed.ads_of(ACME)] != [
        catalogue.daily_metrics(a.ad_id, day) for a in catalogue.ads_of(ACME)
    ]
    # Money as real answers write it: three decimals for USD (Airbyte's expected_records.jsonl:
    # "60.000"), whole numbers for JPY (the emulator's stricter guess).
    for advertiser_id, pattern in ((SAKURA, r"\d+"), (ACME, r"\d+\.\d{3}")):
        rows = [catalogue.daily_metrics(ad.ad_id, day) for ad in catalogue.ads_of(advertiser_id)]
        delivered = [row for row in rows if row is not None]
        assert delivered and all(re.fullmatch(pattern, row["spend"]) for row in delivered), advertiser_id
    ad = catalogue.ads_of(ACME)[0]
    assert catalogue.daily_metrics(ad.ad_id, ad.first_day - timedelta(days=1)) is None
    year = [catalogue.daily_metrics(ad.ad_id, ad.first_day + timedelta(days=n)) for n in range(365)]
    assert 0.05 < sum(row is None for row in year) / 365 < 0.25  # ~15% of days without delivery


# ----- reports


@pytest.fixture(scope="module")
def big_emulator() -> Iterator[TikTokEmulator]:
    big = generate_catalogue(
        seed=11,
        advertisers=[AdvertiserSpec(BIG, "Big Spender", "EUR", "Europe/Paris")],
        ads_per_advertiser=600,
    )
    server = TikTokEmulator(big)
    with server:
        yield server


def test_report_pages_through_more_than_one_page(big_emulator: TikTokEmulator) -> None:
    start, end = date(2025, 7, 1), date(2025, 7, 3)
    first = get(big_emulator, REPORT_PATH, {**report_params(BIG, start, end), "page": 1})
    info = first["data"]["page_info"]
    assert first["code"] == 0 and info["page_size"] == MAX_PAGE_SIZE
    assert info["total_number"] > MAX_PAGE_SIZE and info["total_page"] == -(
        -info["total_number"] // MAX_PAGE_SIZE
    )
    rows = all_rows(big_emulator, report_params(BIG, start, end))
    assert len(rows) == info["total_number"]
    keys = [(row["dimensions"]["stat_time_day"], row["dimensions"]["ad_id"]) for row in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert {day for day, _ in keys} == {f"{start + timedelta(days=n)} 00:00:00" for n in range(3)}
    catalogue = big_emulator.catalogue
    for row in rows[::97]:
        day = date.fromisoformat(row["dimensions"]["stat_time_day"][:10])
        expected = catalogue.daily_metrics(row["dimensions"]["ad_id"], day)
        assert expected is not None
        assert {name: row["metrics"][name] for name in PERFORMANCE_METRICS} == expected
    past_end = get(
        big_emulator, REPORT_PATH, {**report_params(BIG, start, end), "page": info["total_page"] + 1}
    )
    assert past_end["code"] == 0 and past_end["data"]["list"] == []


def test_default_page_size_is_ten(emulator: TikTokEmulator) -> None:
    params = report_params(ACME, START, START + timedelta(days=5))
    del params["page_size"]
    body = get(emulator, REPORT_PATH, params)
    assert body["data"]["page_info"]["page_size"] == 10 and len(body["data"]["list"]) == 10


def test_span_of_thirty_days_is_the_limit(emulator: TikTokEmulator) -> None:
    ok = get(emulator, REPORT_PATH, report_params(ACME, START, START + timedelta(days=30)))
    assert ok["code"] == 0 and ok["data"]["page_info"]["total_number"] > 0
    too_long = get(emulator, REPORT_PATH, report_params(ACME, START, START + timedelta(days=31)))
    assert too_long["code"] == 40002 and "30 days" in too_long["message"] and too_long["data"] == {}


def test_deleted_ads_only_with_status_all_and_then_match_account_totals(
    emulator: TikTokEmulator, catalogue: Catalogue
) -> None:
    deleted = {ad.ad_id for ad in catalogue.ads_of(ACME) if ad.status == DELETE}
    start = min(catalogue.ads[ad_id].first_day for ad_id in deleted)
    end = start + timedelta(days=30)
    default_rows = all_rows(emulator, report_params(ACME, start, end))
    all_status_rows = all_rows(emulator, report_params(ACME, start, end, filtering=AD_STATUS_ALL_FILTER))
    account_rows = all_rows(emulator, account_params(ACME, start, end))
    assert not {row["dimensions"]["ad_id"] for row in default_rows} & deleted
    deleted_rows = [row for row in all_status_rows if row["dimensions"]["ad_id"] in deleted]
    assert deleted_rows
    assert all(
        row["metrics"]["ad_name"] == "-" and row["metrics"]["campaign_id"] == "-" for row in deleted_rows
    )
    account = {row["dimensions"]["stat_time_day"]: Decimal(row["metrics"]["spend"]) for row in account_rows}
    assert spend_by_day(all_status_rows) == account
    assert spend_by_day(default_rows) != account
    day = date.fromisoformat(account_rows[0]["dimensions"]["stat_time_day"][:10])
    assert catalogue.advertiser_day_totals(ACME, day) == account_rows[0]["metrics"]


def test_deleted_attribute_value_is_configurable(catalogue: Catalogue) -> None:
    deleted = next(ad for ad in catalogue.ads_of(ACME) if ad.status == DELETE)
    server = TikTokEmulator(catalogue, deleted_attribute_value="")
    with server:
        params = report_params(ACME, deleted.first_day, deleted.first_day + timedelta(days=10))
        rows = all_rows(server, {**params, "filtering": AD_STATUS_ALL_FILTER})
    row = next(row for row in rows if row["dimensions"]["ad_id"] == deleted.ad_id)
    assert row["metrics"]["ad_name"] == "" and row["metrics"]["adgroup_id"] == ""
    assert row["metrics"]["spend"] != ""


def test_old_filters_parameter_is_silently_ignored(emulator: TikTokEmulator, catalogue: Catalogue) -> None:
    """TikTok ignores unknown parameters: the pre-rename ``filters`` still drops deleted ads."""
    deleted = next(ad for ad in catalogue.ads_of(ACME) if ad.status == DELETE)
    params = report_params(ACME, deleted.first_day, deleted.first_day + timedelta(days=10))
    rows = all_rows(emulator, {**params, "filters": AD_STATUS_ALL_FILTER})
    assert rows and deleted.ad_id not in {row["dimensions"]["ad_id"] for row in rows}


def test_an_ad_deleted_later_leaves_default_reports() -> None:
    catalogue = generate_catalogue()
    ad = next(ad for ad in catalogue.ads_of(ACME) if ad.status == "ENABLE" and ad.first_day == START)
    server = TikTokEmulator(catalogue)
    with server:
        params = report_params(ACME, START, START + timedelta(days=5))
        before = {row["dimensions"]["ad_id"] for row in all_rows(server, params)}
        catalogue.set_ad_status(ad.ad_id, DELETE)
        after = {row["dimensions"]["ad_id"] for row in all_rows(server, params)}
        with_deleted = all_rows(server, {**params, "filtering": AD_STATUS_ALL_FILTER})
        listed = get(server, AD_PATH, {"advertiser_id": ACME, "page_size": 100})["data"]["list"]
    assert ad.ad_id in before and after == before - {ad.ad_id}
    assert ad.ad_id in {row["dimensions"]["ad_id"] for row in with_deleted}
    assert ad.ad_id not in {row["ad_id"] for row in listed}


def test_restate_changes_the_report(emulator: TikTokEmulator, catalogue: Catalogue) -> None:
    day = date(2025, 3, 10)
    ads = [ad for ad in catalogue.ads_of(SAKURA) if catalogue.daily_metrics(ad.ad_id, day) is not None]
    changed, vanished = ads[0].ad_id, ads[1].ad_id
    before = {
        row["dimensions"]["ad_id"]: row["metrics"]
        for row in all_rows(emulator, report_params(SAKURA, day, day))
    }
    total_before = Decimal(catalogue.advertiser_day_totals(SAKURA, day)["spend"])
    catalogue.restate(changed, day, {"spend": "1234", "conversion": "99"})
    catalogue.restate(vanished, day, None)
    after = {
        row["dimensions"]["ad_id"]: row["metrics"]
        for row in all_rows(emulator, report_params(SAKURA, day, day))
    }
    assert after[changed]["spend"] == "1234" and after[changed]["conversion"] == "99"
    assert after[changed]["impressions"] == before[changed]["impressions"]
    assert vanished not in after and set(after) == set(before) - {vanished}
    expected_total = (
        total_before
        - Decimal(before[changed]["spend"])
        + Decimal("1234.00")
        - Decimal(before[vanished]["spend"])
    )
    account = get(emulator, REPORT_PATH, account_params(SAKURA, day, day))["data"]["list"][0]
    assert Decimal(account["metrics"]["spend"]) == expected_total


def test_account_level_report_and_dimensions(emulator: TikTokEmulator) -> None:
    params = {
        **account_params(SAKURA, START, START + timedelta(days=2)),
        "dimensions": ["advertiser_id", "stat_time_day"],
    }
    body = get(emulator, REPORT_PATH, params)
    assert body["code"] == 0
    assert body["data"]["list"][0]["dimensions"] == {
        "advertiser_id": SAKURA,
        "stat_time_day": "2025-01-01 00:00:00",
    }
    bad = get(emulator, REPORT_PATH, {**params, "metrics": ["spend", "ad_name"]})
    assert bad["code"] == 40002 and "ad_name" in bad["message"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        # TikTok names the values it refused, not the parameter (airbytehq/airbyte issue 11375,
        # singer-io/tap-tiktok-ads issue 14): "Invalid metric fields: ['cost']".
        ({"metrics": ["spend", "cost"]}, "Invalid metric fields: ['cost']"),
        ({"dimensions": ["ad_id", "stat_time_week"]}, "['stat_time_week']"),
        ({"dimensions": "ad_id,stat_time_day"}, "dimensions"),
        ({"metrics": "[spend"}, "metrics"),
        ({"start_date": "2025/01/01"}, "start_date"),
        ({"end_date": "2025-02-30"}, "end_date"),
        ({"start_date": "2025-01-10", "end_date": "2025-01-09"}, "start_date"),
        ({"page_size": 0}, "page_size"),
        ({"page_size": 1001}, "page_size"),
        ({"page": "two"}, "page"),
        ({"report_type": None}, "report_type"),
        ({"service_type": None}, "service_type"),
        ({"service_type": "RESERVATION"}, "service_type"),
        ({"metrics": ["spend", "currency"]}, "['currency']"),
        ({"advertiser_id": None}, "advertiser_id"),
        ({"data_level": "AUCTION_EVERYTHING"}, "data_level"),
        ({"filtering": {"ad_status": "STATUS_ALL"}}, "filtering"),
        (
            {"filtering": [{"field_name": "campaign_status", "filter_type": "IN", "filter_value": "[]"}]},
            "filtering",
        ),
    ],
)
def test_parameter_errors_name_the_parameter(
    emulator: TikTokEmulator, change: dict[str, Any], named: str
) -> None:
    params = report_params(ACME, START, START + timedelta(days=2))
    for name, value in change.items():
        if value is None:
            del params[name]
        else:
            params[name] = value
    body = get(emulator, REPORT_PATH, params)
    assert body["code"] == 40002 and named in body["message"], body


def test_every_known_metric_is_accepted(emulator: TikTokEmulator) -> None:
    body = get(emulator, REPORT_PATH, {**report_params(ACME, START, START), "metrics": sorted(KNOWN_METRICS)})
    assert body["code"] == 0
    assert all(set(row["metrics"]) == KNOWN_METRICS for row in body["data"]["list"])


# ----- auth


def test_auth_codes(emulator: TikTokEmulator) -> None:
    params = report_params(ACME, START, START)
    assert get(emulator, REPORT_PATH, params, token=None)["code"] == 40104
    assert get(emulator, REPORT_PATH, params, token="")["code"] == 40104
    in_query = get(emulator, REPORT_PATH, {**params, "access_token": DEFAULT_ACCESS_TOKEN}, token=None)
    assert in_query["code"] == 40104
    assert get(emulator, REPORT_PATH, params, token="revoked-token")["code"] == 40105
    assert get(emulator, REPORT_PATH, params, token=ACME_ONLY_TOKEN)["code"] == 0
    other = get(emulator, REPORT_PATH, report_params(SAKURA, START, START), token=ACME_ONLY_TOKEN)
    assert other["code"] == 40001 and SAKURA in other["message"]
    assert get(emulator, REPORT_PATH, report_params("7999999999999999999", START, START))["code"] == 40001


def test_request_log_never_holds_the_token(emulator: TikTokEmulator) -> None:
    get(
        emulator,
        REPORT_PATH,
        {**report_params(ACME, START, START), "access_token": "query-secret"},
        token=None,
    )
    get(emulator, REPORT_PATH, report_params(ACME, START, START), token="header-secret")
    logged = json.dumps(emulator.request_log)
    assert (
        DEFAULT_ACCESS_TOKEN not in logged and "query-secret" not in logged and "header-secret" not in logged
    )
    entry = emulator.request_log[-1]
    assert entry["path"] == REPORT_PATH and entry["advertiser_id"] == ACME and entry["code"] == 40105
    assert emulator.calls(REPORT_PATH) == sum(1 for e in emulator.request_log if e["path"] == REPORT_PATH)


# ----- faults and rate limits


def codes_with_faults(catalogue: Catalogue, seed: int) -> list[int]:
    faults = FaultInjector(rate=0.5, seed=seed, kinds=(Fault.RATE_LIMIT, Fault.SERVER_ERROR))
    server = TikTokEmulator(catalogue, faults=faults)
    with server:
        return [get(server, REPORT_PATH, report_params(ACME, START, START))["code"] for _ in range(16)]


def test_fault_injection_at_a_rate_is_deterministic_under_a_seed(catalogue: Catalogue) -> None:
    first = codes_with_faults(catalogue, seed=5)
    assert first == codes_with_faults(catalogue, seed=5)
    assert {0, 40100, 50000} <= set(first)


def test_scripted_rate_limit_answers_40100(catalogue: Catalogue) -> None:
    faults = FaultInjector()
    faults.inject(Fault.RATE_LIMIT, 2)
    server = TikTokEmulator(catalogue, faults=faults)
    with server:
        codes = [get(server, REPORT_PATH, report_params(ACME, START, START))["code"] for _ in range(3)]
        assert requests.get(server.url + HEALTH_PATH, timeout=5).json() == {"ok": True}
        assert server.calls() == 3
    assert codes == [40100, 40100, 0]


def test_qps_limit(catalogue: Catalogue) -> None:
    server = TikTokEmulator(catalogue, qps_limit=2)
    with server:
        codes = [get(server, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME]})["code"] for _ in range(4)]
    assert codes[:2] == [0, 0] and 40100 in codes[2:]


# ----- metadata endpoints


def test_advertiser_info_time_zones_and_currencies(emulator: TikTokEmulator) -> None:
    body = get(emulator, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME, SAKURA]})
    by_id = {row["advertiser_id"]: row for row in body["data"]["list"]}
    assert by_id[ACME]["currency"] == "USD" and by_id[SAKURA]["currency"] == "JPY"
    # A fixed offset all year for the US account (TikTok's help): Etc/GMT+8 is UTC-8.
    assert by_id[ACME]["timezone"] == "Etc/GMT+8" and by_id[SAKURA]["timezone"] == "Asia/Tokyo"
    # display_timezone as real answers carry it (Airbyte's expected_records.jsonl).
    assert set(by_id[ACME]) == {"advertiser_id", "name", "currency", "timezone", "display_timezone", "status"}
    assert by_id[ACME]["display_timezone"] == "America/Los_Angeles"
    only = get(
        emulator, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME], "fields": ["advertiser_id", "currency"]}
    )
    assert only["data"]["list"] == [{"advertiser_id": ACME, "currency": "USD"}]
    denied = get(emulator, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME, SAKURA]}, token=ACME_ONLY_TOKEN)
    assert denied["code"] == 40001
    assert (
        get(emulator, ADVERTISER_INFO_PATH, {"advertiser_ids": [str(n) for n in range(101)]})["code"] == 40002
    )


def test_ad_get_excludes_deleted_ads_by_default(emulator: TikTokEmulator, catalogue: Catalogue) -> None:
    params = {"advertiser_id": ACME, "page_size": MAX_PAGE_SIZE}
    default = get(emulator, AD_PATH, params)["data"]["list"]
    everything = get(emulator, AD_PATH, {**params, "filtering": {"primary_status": "STATUS_ALL"}})["data"][
        "list"
    ]
    deleted = {ad.ad_id for ad in catalogue.ads_of(ACME) if ad.status == DELETE}
    assert len(everything) == 40 and len(default) == 36
    assert not {row["ad_id"] for row in default} & deleted
    row = next(row for row in everything if row["ad_id"] in deleted)
    assert (
        row["secondary_status"] == "AD_STATUS_DELETE" and row["ad_name"] == catalogue.ads[row["ad_id"]].name
    )
    chosen = sorted(deleted)[:2]
    by_ids = get(
        emulator,
        AD_PATH,
        {
            **params,
            "fields": ["ad_id", "landing_page_url"],
            "filtering": {"ad_ids": chosen, "primary_status": "STATUS_ALL"},
        },
    )["data"]["list"]
    assert [row["ad_id"] for row in by_ids] == chosen and set(by_ids[0]) == {"ad_id", "landing_page_url"}
    too_many = get(emulator, AD_PATH, {**params, "filtering": {"ad_ids": [str(n) for n in range(101)]}})
    assert too_many["code"] == 40002 and "ad_ids" in too_many["message"]


def test_adgroup_and_campaign_get(emulator: TikTokEmulator, catalogue: Catalogue) -> None:
    groups = get(
        emulator,
        ADGROUP_PATH,
        {"advertiser_id": ACME, "page_size": 100, "filtering": {"primary_status": "STATUS_ALL"}},
    )
    assert {row["adgroup_id"] for row in groups["data"]["list"]} == {
        g.adgroup_id for g in catalogue.adgroups_of(ACME)
    }
    campaign_id = catalogue.campaigns_of(ACME)[0].campaign_id
    in_campaign = get(
        emulator, ADGROUP_PATH, {"advertiser_id": ACME, "filtering": {"campaign_ids": [campaign_id]}}
    )
    assert in_campaign["data"]["list"] and all(
        row["campaign_id"] == campaign_id for row in in_campaign["data"]["list"]
    )
    campaigns = get(emulator, CAMPAIGN_PATH, {"advertiser_id": SAKURA, "page_size": 1})
    assert campaigns["data"]["page_info"]["total_number"] == len(catalogue.campaigns_of(SAKURA))
    assert len(campaigns["data"]["list"]) == 1


def test_unknown_path_is_a_json_404(emulator: TikTokEmulator) -> None:
    response = requests.get(emulator.url + "/open_api/v1.3/report/integrated/get", timeout=5)
    assert response.status_code == 404 and response.json()["code"] == 404


# ----- what a client must not ask for, and what it must send


def test_currency_is_not_a_report_metric(emulator: TikTokEmulator) -> None:
    body = get(
        emulator, REPORT_PATH, {**report_params(ACME, START, START), "metrics": [*METRICS, "currency"]}
    )
    assert body["code"] == 40002 and "Invalid metric fields: ['currency']" in body["message"]
    assert "currency" not in KNOWN_METRICS


def test_advertiser_info_serves_the_fields_real_answers_carry(emulator: TikTokEmulator) -> None:
    body = get(
        emulator,
        ADVERTISER_INFO_PATH,
        {"advertiser_ids": [ACME], "fields": ["advertiser_id", "balance_of_nothing"]},
    )
    assert body["code"] == 40002 and "Invalid fields: ['balance_of_nothing']" in body["message"], body
    # Airbyte's and Singer's schemas, and display_timezone from Airbyte's expected_records.jsonl.
    listed = ["advertiser_id", "name", "currency", "timezone", "display_timezone", "status"]
    body = get(emulator, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME], "fields": listed})
    assert body["code"] == 0 and set(body["data"]["list"][0]) == set(listed)


def test_service_type_auction_is_accepted_and_required(emulator: TikTokEmulator) -> None:
    params = report_params(ACME, START, START)
    assert get(emulator, REPORT_PATH, params)["code"] == 0
    del params["service_type"]
    missing = get(emulator, REPORT_PATH, params)
    assert missing["code"] == 40002 and "service_type" in missing["message"]


# ----- the ad cap and the id filters


CAPPED = "7000000000000000077"


@pytest.fixture(scope="module")
def capped_catalogue() -> Catalogue:
    return generate_catalogue(
        seed=21,
        advertisers=[AdvertiserSpec(CAPPED, "Capped", "USD", "America/New_York")],
        ads_per_advertiser=40,
    )


def keys_of(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(row["dimensions"]["ad_id"], row["dimensions"]["stat_time_day"][:10]) for row in rows}


def truth_keys(catalogue: Catalogue, advertiser_id: str, start: date, days: int) -> set[tuple[str, str]]:
    return {
        (ad.ad_id, (start + timedelta(days=n)).isoformat())
        for n in range(days)
        for ad in catalogue.ads_of(advertiser_id)
        if catalogue.daily_metrics(ad.ad_id, start + timedelta(days=n)) is not None
    }


def test_an_answer_beyond_the_ad_cap_is_cut_silently(capped_catalogue: Catalogue) -> None:
    start, end = date(2025, 3, 1), date(2025, 3, 10)
    everything = truth_keys(capped_catalogue, CAPPED, start, 10)
    assert len({ad for ad, _ in everything}) > 12
    with TikTokEmulator(capped_catalogue, max_ads_per_query=12) as server:
        params = report_params(CAPPED, start, end, filtering=AD_STATUS_ALL_FILTER, page_size=50)
        first = get(server, REPORT_PATH, {**params, "page": 1})
        rows = all_rows(server, params)
        totals = all_rows(server, account_params(CAPPED, start, end))
    assert first["code"] == 0 and set(first) == {"code", "message", "request_id", "data"}
    assert set(first["data"]) == {"list", "page_info"}  # nothing says the answer was cut
    # page_info describes the cut answer it belongs to, consistently on every page.
    assert first["data"]["page_info"]["total_number"] == len(rows)
    assert first["data"]["page_info"]["total_page"] == -(-len(rows) // 50)
    got = keys_of(rows)
    # The cap counts the ads in the query's scope, with delivery or not (SDK java_sdk/README.md: "the
    # reporting data of up to 10,000 advertisements"): 12 of the 40 are kept, in no order of their
    # ids, and those that did not deliver add no rows, so the answer holds fewer than 12 ads.
    answered = {ad for ad, _ in got}
    assert got < everything and 0 < len(answered) <= 12
    assert answered != set(sorted({ad for ad, _ in everything})[: len(answered)])
    assert got == {key for key in everything if key[0] in answered}
    # The account totals still count every ad: the cut shows only as ad rows falling short.
    assert sum(Decimal(row["metrics"]["spend"]) for row in totals) > sum(
        Decimal(row["metrics"]["spend"]) for row in rows
    )


def test_id_filters_select_campaigns_ad_groups_and_ads(capped_catalogue: Catalogue) -> None:
    start, end = date(2025, 3, 1), date(2025, 3, 10)
    everything = truth_keys(capped_catalogue, CAPPED, start, 10)
    ads = capped_catalogue.ads_of(CAPPED)
    with TikTokEmulator(capped_catalogue, max_ads_per_query=12) as server:

        def rows_of(field: str, ids: list[Any]) -> set[tuple[str, str]]:
            id_filter = {"field_name": field, "filter_type": "IN", "filter_value": json.dumps(ids)}
            params = report_params(CAPPED, start, end, filtering=[*AD_STATUS_ALL_FILTER, id_filter])
            return keys_of(all_rows(server, params))

        by_campaign: set[tuple[str, str]] = set()
        for campaign in capped_catalogue.campaigns_of(CAPPED):
            members = {ad.ad_id for ad in ads if ad.campaign_id == campaign.campaign_id}
            if len(members) <= 12:
                got = rows_of("campaign_ids", [campaign.campaign_id])
                assert got == {key for key in everything if key[0] in members}
                by_campaign |= got
        group = capped_catalogue.adgroups_of(CAPPED)[0]
        in_group = {ad.ad_id for ad in ads if ad.adgroup_id == group.adgroup_id}
        assert rows_of("adgroup_ids", [group.adgroup_id]) == {key for key in everything if key[0] in in_group}
        some = [ad.ad_id for ad in ads[:5]]
        assert rows_of("ad_ids", some) == {key for key in everything if key[0] in some}
        # Ids written as JSON numbers, as in TikTok's own example, select the same ads.
        assert rows_of("ad_ids", [int(ad_id) for ad_id in some]) == rows_of("ad_ids", some)
        # Without ad_status the deleted ads stay out, filter or not.
        deleted = [ad.ad_id for ad in ads if ad.status == DELETE]
        only_ids = {"field_name": "ad_ids", "filter_type": "IN", "filter_value": json.dumps(deleted)}
        assert not keys_of(all_rows(server, report_params(CAPPED, start, end, filtering=[only_ids])))
        too_many = {
            "field_name": "campaign_ids",
            "filter_type": "IN",
            "filter_value": json.dumps(["1"] * 101),
        }
        refused = get(server, REPORT_PATH, report_params(CAPPED, start, end, filtering=[too_many]))
        assert refused["code"] == 40002 and "campaign_ids" in refused["message"]
        not_ids = {"field_name": "adgroup_ids", "filter_type": "IN", "filter_value": '["abc"]'}
        refused = get(server, REPORT_PATH, report_params(CAPPED, start, end, filtering=[not_ids]))
        assert refused["code"] == 40002 and "adgroup_ids" in refused["message"]
    assert by_campaign, "no campaign fits the cap: the test proves nothing"


# ----- faults TikTok's SDK lists


def test_frequency_limit_and_query_too_large_faults(catalogue: Catalogue) -> None:
    faults = FaultInjector()
    faults.inject(Fault.FREQUENCY_LIMITED)
    faults.inject(Fault.QUERY_TOO_LARGE)
    with TikTokEmulator(catalogue, faults=faults) as server:
        params = report_params(ACME, START, START)
        codes = [get(server, REPORT_PATH, params)["code"] for _ in range(3)]
        server.query_too_large_days = 7
        week = get(server, REPORT_PATH, report_params(ACME, START, START + timedelta(days=6)))
        eight = get(server, REPORT_PATH, report_params(ACME, START, START + timedelta(days=7)))
        totals = get(server, REPORT_PATH, account_params(ACME, START, START + timedelta(days=29)))
    assert codes == [40132, 40067, 0]
    assert week["code"] == 0 and totals["code"] == 0
    assert eight["code"] == 40067 and "narrow the date range" in eight["message"]


def test_some_ads_carry_their_landing_pages_as_a_list(emulator: TikTokEmulator, catalogue: Catalogue) -> None:
    params = {
        "advertiser_id": ACME,
        "page_size": MAX_PAGE_SIZE,
        "filtering": {"primary_status": "STATUS_ALL"},
    }
    items = [
        item for item in get(emulator, AD_PATH, params)["data"]["list"] if "smart_plus_ad_id" not in item
    ]
    several = [item for item in items if item["landing_page_urls"]]
    assert several and all(item["landing_page_url"] is None for item in several)
    assert all(isinstance(url, str) for item in several for url in item["landing_page_urls"])
    for item in several:
        ad = catalogue.ads[item["ad_id"]]
        assert ad.landing_page_url == "" and tuple(item["landing_page_urls"]) == ad.landing_page_urls
    single = [item for item in items if not item["landing_page_urls"]]
    assert single and all(item["landing_page_urls"] is None for item in single)


def test_some_ads_carry_utm_params_and_smart_plus_ads_name_their_smart_plus_ad(
    emulator: TikTokEmulator, catalogue: Catalogue
) -> None:
    params = {
        "advertiser_id": ACME,
        "page_size": MAX_PAGE_SIZE,
        "filtering": {"primary_status": "STATUS_ALL"},
    }
    items = get(emulator, AD_PATH, params)["data"]["list"]
    with_params = [item for item in items if "utm_params" in item]
    # A list of {key, value}: singer-io/tap-tiktok-ads schemas/ads.json, the SDK's AdcreateUtmParams.
    assert with_params and all(
        set(entry) == {"key", "value"} for item in with_params for entry in item["utm_params"]
    )
    assert any("?" not in (item["landing_page_url"] or "?") for item in with_params)
    assert any("utm_source=" in (item["landing_page_url"] or "") for item in with_params)
    smart = [item for item in items if "smart_plus_ad_id" in item]
    assert smart and all("landing_page_url" not in item and "utm_params" not in item for item in smart)
    answer = get(
        emulator,
        SMART_PLUS_AD_PATH,
        {
            "advertiser_id": ACME,
            "page_size": 100,
            "filtering": {
                "smart_plus_ad_ids": [item["smart_plus_ad_id"] for item in smart],
                "primary_status": "STATUS_ALL",
            },
        },
    )
    assert answer["code"] == 0
    smart_plus = {entry["smart_plus_ad_id"]: entry for entry in answer["data"]["list"]}
    assert set(smart_plus) == {item["smart_plus_ad_id"] for item in smart}
    for item in smart:
        entry = smart_plus[item["smart_plus_ad_id"]]
        ad = catalogue.ads[item["ad_id"]]
        urls = [page["landing_page_url"] for page in entry["landing_page_url_list"]]
        assert urls and urls[0] == ad.landing_page
        assert {(pair["key"], pair["value"]) for pair in entry["ad_configuration"]["utm_params"]} == set(
            ad.utm_params
        )
        assert entry["ad_name"] == ad.name and entry["adgroup_id"] == ad.adgroup_id
    # page_size at most 100 there (SDK yml_files/smart_plus_ad_get.yml).
    assert get(emulator, SMART_PLUS_AD_PATH, {"advertiser_id": ACME, "page_size": 101})["code"] == 40002


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        (Fault.APP_RESTRICTED, 40100, "Due to too many requests, requests from App "),
        (Fault.MAINTENANCE, 60001, "maintenance"),
        (Fault.TOO_MANY_REQUESTS_BLOCKED, 61000, "Too many requests"),
    ],
)
def test_an_outage_lasts_its_seconds_from_the_first_request_it_meets(
    catalogue: Catalogue, fault: Fault, code: int, words: str
) -> None:
    now = [100.0]
    faults = FaultInjector(clock=lambda: now[0])
    faults.inject_for(fault, seconds=30)
    with TikTokEmulator(catalogue, faults=faults) as server:
        now[0] = 500.0  # the outage starts with the first request, however late it comes
        answers = [get(server, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME]})]
        now[0] = 529.0
        answers.append(get(server, REPORT_PATH, report_params(SAKURA, START, START)))
        now[0] = 530.0
        after = get(server, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME]})
    assert [answer["code"] for answer in answers] == [code, code]  # every endpoint, every account
    assert all(words in answer["message"] for answer in answers)
    assert after["code"] == 0


def test_the_emulators_read_the_apis_on_their_own() -> None:
    """The emulators import nothing of the product: a fact both misread would pass every test."""
    import ast
    from pathlib import Path

    import tiktok_amp_emulators

    folder = Path(tiktok_amp_emulators.__file__).parent
    for module in ("tiktok_server.py", "amplitude_server.py", "catalogue.py", "faults.py", "http_server.py"):
        tree = ast.parse((folder / module).read_text(encoding="utf-8"))
        imported: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                imported.append(node.module or "")
        assert not [name for name in imported if name.startswith("tiktok_amp_assets")], module


# ----- knobs for accounts that misbehave as real ones do


def test_a_refused_account_gets_40001_or_40002_on_the_endpoints_chosen(catalogue: Catalogue) -> None:
    with TikTokEmulator(catalogue) as server:
        server.refuse_account(SAKURA, code=40001, endpoints=["report"])
        refused = get(server, REPORT_PATH, report_params(SAKURA, START, START))
        assert refused["code"] == 40001
        assert refused["message"] == "advertiser does not grant you /report/integrated/get/:GET permission"
        assert get(server, REPORT_PATH, report_params(ACME, START, START))["code"] == 0
        assert get(server, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME, SAKURA]})["code"] == 0

        server.refuse_account(SAKURA, code=40002, endpoints=["advertiser_info"])
        # One refused id refuses the whole request, naming it.
        both = get(server, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME, SAKURA]})
        assert both["code"] == 40002 and both["message"] == f"Invalid advertiser_ids: ['{SAKURA}']"
        assert get(server, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME]})["code"] == 0
        assert get(server, REPORT_PATH, report_params(SAKURA, START, START))["code"] == 0

        server.readable_again(SAKURA)
        assert get(server, ADVERTISER_INFO_PATH, {"advertiser_ids": [ACME, SAKURA]})["code"] == 0


def test_unattributed_spend_is_in_the_account_totals_and_in_no_ad_row(catalogue: Catalogue) -> None:
    day = START + timedelta(days=20)
    with TikTokEmulator(catalogue) as server:
        ad_rows = all_rows(server, report_params(ACME, day, day, filtering=AD_STATUS_ALL_FILTER))
        (before,) = all_rows(server, account_params(ACME, day, day))
        server.add_unattributed_spend(ACME, day, "12.34")
        (after,) = all_rows(server, account_params(ACME, day, day))
        assert all_rows(server, report_params(ACME, day, day, filtering=AD_STATUS_ALL_FILTER)) == ad_rows
    assert Decimal(after["metrics"]["spend"]) - Decimal(before["metrics"]["spend"]) == Decimal("12.34")
    assert after["metrics"]["impressions"] == before["metrics"]["impressions"]
    assert sum(Decimal(row["metrics"]["spend"]) for row in ad_rows) == Decimal(before["metrics"]["spend"])


def test_a_settling_day_reads_a_little_more_spend_each_time_then_stays() -> None:
    day = START + timedelta(days=21)
    with TikTokEmulator(generate_catalogue()) as server:
        server.settle_day(ACME, day, step="0.25", reads=2)
        spends = [
            Decimal(all_rows(server, account_params(ACME, day, day))[0]["metrics"]["spend"]) for _ in range(4)
        ]
    assert [spends[1] - spends[0], spends[2] - spends[1], spends[3] - spends[2]] == [
        Decimal("0.25"),
        Decimal(0),
        Decimal(0),
    ]
