"""``tiktok_raw_reports``: TikTok's answers per ad account and day, stored as received.

The TikTok extraction (``clients/tiktok_extraction.py``) fetches and checks; this step stores one raw
file per account and day, records the account-days that could not be fetched (``core/
account_failures.py``: every other account goes on through the three steps, and the run is tagged to
retry all its steps: ``assets/reruns.py``), and warns about accounts whose days end after the
partitions' days do. A re-execution of a run fetches only the account-days that run recorded as failed.
"""

# No `from __future__ import annotations` here: Dagster reads the `context` annotation of an asset
# function when it is defined, and a postponed (string) annotation is refused.

from collections import defaultdict
from collections.abc import Sequence
from contextlib import closing
from datetime import date
from typing import Any

import dagster as dg

from tiktok_amp_assets.assets.names import RAW_ASSET, TIMEZONE_CHECK
from tiktok_amp_assets.assets.reruns import parent_fetched_every_account, retry_all_steps_if_the_run_fails
from tiktok_amp_assets.assets.wiring import configured, require_variables, resource, resource_keys
from tiktok_amp_assets.clients.tiktok import TikTokApiError
from tiktok_amp_assets.clients.tiktok_extraction import TikTokExtraction
from tiktok_amp_assets.connection import Connection
from tiktok_amp_assets.core import tiktok_contract as api
from tiktok_amp_assets.core.account_failures import AccountDayFailure, days_label
from tiktok_amp_assets.core.ad_metrics import account_timezone
from tiktok_amp_assets.core.timezones import timezone_mismatches
from tiktok_amp_assets.partitions import partition_days
from tiktok_amp_assets.resources import TikTokResource
from tiktok_amp_assets.storage.import_store import ImportStore


