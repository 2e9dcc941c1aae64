"""The TikTok extraction against the TikTok emulator over real HTTP: a range cut into windows once,
a window TikTok finds too large (40067) asked in halves, an answer TikTok cut at its per-query ad
cap asked again in parts and found whole, rows placed by day. The cap is small here and the
extraction is never told its size."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from tiktok_amp_emulators.catalogue import DELETE, AdvertiserSpec, Catalogue, generate_catalogue
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from tiktok_amp_assets.clients.http import RetryPolicy
from tiktok_amp_assets.clients.tiktok import TikTokApiError, TikTokClient
from tiktok_amp_assets.clients.tiktok_extraction import TikTokExtraction, Window, plan_parts

TOKEN = "extraction-test-token-4b1d"
BIG = "7000000000000000011"
OTHER = "7000000000000000012"
FIRST = date(2025, 3, 1)
FAST_RETRY = RetryPolicy(max_attempts=4, base_seconds=0.01, max_seconds=0.02)
REPORT = "/open_api/v1.3/report/integrated/get/"
AD_GET = "/open_api/v1.3/ad/get/"
SMART_PLUS_AD_GET = "/open_api/v1.3/smart_plus/ad/get/"

Key = tuple[str, str]  # (ad_id, YYYY-MM-DD)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    """Two accounts of 60 ads, deleted ones included, in campaigns of very different sizes."""
    return generate_catalogue(
        seed=17,
        advertisers=[
            AdvertiserSpec(BIG, "Big", "USD", "America/Los_Angeles", api_timezone="Etc/GMT+8"),
            AdvertiserSpec(OTHER, "Other", "EUR", "Europe/Berlin"),
        ],
        ads_per_advertiser=60,
    )


_CLIENTS: list[TikTokClient] = []


@pytest.fixture
def serve(catalogue: Catalogue) -> Iterator[Callable[..., TikTokEmulator]]:
    """Start an emulator of ``catalogue`` (options as keywords); every one started is stopped after."""
    servers: list[TikTokEmulator] = []

    def start(**kwargs: Any) -> TikTokEmulator:
        server = TikTokEmulator(catalogue, access_tokens={TOKEN: None}, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    while _CLIENTS:
        _CLIENTS.pop().close()
    for server in servers:
        server.stop()


def extraction(server: TikTokEmulator) -> TikTokExtraction:
    """A run's extraction through a client of ``server`` (closed with the ``serve`` fixture)."""
    client = TikTokClient(server.url, TOKEN, retry=FAST_RETRY)
    _CLIENTS.append(client)
    return TikTokExtraction(client)


def truth(catalogue: Catalogue, advertiser_id: str, first: date, days: int) -> dict[Key, dict[str, str]]:
    return {
        (ad.ad_id, (first + timedelta(days=n)).isoformat()): metrics
        for n in range(days)
        for ad in catalogue.ads_of(advertiser_id)
        if (metrics := catalogue.daily_metrics(ad.ad_id, first + timedelta(days=n))) is not None
    }


def fetched(windows: list[Window]) -> dict[Key, dict[str, str]]:
    """Every ad-day of the windows with its four metrics; fails on an ad-day seen twice."""
    by_key: dict[Key, dict[str, str]] = {}
    for window in windows:
        for day, rows in window.rows_by_day.items():
            for row in rows:
                key = (row["dimensions"]["ad_id"], day)
                assert key not in by_key, f"{key} came twice"
                by_key[key] = {
                    name: row["metrics"][name] for name in ("spend", "impressions", "clicks", "conversion")
                }
    return by_key


def ad_reports(server: TikTokEmulator, code: int | None = None) -> list[dict[str, Any]]:
    """The parameters of the ad-level report requests (only those answered with ``code``, if given)."""
    return [
        entry["params"]
        for entry in server.request_log
        if entry["path"] == REPORT
        and entry["params"].get("data_level") == "AUCTION_AD"
        and (code is None or entry["code"] == code)
    ]


def id_filter(params: dict[str, Any]) -> tuple[str, list[str]] | None:
    for entry in json.loads(params["filtering"]):
        if entry["field_name"] != "ad_status":
            return entry["field_name"], json.loads(entry["filter_value"])
    return None


# ----- windows and 40067


