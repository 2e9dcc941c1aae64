"""Missing or malformed configuration fails early, naming the variable and what it expects."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from tiktok_amp_assets.code_location import connection_definitions
from tiktok_amp_assets.component import DEFAULT_DEFS_YAML, load_connection
from tiktok_amp_assets.connection import Connection
from tiktok_amp_assets.schedules import RANGE_END_TAG, RANGE_START_TAG
from tiktok_amp_assets.settings import ConfigurationError, DeploymentSettings

from ..conftest import Project


def test_missing_credentials_fail_the_run_in_one_line_naming_every_one(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIKTOK_ACCESS_TOKEN")
    monkeypatch.delenv("AMPLITUDE_API_KEY")
    project.rebuild()  # as the run's process loads the code location, in its own environment
    result = project.materialize(date(2025, 3, 1), raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    message = failure.step_failure_data.error.message.removeprefix(
        "dagster._core.definitions.events.Failure: "
    )
    assert message.strip() == (
        f"TIKTOK_ACCESS_TOKEN, AMPLITUDE_API_KEY are not set (connection tiktok_ads, {DEFAULT_DEFS_YAML}): set "
        "them in the environment of the code location and its runs (for dagster dev, a .env file in the project folder; in production, your secret store or "
        "deployment environment), as the README's 'Configure it for real accounts' lists, then run again"
    )
    assert failure.step_failure_data.error.cause is None  # no config traceback behind it
    assert project.tiktok.request_log == [] and project.amplitude.requests_count() == 0


@pytest.mark.parametrize("ids", ["", "acme, 123", "7000000000000000001;7000000000000000002"])
def test_malformed_advertiser_ids_name_the_variable(
    project: Project, monkeypatch: pytest.MonkeyPatch, ids: str
) -> None:
    monkeypatch.setenv("TIKTOK_ADVERTISER_IDS", ids)
    result = project.materialize(date(2025, 3, 1), raise_on_error=False)
    assert not result.success
    message = next(
        event for event in result.all_events if event.is_step_failure
    ).step_failure_data.error.message
    assert "TIKTOK_ADVERTISER_IDS" in message
    assert project.tiktok.request_log == [], "no data should move with a bad configuration"


def test_plain_http_to_a_remote_host_is_refused(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMPLITUDE_API_URL", "http://api2.amplitude.com")
    project.rebuild()
    result = project.materialize(date(2025, 3, 1), raise_on_error=False)
    # Refused as the run starts (the amplitude resource), before anything is fetched from TikTok.
    failure = next(event for event in result.all_events if event.event_type_value == "RESOURCE_INIT_FAILURE")
    message = failure.event_specific_data.error.message
    assert "AMPLITUDE_API_URL" in message and "https" in message
    assert project.tiktok.request_log == []


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TIKTOK_AMP_START_DATE", "01/12/2025"),
        ("TIKTOK_AMP_TIMEZONE", "Pacific Time"),
        ("TIKTOK_AMP_SCHEDULE_HOUR", "25"),
        ("TIKTOK_AMP_LOOKBACK_DAYS", "-1"),
    ],
)
def test_malformed_load_settings_name_the_file_the_field_and_the_variable(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as caught:
        load_connection(DEFAULT_DEFS_YAML)
    message = str(caught.value)
    assert str(DEFAULT_DEFS_YAML) in message and name in message and repr(value) in message


def _connection(tmp_path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Connection:
    """The default connection read from its defs.yaml in an environment of only ``env``."""
    for variable in ("START_DATE", "TIMEZONE", "SCHEDULE_HOUR", "LOOKBACK_DAYS", "FRESHNESS_HOUR"):
        monkeypatch.delenv(f"TIKTOK_AMP_{variable}", raising=False)
    for variable, value in env.items():
        monkeypatch.setenv(f"TIKTOK_AMP_{variable.upper()}", value)
    monkeypatch.setenv("TIKTOK_AMP_DATA_DIR", str(tmp_path))
    return load_connection(DEFAULT_DEFS_YAML)


def _tick(settings: Connection, when: datetime) -> dg.RunRequest | dg.SkipReason:
    defs = connection_definitions(settings, DeploymentSettings.from_env())
    schedule = defs.resolve_schedule_def(settings.schedule_name)
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    with dg.instance_for_test() as instance:
        result = schedule.evaluate_tick(
            dg.build_schedule_context(
                scheduled_execution_time=when, instance=instance, repository_def=defs.get_repository_def()
            )
        )
    return (result.run_requests or [None])[0] or result.skip_message


def test_the_schedule_targets_yesterday(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _connection(tmp_path, monkeypatch, timezone="America/New_York", lookback_days="0")
    # The tick's day is read in the partitions' zone: 06:00 on the 24th in New York is 11:00 UTC.
    request = _tick(settings, datetime(2026, 11, 24, 6, 0, tzinfo=ZoneInfo("America/New_York")))
    assert request.partition_key == "2026-11-23"


def test_the_schedule_reimports_the_lookback_window_in_one_run(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _connection(tmp_path, monkeypatch, timezone="UTC", lookback_days="7")
    request = _tick(settings, datetime(2026, 11, 24, 6, 0, tzinfo=ZoneInfo("UTC")))
    assert request.tags[RANGE_START_TAG] == "2026-11-16"
    assert request.tags[RANGE_END_TAG] == "2026-11-23"


def test_by_default_the_schedule_rereads_tiktoks_longest_attribution_window(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A 28-day click-through window, counted on the day of the click, plus a day of TikTok's processing.
    settings = _connection(tmp_path, monkeypatch)
    assert settings.lookback_days == 28 + 1
    request = _tick(settings, datetime(2026, 11, 24, 6, 0, tzinfo=ZoneInfo("UTC")))
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == ("2026-10-25", "2026-11-23")


def test_the_schedule_never_asks_for_days_before_the_start(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    start = date(2026, 11, 20)
    settings = _connection(tmp_path, monkeypatch, start_date=start.isoformat(), lookback_days="7")
    request = _tick(settings, datetime(2026, 11, 22, 6, 0, tzinfo=ZoneInfo("UTC")))
    assert request.tags[RANGE_START_TAG] == start.isoformat()
    skipped = _tick(settings, datetime(2026, 11, 20, 6, 0, tzinfo=ZoneInfo("UTC")))
    assert isinstance(skipped, str) and "before the first partition" in skipped
