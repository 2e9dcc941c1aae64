"""Bad input: whatever TikTok sends and however the project is configured, a run either imports
exactly what TikTok reported or stops with a message naming the account, the day and the field,
leaving nothing half-written behind.

1. Properties of the pure chain the assets run (report rows -> ad-day rows -> metrics file ->
   events -> ledger) on any value JSON can carry: only ``ReportRowError`` (naming account, day and
   field) or rows whose events Amplitude accepts. ``test_utms.py``, ``test_metric_values.py`` and
   ``test_events.py`` cover each function on its own; this covers them chained, on hostile input.
2. Malformed answers served by the TikTok emulator on the wire (``rewrite_answers``), through a real
   Dagster run, against the Amplitude emulator.
3. Bad configuration fails before any data moves, saying what to fix.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from tiktok_amp_emulators.http_server import Response

from tiktok_amp_assets import normalize
from tiktok_amp_assets.core.ad_metrics import ReportRowError, normalize_account_day, table_rows
from tiktok_amp_assets.core.amplitude_contract import EVENT_TYPE, MAX_STRING_LENGTH
from tiktok_amp_assets.core.json_codec import dump_json
from tiktok_amp_assets.core.tiktok_contract import (
    AD_PATH,
    ADVERTISER_INFO_PATH,
    ATTRIBUTE_METRICS,
    MISSING_METRIC_VALUES,
    PERFORMANCE_METRICS,
    REPORT_PATH,
)
from tiktok_amp_assets.core.upload_plan import plan_events
from tiktok_amp_assets.core.utms import UTM_KEYS
from tiktok_amp_assets.storage.import_store import ImportStore

from ..conftest import API_KEY, Project, ended_failed_after_delivering

ACME = "7000000000000000001"
SAKURA = "7000000000000000002"
DAY = date(2025, 3, 1)

# ----- 1. properties of the pure chain

_ADVERTISER = ACME
_STAT_DATE = "2026-11-23"
_AD_IDS = ("1790000000000000001", "1790000000000000002", "1790000000000000003")
# Half of a UTF-16 surrogate pair: what JSON's "\ud83d" decodes to when a name is cut mid-emoji.
_LONE_SURROGATES = ("\ud83d", "\udc00", "\udfff")

_texts = st.lists(
    st.one_of(
        st.characters(),
        st.sampled_from(_LONE_SURROGATES),
        st.sampled_from(["-", " ", "\x00", "é", "%", "__CID__"]),
    ),
    max_size=12,
).map("".join)
_nonblank_texts = st.builds(lambda head, tail: f"{head}x{tail}", _texts, _texts)
# Any JSON value TikTok's envelope could hold.
_json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _texts),
    lambda children: st.one_of(
        st.lists(children, max_size=2), st.dictionaries(st.text(max_size=3), children, max_size=2)
    ),
    max_leaves=3,
)
# Every metric value TikTok might write: numbers as text (also too long or too precise), the
# missing-value markers, JSON numbers (NaN and infinities included), and anything else.
_plausible_metric_values = st.one_of(
    st.sampled_from(sorted(MISSING_METRIC_VALUES)),
    st.integers(min_value=0, max_value=10**6).map(str),
    st.decimals(min_value=0, max_value=10**9, places=2).map(str),
    st.integers(min_value=0, max_value=10**6),
    st.floats(min_value=0, max_value=10**6).map(lambda number: round(number, 2)),
)
_metric_values = st.one_of(
    *[_plausible_metric_values] * 6,
    st.from_regex(r"[0-9]{1,450}(\.[0-9]{1,40})?", fullmatch=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),
    _json_values,
)
_ids = st.one_of(st.sampled_from(_AD_IDS), st.integers(min_value=0, max_value=2**64))


def _report_row(ad_id: str) -> st.SearchStrategy[dict[str, Any]]:
    """A row of the right shape for ``ad_id`` whose every value may be hostile."""
    return st.fixed_dictionaries(
        {
            "dimensions": st.just({"ad_id": ad_id, "stat_time_day": f"{_STAT_DATE} 00:00:00"}),
            "metrics": st.fixed_dictionaries(
                {
                    "spend": _metric_values,
                    "impressions": _metric_values,
                    "clicks": _metric_values,
                    "conversion": _metric_values,
                    "ad_name": _texts,
                    "adgroup_id": st.one_of(_ids, st.sampled_from(["-", ""])),
                    "adgroup_name": _texts,
                    "campaign_id": st.one_of(_ids, st.sampled_from(["-", ""])),
                    "campaign_name": _texts,
                    "currency": st.sampled_from(["USD", "USD", "USD", " jpy ", "-", "", "EURO"]),
                }
            ),
        }
    )


def _ad_item(ad_id: str) -> st.SearchStrategy[dict[str, Any]]:
    """The ad's ad/get item: names to fall back on, and any landing page URL."""
    return st.fixed_dictionaries(
        {
            "ad_id": st.just(ad_id),
            "ad_name": _nonblank_texts,
            "adgroup_id": _ids,
            "adgroup_name": _nonblank_texts,
            "campaign_id": _ids,
            "campaign_name": _nonblank_texts,
            "advertiser_id": st.just(_ADVERTISER),
            "landing_page_url": st.one_of(
                st.none(),
                _texts,
                st.builds(lambda query: f"https://shop.example/p?{query}#/q?{query}", _texts),
                st.just("https://shop.example/p?utm_source=__CID_NAME__&UTM_campaign=__CAMPAIGN_NAME__"),
            ),
        }
    )


