"""Uploading a range of days to Amplitude: plan against the ledger, send, record, report per day.

Days are read and planned one at a time into a queue, and the queue is sent whenever it holds full
requests; the rest waits for the next day's events. So a year costs as few requests as its events
need, and memory holds about one request's events (plus a day's) however many days or ads. A day
is finished (its results file written) once every one of its events has been answered.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import pyarrow as pa

from tiktok_amp_assets.clients.amplitude import AmplitudeClient, Delivery
from tiktok_amp_assets.core.reconciliation import Mismatch, undelivered_ad_days
from tiktok_amp_assets.core.upload_plan import (
    AdDayKey,
    CountedAdDay,
    PlannedEvent,
    RestatementPolicy,
    plan_events,
)
from tiktok_amp_assets.core.upload_report import DayUploadReport, event_stat_date, record_counts
from tiktok_amp_assets.storage.import_store import ImportStore
from tiktok_amp_assets.storage.ledger import AmplitudeLedger


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
        self._tables: dict[date, pa.Table] = {}  # the metrics of days planned and not yet finished
        self._counted_before: dict[AdDayKey, CountedAdDay] = {}

    def upload(self, days: Sequence[date]) -> Iterator[FinishedDay]:
        """Upload ``days`` (sorted); yields each day as soon as it is finished."""
        if self._client is not None:
            self._resend_pending(set(days))
        queue: list[PlannedEvent] = []
        built = 0
        for day in days:
            planned = self._plan(day)
            built += len(planned)
            if self._client is not None:
                queue.extend(planned)
                # Whole requests only, except after the last day: the rest waits for more events.
                cut = len(queue) if day == days[-1] else len(queue) - len(queue) % self._client.max_events
                self._send(queue[:cut])
                del queue[:cut]
            # The queue holds days in order: every planned day before its first is answered in full.
            # (Only planned days: resent pending events may have opened reports of later ones.)
            first_waiting = queue[0].ad_day_event.stat_date if queue else None
            yield from self._finish(
                [done for done in sorted(self._tables) if first_waiting is None or done < first_waiting]
            )
        if self._client is None:
            self._log.info("dry run: %d events built for %s..%s, none sent", built, days[0], days[-1])

    def _plan(self, day: date) -> list[PlannedEvent]:
        self._reports.setdefault(day, DayUploadReport(day))
        self._tables[day] = self._store.read_ad_metrics(day)
        counted = self._ledger.counted([day])
        self._counted_before.update(counted)
        planned = plan_events(self._tables[day], counted, [day], policy=self._policy)
        self._reports[day].planned.extend(planned)
        return planned

    def _send(self, planned: list[PlannedEvent]) -> None:
        assert self._client is not None
        if not planned:
            return
        # Recorded before sending: a crash from here on leaves them pending, to be resent as they are.
        self._ledger.record_pending(event.ad_day_event for event in planned)
        for delivery in self._client.send([event.ad_day_event.payload for event in planned]):
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
        tables = [self._tables.pop(day) for day in days if day in self._tables]
        undelivered: dict[date, list[Mismatch]] = defaultdict(list)
        if self._client is not None:
            for mismatch in undelivered_ad_days(tables, counted_after, days):
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
