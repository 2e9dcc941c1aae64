"""The three daily-partitioned assets: tiktok_raw_reports → tiktok_ad_metrics → amplitude_upload_results.

Each asset handles a whole range of days in one step (a backfill runs as one run), writes one file
per day itself, and records metadata per partition. The work is done by the plain functions in
``core``, the clients in ``clients`` and the store in ``storage``; this module only wires them.
"""

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import closing
from datetime import date
from typing import Any

import dagster as dg

from tiktok_amp_assets.clients.amplitude import AmplitudeApiError
from tiktok_amp_assets.clients.tiktok import TikTokApiError
from tiktok_amp_assets.clients.tiktok_extraction import ACCOUNT_TOTALS_KEY, TikTokExtraction
from tiktok_amp_assets.core.ad_metrics import (
    AdDayMetrics,
    ReportRowError,
    account_timezone,
    normalize_account_day,
)
from tiktok_amp_assets.core.reconciliation import Mismatch, reconcile_account_day
from tiktok_amp_assets.core.summaries import ad_metrics_figures, top_campaigns_markdown
from tiktok_amp_assets.core.timezones import timezone_mismatches
from tiktok_amp_assets.partitions import daily_partitions, partition_days
from tiktok_amp_assets.resources import (
    AmplitudeResource,
    ImportStoreResource,
    TikTokResource,
    check_required_variables,
)
from tiktok_amp_assets.settings import ConfigurationError, ProjectSettings
from tiktok_amp_assets.storage.import_store import MissingPartitionError
from tiktok_amp_assets.upload import DayUploader

GROUP = "tiktok_ads"
# Concurrency pools: cap how many steps call each API at once across all runs (dagster.yaml).
TIKTOK_POOL = "tiktok_api"
AMPLITUDE_POOL = "amplitude_api"
UPLOAD_ASSET = "amplitude_upload_results"
TIMEZONE_CHECK = "account_timezone_matches_partitions"
RECONCILIATION_CHECK = "rows_add_up_to_account_totals"
DELIVERY_CHECK = "amplitude_counts_equal_tiktok"


