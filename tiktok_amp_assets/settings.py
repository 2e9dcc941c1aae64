"""Settings that shape the Dagster definitions themselves, read once when the code location loads.

Partitions and the schedule must exist before any run starts, so their settings come from the
environment at load time; secrets and API settings are resources, resolved through ``EnvVar`` at
launch (see ``resources.py``). A malformed value stops the load with a message naming the variable.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict

from tiktok_amp_assets.storage.locations import (
    DATA_DIR_VAR,
    LEDGER_URL_VAR,
    StorageConfigurationError,
    data_folder_setting,
    ledger_database_url,
    open_data_folder,
)

START_DATE_VAR = "TIKTOK_AMP_START_DATE"
TIMEZONE_VAR = "TIKTOK_AMP_TIMEZONE"
SCHEDULE_HOUR_VAR = "TIKTOK_AMP_SCHEDULE_HOUR"
LOOKBACK_DAYS_VAR = "TIKTOK_AMP_LOOKBACK_DAYS"
RESTATEMENT_POLICY_VAR = "TIKTOK_AMP_RESTATEMENT_POLICY"
FRESHNESS_HOUR_VAR = "TIKTOK_AMP_FRESHNESS_HOUR"

# Fixed, so partitions never shift under existing materializations; about a year of history.
DEFAULT_START_DATE = date(2025, 12, 1)
DEFAULT_TIMEZONE = "UTC"
# Basic metrics of a day are mostly complete a few hours after it ends.
DEFAULT_SCHEDULE_HOUR = 6
# TikTok reports count a conversion on the day of the ad interaction (help: "reporting discrepancies
# between TikTok Ads Manager and MMPs"), and an ad group's click-through window may be 1, 7, 14 or 28
# days (help: "attribution settings at the ad group level"): a day keeps changing for 28 days, plus a
# day of processing. Lower it only when every ad group uses a shorter window (README).
DEFAULT_LOOKBACK_DAYS = 29
MAX_LOOKBACK_DAYS = 90
RESTATEMENT_POLICIES = ("correct", "freeze")
# Yesterday's partition should be in Amplitude this many hours after the schedule starts it.
FRESHNESS_GRACE_HOURS = 4


class ConfigurationError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it expects."""


# A local folder's absolute path or an object-store URL such as s3://bucket/prefix (a path given as a
# pathlib.Path is taken as its text).
DataFolder = Annotated[
    str, BeforeValidator(lambda value: os.fspath(value) if isinstance(value, os.PathLike) else value)
]


class ProjectSettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    start_date: date = DEFAULT_START_DATE
    timezone: str = DEFAULT_TIMEZONE
    schedule_hour: int = DEFAULT_SCHEDULE_HOUR
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    restatement_policy: Literal["correct", "freeze"] = "correct"
    freshness_hour: int = min(23, DEFAULT_SCHEDULE_HOUR + FRESHNESS_GRACE_HOURS)
    data_dir: DataFolder

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ProjectSettings:
        env = os.environ if env is None else env
        schedule_hour = _int_setting(
            env, SCHEDULE_HOUR_VAR, DEFAULT_SCHEDULE_HOUR, 0, 23, "an hour of the day"
        )
        return cls(
            start_date=_date_setting(env, START_DATE_VAR, DEFAULT_START_DATE),
            timezone=_timezone_setting(env, TIMEZONE_VAR, DEFAULT_TIMEZONE),
            schedule_hour=schedule_hour,
            freshness_hour=_int_setting(
                env,
                FRESHNESS_HOUR_VAR,
                min(23, schedule_hour + FRESHNESS_GRACE_HOURS),
                schedule_hour,
                23,
                "the hour of the day (not before TIKTOK_AMP_SCHEDULE_HOUR) by which yesterday must be in Amplitude",
            ),
            restatement_policy=_choice_setting(env, RESTATEMENT_POLICY_VAR, RESTATEMENT_POLICIES),
            lookback_days=_int_setting(
                env,
                LOOKBACK_DAYS_VAR,
                DEFAULT_LOOKBACK_DAYS,
                0,
                MAX_LOOKBACK_DAYS,
                "a number of days (0 disables)",
            ),
            data_dir=_data_dir_setting(env),
        )


def environment_value(name: str) -> str | None:
    """A variable of this process's environment, stripped; None when unset or blank. The one place
    the project reads its environment (here and in :meth:`ProjectSettings.from_env`)."""
    return _value(os.environ, name)


def _value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _date_setting(env: Mapping[str, str], name: str, default: date) -> date:
    value = _value(env, name)
    if value is None:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ConfigurationError(
            f"{name} must be a date written YYYY-MM-DD, such as 2025-12-01; got {value!r}"
        ) from None


def _timezone_setting(env: Mapping[str, str], name: str, default: str) -> str:
    value = _value(env, name) or default
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"{name} must be an IANA time zone name such as America/Los_Angeles or UTC; got {value!r}"
        ) from None
    return value


def _int_setting(env: Mapping[str, str], name: str, default: int, low: int, high: int, meaning: str) -> int:
    value = _value(env, name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = low - 1
    if not low <= number <= high:
        raise ConfigurationError(
            f"{name} must be {meaning}, a whole number from {low} to {high}; got {value!r}"
        )
    return number


def _choice_setting(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    value = (_value(env, name) or choices[0]).lower()
    if value not in choices:
        raise ConfigurationError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return value


def _data_dir_setting(env: Mapping[str, str]) -> str:
    """The data folder, and a check that the ledger has a home that suits it (TIKTOK_AMP_LEDGER_URL
    itself is a secret: it reaches the runs through ``dg.EnvVar``, and is only checked here)."""
    value = _value(env, DATA_DIR_VAR)
    if value is None:
        dagster_home = _value(env, "DAGSTER_HOME")
        value = os.path.join(dagster_home or os.getcwd(), "tiktok_amp_data")
    try:
        data_dir = data_folder_setting(value)
        ledger_database_url(open_data_folder(data_dir), _value(env, LEDGER_URL_VAR))
    except StorageConfigurationError as error:
        raise ConfigurationError(str(error)) from None
    return data_dir
