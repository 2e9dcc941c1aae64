"""Uploading a range of days to Amplitude: plan against the ledger, send, record, report per day.

Days are read and planned one at a time into a queue, and the queue is sent whenever it holds full
requests; the rest waits for the next day's events. So a year costs as few requests as its events
need, and memory holds a few days' events (planned ahead, queued, in flight) however many days. A
day is finished (its results file written) once every one of its events has been answered; until
then it keeps only its ad-days' totals, not its rows, since a daily tick that re-reads 30 days and
sends few corrections keeps all 30 open.

Reading and planning (:class:`DayPlanner`) run ahead of the sending: the next request is built
(and recorded as pending in the ledger) while Amplitude answers the current one. Sending and
finishing days stay in the caller's thread, in order; Amplitude's answers are written to the ledger
by a thread of their own, in order, and a day is finished once its answers are written. Planning
and sending each hold the GIL most of their time, so a long range is planned in a process of its
own (spawned, like normalize.py's workers; two with a PostgreSQL ledger), which uses a second core;
a short one (a daily run) in a thread, where a process's start (about a second) would cost more than
it saves.
"""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, TypeVar

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
from tiktok_amp_assets.garbage_collection import collecting_less_often
from tiktok_amp_assets.storage.import_store import ImportStore
from tiktok_amp_assets.storage.ledger import AmplitudeLedger, ConcurrentPlanError
from tiktok_amp_assets.worker_processes import in_worker_processes

# A loser re-plans from what the winner recorded; only a day planned by many runs at once loses often.
MAX_PLANNING_ATTEMPTS = 20
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
# A dry run builds without sending: the worker stays this many events ahead.
DRY_RUN_READ_AHEAD_EVENTS = 2000
# Days from which a planning process pays for its start (measured with py-spy on 60 days of 2,000
# ads: planning holds the GIL ~45 us per ad-day, about half of the upload's; a process starts in
# under a second, its imports ~0.6 s).
PLANNING_PROCESS_FROM_DAYS = 60
# Days planned ahead of the one being sent, in the planning process: bounds memory to a few days.
_PROCESS_DAYS_AHEAD = 5


@dataclass(frozen=True)
class PlannedDay:
    """A day planned (and its events recorded as pending) by the read-ahead worker."""

    day: date
    current: dict[AdDayKey, MetricTotals]  # TikTok's figures per ad-day
    recorded: dict[AdDayKey, MetricTotals]  # what the ledger held for the day when it was planned
    planned: list[PlannedEvent]
    # Events of the day another run recorded and has not had acknowledged: sent again by this run.
    pending: list[AdDayEvent]
    replans: int = 0  # times another run recorded some of its ad-days first, and it was planned again

    def to_send(self) -> list[AdDayEvent]:
        return [*self.pending, *(event.ad_day_event for event in self.planned)]

    @property
    def events_to_send(self) -> int:
        return len(self.pending) + len(self.planned)


@dataclass(frozen=True)
class FinishedDay:
    report: DayUploadReport
    results: dict[str, Any]
    path: str
    undelivered: list[Mismatch]


class DayPlanner:
    """Plans days against the ledger and records their events as pending, ahead of the sending:
    in the uploader's thread or in a planning process (module docstring)."""

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
        # Amplitude's answers being written to the ledger, in order, by one thread (see _record).
        self._answers_writer: ThreadPoolExecutor | None = None
        self._answers_written: deque[Future[None]] = deque()

    def upload(self, days: Sequence[date]) -> Iterator[FinishedDay]:
        """Upload ``days`` (sorted); yields each day as soon as it is finished."""
        try:
            # Leaving (finished, failed or stopped) waits for the answers still being written.
            with (
                collecting_less_often(),
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-answers") as writer,
            ):
                self._answers_writer = writer
                try:
                    yield from self._upload(days)
                    self._wait_for_answers()
                finally:
                    self._answers_writer = None
        finally:
            self._ledger.close()  # after the answers thread's last write

    def _upload(self, days: Sequence[date]) -> Iterator[FinishedDay]:
        if self._client is not None:
            self._resend_pending(set(days))
        queue: list[AdDayEvent] = []
        built = 0
        for planned_day in self._planned(days):
            day = planned_day.day
            if planned_day.replans:
                self._log.info(
                    "%s: planned %d more times, another run recorded events for it meanwhile",
                    day,
                    planned_day.replans,
                )
            report = self._reports.setdefault(day, DayUploadReport(day))
            report.planned.extend(planned_day.planned)
            built += len(planned_day.planned)
            self._current[day] = planned_day.current
            self._counted_before.update(planned_day.recorded)
            if self._client is not None:
                report.resent_pending += len(planned_day.pending)
                queue.extend(planned_day.to_send())
                # Whole requests only, except after the last day: the rest waits for more events.
                cut = len(queue) if day == days[-1] else len(queue) - len(queue) % self._client.max_events
                self._send(queue[:cut])
                del queue[:cut]
            # The queue holds days in order: every planned day before its first is answered in full.
            # (Only planned days: resent pending events may have opened reports of later ones.)
            first_waiting = queue[0].stat_date if queue else None
            yield from self._finish(
                [done for done in sorted(self._current) if first_waiting is None or done < first_waiting]
            )
        if self._client is None:
            self._log.info("dry run: %d events built for %s..%s, none sent", built, days[0], days[-1])

    def _planned(self, days: Sequence[date]) -> Iterator[PlannedDay]:
        """The days planned in order, ahead of the caller (module docstring)."""
        sending = self._client is not None
        if len(days) >= PLANNING_PROCESS_FROM_DAYS and (os.cpu_count() or 1) > 1:
            yield from _planned_in_process(
                self._store, self._policy, sending, days, ledger_backend=self._ledger.url.get_backend_name()
            )
            return
        planner = DayPlanner(self._store, policy=self._policy, sending=sending)
        budget = self._client.max_events if self._client is not None else DRY_RUN_READ_AHEAD_EVENTS
        try:
            yield from _read_ahead(planner.plan, days, budget=budget, size=lambda p: p.events_to_send)
        finally:
            planner.close()

    def _send(self, events: list[AdDayEvent]) -> None:
        assert self._client is not None
        if not events:
            return
        for delivery in self._client.send([event.payload for event in events]):
            self._record(delivery)

    def _resend_pending(self, days: set[date]) -> None:
        """Events recorded by a run that stopped mid-upload go out again unchanged, before anything
        new: Amplitude drops them if it had counted them (same insert_id), counts them if not."""
        assert self._client is not None
        pending = self._ledger.pending()
        if not pending:
            return
        self._log.warning("resending %d events left unacknowledged by an interrupted run", len(pending))
        for event in pending:
            if event.stat_date in days:
                self._reports.setdefault(
                    event.stat_date, DayUploadReport(event.stat_date)
                ).resent_pending += 1
        for delivery in self._client.send([event.payload for event in pending]):
            self._record(delivery)

    def _record(self, delivery: Delivery) -> None:
        # Written by the answers thread while the next request goes out (the database's work
        # releases the GIL): a day is finished, its counts read back, only once its answers are
        # written. A crash before they are leaves those events pending, and the next run resends
        # them under the same insert_id, which Amplitude drops if it counted them.
        assert self._answers_writer is not None
        self._answers_written.append(
            self._answers_writer.submit(
                self._write_answers,
                [event["insert_id"] for event in delivery.accepted],
                {rejected.insert_id: rejected.reason for rejected in delivery.rejected},
            )
        )
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

    def _write_answers(self, accepted: list[str], rejected: dict[str, str]) -> None:
        self._ledger.acknowledge(accepted)
        self._ledger.reject(rejected)

    def _wait_for_answers(self) -> None:
        """Every answer so far is in the ledger; a failure to write one is raised here."""
        while self._answers_written:
            self._answers_written.popleft().result()

    def _finish(self, days: list[date]) -> Iterator[FinishedDay]:
        if not days:
            return
        self._wait_for_answers()
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


