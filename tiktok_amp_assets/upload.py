"""Uploading a range of days to Amplitude: plan against the ledger, send, record, report per day.

A pipeline of two stages and the step (``pipeline.py``): planning (read a day's metrics, compare
them with the ledger, record the events as pending) -> sending (whole requests of 2,000 events,
spanning days) -> recording Amplitude's answers in the ledger and finishing days, in the step's own
thread. So a year costs as few requests as its events need, memory holds a few days' events however
many days, and each stage works while the next one waits for its database or for Amplitude.

A day is finished (its results file written, handed to the step) once every one of its events has
been answered and the answers are recorded in the ledger; until then it keeps only its ad-days'
totals, not its rows. Days finish in order. A long range is planned in a process of its own (two
with a database server's ledger), since planning and sending each hold the GIL most of their time;
a short one (a daily run) in a thread, where a process's start would cost more than it saves.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from tiktok_amp_assets.clients.amplitude import AmplitudeClient, Delivery
from tiktok_amp_assets.core.ad_metrics import imported_accounts, table_rows
from tiktok_amp_assets.core.metric_values import MetricTotals
from tiktok_amp_assets.core.reconciliation import Mismatch, undelivered_ad_days
from tiktok_amp_assets.core.upload_plan import (
    AdDayEvent,
    AdDayKey,
    PlannedEvent,
    RestatementPolicy,
    plan_events,
)
from tiktok_amp_assets.core.upload_report import DayUploadReport, event_stat_date, record_counts
from tiktok_amp_assets.pipeline import stage
from tiktok_amp_assets.storage.import_store import ImportStore
from tiktok_amp_assets.storage.ledger import AmplitudeLedger, ConcurrentPlanError

# A loser re-plans from what the winner recorded; only a day planned by many runs at once loses often.
MAX_PLANNING_ATTEMPTS = 20
# Days from which a planning process pays for its start (bench/RESULTS.md: planning's share of the
# GIL against a process's start).
PLANNING_PROCESS_FROM_DAYS = 60
# Days planned ahead of the one being sent: bounds memory to a few days.
_PLANNED_DAYS_AHEAD = 5
# Messages the sending stage runs ahead of the recording of answers.
_SENT_AHEAD = 2


@dataclass(frozen=True)
class PlannedDay:
    """A day planned (and its events recorded as pending) by the planning stage."""

    day: date
    current: dict[AdDayKey, MetricTotals]  # TikTok's figures per ad-day
    recorded: dict[AdDayKey, MetricTotals]  # what the ledger held for the day when it was planned
    planned: list[PlannedEvent]
    # Events of the day another run recorded and has not had acknowledged: sent again by this run.
    pending: list[AdDayEvent]
    replans: int = 0  # times another run recorded some of its ad-days first, and it was planned again

    def to_send(self) -> list[AdDayEvent]:
        return [*self.pending, *(event.ad_day_event for event in self.planned)]


@dataclass(frozen=True)
class FinishedDay:
    report: DayUploadReport
    results: dict[str, Any]
    path: str
    undelivered: list[Mismatch]


class DayPlanner:
    """Plans days against the ledger and records their events as pending, ahead of the sending:
    in the planning stage's thread or process (module docstring)."""

    def __init__(self, store: ImportStore, *, policy: RestatementPolicy, sending: bool) -> None:
        self._store = store
        self._ledger = store.ledger()
        self._policy = policy
        self._sending = sending  # False: a dry run, nothing recorded
        self._shared_texts: dict[str, str] = {}

    def close(self) -> None:
        self._ledger.close()

    def plan(self, day: date) -> PlannedDay:
        """Plan ``day`` against what the ledger recorded and record the events: if another run
        uploading the same day recorded some of the same ad-days meanwhile, the recording is refused
        and the day planned again (``storage/ledger.py``), so no ad-day is planned twice.

        What to send for the day: the events planned, after those of the day another run recorded
        and has not had acknowledged yet. Sending those again is safe (same insert_id, same payload:
        Amplitude counts them once) and means this run leaves the day answered in full, whether the
        other run is still sending them or died."""
        for attempt in range(1, MAX_PLANNING_ATTEMPTS + 1):
            # Read again on each attempt: the run that won may have read newer figures.
            table = self._store.read_ad_metrics(day)
            imported = imported_accounts(table)
            rows = table_rows(table, shared_texts=self._shared_texts)
            record = self._ledger.day_record(day)
            planned = plan_events(
                rows, record.recorded, [day], policy=self._policy, imported_accounts=imported
            )
            if not self._sending:
                break
            try:
                # Recorded before sending: a crash from here on leaves them pending, to be resent as
                # they are (by this run's queue, or by the next run).
                self._ledger.record_pending(event.ad_day_event for event in planned)
                break
            except ConcurrentPlanError:
                if attempt == MAX_PLANNING_ATTEMPTS:
                    raise ConcurrentPlanError(
                        f"{day}: another run recorded events for this day each of the "
                        f"{MAX_PLANNING_ATTEMPTS} times this run planned it. What to do: run the day "
                        "again once the other runs of it have finished"
                    ) from None
        # A planned event's ``after`` is its ad-day's current figures: the same object serves both,
        # so a planning process sends it once (pickle keeps shared objects shared).
        current = {event.ad_day_event.ad_day: event.after for event in planned if event.kind != "removal"}
        for row in rows:
            key = (row.advertiser_id, row.ad_id, row.stat_date)
            if key not in current:
                current[key] = row.totals()
        if imported is not None:
            # An account not imported this day: what Amplitude counted stands until it is.
            for key, ad_day in record.recorded.items():
                if key[0] not in imported:
                    current.setdefault(key, ad_day.totals)
        return PlannedDay(
            day,
            current=current,
            recorded={key: ad_day.totals for key, ad_day in record.recorded.items()},
            planned=planned,
            pending=record.pending if self._sending else [],
            replans=attempt - 1,
        )