def test_a_range_is_cut_into_30_day_windows_once(
    serve: Callable[..., TikTokEmulator], catalogue: Catalogue
) -> None:
    server = serve()
    windows = list(extraction(server).windows(OTHER, FIRST, FIRST + timedelta(days=44)))
    assert [(w.start, w.end) for w in windows] == [
        (FIRST, FIRST + timedelta(days=29)),
        (FIRST + timedelta(days=30), FIRST + timedelta(days=44)),
    ]
    assert fetched(windows) == truth(catalogue, OTHER, FIRST, 45)
    spans = {(p["start_date"], p["end_date"]) for p in ad_reports(server)}
    assert spans == {(w.start.isoformat(), w.end.isoformat()) for w in windows}


def test_a_window_tiktok_finds_too_large_is_asked_in_halves(
    serve: Callable[..., TikTokEmulator], catalogue: Catalogue
) -> None:
    server = serve(query_too_large_days=7)  # ad-level queries over more than 7 days: code 40067
    run = extraction(server)
    windows = list(run.windows(BIG, FIRST, FIRST + timedelta(days=29)))
    assert fetched(windows) == truth(catalogue, BIG, FIRST, 30)
    answered = ad_reports(server, code=0)
    spans = sorted((date.fromisoformat(p["start_date"]), date.fromisoformat(p["end_date"])) for p in answered)
    # 30 days -> 15 + 15 -> 8 + 7 + 8 + 7 -> 4 + 4 + 7 + 4 + 4 + 7: every day once, no span over 7 days.
    assert all((end - start).days + 1 <= 7 for start, end in spans)
    assert [day for start, end in spans for day in range(start.toordinal(), end.toordinal() + 1)] == list(
        range(FIRST.toordinal(), FIRST.toordinal() + 30)
    )
    assert run.figures()["run_tiktok_narrowed_queries"] == 5
    # The account totals were never too large: one query for the window.
    assert sum(1 for e in server.request_log if e["params"].get("data_level") == "AUCTION_ADVERTISER") == 1


def test_a_day_tiktok_still_finds_too_large_fails_naming_account_and_day(
    serve: Callable[..., TikTokEmulator],
) -> None:
    server = serve(query_too_large_days=0)
    with pytest.raises(TikTokApiError) as raised:
        list(extraction(server).windows(BIG, FIRST, FIRST + timedelta(days=3)))
    message = str(raised.value)
    assert raised.value.code == 40067 and raised.value.accounts == (BIG,)
    assert BIG in message and f"{FIRST}" in message and "even for that one day" in message
    # Halves down to the first day: 4 days -> 2 -> 1.
    assert [(p["start_date"], p["end_date"]) for p in ad_reports(server)] == [
        (FIRST.isoformat(), (FIRST + timedelta(days=3)).isoformat()),
        (FIRST.isoformat(), (FIRST + timedelta(days=1)).isoformat()),
        (FIRST.isoformat(), FIRST.isoformat()),
    ]


# ----- the per-query ad cap


@pytest.mark.parametrize("cap", [25, 4])
def test_an_account_above_the_ad_cap_is_fetched_whole_in_parts(
    serve: Callable[..., TikTokEmulator], catalogue: Catalogue, cap: int
) -> None:
    server = serve(max_ads_per_query=cap)
    run = extraction(server)
    last = FIRST + timedelta(days=44)
    windows = list(run.windows(BIG, FIRST, last))
    expected = truth(catalogue, BIG, FIRST, 45)
    assert fetched(windows) == expected
    deleted = {ad.ad_id for ad in catalogue.ads_of(BIG) if ad.status == DELETE}
    assert deleted & {ad_id for ad_id, _ in expected}, "the range must hold deleted ads' spend"
    for window in windows:
        assert window.ads_by_id.keys() >= {
            ad_id
            for rows in window.rows_by_day.values()
            for row in rows
            for ad_id in [row["dimensions"]["ad_id"]]
        }
    figures = run.figures()
    assert figures["run_tiktok_windows_in_parts"] == 2
    # Only the first window was asked whole (and found cut): the second went to parts at once.
    unfiltered = [p for p in ad_reports(server) if id_filter(p) is None]
    assert {(p["start_date"], p["page"]) for p in unfiltered} == {(FIRST.isoformat(), "1")}
    parts = [id_filter(p) for p in ad_reports(server) if id_filter(p) is not None]
    assert all(1 <= len(ids) <= 100 for _, ids in parts)
    # Each part selects at most as many ads as the cap, and the parts of a window cover every ad.
    ads = catalogue.ads_of(BIG)
    field_of = {"campaign_ids": "campaign_id", "adgroup_ids": "adgroup_id", "ad_ids": "ad_id"}
    selected = [{ad.ad_id for ad in ads if getattr(ad, field_of[field]) in ids} for field, ids in parts]
    assert all(1 <= len(chosen) <= cap for chosen in selected)
    assert {ad_id for chosen in selected for ad_id in chosen} == {ad.ad_id for ad in ads}
    levels = {field for field, _ in parts}
    assert levels == ({"adgroup_ids", "ad_ids"} if cap == 4 else {"campaign_ids", "adgroup_ids"}), levels
    # ad/get listed every ad once, deleted ones included, for the plan.
    listings = [
        e for e in server.request_log if e["path"] == AD_GET and "ad_ids" not in e["params"]["filtering"]
    ]
    assert len(listings) == 1 and json.loads(listings[0]["params"]["filtering"]) == {
        "primary_status": "STATUS_ALL"
    }


