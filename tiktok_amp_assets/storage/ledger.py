"""The ledger of what Amplitude has counted, per ad-day: the project's memory against double counting.

Amplitude forgets an ``insert_id`` after 7 days, so de-duplication alone cannot stop a re-run of an
old day from counting it twice. The ledger records every event before it is sent (``pending``) and
marks it ``acknowledged`` in the same breath as Amplitude's 200, in a SQLite transaction. A re-run
resends pending events unchanged (same ``insert_id``, same payload, so Amplitude drops it if it had
counted it) and sends new events only for what the ledger has not counted.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

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
                json.dumps(event.payload, ensure_ascii=False, separators=(",", ":")),
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

    def pending(self, stat_dates: Iterable[date]) -> list[AdDayEvent]:
        """Events recorded but never acknowledged (a run stopped mid-upload), oldest first."""
        return [
            _ad_day_event(row)
            for row in self._select("status = 'pending'", stat_dates, "ORDER BY recorded_at, insert_id")
        ]

    def counted(self, stat_dates: Iterable[date]) -> dict[AdDayKey, CountedAdDay]:
        """Per ad-day of these dates: the sum Amplitude counted, the next revision, the last payload."""
        counted: dict[AdDayKey, CountedAdDay] = {}
        for row in self._select("status = 'acknowledged'", stat_dates, "ORDER BY revision"):
            event = _ad_day_event(row)
            before = counted.get(event.ad_day)
            totals = event.totals if before is None else before.totals + event.totals
            counted[event.ad_day] = CountedAdDay(totals, event.revision + 1, event.payload)
        return counted

    def _select(self, condition: str, stat_dates: Iterable[date], order: str) -> list[tuple[Any, ...]]:
        days = sorted({day.isoformat() for day in stat_dates})
        if not days:
            return []
        placeholders = ",".join("?" for _ in days)
        with self._connect() as connection:
            return connection.execute(
                "SELECT insert_id, advertiser_id, ad_id, stat_date, revision, cost, impressions, clicks, "
                f"conversions, payload FROM amplitude_events WHERE {condition} AND stat_date IN ({placeholders}) "
                f"{order}",
                days,
            ).fetchall()


def _ad_day_event(row: tuple[Any, ...]) -> AdDayEvent:
    insert_id, advertiser_id, ad_id, stat_date, revision, cost, impressions, clicks, conversions, payload = row
    return AdDayEvent(
        insert_id=insert_id,
        advertiser_id=advertiser_id,
        ad_id=ad_id,
        stat_date=date.fromisoformat(stat_date),
        revision=revision,
        totals=MetricTotals(cost=Decimal(cost), impressions=impressions, clicks=clicks, conversions=conversions),
        payload=json.loads(payload),
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
