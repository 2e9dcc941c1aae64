"""The TikTok API for Business v1.3 as the client reads it: paths, parameters, names, limits, codes.

Only the client (``clients/tiktok.py``, ``clients/tiktok_extraction.py``) and ``core`` use this
module. The emulator (``emulators/``) never imports it: it is a second, independent reading of the
same public sources, so a fact misread here and there alike is the only way a test misses it.

Each fact names its public source. Short names used below:

- SDK: TikTok's official SDK, github.com/tiktok/tiktok-business-api-sdk (``yml_files/*.yml`` are
  the OpenAPI specs it is generated from; ``python_sdk/business_api_client/tiktok_business/
  tiktok_code.py`` is its list of return codes; ``java_sdk/README.md`` carries the endpoint notes).
- Airbyte: airbytehq/airbyte, ``airbyte-integrations/connectors/source-tiktok-marketing``
  (``manifest.yaml`` and ``source_tiktok_marketing/schemas/*.json``).
- Singer: singer-io/tap-tiktok-ads (``tap_tiktok_ads/streams.py``, ``client.py``, ``schemas/*.json``).
- Spec: the project's ``shared/specs/tiktok_business_api.md`` (TikTok's docs and help pages).

``docs/api_facts.md`` lists every fact with the client code, the emulator code and the test that
holds each side to it. Where a source is uncertain the client is the tolerant reading.
"""

from __future__ import annotations

from enum import Enum

# Base URL: Airbyte manifest (url_base business-api; the sandbox is sandbox-ads), SDK yml ``servers``.
API_PREFIX = "/open_api/v1.3"
DEFAULT_API_URL = "https://business-api.tiktok.com"

# Paths: SDK yml_files (report_integrated_get.yml, advertiser_info.yml), Airbyte manifest ($parameters.path).
# Every path ends with "/": TikTok answers 404 without it (Spec).
REPORT_PATH = f"{API_PREFIX}/report/integrated/get/"
AD_PATH = f"{API_PREFIX}/ad/get/"
ADVERTISER_INFO_PATH = f"{API_PREFIX}/advertiser/info/"
# Smart+ ads have an endpoint of their own: SDK yml_files/smart_plus_ad_get.yml (page_size at most
# 100; filtering by smart_plus_ad_ids; items carry landing_page_url_list and
# ad_configuration.utm_params).
SMART_PLUS_AD_PATH = f"{API_PREFIX}/smart_plus/ad/get/"
SMART_PLUS_MAX_PAGE_SIZE = 100

# The token travels in this header: SDK yml (parameter "Access-Token"), Airbyte authenticator.
ACCESS_TOKEN_HEADER = "Access-Token"

# report/integrated/get/ parameters: SDK yml report_integrated_get.yml (enums of report_type,
# service_type, data_level). service_type is required by the yml's request rule, and Airbyte and
# Singer both send "AUCTION": the client always sends it.
REPORT_TYPE = "BASIC"
SERVICE_TYPE = "AUCTION"
AD_DATA_LEVEL = "AUCTION_AD"
ADVERTISER_DATA_LEVEL = "AUCTION_ADVERTISER"
AD_DAY_DIMENSIONS = ("ad_id", "stat_time_day")
ADVERTISER_DAY_DIMENSIONS = ("stat_time_day",)

# Performance metrics, TikTok's names: Airbyte manifest (base report metrics: spend, impressions,
# clicks) and Singer AUCTION_FIELDS (conversion, singular).
SPEND = "spend"
IMPRESSIONS = "impressions"
CLICKS = "clicks"
CONVERSIONS = "conversion"  # singular in TikTok's API
PERFORMANCE_METRICS = (SPEND, IMPRESSIONS, CLICKS, CONVERSIONS)

# Attribute metrics: the ad's current names and parent ids, on every ad-level row (Singer
# AUCTION_FIELDS lists each of them). Not "currency": no public schema lists it as a report metric,
# so the account's currency comes from advertiser/info.
ATTRIBUTE_METRICS = ("ad_name", "adgroup_id", "adgroup_name", "campaign_id", "campaign_name")
AD_REPORT_METRICS = PERFORMANCE_METRICS + ATTRIBUTE_METRICS