def build_assets(settings: ProjectSettings) -> list[dg.AssetsDefinition]:
    partitions_def = daily_partitions(settings)
    # One run for a whole backfill: a range costs ~rows/1000 TikTok calls instead of one per day.
    backfill_policy = dg.BackfillPolicy.single_run()

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        kinds={"tiktok", "json"},
        pool=TIKTOK_POOL,
        description="TikTok's report rows, ad metadata and account facts per ad account and day, as received.",
        check_specs=[
            dg.AssetCheckSpec(
                TIMEZONE_CHECK,
                asset="tiktok_raw_reports",
                description="Each ad account reports days in the partitions' time zone (TIKTOK_AMP_TIMEZONE).",
            )
        ],
    )
    def tiktok_raw_reports(
        context: dg.AssetExecutionContext, tiktok: TikTokResource, import_store: ImportStoreResource
    ) -> dg.MaterializeResult:
        _configured(check_required_variables)
        days = partition_days(context)
        advertiser_ids = _configured(tiktok.advertiser_id_list)
        store = import_store.store()
        rows_per_day: dict[date, int] = defaultdict(int)
        with closing(_configured(lambda: tiktok.client(logger=context.log))) as client:
            extraction = TikTokExtraction(client, logger=context.log)
            infos, refused = extraction.account_facts(advertiser_ids)
            failures = {
                advertiser_id: f"{error}. {_not_imported(days)}" for advertiser_id, error in refused.items()
            }
            for advertiser_id, info in infos.items():
                stored = 0
                try:
                    for day, raw in extraction.account_days(advertiser_id, info, days):
                        store.write_raw_report(day, advertiser_id, raw)
                        rows_per_day[day] += len(raw["report_rows"])
                        stored += 1
                except TikTokApiError as error:
                    # Other accounts go on: their days are stored, and this one is named at the end,
                    # with the days left without its report (days are stored in order).
                    failures[advertiser_id] = f"{error}. {_not_imported(days[stored:])}"
                    context.log.error(failures[advertiser_id])
            run_figures = extraction.figures()
        zones = {advertiser_id: account_timezone(info) for advertiser_id, info in infos.items()}
        if failures:
            raise dg.Failure(
                description=(
                    f"{len(failures)} of {len(advertiser_ids)} ad accounts failed; the others' reports are stored. "
                    + " | ".join(failures.values())
                ),
                metadata={"failed_accounts": dg.MetadataValue.json(sorted(failures))},
            )
        for day in days:
            context.add_asset_metadata(
                {
                    "rows": rows_per_day[day],
                    "accounts": len(advertiser_ids),
                    "account_timezones": dg.MetadataValue.json(zones),
                    "path": dg.MetadataValue.path(str(store.raw_report_path(day, advertiser_ids[0]).parent)),
                },
                partition_key=day.isoformat(),
            )
        mismatched = timezone_mismatches(zones, settings.timezone, days[0])
        for message in mismatched.values():
            context.log.warning(message)
        return dg.MaterializeResult(
            # Per run, so the same figures stand on every partition of a range run.
            metadata=run_figures,
            check_results=[
                dg.AssetCheckResult(
                    check_name=TIMEZONE_CHECK,
                    passed=not mismatched,
                    severity=dg.AssetCheckSeverity.WARN,
                    description=" ".join(mismatched.values()) or None,
                    metadata={"partitions_timezone": settings.timezone, "account_timezones": zones},
                )
            ],
        )

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        deps=[tiktok_raw_reports],
        kinds={"pandas", "json"},
        description="One validated row per ad account, ad and day: ids, names, cost, counts, currency, UTMs.",
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILIATION_CHECK,
                asset="tiktok_ad_metrics",
                blocking=True,
                description=(
                    "Per ad account and day, the ad rows add up to TikTok's account-level totals. Blocking: "
                    "a partial import is never uploaded."
                ),
            )
        ],
    )
    def tiktok_ad_metrics(
        context: dg.AssetExecutionContext, tiktok: TikTokResource, import_store: ImportStoreResource
    ) -> dg.MaterializeResult:
        _configured(check_required_variables)
        advertiser_ids = _configured(tiktok.advertiser_id_list)
        store = import_store.store()
        mismatches: list[Mismatch] = []
        for day in partition_days(context):
            rows: list[AdDayMetrics] = []
            for advertiser_id in advertiser_ids:
                try:
                    raw = store.read_raw_report(day, advertiser_id)
                    account_rows = normalize_account_day(raw)
                except MissingPartitionError as error:
                    raise dg.Failure(description=f"{day}: {error}") from None
                except ReportRowError as error:
                    # Nothing of this day is written; earlier days of a range are whole files.
                    raise dg.Failure(
                        description=(
                            f"{day}: {error}. TikTok's answer is kept as received in "
                            f"{store.raw_report_path(day, advertiser_id)}. What to do: run the partition again "
                            "later; if TikTok keeps sending this, report it to TikTok, or to the maintainers of "
                            "tiktok-amp-assets if the value looks valid."
                        )
                    ) from None
                mismatch = reconcile_account_day(
                    advertiser_id, day, account_rows, raw.get(ACCOUNT_TOTALS_KEY)
                )
                if mismatch is not None:
                    mismatches.append(mismatch)
                rows.extend(account_rows)
            path = store.write_ad_metrics(day, rows)
            context.add_asset_metadata(
                {
                    **ad_metrics_figures(rows),
                    "dagster/row_count": len(rows),
                    "top_campaigns": dg.MetadataValue.md(top_campaigns_markdown(rows)),
                    "path": dg.MetadataValue.path(str(path)),
                },
                partition_key=day.isoformat(),
            )
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    check_name=RECONCILIATION_CHECK,
                    passed=not mismatches,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=(
                        f"{len(mismatches)} account-days do not add up to TikTok's account totals ("
                        + ", ".join(f"ad account {m.advertiser_id} on {m.stat_date}" for m in mismatches[:5])
                        + (", ..." if len(mismatches) > 5 else "")
                        + "): re-materialize tiktok_raw_reports for those days; if it persists, the report is "
                        "incomplete at TikTok (a metric reported as '-' is counted as missing, not as zero)."
                        if mismatches
                        else None
                    ),
                    metadata={"mismatches": dg.MetadataValue.json([m.as_record() for m in mismatches[:50]])},
                )
            ]
        )

    # A multi_asset only to be skippable (can_subset makes the check's output optional too): a dry run
    # sends nothing, so it must not mark the day as in Amplitude; it records an observation instead.
    @dg.multi_asset(
        specs=[
            dg.AssetSpec(
                UPLOAD_ASSET,
                group_name=GROUP,
                partitions_def=partitions_def,
                deps=[tiktok_ad_metrics],
                kinds={"amplitude"},
                skippable=True,
                description="What was sent to Amplitude per day and request: events sent, accepted, rejected, corrected.",
            )
        ],
        backfill_policy=backfill_policy,
        pool=AMPLITUDE_POOL,
        can_subset=True,
        check_specs=[
            dg.AssetCheckSpec(
                DELIVERY_CHECK,
                asset=UPLOAD_ASSET,
                description=(
                    "Per ad-day, what Amplitude acknowledged adds up to TikTok's current figures: nothing lost, "
                    "nothing counted twice (with restatement_policy freeze: every ad-day counted once)."
                ),
            )
        ],
    )
    def amplitude_upload_results(
        context: dg.AssetExecutionContext, amplitude: AmplitudeResource, import_store: ImportStoreResource
    ) -> Iterator[dg.MaterializeResult]:
        if dg.AssetKey(UPLOAD_ASSET) not in context.selected_asset_keys:
            # (Subsetting is on only so that a dry run can skip the materialization.)
            raise dg.Failure(
                description=f"{DELIVERY_CHECK} is evaluated by the upload itself: materialize {UPLOAD_ASSET} "
                "(the check runs with it) rather than the check alone"
            )
        _configured(check_required_variables)
        days = partition_days(context)
        client = (
            None
            if amplitude.dry_run
            else _configured(lambda: amplitude.client(days=len(days), logger=context.log))
        )
        uploader = DayUploader(
            import_store.store(), client, policy=amplitude.restatement_policy, logger=context.log
        )
        rejected_total = 0
        parked_total = 0
        undelivered: list[Mismatch] = []
        try:
            for finished in uploader.upload(days):
                rejected_total += finished.results["events_rejected"]
                parked_total += finished.results["events_parked"]
                undelivered.extend(finished.undelivered)
                changes = finished.report.changes_markdown()
                metadata = {
                    **finished.report.figures(),
                    **({"changes": dg.MetadataValue.md(changes)} if changes else {}),
                    "path": dg.MetadataValue.path(finished.path),
                }
                partition = finished.report.day.isoformat()
                if client is None:
                    context.log_event(
                        dg.AssetObservation(
                            asset_key=UPLOAD_ASSET,
                            partition=partition,
                            metadata={"dry_run": True, **metadata},
                        )
                    )
                else:
                    context.add_asset_metadata(metadata, partition_key=partition)
        except (AmplitudeApiError, MissingPartitionError) as error:
            raise dg.Failure(description=str(error)) from None
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
        yield dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    check_name=DELIVERY_CHECK,
                    passed=not undelivered,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=(
                        _undelivered_description(len(undelivered), parked_total) if undelivered else None
                    ),
                    metadata={
                        "differences": dg.MetadataValue.json([m.as_record() for m in undelivered[:50]])
                    },
                )
            ]
        )

    return [tiktok_raw_reports, tiktok_ad_metrics, amplitude_upload_results]


def _undelivered_description(undelivered: int, parked: int) -> str:
    text = f"{undelivered} ad-days differ between Amplitude and TikTok; run the partitions again"
    if parked:
        text += (
            f". {parked} events wait because their devices reached Amplitude's daily quota of events per "
            "device (listed as 'parked' in each day's upload results file): the next run sends them first, "
            "once the quota's rolling day has passed"
        )
    return text


def _configured(build: Any) -> Any:
    """Turn a configuration problem into a Dagster failure whose message names the variable."""
    try:
        return build()
    except ConfigurationError as error:
        raise dg.Failure(description=str(error)) from None


def _not_imported(days: Sequence[date]) -> str:
    if not days:
        return ""
    label = f"{days[0]}" if len(days) == 1 else f"{days[0]} to {days[-1]}"
    return f"Not imported for this account: {label}."