def test_a_cap_learnt_on_one_account_catches_a_cut_the_totals_cannot_show(
    serve: Callable[..., TikTokEmulator], catalogue: Catalogue
) -> None:
    server = serve(max_ads_per_query=20)

    def no_totals(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
        if query["data_level"] == "AUCTION_ADVERTISER":
            envelope["data"] = {
                "list": [],
                "page_info": {"page": 1, "page_size": 1000, "total_number": 0, "total_page": 0},
            }
        return envelope

    server.rewrite_answers(REPORT, no_totals, advertiser_id=OTHER)
    run = extraction(server)
    assert fetched(list(run.windows(BIG, FIRST, FIRST + timedelta(days=9)))) == truth(
        catalogue, BIG, FIRST, 10
    )
    # OTHER's totals are hidden, so its rows cannot fall short of them. TikTok caps the ads a query
    # reports on, delivering or not, so its cut answer may hold fewer ads than BIG's did: its number
    # of ads (as many as BIG's, whose answer was cut) is what gives the cut away.
    assert fetched(list(run.windows(OTHER, FIRST, FIRST + timedelta(days=9)))) == truth(
        catalogue, OTHER, FIRST, 10
    )
    assert run.figures()["run_tiktok_windows_in_parts"] == 2
    (counted,) = [
        entry
        for entry in server.request_log
        if entry["path"] == AD_GET and entry["params"]["page_size"] == "1"
    ]
    assert counted["advertiser_id"] == OTHER


def test_rows_missing_for_another_reason_teach_no_cap(
    serve: Callable[..., TikTokEmulator], catalogue: Catalogue
) -> None:
    server = serve()
    dropped = []

    def drop_first_row_once(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
        if query["data_level"] == "AUCTION_AD" and not dropped:
            dropped.append(envelope["data"]["list"].pop(0))
            envelope["data"]["page_info"]["total_number"] -= 1
        return envelope

    server.rewrite_answers(REPORT, drop_first_row_once, advertiser_id=OTHER)
    run = extraction(server)
    windows = list(run.windows(OTHER, FIRST, FIRST + timedelta(days=4)))
    assert dropped and fetched(windows) == truth(catalogue, OTHER, FIRST, 5)
    # Asked again in parts, the rows were all there, but no ad was missing: not a cap. The next
    # window is asked whole again.
    list(run.windows(OTHER, FIRST + timedelta(days=5), FIRST + timedelta(days=6)))
    assert [id_filter(p) is None for p in ad_reports(server)][-1]
    assert run._cut_at is None


# ----- Smart+ ads (step 7)


def test_smart_plus_creatives_get_their_smart_plus_ad_and_unknown_ads_are_looked_up_there(
    serve: Callable[..., TikTokEmulator], catalogue: Catalogue
) -> None:
    server = serve()
    delivered = {ad_id for ad_id, day in truth(catalogue, BIG, FIRST, 1)}
    creatives = [ad for ad in catalogue.ads_of(BIG) if ad.smart_plus_ad_id and ad.ad_id in delivered]
    plain = [ad for ad in catalogue.ads_of(BIG) if not ad.smart_plus_ad_id and ad.ad_id in delivered]
    assert creatives and len(plain) >= 2
    found, lost = plain[0].ad_id, plain[1].ad_id  # two ads ad/get will not return

    def without_two(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
        kept = [item for item in envelope["data"]["list"] if item["ad_id"] not in (found, lost)]
        envelope["data"]["page_info"]["total_number"] -= len(envelope["data"]["list"]) - len(kept)
        envelope["data"]["list"] = kept
        return envelope

    def knowing_one(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
        # As if TikTok knew the report's ad by that id as a Smart+ ad (the reading no source shows).
        if found in json.loads(query["filtering"])["smart_plus_ad_ids"]:
            envelope["data"]["list"].append(
                {
                    "smart_plus_ad_id": found,
                    "ad_name": "Smart+ spring",
                    "adgroup_id": "1700000000000000001",
                    "campaign_id": "1800000000000000001",
                    "landing_page_url_list": [{"landing_page_url": "https://shop.example/smart"}],
                    "ad_configuration": {"utm_params": [{"key": "utm_source", "value": "smart"}]},
                }
            )
            envelope["data"]["page_info"]["total_number"] += 1
        return envelope

    server.rewrite_answers(AD_GET, without_two)
    server.rewrite_answers(SMART_PLUS_AD_GET, knowing_one)
    run = extraction(server)
    (window,) = run.windows(BIG, FIRST, FIRST)

    for ad in creatives:
        item = window.ads_by_id[ad.ad_id]
        assert item["smart_plus_ad_id"] == ad.smart_plus_ad_id == item["smart_plus_ad"]["smart_plus_ad_id"]
        urls = [entry["landing_page_url"] for entry in item["smart_plus_ad"]["landing_page_url_list"]]
        assert urls[0] == ad.landing_page
    made = window.ads_by_id[found]
    assert (made["ad_id"], made["ad_name"], made["smart_plus_ad"]["ad_name"]) == (
        found,
        "Smart+ spring",
        "Smart+ spring",
    )
    assert lost not in window.ads_by_id  # the report's attributes stand in for it
    (asked,) = [entry["params"] for entry in server.request_log if entry["path"] == SMART_PLUS_AD_GET]
    assert json.loads(asked["filtering"]) == {
        "smart_plus_ad_ids": sorted({found, lost} | {ad.smart_plus_ad_id for ad in creatives}),
        "primary_status": "STATUS_ALL",
    }
    # Each id is asked once per run, however many windows name it.
    before = len(server.request_log)
    list(extraction(server).windows(BIG, FIRST, FIRST + timedelta(days=44)))
    asked_ids = [
        ad_id
        for entry in server.request_log[before:]
        if entry["path"] == SMART_PLUS_AD_GET
        for ad_id in json.loads(entry["params"]["filtering"])["smart_plus_ad_ids"]
    ]
    assert asked_ids and len(asked_ids) == len(set(asked_ids))


# ----- planning the parts


def items(*ads: tuple[str, str, str]) -> list[dict[str, str]]:
    return [{"ad_id": ad, "adgroup_id": group, "campaign_id": campaign} for ad, group, campaign in ads]


def test_parts_pack_whole_campaigns_then_ad_groups_then_ads() -> None:
    ads = items(
        *[(f"1{n:02d}", "21", "31") for n in range(3)],  # campaign 31: 3 ads
        *[(f"2{n:02d}", "22", "32") for n in range(2)],  # campaign 32: 2 ads
        *[(f"3{n:02d}", "23", "33") for n in range(4)],  # campaign 33: 4 + 3 ads in two groups
        *[(f"4{n:02d}", "24", "33") for n in range(3)],
        *[(f"5{n:02d}", "25", "34") for n in range(9)],  # campaign 34: one group of 9 ads
        ("600", "", "35"),  # parents unknown: asked by id
    )
    assert plan_parts(ads, 5) == [
        ("campaign_ids", ["31", "32"]),
        ("adgroup_ids", ["23"]),
        ("adgroup_ids", ["24"]),
        ("ad_ids", ["500", "501", "502", "503", "504"]),
        ("ad_ids", ["505", "506", "507", "508", "600"]),
    ]
    every = {ad["ad_id"] for ad in ads}
    assert plan_parts(ads, 1000) == [("campaign_ids", ["31", "32", "33", "34"]), ("ad_ids", ["600"])]
    assert all(len(ids) == 1 for field, ids in plan_parts(ads, 1) if field == "ad_ids")
    assert {ad for field, ids in plan_parts(ads, 1) if field == "ad_ids" for ad in ids} == every


def test_parts_hold_at_most_100_ids() -> None:
    ads = items(*[(f"{n:04d}", f"2{n:04d}", f"3{n:04d}") for n in range(250)])  # 250 one-ad campaigns
    parts = plan_parts(ads, 10_000)
    assert [len(ids) for _, ids in parts] == [100, 100, 50]
    assert plan_parts(items(*[(f"{n:04d}", "2", "3") for n in range(250)]), 200)[0][0] == "ad_ids"
    assert (
        max(len(ids) for _, ids in plan_parts(items(*[(f"{n:04d}", "2", "3") for n in range(250)]), 200))
        == 100
    )


# ----- accounts TikTok refuses, and rows that do not add up to the account totals


@pytest.mark.parametrize("code", [40001, 40002])
def test_an_account_refused_on_advertiser_info_is_asked_alone_and_the_others_read(
    serve: Callable[..., TikTokEmulator], code: int
) -> None:
    server = serve()
    server.refuse_account(BIG, code=code, endpoints=["advertiser_info"])
    infos, refused = extraction(server).account_facts([BIG, OTHER])
    assert list(infos) == [OTHER] and list(refused) == [BIG]
    assert refused[BIG].code == code and refused[BIG].accounts == (BIG,)
    # The request for both was refused whole, then each account was asked alone.
    asked = [json.loads(e["params"]["advertiser_ids"]) for e in server.request_log]
    assert asked == [[BIG, OTHER], [BIG], [OTHER]]


def test_every_account_refused_alike_is_one_error_for_all(serve: Callable[..., TikTokEmulator]) -> None:
    server = serve()
    for advertiser_id in (BIG, OTHER):
        server.refuse_account(advertiser_id, code=40001, endpoints=["advertiser_info"])
    with pytest.raises(TikTokApiError) as raised:
        extraction(server).account_facts([BIG, OTHER])
    assert raised.value.accounts == (BIG, OTHER) and raised.value.code == 40001
    assert "advertiser does not grant you /advertiser/info/:GET permission" in str(raised.value)


def test_spend_no_ad_row_holds_is_delivered_and_its_day_marked_unattributed(
    serve: Callable[..., TikTokEmulator], catalogue: Catalogue
) -> None:
    server = serve()
    gap_day = FIRST + timedelta(days=2)
    server.add_unattributed_spend(OTHER, gap_day, "12.34")
    run = extraction(server)
    (window,) = run.windows(OTHER, FIRST, FIRST + timedelta(days=4))
    assert fetched([window]) == truth(catalogue, OTHER, FIRST, 5)
    assert window.gaps == {gap_day.isoformat(): "unattributed"} and window.refused == {}
    assert window.raw_day(gap_day, {}, "now")["totals_gap"] == "unattributed"
    assert "totals_gap" not in window.raw_day(FIRST, {}, "now")
    # Asked again in parts (no ad the first answer lacked), and the totals read a second time.
    figures = run.figures()
    assert figures["run_tiktok_windows_in_parts"] == 1 and figures["run_tiktok_totals_read_again"] == 1
    assert run._cut_at is None


def test_a_day_still_settling_is_read_again_once_then_delivered(
    serve: Callable[..., TikTokEmulator], catalogue: Catalogue
) -> None:
    server = serve()
    last = FIRST + timedelta(days=4)
    server.settle_day(OTHER, last, step="0.50", reads=10)
    run = extraction(server)
    (window,) = run.windows(OTHER, FIRST, last)
    assert window.gaps == {last.isoformat(): "settling"} and window.refused == {}
    assert fetched([window]).keys() == truth(catalogue, OTHER, FIRST, 5).keys()
    # Totals, then rows read later (more spend: nothing looks cut), then the totals again: three reads.
    assert server.settling_days[(OTHER, last)].done == 3
    assert run.figures()["run_tiktok_totals_read_again"] == 1


def test_a_cut_answer_that_parts_cannot_make_whole_refuses_only_its_short_days(
    serve: Callable[..., TikTokEmulator], catalogue: Catalogue
) -> None:
    server = serve(max_ads_per_query=25)
    short_day = FIRST + timedelta(days=1)
    server.add_unattributed_spend(BIG, short_day, "5.00")
    (window,) = extraction(server).windows(BIG, FIRST, FIRST + timedelta(days=3))
    assert list(window.refused) == [short_day.isoformat()] and window.gaps == {}
    assert "cut" in window.refused[short_day.isoformat()]
    # The other days are whole, as TikTok reports them.
    expected = {
        key: value for key, value in truth(catalogue, BIG, FIRST, 4).items() if key[1] != str(short_day)
    }
    assert {key: value for key, value in fetched([window]).items() if key[1] != str(short_day)} == expected
    days = list(extraction(server).account_days(BIG, {}, [FIRST, short_day]))
    assert isinstance(days[0][1], dict) and isinstance(days[1][1], TikTokApiError)
