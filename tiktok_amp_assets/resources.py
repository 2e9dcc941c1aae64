"""Dagster resources: the configuration of each API and of where the state lives.

Secrets come in through ``dg.EnvVar`` (the UI shows the variable's name, never its value) and are
kept out of ``repr``. Each resource builds the plain client the assets use.
"""

from __future__ import annotations

from typing import Any, Literal

import dagster as dg
from pydantic import Field

from tiktok_amp_assets.clients.amplitude import AmplitudeClient
from tiktok_amp_assets.clients.http import (
    InsecureUrlError,
    OutageBudget,
    RequestPacer,
    RetryPolicy,
    checked_base_url,
)
from tiktok_amp_assets.clients.tiktok import DEFAULT_RETRY_BUDGET_SECONDS, TikTokClient
from tiktok_amp_assets.connection import DEFAULT_CONNECTION, DEFAULT_VARIABLES, advertiser_id_list
from tiktok_amp_assets.core import amplitude_contract as amp
from tiktok_amp_assets.core import tiktok_contract as tiktok_api
from tiktok_amp_assets.settings import ConfigurationError
from tiktok_amp_assets.storage.import_store import ImportStore
from tiktok_amp_assets.storage.locations import StorageConfigurationError


class TikTokResource(dg.ConfigurableResource):
    """The TikTok API for Business: which ad accounts to read and how hard to push the API."""

    access_token: str = Field(repr=False, description="Long-term access token.")
    advertiser_ids: str = Field(description="Ad account ids to import, comma-separated.")
    api_url: str = Field(default=tiktok_api.DEFAULT_API_URL, description="Base URL.")
    names: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_VARIABLES),
        description="Where each value comes from (its variable), as messages name it.",
    )
    requests_per_second: float = Field(
        default=10.0, gt=0, description="Request rate shared by a run's calls."
    )
    retry_budget_minutes: float = Field(
        default=DEFAULT_RETRY_BUDGET_SECONDS / 60,
        ge=0,
        description=(
            "How long a run waits out TikTok restricting requests, maintenance and server errors before "
            "the accounts still failing fail, in minutes. Shared by the run's accounts: 30 accounts meeting "
            "the same outage spend it once, not 30 times; a successful request refills it."
        ),
    )
    backoff_base_seconds: float = Field(
        default=1.0, ge=0, description="First wait after a failure; each further one doubles (with jitter)."
    )
    backoff_max_seconds: float = Field(default=60.0, ge=0, description="Longest single wait between tries.")
    timeout_seconds: float = Field(default=60.0, gt=0)
    allow_insecure_http: bool = Field(default=False, description="Allow http:// to a non-loopback host.")

    def advertiser_id_list(self) -> list[str]:
        return advertiser_id_list(self.advertiser_ids, self.names["advertiser_ids"])

    def client(self, logger: Any = None) -> TikTokClient:
        """A client for one run: its pacer and its retry budget are shared by every request the run makes."""
        if not self.access_token.strip():
            raise ConfigurationError(
                f"{self.names['tiktok_access_token']} is empty: set it to the app's long-term access token"
            )
        try:
            return TikTokClient(
                checked_base_url(
                    self.api_url,
                    variable=self.names["tiktok_api_url"],
                    allow_insecure_http=self.allow_insecure_http,
                ),
                self.access_token.strip(),
                retry=RetryPolicy(
                    base_seconds=self.backoff_base_seconds, max_seconds=self.backoff_max_seconds
                ),
                budget=OutageBudget(self.retry_budget_minutes * 60),
                pacer=RequestPacer(self.requests_per_second),
                timeout_seconds=self.timeout_seconds,
                logger=logger,
            )
        except ValueError as error:  # an insecure URL or a token no header can carry; never quotes the token
            raise ConfigurationError(str(error)) from None