_well_formed_reports = st.lists(st.sampled_from(_AD_IDS), min_size=1, max_size=3, unique=True).flatmap(
    lambda ad_ids: st.fixed_dictionaries(
        {
            "advertiser_id": st.just(_ADVERTISER),
            "stat_date": st.just(_STAT_DATE),
            "advertiser_info": st.fixed_dictionaries(
                {
                    "advertiser_id": st.just(_ADVERTISER),
                    "name": _texts,
                    "currency": st.just("USD"),
                    "display_timezone": st.sampled_from(["America/Los_Angeles", "", "Etc/GMT+8"]),
                    "timezone": st.just("Asia/Tokyo"),
                }
            ),
            "report_rows": st.tuples(*(_report_row(ad_id) for ad_id in ad_ids)).map(list),
            "ads": st.tuples(*(_ad_item(ad_id) for ad_id in ad_ids)).map(list),
        }
    )
)


def _sometimes_without_keys(fields: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.sets(st.sampled_from(sorted(fields)), max_size=2).map(
        lambda dropped: {key: value for key, value in fields.items() if key not in dropped}
    )


# Any shape at all: fields missing, of the wrong type, rows for other days, duplicated ads.
_any_reports = st.fixed_dictionaries(
    {
        "advertiser_id": st.just(_ADVERTISER),
        "stat_date": st.just(_STAT_DATE),
        "advertiser_info": st.fixed_dictionaries(
            {"advertiser_id": st.just(_ADVERTISER)},
            optional={"name": _json_values, "currency": _json_values, "display_timezone": _json_values},
        ),
        "report_rows": st.lists(
            st.fixed_dictionaries(
                {
                    "dimensions": st.fixed_dictionaries(
                        {
                            "ad_id": st.one_of(_ids, _json_values),
                            "stat_time_day": st.one_of(
                                st.just(f"{_STAT_DATE} 00:00:00"),
                                st.just("2026-11-24 00:00:00"),
                                _json_values,
                            ),
                        }
                    ).flatmap(_sometimes_without_keys),
                    "metrics": st.dictionaries(
                        st.sampled_from([*PERFORMANCE_METRICS, *ATTRIBUTE_METRICS]),
                        st.one_of(_metric_values, _json_values),
                    ),
                }
            ).flatmap(_sometimes_without_keys),
            max_size=3,
        ),
        "ads": st.lists(st.one_of(st.sampled_from(_AD_IDS).flatmap(_ad_item), _json_values), max_size=3),
    }
)


def _assert_named(error: ReportRowError) -> None:
    message = str(error)
    assert error.advertiser_id == _ADVERTISER and error.stat_date == _STAT_DATE and error.field
    assert _ADVERTISER in message and _STAT_DATE in message and repr(error.field) in message


def _assert_stored_and_sendable(table: pa.Table) -> None:
    """The rows survive the metrics file and the ledger, and their events are valid Amplitude events."""
    day = date.fromisoformat(_STAT_DATE)
    with tempfile.TemporaryDirectory() as folder:
        store = ImportStore(Path(folder))
        store.write_ad_metrics(day, table)
        assert store.read_ad_metrics(day).equals(table)
        planned = plan_events(table_rows(table), {}, [day], policy="correct")
        assert {event.ad_day_event.ad_id for event in planned} == set(table.column("ad_id").to_pylist())
        # Recorded before it is sent: SQLite takes 64-bit integers and text that is valid UTF-8.
        ledger = store.ledger()
        ledger.record_pending(event.ad_day_event for event in planned)
        # And given back exactly, to be resent after a crash.
        assert {event.insert_id: event.payload for event in ledger.pending()} == {
            planned_event.ad_day_event.insert_id: planned_event.ad_day_event.payload
            for planned_event in planned
        }
    for planned_event in planned:
        payload = planned_event.ad_day_event.payload
        # What the Amplitude client puts on the wire, read back by a strict reader: a NaN or an
        # Infinity (written as null by orjson) would not come back equal.
        body = dump_json(payload)
        assert json.loads(body.decode("utf-8"), parse_constant=_refuse) == payload
        assert payload["event_type"] == EVENT_TYPE
        assert set(payload["user_properties"]) == set(UTM_KEYS)
        assert all(isinstance(value, str) and value.strip() for value in payload["user_properties"].values())
        for name, value in payload["event_properties"].items():
            if name.startswith("ad_metrics."):
                assert isinstance(value, (int, float)) and not isinstance(value, bool)
                assert 0 <= value < 2**63
            elif isinstance(value, str):
                assert len(value) <= MAX_STRING_LENGTH


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_well_formed_reports)
def test_any_value_in_a_well_formed_report_gives_a_named_error_or_sendable_events(
    raw: dict[str, Any],
) -> None:
    try:
        table = normalize_account_day(raw)
    except ReportRowError as error:
        event(f"error: {error.field}")
        _assert_named(error)
        return
    event("rows")
    assert table.column("ad_id").to_pylist() == sorted(
        row["dimensions"]["ad_id"] for row in raw["report_rows"]
    )
    _assert_stored_and_sendable(table)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_reports)
