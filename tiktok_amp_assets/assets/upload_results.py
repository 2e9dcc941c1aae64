"""``amplitude_upload_results``: what was sent to Amplitude per day, and the check that what Amplitude
counted adds up to TikTok's current figures. A dry run records an observation, never a
materialization: nothing it built is in Amplitude."""

# No `from __future__ import annotations` here: Dagster reads the `context` annotation of an asset
# function when it is defined, and a postponed (string) annotation is refused.

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import dagster as dg

from tiktok_amp_assets.assets.names import ACCOUNTS_CHECK, DELIVERY_CHECK, UPLOAD_ASSET
from tiktok_amp_assets.assets.reruns import retry_all_steps_if_the_run_fails
from tiktok_amp_assets.assets.wiring import configured, require_variables, resource, resource_keys
from tiktok_amp_assets.clients.amplitude import AmplitudeApiError
from tiktok_amp_assets.connection import Connection
from tiktok_amp_assets.core.account_failures import (
    AccountDayFailure,
    failures_by_account,
    failures_summary,
    reimport_command,
)
from tiktok_amp_assets.core.reconciliation import Mismatch
from tiktok_amp_assets.partitions import partition_days
from tiktok_amp_assets.resources import AmplitudeResource, ImportStoreResource, TikTokResource
from tiktok_amp_assets.storage.import_store import MissingPartitionError
from tiktok_amp_assets.upload import DayUploader, FinishedDay


def build_upload_results(
    partitions_def: dg.PartitionsDefinition,
    backfill_policy: dg.BackfillPolicy,
    ad_metrics: dg.AssetsDefinition,
    connection: Connection,
) -> dg.AssetsDefinition:
    # A multi_asset only to be skippable (can_subset makes the check's output optional too): a dry run
    # sends nothing, so it must not mark the day as in Amplitude; it records an observation instead.
    @dg.multi_asset(
        name=connection.step_key(UPLOAD_ASSET),  # op names are code-location-wide, like asset keys
        specs=[
            dg.AssetSpec(
                connection.asset_key(UPLOAD_ASSET),
                group_name=connection.group,
                partitions_def=partitions_def,
                deps=[ad_metrics],
                kinds={"amplitude"},
                skippable=True,
                description="What was sent to Amplitude per day and request: events sent, accepted, rejected, corrected.",
            )
        ],
        backfill_policy=backfill_policy,
        pool=connection.amplitude_pool,
        can_subset=True,
        required_resource_keys=resource_keys(connection, "amplitude", "tiktok", "import_store"),
        check_specs=[
            dg.AssetCheckSpec(
                DELIVERY_CHECK,
                asset=connection.asset_key(UPLOAD_ASSET),
                description=(
                    "Per ad-day, what Amplitude acknowledged adds up to TikTok's current figures: nothing lost, "
                    "nothing counted twice (with restatement_policy freeze: every ad-day counted once)."
                ),
            ),
            dg.AssetCheckSpec(
                ACCOUNTS_CHECK,
                asset=connection.asset_key(UPLOAD_ASSET),
                # Blocking: the run ends failed once the other accounts are delivered, so that run
                # retries (all steps: assets/reruns.py) fetch the missing account-days again.
                blocking=True,
                description=(
                    "Every ad account's every day of the run was imported: lists the account-days that could "
                    "not be (account, days, TikTok's code and message, what to do, the command that imports "
                    "them again); every other account-day is delivered all the same. Per day, the metadata's "
                    "accounts_not_imported names them."
                ),
            ),
        ],
    )
    def amplitude_upload_results(context: dg.AssetExecutionContext) -> Iterator[dg.MaterializeResult]:
        yield from upload_to_amplitude(
            context,
            connection,
            resource(context, connection, "amplitude"),
            resource(context, connection, "tiktok"),
            resource(context, connection, "import_store"),
        )

    return amplitude_upload_results


