"""The three daily-partitioned assets: tiktok_raw_reports → tiktok_ad_metrics → amplitude_upload_results.

Each asset handles a whole range of days in one step (a backfill runs as one run), writes one file
per day itself, and records metadata per partition. The work is done by the plain functions in
``core``, the clients in ``clients`` and the store in ``storage``; this module only wires them.
"""

from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import pyarrow as pa

from tiktok_amp_assets.clients.amplitude import AmplitudeApiError
from tiktok_amp_assets.clients.tiktok import TikTokApiError, TikTokClient
from tiktok_amp_assets.core import tiktok_contract as tiktok_api
from tiktok_amp_assets.core.ad_metrics import (
    METRICS_SCHEMA,
    account_timezone,
    metrics_frame,
)
from tiktok_amp_assets.core.reconciliation import Mismatch
from tiktok_amp_assets.core.report_windows import report_windows
from tiktok_amp_assets.core.summaries import SUMMARY_COLUMNS, ad_metrics_figures, top_campaigns_markdown
from tiktok_amp_assets.normalize import ACCOUNT_TOTALS_KEY, NormalizationError, normalize_days
from tiktok_amp_assets.partitions import daily_partitions, partition_days
from tiktok_amp_assets.resources import AmplitudeResource, ImportStoreResource, TikTokResource
from tiktok_amp_assets.settings import ConfigurationError, ProjectSettings
from tiktok_amp_assets.storage.import_store import ImportStore, MissingPartitionError
from tiktok_amp_assets.upload import DayUploader

# Loads tiktok_ad_metrics as a pandas DataFrame into downstream assets (io_managers.py).
METRICS_IO_MANAGER = "tiktok_ad_metrics_io_manager"

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
        days = partition_days(context)
        advertiser_ids = _configured(tiktok.advertiser_id_list)
        store = import_store.store()
        rows_per_day: dict[date, int] = defaultdict(int)
        with closing(_configured(lambda: tiktok.client(logger=context.log))) as client:
            infos, refused = _account_facts(client, advertiser_ids)
            failures = {
                advertiser_id: f"{error}. {_not_imported(days)}" for advertiser_id, error in refused.items()
            }
            for advertiser_id, info in infos.items():
                stored = 0
                try:
                    for day, rows in _fetch_account_days(client, advertiser_id, info, days, store):
                        rows_per_day[day] += rows
                        stored += 1
                except TikTokApiError as error:
                    # Other accounts go on: their days are stored, and this one is named at the end,
                    # with the days left without its report (windows are stored in order).
                    failures[advertiser_id] = f"{error}. {_not_imported(days[stored:])}"
                    context.log.error(failures[advertiser_id])
            run_figures = {
                "run_tiktok_calls": sum(client.calls.values()),
                "run_tiktok_retries": client.retries,
            }
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
        mismatched = _timezone_mismatches(zones, settings.timezone, days[0])
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
        advertiser_ids = _configured(tiktok.advertiser_id_list)
        store = import_store.store()
        mismatches: list[Mismatch] = []
        # Days arrive normalized in order (normalize.py: in worker processes for long ranges). Each
        # day's Parquet file is written (encoded, fsynced) while the next day is received; at most
        # one write is in flight, and a failed write fails the step. Leaving the block waits for it,
        # also when a later day fails: earlier days are whole files, later ones not written.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-writer") as writer:
            writing: Future[Path] | None = None
            try:
                for normalized in normalize_days(store.base_dir, advertiser_ids, partition_days(context)):
                    day, table = normalized.day, normalized.table
                    mismatches.extend(normalized.mismatches)
                    if writing is not None:
                        writing.result()
                    writing = writer.submit(store.write_ad_metrics, day, table)
                    frame = metrics_frame(table.select(SUMMARY_COLUMNS))
                    context.add_asset_metadata(
                        {
                            **ad_metrics_figures(frame),
                            "dagster/row_count": table.num_rows,
                            "top_campaigns": dg.MetadataValue.md(top_campaigns_markdown(frame)),
                            "path": dg.MetadataValue.path(str(store.metrics_path(day))),
                        },
                        partition_key=day.isoformat(),
                    )
            except NormalizationError as error:
                raise dg.Failure(description=str(error)) from None
            if writing is not None:
                writing.result()
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

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        deps=[tiktok_ad_metrics],
        kinds={"amplitude"},
        pool=AMPLITUDE_POOL,
        description="What was sent to Amplitude per day and request: events sent, accepted, rejected, corrected.",
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
    ) -> dg.MaterializeResult:
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
        undelivered: list[Mismatch] = []
        try:
            for finished in uploader.upload(days):
                rejected_total += finished.results["events_rejected"]
                undelivered.extend(finished.undelivered)
                changes = finished.report.changes_markdown()
                context.add_asset_metadata(
                    {
                        **finished.report.figures(),
                        **({"changes": dg.MetadataValue.md(changes)} if changes else {}),
                        "path": dg.MetadataValue.path(finished.path),
                    },
                    partition_key=finished.report.day.isoformat(),
                )
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
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    check_name=DELIVERY_CHECK,
                    passed=not undelivered,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=(
                        "dry run: nothing was sent"
                        if client is None
                        else f"{len(undelivered)} ad-days differ between Amplitude and TikTok; run the partitions again"
                        if undelivered
                        else None
                    ),
                    metadata={
                        "differences": dg.MetadataValue.json([m.as_record() for m in undelivered[:50]])
                    },
                )
            ]
        )

    return [tiktok_raw_reports, tiktok_ad_metrics, amplitude_upload_results]


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