# Values TikTok writes for "not applicable"; parsed as missing, never as zero (Spec: uncertain which).
MISSING_METRIC_VALUES = frozenset({"", "-", "--", "N/A", "null", "None"})

STAT_TIME_DAY_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"

# page_size 1..1000 (default 10, so always sent): SDK yml report_integrated_get.yml (minimum,
# maximum, default).
MAX_PAGE_SIZE = 1000
# With stat_time_day as a dimension, end_date - start_date may be at most 30 days (Spec; Airbyte
# slices daily reports with step P30D).
MAX_REPORT_SPAN_DAYS = 30
# Id filters take at most 100 ids: SDK java_sdk/README.md (reportIntegratedGet: "you can pass in up
# to 100 IDs at a time"); ad/get/ ad_ids and advertiser/info/ advertiser_ids alike (Spec).
MAX_FILTER_IDS = 100

# Report filters are a JSON list of {field_name, filter_type, filter_value}, filter_value itself a
# JSON-encoded string (for IN, a JSON array): SDK yml report_integrated_get.yml ("filtering", all
# three required) and python_sdk/docs/FilteringReportIntegratedGet.md.
FILTER_IN = "IN"
# Reports leave deleted ads out unless every status is asked for (Spec; singer-io/tap-tiktok-ads
# issues 18 and 19; Airbyte PR #65623 renamed "filters" to "filtering").
AD_STATUS_ALL_FILTER = {"field_name": "ad_status", "filter_type": FILTER_IN, "filter_value": '["STATUS_ALL"]'}
# A report of more ads than TikTok answers for at once is asked for in parts filtered by these
# fields (SDK java_sdk/README.md, reportIntegratedGet: "please use campaign_ids / adgroup_ids /
# ad_ids as a filter to obtain the reporting data of all advertisements in batches"). The example
# of TikTok's docs ("Audience reports", doc id 1738864928947201) filters with
# {"field_name": "campaign_ids", "filter_type": "IN", "filter_value": "[1678604630215698]"}.
CAMPAIGN_IDS_FILTER = "campaign_ids"
ADGROUP_IDS_FILTER = "adgroup_ids"
AD_IDS_FILTER = "ad_ids"
# The cap itself (10,000 ads per query, 20,000 in CHUNK mode, SDK java_sdk/README.md) is on purpose
# not a constant here: the extraction detects a cut answer from the data, whatever the cap is.

# ad/get/ leaves deleted ads out unless asked: filtering {"primary_status": "STATUS_ALL"} (Spec).
PRIMARY_STATUS_ALL = "STATUS_ALL"

# Fields asked for. Each is listed by Airbyte's schemas/ads.json or Singer's schemas/ads.json.
# landing_page_urls: Airbyte types it as an array of strings, the SDK's ACO model as a list of
# {landing_page_url} objects, Singer as a string; the client reads all three (core/ad_metrics.py).
# utm_params: TikTok's URL-parameter builder, a list of {key, value} (Singer's ads.json; the SDK's
# AdcreateUtmParams), appended to the landing page at click time (core/utms.py).
# smart_plus_ad_id: on a Smart+ ad's records (airbytehq/airbyte PR 81448), whose landing pages are
# read from SMART_PLUS_AD_PATH (clients/tiktok_extraction.py).
AD_FIELDS = (
    "ad_id",
    "ad_name",
    "adgroup_id",
    "adgroup_name",
    "campaign_id",
    "campaign_name",
    "advertiser_id",
    "landing_page_url",
    "landing_page_urls",
    "utm_params",
    "smart_plus_ad_id",
    "operation_status",
    "secondary_status",
)
# advertiser/info/: Airbyte schemas/advertisers.json and Singer schemas/advertisers.json both list
# advertiser_id, name, currency and timezone. Not display_timezone: real answers carry it (Airbyte's
# integration_tests/expected_records.jsonl) and it is accepted when present, but report days are in
# "timezone". Only advertiser_id is required of an answer; the others are read when present.
ADVERTISER_FIELDS = ("advertiser_id", "name", "currency", "timezone")


