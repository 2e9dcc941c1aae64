"""How the Dagster definitions are built: one connection's (:func:`connection_definitions`, what the
component ``TikTokAdsToAmplitude`` builds) and the code location's (:func:`load_definitions`: every
``defs.yaml`` under ``tiktok_amp_assets/defs/``, which ``definitions.py`` loads once).

Functions rather than module-level objects, so tests build definitions for their own environment
without importing (and freezing) the code location's."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

# Definitions is a record: replace() is how Dagster itself copies one with a field changed.
from dagster._record import replace

from tiktok_amp_assets.assets import METRICS_IO_MANAGER, UPLOAD_ASSET, build_assets
from tiktok_amp_assets.connection import Connection
from tiktok_amp_assets.io_managers import AdMetricsIOManager
from tiktok_amp_assets.resources import AmplitudeResource, ImportStoreResource, TikTokResource
from tiktok_amp_assets.schedules import build_daily_schedule
from tiktok_amp_assets.settings import DeploymentSettings, environment_value
from tiktok_amp_assets.storage.locations import LEDGER_URL_VAR

PACKAGE = Path(__file__).resolve().parent


def load_definitions() -> dg.Definitions:
    """Every connection under ``defs/``, as ``dg`` finds them. Through the defs module rather than
    the project's pyproject.toml, so that an installed wheel (no pyproject.toml beside it) loads the
    same ``defs.yaml`` files, which it carries as package data."""
    import tiktok_amp_assets.defs as defs_module

    with warnings.catch_warnings():
        # Dagster's component loading announces its own preview and beta parts on every load.
        warnings.simplefilter("ignore", dg.PreviewWarning)
        warnings.simplefilter("ignore", dg.BetaWarning)
        connections = dg.ComponentTree.from_module(defs_module, project_root=PACKAGE).build_defs()
    # The three steps form a chain that cannot run in parallel; a process per step would only add
    # seconds of start-up (each child imports Dagster and the project again). Deployment-wide, for
    # the jobs and for backfills (Dagster's implicit asset job) alike.
    defs = dg.Definitions.merge(connections, dg.Definitions(executor=dg.in_process_executor))
    with warnings.catch_warnings():
        # Loading a component turns its asset checks (the freshness checks) into AssetsDefinition
        # objects, which Dagster 1.13 turns back each time it lists them, announcing a beta parameter
        # (execution_type) in every process's output: turned back once, here, without the notice.
        warnings.simplefilter("ignore", dg.BetaWarning)
        checks = [
            check
            if isinstance(check, dg.AssetChecksDefinition)
            else dg.AssetChecksDefinition(**check.get_attributes_dict())
            for check in defs.asset_checks or []
        ]
    return replace(defs, asset_checks=checks)


def connection_definitions(
    connection: Connection, deployment: DeploymentSettings | None = None
) -> dg.Definitions:
    """One connection's assets, checks, job, schedule, freshness sensor and resources, every name
    its own (connection.py)."""
    assets = build_assets(connection)
    job = dg.define_asset_job(connection.job_name, selection=dg.AssetSelection.groups(connection.group))
    # Yesterday's upload must exist by the deadline. These checks are "superseded" by FreshnessPolicy,
    # but FreshnessPolicy is judged per asset, not per partition: a backfill of an old day would pass it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.SupersessionWarning)
        freshness_checks = dg.build_time_partition_freshness_checks(
            assets=[connection.asset_key(UPLOAD_ASSET)],
            deadline_cron=f"0 {connection.freshness_hour} * * *",
            timezone=connection.timezone,
            severity=dg.AssetCheckSeverity.ERROR,
        )
        freshness_sensor = dg.build_sensor_for_freshness_checks(
            freshness_checks=freshness_checks,
            default_status=dg.DefaultSensorStatus.RUNNING,
            name=f"{connection.name}_freshness_checks_sensor",
        )
    return dg.Definitions(
        # Bound to the connection's own assets, not given to Definitions: Dagster gives every job the
        # code location's top-level resources, so each connection's job would carry every other
        # connection's too, and the load would grow with the square of the connections
        # (bench/RESULTS.md, "Connections: load time").
        assets=dg.with_resources(assets, connection_resources(connection, deployment)),
        asset_checks=freshness_checks,
        sensors=[freshness_sensor],
        jobs=[job],
        schedules=[build_daily_schedule(job, connection)],
    )


def connection_resources(
    connection: Connection, deployment: DeploymentSettings | None = None
) -> dict[str, dg.ConfigurableResource]:
    """The connection's resources, keyed by its name (``Definitions`` refuses two of one key)."""
    deployment = deployment or DeploymentSettings.from_env()
    import_store = ImportStoreResource(
        base_dir=deployment.data_dir,
        connection=connection.name,
        amplitude_project=connection.amplitude_project,
        # A secret, like the API keys: the UI and the run's config show the variable's name.
        ledger_url=dg.EnvVar(LEDGER_URL_VAR) if environment_value(LEDGER_URL_VAR) else None,
    )
    return {
        connection.resource_key("tiktok"): TikTokResource(
            access_token=connection.tiktok_access_token.for_resource(),
            advertiser_ids=connection.advertiser_ids.for_resource(),
            api_url=connection.tiktok_api_url.for_resource(),
            requests_per_second=connection.tiktok_requests_per_second,
            retry_budget_minutes=connection.tiktok_retry_budget_minutes,
            names=connection.names("tiktok_access_token", "advertiser_ids", "tiktok_api_url"),
        ),
        connection.resource_key("amplitude"): AmplitudeResource(
            api_key=connection.amplitude_api_key.for_resource(),
            api_url=connection.amplitude_api_url.for_resource(),
            endpoint=connection.amplitude_endpoint,
            restatement_policy=connection.restatement_policy,
            names=connection.names("amplitude_api_key", "amplitude_api_url"),
        ),
        connection.resource_key("import_store"): import_store,
        connection.resource_key(METRICS_IO_MANAGER): AdMetricsIOManager(import_store=import_store),
    }
