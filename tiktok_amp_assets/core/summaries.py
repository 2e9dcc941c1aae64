"""Figures about a day of ad metrics, for asset metadata (numbers the Dagster UI can plot).

Computed on the day's Arrow table (core/ad_metrics.py's METRICS_SCHEMA) with Arrow's kernels: cost
stays an exact decimal through every sum, the run's process never converts a day to pandas, and a
long range's metadata costs a fraction of what it did through pandas (bench/RESULTS.md).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tiktok_amp_assets.core.currencies import format_amount
from tiktok_amp_assets.core.reconciliation import TotalsGap

TOP_CAMPAIGNS = 10
_COUNTS = ("impressions", "clicks", "conversions")


def ad_metrics_figures(metrics: pa.Table) -> dict[str, float | int]:
    """Row and account counts, totals of each metric, and cost per currency (``cost_USD``...).

    ``metrics``: a day's metrics table. A metric TikTok did not report (null) adds nothing.
    """
    figures: dict[str, float | int] = {
        "rows": metrics.num_rows,
        "accounts": pc.count_distinct(metrics["advertiser_id"]).as_py(),
        **{name: pc.sum(metrics[name]).as_py() or 0 for name in _COUNTS},
        "rows_with_inferred_utms": pc.sum(
            pc.greater(pc.list_value_length(metrics["utm_inferred"]), 0)
        ).as_py()
        or 0,
    }
    costs = metrics.group_by("currency").aggregate([("cost", "sum")])
    for currency, cost in sorted(
        zip(costs["currency"].to_pylist(), costs["cost_sum"].to_pylist(), strict=True)
    ):
        # float for the UI's plots; the exact sums stay in the stored table.
        figures[f"cost_{currency}"] = float(cost if cost is not None else Decimal(0))
    return figures


def unattributed_spend_figures(gaps: Iterable[TotalsGap]) -> dict[str, float]:
    """Spend in the account totals that no ad row holds, per currency (``unattributed_spend_USD``...),
    over a day's gaps (core/reconciliation.py); negative where the rows hold more."""
    spend: dict[str, Decimal] = defaultdict(Decimal)
    for gap in gaps:
        spend[gap.currency or "unknown"] += gap.not_in_ad_rows.cost
    return {f"unattributed_spend_{currency}": float(amount) for currency, amount in sorted(spend.items())}


def top_campaigns_markdown(metrics: pa.Table, limit: int = TOP_CAMPAIGNS) -> str:
    """Markdown tables of the campaigns with the highest cost, one per currency: costs in different
    currencies are not comparable (any JPY amount is a larger number than any USD one). Ties in cost
    go by account, then campaign name. ``metrics``: as for the figures."""
    if metrics.num_rows == 0:
        return "_no ad delivered on this day_"
    reported = pa.table(
        {
            "currency": metrics["currency"],
            "account": metrics["advertiser_id"],
            "campaign": metrics["campaign_name"],
            "cost": pc.fill_null(metrics["cost"], pa.scalar(Decimal(0), metrics.schema.field("cost").type)),
            **{name: pc.fill_null(metrics[name], 0) for name in _COUNTS},
        }
    )
    campaigns = (
        reported.group_by(["currency", "account", "campaign"])
        .aggregate([(name, "sum") for name in ("cost", *_COUNTS)])
        .sort_by(
            [
                ("currency", "ascending"),
                ("cost_sum", "descending"),
                ("account", "ascending"),
                ("campaign", "ascending"),
            ]
        )
    )
    tables: dict[str, list[str]] = {}
    for r in campaigns.to_pylist():
        lines = tables.setdefault(r["currency"], [])
        if len(lines) < limit:
            lines.append(
                f"| {r['account']} | {_cell(r['campaign'])} | {format_amount(r['cost_sum'], r['currency'])} | "
                f"{r['impressions_sum']} | {r['clicks_sum']} | {r['conversions_sum']} |"
            )
    return "\n\n".join(
        f"**Cost in {currency}**\n\n| account | campaign | cost ({currency}) | impressions | clicks | "
        "conversions |\n|---|---|---:|---:|---:|---:|\n" + "\n".join(lines)
        for currency, lines in tables.items()
    )


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")[:80]
