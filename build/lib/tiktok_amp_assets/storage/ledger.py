"""The ledger of what Amplitude has counted, per ad-day: the project's memory against double counting.

Amplitude forgets an ``insert_id`` after 7 days, so de-duplication alone cannot stop a re-run of an
old day from counting it twice. The ledger records every event before it is sent (``pending``) and
marks it ``acknowledged`` in the same breath as Amplitude's 200, in a SQLite transaction. A re-run
resends pending events unchanged (same ``insert_id``, same payload, so Amplitude drops it if it had
counted it) and sends new events only for what the ledger has not counted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from tiktok_amp_assets.core.json_codec import dump_json, load_json
from tiktok_amp_assets.core.metric_values import MetricTotals
from tiktok_amp_assets.core.upload_plan import AdDayEvent, AdDayKey, CountedAdDay

PENDING = "pending"
ACKNOWLEDGED = "acknowledged"
REJECTED = "rejected"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS amplitude_events (
    insert_id TEXT PRIMARY KEY,
    advertiser_id TEXT NOT NULL,
    ad_id TEXT NOT NULL,
    stat_date TEXT NOT NULL,
    revision INTEGER NOT NULL,
    cost TEXT NOT NULL,
    impressions INTEGER NOT NULL,
    clicks INTEGER NOT NULL,
    conversions INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'acknowledged', 'rejected')),
    reason TEXT,
    payload TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    acknowledged_at TEXT
);
CREATE INDEX IF NOT EXISTS amplitude_events_by_day ON amplitude_events (stat_date, status);
"""
_AD_DAY_COLUMNS = "advertiser_id, ad_id, stat_date, revision, cost, impressions, clicks, conversions, payload"


class AmplitudeLedger:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection:
            connection.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        connection = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            # FULL: an acknowledgement is on disk before the next request goes out.
            connection.execute("PRAGMA synchronous=FULL")
            yield connection
        finally:
            connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    def record_pending(self, events: Iterable[AdDayEvent]) -> None:
        """Write events as pending before they are sent. A rejected event may be retried; an
        acknowledged one is never overwritten."""
        now = _now()
        rows = [
            (
                event.insert_id,
                event.advertiser_id,
                event.ad_id,
                event.stat_date.isoformat(),
                event.revision,
                str(event.totals.cost),
                event.totals.impressions,
                event.totals.clicks,
                event.totals.conversions,
                dump_json(event.payload).decode("utf-8"),
                now,
            )
            for event in events
        ]
        with self._transaction() as connection:
            connection.executemany(
                """
                INSERT INTO amplitude_events (insert_id, advertiser_id, ad_id, stat_date, revision, cost,
                    impressions, clicks, conversions, status, payload, recorded_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)
                ON CONFLICT (insert_id) DO UPDATE SET
                    status = 'pending', reason = NULL, cost = excluded.cost,
                    impressions = excluded.impressions, clicks = excluded.clicks,
                    conversions = excluded.conversions, payload = excluded.payload,
                    recorded_at = excluded.recorded_at
                WHERE amplitude_events.status = 'rejected'
                """,
                rows,
            )

    def acknowledge(self, insert_ids: Iterable[str]) -> None:
        now = _now()
        with self._transaction() as connection:
            connection.executemany(
                "UPDATE amplitude_events SET status = 'acknowledged', acknowledged_at = ? "
                "WHERE insert_id = ? AND status = 'pending'",
                [(now, insert_id) for insert_id in insert_ids],
            )

    def reject(self, reasons: dict[str, str]) -> None:
        with self._transaction() as connection:
            connection.executemany(
                "UPDATE amplitude_events SET status = 'rejected', reason = ? WHERE insert_id = ? AND status = 'pending'",
                [(reason, insert_id) for insert_id, reason in reasons.items()],
            )

    def pending(self) -> list[AdDayEvent]:
        """Events recorded but never acknowledged (a run stopped mid-upload), of any day, oldest first.

        Any day, not only the days being run: left pending until its own day is run again, an
        event might be resent after Amplitude's 7-day memory of its insert_id has lapsed.
        """
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT insert_id, {_AD_DAY_COLUMNS} FROM amplitude_events "
                "WHERE status = 'pending' ORDER BY recorded_at, insert_id"
            ).fetchall()
        return [_ad_day_event(row) for row in rows]

    def counted(self, stat_dates: Iterable[date]) -> dict[AdDayKey, CountedAdDay]:
        """Per ad-day of these dates: the sum Amplitude counted, the next revision, the last payload."""
        counted: dict[AdDayKey, CountedAdDay] = {}
        days = sorted({day.isoformat() for day in stat_dates})
        if not days:
            return counted
        placeholders = ",".join("?" for _ in days)
        with self._connect() as connection:
            rows = connection.execute(
                f"SELECT {_AD_DAY_COLUMNS} FROM amplitude_events "
                f"WHERE status = 'acknowledged' AND stat_date IN ({placeholders}) ORDER BY revision",
                days,
            ).fetchall()
        for (
            advertiser_id,
            ad_id,
            stat_date,
            revision,
            cost,
            impressions,
            clicks,
            conversions,
            payload,
        ) in rows:
            key = (advertiser_id, ad_id, date.fromisoformat(stat_date))
            totals = MetricTotals(Decimal(cost), impressions, clicks, conversions)
            before = counted.get(key)
            if before is not None:
                totals = before.totals + totals
            counted[key] = CountedAdDay(totals, revision + 1, payload)
        return counted


def _ad_day_event(row: tuple[Any, ...]) -> AdDayEvent:
    insert_id, advertiser_id, ad_id, stat_date, revision, cost, impressions, clicks, conversions, payload = (
        row
    )
    return AdDayEvent(
        insert_id=insert_id,
        advertiser_id=advertiser_id,
        ad_id=ad_id,
        stat_date=date.fromisoformat(stat_date),
        revision=revision,
        totals=MetricTotals(
            cost=Decimal(cost), impressions=impressions, clicks=clicks, conversions=conversions
        ),
        payload=load_json(payload),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
