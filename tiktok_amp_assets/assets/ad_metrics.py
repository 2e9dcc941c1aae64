"""``tiktok_ad_metrics``: the typed metrics table, one Parquet file per day, and the blocking check
that its rows add up to TikTok's own account totals (a partial import is never uploaded).
Downstream assets receive it as a pandas DataFrame of their partitions' days (``io_managers.py``)."""

# No `from __future__ import annotations` here: Dagster reads the `context` annotation of an asset
# function when it is defined, and a postponed (string) annotation is refused.

from contextlib import closing

import dagster as dg
import pyarrow as pa

from tiktok_amp_assets.assets.names import GROUP, METRICS_ASSET, METRICS_IO_MANAGER, RECONCILIATION_CHECK
from tiktok_amp_assets.assets.wiring import configured, require_variables
from tiktok_amp_assets.core.ad_metrics import METRICS_SCHEMA
from tiktok_amp_assets.core.reconciliation import Mismatch
from tiktok_amp_assets.core.summaries import ad_metrics_figures, top_campaigns_markdown
from tiktok_amp_assets.normalize import NormalizationError, normalize_days, store_days
from tiktok_amp_assets.partitions import partition_days
from tiktok_amp_assets.resources import ImportStoreResource, TikTokResource
from tiktok_amp_assets.storage.import_store import ImportStore


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
        kinds={"parquet", "pandas"},
        io_manager_key=METRICS_IO_MANAGER,
        metadata={"dagster/column_schema": column_schema(METRICS_SCHEMA)},
        description=(
            "One validated row per ad account, ad and day: ids, names, cost (exact decimal), counts, "
            "currency, UTMs; one Parquet file per day. Downstream assets receive it as a pandas DataFrame "
            "of their partitions' days."
        ),
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
    # Days arrive normalized and written, in order (normalize.py); a day that fails leaves every
    # earlier day a whole file and no later day written.
    written = store_days(store, normalize_days(str(store.base_dir), advertiser_ids, partition_days(context)))
    try:
        with closing(written):  # the stages stop with the step, also when it fails
            for day in written:
                mismatches.extend(day.mismatches)
                context.add_asset_metadata(
                    {
                        **ad_metrics_figures(day.table),
                        "dagster/row_count": day.table.num_rows,
                        "top_campaigns": dg.MetadataValue.md(top_campaigns_markdown(day.table)),
                        "path": dg.MetadataValue.path(str(store.metrics_path(day.day))),
                    },
                    partition_key=day.day.isoformat(),
                )
    except NormalizationError as error:
        raise dg.Failure(description=str(error)) from None
    return dg.MaterializeResult(check_results=[_reconciliation_check(mismatches)])


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    """An Arrow schema as the columns the Dagster UI shows (``dagster/column_schema``)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=field.name,
                type=str(field.type),
                description=(field.metadata or {}).get(b"description", b"").decode("utf-8") or None,
                constraints=dg.TableColumnConstraints(nullable=field.nullable),
            )
            for field in schema
        ]
    )


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
