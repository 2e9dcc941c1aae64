"""What happened to one day's events during an upload: the content of ``amplitude_upload_results``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from tiktok_amp_assets.core.upload_plan import PlannedEvent


def event_stat_date(event: dict[str, Any]) -> date:
    """The ad-day's date of a built ``Daily Ad Metrics`` event."""
    return date.fromisoformat(event["event_properties"]["stat_date"])


@dataclass
class DayUploadReport:
    day: date
    planned: list[PlannedEvent] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)  # insert_id -> Amplitude's reason
    requests: list[dict[str, Any]] = field(default_factory=list)
    resent_pending: int = 0

    def _status(self, insert_id: str, sent: bool) -> str:
        if not sent:
            return "dry_run"
        if insert_id in self.rejected:
            return "rejected"
        return "accepted" if insert_id in self.accepted else "not_acknowledged"

    def figures(self) -> dict[str, int]:
        """Counts for asset metadata: plotted per partition in the Dagster UI."""
        kinds = Counter(event.kind for event in self.planned)
        planned_ids = {event.ad_day_event.insert_id for event in self.planned}
        return {
            "events_planned": len(self.planned),
            "events_new": kinds["new"],
            "events_corrections": kinds["correction"] + kinds["removal"],
            "events_accepted": len(self.accepted & planned_ids),
            "events_rejected": len(self.rejected),
            "events_resent_after_interruption": self.resent_pending,
        }

    def results(self, *, endpoint: str | None, policy: str) -> dict[str, Any]:
        """The day's results file: figures, every request that carried its events, every event."""
        sent = endpoint is not None
        events = []
        for planned in self.planned:
            event = planned.ad_day_event
            events.append(
                {
                    "insert_id": event.insert_id,
                    "kind": planned.kind,
                    "ad_account_id": event.advertiser_id,
                    "ad_id": event.ad_id,
                    "revision": event.revision,
                    "sent": event.totals.as_record(),
                    "before": planned.before.as_record() if planned.before else None,
                    "after": planned.after.as_record(),
                    "status": self._status(event.insert_id, sent),
                    "reason": self.rejected.get(event.insert_id),
                }
            )
        return {
            "partition": self.day.isoformat(),
            "endpoint": endpoint,
            "dry_run": not sent,
            "restatement_policy": policy,
            **self.figures(),
            "requests": self.requests,
            "events": events,
        }
