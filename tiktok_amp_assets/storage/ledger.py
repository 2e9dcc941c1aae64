"""The ledger of what Amplitude has counted, per ad-day: the project's memory against double counting.

Amplitude forgets an ``insert_id`` after 7 days, so de-duplication alone cannot stop a re-run of an
old day from counting it twice. The ledger records every event before it is sent (``pending``) and
marks it ``acknowledged`` in the same breath as Amplitude's 200, in a committed transaction. A re-run
resends pending events unchanged (same ``insert_id``, same payload, so Amplitude drops it if it had
counted it) and sends new events only for what the ledger has not recorded.

One code path (SQLAlchemy Core) serves both databases: a SQLite file in a local data folder, or
PostgreSQL for runs on many machines (``storage/locations.py``).

**Many runs at once.** A day is planned against what is *recorded* for it (:meth:`day_record`, one
consistent read), pending events included: an event another run has recorded is one Amplitude will
count (that run or the next one sends it), so it is never planned twice. Every planned event is a
new revision of its ad-day, the one after the last recorded, and its ``insert_id``, derived from ad
account, ad, day and revision, is the table's primary key. So a plan made from a state another run
has changed since is refused as a whole when recorded (:meth:`record_pending`, one transaction):
that run recorded the same revision of some ad-day first, or, if it changed none this plan touches,
this plan is still right for each ad-day it touches. (PostgreSQL makes the second insert wait for
the first transaction, then refuses it; SQLite's writers take turns.) The loser gets
:class:`ConcurrentPlanError` and plans the day again from what the winner recorded. No lock is held
while a day is planned or while events are sent: a run's acknowledgements never wait for its
planning of the next day.

**Per Amplitude project.** Amplitude keeps data per project, and two connections may import the same
ad account into two projects (or, sharing a project's name, into one): every row belongs to an
``amplitude_project`` (a stable name, not the API key, so a new key resends nothing), and an event's
key is (project, insert_id). An instance of :class:`AmplitudeLedger` reads and writes one project's
rows. The schema carries a version (``ledger_schema``); a ledger from before projects (version 1:
``amplitude_events`` keyed by insert_id alone) is migrated when first opened, its rows given to the
project ``tiktok_ads`` (the default connection's), in the transaction that holds the schema lock.

**Lean rows.** An event is kept whole, to be resent exactly or corrected later, but not as one JSON
text per event: an ad's description (ids, names, UTMs, device: two thirds of an event) is stored once
in ``amplitude_event_descriptions``, keyed by its digest, and each event row holds only its own part
(day, time, figures, revision) and that digest (``core/events.py``: ``split_event``). A year of
2,000 ads takes a fraction of the space whole payloads would (bench/RESULTS.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError

from tiktok_amp_assets.connection import DEFAULT_CONNECTION
from tiktok_amp_assets.core.events import joined_event, split_event
from tiktok_amp_assets.core.json_codec import dump_json, load_json
from tiktok_amp_assets.core.metric_values import MetricTotals
from tiktok_amp_assets.core.upload_plan import AdDayEvent, AdDayKey, CountedAdDay
from tiktok_amp_assets.storage.locations import LEDGER_URL_VAR, StorageConfigurationError

PENDING = "pending"
ACKNOWLEDGED = "acknowledged"
REJECTED = "rejected"
STATUSES = (PENDING, ACKNOWLEDGED, REJECTED)

# Version 1: amplitude_events keyed by insert_id (before connections); 2: ledger_events, by project.
SCHEMA_VERSION = 2
# The project of every row of a version-1 ledger: the one connection there was.
LEGACY_PROJECT = DEFAULT_CONNECTION
LEGACY_EVENTS = "amplitude_events"

METADATA = MetaData()
SCHEMA = Table("ledger_schema", METADATA, Column("version", Integer, nullable=False))
EVENTS = Table(
    "ledger_events",
    METADATA,
    Column("amplitude_project", Text, primary_key=True),
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
    # The event's own part (JSON): core.events.split_event's second part.
    Column("payload", Text, nullable=False),
    Column("recorded_at", Text, nullable=False),
    Column("acknowledged_at", Text),
    # The digest of its ad's description in DESCRIPTIONS.
    Column("description", Text, nullable=False),
    CheckConstraint(f"status IN {STATUSES!r}", name="ledger_events_status"),
    Index("ledger_events_by_day", "amplitude_project", "stat_date", "status"),
)
DESCRIPTIONS = Table(
    "amplitude_event_descriptions",
    METADATA,
    Column("digest", Text, primary_key=True),
    Column("description", Text, nullable=False),  # JSON: core.events.split_event's first part
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
)
# Any fixed number: runs creating the tables at the same moment take turns on this lock.
_SCHEMA_LOCK = 7_031_104_514


# Rows per insert when copying a ledger: a year of many ad accounts is millions of rows.
_COPY_BATCH = 5_000
# Ids per statement when updating or reading events by id: under SQLite's oldest limit of 999
# parameters, and one statement for a request's events rather than one per event.
_IDS_PER_STATEMENT = 900
# Hex characters of a description's sha256 kept as its key: 128 bits, no collision in any ledger.
_DIGEST_CHARS = 32
# Execution option of the ledger's read-only transactions.
_READ_ONLY = "tiktok_amp_read_only"


class LedgerNotEmptyError(RuntimeError):
    """A ledger was to be copied over one that already holds events."""


class ConcurrentPlanError(RuntimeError):
    """Another run recorded events for the same ad-days between this run's reading and recording."""


