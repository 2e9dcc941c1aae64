"""How downstream assets receive ``tiktok_ad_metrics``: a pandas DataFrame of their partitions' days.

``tiktok_ad_metrics`` writes its own Parquet files, one per day (a range run covers many days in one
step, which an I/O manager cannot store), and returns a ``MaterializeResult``, so Dagster never hands
it an output to store. What this I/O manager does is the other half: for an asset that depends on
``tiktok_ad_metrics``, it reads the Parquet days of the partitions that asset asks for (one day, a
backfill's range, or every day for an unpartitioned asset) into one DataFrame
(:func:`metrics_frame`: cost as exact ``Decimal``, counts as nullable ``Int64``). The only module that
imports pandas: the metrics path itself works on Arrow tables.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import pandas as pd
import pyarrow as pa

from tiktok_amp_assets.core.ad_metrics import METRICS_SCHEMA
from tiktok_amp_assets.resources import ImportStoreResource
from tiktok_amp_assets.storage.import_store import MissingPartitionError

# Days named in a "not materialized" message; the rest are counted.
_LISTED_DAYS = 10


class AdMetricsIOManager(dg.ConfigurableIOManager):
    """Loads the metrics Parquet days of the requested partitions as one pandas DataFrame."""

    import_store: ImportStoreResource

    def handle_output(self, context: dg.OutputContext, obj: object) -> None:
        # The asset writes its days itself and returns a MaterializeResult, which Dagster does not
        # pass here; anything else reaching this point is a wiring mistake worth naming.
        if obj is not None:
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned a {type(obj).__name__}: assets using "
                "AdMetricsIOManager write their own Parquet days and return a MaterializeResult"
            )

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        store = self.import_store.store()
        days = sorted(date.fromisoformat(key) for key in context.asset_partition_keys)
        tables: list[pa.Table] = []
        missing: list[date] = []
        for day in days:
            try:
                tables.append(store.read_ad_metrics(day))
            except MissingPartitionError:
                missing.append(day)
        if missing:
            asset = context.asset_key.to_user_string()
            listed = ", ".join(day.isoformat() for day in missing[:_LISTED_DAYS])
            more = f" and {len(missing) - _LISTED_DAYS} more" if len(missing) > _LISTED_DAYS else ""
            raise dg.Failure(
                description=(
                    f"{asset} has no data for {len(missing)} of the {len(days)} days asked for ({listed}{more}): "
                    f"materialize {asset} for those partitions first"
                )
            )
        return metrics_frame(pa.concat_tables(tables) if tables else METRICS_SCHEMA.empty_table())


def metrics_frame(table: pa.Table) -> pd.DataFrame:
    """A metrics table as pandas, exactly: cost as ``Decimal`` objects (never float), counts as
    nullable ``Int64`` (a metric TikTok did not report is ``<NA>``, not 0 or NaN), ``stat_date`` as
    ``datetime.date``, ids and names as strings."""
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
