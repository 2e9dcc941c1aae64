"""Account-days that could not be imported: what is recorded for each, and how a run reports them.

The account-day is the unit of failure: when TikTok refuses one ad account (40001, a 40002 naming
it), answers it malformed, or keeps failing for it past the retry budget, or when its rows cannot be
normalized, that account's days are recorded as failed (``storage/import_store.py`` keeps one small
record per account-day under ``failed/``) and every other account goes on through the three steps.
A record stays until a run imports that account-day. The upload step reports the run's records in
one check, grouped so that one cause shared by several accounts or days is said once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

# The command that imports days again, as the README runs the CLI from the project folder.
REIMPORT_COMMAND = (
    ".venv/bin/dagster asset materialize -m tiktok_amp_assets.definitions --select 'group:{group}'"
)


@dataclass(frozen=True)
class AccountDayFailure:
    """Why one ad account's day could not be imported (the record stored for it)."""

    advertiser_id: str
    stat_date: date
    step: str  # the asset whose step failed it: tiktok_raw_reports or tiktok_ad_metrics
    endpoint: str | None  # TikTok's endpoint that refused, when TikTok refused
    code: int | None  # TikTok's code, when it gave one
    message: str  # TikTok's message, or what was wrong with its answer
    what_to_do: str
    run_id: str

    def as_record(self) -> dict[str, Any]:
        return {**asdict(self), "stat_date": self.stat_date.isoformat()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> AccountDayFailure:
        code = record.get("code")
        return cls(
            advertiser_id=str(record.get("advertiser_id", "")),
            stat_date=date.fromisoformat(str(record.get("stat_date"))),
            step=str(record.get("step", "")),
            endpoint=record.get("endpoint"),
            code=code if isinstance(code, int) else None,
            message=str(record.get("message", "")),
            what_to_do=str(record.get("what_to_do", "")),
            run_id=str(record.get("run_id", "")),
        )

    def cause(self) -> str:
        """What went wrong, without the account, the day or TikTok's request id (shared by every
        account-day it hit; the record keeps the request id)."""
        where = f"{self.endpoint} refused" if self.endpoint else "failed"
        code = f" (code {self.code})" if self.code is not None else ""
        return f"{where}{code}: {without_request_id(self.message)}. What to do: {self.what_to_do}"

    def short(self) -> str:
        """A line for a day's metadata."""
        code = f"code {self.code}: " if self.code is not None else ""
        return f"{code}{self.message}"


_REQUEST_ID = re.compile(r" \(request_id [^)]*\)")


def without_request_id(message: str) -> str:
    """TikTok's message without the request id the client appends (one per request)."""
    return _REQUEST_ID.sub("", message)


def days_label(days: Iterable[date]) -> str:
    """Days as consecutive ranges: ``2025-03-01 to 2025-03-04, 2025-03-07``."""
    ordered = sorted(set(days))
    ranges: list[list[date]] = []
    for day in ordered:
        if ranges and day == ranges[-1][-1] + timedelta(days=1):
            ranges[-1].append(day)
        else:
            ranges.append([day])
    return ", ".join(
        f"{run[0]}" if len(run) == 1 else f"{run[0]} to {run[-1]} ({len(run)} days)" for run in ranges
    )


def reimport_command(days: Iterable[date], group: str) -> str:
    """The CLI command that imports ``days`` of the connection ``group`` again (one range covering
    them all: the days between send nothing Amplitude already counted)."""
    ordered = sorted(set(days))
    command = REIMPORT_COMMAND.format(group=group)
    if len(ordered) == 1:
        return f"{command} --partition {ordered[0]}"
    return f"{command} --partition-range {ordered[0]}...{ordered[-1]}"


def failures_summary(failures: Sequence[AccountDayFailure], accounts: int, group: str) -> str:
    """One message for all of a run's failed account-days: each cause once, with the accounts and
    days it hit, then how they come back."""
    by_cause: dict[str, dict[str, set[date]]] = {}
    for failure in failures:
        by_cause.setdefault(failure.cause(), {}).setdefault(failure.advertiser_id, set()).add(
            failure.stat_date
        )
    failed_accounts = {failure.advertiser_id for failure in failures}
    lines = [
        f"{len(failed_accounts)} of {accounts} ad accounts could not be imported for some days; every other "
        "account-day of the run is in Amplitude."
    ]
    for cause, days_by_account in by_cause.items():
        hit = "; ".join(
            f"ad account {advertiser_id}: {days_label(days)}"
            for advertiser_id, days in sorted(days_by_account.items())
        )
        lines.append(f"- {hit}. {cause}")
    all_days = [failure.stat_date for failure in failures]
    lines.append(
        "When the instance retries runs (run_retries), the run is retried with all its steps and the retry "
        "fetches only these account-days. If the retries run out, import them again once the cause is fixed "
        f"(from the project folder; or select the three assets in the UI, Materialize, these days): "
        f"{reimport_command(all_days, group)}. Nothing Amplitude already counted is sent again; the schedule's next "
        "ticks also import them again while they are within the lookback window."
    )
    return "\n".join(lines)


def failures_by_account(failures: Sequence[AccountDayFailure]) -> dict[str, dict[str, Any]]:
    """The run's failures per account, for the check's metadata: days, and each cause once."""
    result: dict[str, dict[str, Any]] = {}
    for failure in sorted(failures, key=lambda f: (f.advertiser_id, f.stat_date)):
        entry = result.setdefault(failure.advertiser_id, {"days": [], "causes": []})
        entry["days"].append(failure.stat_date.isoformat())
        cause = {
            "step": failure.step,
            "endpoint": failure.endpoint,
            "code": failure.code,
            "message": failure.message,
            "what_to_do": failure.what_to_do,
        }
        if cause not in entry["causes"]:
            entry["causes"].append(cause)
    return result
