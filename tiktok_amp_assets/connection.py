"""One connection as the definitions use it: a TikTok token's ad accounts into one Amplitude project.

A :class:`Connection` is what ``component.py`` resolves a ``defs.yaml`` into when the code location
loads: the settings that shape partitions and the schedule as values, and the run-time values
(secrets, accounts, URLs) as the *names* of the variables that hold them, read at launch through
``dg.EnvVar`` (the UI shows names, a missing variable fails only this connection's runs). It also
says how everything of the connection is named, so that no two connections' names meet in one
``Definitions``: asset keys prefixed with the connection's name (``acme/tiktok_raw_reports``), its
group, job, schedule, sensor and resource keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

import dagster as dg

from tiktok_amp_assets.settings import ConfigurationError, environment_value

# Concurrency pools: cap how many steps call each API at once across all runs (dagster.yaml). TikTok
# limits requests per app ("requests from App ... are temporarily restricted": airbytehq/airbyte issue
# 70992), and one app usually serves every token of a deployment: all connections share this pool
# unless their defs.yaml names another (tiktok_pool). Amplitude: a pool per Amplitude project,
# AMPLITUDE_POOL + "_" + its amplitude_project (Connection.amplitude_pool).
DEFAULT_TIKTOK_POOL = "tiktok_api"
AMPLITUDE_POOL = "amplitude_api"
# The connection of a single-client deployment: tiktok_amp_assets/defs/tiktok_ads/defs.yaml. Also the
# Amplitude project the ledger's rows from before connections existed belong to (storage/ledger.py).
DEFAULT_CONNECTION = "tiktok_ads"
# The variables of the default connection (defs/tiktok_ads/defs.yaml), by field: the names the clients'
# messages and TikTok's error hints use, said in each connection's own names (Connection.in_its_words).
DEFAULT_VARIABLES = {
    "tiktok_access_token": "TIKTOK_ACCESS_TOKEN",
    "advertiser_ids": "TIKTOK_ADVERTISER_IDS",
    "tiktok_api_url": "TIKTOK_API_URL",
    "amplitude_api_key": "AMPLITUDE_API_KEY",
    "amplitude_api_url": "AMPLITUDE_API_URL",
}
DEFAULT_LOAD_VARIABLES = {
    "start_date": "TIKTOK_AMP_START_DATE",
    "timezone": "TIKTOK_AMP_TIMEZONE",
    "schedule_hour": "TIKTOK_AMP_SCHEDULE_HOUR",
    "lookback_days": "TIKTOK_AMP_LOOKBACK_DAYS",
    "restatement_policy": "TIKTOK_AMP_RESTATEMENT_POLICY",
    "freshness_hour": "TIKTOK_AMP_FRESHNESS_HOUR",
}
ADVERTISER_ID_PATTERN = r"^[0-9]{5,25}$"
_ADVERTISER_ID = re.compile(ADVERTISER_ID_PATTERN)
_FIELD_OF = {
    variable: field_name for field_name, variable in {**DEFAULT_VARIABLES, **DEFAULT_LOAD_VARIABLES}.items()
}
_DEFAULT_NAME = re.compile(r"(?<![A-Z0-9_])(" + "|".join(_FIELD_OF) + r")(?![A-Z0-9_])")


@dataclass(frozen=True)
class RunValue:
    """A value read when a run starts: from ``variable`` when set, else ``default``. Without a
    default the variable is required, and a run without it fails at its first step, naming it."""

    variable: str | None = None
    default: str | None = None

    @property
    def required(self) -> bool:
        return self.variable is not None and self.default is None

    def for_resource(self) -> str | dg.EnvVar:
        """Through ``EnvVar`` when set where the code location loads (resolved at launch), else the
        default (empty when required: the run then starts and its first step names every missing
        variable in one line, not Dagster's config traceback per variable)."""
        if self.variable is not None and environment_value(self.variable):
            return dg.EnvVar(self.variable)
        return self.default or ""


@dataclass(frozen=True)
class Connection:
    name: str
    source: str  # the defs.yaml it comes from, for messages
    amplitude_project: str
    tiktok_pool: str = DEFAULT_TIKTOK_POOL
    start_date: date = date(2025, 12, 1)
    timezone: str = "UTC"
    schedule_hour: int = 6
    lookback_days: int = 29
    restatement_policy: Literal["correct", "freeze"] = "correct"
    freshness_hour: int = 10
    tiktok_access_token: RunValue = field(default_factory=RunValue)
    advertiser_ids: RunValue = field(default_factory=RunValue)
    tiktok_api_url: RunValue = field(default_factory=RunValue)
    tiktok_requests_per_second: float = 10.0
    tiktok_retry_budget_minutes: float = 15.0  # component.py's default (DEFAULT_RETRY_BUDGET_SECONDS)
    amplitude_api_key: RunValue = field(default_factory=RunValue)
    amplitude_api_url: RunValue = field(default_factory=RunValue)
    amplitude_endpoint: Literal["auto", "http_v2", "batch"] = "auto"
    # The variables the load-time settings were read from (timezone: ACME_TIKTOK_AMP_TIMEZONE, ...).
    load_variables: dict[str, str] = field(default_factory=dict)

    # What the connection's things are called.

    @property
    def group(self) -> str:
        return self.name

    def asset_key(self, asset: str) -> dg.AssetKey:
        return dg.AssetKey([self.name, asset])

    def step_key(self, asset: str) -> str:
        """The step that materializes ``asset`` (Dagster joins a key's parts with two underscores)."""
        return f"{self.name}__{asset}"

    @property
    def job_name(self) -> str:
        return f"{self.name}_job"

    @property
    def schedule_name(self) -> str:
        return f"{self.name}_daily"

    def resource_key(self, resource: str) -> str:
        return f"{self.name}_{resource}"

    @property
    def amplitude_pool(self) -> str:
        """One pool per Amplitude project: connections feeding one project share its limits."""
        return f"{AMPLITUDE_POOL}_{self.amplitude_project}"

    def names(self, *fields: str) -> dict[str, str]:
        """How messages name each field's value: its variable, or the field of the connection's file."""
        names: dict[str, str] = {}
        for field_name in fields:
            variable = getattr(self, field_name).variable
            names[field_name] = variable or f"{field_name} in {self.source}"
        return names

    def in_its_words(self, message: str) -> str:
        """``message`` (a client's, TikTok's hint, a check's) with the default connection's variable
        names replaced by this connection's."""
        names = self.names(*DEFAULT_VARIABLES)
        names.update(
            (setting, self.load_variables.get(setting, f"{setting} in {self.source}"))
            for setting in DEFAULT_LOAD_VARIABLES
        )
        return _DEFAULT_NAME.sub(lambda match: names[_FIELD_OF[match.group(0)]], message)

    def required_variables(self) -> list[str]:
        values = (self.tiktok_access_token, self.advertiser_ids, self.amplitude_api_key)
        return [value.variable for value in values if value.required and value.variable is not None]


def advertiser_id_list(text: str, where: str) -> list[str]:
    """Ad account ids written comma-separated (a variable's value), checked; ``where`` names it."""
    ids = [part.strip() for part in text.split(",") if part.strip()]
    bad = [advertiser_id for advertiser_id in ids if not _ADVERTISER_ID.match(advertiser_id)]
    if not ids or bad:
        raise ConfigurationError(
            f"{where} must list TikTok ad account ids (digits) separated by commas, "
            f"such as 7000000000000000001,7000000000000000002; "
            + (f"these are not ids: {', '.join(repr(b) for b in bad)}" if bad else "it is empty")
        )
    return list(dict.fromkeys(ids))
