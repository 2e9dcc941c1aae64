"""Figures about a day of ad metrics, for asset metadata (numbers the Dagster UI can plot)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pandas as pd

from tiktok_amp_assets.core.ad_metrics import AdDayMetrics
from tiktok_amp_assets.core.currencies import format_amount

TOP_CAMPAIGNS = 10


def ad_metrics_figures(rows: Sequence[AdDayMetrics]) -> dict[str, float | int]:
    """Row and account counts, totals of each metric, and cost per currency (``cost_USD``...)."""
    figures: dict[str, float | int] = {
        "rows": len(rows),
        "accounts": len({row.advertiser_id for row in rows}),
        "impressions": sum(row.impressions or 0 for row in rows),
        "clicks": sum(row.clicks or 0 for row in rows),
        "conversions": sum(row.conversions or 0 for row in rows),
        "rows_with_inferred_utms": sum(1 for row in rows if row.utm_inferred),
    }
    for currency in sorted({row.currency for row in rows}):
        # float for the UI's plots; the exact Decimal sums stay in the stored rows.
        figures[f"cost_{currency}"] = float(sum(row.cost or 0 for row in rows if row.currency == currency))
    return figures


def top_campaigns_markdown(rows: Sequence[AdDayMetrics], limit: int = TOP_CAMPAIGNS) -> str:
    """Markdown tables of the campaigns with the highest cost, one per currency: costs in different
    currencies are not comparable (any JPY amount is a larger number than any USD one)."""
    if not rows:
        return "_no ad delivered on this day_"
    frame = pd.DataFrame(
        {
            "account": row.advertiser_id,
            "campaign": row.campaign_name,
            "currency": row.currency,
            "cost": row.cost or Decimal(0),
            "impressions": row.impressions or 0,
            "clicks": row.clicks or 0,
            "conversions": row.conversions or 0,
        }
        for row in rows
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
