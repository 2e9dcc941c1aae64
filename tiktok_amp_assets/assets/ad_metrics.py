"""``tiktok_ad_metrics``: one validated row per ad account, ad and day, and the blocking check that
the rows add up to TikTok's own account totals (a partial import is never uploaded)."""

# No `from __future__ import annotations` here: Dagster reads the `context` annotation of an asset
# function when it is defined, and a postponed (string) annotation is refused.

from datetime import date

import dagster as dg

from tiktok_amp_assets.assets.names import GROUP, METRICS_ASSET, RECONCILIATION_CHECK
from tiktok_amp_assets.assets.wiring import configured, require_variables
from tiktok_amp_assets.clients.tiktok_extraction import ACCOUNT_TOTALS_KEY
from tiktok_amp_assets.core.ad_metrics import AdDayMetrics, ReportRowError, normalize_account_day
from tiktok_amp_assets.core.reconciliation import Mismatch, reconcile_account_day
from tiktok_amp_assets.core.summaries import ad_metrics_figures, top_campaigns_markdown
from tiktok_amp_assets.partitions import partition_days
from tiktok_amp_assets.resources import ImportStoreResource, TikTokResource
from tiktok_amp_assets.storage.import_store import ImportStore, MissingPartitionError


def build_ad_metrics(
    partitions_def: dg.PartitionsDefinition,
    backfill_policy: dg.BackfillPolicy,
    raw_reports: dg.AssetsDefinition,
) -> dg.AssetsDefinition:
    @dg.asset(
        name=METRICS_ASSET,
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        deps=[raw_reports],
        kinds={"pandas", "json"},
        description="One validated row per ad account, ad and day: ids, names, cost, counts, currency, UTMs.",
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILIATION_CHECK,
                asset=METRICS_ASSET,
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
        return materialize_ad_metrics(context, tiktok, import_store.store())

    return tiktok_ad_metrics


def materialize_ad_metrics(
    context: dg.AssetExecutionContext, tiktok: TikTokResource, store: ImportStore
) -> dg.MaterializeResult:
    require_variables()
    advertiser_ids = configured(tiktok.advertiser_id_list)
    mismatches: list[Mismatch] = []
    for day in partition_days(context):
        rows: list[AdDayMetrics] = []
        for advertiser_id in advertiser_ids:
            account_rows, mismatch = _normalized_account_day(store, day, advertiser_id)
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
    return dg.MaterializeResult(check_results=[_reconciliation_check(mismatches)])


def _normalized_account_day(
    store: ImportStore, day: date, advertiser_id: str
) -> tuple[list[AdDayMetrics], Mismatch | None]:
    """One account's rows of ``day``, and how they fall short of TikTok's account totals (if they do)."""
    try:
        raw = store.read_raw_report(day, advertiser_id)
        rows = normalize_account_day(raw)
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
    return rows, reconcile_account_day(advertiser_id, day, rows, raw.get(ACCOUNT_TOTALS_KEY))


def _reconciliation_check(mismatches: list[Mismatch]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
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
