"""The TikTok client against the TikTok emulator over real HTTP: every row once, the fewest calls,
faults survived, failures explained, the token kept secret.

Nothing of the project is mocked. Where a test needs TikTok to misbehave in a way the fault
injector does not offer (data restated between two pages, an answer without ``page_info``, a
redirect), a small subclass of the emulator changes the answer on the server side of the socket.
"""

from __future__ import annotations

import json
import logging
import re
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from tiktok_amp_emulators.catalogue import DELETE, AdvertiserSpec, Catalogue, generate_catalogue
from tiktok_amp_emulators.faults import Fault, FaultInjector
from tiktok_amp_emulators.http_server import Request, Response
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from tiktok_amp_assets.clients.http import (
    InsecureUrlError,
    OutageBudget,
    RequestPacer,
    RetryPolicy,
    checked_base_url,
)
from tiktok_amp_assets.clients.tiktok import QueryTooLargeError, TikTokApiError, TikTokClient
from tiktok_amp_assets.clients.tiktok_extraction import TikTokExtraction
from tiktok_amp_assets.core import tiktok_contract
from tiktok_amp_assets.core.ad_metrics import account_timezone, landing_page
from tiktok_amp_assets.core.tiktok_contract import (
    AD_PATH,
    ADVERTISER_INFO_PATH,
    MAX_FILTER_IDS,
    PERFORMANCE_METRICS,
    REPORT_PATH,
    SMART_PLUS_AD_PATH,
)
from tiktok_amp_assets.resources import TikTokResource
from tiktok_amp_assets.settings import ConfigurationError

TOKEN = "client-test-token-9c1e5a7f3b2d4e6a8c0b"
ACME_ONLY_TOKEN = "client-test-acme-only-token-1f2e3d4c"
ACME = "7000000000000000001"  # USD, America/Los_Angeles (advertiser/info writes Etc/GMT+8)
SAKURA = "7000000000000000002"  # JPY, Asia/Tokyo
WINDOW_START = date(2025, 3, 1)  # every running ad has started; some deleted ads still spend
FAST_RETRY = RetryPolicy(max_attempts=6, base_seconds=0.01, max_seconds=0.05)

Key = tuple[str, str]  # (ad_id, YYYY-MM-DD)


class TappedEmulator(TikTokEmulator):
    """The emulator, keeping every request as it came off the wire (headers included).

    Tests change its answers with the emulator's own ``rewrite_answers``.
    """

    def __init__(self, catalogue: Catalogue, **kwargs: Any) -> None:
        super().__init__(catalogue, **kwargs)
        self.wire: list[Request] = []

    def handle(self, request: Request, fault: Fault | None) -> Response:
        with self.lock:
            self.wire.append(request)
        return super().handle(request, fault)

    def report_requests(self) -> list[dict[str, Any]]:
        return [entry for entry in self.request_log if entry["path"] == REPORT_PATH]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    """Read-only: 60 ads per account, so a 30-day window holds more than 1,000 rows."""
    return generate_catalogue(seed=5, ads_per_advertiser=60)


@pytest.fixture
def fresh_catalogue() -> Catalogue:
    """For tests that restate data."""
    return generate_catalogue(seed=5, ads_per_advertiser=60)


def tapped(catalogue: Catalogue, **kwargs: Any) -> TappedEmulator:
    tokens: dict[str, set[str] | None] = {TOKEN: None, ACME_ONLY_TOKEN: {ACME}}
    return TappedEmulator(catalogue, access_tokens=tokens, **kwargs)


@pytest.fixture
def emulator(catalogue: Catalogue) -> Iterator[TappedEmulator]:
    with tapped(catalogue) as server:
        yield server


