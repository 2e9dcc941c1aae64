"""A connection's daily schedule: yesterday's partition, plus a trailing window of days TikTok may have revised."""

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg

from tiktok_amp_assets.connection import Connection

# Dagster's own tags for a run over a range of partitions (what a single-run backfill launches).
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def days_to_import(yesterday: date, connection: Connection) -> tuple[date, date] | None:
    """First and last day a tick on the day after ``yesterday`` materializes, or None before the start."""
    if yesterday < connection.start_date:
        return None
    return max(connection.start_date, yesterday - timedelta(days=connection.lookback_days)), yesterday


def build_daily_schedule(job: Any, connection: Connection) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=connection.schedule_name,
        job=job,
        cron_schedule=f"0 {connection.schedule_hour} * * *",
        execution_timezone=connection.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every day at {connection.schedule_hour:02d}:00 {connection.timezone}: yesterday's partition, and the "
            f"{connection.lookback_days} days before it again so TikTok's revisions reach Amplitude."
        ),
    )
    def tiktok_amp_daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        today = context.scheduled_execution_time.astimezone(ZoneInfo(connection.timezone)).date()
        days = days_to_import(today - timedelta(days=1), connection)
        if days is None:
            return dg.SkipReason(
                f"yesterday ({today - timedelta(days=1)}) is before the first partition {connection.start_date}"
            )
        first, last = days
        if first == last:
            return dg.RunRequest(run_key=last.isoformat(), partition_key=last.isoformat())
        # One run over the whole window, like a single-run backfill: one TikTok report request.
        return dg.RunRequest(
            run_key=last.isoformat(),
            tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        )

    return tiktok_amp_daily
