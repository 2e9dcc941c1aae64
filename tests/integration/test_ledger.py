"""The ledger's storage: lean rows that give back every event exactly.

A SQLite ledger in a temporary folder (the PostgreSQL ledger runs the same code: tests/e2e).
"""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from tiktok_amp_assets.core.json_codec import dump_json
from tiktok_amp_assets.core.upload_plan import AdDayEvent, plan_events
from tiktok_amp_assets.storage.import_store import ImportStore
from tiktok_amp_assets.storage.ledger import ACKNOWLEDGED, AmplitudeLedger

from ..unit.test_events import make_row

DAY = date(2026, 3, 1)
ADS = 1_000  # more than one statement's worth of ids (900)


def ledger_at(folder: Path) -> AmplitudeLedger:
    return ImportStore(folder).ledger()


def day_events(day: date, ads: int = ADS) -> list[AdDayEvent]:
    rows = [
        make_row(ad_id=f"17900000000{index:05d}", ad_name=f"Ad {index}", stat_date=day, cost=Decimal("1.10"))
        for index in range(ads)
    ]
    return [planned.ad_day_event for planned in plan_events(rows, {}, [day])]


def test_events_come_back_exactly_from_lean_rows_with_one_description_per_ad(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    events = day_events(DAY) + day_events(DAY + timedelta(days=1))
    ledger.record_pending(events[:ADS])
    ledger.record_pending(events[ADS:])

    assert {event.insert_id: event.payload for event in ledger.pending()} == {
        event.insert_id: event.payload for event in events
    }
    with sqlite3.connect(tmp_path / "amplitude_ledger.sqlite") as database:
        descriptions = database.execute("SELECT count(*) FROM amplitude_event_descriptions").fetchone()[0]
        own_parts = [text for (text,) in database.execute("SELECT payload FROM ledger_events")]
    assert descriptions == ADS  # each ad's description once, however many days
    whole = sum(len(dump_json(event.payload)) for event in events)
    assert sum(map(len, own_parts)) < whole * 0.35  # the rest is in the ad descriptions


def test_acknowledging_a_request_of_many_events_and_reading_the_sums(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    events = day_events(DAY)
    ledger.record_pending(events)
    ledger.acknowledge(event.insert_id for event in events)

    assert ledger.pending() == []
    assert {row["status"] for row in ledger.rows()} == {ACKNOWLEDGED}
    assert ledger.counted([DAY]) == {event.ad_day: event.totals for event in events}
    assert ledger.counted([DAY + timedelta(days=1)]) == {}


def test_a_removal_correction_carries_the_last_counted_events_description(tmp_path: Path) -> None:
    ledger = ledger_at(tmp_path)
    events = day_events(DAY, ads=3)
    ledger.record_pending(events)
    ledger.acknowledge(event.insert_id for event in events)

    recorded = ledger.day_record(DAY).recorded
    removals = plan_events([], recorded, [DAY])  # TikTok no longer reports the day's ads

    assert [planned.kind for planned in removals] == ["removal"] * 3
    for removal, event in zip(removals, sorted(events, key=lambda e: e.ad_day), strict=True):
        sent = removal.ad_day_event.payload
        assert sent["event_properties"]["ad_name"] == event.payload["event_properties"]["ad_name"]
        assert sent["user_properties"] == event.payload["user_properties"]
        assert sent["event_properties"]["ad_metrics.cost"] == -1.1
        assert sent["event_properties"]["ad_metrics_revision"] == 1


def test_a_copied_ledger_gives_back_the_same_events(tmp_path: Path) -> None:
    source = ledger_at(tmp_path / "source")
    events = day_events(DAY, ads=20)
    source.record_pending(events)
    source.acknowledge(event.insert_id for event in events[:10])

    destination = ledger_at(tmp_path / "destination")
    assert source.copy_into(destination) == 20

    assert destination.rows() == source.rows()
    assert [(e.insert_id, e.payload) for e in destination.pending()] == [
        (e.insert_id, e.payload) for e in source.pending()
    ]
