"""Uploading a range of days to Amplitude: plan against the ledger, send, record, report per day.

Days are read and planned a window at a time, so memory is bounded by one window however long the
backfill. Requests do not stop at window edges: events left over after the window's full requests
are carried into the next window's, so a year costs as few requests as the events need. A day is
finished (its results file written) once every one of its events has been answered.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

from tiktok_amp_assets.clients.amplitude import AmplitudeClient, Delivery
from tiktok_amp_assets.core.ad_metrics import AdDayMetrics
from tiktok_amp_assets.core.reconciliation import Mismatch, undelivered_ad_days
from tiktok_amp_assets.core.report_windows import report_windows
from tiktok_amp_assets.core.upload_plan import AdDayKey, CountedAdDay, PlannedEvent, RestatementPolicy, plan_events
from tiktok_amp_assets.core.upload_report import DayUploadReport, event_stat_date, record_counts
from tiktok_amp_assets.storage.import_store import ImportStore
from tiktok_amp_assets.storage.ledger import AmplitudeLedger

# Days read and planned together.
UPLOAD_WINDOW_DAYS = 14


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
        self._rows: dict[date, list[AdDayMetrics]] = {}
        self._counted_before: dict[AdDayKey, CountedAdDay] = {}

    def upload(self, days: Sequence[date]) -> Iterator[FinishedDay]:
        """Upload ``days`` (consecutive, sorted); yields each day as soon as it is finished."""
        if self._client is not None:
            self._resend_pending(set(days))
        carry: list[PlannedEvent] = []
        windows = list(report_windows(days[0], days[-1], UPLOAD_WINDOW_DAYS))
        for index, (window_start, window_end) in enumerate(windows):
            window = [day for day in days if window_start <= day <= window_end]
            planned = self._plan(window)
            if self._client is None:
                self._log.info("dry run: %d events built for %s..%s, none sent", len(planned), window[0], window[-1])
                to_send: list[PlannedEvent] = []
            else:
                queue = carry + planned
                last = index == len(windows) - 1
                # Whole requests only, except at the very end: the rest rides with the next window.
                cut = len(queue) if last else len(queue) - len(queue) % self._client.max_events
                to_send, carry = queue[:cut], queue[cut:]
                self._send(to_send)
            waiting = {event.ad_day_event.stat_date for event in carry}
            yield from self._finish([day for day in sorted(self._reports) if day not in waiting])

    def _plan(self, window: list[date]) -> list[PlannedEvent]:
        for day in window:
            self._reports.setdefault(day, DayUploadReport(day))
            self._rows[day] = self._store.read_ad_metrics(day)
        counted = self._ledger.counted(window)
        self._counted_before.update(counted)
        rows = [row for day in window for row in self._rows[day]]
        planned = plan_events(rows, counted, window, policy=self._policy)
        for event in planned:
            self._reports[event.ad_day_event.stat_date].planned.append(event)
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
                self._reports.setdefault(event.stat_date, DayUploadReport(event.stat_date)).resent_pending += 1
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
                self._reports[day].requests.extend({**record, "events_of_this_day": count} for record in records)

    def _finish(self, days: list[date]) -> Iterator[FinishedDay]:
        if not days:
            return
        counted_after = self._ledger.counted(days)
        reports = {day: self._reports.pop(day) for day in days}
        before = {key: value for key, value in self._counted_before.items() if key[2] in reports}
        record_counts(reports, before, counted_after)
        rows = [row for day in days for row in self._rows.pop(day, [])]
        undelivered: dict[date, list[Mismatch]] = defaultdict(list)
        if self._client is not None:
            for mismatch in undelivered_ad_days(rows, counted_after, days):
                # freeze keeps counted days as first imported: only a never-counted ad-day is a loss.
                key = (mismatch.advertiser_id, mismatch.ad_id, mismatch.stat_date)
                if self._policy == "correct" or key not in counted_after:
                    undelivered[mismatch.stat_date].append(mismatch)
        for day, report in reports.items():
            results = report.results(endpoint=self._client.path if self._client else None, policy=self._policy)
            path = self._store.write_upload_results(day, results)
            yield FinishedDay(report, results, str(path), undelivered[day])
        for key in list(before):
            del self._counted_before[key]