class ErrorKind(str, Enum):
    """What the client does with a non-zero code (``docs/api_facts.md`` lists every code's decision)."""

    # Waited out with back-off within the run's retry budget (clients/http.py OutageBudget): reads
    # are idempotent, so asking again can only help.
    THROTTLED = "throttled"  # rate limits and restrictions of the app or token
    MAINTENANCE = "maintenance"  # TikTok is down on purpose for a while
    SERVER_ERROR = "server_error"  # TikTok's own services failed
    NARROW = "narrow"  # the query is too large: ask again for fewer days (clients/tiktok_extraction.py)
    FAIL = "fail"  # auth, permission, parameter, unknown: retrying cannot help; the account(s) fail

    @property
    def waits(self) -> bool:
        return self in (ErrorKind.THROTTLED, ErrorKind.MAINTENANCE, ErrorKind.SERVER_ERROR)


# Return codes: SDK tiktok_code.py (NumericErrorCodes), names as the SDK spells them.
OK = 0  # ERROR_CODE_OK
PARTIAL_OK = 20001  # ERROR_CODE_PARTIAL_OK
INVALID_PARAMS = 40000  # ERROR_CODE_INVALID_PARAMS
NO_PERMISSION = 40001  # ERROR_CODE_PERMISSION_ERROR
PARAMETER_ERROR = 40002  # ERROR_CODE_PARAM_ERROR
RATE_LIMITED = 40100  # ERROR_CODE_REQUEST_TOO_FREQUENT
APP_CREDENTIALS_INVALID = 40101  # ERROR_CODE_INVALID_PARTNER
ACCESS_TOKEN_EXPIRED = 40102  # ERROR_CODE_ACCESS_TOKEN_EXPIRE
ACCESS_TOKEN_EMPTY = 40104  # ERROR_CODE_EMPTY_ACCESS_TOKEN
ACCESS_TOKEN_INVALID = 40105  # ERROR_CODE_INVALID_ACCESS_TOKEN
AUTH_CODE_INVALID = 40110  # ERROR_CODE_AUTH_CODE_ERROR
FREQUENCY_LIMITED = 40132  # ERROR_CODE_REQUEST_FREQUENCY_LIMITED
GENERAL_TASK_ERROR = 40200  # ERROR_CODE_GENERAL_TASK_ERROR
TASK_NOT_READY = 40201  # ERROR_CODE_TASK_NOT_READY
WRITE_CONFLICT = 40202  # ERROR_CODE_WRITE_CONFLICT
ADVERTISER_NOT_EXIST = 40300  # ERROR_CODE_ADVERTISER_NOT_EXIST
RPC_VALIDATION_ERROR = 40700  # ERROR_CODE_RPC_VALIDATION_ERROR
INTERNAL_ERROR = 50000  # ERROR_CODE_SYS_ERROR
SYSTEM_TIMEOUT = 50002  # ERROR_CODE_SYS_TIMEOUT
# 51000..51099: ERROR_CODE_RPC_ERROR .. ERROR_CODE_STATISTICS_NEW_ERROR, TikTok's internal services;
# 52xxx databases and storage, 53xxx (de)serialization.
MAINTENANCE = 60001  # ERROR_CODE_MAINTENANCE
TOO_MANY_REQUESTS_BLOCKED = 61000  # ERROR_CODE_TOO_MANY_REQUESTS_BL
# 40067 is not in the SDK's list: Spec ("the query is too large, please narrow the date range";
# Airbyte halves the date window on it). Read as "ask for fewer days".
QUERY_TOO_LARGE = 40067

_REAUTHORIZE = "re-authorize the app and set a new TIKTOK_ACCESS_TOKEN"
_MAINTAINERS = "TikTok no longer accepts what tiktok-amp-assets sends: report this message to its maintainers"

