"""The three daily-partitioned assets: tiktok_raw_reports → tiktok_ad_metrics → amplitude_upload_results.

Each asset handles a whole range of days in one step (a backfill runs as one run), writes one file
per day itself, and records metadata per partition. The work is done by the plain functions in
``core``, the clients in ``clients`` and the store in ``storage``; this module only wires them.
"""


from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from datetime import date, datetime, time, timezone
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from tiktok_amp_assets.clients.amplitude import AmplitudeApiError, Delivery
from tiktok_amp_assets.clients.tiktok import TikTokApiError, TikTokClient
from tiktok_amp_assets.core.ad_metrics import AdDayMetrics, ReportRowError, account_timezone, normalize_account_day
from tiktok_amp_assets.core.report_windows import report_windows
from tiktok_amp_assets.core.summaries import ad_metrics_figures, top_campaigns_markdown
from tiktok_amp_assets.core.upload_plan import plan_events
from tiktok_amp_assets.core.upload_report import DayUploadReport, event_stat_date
from tiktok_amp_assets.partitions import daily_partitions, partition_days
from tiktok_amp_assets.resources import AmplitudeResource, ImportStoreResource, TikTokResource
from tiktok_amp_assets.settings import ConfigurationError, ProjectSettings
from tiktok_amp_assets.storage.import_store import ImportStore, MissingPartitionError
from tiktok_amp_assets.storage.ledger import AmplitudeLedger

GROUP = "tiktok_ads"
# Concurrency pools: cap how many steps call each API at once across all runs (dagster.yaml).
TIKTOK_POOL = "tiktok_api"
AMPLITUDE_POOL = "amplitude_api"
# Days uploaded together: bounds memory by one window, however long the backfill.
UPLOAD_WINDOW_DAYS = 31


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
    )
    def tiktok_raw_reports(
        context: dg.AssetExecutionContext, tiktok: TikTokResource, import_store: ImportStoreResource
    ) -> None:
        days = partition_days(context)
        advertiser_ids = _configured(tiktok.advertiser_id_list)
        store = import_store.store()
        client = _configured(lambda: tiktok.client(logger=context.log))
        rows_per_day: dict[date, int] = defaultdict(int)
        infos, failures = _account_facts(client, advertiser_ids)
        for advertiser_id, info in infos.items():
            _warn_on_timezone_mismatch(context, advertiser_id, info, settings.timezone, days[0])
            try:
                for day, rows in _fetch_account_days(client, advertiser_id, info, days, store):
                    rows_per_day[day] += rows
            except TikTokApiError as error:
                # Other accounts go on: their days are stored, and this one is named at the end.
                failures[advertiser_id] = str(error)
                context.log.error(str(error))
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
                    "path": dg.MetadataValue.path(str(store.raw_report_path(day, advertiser_ids[0]).parent)),
                },
                partition_key=day.isoformat(),
            )
        context.add_output_metadata({"tiktok_calls": sum(client.calls.values()), "tiktok_retries": client.retries})

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        deps=[tiktok_raw_reports],
        kinds={"pandas", "json"},
        description="One validated row per ad account, ad and day: ids, names, cost, counts, currency, UTMs.",
    )
    def tiktok_ad_metrics(
        context: dg.AssetExecutionContext, tiktok: TikTokResource, import_store: ImportStoreResource
    ) -> None:
        advertiser_ids = _configured(tiktok.advertiser_id_list)
        store = import_store.store()
        for day in partition_days(context):
            try:
                rows = [
                    row
                    for advertiser_id in advertiser_ids
                    for row in normalize_account_day(store.read_raw_report(day, advertiser_id))
                ]
            except (ReportRowError, MissingPartitionError) as error:
                raise dg.Failure(description=f"{day}: {error}") from None
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

    @dg.asset(
        group_name=GROUP,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
        deps=[tiktok_ad_metrics],
        kinds={"amplitude"},
        pool=AMPLITUDE_POOL,
        description="What was sent to Amplitude per day and request: events sent, accepted, rejected, corrected.",
    )
    def amplitude_upload_results(
        context: dg.AssetExecutionContext, amplitude: AmplitudeResource, import_store: ImportStoreResource
    ) -> None:
        days = partition_days(context)
        store = import_store.store()
        ledger = store.ledger()
        client = None if amplitude.dry_run else _configured(lambda: amplitude.client(days=len(days), logger=context.log))
        rejected_total = 0
        for window_start, window_end in report_windows(days[0], days[-1], UPLOAD_WINDOW_DAYS):
            window = [day for day in days if window_start <= day <= window_end]
            reports = {day: DayUploadReport(day) for day in window}
            if client is not None:
                _resend_pending(client, ledger, reports)
            rows = _read_metrics(store, window)
            planned = plan_events(rows, ledger.counted(window), window, policy=amplitude.restatement_policy)
            for event in planned:
                reports[event.ad_day_event.stat_date].planned.append(event)
            if client is None:
                context.log.info("dry run: %d events built for %s..%s, none sent", len(planned), window[0], window[-1])
            else:
                ledger.record_pending(event.ad_day_event for event in planned)
                try:
                    for delivery in client.send([event.ad_day_event.payload for event in planned]):
                        _record_delivery(ledger, reports, delivery)
                except AmplitudeApiError as error:
                    raise dg.Failure(description=str(error)) from None
            for day, report in reports.items():
                results = report.results(endpoint=client.path if client else None, policy=amplitude.restatement_policy)
                path = store.write_upload_results(day, results)
                rejected_total += results["events_rejected"]
                context.add_asset_metadata(
                    {**report.figures(), "path": dg.MetadataValue.path(str(path))}, partition_key=day.isoformat()
                )
        if rejected_total:
            raise dg.Failure(
                description=(
                    f"Amplitude rejected {rejected_total} events; the rest were delivered. The rejected events and "
                    "their reasons are listed under 'events' in each day's upload results file; fix the cause and "
                    "run the partitions again (only what Amplitude has not counted will be sent)."
                )
            )

    return [tiktok_raw_reports, tiktok_ad_metrics, amplitude_upload_results]


