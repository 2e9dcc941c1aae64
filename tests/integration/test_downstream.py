"""A user's own asset below tiktok_ad_metrics: docs/results.md's example, run as written, against the emulators."""

from __future__ import annotations

import importlib.util
import re
import sys
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import dagster as dg
import pandas as pd
import pytest

from tiktok_amp_assets.code_location import connection_resources
from tiktok_amp_assets.core.ad_metrics import METRICS_SCHEMA
from tiktok_amp_assets.core.tiktok_contract import CONVERSIONS, SPEND

from ..conftest import Project

RESULTS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "results.md"
EXAMPLE_MARKER = "<!-- example: cost_per_conversion"
DAY = date(2025, 3, 4)
USER_ASSET = dg.AssetKey("cost_per_conversion_by_campaign")


def documented_example(tmp_path: Path) -> ModuleType:
    """docs/results.md's example code block, imported as the module ``my_analytics``."""
    text = RESULTS_PAGE.read_text(encoding="utf-8")
    after_marker = text[text.index(EXAMPLE_MARKER) :]
    code = re.search(r"```python\n(.*?)```", after_marker, re.DOTALL)
    assert code is not None, "docs/results.md's example has no python block after its marker"
    path = tmp_path / "my_analytics.py"
    path.write_text(code.group(1), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("my_analytics", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["my_analytics"] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules["my_analytics"]
    return module


def campaign_truth(project: Project, days: list[date]) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """(account, campaign) -> (cost, conversions) over ``days``, from the emulator's catalogue."""
    truth: dict[tuple[str, str], tuple[Decimal, int]] = defaultdict(lambda: (Decimal(0), 0))
    for advertiser_id in project.advertiser_ids:
        for ad in project.catalogue.ads_of(advertiser_id):
            for day in days:
                metrics = project.catalogue.daily_metrics(ad.ad_id, day)
                if metrics is not None:
                    cost, conversions = truth[(advertiser_id, ad.campaign_id)]
                    truth[(advertiser_id, ad.campaign_id)] = (
                        cost + Decimal(metrics[SPEND]),
                        conversions + int(metrics[CONVERSIONS]),
                    )
    return dict(truth)


def test_the_documented_example_computes_cost_per_conversion_by_campaign(
    project: Project, tmp_path: Path
) -> None:
    assert project.materialize(DAY).success
    defs = documented_example(tmp_path).defs
    job = defs.resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(
        asset_selection=[USER_ASSET], partition_key=DAY.isoformat(), instance=project.instance
    )
    assert result.success
    campaigns: pd.DataFrame = result.asset_value(USER_ASSET)

    truth = campaign_truth(project, [DAY])
    assert len(campaigns) == len(truth) > 1
    currencies = {a: project.catalogue.advertisers[a].currency for a in project.advertiser_ids}
    for row in campaigns.itertuples():
        cost, conversions = truth[(row.advertiser_id, row.campaign_id)]
        assert row.campaign_name == project.catalogue.campaigns[row.campaign_id].name
        assert row.currency == currencies[row.advertiser_id]
        assert isinstance(row.cost, Decimal) and row.cost == cost
        assert row.conversions == conversions
        expected = cost / conversions if conversions else None
        assert row.cost_per_conversion == expected


def test_a_range_of_days_loads_as_one_frame_with_exact_types(project: Project) -> None:
    first, last = DAY, DAY + timedelta(days=2)
    assert project.materialize(first, last).success
    io_manager = connection_resources(project.connection)["tiktok_ads_tiktok_ad_metrics_io_manager"]
    context = dg.build_input_context(
        asset_key=dg.AssetKey(["tiktok_ads", "tiktok_ad_metrics"]),
        asset_partitions_def=dg.DailyPartitionsDefinition(
            start_date=project.connection.start_date.isoformat()
        ),
        asset_partition_key_range=dg.PartitionKeyRange(first.isoformat(), last.isoformat()),
    )
    frame = io_manager.load_input(context)

    assert list(frame.columns) == METRICS_SCHEMA.names
    assert sorted(set(frame["stat_date"])) == [first, first + timedelta(days=1), last]
    days = [first + timedelta(days=offset) for offset in range(3)]
    truth = campaign_truth(project, days)
    assert sum(cost for cost, _ in truth.values()) == sum(frame["cost"].dropna(), Decimal(0))
    assert str(frame["conversions"].dtype) == "Int64" and str(frame["clicks"].dtype) == "Int64"
    assert all(isinstance(cost, Decimal) for cost in frame["cost"].dropna())


def test_loading_days_never_materialized_names_them(project: Project) -> None:
    io_manager = connection_resources(project.connection)["tiktok_ads_tiktok_ad_metrics_io_manager"]
    context = dg.build_input_context(
        asset_key=dg.AssetKey(["tiktok_ads", "tiktok_ad_metrics"]),
        asset_partitions_def=dg.DailyPartitionsDefinition(
            start_date=project.connection.start_date.isoformat()
        ),
        asset_partition_key_range=dg.PartitionKeyRange("2025-02-01", "2025-02-02"),
    )
    with pytest.raises(dg.Failure) as caught:
        io_manager.load_input(context)
    message = str(caught.value.description)
    assert "2025-02-01, 2025-02-02" in message and "materialize tiktok_ads/tiktok_ad_metrics" in message


def test_the_metrics_asset_shows_its_columns_in_the_ui(project: Project) -> None:
    metrics = project.defs.resolve_assets_def(dg.AssetKey(["tiktok_ads", "tiktok_ad_metrics"]))
    schema = metrics.metadata_by_key[metrics.key]["dagster/column_schema"]
    columns = {column.name: column for column in schema.columns}
    assert list(columns) == METRICS_SCHEMA.names
    assert columns["cost"].type == "decimal128(21, 6)" and columns["cost"].constraints.nullable
    assert columns["stat_date"].type == "date32[day]" and not columns["stat_date"].constraints.nullable
    assert columns["clicks"].type == "int64" and columns["ad_id"].type == "string"
    assert all(column.description for column in columns.values())