# code -> (kind, for waited codes what is happening, else what the user should do). Codes not
# listed: 5xxxx are server errors (SDK: 50xxx system, 51xxx services, 52xxx databases, 53xxx
# serialization), every other code fails. Singer's client.py retries 40100, 40200, 40201, 40202,
# 40700, 50000 and 50002; Airbyte's manifest 40100 (and 50000): all waited out here, since every
# request of this client is a read that can be asked again.
ERROR_CODES: dict[int, tuple[ErrorKind, str]] = {
    RATE_LIMITED: (ErrorKind.THROTTLED, "TikTok restricted requests"),
    FREQUENCY_LIMITED: (ErrorKind.THROTTLED, "TikTok limited the request frequency"),
    TOO_MANY_REQUESTS_BLOCKED: (ErrorKind.THROTTLED, "TikTok blocked requests for too many requests"),
    MAINTENANCE: (ErrorKind.MAINTENANCE, "TikTok is under maintenance"),
    PARTIAL_OK: (ErrorKind.SERVER_ERROR, "TikTok answered only in part"),
    GENERAL_TASK_ERROR: (ErrorKind.SERVER_ERROR, "TikTok reported a task error"),
    TASK_NOT_READY: (ErrorKind.SERVER_ERROR, "TikTok reported a task not ready"),
    WRITE_CONFLICT: (ErrorKind.SERVER_ERROR, "TikTok reported a write conflict"),
    RPC_VALIDATION_ERROR: (ErrorKind.SERVER_ERROR, "TikTok reported an internal validation error"),
    INTERNAL_ERROR: (ErrorKind.SERVER_ERROR, "TikTok had an internal error"),
    SYSTEM_TIMEOUT: (ErrorKind.SERVER_ERROR, "TikTok timed out"),
    INVALID_PARAMS: (ErrorKind.FAIL, f"TikTok refused the request as invalid: {_MAINTAINERS}"),
    NO_PERMISSION: (
        ErrorKind.FAIL,
        "the access token has no permission for this advertiser: grant the app access to the ad "
        "account in TikTok Business Center, or remove the id from TIKTOK_ADVERTISER_IDS",
    ),
    PARAMETER_ERROR: (
        ErrorKind.FAIL,
        "TikTok refused a parameter of the request: if it names an advertiser id, check TIKTOK_ADVERTISER_IDS; "
        f"otherwise {_MAINTAINERS}",
    ),
    ADVERTISER_NOT_EXIST: (
        ErrorKind.FAIL,
        "TikTok knows no such ad account: check the id in TIKTOK_ADVERTISER_IDS",
    ),
    APP_CREDENTIALS_INVALID: (ErrorKind.FAIL, "the app id and secret do not match: check the TikTok app"),
    ACCESS_TOKEN_EXPIRED: (ErrorKind.FAIL, f"the access token has expired: {_REAUTHORIZE}"),
    ACCESS_TOKEN_EMPTY: (ErrorKind.FAIL, "no access token was sent: set TIKTOK_ACCESS_TOKEN"),
    ACCESS_TOKEN_INVALID: (ErrorKind.FAIL, f"the access token is invalid or revoked: {_REAUTHORIZE}"),
    AUTH_CODE_INVALID: (ErrorKind.FAIL, "the OAuth auth code is invalid or expired: re-authorize the app"),
    QUERY_TOO_LARGE: (
        ErrorKind.NARROW,
        "TikTok finds even one day of this account too large to report: run the partition again later; if it "
        "persists, report it to TikTok",
    ),
}
# The rest of the SDK's 401xx codes are about the app, the token or its scopes: re-authorizing is
# the cure (40103 refresh token expired .. 40131 scope not authorized, 70001 invalid auth type).
_AUTH_CODES = frozenset(range(40103, 40132)) | {70001}


# Codes about the app or its token, never about one ad account: every account would fail alike, so
# the run stops at once with one message rather than recording each account as failed. Any other
# refusal (40001 for an account the token cannot read, 40002 naming an id, a malformed answer, a
# retry budget spent) is the account's own: the other accounts go on (assets/raw_reports.py).
APP_OR_TOKEN_CODES = frozenset(
    {
        APP_CREDENTIALS_INVALID,
        ACCESS_TOKEN_EXPIRED,
        ACCESS_TOKEN_EMPTY,
        ACCESS_TOKEN_INVALID,
        AUTH_CODE_INVALID,
    }
)


def error_kind(code: int) -> tuple[ErrorKind, str]:
    """How to treat a non-zero ``code``, and what is happening (waited codes) or what to do."""
    if code in ERROR_CODES:
        return ERROR_CODES[code]
    if 50000 <= code < 60000:
        return ErrorKind.SERVER_ERROR, "TikTok had a server error"
    if code in _AUTH_CODES:
        return ErrorKind.FAIL, f"TikTok refused the app or its access token: {_REAUTHORIZE}"
    return ErrorKind.FAIL, "unexpected TikTok error code: see TikTok's API docs for this code"
