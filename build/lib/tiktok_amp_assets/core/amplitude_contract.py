"""Amplitude's ingestion API contract, in one place (see ``shared/specs/amplitude_http_api.md``)."""

from __future__ import annotations

DEFAULT_API_URL = "https://api2.amplitude.com"
EU_API_URL = "https://api.eu.amplitude.com"
HTTP_V2_PATH = "/2/httpapi"
BATCH_PATH = "/batch"

EVENT_TYPE = "Daily Ad Metrics"
AD_PLATFORM = "tiktok"

# HTTP V2: at most 2,000 events and under 1 MB per request, else 413.
HTTP_V2_MAX_EVENTS = 2000
HTTP_V2_MAX_BYTES = 1_000_000
# Batch: no event count is published; the 20 MB payload limit governs. Keep a cap so one request
# stays cheap to resend.
BATCH_MAX_EVENTS = 20_000
BATCH_MAX_BYTES = 20_000_000

# device_id / user_id must be at least this long unless options.min_id_length lowers it.
MIN_ID_LENGTH = 5
# String property values longer than this are truncated by Amplitude; we cut them ourselves.
MAX_STRING_LENGTH = 1024

# Per device/user throttling.
HTTP_V2_EPS_PER_DEVICE = 30
BATCH_EPS_PER_DEVICE = 1000
# Batch: events per device (or user) per day before a 429 with exceeded_daily_quota_* (the exact number
# is not firmly published; uncertain).
BATCH_DAILY_QUOTA_PER_ID = 500_000
# After a 429 for throttled ids, pause at least this long before resending (HTTP V2).
THROTTLE_PAUSE_SECONDS = 30.0

# Amplitude ignores an insert_id seen for the same project in the past 7 days.
DEDUP_WINDOW_DAYS = 7

RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
