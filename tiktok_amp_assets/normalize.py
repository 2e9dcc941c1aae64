"""Normalizing stored raw days into metrics tables and storing them: in order, as two pipeline stages.

Decoding TikTok's JSON and normalizing it holds the GIL, so a long range is normalized in worker
processes (spawned; they only read raw files and compute), a short one (a daily run) in a thread,
where a process's start would cost more than it saves. Each day's Parquet file is written by a
second stage while the step takes the day before (``pipeline.py``). A bad day still stops the range
with every earlier day whole and no later day written.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import pyarrow as pa

from tiktok_amp_assets.clients.tiktok_extraction import ACCOUNT_TOTALS_KEY
from tiktok_amp_assets.core.ad_metrics import ReportRowError, normalize_account_day
from tiktok_amp_assets.core.reconciliation import Mismatch, reconcile_account_day
from tiktok_amp_assets.pipeline import stage
from tiktok_amp_assets.storage.import_store import ImportStore, MissingPartitionError

# Account-days from which worker processes pay for their start (bench/RESULTS.md: the work of an
# account-day against a worker's start).
PARALLEL_FROM_ACCOUNT_DAYS = 90
WORKERS = 2
# Days normalized ahead of the one being written: bounds memory to a few days' tables.
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
    """:func:`normalize_day` of each day, yielded in order (module docstring)."""
    long_range = len(days) * len(advertiser_ids) >= PARALLEL_FROM_ACCOUNT_DAYS
    processes = WORKERS if long_range and (os.cpu_count() or 1) >= WORKERS else 0
    work = functools.partial(_normalize_each, base_dir, list(advertiser_ids))
    return stage(work, days, depth=_DAYS_AHEAD, processes=processes)


def store_days(store: ImportStore, normalized: Iterator[NormalizedDay]) -> Iterator[NormalizedDay]:
    """Each normalized day once its Parquet file is written, in order (module docstring)."""
    return stage(functools.partial(_write_each, store), normalized, depth=1)


def _normalize_each(
    base_dir: str, advertiser_ids: list[str], days: Iterable[date]
) -> Iterator[NormalizedDay]:
    for day in days:
        yield normalize_day(base_dir, advertiser_ids, day)


def _write_each(store: ImportStore, normalized: Iterable[NormalizedDay]) -> Iterator[NormalizedDay]:
    for day in normalized:
        store.write_ad_metrics(day.day, day.table)
        yield day
