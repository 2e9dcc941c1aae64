"""Figures about a day of ad metrics, for asset metadata (numbers the Dagster UI can plot)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pandas as pd

from tiktok_amp_assets.core.currencies import format_amount

TOP_CAMPAIGNS = 10
# The metrics table's columns these figures read (converting only these to pandas saves time).
SUMMARY_COLUMNS = (
    "advertiser_id",
    "campaign_name",
    "currency",
    "cost",
    "impressions",
    "clicks",
    "conversions",
    "utm_inferred",
)


def ad_metrics_figures(metrics: pd.DataFrame) -> dict[str, float | int]:
    """Row and account counts, totals of each metric, and cost per currency (``cost_USD``...).

    ``metrics`` is a day's metrics table as pandas (cost as exact ``Decimal`` objects), at least its
    :data:`SUMMARY_COLUMNS`.
    """
    figures: dict[str, float | int] = {
        "rows": len(metrics),
        "accounts": int(metrics["advertiser_id"].nunique()),
        "impressions": int(metrics["impressions"].sum()),
        "clicks": int(metrics["clicks"].sum()),
        "conversions": int(metrics["conversions"].sum()),
        "rows_with_inferred_utms": int(metrics["utm_inferred"].map(len).astype(bool).sum()),
    }
    for currency, costs in sorted(metrics.groupby("currency")["cost"]):
        # float for the UI's plots; the exact Decimal sums stay in the stored table.
        figures[f"cost_{currency}"] = float(sum(costs.dropna(), Decimal(0)))
    return figures


def top_campaigns_markdown(metrics: pd.DataFrame, limit: int = TOP_CAMPAIGNS) -> str:
    """Markdown tables of the campaigns with the highest cost, one per currency: costs in different
    currencies are not comparable (any JPY amount is a larger number than any USD one). ``metrics``: as
    for the figures."""
    if metrics.empty:
        return "_no ad delivered on this day_"
    frame = pd.DataFrame(
        {
            "account": metrics["advertiser_id"],
            "campaign": metrics["campaign_name"],
            "currency": metrics["currency"],
            "cost": metrics["cost"].map(lambda cost: cost if cost is not None else Decimal(0)),
            "impressions": metrics["impressions"].fillna(0).astype("int64"),
            "clicks": metrics["clicks"].fillna(0).astype("int64"),
            "conversions": metrics["conversions"].fillna(0).astype("int64"),
        }
    )
    campaigns = frame.groupby(["currency", "account", "campaign"], as_index=False).agg(
        {"cost": "sum", "impressions": "sum", "clicks": "sum", "conversions": "sum"}
    )
    tables = []
    for currency, in_currency in campaigns.groupby("currency", sort=True):
        top = in_currency.sort_values("cost", ascending=False, kind="stable").head(limit)
        lines = [
            f"| {r.account} | {_cell(r.campaign)} | {format_amount(r.cost, currency)} | {r.impressions} | "
            f"{r.clicks} | {r.conversions} |"
            for r in top.itertuples()
        ]
        tables.append(
            f"**Cost in {currency}**\n\n| account | campaign | cost ({currency}) | impressions | clicks | "
            "conversions |\n|---|---|---:|---:|---:|---:|\n" + "\n".join(lines)
        )
    return "\n\n".join(tables)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:80]