def test_a_report_of_any_shape_gives_a_named_error_or_sendable_events(raw: dict[str, Any]) -> None:
    try:
        table = normalize_account_day(raw)
    except ReportRowError as error:
        _assert_named(error)
        return
    _assert_stored_and_sendable(table)


# ----- 2. malformed answers on the wire, through a Dagster run

# Fast back-off and a short retry budget: an answer TikTok keeps garbling fails after a fraction of a
# second instead of the default 15 minutes.
FAST_TIKTOK = {"retry_budget_minutes": 0.005, "backoff_base_seconds": 0.01, "backoff_max_seconds": 0.02}
# Changes ACME's ad-level report answer; notes in the list the ads (or "page") it changed.
Change = Callable[[dict[str, Any], list[str]], "dict[str, Any] | Response"]


def _refuse(constant: str) -> object:
    raise ValueError(f"{constant} is not JSON")


def run(project: Project, first: date, last: date | None = None) -> dg.ExecuteInProcessResult:
    """The job for one day or a range, as a user runs it, with TikTok's back-off shortened."""
    return project.materialize(first, last, raise_on_error=False, tiktok_config=FAST_TIKTOK)


def failure(result: dg.ExecuteInProcessResult) -> tuple[str, str]:
    """(where, message) of the run's first failure: a step, or the start of the run (resources)."""
    assert not result.success
    for record in result.all_events:
        if record.is_step_failure:
            # The step's asset, without the connection's prefix (tiktok_ads__tiktok_raw_reports).
            return str(record.step_key).removeprefix("tiktok_ads__"), record.step_failure_data.error.message
        if record.event_type_value == "RESOURCE_INIT_FAILURE":
            return "resources", record.event_specific_data.error.message
    raise AssertionError("the run failed without a step or resource failure")


def on_report(project: Project, change: Change) -> list[str]:
    """Serve ``change(envelope, touched)`` instead of ACME's ad-level report answers (the account
    totals and SAKURA stay as TikTok sends them); ``touched`` is returned to the test."""
    touched: list[str] = []

    def rewrite(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any] | Response:
        return change(envelope, touched) if query.get("data_level") == "AUCTION_AD" else envelope

    project.tiktok.rewrite_answers(REPORT_PATH, rewrite, advertiser_id=ACME)
    return touched