@dataclass(frozen=True)
class DayRecord:
    """What the ledger holds for one day, read at one moment (:meth:`AmplitudeLedger.day_record`)."""

    # Per ad-day: the sum of its pending and acknowledged events, what Amplitude will have counted.
    recorded: dict[AdDayKey, CountedAdDay]
    # The day's events recorded earlier and not acknowledged yet (another run's, or a dead one's).
    pending: list[AdDayEvent]


class AmplitudeLedger:
    def __init__(self, url: URL, *, create: bool = True, amplitude_project: str = DEFAULT_CONNECTION) -> None:
        """The ledger at ``url`` as seen by ``amplitude_project``, its tables created or migrated if
        needed (``create=False``: a database without a ledger is an error, for one that must exist)."""
        self.url = url
        self.amplitude_project = amplitude_project
        self._engine = _engine(url)
        try:
            with self._engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    _require_utf8(connection, url)
                    # Two runs starting at once would both find no table, and one CREATE would fail;
                    # two would both migrate.
                    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
                tables = inspect(connection)
                if not create and not (tables.has_table(EVENTS.name) or tables.has_table(LEGACY_EVENTS)):
                    raise FileNotFoundError(f"{url.database} holds no ledger (no {EVENTS.name} table)")
                _create_or_migrate(connection)
        except BaseException:
            self._engine.dispose()  # a refused ledger keeps no connection open
            raise
        # Digests of descriptions known to be stored (committed): each is written once per run.
        self._stored_descriptions: set[str] = set()

    def close(self) -> None:
        """Close the pooled connections (SQLite: the last one to close folds the write-ahead log into
        the database file and removes it). The ledger stays usable: a later call connects again."""
        self._engine.dispose()

    def day_record(self, stat_date: date) -> DayRecord:
        """What is recorded for ``stat_date``, read at one moment: what to plan against."""
        with self._reading() as connection:
            return DayRecord(
                _recorded(connection, self.amplitude_project, stat_date),
                _pending(connection, self.amplitude_project, stat_date),
            )

    def record_pending(self, events: Iterable[AdDayEvent]) -> None:
        """Write events as pending before they are sent, all or none. A rejected event may be planned
        again (its row is replaced); if another run recorded one of them since the plan's
        :meth:`day_record`, nothing is written and ConcurrentPlanError is raised."""
        now = _now()
        rows = []
        descriptions: dict[str, str] = {}
        for ad_day_event in sorted(events, key=lambda event: event.insert_id):  # see acknowledge()
            description, own = split_event(ad_day_event.payload)
            description_json = dump_json(description)
            digest = hashlib.sha256(description_json).hexdigest()[:_DIGEST_CHARS]
            if digest not in self._stored_descriptions:
                descriptions[digest] = description_json.decode("utf-8")
            rows.append(
                {
                    "amplitude_project": self.amplitude_project,
                    "insert_id": ad_day_event.insert_id,
                    "advertiser_id": ad_day_event.advertiser_id,
                    "ad_id": ad_day_event.ad_id,
                    "stat_date": ad_day_event.stat_date.isoformat(),
                    "revision": ad_day_event.revision,
                    "cost": str(ad_day_event.totals.cost),
                    "impressions": ad_day_event.totals.impressions,
                    "clicks": ad_day_event.totals.clicks,
                    "conversions": ad_day_event.totals.conversions,
                    "status": PENDING,
                    "payload": dump_json(own).decode("utf-8"),
                    "recorded_at": now,
                    "description": digest,
                }
            )
        if not rows:
            return
        replace_rejected = EVENTS.delete().where(
            self._mine(),
            EVENTS.c.insert_id.in_(bindparam("ids", expanding=True)),
            EVENTS.c.status == REJECTED,
        )
        with self._engine.begin() as connection:
            if descriptions:
                # Another run may store the same description at the same moment: the text is the same.
                connection.execute(
                    _insert_new(connection, DESCRIPTIONS),
                    [
                        {"digest": digest, "description": text}
                        for digest, text in sorted(descriptions.items())
                    ],
                )
            for chunk in _chunks([row["insert_id"] for row in rows]):
                connection.execute(replace_rejected, {"ids": chunk})
            try:
                connection.execute(EVENTS.insert(), rows)
            except IntegrityError:
                raise ConcurrentPlanError(
                    "another run recorded events for the same ad-days while this one was planning them"
                ) from None
        self._stored_descriptions |= descriptions.keys()  # committed

    def acknowledge(self, insert_ids: Iterable[str]) -> None:
        """Amplitude answered 200 for these events: counted. Also over a rejection, which another
        run's copy of the same event may have received first."""
        now = _now()
        # In insert_id order, as every writer here: two runs acknowledging the same events (one
        # resending the other's) lock them in the same order, so neither waits on the other forever.
        ids = sorted(set(insert_ids))
        if not ids:
            return
        update = (
            EVENTS.update()
            .where(
                self._mine(),
                EVENTS.c.insert_id.in_(bindparam("ids", expanding=True)),
                EVENTS.c.status != ACKNOWLEDGED,
            )
            .values(status=ACKNOWLEDGED, acknowledged_at=now, reason=None)
        )
        with self._engine.begin() as connection:
            for chunk in _chunks(ids):
                connection.execute(update, {"ids": chunk})

    def reject(self, reasons: Mapping[str, str]) -> None:
        params = [{"id": insert_id, "why": reasons[insert_id]} for insert_id in sorted(reasons)]
        if not params:
            return
        with self._engine.begin() as connection:
            connection.execute(
                EVENTS.update()
                .where(self._mine(), EVENTS.c.insert_id == bindparam("id"), EVENTS.c.status == PENDING)
                .values(status=REJECTED, reason=bindparam("why")),
                params,
            )

    def pending(self) -> list[AdDayEvent]:
        """Events recorded but never acknowledged (a run stopped mid-upload), of any day, oldest first.

        Any day, not only the days being run: left pending until its own day is run again, an
        event might be resent after Amplitude's 7-day memory of its insert_id has lapsed.
        """
        with self._reading() as connection:
            return _pending(connection, self.amplitude_project)

    def counted(self, stat_dates: Iterable[date]) -> dict[AdDayKey, MetricTotals]:
        """Per ad-day of these dates: the sum of what Amplitude counted (acknowledged events)."""
        days = sorted({day.isoformat() for day in stat_dates})
        counted: dict[AdDayKey, MetricTotals] = {}
        dates = {text: date.fromisoformat(text) for text in days}
        query = select(*_AD_DAY_COLUMNS).where(
            self._mine(), EVENTS.c.status == ACKNOWLEDGED, EVENTS.c.stat_date.in_(days)
        )
        # Lean on purpose: every finished day of a backfill reads all its ad-days back.
        with self._reading() as connection:
            for (
                advertiser_id,
                ad_id,
                stat_date,
                _,
                cost,
                impressions,
                clicks,
                conversions,
            ) in connection.execute(query):
                key = (advertiser_id, ad_id, dates[stat_date])
                totals = MetricTotals(Decimal(cost), impressions, clicks, conversions)
                before = counted.get(key)
                counted[key] = totals if before is None else before + totals
        return counted

    def rows(self) -> list[dict[str, Any]]:
        """Every event row as stored, of every project, by project and insert_id."""
        with self._reading() as connection:
            query = select(EVENTS).order_by(EVENTS.c.amplitude_project, EVENTS.c.insert_id)
            return [dict(row._mapping) for row in connection.execute(query)]

    def _mine(self) -> Any:
        return EVENTS.c.amplitude_project == self.amplitude_project

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        """A read-only transaction: one consistent view, and (SQLite) no wait for a writer."""
        with self._engine.connect() as connection:
            yield connection.execution_options(**{_READ_ONLY: True})

    def copy_into(self, destination: AmplitudeLedger) -> int:
        """Copy every row into ``destination``, which must be empty; returns the number of rows.

        One transaction on the destination: a copy that fails leaves it empty, to be run again.
        """
        with destination._engine.begin() as target, self._reading() as source:
            present = target.execute(select(func.count()).select_from(EVENTS)).scalar_one()
            if present:
                raise LedgerNotEmptyError(
                    f"the destination ledger already holds {present} events: refusing to copy over it. "
                    "What to do: copy into a new, empty database (or drop its ledger_events table "
                    "if you are sure it holds nothing worth keeping)"
                )
            copied = 0
            events_order = (EVENTS.c.amplitude_project, EVENTS.c.insert_id)
            for table, order in ((DESCRIPTIONS, (DESCRIPTIONS.c.digest,)), (EVENTS, events_order)):
                rows = source.execution_options(yield_per=_COPY_BATCH).execute(select(table).order_by(*order))
                for batch in rows.partitions():
                    # Descriptions a failed earlier copy left are the same texts: kept as they are.
                    target.execute(_insert_new(target, table), [dict(row._mapping) for row in batch])
                    copied += len(batch) if table is EVENTS else 0
            return copied


