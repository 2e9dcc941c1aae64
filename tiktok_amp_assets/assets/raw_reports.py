"""``tiktok_raw_reports``: TikTok's answers per ad account and day, stored as received.

The TikTok extraction (``clients/tiktok_extraction.py``) fetches and checks; this step stores one raw
file per account and day, names the accounts that failed (the others' days are kept), and warns
about accounts whose days end after the partitions' days do.
"""

# No `from __future__ import annotations` here: Dagster reads the `context` annotation of an asset
# function when it is defined, and a postponed (string) annotation is refused.

from collections import defaultdict
from collections.abc import Sequence
from contextlib import closing
from datetime import date
from typing import Any

import dagster as dg

from tiktok_amp_assets.assets.names import GROUP, RAW_ASSET, TIKTOK_POOL, TIMEZONE_CHECK
from tiktok_amp_assets.assets.wiring import configured, require_variables
from tiktok_amp_assets.clients.tiktok import TikTokApiError
from tiktok_amp_assets.clients.tiktok_extraction import TikTokExtraction
from tiktok_amp_assets.core.ad_metrics import account_timezone
from tiktok_amp_assets.core.timezones import timezone_mismatches
from tiktok_amp_assets.partitions import partition_days
from tiktok_amp_assets.resources import ImportStoreResource, TikTokResource
from tiktok_amp_assets.settings import ProjectSettings
from tiktok_amp_assets.storage.import_store import ImportStore


def build_raw_reports(
    partitions_def: dg.PartitionsDefinition, backfill_policy: dg.BackfillPolicy, settings: ProjectSettings
) -> dg.AssetsDefinition:
    @dg.asset(
        name=RAW_ASSET,
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        kinds={"tiktok", "json"},
        pool=TIKTOK_POOL,
        description="TikTok's report rows, ad metadata and account facts per ad account and day, as received.",
        check_specs=[
            dg.AssetCheckSpec(
                TIMEZONE_CHECK,
                asset=RAW_ASSET,
                description="No ad account's days end after the partitions' days (TIKTOK_AMP_TIMEZONE).",
            )
        ],
    )
    def tiktok_raw_reports(
        context: dg.AssetExecutionContext, tiktok: TikTokResource, import_store: ImportStoreResource
    ) -> dg.MaterializeResult:
        return materialize_raw_reports(context, tiktok, import_store.store(), settings.timezone)

    return tiktok_raw_reports


def materialize_raw_reports(
    context: dg.AssetExecutionContext, tiktok: TikTokResource, store: ImportStore, partitions_timezone: str
) -> dg.MaterializeResult:
    require_variables()
    days = partition_days(context)
    advertiser_ids = configured(tiktok.advertiser_id_list)
    rows_per_day: dict[date, int] = defaultdict(int)
    with closing(configured(lambda: tiktok.client(logger=context.log))) as client:
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
    if failures:
        raise dg.Failure(
            description=(
                f"{len(failures)} of {len(advertiser_ids)} ad accounts failed; the others' reports are stored. "
                + " | ".join(failures.values())
            ),
            metadata={"failed_accounts": dg.MetadataValue.json(sorted(failures))},
        )
    zones = {advertiser_id: account_timezone(info) for advertiser_id, info in infos.items()}
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
    # Per run, so the same figures stand on every partition of a range run.
    return dg.MaterializeResult(
        metadata=run_figures, check_results=[_timezone_check(context, zones, partitions_timezone, days[0])]
    )


def _timezone_check(
    context: dg.AssetExecutionContext, zones: dict[str, Any], partitions_timezone: str, day: date
) -> dg.AssetCheckResult:
    mismatched = timezone_mismatches(zones, partitions_timezone, day)
    for message in mismatched.values():
        context.log.warning(message)
    return dg.AssetCheckResult(
        check_name=TIMEZONE_CHECK,
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.WARN,
        description=" ".join(mismatched.values()) or None,
        metadata={"partitions_timezone": partitions_timezone, "account_timezones": zones},
    )


def _not_imported(days: Sequence[date]) -> str:
    if not days:
        return ""
    label = f"{days[0]}" if len(days) == 1 else f"{days[0]} to {days[-1]}"
    return f"Not imported for this account: {label}."