class AmplitudeResource(dg.ConfigurableResource):
    """Amplitude's ingestion API: where events go and how corrections are handled."""

    api_key: str = Field(repr=False, description="The Amplitude project's API key.")
    api_url: str = Field(default=amp.DEFAULT_API_URL, description="Base URL (US or EU).")
    names: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_VARIABLES),
        description="Where each value comes from (its variable), as messages name it.",
    )
    endpoint: Literal["auto", "http_v2", "batch"] = Field(
        default="auto",
        description="auto: Batch Event Upload for runs over several days (backfills), HTTP V2 for one day.",
    )
    dry_run: bool = Field(default=False, description="Build and record events without sending them.")
    restatement_policy: Literal["correct", "freeze"] = Field(
        default="correct",
        description="correct: send the difference when TikTok revises a counted day; freeze: never.",
    )
    max_attempts: int = Field(default=6, ge=1)
    backoff_base_seconds: float = Field(default=1.0, ge=0)
    backoff_max_seconds: float = Field(default=60.0, ge=0)
    throttle_pause_seconds: float = Field(
        default=amp.THROTTLE_PAUSE_SECONDS,
        ge=0,
        description="How long a device Amplitude throttled (429) waits; other devices go on meanwhile.",
    )
    max_events_per_request: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Fewer events per request than Amplitude allows (2,000 on both endpoints, never more). "
            "Unset: as many as fit, bytes permitting."
        ),
    )
    http_v2_events_per_second: float | None = Field(
        default=None,
        ge=1,
        description=(
            "Project-wide pace of HTTP V2 uploads, in events per second (unset: no cap beyond Amplitude's "
            f"per-device limits). Starter plans: {amp.STARTER_PLAN_EVENTS_PER_SECOND} (Amplitude asks them to "
            "stay at or under 1,000 events/s and 100 requests/s per project); requests then carry at most one "
            "second's events. Batch uploads (backfills) are not paced: no project-wide figure is published."
        ),
    )
    gzip_requests: bool = Field(
        default=True,
        description="Compress request bodies (Content-Encoding: gzip): several times fewer bytes on the wire.",
    )
    timeout_seconds: float = Field(default=60.0, gt=0)
    allow_insecure_http: bool = Field(default=False, description="Allow http:// to a non-loopback host.")

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # With the in-process executor, resources start with the run, before any step: a bad URL or
        # an empty key stops the run before anything is fetched from TikTok, not at the upload.
        # (An unset key is named with the other missing variables at the first step: assets/wiring.py.)
        if not self.dry_run and self.api_key.strip():
            self._checked_base_url()

    def _checked_base_url(self) -> str:
        try:
            base_url = checked_base_url(
                self.api_url,
                variable=self.names["amplitude_api_url"],
                allow_insecure_http=self.allow_insecure_http,
            )
        except InsecureUrlError as error:
            raise ConfigurationError(str(error)) from None
        if not self.api_key.strip():
            raise ConfigurationError(
                f"{self.names['amplitude_api_key']} is empty: set it to the Amplitude project's API key"
            )
        return base_url

    def client(self, *, days: int, logger: Any = None) -> AmplitudeClient:
        base_url = self._checked_base_url()
        use_batch = self.endpoint == "batch" or (self.endpoint == "auto" and days > 1)
        return AmplitudeClient(
            base_url,
            self.api_key.strip(),
            path=amp.BATCH_PATH if use_batch else amp.HTTP_V2_PATH,
            max_events=self.max_events_per_request,
            events_per_second=None if use_batch else self.http_v2_events_per_second,
            retry=RetryPolicy(self.max_attempts, self.backoff_base_seconds, self.backoff_max_seconds),
            throttle_pause_seconds=self.throttle_pause_seconds,
            gzip_requests=self.gzip_requests,
            timeout_seconds=self.timeout_seconds,
            logger=logger,
        )


class ImportStoreResource(dg.ConfigurableResource):
    """Where the state lives: the data folder (raw reports, normalized metrics, upload results) and
    the ledger of what Amplitude counted."""

    base_dir: str = Field(
        description="Data folder (TIKTOK_AMP_DATA_DIR): a local folder or an object-store URL (s3://, gs://, az://)."
    )
    connection: str = Field(
        default=DEFAULT_CONNECTION,
        description="The connection whose files these are: a folder of the data folder.",
    )
    amplitude_project: str = Field(
        default=DEFAULT_CONNECTION,
        description="The Amplitude project the ledger keys this connection's events by.",
    )
    ledger_url: str | None = Field(
        default=None,
        repr=False,
        description=(
            "The ledger's PostgreSQL database (TIKTOK_AMP_LEDGER_URL, a secret); unset: "
            "amplitude_ledger.sqlite in a local data folder."
        ),
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Once per run: tidy what killed runs left behind, so the data folder does not collect it.
        removed = self.store().remove_abandoned_temp_files()
        if removed and context.log is not None:
            context.log.info(f"removed {len(removed)} temporary files left by interrupted writes")

    def store(self) -> ImportStore:
        try:
            return ImportStore(
                self.base_dir,
                ledger_url=self.ledger_url,
                connection=self.connection,
                amplitude_project=self.amplitude_project,
            )
        except StorageConfigurationError as error:  # a package missing in the run's image, say
            raise ConfigurationError(str(error)) from None