def _recorded(connection: Connection, project: str, stat_date: date) -> dict[AdDayKey, CountedAdDay]:
    """Per ad-day of ``stat_date``: the sum of its pending and acknowledged events, its next revision
    and its last event (for a removal correction)."""
    query = (
        select(*_AD_DAY_COLUMNS, EVENTS.c.payload, EVENTS.c.description)
        .where(
            EVENTS.c.amplitude_project == project,
            EVENTS.c.status.in_((PENDING, ACKNOWLEDGED)),
            EVENTS.c.stat_date == stat_date.isoformat(),
        )
        .order_by(EVENTS.c.revision)
    )
    # Per ad-day: the sum so far, the next revision, and the last event's own part and description.
    ad_days: dict[AdDayKey, tuple[MetricTotals, int, str, str]] = {}
    for row in connection.execute(query):
        advertiser_id, ad_id, _, revision, cost, impressions, clicks, conversions, payload, digest = row
        key = (advertiser_id, ad_id, stat_date)
        totals = MetricTotals(Decimal(cost), impressions, clicks, conversions)
        before = ad_days.get(key)
        ad_days[key] = (totals if before is None else before[0] + totals, revision + 1, payload, digest)
    texts = _descriptions(connection, {digest for *_, digest in ad_days.values()})
    return {
        key: CountedAdDay(totals, next_revision, payload, texts[digest])
        for key, (totals, next_revision, payload, digest) in ad_days.items()
    }


