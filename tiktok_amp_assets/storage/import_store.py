"""Where each asset keeps its partitions, one file per day (and per account for raw reports).

The data folder is local or an object store (``storage/locations.py``), shared by every connection;
each connection keeps its files in a folder of its name, so that two connections (even of one ad
account) never overwrite each other's. Layout under ``<data folder>/<connection>/``::

    raw/<YYYY-MM-DD>/<advertiser_id>.json   tiktok_raw_reports: TikTok's answers, as received
    metrics/<YYYY-MM-DD>.parquet            tiktok_ad_metrics: the day's typed metrics table (Parquet)
    uploads/<YYYY-MM-DD>.json               amplitude_upload_results: what was sent and what came back
    uploads/<YYYY-MM-DD>.dry-run.json       the same for a dry run (built, not sent), kept apart so a
                                            dry run never hides what a real run sent
    failed/<YYYY-MM-DD>/<advertiser_id>.json  an account-day that could not be imported (what TikTok said,
                                            what to do); removed once a run imports that account-day

and in the data folder itself, shared by all connections::

    amplitude_ledger.sqlite                 what Amplitude has counted, per Amplitude project and event
                                            (see ledger.py), when the folder is local and
                                            TIKTOK_AMP_LEDGER_URL is unset

Every file is written whole (``files.py``): Parquet and JSON alike are bytes given to
``atomic_write_bytes`` and read back with ``read_bytes_whole``. Assets write their partitions
themselves rather than through an I/O manager because a range run (a backfill) writes many
partitions in one step; downstream assets read the metrics through ``io_managers.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from upath import UPath

from tiktok_amp_assets.connection import DEFAULT_CONNECTION
from tiktok_amp_assets.core.ad_metrics import METRICS_SCHEMA
from tiktok_amp_assets.storage.files import (
    atomic_write_bytes,
    atomic_write_json,
    read_bytes_whole,
    read_json,
    remove_abandoned_temp_files,
)
from tiktok_amp_assets.storage.ledger import AmplitudeLedger
from tiktok_amp_assets.storage.locations import ledger_database_url, open_data_folder


class MissingPartitionError(FileNotFoundError):
    """An upstream partition has not been materialized yet."""


class StoredMetricsError(ValueError):
    """A metrics table whose columns are not :data:`METRICS_SCHEMA`'s."""


# A write takes seconds at most; a temporary file this old was left by a killed process.
ABANDONED_AFTER_SECONDS = 3600.0


