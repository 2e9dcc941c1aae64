"""The ledger of what Amplitude has counted, per ad-day: the project's memory against double counting.

Amplitude forgets an ``insert_id`` after 7 days, so de-duplication alone cannot stop a re-run of an
old day from counting it twice. The ledger records every event before it is sent (``pending``) and
marks it ``acknowledged`` in the same breath as Amplitude's 200, in a committed transaction. A re-run
resends pending events unchanged (same ``insert_id``, same payload, so Amplitude drops it if it had
counted it) and sends new events only for what the ledger has not recorded.

One code path (SQLAlchemy Core) serves both databases: a SQLite file in a local data folder, or
PostgreSQL for runs on many machines (``storage/locations.py``).

**Many runs at once.** Planning a day and recording its events happen in one transaction
(:meth:`AmplitudeLedger.planning`), against what is *recorded* for the day, pending events
included: an event another run has recorded is one Amplitude will count (that run or the next one
sends it), so it is never planned twice. Each event's ``insert_id`` is derived from its ad account,
ad, day and revision, and is the table's primary key: two runs that planned the same ad-day from the
same state would record the same revision, and the second insert fails (PostgreSQL makes it wait
for the first transaction, then refuses it; SQLite's ``BEGIN IMMEDIATE`` runs the two transactions
one after the other). The loser gets :class:`ConcurrentPlanError` and plans the day again from what
the winner recorded. No lock is held while events are sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from tiktok_amp_assets.core.json_codec import dump_json, load_json
from tiktok_amp_assets.core.metric_values import MetricTotals
from tiktok_amp_assets.core.upload_plan import AdDayEvent, AdDayKey, CountedAdDay

PENDING = "pending"
ACKNOWLEDGED = "acknowledged"
REJECTED = "rejected"
STATUSES = (PENDING, ACKNOWLEDGED, REJECTED)

# The same table as the SQLite-only ledger had, so existing ledger files are used as they are.
METADATA = MetaData()
EVENTS = Table(
    "amplitude_events",
    METADATA,
    Column("insert_id", Text, primary_key=True),
    Column("advertiser_id", Text, nullable=False),
    Column("ad_id", Text, nullable=False),
    Column("stat_date", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("cost", Text, nullable=False),  # a decimal's exact text
    # Counts fit 64 bits (core/metric_values.py refuses bigger ones).
    Column("impressions", BigInteger, nullable=False),
    Column("clicks", BigInteger, nullable=False),
    Column("conversions", BigInteger, nullable=False),
    Column("status", Text, nullable=False),
    Column("reason", Text),
    Column("payload", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    Column("acknowledged_at", Text),
    CheckConstraint(f"status IN {STATUSES!r}", name="amplitude_events_status"),
    Index("amplitude_events_by_day", "stat_date", "status"),
)
_AD_DAY_COLUMNS = (
    EVENTS.c.advertiser_id,
    EVENTS.c.ad_id,
    EVENTS.c.stat_date,
    EVENTS.c.revision,
    EVENTS.c.cost,
    EVENTS.c.impressions,
    EVENTS.c.clicks,
    EVENTS.c.conversions,
    EVENTS.c.payload,
)
# Any fixed number: runs creating the tables at the same moment take turns on this lock.
_SCHEMA_LOCK = 7_031_104_514


# Rows per insert when copying a ledger: a year of many ad accounts is millions of rows.
_COPY_BATCH = 5_000


class LedgerNotEmptyError(RuntimeError):
    """A ledger was to be copied over one that already holds events."""


class ConcurrentPlanError(RuntimeError):
    """Another run recorded events for the same ad-days between this run's reading and recording."""