def _pending(connection: Connection, project: str, stat_date: date | None = None) -> list[AdDayEvent]:
    """Pending events of ``project`` on ``stat_date`` (of every day if None), oldest first, whole."""
    query = select(EVENTS.c.insert_id, *_AD_DAY_COLUMNS, EVENTS.c.payload, EVENTS.c.description).where(
        EVENTS.c.amplitude_project == project, EVENTS.c.status == PENDING
    )
    if stat_date is not None:
        query = query.where(EVENTS.c.stat_date == stat_date.isoformat())
    rows = connection.execute(query.order_by(EVENTS.c.recorded_at, EVENTS.c.insert_id)).all()
    texts = {
        digest: load_json(text)
        for digest, text in _descriptions(connection, {row.description for row in rows}).items()
    }
    return [_ad_day_event(row, texts[row.description]) for row in rows]


def _descriptions(connection: Connection, digests: set[str]) -> dict[str, str]:
    """The descriptions stored under ``digests``, as JSON texts."""
    texts: dict[str, str] = {}
    query = select(DESCRIPTIONS.c.digest, DESCRIPTIONS.c.description).where(
        DESCRIPTIONS.c.digest.in_(bindparam("digests", expanding=True))
    )
    for chunk in _chunks(sorted(digests)):
        texts.update((digest, text) for digest, text in connection.execute(query, {"digests": chunk}))
    return texts


