"""The ledger per Amplitude project, and its migration from the layout before connections, on SQLite
and on a real PostgreSQL server."""

from __future__ import annotations

import secrets
import threading
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from tiktok_amp_assets.storage.import_store import ImportStore
from tiktok_amp_assets.storage.ledger import ACKNOWLEDGED, SCHEMA_VERSION
from tiktok_amp_assets.storage.locations import postgres_ledger_url

from ..postgres_server import PostgresServer
from .test_ledger import day_events

DAY = date(2026, 3, 1)

# The version-1 table as the ledger created it before connections (keyed by insert_id alone).
VERSION_1_TABLE = """
CREATE TABLE amplitude_events (
    insert_id TEXT NOT NULL PRIMARY KEY, advertiser_id TEXT NOT NULL, ad_id TEXT NOT NULL,
    stat_date TEXT NOT NULL, revision INTEGER NOT NULL, cost TEXT NOT NULL, impressions BIGINT NOT NULL,
    clicks BIGINT NOT NULL, conversions BIGINT NOT NULL, status TEXT NOT NULL, reason TEXT,
    payload TEXT NOT NULL, recorded_at TEXT NOT NULL, acknowledged_at TEXT, description TEXT NOT NULL,
    CONSTRAINT amplitude_events_status CHECK (status IN ('pending', 'acknowledged', 'rejected'))
)
"""
VERSION_1_ROWS = [
    (
        "id-1",
        "7000000000000000001",
        "ad-1",
        "2026-02-01",
        0,
        "1.10",
        10,
        1,
        0,
        "acknowledged",
        "{}",
        "t",
        "d",
    ),
    (
        "id-2",
        "7000000000000000001",
        "ad-2",
        "2026-02-01",
        0,
        "2.20",
        20,
        2,
        1,
        "pending",
        '{"event_properties": {}}',
        "t",
        "d",
    ),
]


def store_of(folder: Path, project: str, ledger_url: str | None = None) -> ImportStore:
    return ImportStore(folder, ledger_url, connection=project)


def test_the_same_ad_days_are_counted_once_in_each_project(tmp_path: Path) -> None:
    acme, brand = store_of(tmp_path, "acme").ledger(), store_of(tmp_path, "brand").ledger()
    events = day_events(DAY, ads=50)
    acme.record_pending(events)
    # The same insert_ids in another project: not a concurrent plan, another project's events.
    brand.record_pending(events)
    acme.acknowledge(event.insert_id for event in events)
    assert brand.pending() and len(brand.pending()) == len(events)
    assert acme.pending() == []
    assert acme.counted([DAY]) and brand.counted([DAY]) == {}
    brand.acknowledge(event.insert_id for event in events)
    assert brand.counted([DAY]) == acme.counted([DAY])
    rows = acme.rows()
    assert {row["amplitude_project"] for row in rows} == {"acme", "brand"}
    assert {row["status"] for row in rows} == {ACKNOWLEDGED}


def test_the_connections_files_stay_apart_in_one_data_folder(tmp_path: Path) -> None:
    acme, brand = store_of(tmp_path, "acme"), store_of(tmp_path, "brand")
    acme.write_raw_report(DAY, "7000000000000000001", {"by": "acme"})
    brand.write_raw_report(DAY, "7000000000000000001", {"by": "brand"})
    assert acme.read_raw_report(DAY, "7000000000000000001") == {"by": "acme"}
    assert brand.read_raw_report(DAY, "7000000000000000001") == {"by": "brand"}
    assert acme.raw_report_path(DAY, "1").is_relative_to(tmp_path / "acme")


def _events(ledger_rows: list[dict[str, object]]) -> dict[tuple[object, object], object]:
    return {(row["amplitude_project"], row["insert_id"]): row["status"] for row in ledger_rows}


def _version_1_ledger(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(VERSION_1_TABLE))
        connection.execute(
            text("CREATE INDEX amplitude_events_by_day ON amplitude_events (stat_date, status)")
        )
        connection.execute(
            text(
                "CREATE TABLE amplitude_event_descriptions (digest TEXT PRIMARY KEY, description TEXT NOT NULL)"
            )
        )
        connection.execute(
            text("INSERT INTO amplitude_event_descriptions VALUES ('d', '{\"event_properties\": {}}')")
        )
        for row in VERSION_1_ROWS:
            connection.execute(
                text(
                    "INSERT INTO amplitude_events (insert_id, advertiser_id, ad_id, stat_date, revision, cost, "
                    "impressions, clicks, conversions, status, payload, recorded_at, description) VALUES "
                    "(:a, :b, :c, :d, :e, :f, :g, :h, :i, :j, :k, :l, :m)"
                ),
                dict(zip("abcdefghijklm", row, strict=True)),
            )
    engine.dispose()


def _assert_migrated(store: ImportStore, url: str) -> None:
    ledger = store.ledger()
    assert _events(ledger.rows()) == {
        ("tiktok_ads", "id-1"): "acknowledged",
        ("tiktok_ads", "id-2"): "pending",
    }
    assert [event.insert_id for event in ledger.pending()] == ["id-2"]
    assert ledger.counted([date(2026, 2, 1)])[
        ("7000000000000000001", "ad-1", date(2026, 2, 1))
    ].cost == Decimal("1.10")
    engine = create_engine(url)
    with engine.connect() as connection:
        assert not inspect(connection).has_table("amplitude_events")
        assert connection.execute(text("SELECT version FROM ledger_schema")).scalars().all() == [
            SCHEMA_VERSION
        ]
    engine.dispose()
    ledger.close()
    # Opened again (another run): nothing moves, nothing is added.
    again = store.ledger()
    assert len(again.rows()) == len(VERSION_1_ROWS)
    again.close()


def test_a_ledger_from_before_connections_is_migrated_to_the_default_project_on_sqlite(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'amplitude_ledger.sqlite'}"
    _version_1_ledger(url)
    _assert_migrated(store_of(tmp_path, "tiktok_ads"), url)
    # Another connection's view of the migrated ledger holds none of the default project's events.
    assert store_of(tmp_path, "acme").ledger().pending() == []


def test_a_ledger_from_before_connections_is_migrated_once_on_postgresql(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    database = postgres.create_database(f"ledger_{secrets.token_hex(6)}")
    url = postgres.url(database)
    _version_1_ledger(postgres_ledger_url(url).render_as_string(hide_password=False))
    # Several runs opening it at once: one migrates, the others find it done.
    errors: list[BaseException] = []

    def open_ledger() -> None:
        try:
            store_of(tmp_path, "tiktok_ads", url).ledger().close()
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=open_ledger) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    _assert_migrated(
        store_of(tmp_path, "tiktok_ads", url), postgres_ledger_url(url).render_as_string(hide_password=False)
    )


def test_a_ledger_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    store_of(tmp_path, "tiktok_ads").ledger().close()
    engine = create_engine(f"sqlite:///{tmp_path / 'amplitude_ledger.sqlite'}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE ledger_schema SET version = :v"), {"v": SCHEMA_VERSION + 1})
    engine.dispose()
    with pytest.raises(ValueError, match="newer than this tiktok-amp-assets knows"):
        store_of(tmp_path, "tiktok_ads").ledger()
