"""TikTok outages as a user meets them: `dagster asset materialize` over a 4-day range of two accounts
while TikTok restricts the app, is under maintenance, or stays restricted beyond the run's budget.

Each outage lasts longer than the ~30 s the client used to retry (6 attempts, back-off up to 31 s in
all), yet the runs take well under a minute: short back-off caps and budgets come in through the
TikTok resource's config, as a user would set them.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

from tiktok_amp_emulators.faults import Fault

from ..conftest import API_KEY, Project
from .test_cli import dagster_cli

FIRST = date(2025, 3, 1)
LAST = FIRST + timedelta(days=3)
# The attempt-based policy this replaces gave up after at most 1 + 2 + 4 + 8 + 16 = 31 s of waiting.
OLD_RETRY_SECONDS = 31


def materialize(project: Project, tmp_path: Path, **tiktok_config: float) -> subprocess.CompletedProcess[str]:
    """The 4-day range through the `dagster` CLI, the TikTok resource configured as a user would."""
    config = tmp_path / "tiktok.yaml"
    lines = [
        "resources:",
        "  tiktok_ads_tiktok:",
        "    config:",
        "      access_token: {env: TIKTOK_ACCESS_TOKEN}",
        "      advertiser_ids: {env: TIKTOK_ADVERTISER_IDS}",
        "      api_url: {env: TIKTOK_API_URL}",
        *(f"      {name}: {value}" for name, value in tiktok_config.items()),
    ]
    config.write_text("\n".join(lines) + "\n")
    return dagster_cli(
        project,
        "asset", "materialize", "-m", "tiktok_amp_assets.definitions", "--select", "group:tiktok_ads",
        "--partition-range", f"{FIRST.isoformat()}...{LAST.isoformat()}", "--config", str(config),
    )  # fmt: skip


def assert_every_ad_day_exactly_once(project: Project) -> None:
    days = [FIRST + timedelta(days=offset) for offset in range((LAST - FIRST).days + 1)]
    events = Counter(
        (event["event_properties"]["ad_account_id"], event["event_properties"]["ad_id"],
         event["event_properties"]["stat_date"])
        for event in project.amplitude.counted_events(API_KEY)
    )  # fmt: skip
    expected = {(account, ad, day.isoformat()) for day in days for account, ad in project.tiktok_truth(day)}
    assert expected and set(events) == expected
    assert set(events.values()) == {1}
    for day in days:
        assert project.amplitude_sums(day) == project.tiktok_truth(day)


def test_a_restriction_then_maintenance_longer_than_the_old_retries_end_in_a_complete_run(
    project: Project, tmp_path: Path
) -> None:
    faults = project.tiktok.faults
    faults.inject_for(Fault.APP_RESTRICTED, seconds=OLD_RETRY_SECONDS + 3)
    faults.inject_for(Fault.MAINTENANCE, seconds=3)
    faults.inject_for(Fault.TOO_MANY_REQUESTS_BLOCKED, seconds=3)

    result = materialize(
        project, tmp_path, retry_budget_minutes=1.5, backoff_base_seconds=1, backoff_max_seconds=4
    )

    assert result.returncode == 0, result.stderr[-3000:]
    assert {fault: count > 0 for fault, count in faults.injected.items()} == {
        Fault.APP_RESTRICTED: True,
        Fault.MAINTENANCE: True,
        Fault.TOO_MANY_REQUESTS_BLOCKED: True,
    }
    output = result.stdout + result.stderr
    for waiting in (
        "TikTok restricted requests: waiting ",
        "TikTok is under maintenance: waiting ",
        "TikTok blocked requests for too many requests: waiting ",
    ):
        assert waiting in output
    assert " of up to 90 s (ad accounts " in output
    assert_every_ad_day_exactly_once(project)


def test_a_restriction_outlasting_the_budget_fails_naming_the_wait_and_what_to_do(
    project: Project, tmp_path: Path
) -> None:
    project.tiktok.faults.inject_for(Fault.APP_RESTRICTED, seconds=300)

    result = materialize(
        project, tmp_path, retry_budget_minutes=0.2, backoff_base_seconds=1, backoff_max_seconds=3
    )

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "(code 40100): TikTok restricted requests: Due to too many requests, requests from App" in output
    assert "the run's retry budget of 12 s (shared by its accounts) is spent" in output
    assert "no other job uses the same app or token" in output and "retry_budget_minutes" in output
    for advertiser_id in project.advertiser_ids:
        assert advertiser_id in output
    assert project.amplitude.counted_events(API_KEY) == []
