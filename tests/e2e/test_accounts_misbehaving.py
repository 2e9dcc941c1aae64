"""Real accounts misbehave: one account's trouble never stops the others, and a gap is named, not
hidden. Each situation is run as a user runs it: `dagster asset materialize` over a 4-day range of
the two accounts, in its own process, against the emulators over HTTP."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from datetime import date, timedelta
from typing import Any

import dagster as dg
import pytest

from ..conftest import API_KEY, Project
from .test_cli import dagster_cli

ACME = "7000000000000000001"  # USD
SAKURA = "7000000000000000002"  # JPY
FIRST = date(2025, 3, 1)
DAYS = [FIRST + timedelta(days=offset) for offset in range(4)]
RANGE = f"{DAYS[0]}...{DAYS[-1]}"
MATERIALIZE = ("asset", "materialize", "-m", "tiktok_amp_assets.definitions", "--select", "group:tiktok_ads")


def of_account(sums: dict[tuple[str, str], Any], advertiser_id: str) -> dict[tuple[str, str], Any]:
    return {key: value for key, value in sums.items() if key[0] == advertiser_id}


def events_per_ad_day(project: Project) -> Counter[tuple[str, str, str]]:
    """How many events Amplitude counted per (account, ad, day): 1 each means exactly once."""
    return Counter(
        (p["ad_account_id"], p["ad_id"], p["stat_date"])
        for p in (event["event_properties"] for event in project.amplitude.counted_events(API_KEY))
    )


def latest_run(project: Project) -> tuple[dg.DagsterInstance, dg.DagsterRun]:
    instance = dg.DagsterInstance.from_config(project.instance.root_directory)
    return instance, instance.get_runs(limit=1)[0]


def check_evaluation(instance: dg.DagsterInstance, run_id: str, name: str) -> Any:
    (evaluation,) = [
        record.get_dagster_event().event_specific_data
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        if record.get_dagster_event().event_specific_data.check_name == name
    ]
    return evaluation


def partition_metadata(instance: dg.DagsterInstance, run_id: str, asset: str, day: date) -> dict[str, Any]:
    (materialization,) = [
        record.get_dagster_event().event_specific_data.materialization
        for record in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if record.get_dagster_event().event_specific_data.materialization.asset_key
        == dg.AssetKey(["tiktok_ads", asset])
        and record.get_dagster_event().event_specific_data.materialization.partition == day.isoformat()
    ]
    return {name: value.value for name, value in materialization.metadata.items()}


def test_spend_no_ad_row_holds_is_delivered_with_the_gap_named_and_the_run_succeeds(project: Project) -> None:
    gap_day = DAYS[2]
    project.tiktok.add_unattributed_spend(ACME, gap_day, "12.34")  # a GMV Max campaign, say
    result = dagster_cli(project, *MATERIALIZE, "--partition-range", RANGE)
    assert result.returncode == 0, result.stderr[-3000:]

    # Every ad-day of both accounts, exactly once.
    for day in DAYS:
        assert project.amplitude_sums(day) == project.tiktok_truth(day)
    assert set(events_per_ad_day(project).values()) == {1}
    assert sum(events_per_ad_day(project).values()) == sum(len(project.tiktok_truth(day)) for day in DAYS)

    # The gap is named: a warning on the metrics, and the amounts in that day's metadata.
    instance, run = latest_run(project)
    try:
        check = check_evaluation(instance, run.run_id, "rows_add_up_to_account_totals")
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert (
            f"ad account {ACME} on {gap_day}: 12.34 USD spend in the account totals that no ad row holds"
            in (check.description)
        )
        (gap,) = check.metadata["gaps"].value
        assert (gap["advertiser_id"], gap["stat_date"], gap["kind"], gap["unattributed_spend"]) == (
            ACME,
            gap_day.isoformat(),
            "unattributed",
            "12.34",
        )
        assert partition_metadata(instance, run.run_id, "tiktok_ad_metrics", gap_day)[
            "unattributed_spend_USD"
        ] == (12.34)
        assert "unattributed_spend_USD" not in partition_metadata(
            instance, run.run_id, "tiktok_ad_metrics", DAYS[0]
        )
        assert check_evaluation(instance, run.run_id, "every_account_day_imported").passed
    finally:
        instance.dispose()


@pytest.mark.parametrize(
    ("code", "endpoints", "tiktok_says"),
    [
        (
            40001,
            ["advertiser_info", "report", "ad"],
            "advertiser does not grant you /advertiser/info/:GET permission",
        ),
        (40002, ["advertiser_info"], f"Invalid advertiser_ids: ['{SAKURA}']"),
    ],
    ids=["40001-everywhere", "40002-on-advertiser-info"],
)
def test_an_account_the_token_cannot_read_is_named_once_and_the_other_is_delivered(
    project: Project, code: int, endpoints: list[str], tiktok_says: str
) -> None:
    project.tiktok.refuse_account(SAKURA, code=code, endpoints=endpoints)
    result = dagster_cli(project, *MATERIALIZE, "--partition-range", RANGE)
    assert result.returncode != 0

    # The readable account is delivered whole, exactly once; nothing of the other.
    for day in DAYS:
        assert project.amplitude_sums(day) == of_account(project.tiktok_truth(day), ACME)
    assert set(events_per_ad_day(project).values()) == {1}
    # No report was asked for the unreadable account.
    assert SAKURA not in {
        entry["advertiser_id"]
        for entry in project.tiktok.request_log
        if entry["path"].endswith("/report/integrated/get/")
    }

    instance, run = latest_run(project)
    try:
        assert run.status == dg.DagsterRunStatus.FAILURE
        # The run asks Dagster's run retries to re-execute all its steps.
        assert run.tags["dagster/retry_strategy"] == "ALL_STEPS"
        assert run.tags["dagster/retry_on_asset_or_op_failure"] == "true"
        check = check_evaluation(instance, run.run_id, "every_account_day_imported")
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        description = check.description
        assert f"ad account {SAKURA}: {DAYS[0]} to {DAYS[-1]} (4 days)" in description
        assert f"(code {code}): " in description and "TIKTOK_ADVERTISER_IDS" in description
        assert description.count(tiktok_says) == 1 and ACME not in description
        command = check.metadata["reimport_command"].value
        assert command.endswith(f"--partition-range {RANGE}") and command in description
        assert partition_metadata(instance, run.run_id, "amplitude_upload_results", DAYS[1])[
            "accounts_not_imported"
        ] == [SAKURA]
    finally:
        instance.dispose()

    # Access restored: the command the check names imports the missing account-days, and sends
    # nothing Amplitude already counted.
    project.tiktok.readable_again(SAKURA)
    counted_before = len(project.amplitude.counted_events(API_KEY))
    requests_before = project.amplitude.requests_count()
    args = shlex.split(re.sub(r"^\.venv/bin/dagster ", "", command))
    again = dagster_cli(project, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    for day in DAYS:
        assert project.amplitude_sums(day) == project.tiktok_truth(day)
    assert set(events_per_ad_day(project).values()) == {1}
    new_events = project.amplitude.counted_events(API_KEY)[counted_before:]
    assert {event["event_properties"]["ad_account_id"] for event in new_events} == {SAKURA}
    sent = sum(request["events"] for request in project.amplitude.request_log[requests_before:])
    assert sent == len(new_events) == sum(len(of_account(project.tiktok_truth(day), SAKURA)) for day in DAYS)