def _configured(build: Any) -> Any:
    """Turn a configuration problem into a Dagster failure whose message names the variable."""
    try:
        return build()
    except ConfigurationError as error:
        raise dg.Failure(description=str(error)) from None


def _account_facts(
    client: TikTokClient, advertiser_ids: list[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each account's ``advertiser/info`` item, and the accounts whose facts TikTok refused.

    One request serves up to 100 accounts; when TikTok refuses it, each account is asked on its
    own so that one account without permission does not stop the others.
    """
    try:
        return {str(item["advertiser_id"]): item for item in client.advertiser_info(advertiser_ids)}, {}
    except TikTokApiError as error:
        # Only a refusal about some accounts is worth asking account by account; a revoked token
        # or an exhausted retry budget would fail the same way for each of them.
        if len(advertiser_ids) == 1 or error.code not in (tiktok_api.NO_PERMISSION, None):
            return {}, dict.fromkeys(advertiser_ids, str(error))
    infos: dict[str, dict[str, Any]] = {}
    failures: dict[str, str] = {}
    for advertiser_id in advertiser_ids:
        try:
            infos[advertiser_id] = client.advertiser_info([advertiser_id])[0]
        except TikTokApiError as error:
            failures[advertiser_id] = str(error)
    return infos, failures


def _fetch_account_days(
    client: TikTokClient, advertiser_id: str, info: dict[str, Any], days: Sequence[date], store: ImportStore
) -> Iterator[tuple[date, int]]:
    """Fetch one account's days window by window and store one raw file per day."""
    wanted = set(days)
    ads_by_id: dict[str, dict[str, Any]] = {}  # metadata cache for the run: each ad fetched once
    for window_start, window_end in report_windows(days[0], days[-1]):
        window = (advertiser_id, window_start, window_end)
        rows = list(client.ad_day_report(advertiser_id, window_start, window_end))
        rows_by_day = _rows_by_day(rows, window, ad_level=True)
        totals_rows = client.account_day_totals(advertiser_id, window_start, window_end)
        totals_by_day = {day: day_rows[-1] for day, day_rows in _rows_by_day(totals_rows, window).items()}
        new_ad_ids = {str(row["dimensions"]["ad_id"]) for row in rows} - ads_by_id.keys()
        for item in client.ads(advertiser_id, new_ad_ids):
            if not _usable_id(item.get("ad_id")):
                raise _malformed_answer(
                    window, tiktok_api.AD_PATH, "ad_id", f"an item has {item.get('ad_id')!r}"
                )
            ads_by_id[str(item["ad_id"])] = item
        fetched_at = datetime.now(UTC).isoformat(timespec="seconds")
        for day in sorted(wanted):
            if not window_start <= day <= window_end:
                continue
            day_rows = rows_by_day.get(day.isoformat(), [])
            day_ad_ids = {str(row["dimensions"]["ad_id"]) for row in day_rows}
            store.write_raw_report(
                day,
                advertiser_id,
                {
                    "advertiser_id": advertiser_id,
                    "stat_date": day.isoformat(),
                    "fetched_at": fetched_at,
                    "advertiser_info": info,
                    # TikTok's own account total for the day (None: no delivery), for reconciliation.
                    ACCOUNT_TOTALS_KEY: totals_by_day.get(day.isoformat()),
                    "report_rows": day_rows,
                    "ads": [ads_by_id[ad_id] for ad_id in sorted(day_ad_ids) if ad_id in ads_by_id],
                },
            )
            yield day, len(day_rows)


def _rows_by_day(
    rows: list[dict[str, Any]], window: tuple[str, date, date], *, ad_level: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """Report rows by day (YYYY-MM-DD). A row that cannot be placed (no day, a day outside the window,
    no ad id) fails the account naming the days and the field, rather than raising a KeyError or
    being silently dropped; every other value is kept as received, for ``core`` to judge."""
    _, first, last = window
    by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
    known: dict[str, str] = {}  # stat_time_day text -> its day, checked once per text (a window has <= 31)
    for row in rows:
        dimensions = row.get("dimensions")
        dimensions = dimensions if isinstance(dimensions, dict) else {}
        stat_time_day = dimensions.get("stat_time_day")
        day = known.get(stat_time_day) if isinstance(stat_time_day, str) else None
        if day is None:
            parsed = _report_day(stat_time_day)
            if parsed is None or not first <= parsed <= last:
                raise _malformed_answer(
                    window, tiktok_api.REPORT_PATH, "dimensions.stat_time_day", f"a row has {stat_time_day!r}"
                )
            day = known[str(stat_time_day)] = parsed.isoformat()
        if ad_level and not _usable_id(dimensions.get("ad_id")):
            raise _malformed_answer(
                window, tiktok_api.REPORT_PATH, "dimensions.ad_id", f"a row has {dimensions.get('ad_id')!r}"
            )
        by_day[day].append(row)
    return by_day


def _report_day(stat_time_day: object) -> date | None:
    if not isinstance(stat_time_day, str):
        return None
    try:
        return date.fromisoformat(stat_time_day[:10])
    except ValueError:
        return None


def _usable_id(value: object) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool) and bool(str(value).strip())


def _malformed_answer(
    window: tuple[str, date, date], endpoint: str, field: str, problem: str
) -> TikTokApiError:
    advertiser_id, first, last = window
    return TikTokApiError(
        accounts=[advertiser_id],
        endpoint=endpoint,
        code=None,
        detail=f"field {field!r} unusable for the days {first} to {last}: {problem}",
        hint="run the partition again; if it persists, TikTok's answers changed shape: report it to the "
        "maintainers of tiktok-amp-assets",
    )


def _not_imported(days: Sequence[date]) -> str:
    if not days:
        return ""
    label = f"{days[0]}" if len(days) == 1 else f"{days[0]} to {days[-1]}"
    return f"Not imported for this account: {label}."


def _timezone_mismatches(zones: dict[str, str | None], partitions_timezone: str, day: date) -> dict[str, str]:
    """Accounts whose time zone closes days at another hour than the partitions do, with a message."""
    mismatched: dict[str, str] = {}
    for advertiser_id, zone in zones.items():
        if zone is None or _same_offsets(zone, partitions_timezone, day):
            continue
        mismatched[advertiser_id] = (
            f"ad account {advertiser_id} reports days in {zone}, but the partitions close in {partitions_timezone}. "
            "Each partition still holds the account's own calendar day (nothing is shifted), but the schedule may "
            "read a day before it is over there. Set TIKTOK_AMP_TIMEZONE to the accounts' (westernmost) time "
            "zone; see the README's 'Time zones' section."
        )
    return mismatched


def _same_offsets(zone_a: str, zone_b: str, day: date) -> bool:
    moments = [datetime.combine(day.replace(month=month, day=1), time(12)) for month in (1, 7)]
    return all(
        moment.replace(tzinfo=ZoneInfo(zone_a)).utcoffset()
        == moment.replace(tzinfo=ZoneInfo(zone_b)).utcoffset()
        for moment in moments
    )
