"""``tiktok_ad_metrics``: the typed metrics table, one Parquet file per day, and the check that its
rows add up to TikTok's own account totals: a gap (spend no ad row holds, a day still settling) is
recorded per account-day and warned about, never holding the rows back (the extraction refuses the
account-days whose rows are not known whole). An account whose rows cannot be normalized is
recorded as failed for that day; the others go on. Downstream assets receive the table as a pandas
DataFrame of their partitions' days (``io_managers.py``)."""

# No `from __future__ import annotations` here: Dagster reads the `context` annotation of an asset
# function when it is defined, and a postponed (string) annotation is refused.

from collections import defaultdict
from contextlib import closing
from datetime import date

import dagster as dg
import pyarrow as pa

from tiktok_amp_assets.assets.names import METRICS_ASSET, METRICS_IO_MANAGER, RECONCILIATION_CHECK
from tiktok_amp_assets.assets.reruns import retry_all_steps_if_the_run_fails
from tiktok_amp_assets.assets.wiring import configured, require_variables, resource, resource_keys
from tiktok_amp_assets.clients.tiktok_extraction import SETTLING, UNATTRIBUTED
from tiktok_amp_assets.connection import Connection
from tiktok_amp_assets.core.account_failures import AccountDayFailure
from tiktok_amp_assets.core.ad_metrics import METRICS_SCHEMA
from tiktok_amp_assets.core.metric_values import MetricTotals, money_as_written
from tiktok_amp_assets.core.reconciliation import TotalsGap
from tiktok_amp_assets.core.summaries import (
    ad_metrics_figures,
    top_campaigns_markdown,
    unattributed_spend_figures,
)
from tiktok_amp_assets.normalize import NormalizationError, NormalizedDay, normalize_days, store_days
from tiktok_amp_assets.partitions import partition_days
from tiktok_amp_assets.resources import TikTokResource
from tiktok_amp_assets.storage.import_store import ImportStore


