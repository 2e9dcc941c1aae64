"""What happened to one day's events during an upload: the content of ``amplitude_upload_results``."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from tiktok_amp_assets.core.currencies import format_amount
from tiktok_amp_assets.core.metric_values import MetricTotals
from tiktok_amp_assets.core.upload_plan import AdDayKey, PlannedEvent


def event_stat_date(event: dict[str, Any]) -> date:
    """The ad-day's date of a built ``Daily Ad Metrics`` event."""
    return date.fromisoformat(event["event_properties"]["stat_date"])


@dataclass
class DayUploadReport:
    day: date
    planned: list[PlannedEvent] = field(default_factory=list)
    accepted: set[str] = field(default_factory=set)
    rejected: dict[str, str] = field(default_factory=dict)  # insert_id -> Amplitude's reason
    # insert_id -> why it waits (its device is over Amplitude's daily quota): resent by the next run
    parked: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    resent_pending: int = 0
    # Per ad account: what Amplitude had counted for the day before this run, and after it.
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def add_counted(self, side: str, advertiser_id: str, ad_days: int, totals: MetricTotals) -> None:
        account = self.accounts.setdefault(advertiser_id, {"before": _empty(), "after": _empty()})
        account[side]["ad_days"] += ad_days
        account[side]["totals"] = account[side]["totals"] + totals

    def changes_markdown(self) -> str | None:
        """Accounts whose counted figures this run changed: rows, cost, conversions before → after."""
        changed = [
            (advertiser_id, a)
            for advertiser_id, a in sorted(self.accounts.items())
            if a["before"] != a["after"] and a["before"]["ad_days"]
        ]
        if not changed:
            return None  # a day imported for the first time: nothing to look up
        currencies = {
            planned.ad_day_event.advertiser_id: str(
                planned.ad_day_event.payload["event_properties"]["currency"]
            )
            for planned in self.planned
        }
        lines = [
            f"| {advertiser_id} | {a['before']['ad_days']} → {a['after']['ad_days']} | "
            f"{_cost(a['before']['totals'].cost, currencies.get(advertiser_id))} → "
            f"{_cost(a['after']['totals'].cost, currencies.get(advertiser_id))} | "
            f"{a['before']['totals'].conversions} → {a['after']['totals'].conversions} |"
            for advertiser_id, a in changed
        ]
        return "| account | ad-days | cost | conversions |\n|---|---|---|---|\n" + "\n".join(lines)

    def _status(self, insert_id: str, sent: bool) -> str:
        if not sent:
            return "dry_run"
        if insert_id in self.rejected:
            return "rejected"
        if insert_id in self.parked:
            return "parked"
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
            "events_parked": len(self.parked),
            "events_resent_after_interruption": self.resent_pending,
        }

    def results(self, *, endpoint: str | None, policy: str) -> dict[str, Any]:
        """The day's results file: figures, every request that carried its events, every event."""
        sent = endpoint is not None
        events = []
        for planned in self.planned:
            event = planned.ad_day_event
            sent_figures = event.totals.as_record()
            events.append(
                {
                    "insert_id": event.insert_id,
                    "kind": planned.kind,
                    "ad_account_id": event.advertiser_id,
                    "ad_id": event.ad_id,
                    "revision": event.revision,
                    "sent": sent_figures,
                    "before": planned.before.as_record() if planned.before else None,
                    # A new ad-day's figures are both (one object): one record, written twice.
                    "after": sent_figures if planned.after is event.totals else planned.after.as_record(),
                    "status": self._status(event.insert_id, sent),
                    "reason": self.rejected.get(event.insert_id) or self.parked.get(event.insert_id),
                }
            )
        return {
            "partition": self.day.isoformat(),
            "endpoint": endpoint,
            "dry_run": not sent,
            "restatement_policy": policy,
            **self.figures(),
            "accounts": {
                advertiser_id: {
                    side: {"ad_days": values["ad_days"], **values["totals"].as_record()}
                    for side, values in account.items()
                }
                for advertiser_id, account in sorted(self.accounts.items())
            },
            "requests": self.requests,
            "events": events,
        }


def _cost(amount: Decimal, currency: str | None) -> str:
    # An account whose figures changed has planned events, which carry its currency.
    return f"{format_amount(amount, currency)} {currency}" if currency else format(amount, "f")


def _empty() -> dict[str, Any]:
    return {"ad_days": 0, "totals": MetricTotals.zero()}


def record_counts(
    reports: Mapping[date, DayUploadReport],
    before: Mapping[AdDayKey, MetricTotals],
    after: Mapping[AdDayKey, MetricTotals],
) -> None:
    """What Amplitude had counted per account and day before the upload, and after it."""
    by_account: dict[tuple[date, str, str], list[MetricTotals]] = defaultdict(list)
    for side, counted in (("before", before), ("after", after)):
        for (advertiser_id, _ad_id, stat_date), totals in counted.items():
            if stat_date in reports:
                by_account[(stat_date, advertiser_id, side)].append(totals)
    for (stat_date, advertiser_id, side), values in by_account.items():
        reports[stat_date].add_counted(side, advertiser_id, len(values), MetricTotals.sum(values))
