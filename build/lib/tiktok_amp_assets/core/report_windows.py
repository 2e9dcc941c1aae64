"""Cutting a date range into the fewest report requests TikTok allows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta

from tiktok_amp_assets.core.tiktok_contract import MAX_REPORT_SPAN_DAYS


def report_windows(
    start: date, end: date, days_per_window: int = MAX_REPORT_SPAN_DAYS
) -> Iterator[tuple[date, date]]:
    """Consecutive inclusive ``(start, end)`` windows of at most ``days_per_window`` days covering ``start..end``.

    TikTok rejects a daily report spanning more than 30 days. Sources disagree on whether that
    means 30 or 31 calendar days, so a window holds 30 calendar days: valid under both readings.
    """
    if end < start:
        raise ValueError(f"report range ends ({end}) before it starts ({start})")
    if days_per_window < 1:
        raise ValueError(f"a report window needs at least one day, got {days_per_window}")
    window_start = start
    while window_start <= end:
        window_end = min(end, window_start + timedelta(days=days_per_window - 1))
        yield window_start, window_end
        window_start = window_end + timedelta(days=1)