def build_ad_metrics(
    partitions_def: dg.PartitionsDefinition,
    backfill_policy: dg.BackfillPolicy,
    raw_reports: dg.AssetsDefinition,
    connection: Connection,
) -> dg.AssetsDefinition:
    @dg.asset(
        key=connection.asset_key(METRICS_ASSET),
        group_name=connection.group,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        deps=[raw_reports],
        kinds={"parquet", "pandas"},
        io_manager_key=connection.resource_key(METRICS_IO_MANAGER),
        required_resource_keys=resource_keys(connection, "tiktok", "import_store"),
        metadata={"dagster/column_schema": column_schema(METRICS_SCHEMA)},
        description=(
            "One validated row per ad account, ad and day: ids, names, cost (exact decimal), counts, "
            "currency, UTMs; one Parquet file per day. Downstream assets receive it as a pandas DataFrame "
            "of their partitions' days."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                RECONCILIATION_CHECK,
                asset=connection.asset_key(METRICS_ASSET),
                description=(
                    "Per ad account and day, the ad rows add up to TikTok's account-level totals. A gap (spend "
                    "in the totals that no ad row holds, such as GMV Max campaigns; a day still settling) is "
                    "delivered and warned about, with the amounts in each day's metadata."
                ),
            )
        ],
    )
    def tiktok_ad_metrics(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        require_variables(connection)
        store = resource(context, connection, "import_store").store()
        return materialize_ad_metrics(context, resource(context, connection, "tiktok"), store)

    return tiktok_ad_metrics


def materialize_ad_metrics(
    context: dg.AssetExecutionContext, tiktok: TikTokResource, store: ImportStore
) -> dg.MaterializeResult:
    advertiser_ids = configured(tiktok.advertiser_id_list)
    days = partition_days(context)
    failed: dict[date, set[str]] = defaultdict(set)
    for day, advertiser_id in store.account_day_failures(days):
        failed[day].add(advertiser_id)
    gaps: list[TotalsGap] = []
    new_failures = False
    # Days arrive normalized and written, in order (normalize.py); a day that fails leaves every
    # earlier day a whole file and no later day written.
    written = store_days(
        store,
        normalize_days(
            store.location(),
            advertiser_ids,
            days,
            {day: frozenset(accounts) for day, accounts in failed.items()},
        ),
    )
    try:
        with closing(written):  # the stages stop with the step, also when it fails
            for normalized in written:
                gaps.extend(normalized.gaps)
                new_failures |= _record_failures(context, store, normalized)
                context.add_asset_metadata(
                    {
                        **ad_metrics_figures(normalized.table),
                        **_gap_figures(normalized.gaps),
                        "dagster/row_count": normalized.table.num_rows,
                        "top_campaigns": dg.MetadataValue.md(top_campaigns_markdown(normalized.table)),
                        "failed_accounts": dg.MetadataValue.json(
                            {
                                **dict.fromkeys(normalized.withheld, "not fetched (see tiktok_raw_reports)"),
                                **normalized.failures,
                            }
                        ),
                        "path": dg.MetadataValue.path(str(store.metrics_path(normalized.day))),
                    },
                    partition_key=normalized.day.isoformat(),
                )
    except NormalizationError as error:
        raise dg.Failure(description=str(error)) from None
    if new_failures:
        retry_all_steps_if_the_run_fails(context)
    return dg.MaterializeResult(check_results=[_reconciliation_check(gaps)])


def _record_failures(
    context: dg.AssetExecutionContext, store: ImportStore, normalized: NormalizedDay
) -> bool:
    """Record the accounts whose rows of the day could not be normalized; whether there were any."""
    for advertiser_id, problem in normalized.failures.items():
        context.log.error(f"ad account {advertiser_id}, {normalized.day} not imported: {problem}")
        failure = AccountDayFailure(
            advertiser_id=advertiser_id,
            stat_date=normalized.day,
            step=METRICS_ASSET,
            endpoint=None,
            code=None,
            message=problem,
            what_to_do="run the partition again later (its report is fetched again); if TikTok keeps sending "
            "this, report it to TikTok, or to the maintainers of tiktok-amp-assets if the value looks valid",
            run_id=context.run.run_id,
        )
        store.record_account_day_failure(normalized.day, advertiser_id, failure.as_record())
    return bool(normalized.failures)


def _gap_figures(gaps: list[TotalsGap]) -> dict[str, object]:
    """A day's gaps between ad rows and account totals: spend per currency (plotted) and each
    account-day's gaps in every metric."""
    if not gaps:
        return {}
    return {
        **unattributed_spend_figures(gaps),
        "totals_gaps": dg.MetadataValue.json([gap.as_record() for gap in gaps]),
    }


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


def _reconciliation_check(gaps: list[TotalsGap]) -> dg.AssetCheckResult:
    description = None
    if gaps:
        listed = "; ".join(
            f"ad account {gap.advertiser_id} on {gap.stat_date}: {_gap_text(gap)}" for gap in gaps[:5]
        )
        description = (
            f"{len(gaps)} account-days do not add up to TikTok's account totals; their ad rows are delivered as "
            f"TikTok reports them ({listed}{'; ...' if len(gaps) > 5 else ''}). Spend outside the ad rows "
            "(GMV Max and other shop campaigns, reported apart by TikTok) is not in Amplitude: import it "
            "separately if you need it. A metric TikTok reports as '-' counts as missing, not zero, and "
            "shows here too. A settling day is corrected by the next runs' lookback. Each day's metadata "
            "(totals_gaps, unattributed_spend_<currency>) holds the amounts."
        )
    return dg.AssetCheckResult(
        check_name=RECONCILIATION_CHECK,
        passed=not gaps,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={"gaps": dg.MetadataValue.json([gap.as_record() for gap in gaps[:50]])},
    )


_GAP_MEANING = {
    SETTLING: "(still settling: TikTok's totals moved between two reads)",
    UNATTRIBUTED: "in the account totals that no ad row holds",
}


def _gap_text(gap: TotalsGap) -> str:
    missing = gap.not_in_ad_rows
    if gap.kind == UNATTRIBUTED and missing.cost < 0:
        return f"{_amount(MetricTotals.zero() - missing, gap.currency)} more in the ad rows than in the account totals"
    return f"{_amount(missing, gap.currency)} {_GAP_MEANING.get(gap.kind, gap.kind)}"


def _amount(missing: MetricTotals, currency: str | None) -> str:
    spend = f"{money_as_written(missing.cost)} {currency or ''}".strip() + " spend"
    others = [
        f"{value} {name}"
        for name, value in (("impressions", missing.impressions), ("clicks", missing.clicks),
                            ("conversions", missing.conversions))
        if value
    ]  # fmt: skip
    return ", ".join([spend, *others])
