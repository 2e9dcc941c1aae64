"""Normalizing stored raw days into metrics tables: in order, and for long ranges in two processes.

Decoding TikTok's JSON and normalizing it holds the GIL, so a range of days is spread over worker
processes (spawned; they only read raw files and compute), while the caller receives the days in
order and writes them itself: a bad day still stops the range with every earlier day whole and no
later day written. Short ranges (a daily run) are normalized in the caller's process, where a
worker's start (importing pyarrow and pandas, about a second) would cost more than it saves.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

from tiktok_amp_assets.clients.tiktok_extraction import ACCOUNT_TOTALS_KEY
from tiktok_amp_assets.core.ad_metrics import ReportRowError, normalize_account_day
from tiktok_amp_assets.core.reconciliation import Mismatch, reconcile_account_day
from tiktok_amp_assets.storage.import_store import ImportStore, MissingPartitionError
from tiktok_amp_assets.worker_processes import in_worker_processes

# Account-days from which worker processes pay for their start (measured: ~35 ms of work per
# account-day of 2,000 ads, ~1.5 s to start a worker).
PARALLEL_FROM_ACCOUNT_DAYS = 90
WORKERS = 2
# Days handed out ahead of the one being written: bounds memory to a few days' tables.
_DAYS_AHEAD = 2 * WORKERS


class NormalizationError(Exception):
    """A day that cannot be normalized; the message says which account, day, ad and field, and what
    to do. A plain message, so that it crosses from a worker process unchanged."""


@dataclass(frozen=True)
class NormalizedDay:
    day: date
    table: pa.Table  # every account's rows of the day (core.ad_metrics.METRICS_SCHEMA)
    mismatches: list[Mismatch]  # accounts whose rows do not add up to TikTok's account totals


def normalize_day(base_dir: str, advertiser_ids: Sequence[str], day: date) -> NormalizedDay:
    """Read and normalize one day of every account; raises :class:`NormalizationError`. ``base_dir``:
    the data folder as text (a local path or an object-store URL), which crosses to a worker process."""
    store = ImportStore(base_dir)
    tables: list[pa.Table] = []
    mismatches: list[Mismatch] = []
    for advertiser_id in advertiser_ids:
        try:
            raw = store.read_raw_report(day, advertiser_id)
            account_table = normalize_account_day(raw)
        except MissingPartitionError as error:
            raise NormalizationError(f"{day}: {error}") from None
        except ReportRowError as error:
            # Nothing of this day is written; earlier days of a range are whole files.
            raise NormalizationError(
                f"{day}: {error}. TikTok's answer is kept as received in "
                f"{store.raw_report_path(day, advertiser_id)}. What to do: run the partition again "
                "later; if TikTok keeps sending this, report it to TikTok, or to the maintainers of "
                "tiktok-amp-assets if the value looks valid."
            ) from None
        mismatch = reconcile_account_day(advertiser_id, day, account_table, raw.get(ACCOUNT_TOTALS_KEY))
        if mismatch is not None:
            mismatches.append(mismatch)
        tables.append(account_table)
    return NormalizedDay(day, pa.concat_tables(tables), mismatches)


def normalize_days(
    base_dir: str, advertiser_ids: Sequence[str], days: Sequence[date]
) -> Iterator[NormalizedDay]:
    """:func:`normalize_day` of each day, yielded in order (rules: module docstring)."""
    if len(days) * len(advertiser_ids) < PARALLEL_FROM_ACCOUNT_DAYS or (os.cpu_count() or 1) < WORKERS:
        for day in days:
            yield normalize_day(base_dir, advertiser_ids, day)
        return
    yield from in_worker_processes(
        functools.partial(normalize_day, base_dir, list(advertiser_ids)),
        days,
        workers=WORKERS,
        ahead=_DAYS_AHEAD,
    )