class AmplitudeLedger:
    def __init__(self, url: URL, *, create: bool = True) -> None:
        """The ledger at ``url``, its table created if missing (``create=False``: a missing table is
        an error, for a ledger that must exist already)."""
        self.url = url
        self._engine = _engine(url)
        with self._engine.begin() as connection:
            if not create and not inspect(connection).has_table(EVENTS.name):
                raise FileNotFoundError(f"{url.database} holds no ledger (no {EVENTS.name} table)")
            if connection.dialect.name == "postgresql":
                # Two runs starting at once would both find no table, and one CREATE would fail.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            METADATA.create_all(connection)

    @contextmanager
    def planning(self, stat_date: date) -> Iterator[DayPlanning]:
        """One transaction for planning ``stat_date`` and recording the events planned: see the
        module's docstring. Leaving it with an exception records nothing."""
        with self._engine.begin() as connection:
            yield DayPlanning(
                connection,
                _recorded(connection, [stat_date], (PENDING, ACKNOWLEDGED)),
                _pending(connection, stat_date),
            )

    def acknowledge(self, insert_ids: Iterable[str]) -> None:
        """Amplitude answered 200 for these events: counted. Also over a rejection, which another
        run's copy of the same event may have received first."""
        now = _now()
        # In insert_id order, as every writer here: two runs acknowledging the same events (one
        # resending the other's) lock them in the same order, so neither waits on the other forever.
        params = [{"id": insert_id, "now": now} for insert_id in sorted(set(insert_ids))]
        if not params:
            return
        with self._engine.begin() as connection:
            connection.execute(
                EVENTS.update()
                .where(EVENTS.c.insert_id == bindparam("id"), EVENTS.c.status != ACKNOWLEDGED)
                .values(status=ACKNOWLEDGED, acknowledged_at=bindparam("now"), reason=None),
                params,
            )

    def reject(self, reasons: Mapping[str, str]) -> None:
        params = [{"id": insert_id, "why": reasons[insert_id]} for insert_id in sorted(reasons)]
        if not params:
            return
        with self._engine.begin() as connection:
            connection.execute(
                EVENTS.update()
                .where(EVENTS.c.insert_id == bindparam("id"), EVENTS.c.status == PENDING)
                .values(status=REJECTED, reason=bindparam("why")),
                params,
            )

    def pending(self) -> list[AdDayEvent]:
        """Events recorded but never acknowledged (a run stopped mid-upload), of any day, oldest first.

        Any day, not only the days being run: left pending until its own day is run again, an
        event might be resent after Amplitude's 7-day memory of its insert_id has lapsed.
        """
        with self._engine.connect() as connection:
            return _pending(connection)

    def counted(self, stat_dates: Iterable[date]) -> dict[AdDayKey, CountedAdDay]:
        """Per ad-day of these dates: the sum Amplitude counted, the next revision, the last payload."""
        with self._engine.connect() as connection:
            return _recorded(connection, stat_dates, (ACKNOWLEDGED,))

    def rows(self) -> list[dict[str, Any]]:
        """Every row as stored, by insert_id."""
        with self._engine.connect() as connection:
            return [
                dict(row._mapping) for row in connection.execute(select(EVENTS).order_by(EVENTS.c.insert_id))
            ]

    def copy_into(self, destination: AmplitudeLedger) -> int:
        """Copy every row into ``destination``, which must be empty; returns the number of rows.

        One transaction on the destination: a copy that fails leaves it empty, to be run again.
        """
        with destination._engine.begin() as target, self._engine.connect() as source:
            present = target.execute(select(func.count()).select_from(EVENTS)).scalar_one()
            if present:
                raise LedgerNotEmptyError(
                    f"the destination ledger already holds {present} events: refusing to copy over it. "
                    "What to do: copy into a new, empty database (or drop its amplitude_events table "
                    "if you are sure it holds nothing worth keeping)"
                )
            copied = 0
            rows = source.execution_options(yield_per=_COPY_BATCH).execute(
                select(EVENTS).order_by(EVENTS.c.insert_id)
            )
            for batch in rows.partitions():
                target.execute(EVENTS.insert(), [dict(row._mapping) for row in batch])
                copied += len(batch)
            return copied


