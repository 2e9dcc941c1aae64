"""Uploading a range of days to Amplitude: plan against the ledger, send, record, report per day.

Days are read and planned one at a time into a queue, and the queue is sent whenever it holds full
requests; the rest waits for the next day's events. So a year costs as few requests as its events
need, and memory holds about two requests' events however many days or ads. A day is finished (its
results file written) once every one of its events has been answered; until then it keeps only its
ad-days' totals, not its rows, since a daily tick that re-reads 30 days and sends few corrections
keeps all 30 open.

Reading and planning run in a worker thread, up to one request's events ahead of the sending: the
next request is built (and recorded as pending in the ledger) while Amplitude answers the current
one (the wait for an answer, gzip and the ledger's I/O release the GIL). Sending, recording answers
and finishing days stay in the caller's thread, in order.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, TypeVar

from tiktok_amp_assets.clients.amplitude import AmplitudeClient, Delivery
from tiktok_amp_assets.core.ad_metrics import table_rows
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
from tiktok_amp_assets.storage.import_store import ImportStore
from tiktok_amp_assets.storage.ledger import AmplitudeLedger, ConcurrentPlanError

# A loser re-plans from what the winner recorded; only a day planned by many runs at once loses often.
MAX_PLANNING_ATTEMPTS = 20
_Item = TypeVar("_Item")
_Result = TypeVar("_Result")
# A dry run builds without sending: the worker stays this many events ahead.
DRY_RUN_READ_AHEAD_EVENTS = 2000


@dataclass(frozen=True)
class PlannedDay:
    """A day planned (and its events recorded as pending) by the read-ahead worker."""

    day: date
    current: dict[AdDayKey, MetricTotals]  # TikTok's figures per ad-day
    recorded: dict[AdDayKey, MetricTotals]  # what the ledger held for the day when it was planned
    planned: list[PlannedEvent]
    # Events of the day another run recorded and has not had acknowledged: sent again by this run.
    pending: list[AdDayEvent]

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
        self._shared_texts: dict[str, str] = {}  # used by the read-ahead worker only

    def upload(self, days: Sequence[date]) -> Iterator[FinishedDay]:
        """Upload ``days`` (sorted); yields each day as soon as it is finished."""
        if self._client is not None:
            self._resend_pending(set(days))
        queue: list[AdDayEvent] = []
        built = 0
        read_ahead = self._client.max_events if self._client is not None else DRY_RUN_READ_AHEAD_EVENTS
        for planned_day in _read_ahead(self._plan, days, budget=read_ahead, size=lambda p: p.events_to_send):
            day = planned_day.day
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

    def _plan(self, day: date) -> PlannedDay:
        """Plan ``day`` against what the ledger recorded and record the events, in one transaction:
        another run uploading the same day at the same moment never plans the same ad-day twice.
        Runs in the read-ahead worker, so it touches no state of the uploader.

        What to send for the day: the events planned, after those of the day another run recorded
        and has not had acknowledged yet. Sending those again is safe (same insert_id, same payload:
        Amplitude counts them once) and means this run leaves the day answered in full, whether the
        other run is still sending them or died."""
        for attempt in range(1, MAX_PLANNING_ATTEMPTS + 1):
            # Read again on each attempt: the run that won may have read newer figures.
            rows = table_rows(self._store.read_ad_metrics(day), shared_texts=self._shared_texts)
            try:
                with self._ledger.planning(day) as planning:
                    planned = plan_events(rows, planning.recorded, [day], policy=self._policy)
                    if self._client is not None:
                        # Recorded before sending: a crash from here on leaves them pending, to be
                        # resent as they are (by this run's queue, or by the next run).
                        planning.record_pending(event.ad_day_event for event in planned)
                break
            except ConcurrentPlanError:
                if attempt == MAX_PLANNING_ATTEMPTS:
                    raise ConcurrentPlanError(
                        f"{day}: another run recorded events for this day each of the "
                        f"{MAX_PLANNING_ATTEMPTS} times this run planned it. What to do: run the day "
                        "again once the other runs of it have finished"
                    ) from None
                self._log.info("%s: planned again, another run recorded events for it meanwhile", day)
        return PlannedDay(
            day,
            current={(row.advertiser_id, row.ad_id, row.stat_date): row.totals() for row in rows},
            recorded={key: ad_day.totals for key, ad_day in planning.recorded.items()},
            planned=planned,
            pending=planning.pending if self._client is not None else [],
        )

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
        # Durable before the next request goes out: a crash after this line loses nothing.
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
        record_counts(reports, before, {key: ad_day.totals for key, ad_day in counted_after.items()})
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
