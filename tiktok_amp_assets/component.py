"""``tiktok_amp_assets.TikTokAdsToAmplitude``: one connection, described by one ``defs.yaml``.

A connection is one TikTok access token's ad accounts imported into one Amplitude project. Each lives
in its own folder under ``tiktok_amp_assets/defs/`` (the default: ``defs/tiktok_ads/defs.yaml``);
adding one is copying that folder under a new name, setting ``name`` to the folder's name and
prefixing the variable names it holds (README, "Several clients: connections").

A value can be written in the file, or as ``{env: VARIABLE}`` (optionally with a ``default``) to be
read from the environment. Secrets (TikTok's token, Amplitude's API key) can only be written so: the
file holds the variable's *name*, the value is read when a run starts (``dg.EnvVar``), the UI shows
the name, and a missing variable fails only this connection's runs, at their first step, in one line
naming every missing variable. (``{{ env.X }}`` templating would read the value when the code
location loads, show it in the UI, and fail every connection when one variable is unset.) Settings
that shape the partitions and the schedule (start date, time zone, hours, lookback) are read when
the code location loads; a malformed one stops the load naming the file, the field and the variable.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dagster as dg
import yaml
from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError

from tiktok_amp_assets.clients.tiktok import DEFAULT_RETRY_BUDGET_SECONDS
from tiktok_amp_assets.connection import (
    ADVERTISER_ID_PATTERN,
    DEFAULT_LOAD_VARIABLES,
    DEFAULT_TIKTOK_POOL,
    Connection,
    RunValue,
)
from tiktok_amp_assets.core import amplitude_contract, tiktok_contract
from tiktok_amp_assets.settings import ConfigurationError, environment_value

# The default connection's file (README: copied to add a connection).
DEFAULT_DEFS_YAML = Path(__file__).resolve().parent / "defs" / "tiktok_ads" / "defs.yaml"
# Used in asset keys, the group, job, schedule and resource names: what Dagster allows in all of them.
NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
VARIABLE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
# Fixed, so partitions never shift under existing materializations; about a year of history.
DEFAULT_START_DATE = "2025-12-01"
# Basic metrics of a day are mostly complete a few hours after it ends.
DEFAULT_SCHEDULE_HOUR = 6
# TikTok reports count a conversion on the day of the ad interaction (help: "reporting discrepancies
# between TikTok Ads Manager and MMPs"), and an ad group's click-through window may be 1, 7, 14 or 28
# days (help: "attribution settings at the ad group level"): a day keeps changing for 28 days, plus a
# day of processing. Lower it only when every ad group uses a shorter window (README).
DEFAULT_LOOKBACK_DAYS = 29
MAX_LOOKBACK_DAYS = 90
# Yesterday's partition should be in Amplitude this many hours after the schedule starts it.
FRESHNESS_GRACE_HOURS = 4


def _digits_as_text(value: Any) -> Any:
    # YAML (and the components' templating) reads 7000000000000000001 as a number; an id is text.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


# (The pattern before the validator: pydantic leaves a constraint placed after it out of the JSON
# schema that `dg check yaml` checks files against.)
AdvertiserId = Annotated[str, Field(pattern=ADVERTISER_ID_PATTERN), BeforeValidator(_digits_as_text)]
Hour = Annotated[int, Field(ge=0, le=23)]
LookbackDays = Annotated[int, Field(ge=0, le=MAX_LOOKBACK_DAYS)]
IsoDate = Annotated[str, Field(pattern=r"^\d{4}-\d{2}-\d{2}$")]


class FromEnv(dg.Model, dg.Resolvable):
    """A value held by an environment variable: ``{env: ACME_TIKTOK_ACCESS_TOKEN}``."""

    env: str = Field(pattern=VARIABLE_PATTERN, description="The variable's name.")
    # (Templating reads a default of digits as a number.)
    default: str | int | float | None = Field(
        default=None, description="The value when the variable is unset."
    )


class TikTokAdsToAmplitude(dg.Component, dg.Model, dg.Resolvable):
    """Imports one TikTok access token's ad accounts into one Amplitude project, as three daily-
    partitioned assets prefixed with the connection's name, in a group of that name, with their own
    job, schedule, checks and resources."""

    name: str = Field(pattern=NAME_PATTERN, description="The connection: its folder's name.")
    amplitude_project: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description=(
            "A stable name of the Amplitude project (default: the connection's name). The ledger keys what "
            "Amplitude counted by it: connections feeding one project share it; a new API key keeps it."
        ),
    )
    tiktok_pool: str = Field(
        default=DEFAULT_TIKTOK_POOL,
        description="Concurrency pool of TikTok calls: connections of one TikTok app share one (the default).",
    )
    tiktok_access_token: FromEnv = Field(description="The variable holding the long-term access token.")
    advertiser_ids: list[AdvertiserId] | FromEnv = Field(
        description="The ad account ids, or the variable holding them comma-separated."
    )
    tiktok_api_url: str | FromEnv = tiktok_contract.DEFAULT_API_URL
    tiktok_requests_per_second: float = Field(
        default=10.0, gt=0, description="Request rate shared by a run's calls."
    )
    tiktok_retry_budget_minutes: float = Field(
        default=DEFAULT_RETRY_BUDGET_SECONDS / 60,
        ge=0,
        description="How long a run waits out TikTok's restrictions and outages (docs/retry_budget.md).",
    )
    amplitude_api_key: FromEnv = Field(description="The variable holding the Amplitude project's API key.")
    amplitude_api_url: str | FromEnv = Field(
        default=amplitude_contract.DEFAULT_API_URL,
        description="https://api2.amplitude.com (US) or https://api.eu.amplitude.com (EU residency).",
    )
    amplitude_endpoint: Literal["auto", "http_v2", "batch"] = "auto"
    timezone: str | FromEnv = "UTC"
    start_date: IsoDate | FromEnv = DEFAULT_START_DATE
    schedule_hour: Hour | FromEnv = DEFAULT_SCHEDULE_HOUR
    lookback_days: LookbackDays | FromEnv = DEFAULT_LOOKBACK_DAYS
    restatement_policy: Literal["correct", "freeze"] | FromEnv = "correct"
    freshness_hour: Hour | FromEnv | None = Field(
        default=None, description=f"Default: the schedule's hour + {FRESHNESS_GRACE_HOURS} (at most 23)."
    )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from tiktok_amp_assets.code_location import connection_definitions

        return connection_definitions(self.connection(str(context.path / "defs.yaml")))

    def connection(self, source: str) -> Connection:
        """The connection with its load-time settings read (a malformed one names ``source``, the
        field and the variable) and its run-time values as variable names."""
        loaded = _LoadTimeReader(self, source)
        schedule_hour = loaded.value("schedule_hour", int, "an hour of the day, 0 to 23", low=0, high=23)
        freshness_hour = loaded.value(
            "freshness_hour",
            int,
            f"the hour of the day (not before schedule_hour, {schedule_hour}) by which yesterday must be in Amplitude",
            low=schedule_hour,
            high=23,
            default=min(23, schedule_hour + FRESHNESS_GRACE_HOURS),
        )
        return Connection(
            name=self.name,
            source=source,
            amplitude_project=self.amplitude_project or self.name,
            tiktok_pool=self.tiktok_pool,
            start_date=loaded.start_date(),
            timezone=loaded.timezone(),
            schedule_hour=schedule_hour,
            lookback_days=loaded.value(
                "lookback_days", int, "a number of days (0 disables)", low=0, high=MAX_LOOKBACK_DAYS
            ),
            restatement_policy=loaded.value(
                "restatement_policy", Literal["correct", "freeze"], "correct or freeze"
            ),
            freshness_hour=freshness_hour,
            tiktok_access_token=_run_value(self.tiktok_access_token),
            advertiser_ids=_advertiser_ids(self.advertiser_ids),
            tiktok_api_url=_run_value(self.tiktok_api_url),
            tiktok_requests_per_second=self.tiktok_requests_per_second,
            tiktok_retry_budget_minutes=self.tiktok_retry_budget_minutes,
            amplitude_api_key=_run_value(self.amplitude_api_key),
            amplitude_api_url=_run_value(self.amplitude_api_url),
            amplitude_endpoint=self.amplitude_endpoint,
            load_variables={
                setting: value.env
                for setting in DEFAULT_LOAD_VARIABLES
                if isinstance(value := getattr(self, setting), FromEnv)
            },
        )


def _run_value(value: str | FromEnv) -> RunValue:
    if isinstance(value, FromEnv):
        return RunValue(variable=value.env, default=None if value.default is None else str(value.default))
    return RunValue(default=value)


def _advertiser_ids(value: list[str] | FromEnv) -> RunValue:
    if isinstance(value, FromEnv):
        return _run_value(value)
    return RunValue(default=",".join(value))


class _LoadTimeReader:
    """Reads a component's load-time settings, from the file or from the variable it names."""

    def __init__(self, component: TikTokAdsToAmplitude, source: str) -> None:
        self._component = component
        self._source = source

    def _raw(self, field: str, default: Any = None) -> tuple[Any, str]:
        """The field's value (a variable's text when it names one) and how a message names it."""
        value = getattr(self._component, field)
        where = f"{self._source}: {field}"
        if isinstance(value, FromEnv):
            where = f"{where} (the variable {value.env})"
            value = environment_value(value.env) or value.default
        return (default if value is None else value), where

    def value(
        self, field: str, kind: Any, meaning: str, *, low: int | None = None, high: int | None = None,
        default: Any = None,
    ) -> Any:  # fmt: skip
        raw, where = self._raw(field, default)
        if raw is None:
            raw = TikTokAdsToAmplitude.model_fields[field].default
        try:
            value = TypeAdapter(kind).validate_python(raw)
        except ValidationError:
            value = None
        if value is None or (low is not None and not low <= value <= (high if high is not None else value)):
            bounds = f", a whole number from {low} to {high}" if low is not None else ""
            raise ConfigurationError(f"{where} must be {meaning}{bounds}; got {raw!r}")
        return value

    def start_date(self) -> date:
        raw, where = self._raw("start_date", DEFAULT_START_DATE)
        try:
            return date.fromisoformat(str(raw))
        except ValueError:
            raise ConfigurationError(
                f"{where} must be a date written YYYY-MM-DD, such as 2025-12-01; got {raw!r}"
            ) from None

    def timezone(self) -> str:
        raw, where = self._raw("timezone", "UTC")
        try:
            ZoneInfo(str(raw))
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(
                f"{where} must be an IANA time zone name such as America/Los_Angeles or UTC; got {raw!r}"
            ) from None
        return str(raw)


def load_connection(defs_yaml: Path) -> Connection:
    """The connection a ``defs.yaml`` describes, read as the code location reads it (its variables
    from this process's environment): for tools and tests that look at one connection."""
    declaration = yaml.safe_load(defs_yaml.read_text(encoding="utf-8"))
    component = TikTokAdsToAmplitude.resolve_from_dict(declaration.get("attributes") or {})
    return component.connection(str(defs_yaml))
