"""The daily partitions: one partition is one calendar day of TikTok's reports."""

from __future__ import annotations

from datetime import date

import dagster as dg

from tiktok_amp_assets.connection import Connection


def daily_partitions(connection: Connection) -> dg.DailyPartitionsDefinition:
    """Days from the configured start date, closing in the configured time zone.

    A partition key is the ad accounts' report date (TikTok reports each account's days in the
    account's own time zone). The partitions' time zone only decides when a day counts as over,
    so set it to the (westernmost) accounts' zone: then "yesterday" is complete for every account.
    """
    return dg.DailyPartitionsDefinition(
        start_date=connection.start_date.isoformat(), timezone=connection.timezone
    )


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The days of this run: one for a single partition, many for a backfill range."""
    return [date.fromisoformat(key) for key in context.partition_keys]
