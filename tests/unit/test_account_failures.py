"""How a run's failed account-days are said: each cause once, days as ranges, the command that
imports them again."""

from __future__ import annotations

from datetime import date, timedelta

from tiktok_amp_assets.core.account_failures import (
    AccountDayFailure,
    days_label,
    failures_by_account,
    failures_summary,
    reimport_command,
)

DAY = date(2025, 3, 1)


def failure(advertiser_id: str, offset: int, message: str, code: int | None = 40001) -> AccountDayFailure:
    return AccountDayFailure(
        advertiser_id=advertiser_id,
        stat_date=DAY + timedelta(days=offset),
        step="tiktok_raw_reports",
        endpoint="/open_api/v1.3/advertiser/info/",
        code=code,
        message=message,
        what_to_do="grant access",
        run_id="run-1",
    )


def test_days_are_said_as_ranges() -> None:
    days = [DAY, DAY + timedelta(days=1), DAY + timedelta(days=2), DAY + timedelta(days=5)]
    assert days_label(reversed(days)) == "2025-03-01 to 2025-03-03 (3 days), 2025-03-06"
    assert days_label([DAY]) == "2025-03-01"


def test_the_command_covers_every_failed_day() -> None:
    assert reimport_command([DAY], "acme").endswith("--select 'group:acme' --partition 2025-03-01")
    assert reimport_command([DAY + timedelta(days=3), DAY], "acme").endswith(
        "--partition-range 2025-03-01...2025-03-04"
    )


def test_one_cause_of_several_accounts_and_days_is_said_once() -> None:
    # The same refusal for two accounts on four days, each answer with its own request id.
    failures = [
        failure(account, offset, f"no permission (request_id {account}{offset})")
        for account in ("7000000000000000002", "7000000000000000003")
        for offset in range(4)
    ] + [failure("7000000000000000004", 0, "Invalid advertiser_ids: ['7000000000000000004']", code=40002)]
    summary = failures_summary(failures, accounts=30, group="tiktok_ads")
    assert summary.startswith("3 of 30 ad accounts could not be imported")
    assert summary.count("no permission") == 1 and "request_id" not in summary
    assert (
        "- ad account 7000000000000000002: 2025-03-01 to 2025-03-04 (4 days); "
        "ad account 7000000000000000003: 2025-03-01 to 2025-03-04 (4 days). "
        "/open_api/v1.3/advertiser/info/ refused (code 40001): no permission. What to do: grant access"
    ) in summary
    assert "(code 40002): Invalid advertiser_ids" in summary
    assert summary.rstrip().endswith("within the lookback window.")
    assert "--partition-range 2025-03-01...2025-03-04" in summary
    by_account = failures_by_account(failures)
    assert by_account["7000000000000000002"]["days"] == [
        (DAY + timedelta(days=n)).isoformat() for n in range(4)
    ]
    assert len(by_account["7000000000000000002"]["causes"]) == 4  # the records keep each request id


def test_a_record_reads_back_as_written() -> None:
    written = failure("7000000000000000002", 0, "no permission")
    assert AccountDayFailure.from_record(written.as_record()) == written