def pick_row(
    envelope: dict[str, Any],
    touched: list[str],
    *,
    day: date = DAY,
    where: Callable[[dict[str, Any]], bool] = bool,
) -> dict[str, Any]:
    """The first row of ``day`` that satisfies ``where``, noted in ``touched``."""
    rows = envelope["data"]["list"]
    row = next(
        row for row in rows if row["dimensions"]["stat_time_day"].startswith(day.isoformat()) and where(row)
    )
    touched.append(row["dimensions"]["ad_id"])
    return row


def metric(name: str, value: object, *, day: date = DAY) -> Change:
    def change(envelope: dict[str, Any], touched: list[str]) -> dict[str, Any]:
        pick_row(envelope, touched, day=day)["metrics"][name] = value
        return envelope

    return change


def raw_figures(project: Project, day: date, advertiser_id: str) -> dict[str, dict[str, str]]:
    raw = ImportStore(project.data_dir).read_raw_report(day, advertiser_id)
    return {
        row["dimensions"]["ad_id"]: {name: row["metrics"][name] for name in PERFORMANCE_METRICS}
        for row in raw["report_rows"]
    }


def tiktok_figures(project: Project, day: date, advertiser_id: str) -> dict[str, dict[str, str]]:
    return {
        ad.ad_id: metrics
        for ad in project.catalogue.ads_of(advertiser_id)
        if (metrics := project.catalogue.daily_metrics(ad.ad_id, day)) is not None
    }


def of_account(sums: dict[tuple[str, str], Any], advertiser_id: str) -> dict[tuple[str, str], Any]:
    return {key: value for key, value in sums.items() if key[0] == advertiser_id}


def assert_only_the_other_account_delivered(project: Project, day: date, failed: str, other: str) -> None:
    """``other``'s day is in Amplitude exactly as TikTok reports it; nothing of ``failed``'s, which is
    recorded as failed for the next runs (and no temporary file is left)."""
    assert of_account(project.amplitude_sums(day), other) == of_account(project.tiktok_truth(day), other)
    assert of_account(project.amplitude_sums(day), failed) == {}
    assert ImportStore(project.data_dir).account_day_failures([day]).keys() == {(day, failed)}
    assert [path for path in project.data_dir.rglob("*") if path.name.endswith(".tmp")] == []


def _html_page(envelope: dict[str, Any], touched: list[str]) -> Response:
    touched.append("page")
    return Response(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")


def _empty_page(envelope: dict[str, Any], touched: list[str]) -> dict[str, Any]:
    touched.append("page")
    envelope["data"]["list"] = []  # page_info still announces the rows
    return envelope


def _list_as_object(envelope: dict[str, Any], touched: list[str]) -> dict[str, Any]:
    touched.append("page")
    envelope["data"]["list"] = {"rows": envelope["data"]["list"]}
    return envelope


def _without_dimension(name: str) -> Change:
    def change(envelope: dict[str, Any], touched: list[str]) -> dict[str, Any]:
        del pick_row(envelope, touched)["dimensions"][name]
        return envelope

    return change


def _row_for_another_day(envelope: dict[str, Any], touched: list[str]) -> dict[str, Any]:
    pick_row(envelope, touched)["dimensions"]["stat_time_day"] = "2025-02-28 00:00:00"
    return envelope


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (_html_page, "not TikTok's JSON envelope"),
        (_empty_page, "announced"),
        (_list_as_object, "a success without data.list"),
        (_without_dimension("stat_time_day"), "field 'dimensions.stat_time_day'"),
        (_without_dimension("ad_id"), "field 'dimensions.ad_id'"),
        (_row_for_another_day, "field 'dimensions.stat_time_day'"),
    ],
    ids=[
        "html-page",
        "empty-page",
        "list-of-wrong-type",
        "row-without-day",
        "row-without-ad-id",
        "row-of-other-day",
    ],
)
def test_a_malformed_answer_fails_its_account_by_name_and_keeps_the_other(
    project: Project, change: Change, named: str
) -> None:
    touched = on_report(project, change)
    check = ended_failed_after_delivering(run(project, DAY))
    assert touched, "the malformed answer was never served"
    message = str(check.description)
    assert f"ad account {ACME}: {DAY}" in message and named in message
    assert SAKURA not in message
    assert not ImportStore(project.data_dir).raw_report_path(DAY, ACME).exists()
    # The other account's day is stored whole, exactly as TikTok reports it, and delivered.
    assert raw_figures(project, DAY, SAKURA) == tiktok_figures(project, DAY, SAKURA)
    assert_only_the_other_account_delivered(project, DAY, ACME, SAKURA)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (metric("spend", ["12.30"]), "spend"),
        (metric("impressions", "-5"), "impressions"),
    ],
    ids=["spend-of-wrong-type", "negative-count"],
)
def test_a_malformed_value_fails_the_account_day_naming_account_day_ad_and_field(
    project: Project, change: Change, field: str
) -> None:
    touched = on_report(project, change)
    check = ended_failed_after_delivering(run(project, DAY))
    (ad_id,) = touched
    message = str(check.description)
    assert f"TikTok advertiser {ACME}, day {DAY}, ad {ad_id}: field {field!r}" in message
    assert "kept as received" in message
    # The raw reports are whole, as TikTok sent them: the evidence to look at or report.
    raw = ImportStore(project.data_dir).read_raw_report(DAY, ACME)
    assert ad_id in {row["dimensions"]["ad_id"] for row in raw["report_rows"]}
    assert raw_figures(project, DAY, SAKURA) == tiktok_figures(project, DAY, SAKURA)
    assert_only_the_other_account_delivered(project, DAY, ACME, SAKURA)