class ImportStore:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        ledger_url: str | None = None,
        *,
        connection: str = DEFAULT_CONNECTION,
        amplitude_project: str | None = None,
    ) -> None:
        """``data_dir``: a local folder or an object-store URL; ``ledger_url``: the PostgreSQL ledger's
        URL (a secret), or None for the SQLite file in a local ``data_dir``; ``connection``: whose
        files (its folder of the data folder); ``amplitude_project``: the project whose events the
        ledger holds (default: the connection's name, as in component.py)."""
        self.data_dir: UPath = open_data_folder(data_dir)
        self.connection = connection
        self.amplitude_project = amplitude_project or connection
        self.base_dir: UPath = self.data_dir / connection
        self._ledger_url = ledger_url

    def location(self) -> tuple[str, str]:
        """The data folder (as text) and the connection: what a worker process opens the store from."""
        return str(self.data_dir), self.connection

    def remove_abandoned_temp_files(self) -> list[Path]:
        """Temporary files of writes killed mid-way (the finished files are never torn)."""
        return remove_abandoned_temp_files(self.data_dir, ABANDONED_AFTER_SECONDS)

    # tiktok_raw_reports

    def raw_report_path(self, day: date, advertiser_id: str) -> UPath:
        return self.base_dir / "raw" / day.isoformat() / f"{advertiser_id}.json"

    def write_raw_report(self, day: date, advertiser_id: str, raw: dict[str, Any]) -> UPath:
        path = self.raw_report_path(day, advertiser_id)
        atomic_write_json(path, raw)
        return path

    def read_raw_report(self, day: date, advertiser_id: str) -> dict[str, Any]:
        path = self.raw_report_path(day, advertiser_id)
        if not path.exists():
            raise MissingPartitionError(
                f"no raw TikTok report for ad account {advertiser_id} on {day}: materialize "
                f"tiktok_raw_reports for partition {day} first"
            )
        return read_json(path)

    # account-days that could not be imported (raw or metrics step): what re-runs import again

    def account_day_failure_path(self, day: date, advertiser_id: str) -> UPath:
        return self.base_dir / "failed" / day.isoformat() / f"{advertiser_id}.json"

    def record_account_day_failure(self, day: date, advertiser_id: str, failure: dict[str, Any]) -> None:
        atomic_write_json(self.account_day_failure_path(day, advertiser_id), failure)

    def clear_account_day_failure(self, day: date, advertiser_id: str) -> None:
        self.account_day_failure_path(day, advertiser_id).unlink(missing_ok=True)

    def account_day_failures(self, days: Iterable[date]) -> dict[tuple[date, str], dict[str, Any]]:
        """The recorded failures of ``days``, by (day, advertiser id): one listing of the folder."""
        wanted = {day.isoformat() for day in days}
        folder = self.base_dir / "failed"
        if not wanted or not folder.exists():
            return {}
        failures: dict[tuple[date, str], dict[str, Any]] = {}
        for path in folder.glob("*/*.json"):
            if path.parent.name in wanted:
                try:
                    failures[(date.fromisoformat(path.parent.name), path.stem)] = read_json(path)
                except FileNotFoundError:
                    continue  # cleared by a run that imported it meanwhile
        return failures

    # tiktok_ad_metrics

    def metrics_path(self, day: date) -> UPath:
        return self.base_dir / "metrics" / f"{day.isoformat()}.parquet"

    def write_ad_metrics(self, day: date, table: pa.Table) -> UPath:
        """Write the day's metrics table as one Parquet file (Snappy-compressed, Arrow types kept)."""
        difference = _schema_difference(table.schema)
        if difference:
            raise StoredMetricsError(
                f"the ad metrics of {day} do not have the metrics table's columns ({difference}): "
                "a bug in tiktok-amp-assets, please report it"
            )
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer)
        path = self.metrics_path(day)
        atomic_write_bytes(path, buffer.getvalue().to_pybytes())
        return path

    def read_ad_metrics(self, day: date) -> pa.Table:
        """The day's metrics table, exactly as written (:data:`METRICS_SCHEMA`)."""
        path = self.metrics_path(day)
        if not path.exists():
            raise MissingPartitionError(
                f"no normalized ad metrics for {day}: materialize tiktok_ad_metrics for partition {day} first"
            )
        table = pq.read_table(pa.BufferReader(read_bytes_whole(path)))
        difference = _schema_difference(table.schema)
        if difference:
            raise StoredMetricsError(
                f"{path} does not hold the metrics table ({difference}): materialize tiktok_ad_metrics for "
                f"partition {day} again"
            )
        return table

    # amplitude_upload_results

    def upload_results_path(self, day: date, *, dry_run: bool = False) -> UPath:
        return self.base_dir / "uploads" / f"{day.isoformat()}{'.dry-run' if dry_run else ''}.json"

    def write_upload_results(self, day: date, results: dict[str, Any]) -> UPath:
        path = self.upload_results_path(day, dry_run=results["dry_run"])
        atomic_write_json(path, results)
        return path

    def read_upload_results(self, day: date, *, dry_run: bool = False) -> dict[str, Any]:
        return read_json(self.upload_results_path(day, dry_run=dry_run))

    def ledger(self) -> AmplitudeLedger:
        """The ledger, as this store's Amplitude project reads and writes it."""
        return AmplitudeLedger(
            ledger_database_url(self.data_dir, self._ledger_url), amplitude_project=self.amplitude_project
        )


def _schema_difference(schema: pa.Schema) -> str:
    expected = {field.name: field.type for field in METRICS_SCHEMA}
    found = {field.name: field.type for field in schema}
    problems = [f"{name} missing" for name in expected if name not in found]
    problems += [
        f"{name} is {found[name]}, not {expected[name]}"
        for name in expected
        if name in found and found[name] != expected[name]
    ]
    problems += [f"{name} unexpected" for name in found if name not in expected]
    if not problems and list(found) != list(expected):
        problems.append("columns in another order")
    return "; ".join(problems)
