"""The TikTok API for Business v1.3 contract, in one place.

Everything the client sends and the emulator checks comes from here: paths, parameter values,
metric names, page and window limits, and what each error code means. See
``shared/specs/tiktok_business_api.md`` for where each fact comes from.
"""

from __future__ import annotations

from enum import Enum

API_PREFIX = "/open_api/v1.3"
DEFAULT_API_URL = "https://business-api.tiktok.com"
SANDBOX_API_URL = "https://sandbox-ads.tiktok.com"

# Every path ends with "/": TikTok answers 404 without it.
REPORT_PATH = f"{API_PREFIX}/report/integrated/get/"
AD_PATH = f"{API_PREFIX}/ad/get/"
ADGROUP_PATH = f"{API_PREFIX}/adgroup/get/"
CAMPAIGN_PATH = f"{API_PREFIX}/campaign/get/"
ADVERTISER_INFO_PATH = f"{API_PREFIX}/advertiser/info/"

ACCESS_TOKEN_HEADER = "Access-Token"

REPORT_TYPE = "BASIC"
AD_DATA_LEVEL = "AUCTION_AD"
ADVERTISER_DATA_LEVEL = "AUCTION_ADVERTISER"
AD_DAY_DIMENSIONS = ("ad_id", "stat_time_day")
ADVERTISER_DAY_DIMENSIONS = ("stat_time_day",)

# Performance metrics: TikTok's names, then the names they get in our rows.
SPEND = "spend"
IMPRESSIONS = "impressions"
CLICKS = "clicks"
CONVERSIONS = "conversion"  # singular in TikTok's API
PERFORMANCE_METRICS = (SPEND, IMPRESSIONS, CLICKS, CONVERSIONS)

# Attribute metrics: current names and ids of the ad's parents, returned on every ad-level row.
ATTRIBUTE_METRICS = ("ad_name", "adgroup_id", "adgroup_name", "campaign_id", "campaign_name", "currency")
AD_REPORT_METRICS = PERFORMANCE_METRICS + ATTRIBUTE_METRICS
# Every metric name the emulator accepts; anything else is a parameter error, as on the real API.
KNOWN_METRICS = frozenset(AD_REPORT_METRICS) | {
    "cpc",
    "cpm",
    "ctr",
    "reach",
    "conversion_rate",
    "cost_per_conversion",
    "advertiser_id",
    "advertiser_name",
}

# Values TikTok writes for "not applicable"; parsed as missing, never as zero.
MISSING_METRIC_VALUES = frozenset({"", "-", "--", "N/A", "null", "None"})

STAT_TIME_DAY_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 10
# With stat_time_day as a dimension, end_date - start_date may be at most 30 days.
MAX_REPORT_SPAN_DAYS = 30
# ad/get/ filtering by ad_ids takes at most 100 ids; advertiser/info/ takes at most 100 advertisers.
MAX_FILTER_IDS = 100

# Reports leave deleted ads out unless every status is asked for.
AD_STATUS_ALL_FILTER = [{"field_name": "ad_status", "filter_type": "IN", "filter_value": '["STATUS_ALL"]'}]
PRIMARY_STATUS_ALL = "STATUS_ALL"

AD_FIELDS = (
    "ad_id",
    "ad_name",
    "adgroup_id",
    "adgroup_name",
    "campaign_id",
    "campaign_name",
    "advertiser_id",
    "landing_page_url",
    "operation_status",
    "secondary_status",
)
ADGROUP_FIELDS = (
    "adgroup_id",
    "adgroup_name",
    "campaign_id",
    "campaign_name",
    "advertiser_id",
    "operation_status",
    "secondary_status",
)
CAMPAIGN_FIELDS = ("campaign_id", "campaign_name", "advertiser_id", "operation_status", "secondary_status")
ADVERTISER_FIELDS = ("advertiser_id", "name", "currency", "timezone", "display_timezone", "status")


class ErrorKind(str, Enum):
    """What the client does with a non-zero code."""

    RETRY = "retry"  # rate limits and server errors: back off and try again
    FAIL = "fail"  # auth, permission, parameter: retrying cannot help


OK = 0
NO_PERMISSION = 40001
PARAMETER_ERROR = 40002
RATE_LIMITED = 40100
APP_CREDENTIALS_INVALID = 40101
ACCESS_TOKEN_EXPIRED = 40102
ACCESS_TOKEN_EMPTY = 40104
ACCESS_TOKEN_INVALID = 40105
AUTH_CODE_INVALID = 40110
ADVERTISER_RATE_LIMITED = 40133
INTERNAL_ERROR = 50000
SYSTEM_ERROR = 50002

# code -> (kind, what the user should do). Codes not listed: 51xxx and 5xxxx retry, others fail.
ERROR_CODES: dict[int, tuple[ErrorKind, str]] = {
    NO_PERMISSION: (
        ErrorKind.FAIL,
        "the access token has no permission for this advertiser: grant the app access to the ad "
        "account in TikTok Business Center, or remove the id from TIKTOK_ADVERTISER_IDS",
    ),
    PARAMETER_ERROR: (
        ErrorKind.FAIL,
        "TikTok rejected a request parameter: check TIKTOK_ADVERTISER_IDS and the dates; if they are "
        "right this is a bug in tiktok-amp-assets",
    ),
    RATE_LIMITED: (ErrorKind.RETRY, "rate limited by TikTok"),
    APP_CREDENTIALS_INVALID: (ErrorKind.FAIL, "the app id and secret do not match: check the TikTok app"),
    ACCESS_TOKEN_EXPIRED: (
        ErrorKind.FAIL,
        "the access token has expired: re-authorize the app and set a new TIKTOK_ACCESS_TOKEN",
    ),
    ACCESS_TOKEN_EMPTY: (ErrorKind.FAIL, "no access token was sent: set TIKTOK_ACCESS_TOKEN"),
    ACCESS_TOKEN_INVALID: (
        ErrorKind.FAIL,
        "the access token is invalid or revoked: re-authorize the app and set a new TIKTOK_ACCESS_TOKEN",
    ),
    AUTH_CODE_INVALID: (ErrorKind.FAIL, "the OAuth auth code is invalid or expired: re-authorize the app"),
    ADVERTISER_RATE_LIMITED: (ErrorKind.RETRY, "rate limited by TikTok for this advertiser or app"),
    INTERNAL_ERROR: (ErrorKind.RETRY, "TikTok internal error"),
    SYSTEM_ERROR: (ErrorKind.RETRY, "TikTok system error"),
}


def error_kind(code: int) -> tuple[ErrorKind, str]:
    """How to treat a non-zero ``code`` and a hint for the user."""
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if 50000 <= code < 60000:
        return ErrorKind.RETRY, "TikTok server error"
    return ErrorKind.FAIL, "unexpected TikTok error code: see TikTok's API docs for this code"