def test_a_field_missing_from_the_row_and_from_ad_get_is_named(project: Project) -> None:
    def drop_from_report(envelope: dict[str, Any], touched: list[str]) -> dict[str, Any]:
        del pick_row(envelope, touched)["metrics"]["campaign_name"]
        return envelope

    def drop_from_ad_get(query: dict[str, str], envelope: dict[str, Any]) -> dict[str, Any]:
        for item in envelope["data"]["list"]:
            if item["ad_id"] in touched:
                del item["campaign_name"]
        return envelope

    touched = on_report(project, drop_from_report)
    served = project.tiktok.rewrite_answers(AD_PATH, drop_from_ad_get, advertiser_id=ACME)
    check = ended_failed_after_delivering(run(project, DAY))
    assert served.applied and touched
    assert (
        f"TikTok advertiser {ACME}, day {DAY}, ad {touched[0]}: field 'campaign_name': "
        "missing in the report row and in ad/get"
    ) in str(check.description)
    assert_only_the_other_account_delivered(project, DAY, ACME, SAKURA)


@pytest.mark.parametrize(
    "worker_processes", [False, True], ids=["in the run's process", "in worker processes"]
)
def test_in_a_range_a_bad_account_day_is_left_out_and_every_other_one_delivered(
    project: Project, monkeypatch: pytest.MonkeyPatch, worker_processes: bool
) -> None:
    if worker_processes:  # as a long backfill does (normalize.py)
        monkeypatch.setattr(normalize, "PARALLEL_FROM_ACCOUNT_DAYS", 1)
    days = [DAY + timedelta(days=offset) for offset in range(3)]
    bad_day = days[1]
    on_report(project, metric("spend", "twelve", day=bad_day))  # one report window holds all three days
    check = ended_failed_after_delivering(run(project, days[0], days[-1]))
    assert f"ad account {ACME}: {bad_day}. " in str(check.description)
    assert f"TikTok advertiser {ACME}, day {bad_day}" in str(check.description)
    for day in days:
        for advertiser_id in (ACME, SAKURA):
            if (day, advertiser_id) != (bad_day, ACME):
                assert raw_figures(project, day, advertiser_id) == tiktok_figures(project, day, advertiser_id)
                assert of_account(project.amplitude_sums(day), advertiser_id) == of_account(
                    project.tiktok_truth(day), advertiser_id
                )
    assert of_account(project.amplitude_sums(bad_day), ACME) == {}
    upload = ImportStore(project.data_dir).read_upload_results(bad_day)
    assert upload["events_planned"] == len(of_account(project.tiktok_truth(bad_day), SAKURA))

    # Once TikTok answers properly again, the same range goes through and Amplitude equals TikTok.
    project.tiktok.answer_rewrites.clear()
    assert run(project, days[0], days[-1]).success
    for day in days:
        assert project.amplitude_sums(day) == project.tiktok_truth(day)
    assert ImportStore(project.data_dir).account_day_failures(days) == {}