def _read_ahead(
    produce: Callable[[_Item], _Result],
    items: Sequence[_Item],
    *,
    budget: int,
    size: Callable[[_Result], int],
) -> Iterator[_Result]:
    """``produce(item)`` for each item in order, computed by a worker thread that stays at most
    ``budget`` (by ``size``) ahead of the consumer, plus one item. An exception in ``produce`` is
    raised here, at that item; when the consumer stops early, the worker stops too."""
    condition = threading.Condition()
    ready: deque[_Result] = deque()
    state: dict[str, Any] = {"ahead": 0, "done": False, "error": None, "stop": False}

    def work() -> None:
        try:
            for item in items:
                result = produce(item)
                with condition:
                    if state["stop"]:
                        return
                    ready.append(result)
                    state["ahead"] += size(result)
                    condition.notify_all()
                    while state["ahead"] > budget and not state["stop"]:
                        condition.wait()
        except BaseException as error:  # handed to the consumer, raised in its thread
            with condition:
                state["error"] = error
        finally:
            with condition:
                state["done"] = True
                condition.notify_all()

    worker = threading.Thread(target=work, name="upload-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            with condition:
                while not ready and not state["done"]:
                    condition.wait()
                if ready:
                    result = ready.popleft()
                    state["ahead"] -= size(result)
                    condition.notify_all()
                elif state["error"] is not None:
                    raise state["error"]
                else:
                    return
            yield result
    finally:
        with condition:
            state["stop"] = True
            condition.notify_all()
        worker.join()


# The planning process's planner: one per process, set by its initializer.
_process_planner: DayPlanner | None = None


def _start_planner(store: ImportStore, policy: RestatementPolicy, sending: bool) -> None:
    global _process_planner
    _process_planner = DayPlanner(store, policy=policy, sending=sending)
    # Its pooled ledger connections are closed when the process ends (a worker process runs
    # multiprocessing's finalizers on exit, not atexit's).
    multiprocessing.util.Finalize(_process_planner, _process_planner.close, exitpriority=10)


def _plan_in_process(day: date) -> PlannedDay:
    assert _process_planner is not None
    return _process_planner.plan(day)


def _planned_in_process(
    store: ImportStore,
    policy: RestatementPolicy,
    sending: bool,
    days: Sequence[date],
    *,
    ledger_backend: str,
) -> Iterator[PlannedDay]:
    """:meth:`DayPlanner.plan` of each day in order, in planning processes that stay a few days
    ahead: one for a SQLite ledger, two for a database server's.

    A server ledger (PostgreSQL) makes each day's planning wait for its transactions (~30 ms a day
    with the server on the same machine, more across a network), and a second process plans another
    day meanwhile (year on S3 + PostgreSQL: upload step 53 -> 45 s). SQLite's writers take turns
    and its transactions are CPU work: a second process only competes for the cores (year: 32 ->
    36 s). Days planned at once are different days, each recorded in its own transaction."""
    yield from in_worker_processes(
        _plan_in_process,
        days,
        workers=1 if ledger_backend == "sqlite" else 2,
        ahead=_PROCESS_DAYS_AHEAD,
        initializer=_start_planner,
        initargs=(store, policy, sending),
    )
