"""Normalizing stored raw days into metrics tables and storing them: in order, as two pipeline stages.

Decoding TikTok's JSON and normalizing it holds the GIL, so a long range is normalized in worker
processes (spawned; they only read raw files and compute), a short one (a daily run) in a thread,
where a process's start would cost more than it saves. Each day's Parquet file is written by a
second stage while the step takes the day before (``pipeline.py``). An account whose rows cannot be
normalized is left out of its day and named (the account-day is the unit of failure); a day whose
raw reports were never stored stops the range with every earlier day whole and no later day written.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pyarrow as pa

from tiktok_amp_assets.clients.tiktok_extraction import ACCOUNT_TOTALS_KEY, TOTALS_GAP_KEY
from tiktok_amp_assets.core.ad_metrics import (
    METRICS_SCHEMA,
    ReportRowError,
    normalize_account_day,
    with_day_facts,
)
from tiktok_amp_assets.core.reconciliation import UNEXAMINED, TotalsGap, reconcile_account_day
from tiktok_amp_assets.pipeline import stage
from tiktok_amp_assets.storage.import_store import ImportStore, MissingPartitionError

# Account-days from which worker processes pay for their start (bench/RESULTS.md: the work of an
# account-day against a worker's start).
PARALLEL_FROM_ACCOUNT_DAYS = 90
WORKERS = 2
# Days normalized ahead of the one being written: bounds memory to a few days' tables.
_DAYS_AHEAD = 2 * WORKERS


class NormalizationError(Exception):
    """A day that cannot be normalized at all (its raw reports were never stored); the message says
    which day and what to do. A plain message, so that it crosses from a worker process unchanged."""


@dataclass(frozen=True)
class NormalizedDay:
    day: date
    # Every imported account's rows of the day (core.ad_metrics.METRICS_SCHEMA); its metadata says
    # which accounts it holds and the day's gaps (core.ad_metrics.with_day_facts).
    table: pa.Table
    gaps: list[TotalsGap]  # accounts whose rows do not add up to TikTok's account totals (delivered)
    # Accounts whose rows could not be normalized this time: account -> what and what to do.
    failures: dict[str, str] = field(default_factory=dict)
    # Accounts left out because their day is recorded as failed upstream (not fetched).
    withheld: list[str] = field(default_factory=list)


def normalize_day(
    location: tuple[str, str],
    advertiser_ids: Sequence[str],
    day: date,
    failed: Mapping[date, frozenset[str]] | None = None,
) -> NormalizedDay:
    """Read and normalize one day of every account but those ``failed`` holds for ``day`` (recorded
    as failed upstream). An account whose rows cannot be normalized is left out and named in
    ``failures``: the others go on. Raises :class:`NormalizationError` when a raw report is
    missing. ``location``: the data folder as text (a local path or an object-store URL) and the
    connection (``ImportStore.location``), which cross to a worker process."""
    store = ImportStore(location[0], connection=location[1])
    withheld = (failed or {}).get(day, frozenset())
    tables: list[pa.Table] = []
    gaps: list[TotalsGap] = []
    failures: dict[str, str] = {}
    imported: list[str] = []
    for advertiser_id in advertiser_ids:
        if advertiser_id in withheld:
            continue
        try:
            raw = store.read_raw_report(day, advertiser_id)
            account_table = normalize_account_day(raw)
        except MissingPartitionError as error:
            raise NormalizationError(f"{day}: {error}") from None
        except ReportRowError as error:
            failures[advertiser_id] = (
                f"{error}. TikTok's answer is kept as received in {store.raw_report_path(day, advertiser_id)}"
            )
            continue
        gap = reconcile_account_day(
            advertiser_id,
            day,
            account_table,
            raw.get(ACCOUNT_TOTALS_KEY),
            raw.get(TOTALS_GAP_KEY),
            currency=_currency(raw),
        )
        if gap is not None and gap.kind == UNEXAMINED:
            # Not judged when fetched (a raw day stored by an earlier version, or changed since): the
            # rows are not known whole, so this account-day waits for a fresh fetch.
            failures[advertiser_id] = (
                f"its ad rows of {day} do not add up to TikTok's account totals ({gap.as_record()['ad_rows']} "
                f"against {gap.as_record()['account_totals']}) and were not examined when fetched"
            )
            continue
        if gap is not None:
            gaps.append(gap)
        tables.append(account_table)
        imported.append(advertiser_id)
    table = pa.concat_tables(tables) if tables else METRICS_SCHEMA.empty_table()
    return NormalizedDay(
        day,
        with_day_facts(table, imported, [gap.as_record() for gap in gaps]),
        gaps,
        failures,
        sorted(withheld & set(advertiser_ids)),
    )


def _currency(raw: Mapping[str, Any]) -> str | None:
    info = raw.get("advertiser_info")
    currency = info.get("currency") if isinstance(info, Mapping) else None
    return currency if isinstance(currency, str) else None


def normalize_days(
    location: tuple[str, str],
    advertiser_ids: Sequence[str],
    days: Sequence[date],
    failed: Mapping[date, frozenset[str]] | None = None,
) -> Iterator[NormalizedDay]:
    """:func:`normalize_day` of each day, yielded in order (module docstring)."""
    long_range = len(days) * len(advertiser_ids) >= PARALLEL_FROM_ACCOUNT_DAYS
    processes = WORKERS if long_range and (os.cpu_count() or 1) >= WORKERS else 0
    work = functools.partial(_normalize_each, location, list(advertiser_ids), dict(failed or {}))
    return stage(work, days, depth=_DAYS_AHEAD, processes=processes)


def store_days(store: ImportStore, normalized: Iterator[NormalizedDay]) -> Iterator[NormalizedDay]:
    """Each normalized day once its Parquet file is written, in order (module docstring)."""
    return stage(functools.partial(_write_each, store), normalized, depth=1)


def _normalize_each(
    location: tuple[str, str],
    advertiser_ids: list[str],
    failed: dict[date, frozenset[str]],
    days: Iterable[date],
) -> Iterator[NormalizedDay]:
    for day in days:
        yield normalize_day(location, advertiser_ids, day, failed)


def _write_each(store: ImportStore, normalized: Iterable[NormalizedDay]) -> Iterator[NormalizedDay]:
    for day in normalized:
        store.write_ad_metrics(day.day, day.table)
        yield day