def test_the_next_run_removes_temporary_files_that_killed_writes_left(project: Project) -> None:
    store = ImportStore(project.data_dir)
    abandoned = store.raw_report_path(DAY, ACME).parent / f".{ACME}.json.k1ll3d.tmp"
    in_progress = store.upload_results_path(DAY).parent / f".{DAY}.json.wr1t1ng.tmp"  # another run's
    for path in (abandoned, in_progress):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b'{"report_rows": [')  # torn, as a kill leaves it
    two_hours_ago = time.time() - 7200
    os.utime(abandoned, (two_hours_ago, two_hours_ago))

    assert run(project, DAY).success

    assert not abandoned.exists() and in_progress.exists()
    assert project.amplitude_sums(DAY) == project.tiktok_truth(DAY)


# ----- "-" for a metric: the spec says "treat as missing, not zero"; the README: left out of the event.


def test_a_dash_for_a_metric_is_missing_and_left_out_of_the_event(project: Project) -> None:
    # An ad without conversions that day: TikTok's "-" and its "0" must add up to the same total.
    def dash(envelope: dict[str, Any], touched: list[str]) -> dict[str, Any]:
        row = pick_row(envelope, touched, where=lambda row: row["metrics"]["conversion"] == "0")
        row["metrics"]["conversion"] = "-"
        return envelope

    touched = on_report(project, dash)
    assert run(project, DAY).success
    (ad_id,) = set(touched)
    (row,) = [
        row for row in table_rows(ImportStore(project.data_dir).read_ad_metrics(DAY)) if row.ad_id == ad_id
    ]
    assert row.conversions is None and row.impressions is not None
    (sent,) = [
        e for e in project.amplitude.counted_events(API_KEY) if e["event_properties"]["ad_id"] == ad_id
    ]
    properties = sent["event_properties"]
    assert "ad_metrics.conversions" not in properties
    assert {"ad_metrics.cost", "ad_metrics.impressions", "ad_metrics.clicks"} <= properties.keys()
    assert project.amplitude_sums(DAY) == project.tiktok_truth(DAY)


def test_a_dash_for_spend_that_the_account_total_counts_is_delivered_as_missing_and_warned(
    project: Project,
) -> None:
    # "-" is missing, not zero: TikTok's own account total has that spend, so the day has a gap.
    # Asking again in parts finds no ad the answer lacked: the rows are whole as TikTok wrote them.
    def dash(envelope: dict[str, Any], touched: list[str]) -> dict[str, Any]:
        # One ad, wherever it appears (the window is asked again in parts: each answer dashes it).
        if not touched:
            pick_row(envelope, touched, where=lambda row: row["metrics"]["spend"] != "0.00")
        for row in envelope["data"]["list"]:
            if row["dimensions"] == {"ad_id": touched[0], "stat_time_day": f"{DAY} 00:00:00"}:
                row["metrics"]["spend"] = "-"
        return envelope

    touched = on_report(project, dash)
    result = run(project, DAY)
    assert result.success and len(touched) == 1
    (check,) = [
        record.asset_check_evaluation_data
        for record in result.all_events
        if record.event_type_value == "ASSET_CHECK_EVALUATION"
        and record.asset_check_evaluation_data.check_name == "rows_add_up_to_account_totals"
    ]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert f"ad account {ACME} on {DAY}: " in str(check.description) and "'-'" in str(check.description)
    gaps = check.metadata["gaps"].value
    dashed = project.catalogue.daily_metrics(touched[0], DAY)
    assert dashed is not None
    assert [(gap["advertiser_id"], gap["stat_date"], Decimal(gap["unattributed_spend"])) for gap in gaps] == [
        (ACME, DAY.isoformat(), Decimal(dashed["spend"]))
    ]
    (sent,) = [
        e for e in project.amplitude.counted_events(API_KEY) if e["event_properties"]["ad_id"] == touched[0]
    ]
    assert "ad_metrics.cost" not in sent["event_properties"]
    assert of_account(project.amplitude_sums(DAY), SAKURA) == of_account(project.tiktok_truth(DAY), SAKURA)


