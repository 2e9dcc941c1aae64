"""How the Dagster definitions are built from the settings; ``definitions.py`` builds them once.

A function rather than module-level objects, so tests build definitions for their own settings
without importing (and freezing) the code location's environment."""

from __future__ import annotations

import warnings

import dagster as dg

from tiktok_amp_assets.assets import GROUP, METRICS_IO_MANAGER, UPLOAD_ASSET, build_assets
from tiktok_amp_assets.core import amplitude_contract, tiktok_contract
from tiktok_amp_assets.io_managers import AdMetricsIOManager
from tiktok_amp_assets.resources import AmplitudeResource, ImportStoreResource, TikTokResource
from tiktok_amp_assets.schedules import build_daily_schedule
from tiktok_amp_assets.settings import ProjectSettings, environment_value
from tiktok_amp_assets.storage.locations import LEDGER_URL_VAR

JOB_NAME = "tiktok_amp_job"


def _env_or_default(name: str, default: str) -> str | dg.EnvVar:
    """Read through EnvVar when set (resolved at launch), else the default. Required variables
    default to empty, so that a run without them starts and fails at its first step with one line
    naming them all (resources.check_required_variables), not with Dagster's config traceback."""
    return dg.EnvVar(name) if environment_value(name) else default


def build_definitions(settings: ProjectSettings) -> dg.Definitions:
    assets = build_assets(settings)
    import_store = ImportStoreResource(
        base_dir=settings.data_dir,
        # A secret, like the API keys: the UI and the run's config show the variable's name.
        ledger_url=dg.EnvVar(LEDGER_URL_VAR) if environment_value(LEDGER_URL_VAR) else None,
    )
    job = dg.define_asset_job(JOB_NAME, selection=dg.AssetSelection.groups(GROUP))
    # Yesterday's upload must exist by the deadline. These checks are "superseded" by FreshnessPolicy,
    # but FreshnessPolicy is judged per asset, not per partition: a backfill of an old day would pass it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        freshness_checks = dg.build_time_partition_freshness_checks(
            assets=[UPLOAD_ASSET],
            deadline_cron=f"0 {settings.freshness_hour} * * *",
            timezone=settings.timezone,
            severity=dg.AssetCheckSeverity.ERROR,
        )
        freshness_sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=freshness_checks, default_status=dg.DefaultSensorStatus.RUNNING
        )
    return dg.Definitions(
        assets=assets,
        asset_checks=freshness_checks,
        sensors=[freshness_sensor],
        jobs=[job],
        schedules=[build_daily_schedule(job, settings)],
        # The three steps form a chain that cannot run in parallel; a process per step would only add
        # seconds of start-up (each child imports Dagster and the project again).
        executor=dg.in_process_executor,
        resources={
            "tiktok": TikTokResource(
                access_token=_env_or_default("TIKTOK_ACCESS_TOKEN", ""),
                advertiser_ids=_env_or_default("TIKTOK_ADVERTISER_IDS", ""),
                api_url=_env_or_default("TIKTOK_API_URL", tiktok_contract.DEFAULT_API_URL),
            ),
            "amplitude": AmplitudeResource(
                api_key=_env_or_default("AMPLITUDE_API_KEY", ""),
                api_url=_env_or_default("AMPLITUDE_API_URL", amplitude_contract.DEFAULT_API_URL),
                restatement_policy=settings.restatement_policy,
            ),
            "import_store": import_store,
            METRICS_IO_MANAGER: AdMetricsIOManager(import_store=import_store),
        },
    )