def _configured(build: Any) -> Any:
    """Turn a configuration problem into a Dagster failure whose message names the variable."""
    try:
        return build()
    except ConfigurationError as error:
        raise dg.Failure(description=str(error)) from None


def _account_facts(client: TikTokClient, advertiser_ids: list[str]) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each account's ``advertiser/info`` item, and the accounts whose facts TikTok refused.

    One request serves up to 100 accounts; when TikTok refuses it, each account is asked on its
    own so that one account without permission does not stop the others.
    """
    try:
        return {str(item["advertiser_id"]): item for item in client.advertiser_info(advertiser_ids)}, {}
    except TikTokApiError as error:
        if len(advertiser_ids) == 1:
            return {}, {advertiser_ids[0]: str(error)}
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
        rows = list(client.ad_day_report(advertiser_id, window_start, window_end))
        new_ad_ids = {str(row["dimensions"]["ad_id"]) for row in rows} - ads_by_id.keys()
        for item in client.ads(advertiser_id, new_ad_ids):
            ads_by_id[str(item["ad_id"])] = item
        rows_by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            rows_by_day[str(row["dimensions"]["stat_time_day"])[:10]].append(row)
        fetched_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
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
                    "report_rows": day_rows,
                    "ads": [ads_by_id[ad_id] for ad_id in sorted(day_ad_ids) if ad_id in ads_by_id],
                },
            )
            yield day, len(day_rows)


def _warn_on_timezone_mismatch(
    context: dg.AssetExecutionContext, advertiser_id: str, info: dict[str, Any], partitions_timezone: str, day: date
) -> None:
    account_zone = account_timezone(info)
    if account_zone is None or _same_offsets(account_zone, partitions_timezone, day):
        return
    context.log.warning(
        f"ad account {advertiser_id} reports days in {account_zone}, but the partitions close in "
        f"{partitions_timezone}. Each partition still holds the account's own calendar day (nothing is "
        "shifted), but the schedule may read a day before it is over there. Set TIKTOK_AMP_TIMEZONE to the "
        "accounts' (westernmost) time zone; see the README's 'Time zones' section."
    )


def _same_offsets(zone_a: str, zone_b: str, day: date) -> bool:
    moments = [datetime.combine(day.replace(month=month, day=1), time(12)) for month in (1, 7)]
    return all(
        moment.replace(tzinfo=ZoneInfo(zone_a)).utcoffset() == moment.replace(tzinfo=ZoneInfo(zone_b)).utcoffset()
        for moment in moments
    )


def _read_metrics(store: ImportStore, days: Sequence[date]) -> list[AdDayMetrics]:
    try:
        return [row for day in days for row in store.read_ad_metrics(day)]
    except MissingPartitionError as error:
        raise dg.Failure(description=str(error)) from None


def _resend_pending(client: Any, ledger: AmplitudeLedger, reports: dict[date, DayUploadReport]) -> None:
    """Events recorded by a run that stopped mid-upload go out again unchanged, before anything new:
    Amplitude drops them if it had counted them (same insert_id), counts them if not."""
    pending = ledger.pending(reports)
    for event in pending:
        reports[event.stat_date].resent_pending += 1
    for delivery in client.send([event.payload for event in pending]):
        _record_delivery(ledger, reports, delivery)


def _record_delivery(ledger: AmplitudeLedger, reports: dict[date, DayUploadReport], delivery: Delivery) -> None:
    # Durable before the next request goes out: a crash after this line loses nothing.
    ledger.acknowledge(event["insert_id"] for event in delivery.accepted)
    ledger.reject({rejected.insert_id: rejected.reason for rejected in delivery.rejected})
    events_per_day: dict[date, int] = defaultdict(int)
    for event in delivery.accepted:
        day = event_stat_date(event)
        events_per_day[day] += 1
        reports[day].accepted.add(event["insert_id"])
    for rejected in delivery.rejected:
        day = event_stat_date(rejected.event)
        events_per_day[day] += 1
        reports[day].rejected[rejected.insert_id] = rejected.reason
    for day, count in events_per_day.items():
        reports[day].requests.extend({**asdict(record), "events_of_this_day": count} for record in delivery.requests)