def test_a_name_cut_mid_emoji_is_stored_exactly_and_sent_as_valid_text(project: Project) -> None:
    # JSON can carry half a surrogate pair ("\ud83d"); UTF-8 cannot. Before: the raw write crashed.
    def cut_name(query: dict[str, str], envelope: dict[str, Any]) -> Response:
        if query.get("data_level") == "AUCTION_AD":
            row = pick_row(envelope, touched, where=lambda row: row["metrics"]["ad_name"] != "-")
            row["metrics"]["ad_name"] = "Sale \ud83d"
        return Response(200, json.dumps(envelope, ensure_ascii=True).encode("ascii"))

    touched: list[str] = []
    project.tiktok.rewrite_answers(REPORT_PATH, cut_name, advertiser_id=ACME)
    assert run(project, DAY).success
    (ad_id,) = set(touched)
    raw = ImportStore(project.data_dir).read_raw_report(DAY, ACME)
    names = [row["metrics"]["ad_name"] for row in raw["report_rows"] if row["dimensions"]["ad_id"] == ad_id]
    assert names == ["Sale \ud83d"]
    (sent,) = [
        e for e in project.amplitude.counted_events(API_KEY) if e["event_properties"]["ad_id"] == ad_id
    ]
    assert sent["event_properties"]["ad_name"] == "Sale \ufffd"
    assert project.amplitude_sums(DAY) == project.tiktok_truth(DAY)


# ----- 3. bad configuration fails before any data moves


def test_an_unknown_account_is_named_and_the_other_is_delivered(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = "7000000000000000099"
    monkeypatch.setenv("TIKTOK_ADVERTISER_IDS", f"{ACME},{unknown}")
    check = ended_failed_after_delivering(run(project, DAY))
    message = str(check.description)
    assert (
        f"ad account {unknown}: {DAY}" in message
        and "40001" in message
        and "TIKTOK_ADVERTISER_IDS" in message
    )
    assert message.count("40001") == 1, message
    assert unknown not in {
        entry["advertiser_id"] for entry in project.tiktok.request_log if entry["path"] == REPORT_PATH
    }
    assert project.amplitude_sums(DAY) == of_account(project.tiktok_truth(DAY), ACME)


def test_a_revoked_token_stops_at_the_first_call(project: Project) -> None:
    project.tiktok.access_tokens.clear()
    where, message = failure(run(project, DAY))
    assert where == "tiktok_raw_reports"
    assert "40105" in message and "re-authorize" in message and "TIKTOK_ACCESS_TOKEN" in message
    assert ACME in message and SAKURA in message
    assert [entry["path"] for entry in project.tiktok.request_log] == [ADVERTISER_INFO_PATH]
    assert not (project.data_dir / "tiktok_ads" / "raw").exists()
    assert project.amplitude.requests_count() == 0


def test_a_wrong_api_key_counts_nothing_and_the_next_run_delivers_everything(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Amplitude offers no call that checks a key without sending events: the first upload request does.
    monkeypatch.setenv("AMPLITUDE_API_KEY", "wrong-key-5e4d3c2b1a")
    where, message = failure(run(project, DAY))
    assert where == "amplitude_upload_results"
    assert "Invalid API key" in message and "AMPLITUDE_API_KEY" in message
    assert project.amplitude.counted_events() == []
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    assert run(project, DAY).success
    assert project.amplitude_sums(DAY) == project.tiktok_truth(DAY)


@pytest.mark.parametrize(
    ("name", "value", "refused_by", "named"),
    [
        # Amplitude's settings are checked as the run starts, before TikTok is asked for anything: the
        # URL by the resource, a blank key with the other required variables at the first step.
        ("AMPLITUDE_API_URL", "http://api2.amplitude.com", "resources", "plain http://"),
        ("AMPLITUDE_API_KEY", "   ", "tiktok_raw_reports", "AMPLITUDE_API_KEY is not set"),
        ("TIKTOK_API_URL", "http://business-api.tiktok.com", "tiktok_raw_reports", "plain http://"),
        # Python reads the host as 127.0.0.1 (loopback, allowed), urllib3 as tiktok.example.
        (
            "TIKTOK_API_URL",
            "http://tiktok.example\\@127.0.0.1:9",
            "tiktok_raw_reports",
            "without user:password@",
        ),
    ],
    ids=["amplitude-url-http", "amplitude-key-blank", "tiktok-url-http", "tiktok-url-two-hosts"],
)
def test_an_unusable_setting_stops_the_run_before_any_request(
    project: Project, monkeypatch: pytest.MonkeyPatch, name: str, value: str, refused_by: str, named: str
) -> None:
    monkeypatch.setenv(name, value)
    project.rebuild()
    where, message = failure(run(project, DAY))
    assert where == refused_by
    assert name in message and named in message
    assert project.tiktok.calls() == 0 and project.amplitude.requests_count() == 0
    assert not project.data_dir.exists() or not any(project.data_dir.rglob("*.json"))