def upload_to_amplitude(
    context: dg.AssetExecutionContext,
    connection: Connection,
    amplitude: AmplitudeResource,
    tiktok: TikTokResource,
    import_store: ImportStoreResource,
) -> Iterator[dg.MaterializeResult]:
    upload_asset = connection.asset_key(UPLOAD_ASSET)
    if upload_asset not in context.selected_asset_keys:
        # (Subsetting is on only so that a dry run can skip the materialization.)
        raise dg.Failure(
            description=f"{DELIVERY_CHECK} is evaluated by the upload itself: materialize "
            f"{upload_asset.to_user_string()} (the check runs with it) rather than the check alone"
        )
    require_variables(connection)
    days = partition_days(context)
    advertiser_ids = configured(tiktok.advertiser_id_list)
    failures = [
        AccountDayFailure.from_record(record)
        for (_, advertiser_id), record in sorted(import_store.store().account_day_failures(days).items())
        if advertiser_id in advertiser_ids
    ]
    not_imported: dict[str, list[str]] = defaultdict(list)
    for failure in failures:
        not_imported[failure.stat_date.isoformat()].append(failure.advertiser_id)
    client = (
        None
        if amplitude.dry_run
        else configured(lambda: amplitude.client(days=len(days), logger=context.log))
    )
    uploader = DayUploader(
        import_store.store(), client, policy=amplitude.restatement_policy, logger=context.log
    )
    rejected_total = parked_total = 0
    undelivered: list[Mismatch] = []
    try:
        for finished in uploader.upload(days):
            rejected_total += finished.results["events_rejected"]
            parked_total += finished.results["events_parked"]
            undelivered.extend(finished.undelivered)
            _record_day(context, upload_asset, finished, not_imported, dry_run=client is None)
    except (AmplitudeApiError, MissingPartitionError) as error:
        raise dg.Failure(description=connection.in_its_words(str(error))) from None
    finally:
        if client is not None:
            client.close()
    if rejected_total:
        raise dg.Failure(
            description=(
                f"Amplitude rejected {rejected_total} events; the rest were delivered. The rejected events and "
                "their reasons are listed under 'events' in each day's upload results file; fix the cause and "
                "run the partitions again (only what Amplitude has not counted will be sent)."
            )
        )
    if client is None:
        return  # a dry run: nothing is in Amplitude that was not before, so nothing is materialized
    if failures:
        retry_all_steps_if_the_run_fails(context)
    yield dg.MaterializeResult(
        check_results=[
            _delivery_check(undelivered, parked_total),
            _accounts_check(failures, len(advertiser_ids), connection.group),
        ]
    )


def _record_day(
    context: dg.AssetExecutionContext,
    upload_asset: dg.AssetKey,
    finished: FinishedDay,
    not_imported: dict[str, list[str]],
    *,
    dry_run: bool,
) -> None:
    changes = finished.report.changes_markdown()
    partition = finished.report.day.isoformat()
    metadata: dict[str, Any] = {
        **finished.report.figures(),
        **({"changes": dg.MetadataValue.md(changes)} if changes else {}),
        "accounts_not_imported": dg.MetadataValue.json(sorted(not_imported.get(partition, []))),
        "path": dg.MetadataValue.path(finished.path),
    }
    if dry_run:
        context.log_event(
            dg.AssetObservation(
                asset_key=upload_asset, partition=partition, metadata={"dry_run": True, **metadata}
            )
        )
    else:
        context.add_asset_metadata(metadata, partition_key=partition)


def _delivery_check(undelivered: list[Mismatch], parked: int) -> dg.AssetCheckResult:
    description = None
    if undelivered:
        description = (
            f"{len(undelivered)} ad-days differ between Amplitude and TikTok; run the partitions again"
        )
        if parked:
            description += (
                f". {parked} events wait because their devices reached Amplitude's daily quota of events per "
                "device (listed as 'parked' in each day's upload results file): the next run sends them first, "
                "once the quota's rolling day has passed"
            )
    return dg.AssetCheckResult(
        check_name=DELIVERY_CHECK,
        passed=not undelivered,
        severity=dg.AssetCheckSeverity.ERROR,
        description=description,
        metadata={"differences": dg.MetadataValue.json([m.as_record() for m in undelivered[:50]])},
    )


def _accounts_check(failures: list[AccountDayFailure], accounts: int, group: str) -> dg.AssetCheckResult:
    """One result for the run (a check result carries no partition in Dagster 1.13): every failed
    account-day, grouped by cause; each day's own list is in its metadata (accounts_not_imported)."""
    return dg.AssetCheckResult(
        check_name=ACCOUNTS_CHECK,
        passed=not failures,
        severity=dg.AssetCheckSeverity.ERROR,
        description=failures_summary(failures, accounts, group) if failures else None,
        metadata={
            "failed_account_days": dg.MetadataValue.json(failures_by_account(failures)),
            **(
                {
                    "reimport_command": dg.MetadataValue.text(
                        reimport_command((f.stat_date for f in failures), group)
                    )
                }
                if failures
                else {}
            ),
        },
    )