@pytest.fixture
def make_client() -> Iterator[Callable[..., TikTokClient]]:
    clients: list[TikTokClient] = []

    def make(server: TikTokEmulator, token: str = TOKEN, **kwargs: Any) -> TikTokClient:
        kwargs.setdefault("retry", FAST_RETRY)
        client = TikTokClient(server.url, token, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def days(start: date, count: int) -> list[date]:
    return [start + timedelta(days=offset) for offset in range(count)]


def truth(catalogue: Catalogue, advertiser_id: str, start: date, count: int) -> dict[Key, dict[str, str]]:
    """Every ad-day the account delivered, deleted ads included, with TikTok's metric strings."""
    return {
        (ad.ad_id, day.isoformat()): metrics
        for day in days(start, count)
        for ad in catalogue.ads_of(advertiser_id)
        if (metrics := catalogue.daily_metrics(ad.ad_id, day)) is not None
    }


def keyed(rows: list[dict[str, Any]]) -> dict[Key, dict[str, str]]:
    """Report rows by (ad, day); fails on a row seen twice."""
    by_key: dict[Key, dict[str, str]] = {}
    for row in rows:
        key = (row["dimensions"]["ad_id"], row["dimensions"]["stat_time_day"][:10])
        assert key not in by_key, f"row {key} came twice"
        by_key[key] = {name: row["metrics"][name] for name in PERFORMANCE_METRICS}
    return by_key


def drop_page_info(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
    envelope["data"].pop("page_info", None)
    return envelope


# ----- accounts, pages, windows, deleted ads


def test_two_accounts_in_their_own_time_zones_and_currencies(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    client = make_client(emulator)
    infos = {item["advertiser_id"]: item for item in client.advertiser_info([ACME, SAKURA])}
    assert emulator.calls(ADVERTISER_INFO_PATH) == 1
    assert (infos[ACME]["currency"], infos[SAKURA]["currency"]) == ("USD", "JPY")
    # TikTok writes a fixed offset in "timezone" for some accounts (Etc/GMT+8 is UTC-8 all year):
    # the account's report days are in that zone.
    assert infos[ACME]["timezone"] == "Etc/GMT+8"
    assert account_timezone(infos[ACME]) == "Etc/GMT+8"
    assert account_timezone(infos[SAKURA]) == "Asia/Tokyo"
    # Only the fields the importer reads are asked for (display_timezone, which real answers carry,
    # is not needed: report days are in "timezone").
    (info_request,) = [entry for entry in emulator.request_log if entry["path"] == ADVERTISER_INFO_PATH]
    assert json.loads(info_request["params"]["fields"]) == ["advertiser_id", "name", "currency", "timezone"]

    for advertiser_id, currency in ((ACME, "USD"), (SAKURA, "JPY")):
        rows = list(client.ad_day_report(advertiser_id, WINDOW_START, WINDOW_START))
        assert rows and "currency" not in rows[0]["metrics"]
        assert {row["dimensions"]["stat_time_day"] for row in rows} == {f"{WINDOW_START} 00:00:00"}
        # Values stay the strings TikTok wrote: "60.000" dollars and "1520" yen are not turned into
        # 60.0 and 1520.0.
        pattern = r"\d+\.\d{3}" if currency == "USD" else r"\d+"
        assert all(re.fullmatch(pattern, row["metrics"]["spend"]) for row in rows)
        assert keyed(rows) == truth(emulator.catalogue, advertiser_id, WINDOW_START, 1)


@pytest.mark.parametrize("page_size", [1000, 97])
def test_every_row_arrives_exactly_once_across_pages(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient], page_size: int
) -> None:
    client = make_client(emulator, page_size=page_size)
    rows = list(client.ad_day_report(ACME, WINDOW_START, WINDOW_START + timedelta(days=29)))
    expected = truth(emulator.catalogue, ACME, WINDOW_START, 30)
    assert len(expected) > 1000, "the window must need more than one page of 1,000 rows"
    assert keyed(rows) == expected
    assert len(emulator.report_requests()) == -(-len(expected) // page_size)
    assert all(isinstance(value, str) for row in rows for value in row["metrics"].values())


def window_rows(client: TikTokClient, advertiser_id: str, first: date, last: date) -> list[dict[str, Any]]:
    """Every ad row of a range through the extraction, which cuts it into report windows."""
    return [
        row
        for window in TikTokExtraction(client).windows(advertiser_id, first, last)
        for rows in window.rows_by_day.values()
        for row in rows
    ]


def test_rows_are_decoded_exactly_as_sent_with_equal_strings_shared(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    # What the standard decoder makes of the answer, byte for byte: a repeated key (its last value,
    # at its first place), an int beyond 64 bits, floats, nulls, nested lists and objects.
    odd_row = (
        b'{"dimensions": {"ad_id": "1", "stat_time_day": "2025-03-01 00:00:00"}, "metrics": {"spend": "1.00", '
        b'"spend": "2.00", "impressions": 184467440737095516170, "clicks": 1.5, "conversion": null, '
        b'"ad_name": ["\\u00c9", {"a": "2025-03-01 00:00:00"}]}}'
    )

    def with_odd_row(query: dict[str, str], envelope: dict[str, Any]) -> Response:
        envelope["data"]["page_info"]["total_number"] += 1
        body = json.dumps(envelope).encode()
        return Response(200, body.replace(b'"list": [', b'"list": [' + odd_row + b", ", 1))

    emulator.rewrite_answers(REPORT_PATH, with_odd_row, times=1)
    rows = make_client(emulator).ad_day_report(ACME, WINDOW_START, WINDOW_START)
    assert json.dumps(rows[0]) == json.dumps(json.loads(odd_row))
    assert list(rows[0]["metrics"]) == ["spend", "impressions", "clicks", "conversion", "ad_name"]
    assert rows[0]["metrics"]["impressions"] == 184467440737095516170
    assert keyed(rows[1:]) == truth(emulator.catalogue, ACME, WINDOW_START, 1)
    # Every row of the day names the same day: one string object, not one per row.
    assert len({id(row["dimensions"]["stat_time_day"]) for row in rows}) == 1


def test_a_45_day_range_takes_two_report_windows(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    client = make_client(emulator)
    last = WINDOW_START + timedelta(days=44)
    rows = window_rows(client, SAKURA, WINDOW_START, last)
    assert keyed(rows) == truth(emulator.catalogue, SAKURA, WINDOW_START, 45)
    windows = [
        (entry["params"]["start_date"], entry["params"]["end_date"])
        for entry in emulator.report_requests()
        if entry["params"]["data_level"] == "AUCTION_AD"
    ]
    # This account's first window holds more than 1,000 rows: two pages, so three calls for two windows.
    assert len(windows) == 3
    assert sorted(set(windows)) == [
        (WINDOW_START.isoformat(), (WINDOW_START + timedelta(days=29)).isoformat()),
        ((WINDOW_START + timedelta(days=30)).isoformat(), last.isoformat()),
    ]


def test_a_45_day_range_of_a_small_account_takes_exactly_two_report_calls(
    make_client: Callable[..., TikTokClient],
) -> None:
    small = generate_catalogue(seed=5, ads_per_advertiser=20)
    with tapped(small) as server:
        rows = window_rows(make_client(server), ACME, WINDOW_START, WINDOW_START + timedelta(days=44))
        assert keyed(rows) == truth(small, ACME, WINDOW_START, 45)
        # Per window: one page of ad rows and one of account totals.
        assert len(server.report_requests()) == 2 * 2


def test_a_window_longer_than_tiktok_accepts_is_refused_before_any_call(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    with pytest.raises(ValueError, match="report window"):
        make_client(emulator).ad_day_report(ACME, WINDOW_START, WINDOW_START + timedelta(days=31))
    assert emulator.calls() == 0


def test_deleted_ads_keep_their_spend_and_metadata(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    client = make_client(emulator)
    rows = list(client.ad_day_report(ACME, WINDOW_START, WINDOW_START + timedelta(days=29)))
    catalogue = emulator.catalogue
    deleted_with_spend = {
        row["dimensions"]["ad_id"]
        for row in rows
        if catalogue.ads[row["dimensions"]["ad_id"]].status == DELETE
        and Decimal(row["metrics"]["spend"]) != 0
    }
    assert deleted_with_spend, "the report left the deleted ads' spend out"

    ad_ids = {row["dimensions"]["ad_id"] for row in rows}
    items = client.ads(ACME, ad_ids)
    assert sorted(item["ad_id"] for item in items) == sorted(ad_ids)
    smart_plus_ids = {item["smart_plus_ad_id"] for item in items if "smart_plus_ad_id" in item}
    assert smart_plus_ids, "the window must hold Smart+ ads"
    smart_plus = {entry["smart_plus_ad_id"]: entry for entry in client.smart_plus_ads(ACME, smart_plus_ids)}
    assert set(smart_plus) == smart_plus_ids
    for item in items:
        ad = catalogue.ads[item["ad_id"]]
        assert item["ad_name"] == ad.name
        if "smart_plus_ad_id" in item:
            # A Smart+ ad's creative: its landing pages are on the Smart+ endpoint only.
            assert landing_page(item) is None
            item = {**item, "smart_plus_ad": smart_plus[item["smart_plus_ad_id"]]}
        assert (landing_page(item) or "") == ad.landing_page
        assert item["adgroup_id"] == ad.adgroup_id and item["campaign_id"] == ad.campaign_id
        assert item["campaign_name"] == catalogue.campaigns[ad.campaign_id].name
    deleted_items = [item for item in items if item["ad_id"] in deleted_with_spend]
    assert {item["secondary_status"] for item in deleted_items} == {"AD_STATUS_DELETE"}
    assert all(item["ad_name"] for item in deleted_items)
    (ad_request,) = [entry for entry in emulator.request_log if entry["path"] == AD_PATH]
    (smart_plus_request,) = [entry for entry in emulator.request_log if entry["path"] == SMART_PLUS_AD_PATH]
    assert smart_plus_request["params"]["page_size"] == "100"
    assert json.loads(ad_request["params"]["filtering"]) == {
        "ad_ids": sorted(ad_ids),
        "primary_status": "STATUS_ALL",
    }


def test_ads_asks_only_for_the_given_ids_in_chunks_of_100(make_client: Callable[..., TikTokClient]) -> None:
    big_id = "7000000000000000099"
    big = generate_catalogue(
        seed=3,
        advertisers=[AdvertiserSpec(big_id, "Big Account", "EUR", "Europe/Paris")],
        ads_per_advertiser=230,
    )
    all_ids = [ad.ad_id for ad in big.ads_of(big_id)]
    with tapped(big) as server:
        client = make_client(server)
        assert client.ads(big_id, []) == []
        assert server.calls() == 0

        some = all_ids[5:10]
        assert sorted(item["ad_id"] for item in client.ads(big_id, some)) == sorted(some)
        assert server.calls(AD_PATH) == 1

        items = client.ads(big_id, all_ids + all_ids[:3])  # repeated ids are asked for once
        assert sorted(item["ad_id"] for item in items) == sorted(all_ids)
        assert any(item["secondary_status"] == "AD_STATUS_DELETE" for item in items)
        chunks = [json.loads(entry["params"]["filtering"])["ad_ids"] for entry in server.request_log[1:]]
        assert [len(chunk) for chunk in chunks] == [100, 100, 30]
        assert all(len(chunk) <= MAX_FILTER_IDS for chunk in chunks)
        assert sorted(id_ for chunk in chunks for id_ in chunk) == sorted(all_ids)


# ----- faults


def fetch_everything(client: TikTokClient) -> dict[str, Any]:
    """What the raw asset fetches for 45 days of both accounts."""
    fetched: dict[str, Any] = {"info": client.advertiser_info([ACME, SAKURA])}
    for advertiser_id in (ACME, SAKURA):
        rows = window_rows(client, advertiser_id, WINDOW_START, WINDOW_START + timedelta(days=44))
        keyed(rows)  # no duplicates
        ads = client.ads(advertiser_id, {row["dimensions"]["ad_id"] for row in rows})
        fetched[advertiser_id] = {
            "rows": sorted(rows, key=lambda row: json.dumps(row, sort_keys=True)),
            "ads": sorted(ads, key=lambda item: item["ad_id"]),
        }
    return fetched


def test_faults_at_20_percent_still_give_exactly_the_same_rows(
    catalogue: Catalogue, make_client: Callable[..., TikTokClient]
) -> None:
    kinds = (
        Fault.RATE_LIMIT,  # code 40100
        Fault.SERVER_ERROR,  # code 50000
        Fault.HTTP_503,  # HTML body
        Fault.DROP_CONNECTION,
        Fault.TRUNCATED_BODY,
    )
    faults = FaultInjector(rate=0.2, seed=20, kinds=kinds)
    with tapped(catalogue) as clean, tapped(catalogue, faults=faults) as faulty:
        expected = fetch_everything(make_client(clean, page_size=100))
        client = make_client(faulty, page_size=100)
        assert fetch_everything(client) == expected
    assert client.retries == faults.total_injected > 0
    assert set(faults.injected) == set(kinds), f"not every kind of fault was exercised: {faults.injected}"


def test_a_timeout_is_retried(emulator: TappedEmulator, make_client: Callable[..., TikTokClient]) -> None:
    emulator.faults.slow_seconds = 1.0
    emulator.faults.inject(Fault.SLOW)
    client = make_client(emulator, timeout_seconds=0.2)
    assert [item["advertiser_id"] for item in client.advertiser_info([ACME])] == [ACME]
    assert client.retries == 1


def test_unusable_answers_are_retried(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    garbled = [
        Response(429, b"Too Many Requests", content_type="text/plain"),  # a proxy's throttle, not TikTok's
        Response(200, b"<html><body>Bad gateway</body></html>", content_type="text/html"),
        Response.json(200, {"error": "not an envelope"}),
        Response.json(200, {"code": 0, "message": "OK", "data": {}}),  # no data.list
        Response(200, b'{"code": 0, "message": "OK", "data": {"list": [{"advert'),
        # NaN is not JSON: taken as is, it would be stored and re-encoded as something else.
        Response(
            200, b'{"code": 0, "message": "OK", "data": {"list": [{"advertiser_id": "1", "balance": NaN}]}}'
        ),
    ]

    emulator.rewrite_answers(ADVERTISER_INFO_PATH, lambda query, envelope: garbled.pop(0), times=len(garbled))
    client = make_client(emulator)
    assert [item["advertiser_id"] for item in client.advertiser_info([ACME])] == [ACME]
    assert client.retries == 6


def test_answers_are_read_tolerantly(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    """Fields the client does not know are ignored at every level, and an answer without ``code``
    but with data is a success: the SDK's OpenAPI files (yml_files/report_integrated_get.yml,
    advertiser_info.yml) say ``code`` "will be shown only if it is an error request"."""

    def unfamiliar(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
        del envelope["code"], envelope["message"]
        envelope["log_id"] = "2026120300000000"
        envelope["data"]["total_metrics"] = {"spend": "1.000"}
        if "page_info" in envelope["data"]:
            envelope["data"]["page_info"]["has_more"] = False
        for entry in envelope["data"]["list"]:
            entry["new_field"] = {"nested": [1, "two"]}
        return envelope

    emulator.rewrite_answers(ADVERTISER_INFO_PATH, unfamiliar)
    emulator.rewrite_answers(REPORT_PATH, unfamiliar)
    client = make_client(emulator)
    infos = client.advertiser_info([ACME])
    assert [info["advertiser_id"] for info in infos] == [ACME]  # the unknown field kept as received
    rows = client.ad_day_report(ACME, WINDOW_START, WINDOW_START)
    assert keyed(rows) == truth(emulator.catalogue, ACME, WINDOW_START, 1)
    assert client.retries == 0


def test_a_page_count_that_changes_while_paging_rereads_the_window(
    fresh_catalogue: Catalogue, make_client: Callable[..., TikTokClient], caplog: pytest.LogCaptureFixture
) -> None:
    page_size = 100
    before = truth(fresh_catalogue, ACME, WINDOW_START, 30)
    # The window's first row: removing it moves one row from page 2 to page 1, so mixing the
    # first page read before and the second read after would lose that row.
    gone_ad, gone_day = min(before, key=lambda key: (key[1], key[0]))
    restated = False

    def restate_after_first_page(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
        nonlocal restated
        if query["page"] == "1" and not restated:
            fresh_catalogue.restate(gone_ad, date.fromisoformat(gone_day), None)
            restated = True
        return envelope

    with tapped(fresh_catalogue) as server, caplog.at_level(logging.WARNING):
        server.rewrite_answers(REPORT_PATH, restate_after_first_page)
        client = make_client(server, page_size=page_size)
        rows = list(client.ad_day_report(ACME, WINDOW_START, WINDOW_START + timedelta(days=29)))
        after = truth(fresh_catalogue, ACME, WINDOW_START, 30)
        assert len(after) == len(before) - 1
        assert keyed(rows) == after
        pages = [entry["params"]["page"] for entry in server.report_requests()]
        assert pages == ["1", "2"] + [str(page) for page in range(1, -(-len(after) // page_size) + 1)]
    warnings = [record.getMessage() for record in caplog.records if "changed from" in record.getMessage()]
    assert warnings and ACME in warnings[0]


def test_a_page_count_that_never_settles_fails_with_a_clear_error(
    fresh_catalogue: Catalogue, make_client: Callable[..., TikTokClient]
) -> None:
    ad, metrics = next(
        (ad, metrics)
        for ad in fresh_catalogue.ads_of(SAKURA)
        if (metrics := fresh_catalogue.daily_metrics(ad.ad_id, WINDOW_START)) is not None
    )

    def flip_every_first_page(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
        if query["page"] == "1":
            present = fresh_catalogue.daily_metrics(ad.ad_id, WINDOW_START) is not None
            fresh_catalogue.restate(ad.ad_id, WINDOW_START, None if present else metrics)
        return envelope

    with tapped(fresh_catalogue) as server:
        server.rewrite_answers(REPORT_PATH, flip_every_first_page)
        client = make_client(server, page_size=100)
        with pytest.raises(TikTokApiError, match="kept changing while paging") as raised:
            list(client.ad_day_report(SAKURA, WINDOW_START, WINDOW_START + timedelta(days=9)))
    assert SAKURA in str(raised.value) and "run the partition again later" in str(raised.value)


def test_missing_page_info_is_accepted_only_when_the_answer_is_evidently_complete(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    emulator.rewrite_answers(REPORT_PATH, drop_page_info)
    one_day = list(make_client(emulator).ad_day_report(ACME, WINDOW_START, WINDOW_START))
    assert keyed(one_day) == truth(emulator.catalogue, ACME, WINDOW_START, 1)

    calls = emulator.calls(REPORT_PATH)
    with pytest.raises(TikTokApiError, match="without page_info") as raised:
        list(make_client(emulator, page_size=10).ad_day_report(ACME, WINDOW_START, WINDOW_START))
    assert ACME in str(raised.value)
    # A full page cannot tell whether more rows follow: no guessing, no retrying.
    assert emulator.calls(REPORT_PATH) == calls + 1


# ----- the SDK's return codes


def answer_with_code(code: int, message: str) -> Callable[[dict[str, str], dict[str, Any]], dict[str, Any]]:
    def rewrite(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
        return {**envelope, "code": code, "message": message, "data": {}}

    return rewrite


def test_frequency_limited_40132_is_retried(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    emulator.faults.inject(Fault.FREQUENCY_LIMITED, count=2)
    client = make_client(emulator)
    rows = client.ad_day_report(ACME, WINDOW_START, WINDOW_START)
    assert keyed(rows) == truth(emulator.catalogue, ACME, WINDOW_START, 1)
    assert client.retries == 2
    assert [entry["code"] for entry in emulator.report_requests()] == [40132, 40132, 0]


@pytest.mark.parametrize(
    ("code", "name"), [(50002, "system time-out"), (51010, "internal time-out"), (51099, "")]
)
def test_system_time_outs_and_service_errors_are_retried(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient], code: int, name: str
) -> None:
    emulator.rewrite_answers(ADVERTISER_INFO_PATH, answer_with_code(code, name), times=2)
    client = make_client(emulator)
    assert [item["advertiser_id"] for item in client.advertiser_info([ACME])] == [ACME]
    assert client.retries == 2


def test_codes_read_from_the_sdks_list() -> None:
    kind = tiktok_contract.ErrorKind
    waited = {
        40100: kind.THROTTLED,
        40132: kind.THROTTLED,
        61000: kind.THROTTLED,  # ERROR_CODE_TOO_MANY_REQUESTS_BL
        60001: kind.MAINTENANCE,  # ERROR_CODE_MAINTENANCE
        50000: kind.SERVER_ERROR,
        50002: kind.SERVER_ERROR,
        51000: kind.SERVER_ERROR,
        52103: kind.SERVER_ERROR,  # ERROR_CODE_RDS_TIMEOUT_ERROR
        # Singer's client.py retries these too; a read can always be asked again.
        40200: kind.SERVER_ERROR,
        40201: kind.SERVER_ERROR,
        40202: kind.SERVER_ERROR,
        40700: kind.SERVER_ERROR,
    }
    for code, expected in waited.items():
        assert tiktok_contract.error_kind(code)[0] is expected, code
        assert expected.waits
    assert tiktok_contract.error_kind(40067)[0] is kind.NARROW
    for code in (40001, 40002, 40105, 40113, 40300, 41001, 70001):
        assert tiktok_contract.error_kind(code)[0] is kind.FAIL, code
    assert "re-authorize" in tiktok_contract.error_kind(40113)[1]  # ERROR_CODE_APP_FORBIDDEN
    # 40133 is in no list of TikTok's: an unknown code, which fails at once.
    assert not hasattr(tiktok_contract, "ADVERTISER_RATE_LIMITED")
    assert tiktok_contract.error_kind(40133) == (kind.FAIL, tiktok_contract.error_kind(49999)[1])


def test_query_too_large_40067_is_raised_for_the_extraction_to_narrow(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    emulator.faults.inject(Fault.QUERY_TOO_LARGE)
    client = make_client(emulator)
    with pytest.raises(QueryTooLargeError) as raised:
        client.ad_day_report(ACME, WINDOW_START, WINDOW_START + timedelta(days=29))
    assert raised.value.code == 40067 and ACME in str(raised.value)
    assert client.retries == 0 and emulator.calls() == 1


def test_reports_say_service_type_auction_and_ask_for_no_currency(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    client = make_client(emulator)
    client.ad_day_report(ACME, WINDOW_START, WINDOW_START)
    client.account_day_totals(ACME, WINDOW_START, WINDOW_START)
    ad_level, account_level = (entry["params"] for entry in emulator.report_requests())
    for params in (ad_level, account_level):
        assert params["service_type"] == "AUCTION" and params["report_type"] == "BASIC"
        assert "currency" not in json.loads(params["metrics"])
    assert json.loads(ad_level["filtering"]) == [
        {"field_name": "ad_status", "filter_type": "IN", "filter_value": '["STATUS_ALL"]'}
    ]


@pytest.mark.parametrize(
    ("contract_name", "extra", "call", "named"),
    [
        ("AD_REPORT_METRICS", "currency", "report", "metrics ('currency')"),
        ("ADVERTISER_FIELDS", "balance_of_nothing", "info", "fields ('balance_of_nothing')"),
    ],
)
def test_a_parameter_error_names_the_parameter_tiktok_named(
    emulator: TappedEmulator,
    make_client: Callable[..., TikTokClient],
    monkeypatch: pytest.MonkeyPatch,
    contract_name: str,
    extra: str,
    call: str,
    named: str,
) -> None:
    """Were the client to ask for a field no public schema lists, the emulator refuses it (as TikTok
    may) and the error says which parameter and value TikTok named."""
    monkeypatch.setattr(tiktok_contract, contract_name, (*getattr(tiktok_contract, contract_name), extra))
    client = make_client(emulator)
    with pytest.raises(TikTokApiError) as raised:
        if call == "report":
            client.ad_day_report(ACME, WINDOW_START, WINDOW_START)
        else:
            client.advertiser_info([ACME])
    message = str(raised.value)
    assert raised.value.code == 40002 and f"TikTok refused the parameter {named}" in message
    assert ACME in message and "maintainers" in message
    assert client.retries == 0


def test_a_parameter_error_naming_nothing_sent_says_so(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    emulator.rewrite_answers(ADVERTISER_INFO_PATH, answer_with_code(40002, "Invalid request"))
    with pytest.raises(TikTokApiError, match="without naming one we sent: Invalid request"):
        make_client(emulator).advertiser_info([ACME])


# ----- failures that retrying cannot cure, and retries running out


def test_a_revoked_token_fails_fast_naming_the_account(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    client = make_client(emulator, token="revoked-token-0000")
    with pytest.raises(TikTokApiError) as raised:
        list(client.ad_day_report(ACME, WINDOW_START, WINDOW_START))
    message = str(raised.value)
    assert raised.value.code == 40105
    assert ACME in message and "40105" in message
    assert "re-authorize" in message and "TIKTOK_ACCESS_TOKEN" in message
    assert emulator.calls() == 1 and client.retries == 0


def test_no_permission_for_one_account_fails_fast_naming_it(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    client = make_client(emulator, token=ACME_ONLY_TOKEN)
    assert list(client.ad_day_report(ACME, WINDOW_START, WINDOW_START))
    before = emulator.calls()
    with pytest.raises(TikTokApiError) as raised:
        list(client.ad_day_report(SAKURA, WINDOW_START, WINDOW_START))
    message = str(raised.value)
    assert raised.value.code == 40001 and raised.value.accounts == (SAKURA,)
    assert f"ad account {SAKURA}" in message and "40001" in message and "TIKTOK_ADVERTISER_IDS" in message
    assert emulator.calls() == before + 1 and client.retries == 0


def test_a_spent_retry_budget_gives_a_clear_error(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    emulator.faults.inject_for(Fault.APP_RESTRICTED, seconds=5)
    client = make_client(emulator, budget=OutageBudget(0.3))
    with pytest.raises(TikTokApiError) as raised:
        list(client.ad_day_report(ACME, WINDOW_START, WINDOW_START))
    message = str(raised.value)
    assert raised.value.code == 40100 and raised.value.accounts == (ACME,)
    assert f"ad account {ACME}" in message and REPORT_PATH in message
    assert "requests from App" in message and "temporarily restricted" in message  # TikTok's own words
    assert "retry budget of 0.3 s" in message and "retry_budget_minutes" in message
    assert "no other job uses the same app or token" in message
    calls = emulator.calls(REPORT_PATH)
    assert calls == client.retries + 1 >= 3


def test_accounts_meeting_the_same_outage_share_one_budget(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    """Once an outage has used up the run's budget, the next account is tried once, not given a
    budget of its own; a success refills the budget for a later outage."""
    emulator.faults.inject_for(Fault.MAINTENANCE, seconds=60)
    client = make_client(emulator, budget=OutageBudget(0.4))
    started = time.monotonic()
    with pytest.raises(TikTokApiError, match="under maintenance") as first:
        client.ad_day_report(ACME, WINDOW_START, WINDOW_START)
    assert first.value.code == 60001
    calls = emulator.calls()
    with pytest.raises(TikTokApiError, match="under maintenance") as second:
        client.ad_day_report(SAKURA, WINDOW_START, WINDOW_START)
    assert second.value.accounts == (SAKURA,)
    assert emulator.calls() == calls + 1  # tried once: the outage may have ended, it had not
    assert time.monotonic() - started < 5
    emulator.faults.clear()
    assert client.ad_day_report(SAKURA, WINDOW_START, WINDOW_START)
    assert client.budget.remaining() == pytest.approx(0.4)


def test_each_wait_is_logged_with_what_is_left_of_the_budget(
    emulator: TappedEmulator, make_client: Callable[..., TikTokClient], caplog: pytest.LogCaptureFixture
) -> None:
    emulator.faults.inject(Fault.APP_RESTRICTED, count=2)
    with caplog.at_level(logging.WARNING):
        client = make_client(emulator, budget=OutageBudget(15 * 60))
        assert client.advertiser_info([ACME])
    waits = [record.getMessage() for record in caplog.records if "waiting" in record.getMessage()]
    assert len(waits) == 2 and client.retries == 2
    pattern = r"TikTok restricted requests: waiting [0-9.]+ s, 0 of up to 15 min \(ad account "
    assert all(re.match(pattern, wait) for wait in waits), waits
    assert "code 40100" in waits[0] and "temporarily restricted" in waits[0]


def test_an_http_4xx_fails_fast(emulator: TappedEmulator) -> None:
    client = TikTokClient(emulator.url + "/not-the-api", TOKEN, retry=FAST_RETRY)
    with pytest.raises(TikTokApiError, match="HTTP 404") as raised:
        client.advertiser_info([ACME])
    client.close()
    assert "TIKTOK_API_URL" in str(raised.value) and ACME in str(raised.value)
    assert emulator.calls() == 1


def test_a_redirect_is_not_followed_so_the_token_stays_home(
    catalogue: Catalogue, emulator: TappedEmulator, make_client: Callable[..., TikTokClient]
) -> None:
    with tapped(catalogue) as elsewhere:
        emulator.rewrite_answers(
            ADVERTISER_INFO_PATH,
            lambda query, envelope: Response(
                302,
                b"",
                content_type="text/plain",
                headers={"Location": elsewhere.url + ADVERTISER_INFO_PATH},
            ),
        )
        with pytest.raises(TikTokApiError, match="redirect"):
            make_client(emulator).advertiser_info([ACME])
        assert elsewhere.wire == []
    assert emulator.calls() == 1


# ----- the token


def test_the_token_is_sent_only_in_its_header_and_never_shown(
    emulator: TappedEmulator,
    make_client: Callable[..., TikTokClient],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: urllib3's and requests' records included
    shown: list[str] = []

    def failure(call: Callable[[], Any]) -> None:
        with pytest.raises(TikTokApiError) as raised:
            call()
        shown.extend([str(raised.value), repr(raised.value), *traceback.format_exception(raised.value)])

    client = make_client(emulator, budget=OutageBudget(0.2))
    emulator.faults.inject(Fault.SERVER_ERROR)
    emulator.faults.inject(Fault.TRUNCATED_BODY)
    assert client.advertiser_info([ACME, SAKURA])
    assert list(client.ad_day_report(ACME, WINDOW_START, WINDOW_START))
    emulator.access_tokens[TOKEN] = {ACME}  # permission withdrawn for SAKURA
    failure(lambda: list(client.ad_day_report(SAKURA, WINDOW_START, WINDOW_START)))
    emulator.faults.inject_for(Fault.APP_RESTRICTED, seconds=30)
    failure(lambda: client.ads(ACME, ["1700000000000000001"]))
    emulator.faults.clear()
    del emulator.access_tokens[TOKEN]  # revoked
    failure(lambda: client.advertiser_info([ACME]))
    lost = TikTokClient(emulator.url + "/wrong", TOKEN, retry=FAST_RETRY)
    failure(lambda: lost.advertiser_info([ACME]))
    lost.close()
    assert client.retries >= 2 + 3

    assert caplog.records, "nothing was logged: the check below would prove nothing"
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    for record in caplog.records:
        shown.extend([record.getMessage(), str(record.args), record.exc_text or ""])
    output = capsys.readouterr()
    shown.extend([output.out, output.err, json.dumps(emulator.request_log)])
    assert not [text for text in shown if TOKEN in text]

    assert emulator.wire
    for request in emulator.wire:
        assert request.headers["access-token"] == TOKEN
        elsewhere = [request.path, json.dumps(request.query), request.body.decode()]
        elsewhere += [value for name, value in request.headers.items() if name != "access-token"]
        assert not [text for text in elsewhere if TOKEN in text]


def test_a_token_no_header_can_carry_is_refused_without_echoing_it(emulator: TappedEmulator) -> None:
    broken = "first-line-of-token\nsecond-line"
    with pytest.raises(ValueError, match="TIKTOK_ACCESS_TOKEN") as raised:
        TikTokClient(emulator.url, broken)
    assert "first-line" not in str(raised.value)
    resource = TikTokResource(access_token=broken, advertiser_ids=ACME, api_url=emulator.url)
    with pytest.raises(ConfigurationError) as configured:
        resource.client()
    assert "first-line" not in str(configured.value)
    assert emulator.calls() == 0


# ----- request rate and base URL


def test_the_request_rate_is_respected(emulator: TappedEmulator) -> None:
    client = TikTokResource(
        access_token=TOKEN, advertiser_ids=ACME, api_url=emulator.url, requests_per_second=20
    ).client()
    started = time.monotonic()
    for _ in range(20):
        client.advertiser_info([ACME])
    elapsed = time.monotonic() - started
    client.close()
    # The first request goes at once, the other 19 wait 1/20 s each.
    assert elapsed >= 0.9
    assert emulator.calls() == 20


def test_a_shared_pacer_spaces_requests_of_every_client(emulator: TappedEmulator) -> None:
    pacer = RequestPacer(20)
    clients = [TikTokClient(emulator.url, TOKEN, pacer=pacer) for _ in range(2)]
    started = time.monotonic()
    for _ in range(10):
        for client in clients:
            client.advertiser_info([SAKURA])
    assert time.monotonic() - started >= 0.9
    for client in clients:
        client.close()


@pytest.mark.parametrize(
    "url", ["http://api.example.com", "http://10.0.0.5:8080/", "http://127.0.0.1.example.com"]
)
def test_plain_http_to_another_host_is_refused(url: str) -> None:
    with pytest.raises(InsecureUrlError, match="TIKTOK_API_URL"):
        checked_base_url(url, variable="TIKTOK_API_URL")
    with pytest.raises(ConfigurationError, match="TIKTOK_API_URL"):
        TikTokResource(access_token=TOKEN, advertiser_ids=ACME, api_url=url).client()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://business-api.tiktok.com/", "https://business-api.tiktok.com"),
        ("https://sandbox-ads.tiktok.com", "https://sandbox-ads.tiktok.com"),
        ("http://127.0.0.1:8123", "http://127.0.0.1:8123"),
        ("http://localhost:8123/", "http://localhost:8123"),
        ("http://[::1]:8123", "http://[::1]:8123"),
    ],
)
def test_https_and_loopback_http_are_accepted(url: str, expected: str) -> None:
    assert checked_base_url(url, variable="TIKTOK_API_URL") == expected


def test_insecure_http_can_be_allowed_on_purpose() -> None:
    url = "http://tiktok-proxy.internal"
    assert checked_base_url(url, variable="TIKTOK_API_URL", allow_insecure_http=True) == url
