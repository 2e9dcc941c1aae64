"""The three daily-partitioned assets: tiktok_raw_reports → tiktok_ad_metrics → amplitude_upload_results.

One module per asset, each a small factory (one set per connection, its keys prefixed with its name)
around a plain function that does the step: read configuration, call ``clients``/``core``/``storage``,
record metadata, return results. Each asset handles a whole range of days in one step (a backfill
runs as one run), writes one file per day itself, and records metadata per partition.
"""

from __future__ import annotations

import warnings

import dagster as dg

from tiktok_amp_assets.assets.ad_metrics import build_ad_metrics
from tiktok_amp_assets.assets.names import (
    ACCOUNTS_CHECK,
    DELIVERY_CHECK,
    METRICS_IO_MANAGER,
    RECONCILIATION_CHECK,
    TIMEZONE_CHECK,
    UPLOAD_ASSET,
)
from tiktok_amp_assets.assets.raw_reports import build_raw_reports
from tiktok_amp_assets.assets.upload_results import build_upload_results
from tiktok_amp_assets.connection import Connection
from tiktok_amp_assets.partitions import daily_partitions

__all__ = [
    "ACCOUNTS_CHECK",
    "DELIVERY_CHECK",
    "METRICS_IO_MANAGER",
    "RECONCILIATION_CHECK",
    "TIMEZONE_CHECK",
    "UPLOAD_ASSET",
    "build_assets",
]


def build_assets(connection: Connection) -> list[dg.AssetsDefinition]:
    partitions_def = daily_partitions(connection)
    # BackfillPolicy is beta in Dagster 1.13; this project relies on single_run on purpose (its tests
    # pin the behaviour), and the notice would otherwise repeat in every process that loads the code.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        # One run for a whole backfill: a range costs ~rows/1000 TikTok calls instead of one per day.
        backfill_policy = dg.BackfillPolicy.single_run()
        raw_reports = build_raw_reports(partitions_def, backfill_policy, connection)
        ad_metrics = build_ad_metrics(partitions_def, backfill_policy, raw_reports, connection)
        upload_results = build_upload_results(partitions_def, backfill_policy, ad_metrics, connection)
    return [raw_reports, ad_metrics, upload_results]