def _create_or_migrate(connection: Connection) -> None:
    """Bring the ledger's tables to :data:`SCHEMA_VERSION`, in the caller's transaction (which holds
    the schema lock): created when missing; a version-1 ledger's events copied into the new table,
    all for :data:`LEGACY_PROJECT`, and the old table dropped, all or nothing."""
    METADATA.create_all(connection)
    version = connection.execute(select(func.max(SCHEMA.c.version))).scalar()
    if version == SCHEMA_VERSION:
        return
    if version is not None and version > SCHEMA_VERSION:
        raise StorageConfigurationError(
            f"the ledger's schema is version {version}, newer than this tiktok-amp-assets knows "
            f"({SCHEMA_VERSION}): upgrade tiktok-amp-assets everywhere runs execute before running it"
        )
    if inspect(connection).has_table(LEGACY_EVENTS):
        columns = ", ".join(column.name for column in EVENTS.columns if column.name != "amplitude_project")
        connection.execute(
            text(
                f"INSERT INTO {EVENTS.name} (amplitude_project, {columns}) "
                f"SELECT :project, {columns} FROM {LEGACY_EVENTS}"
            ),
            {"project": LEGACY_PROJECT},
        )
        connection.execute(text(f"DROP TABLE {LEGACY_EVENTS}"))
    connection.execute(SCHEMA.delete())
    connection.execute(SCHEMA.insert().values(version=SCHEMA_VERSION))


def _require_utf8(connection: Connection, url: URL) -> None:
    """Refuses a PostgreSQL database whose encoding is not UTF8. Ad, campaign and account names
    are any Unicode text; in a SQL_ASCII database (what initdb makes in the C locale, unless given
    --encoding=UTF8) psycopg2 encodes them as ASCII and the first en dash fails a run's recording
    with a UnicodeEncodeError, after its events were planned."""
    encoding = connection.execute(text("SHOW server_encoding")).scalar()
    if encoding == "UTF8":
        return
    database = url.database or "the ledger's database"
    raise StorageConfigurationError(
        f"the ledger's PostgreSQL database {database!r} on {url.host}:{url.port or 5432} is encoded "
        f"{encoding}, and the ledger needs UTF8 (ad and campaign names are any Unicode text). Create "
        f"a UTF8 database and point {LEDGER_URL_VAR} at it: CREATE DATABASE {database} ENCODING 'UTF8' "
        "LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0; (a server initialised with "
        "initdb --encoding=UTF8 makes UTF8 databases by default)"
    )


def _insert_new(connection: Connection, table: Table) -> Any:
    """An insert of ``table`` rows that leaves a row whose key is already stored as it is."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _IDS_PER_STATEMENT):
        yield list(ids[start : start + _IDS_PER_STATEMENT])


def _engine(url: URL) -> Engine:
    """Pooled connections, closed by :meth:`AmplitudeLedger.close` at the end of an upload.

    PostgreSQL: a backfill's process makes a few transactions a second (a day's reading and
    recording, a request's acknowledgement), and a new connection costs a password exchange and a
    server process each time, and across a network round trips too. A few connections stay open
    while the upload runs;
    each is checked with a round trip before use, so a connection the server or a proxy dropped
    meanwhile is replaced, not failed on. SQLite: closing the last connection checkpoints the WAL
    into the database (a file write and an fsync per transaction otherwise); an idle connection
    holds no lock."""
    if url.get_backend_name() != "sqlite":
        return create_engine(
            url,
            pool_size=2,  # a run's process uses two at once: the step's and a planning thread's
            max_overflow=2,
            pool_pre_ping=True,
            pool_recycle=300,  # under the idle time-outs proxies and managed databases commonly set
            connect_args={"connect_timeout": 30},
            # Acknowledging a request's 2,000 events: pages of UPDATEs in a few round trips, not
            # one round trip per event (seconds per request to a database across a network).
            executemany_mode="values_plus_batch",
            executemany_batch_page_size=500,
        )
    assert url.database is not None
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)  # a new ledger's folder
    engine = create_engine(url, connect_args={"timeout": 60.0})

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
        if connection.get_execution_options().get(_READ_ONLY):
            # A snapshot of the WAL: readers and the writer never wait for each other.
            connection.exec_driver_sql("BEGIN DEFERRED")
        else:
            # The write lock from the start: a writer waits here for another one (busy timeout),
            # never fails halfway because another wrote since its first read.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _ad_day_event(row: Any, description: dict[str, Any]) -> AdDayEvent:
    insert_id, advertiser_id, ad_id, stat_date, revision, cost, impressions, clicks, conversions = row[:9]
    return AdDayEvent(
        insert_id=insert_id,
        advertiser_id=advertiser_id,
        ad_id=ad_id,
        stat_date=date.fromisoformat(stat_date),
        revision=revision,
        totals=MetricTotals(
            cost=Decimal(cost), impressions=impressions, clicks=clicks, conversions=conversions
        ),
        payload=joined_event(description, load_json(row.payload)),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