@dataclass(frozen=True)
class Sent:
    """What the sending stage hands on, in order: a day planned (its events queued) or a request
    answered, and how far the days are answered."""

    # The first day with events not answered yet: every planned day before it (all, when None) has
    # every event answered.
    waiting_from: date | None
    planned: PlannedDay | None = None
    delivery: Delivery | None = None


class DayUploader:
    def __init__(
        self,
        store: ImportStore,
        client: AmplitudeClient | None,
        *,
        policy: RestatementPolicy,
        logger: logging.Logger | Any,
    ) -> None:
        self._store = store
        self._ledger: AmplitudeLedger = store.ledger()
        self._client = client  # None: dry run
        self._policy = policy
        self._log = logger
        self._reports: dict[date, DayUploadReport] = {}
        # Per day not yet finished: TikTok's current figures per ad-day, and what Amplitude had counted.
        self._current: dict[date, dict[AdDayKey, MetricTotals]] = {}
        self._counted_before: dict[AdDayKey, MetricTotals] = {}

    def upload(self, days: Sequence[date]) -> Iterator[FinishedDay]:
        """Upload ``days`` (sorted); yields each day as soon as it is finished (module docstring)."""
        try:
            if self._client is not None:
                # Before anything is planned: the days' plans then see these events answered.
                pending = self._pending_to_resend(set(days))
                for delivery in self._client.send([event.payload for event in pending]) if pending else ():
                    self._record(delivery)
            sent = stage(functools.partial(self._send, days[-1]), self._planned(days), depth=_SENT_AHEAD)
            with closing(sent):  # the stages stop with the upload, also when it fails
                built = 0
                for message in sent:
                    if message.planned is not None:
                        built += self._open(message.planned)
                    if message.delivery is not None:
                        self._record(message.delivery)
                    waiting_from = message.waiting_from
                    yield from self._finish(
                        [day for day in sorted(self._current) if waiting_from is None or day < waiting_from]
                    )
            if self._client is None:
                self._log.info("dry run: %d events built for %s..%s, none sent", built, days[0], days[-1])
        finally:
            self._ledger.close()

    def _planned(self, days: Sequence[date]) -> Iterator[PlannedDay]:
        """The planning stage (module docstring)."""
        processes = 0
        if len(days) >= PLANNING_PROCESS_FROM_DAYS and (os.cpu_count() or 1) > 1:
            # A server's ledger (PostgreSQL) makes each day's planning wait for its transactions,
            # and a second process plans another day meanwhile; SQLite's transactions are CPU work
            # on the same cores, where a second process only competes (bench/RESULTS.md).
            processes = 1 if self._ledger.url.get_backend_name() == "sqlite" else 2
        work = functools.partial(plan_days, self._store, self._policy, self._client is not None)
        return stage(work, days, depth=_PLANNED_DAYS_AHEAD, processes=processes)

    def _send(self, last_day: date, planned_days: Iterable[PlannedDay]) -> Iterator[Sent]:
        """The sending stage: each planned day's events in whole requests; the rest waits for the
        next day's events, except after the last day. Each answer is handed on as it comes, so that
        it is recorded while the next request goes out."""
        queue: list[AdDayEvent] = []
        for planned in planned_days:
            if self._client is not None:
                queue.extend(planned.to_send())
            # The queue holds days in order: every planned day before its first is answered in full.
            yield Sent(queue[0].stat_date if queue else None, planned=planned)
            if self._client is None or not queue:
                continue
            whole = len(queue) - len(queue) % self._client.max_events
            cut, queue = (queue, []) if planned.day == last_day else (queue[:whole], queue[whole:])
            if cut:
                for delivery in self._client.send([event.payload for event in cut]):
                    yield Sent(cut[0].stat_date, delivery=delivery)
                yield Sent(queue[0].stat_date if queue else None)

    def _pending_to_resend(self, days: set[date]) -> list[AdDayEvent]:
        """Events recorded by a run that stopped mid-upload go out again unchanged, before anything
        new: Amplitude drops them if it had counted them (same insert_id), counts them if not."""
        pending = self._ledger.pending()
        if pending:
            self._log.warning("resending %d events left unacknowledged by an interrupted run", len(pending))
        for event in pending:
            if event.stat_date in days:
                self._reports.setdefault(
                    event.stat_date, DayUploadReport(event.stat_date)
                ).resent_pending += 1
        return pending

    def _open(self, planned: PlannedDay) -> int:
        """A planned day's report and figures, kept until it is finished; the events it planned."""
        if planned.replans:
            self._log.info(
                "%s: planned %d more times, another run recorded events for it meanwhile",
                planned.day,
                planned.replans,
            )
        report = self._reports.setdefault(planned.day, DayUploadReport(planned.day))
        report.planned.extend(planned.planned)
        report.resent_pending += len(planned.pending)
        self._current[planned.day] = planned.current
        self._counted_before.update(planned.recorded)
        return len(planned.planned)

    def _record(self, delivery: Delivery) -> None:
        """Amplitude's answers into the ledger, then into the days' reports. A crash before they are
        recorded leaves those events pending, and the next run resends them under the same
        insert_id, which Amplitude drops if it counted them."""
        self._ledger.acknowledge(event["insert_id"] for event in delivery.accepted)
        self._ledger.reject({rejected.insert_id: rejected.reason for rejected in delivery.rejected})
        events_per_day: dict[date, int] = defaultdict(int)
        for event in delivery.accepted:
            day = event_stat_date(event)
            events_per_day[day] += 1
            if day in self._reports:
                self._reports[day].accepted.add(event["insert_id"])
        for rejected in delivery.rejected:
            day = event_stat_date(rejected.event)
            events_per_day[day] += 1
            if day in self._reports:
                self._reports[day].rejected[rejected.insert_id] = rejected.reason
        # Parked events stay pending in the ledger: the next run resends them first.
        for parked in delivery.parked:
            day = event_stat_date(parked.event)
            events_per_day[day] += 1
            if day in self._reports:
                self._reports[day].parked[parked.insert_id] = parked.reason
        records = [asdict(record) for record in delivery.requests]
        for day, count in events_per_day.items():
            if day in self._reports:
                self._reports[day].requests.extend(
                    {**record, "events_of_this_day": count} for record in records
                )

    def _finish(self, days: list[date]) -> Iterator[FinishedDay]:
        if not days:
            return
        counted_after = self._ledger.counted(days)
        reports = {day: self._reports.pop(day) for day in days}
        before = {key: value for key, value in self._counted_before.items() if key[2] in reports}
        record_counts(reports, before, counted_after)
        current = {key: totals for day in days for key, totals in self._current.pop(day, {}).items()}
        undelivered: dict[date, list[Mismatch]] = defaultdict(list)
        if self._client is not None:
            for mismatch in undelivered_ad_days(current, counted_after, days):
                # freeze keeps counted days as first imported: only a never-counted ad-day is a loss.
                key = (mismatch.advertiser_id, mismatch.ad_id, mismatch.stat_date)
                if self._policy == "correct" or key not in counted_after:
                    undelivered[mismatch.stat_date].append(mismatch)
        for day, report in reports.items():
            results = report.results(
                endpoint=self._client.path if self._client else None, policy=self._policy
            )
            path = self._store.write_upload_results(day, results)
            yield FinishedDay(report, results, str(path), undelivered[day])
        for key in list(before):
            del self._counted_before[key]


def plan_days(
    store: ImportStore, policy: RestatementPolicy, sending: bool, days: Iterable[date]
) -> Iterator[PlannedDay]:
    """The planning stage's work: :meth:`DayPlanner.plan` of each day, in order, by one planner (its
    ledger connections kept for the range, closed at its end)."""
    planner = DayPlanner(store, policy=policy, sending=sending)
    try:
        for day in days:
            yield planner.plan(day)
    finally:
        planner.close()