def build_raw_reports(
    partitions_def: dg.PartitionsDefinition, backfill_policy: dg.BackfillPolicy, connection: Connection
) -> dg.AssetsDefinition:
    @dg.asset(
        key=connection.asset_key(RAW_ASSET),
        group_name=connection.group,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        kinds={"tiktok", "json"},
        pool=connection.tiktok_pool,
        required_resource_keys=resource_keys(connection, "tiktok", "import_store"),
        description="TikTok's report rows, ad metadata and account facts per ad account and day, as received.",
        check_specs=[
            dg.AssetCheckSpec(
                TIMEZONE_CHECK,
                asset=connection.asset_key(RAW_ASSET),
                description=f"No ad account's days end after the partitions' days (timezone in {connection.source}).",
            )
        ],
    )
    def tiktok_raw_reports(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        require_variables(connection)
        store = resource(context, connection, "import_store").store()
        return materialize_raw_reports(context, resource(context, connection, "tiktok"), store, connection)

    return tiktok_raw_reports


def materialize_raw_reports(
    context: dg.AssetExecutionContext, tiktok: TikTokResource, store: ImportStore, connection: Connection
) -> dg.MaterializeResult:
    days = partition_days(context)
    advertiser_ids = configured(tiktok.advertiser_id_list)
    recorded = store.account_day_failures(days)
    wanted = _account_days_to_fetch(context, connection, advertiser_ids, days, recorded)
    rows_per_day: dict[date, int] = defaultdict(int)
    stored_per_day: dict[date, int] = defaultdict(int)
    failures: list[AccountDayFailure] = []
    with closing(configured(lambda: tiktok.client(logger=context.log))) as client:
        extraction = TikTokExtraction(client, logger=context.log)
        try:
            infos, refused = extraction.account_facts(sorted(wanted))
            for advertiser_id, error in refused.items():
                failures += _failed(context, connection, error, advertiser_id, wanted[advertiser_id])
            for advertiser_id, info in infos.items():
                account_days = wanted[advertiser_id]
                done: set[date] = set()
                try:
                    for day, result in extraction.account_days(advertiser_id, info, account_days):
                        done.add(day)
                        if isinstance(result, TikTokApiError):
                            failures += _failed(context, connection, result, advertiser_id, [day])
                            continue
                        store.write_raw_report(day, advertiser_id, result)
                        if (day, advertiser_id) in recorded:
                            store.clear_account_day_failure(day, advertiser_id)
                        rows_per_day[day] += len(result["report_rows"])
                        stored_per_day[day] += 1
                except TikTokApiError as error:
                    if error.code in api.APP_OR_TOKEN_CODES:
                        raise
                    # Other accounts go on: their days are stored, and this one is recorded as failed
                    # for the days left without its report (days are stored in order).
                    failures += _failed(
                        context, connection, error, advertiser_id, [d for d in account_days if d not in done]
                    )
        except TikTokApiError as error:
            # No account can be read (the app or its token refused, or advertiser/info failing for
            # every account alike): the run stops here, saying it once. Only a passing cause (TikTok
            # unavailable past the retry budget) is worth retrying.
            if error.code is None or api.error_kind(error.code)[0].waits:
                retry_all_steps_if_the_run_fails(context)
            raise dg.Failure(description=connection.in_its_words(str(error))) from None
        run_figures = extraction.figures()
    for failure in failures:
        store.record_account_day_failure(failure.stat_date, failure.advertiser_id, failure.as_record())
    if failures:
        retry_all_steps_if_the_run_fails(context)
    failed_per_day: dict[date, dict[str, str]] = defaultdict(dict)
    for failure in failures:
        failed_per_day[failure.stat_date][failure.advertiser_id] = failure.short()
    zones = {advertiser_id: account_timezone(info) for advertiser_id, info in infos.items()}
    for day in days:
        context.add_asset_metadata(
            {
                "rows": rows_per_day[day],
                "accounts": stored_per_day[day],
                "failed_accounts": dg.MetadataValue.json(failed_per_day.get(day, {})),
                "account_timezones": dg.MetadataValue.json(zones),
                "path": dg.MetadataValue.path(str(store.raw_report_path(day, advertiser_ids[0]).parent)),
            },
            partition_key=day.isoformat(),
        )
    # Per run, so the same figures stand on every partition of a range run.
    return dg.MaterializeResult(
        metadata=run_figures,
        check_results=[_timezone_check(context, connection, zones, days[0])],
    )


def _account_days_to_fetch(
    context: dg.AssetExecutionContext,
    connection: Connection,
    advertiser_ids: list[str],
    days: list[date],
    recorded: dict[tuple[date, str], dict[str, Any]],
) -> dict[str, list[date]]:
    """The days to fetch per account: all of them, except in a re-execution of a run whose raw step
    finished (a retry): then only the account-days recorded as failed (``assets/reruns.py``)."""
    parent_run_id = parent_fetched_every_account(context, connection.step_key(RAW_ASSET))
    if parent_run_id is None:
        return {advertiser_id: list(days) for advertiser_id in advertiser_ids}
    wanted: dict[str, list[date]] = {}
    for advertiser_id in advertiser_ids:
        failed = [day for day in days if (day, advertiser_id) in recorded]
        if failed:
            wanted[advertiser_id] = failed
    context.log.info(
        "re-execution of run %s: fetching only the account-days it could not import (%s); the others are "
        "stored already",
        parent_run_id,
        "; ".join(f"ad account {account}: {days_label(failed)}" for account, failed in wanted.items())
        or "none",
    )
    return wanted


def _failed(
    context: dg.AssetExecutionContext,
    connection: Connection,
    error: TikTokApiError,
    advertiser_id: str,
    days: Sequence[date],
) -> list[AccountDayFailure]:
    """The account-days ``error`` leaves unimported, logged once for the account."""
    if not days:
        return []
    said = connection.in_its_words(str(error))
    context.log.error(f"ad account {advertiser_id}, {days_label(days)} not imported: {said}")
    return [
        AccountDayFailure(
            advertiser_id=advertiser_id,
            stat_date=day,
            step=RAW_ASSET,
            endpoint=error.endpoint,
            code=error.code,
            message=error.detail,
            what_to_do=connection.in_its_words(error.hint) if error.hint else error.hint,
            run_id=context.run.run_id,
        )
        for day in days
    ]


def _timezone_check(
    context: dg.AssetExecutionContext, connection: Connection, zones: dict[str, Any], day: date
) -> dg.AssetCheckResult:
    partitions_timezone = connection.timezone
    mismatched = {
        account: connection.in_its_words(message)
        for account, message in timezone_mismatches(zones, partitions_timezone, day).items()
    }
    for message in mismatched.values():
        context.log.warning(message)
    return dg.AssetCheckResult(
        check_name=TIMEZONE_CHECK,
        asset_key=connection.asset_key(RAW_ASSET),
        passed=not mismatched,
        severity=dg.AssetCheckSeverity.WARN,
        description=" ".join(mismatched.values()) or None,
        metadata={"partitions_timezone": partitions_timezone, "account_timezones": zones},
    )
