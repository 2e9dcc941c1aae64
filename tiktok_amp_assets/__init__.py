"""TikTok Ads daily ad metrics into Amplitude, as Dagster assets.

Importing the package changes nothing in the importing process. The settings of the process that a
range run benefits from (Arrow's memory pool, glibc's malloc arenas) are environment variables set
where the process starts: docs/performance.md, "Settings of the process".
"""

from __future__ import annotations

from typing import Any

__all__ = ["TikTokAdsToAmplitude"]


def __getattr__(name: str) -> Any:
    # The component (one connection, component.py) is imported when asked for, not with the package:
    # the pipeline's worker processes import the package and need none of Dagster's component machinery.
    if name == "TikTokAdsToAmplitude":
        from tiktok_amp_assets.component import TikTokAdsToAmplitude

        return TikTokAdsToAmplitude
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