class DayPlanning:
    """The inside of :meth:`AmplitudeLedger.planning`: what is recorded for the day, and recording."""

    def __init__(
        self, connection: Connection, recorded: dict[AdDayKey, CountedAdDay], pending: list[AdDayEvent]
    ) -> None:
        self._connection = connection
        # Per ad-day: the sum of its pending and acknowledged events, what Amplitude will have counted.
        self.recorded = recorded
        # The day's events recorded earlier and not acknowledged yet (another run's, or a dead one's).
        self.pending = pending

    def record_pending(self, events: Iterable[AdDayEvent]) -> None:
        """Write events as pending before they are sent. A rejected event may be planned again (its
        row is replaced); an event another run recorded meanwhile raises ConcurrentPlanError."""
        now = _now()
        rows = [
            {
                "insert_id": event.insert_id,
                "advertiser_id": event.advertiser_id,
                "ad_id": event.ad_id,
                "stat_date": event.stat_date.isoformat(),
                "revision": event.revision,
                "cost": str(event.totals.cost),
                "impressions": event.totals.impressions,
                "clicks": event.totals.clicks,
                "conversions": event.totals.conversions,
                "status": PENDING,
                "payload": dump_json(event.payload).decode("utf-8"),
                "recorded_at": now,
            }
            for event in sorted(events, key=lambda event: event.insert_id)  # see acknowledge()
        ]
        if not rows:
            return
        self._connection.execute(
            EVENTS.delete().where(EVENTS.c.insert_id == bindparam("id"), EVENTS.c.status == REJECTED),
            [{"id": row["insert_id"]} for row in rows],
        )
        try:
            self._connection.execute(EVENTS.insert(), rows)
        except IntegrityError:
            raise ConcurrentPlanError(
                "another run recorded events for the same ad-days while this one was planning them"
            ) from None


def _recorded(
    connection: Connection, stat_dates: Iterable[date], statuses: tuple[str, ...]
) -> dict[AdDayKey, CountedAdDay]:
    counted: dict[AdDayKey, CountedAdDay] = {}
    days = sorted({day.isoformat() for day in stat_dates})
    if not days:
        return counted
    query = (
        select(*_AD_DAY_COLUMNS)
        .where(EVENTS.c.status.in_(statuses), EVENTS.c.stat_date.in_(days))
        .order_by(EVENTS.c.revision)
    )
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
    ) in connection.execute(query):
        key = (advertiser_id, ad_id, date.fromisoformat(stat_date))
        totals = MetricTotals(Decimal(cost), impressions, clicks, conversions)
        before = counted.get(key)
        if before is not None:
            totals = before.totals + totals
        counted[key] = CountedAdDay(totals, revision + 1, payload)
    return counted


def _pending(connection: Connection, stat_date: date | None = None) -> list[AdDayEvent]:
    """Pending events of ``stat_date`` (of every day if None), oldest first."""
    query = select(EVENTS.c.insert_id, *_AD_DAY_COLUMNS).where(EVENTS.c.status == PENDING)
    if stat_date is not None:
        query = query.where(EVENTS.c.stat_date == stat_date.isoformat())
    query = query.order_by(EVENTS.c.recorded_at, EVENTS.c.insert_id)
    return [_ad_day_event(row) for row in connection.execute(query)]


def _engine(url: URL) -> Engine:
    """An engine without a pool: a connection per transaction, none left open between them (a
    transaction comes every few seconds at most, one request's acknowledgement)."""
    if url.get_backend_name() != "sqlite":
        return create_engine(
            url,
            poolclass=NullPool,
            connect_args={"connect_timeout": 30},
            # Acknowledging a request's 2,000 events: pages of UPDATEs in a few round trips, not
            # one round trip per event (seconds per request to a database across a network).
            executemany_mode="values_plus_batch",
            executemany_batch_page_size=500,
        )
    assert url.database is not None
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # a new ledger's folder
    engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 60.0})

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN (below), not the sqlite3 module, which would defer it to the
        # first write and let a read see another run's commit in the middle of a transaction.
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledgement is on disk before the next request goes out.
        dbapi_connection.execute("PRAGMA synchronous=FULL")

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # The write lock from the start: planning reads, then writes, with no one writing between.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _ad_day_event(row: Any) -> AdDayEvent:
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
