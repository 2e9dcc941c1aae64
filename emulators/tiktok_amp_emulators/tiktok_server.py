"""A local emulator of the TikTok API for Business v1.3, served over real HTTP on loopback.

It answers the endpoints the importer calls (``report/integrated/get/``, ``ad/get/``,
``adgroup/get/``, ``campaign/get/``, ``advertiser/info/``) from a :class:`Catalogue`.

**An independent reading.** This module imports nothing of the client (``tiktok_amp_assets``): the
facts it enforces are stated below in its own words, each with the public source it comes from, so
that a fact the client misreads is a failing test rather than a shared mistake. Where a source is
uncertain, the emulator takes the stricter reading. ``docs/api_facts.md`` puts both readings side by
side with the test that holds them together.

Sources, by short name:

- SDK: TikTok's official SDK, github.com/tiktok/tiktok-business-api-sdk: ``yml_files/
  report_integrated_get.yml`` and ``yml_files/advertiser_info.yml`` (the OpenAPI specs the SDK is
  generated from), ``python_sdk/business_api_client/tiktok_business/tiktok_code.py`` (return codes),
  ``python_sdk/docs/FilteringReportIntegratedGet.md`` and ``java_sdk/README.md`` (endpoint notes).
- Airbyte: airbytehq/airbyte ``source-tiktok-marketing`` (``manifest.yaml``, ``schemas/ads.json``,
  ``schemas/advertisers.json``).
- Singer: singer-io/tap-tiktok-ads (``tap_tiktok_ads/streams.py``, ``schemas/ads.json``,
  ``schemas/advertisers.json``).
- Docs: TikTok's API for Business docs and help pages, as quoted in ``shared/specs/tiktok_business_api.md``
  (and TikTok's "Audience reports" page, doc id 1738864928947201, for the id filter's example).

Requests are recorded in ``request_log`` (never the token) so tests and benchmarks can count calls.

For tests of malformed answers, :meth:`TikTokEmulator.rewrite_answers` scripts a change to the
successful answers of one endpoint (and optionally one advertiser): a row without a field, a metric
of the wrong type, an HTML page, a body that is not JSON, an empty page. The emulator then sends
what the rewrite returns instead of its own answer, on the wire, as a misbehaving TikTok would.
"""

from __future__ import annotations

import itertools
import json
import re
import ssl
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

from tiktok_amp_emulators.catalogue import (
    DELETE,
    DISABLE,
    ENABLE,
    Ad,
    AdStatus,
    Advertiser,
    Catalogue,
    DayDelivery,
    Performance,
    format_spend,
)
from tiktok_amp_emulators.faults import CONTROL_PATH_PREFIX, Fault, FaultInjector
from tiktok_amp_emulators.http_server import EmulatorServer, Request, Response

DEFAULT_ACCESS_TOKEN = "emulator-token"
HEALTH_PATH = f"{CONTROL_PATH_PREFIX}health"

# ----- the facts this emulator enforces, each with its source

# Endpoints live under /open_api/v1.3/ and every path ends with "/" (Airbyte manifest url_base and
# stream paths; SDK yml "/report/integrated/get/", "/advertiser/info/"). Anything else is a 404.
V13 = "/open_api/v1.3"
REPORT_PATH = f"{V13}/report/integrated/get/"
AD_PATH = f"{V13}/ad/get/"
ADGROUP_PATH = f"{V13}/adgroup/get/"
CAMPAIGN_PATH = f"{V13}/campaign/get/"
ADVERTISER_INFO_PATH = f"{V13}/advertiser/info/"
# Smart+ ads have their own endpoint (SDK yml_files/smart_plus_ad_get.yml).
SMART_PLUS_AD_PATH = f"{V13}/smart_plus/ad/get/"

# The token comes in the "Access-Token" header (SDK yml parameter "Access-Token"; Airbyte
# authenticator inject_into header). A token anywhere else does not count.
TOKEN_HEADER = "access-token"  # the HTTP server lower-cases header names

# Return codes (SDK tiktok_code.py, NumericErrorCodes). Every answer, errors included, is the
# {code, message, request_id, data} envelope in an HTTP 200 (SDK yml responses; Docs).
CODE_OK = 0  # ERROR_CODE_OK
CODE_NO_PERMISSION = 40001  # ERROR_CODE_PERMISSION_ERROR: an advertiser the token may not read
CODE_PARAMETER = 40002  # ERROR_CODE_PARAM_ERROR: the message names the parameter
CODE_TOO_FREQUENT = 40100  # ERROR_CODE_REQUEST_TOO_FREQUENT
CODE_EMPTY_TOKEN = 40104  # ERROR_CODE_EMPTY_ACCESS_TOKEN
CODE_INVALID_TOKEN = 40105  # ERROR_CODE_INVALID_ACCESS_TOKEN
CODE_FREQUENCY_LIMITED = 40132  # ERROR_CODE_REQUEST_FREQUENCY_LIMITED (there is no 40133)
CODE_SYSTEM_ERROR = 50000  # ERROR_CODE_SYS_ERROR
CODE_MAINTENANCE = 60001  # ERROR_CODE_MAINTENANCE
CODE_TOO_MANY_REQUESTS_BLOCKED = 61000  # ERROR_CODE_TOO_MANY_REQUESTS_BL
# Not in the SDK's list, but answered by the reporting endpoint (Docs: "the query is too large,
# please narrow the date range"; Airbyte halves its date window on it).
CODE_QUERY_TOO_LARGE = 40067

# page from 1 (default 1); page_size 1..1000 (default 10): SDK yml report_integrated_get.yml.
PAGE_SIZE_DEFAULT = 10
PAGE_SIZE_MAX = 1000
SMART_PLUS_PAGE_SIZE_MAX = 100  # SDK yml_files/smart_plus_ad_get.yml (maximum: 100)

# report_type: the SDK yml's enum holds AUDIENCE, BASIC, BC, CATALOG, PLAYABLE_MATERIAL, TT_SHOP; the
# emulator serves BASIC only.
REPORT_TYPE_BASIC = "BASIC"
# service_type: the SDK yml's request rule marks it required (enum AUCTION, RESERVATION); Airbyte and
# Singer send "AUCTION". Docs call AUCTION the default: the stricter reading requires it.
SERVICE_TYPE_AUCTION = "AUCTION"
# data_level: SDK yml enum. Served: ad and advertiser level; ad group and campaign level are known.
LEVEL_AD = "AUCTION_AD"
LEVEL_ADVERTISER = "AUCTION_ADVERTISER"
OTHER_DATA_LEVELS = frozenset({"AUCTION_ADGROUP", "AUCTION_CAMPAIGN"})
# dimensions served per level (Docs): ad_id + stat_time_day; stat_time_day (+ advertiser_id).
AD_DIMENSIONS = frozenset({"ad_id", "stat_time_day"})
ADVERTISER_DIMENSIONS = (frozenset({"stat_time_day"}), frozenset({"advertiser_id", "stat_time_day"}))
KNOWN_DIMENSIONS = frozenset(
    {"ad_id", "adgroup_id", "campaign_id", "advertiser_id", "stat_time_day", "stat_time_hour"}
)
# With stat_time_day, end_date - start_date is at most 30 days (Docs; Airbyte slices by P30D).
MAX_SPAN_DAYS = 30

# Metric names, as written in Airbyte's base report metrics and Singer's AUCTION_FIELDS. Anything
# else is a 40002 naming it; "currency" is in neither list and is not a report metric.
SPEND, IMPRESSIONS, CLICKS, CONVERSION = "spend", "impressions", "clicks", "conversion"
AD_ATTRIBUTE_METRICS = frozenset({"ad_name", "adgroup_id", "adgroup_name", "campaign_id", "campaign_name"})
COMPUTED_METRIC_NAMES = frozenset(
    {
        SPEND,
        IMPRESSIONS,
        CLICKS,
        CONVERSION,
        "cpc",
        "cpm",
        "ctr",
        "reach",
        "conversion_rate",
        "cost_per_conversion",
    }
)
# Metrics when none are asked for (uncertain on the real API).
DEFAULT_REPORT_METRICS = (SPEND, IMPRESSIONS)

# filtering: a JSON list of {field_name, filter_type, filter_value}, all three required, filter_value
# a string; with filter_type IN, a JSON array (SDK yml "filtering"; FilteringReportIntegratedGet.md).
FILTER_IN = "IN"
# ad_status IN [...] at ad level; deleted ads' rows only with STATUS_ALL or STATUS_DELETE (Docs;
# singer-io/tap-tiktok-ads issues 18 and 19). adgroup_status / campaign_status belong to other levels.
AD_STATUS_FIELD = "ad_status"
OTHER_LEVEL_STATUS_FIELDS = frozenset({"adgroup_status", "campaign_status"})
# ad_status filter value -> (live ads' rows, deleted ads' rows)
_AD_STATUS_FILTER_VALUES = {
    "STATUS_ALL": (True, True),
    "STATUS_NOT_DELETE": (True, False),
    "STATUS_DELETE": (False, True),
}
# Id filters select the ads of some campaigns, ad groups or ads, at most 100 ids each (SDK
# java_sdk/README.md, reportIntegratedGet; Docs example: {"field_name": "campaign_ids",
# "filter_type": "IN", "filter_value": "[1678604630215698,1678604630215698]"}, ids as numbers or
# strings). They combine with ad_status (both must hold).
ID_FILTER_FIELDS = {"campaign_ids": "campaign_id", "adgroup_ids": "adgroup_id", "ad_ids": "ad_id"}
MAX_FILTER_IDS = 100
# One query reports on at most 10,000 ads (20,000 in CHUNK mode); the answer of a larger one holds
# the data of 10,000 ads and does not say that others were left out (SDK java_sdk/README.md,
# reportIntegratedGet; the emulator's reading in TikTokEmulator._selections). page_info counts the
# rows the cut answer holds.
DEFAULT_MAX_ADS_PER_QUERY = 10_000

# Fields of ad/get/, adgroup/get/, campaign/get/ and advertiser/info/ the emulator serves. Each is
# listed by Airbyte's or Singer's schemas (ads.json: landing_page_urls an array of strings in
# Airbyte's; utm_params a list of {key, value} in Singer's; advertisers.json), or shown in real
# answers: display_timezone in Airbyte's integration_tests/expected_records.jsonl ("timezone":
# "Etc/GMT+8", "display_timezone": "America/Los_Angeles"); smart_plus_ad_id on Smart+ ads' records
# (airbytehq/airbyte PR 81448). Any other field is a 40002 naming it.
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
# Entities leave deleted ones out unless filtering asks for primary_status STATUS_ALL (Docs).
_PRIMARY_STATUSES: dict[str, frozenset[AdStatus]] = {
    "STATUS_ALL": frozenset({ENABLE, DISABLE, DELETE}),
    "STATUS_NOT_DELETE": frozenset({ENABLE, DISABLE}),
    "STATUS_DELIVERY_OK": frozenset({ENABLE}),
    "STATUS_DISABLE": frozenset({DISABLE}),
    "STATUS_DELETE": frozenset({DELETE}),
}
DEFAULT_PRIMARY_STATUS = "STATUS_NOT_DELETE"
STAT_TIME_DAY_FORMAT = "%Y-%m-%d %H:%M:%S"  # "2026-11-23 00:00:00", the account's day (Docs)

# ----- knobs for accounts that misbehave as real ones do (tests and benchmarks set them)

# An account the token cannot read. 40001 answers, in PostHog's TikTok source tests
# (PostHog/posthog products/warehouse_sources/.../tiktok_ads/test/test_tiktok_ads_source.py; PR
# #82183: "TikTok reuses code 40001 for two unrelated failures: a deleted advertiser, and a
# per-endpoint permission denial"): "advertiser does not grant you /report/integrated/get/:GET
# permission" (it names the endpoint, not the account) and "The advertiser 123 doesn't exist or has
# been deleted.". A 40002 naming the id: no public answer of TikTok's shows one (connectors report
# it); the stricter guess follows the shape of real 40002 messages, which name the values
# ("Invalid metric fields: ['placement']", singer-io/tap-tiktok-ads issue 14).
REFUSAL_ENDPOINTS = {"advertiser_info": ADVERTISER_INFO_PATH, "report": REPORT_PATH, "ad": AD_PATH}


@dataclass(frozen=True)
class AccountRefusal:
    """How the emulator refuses one advertiser: the code and on which endpoints (keys of
    REFUSAL_ENDPOINTS). An advertiser/info request naming a refused id is refused as a whole."""

    code: int
    endpoints: frozenset[str]
    message: str | None = None  # None: the shapes above

    def message_for(self, advertiser_id: str, path: str) -> str:
        if self.message is not None:
            return self.message
        if self.code == CODE_PARAMETER:
            name = "advertiser_ids" if path == ADVERTISER_INFO_PATH else "advertiser_id"
            return f"Invalid {name}: ['{advertiser_id}']"
        return f"advertiser does not grant you {path.removeprefix(V13)}:GET permission"


@dataclass
class SettlingDay:
    """A day TikTok is still processing: each read of it (a report's first page covering it) finds
    ``step_hundredths`` more spend on its biggest ad, for the first ``reads`` reads; then it is
    final. Account totals and ad rows read moments apart then differ (TikTok's help: basic metrics
    are mostly complete within hours after the day ends, and adjusted later:
    shared/specs/tiktok_business_api.md, "Data latency")."""

    step_hundredths: int
    reads: int
    done: int = 0


_DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
_ID_PATTERN = re.compile(r"\d{1,20}")
_INTEGER_PATTERN = re.compile(r"[+-]?\d+")
_CENT = Decimal("0.01")


class ApiError(Exception):
    """An API-level error: rendered as the envelope with a non-zero code in an HTTP 200."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _parameter_error(message: str) -> ApiError:
    """A 40002 in the emulator's own words (no public source quotes TikTok's for these cases):
    the parameter, then what is wrong with it."""
    return ApiError(CODE_PARAMETER, message)


def _invalid_values_error(what: str, values: Sequence[str]) -> ApiError:
    """A 40002 naming refused values as TikTok writes it: "Please correct the information in invalid
    metric fields and try again. Invalid metric fields: ['voucher_spend', 'cash_spend']. "
    (airbytehq/airbyte issue 11375; singer-io/tap-tiktok-ads issue 14 quotes "Invalid metric fields:
    ['placement']."). It names the values, not the parameter. For other lists than metrics the same
    shape is the emulator's guess."""
    return ApiError(
        CODE_PARAMETER,
        f"Please correct the information in invalid {what} and try again. Invalid {what}: {list(values)}. ",
    )


def _ratio(numerator: Decimal, denominator: int) -> str:
    """A rate or unit cost with two decimals; "0.00" when nothing to divide by (TikTok's habit)."""
    if denominator == 0:
        return "0.00"
    return str((numerator / denominator).quantize(_CENT, rounding=ROUND_HALF_UP))


def _spend(performance: Performance) -> Decimal:
    return Decimal(performance.spend_hundredths) / 100


# Metrics computed from a row's performance, as TikTok writes them (strings, 2 decimals for money
# and percentages: Docs).
_COMPUTED_METRICS: dict[str, Callable[[Performance], str]] = {
    SPEND: lambda p: format_spend(p.spend_hundredths),
    IMPRESSIONS: lambda p: str(p.impressions),
    CLICKS: lambda p: str(p.clicks),
    CONVERSION: lambda p: str(p.conversions),
    "cpc": lambda p: _ratio(_spend(p), p.clicks),
    "cpm": lambda p: _ratio(_spend(p) * 1000, p.impressions),
    "ctr": lambda p: _ratio(Decimal(p.clicks) * 100, p.impressions),
    "conversion_rate": lambda p: _ratio(Decimal(p.conversions) * 100, p.clicks),
    "cost_per_conversion": lambda p: _ratio(_spend(p), p.conversions),
    "reach": lambda p: str(p.impressions * 4 // 5),
}
assert _COMPUTED_METRICS.keys() == COMPUTED_METRIC_NAMES


def _metric(name: str, performance: Performance, spend_decimals: int) -> str:
    """A computed metric as TikTok writes it; spend with the account currency's decimals
    (catalogue.spend_decimals names the sources)."""
    if name == SPEND:
        return format_spend(performance.spend_hundredths, spend_decimals)
    return _COMPUTED_METRICS[name](performance)


KNOWN_METRICS = COMPUTED_METRIC_NAMES | AD_ATTRIBUTE_METRICS


# A rewrite gets the request's query and the envelope the emulator would send (a fresh dict it may
# change in place), and returns the envelope to send as JSON, or a Response to send as it is.
AnswerRewriter = Callable[[dict[str, str], dict[str, Any]], "dict[str, Any] | Response"]


@dataclass
class AnswerRewrite:
    """A scripted change to the emulator's successful (code 0) answers: see ``rewrite_answers``."""

    path: str
    rewrite: AnswerRewriter
    advertiser_id: str | None = None  # matched against the request's advertiser_id parameter
    times: int | None = None  # answers to change; None: every matching answer
    applied: int = 0  # answers changed so far

    def matches(self, request: Request) -> bool:
        return (
            request.path == self.path
            and (self.advertiser_id is None or request.query.get("advertiser_id") == self.advertiser_id)
            and (self.times is None or self.applied < self.times)
        )


@dataclass(frozen=True)
class _ReportQuery:
    """A validated report request."""

    advertiser: Advertiser
    ad_level: bool  # AUCTION_AD; else AUCTION_ADVERTISER
    dimensions: list[str]
    metrics: list[str]
    start: date
    end: date
    page: int
    page_size: int
    live: bool  # rows of ads not deleted
    deleted: bool  # rows of deleted ads
    id_filters: tuple[tuple[str, frozenset[str]], ...]  # (catalogue field, ids): all must hold


@dataclass(frozen=True)
class _EntityKind:
    """How one of ad/get/, adgroup/get/, campaign/get/ lists its entities."""

    fields: tuple[str, ...]
    id_filters: tuple[str, ...]  # filtering keys holding id lists, e.g. "ad_ids"
    status_prefix: str  # secondary_status values are e.g. "AD_STATUS_DELIVERY_OK"


_AD_KIND = _EntityKind(AD_FIELDS, ("ad_ids", "adgroup_ids", "campaign_ids"), "AD")
_ADGROUP_KIND = _EntityKind(ADGROUP_FIELDS, ("adgroup_ids", "campaign_ids"), "ADGROUP")
_CAMPAIGN_KIND = _EntityKind(CAMPAIGN_FIELDS, ("campaign_ids",), "CAMPAIGN")


class TikTokEmulator(EmulatorServer):
    """The TikTok API for Business v1.3 over HTTP, answering from a :class:`Catalogue`.

    ``access_tokens`` maps each valid token to the advertiser ids it may read (None: all).
    ``deleted_attribute_value`` is what reports write for attribute metrics of deleted ads (the
    real API's choice between "-" and "" is uncertain). ``qps_limit`` answers 40100 once more
    requests than that arrived within the last second. ``max_ads_per_query`` is the number of ads
    an ad-level report answers for (10,000 as on TikTok; small in tests); the rows of the others
    are left out silently. ``query_too_large_days``, when set, answers 40067 to ad-level reports
    spanning more days than that (0: every one).
    """

    def __init__(
        self,
        catalogue: Catalogue,
        *,
        access_tokens: dict[str, set[str] | None] | None = None,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        deleted_attribute_value: str = "-",
        qps_limit: float | None = None,
        max_ads_per_query: int = DEFAULT_MAX_ADS_PER_QUERY,
        query_too_large_days: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults, tls=tls)
        self.catalogue = catalogue
        self.access_tokens: dict[str, set[str] | None] = (
            {DEFAULT_ACCESS_TOKEN: None} if access_tokens is None else dict(access_tokens)
        )
        self.deleted_attribute_value = deleted_attribute_value
        self.qps_limit = qps_limit
        self.max_ads_per_query = max_ads_per_query
        self.query_too_large_days = query_too_large_days
        # The developer app whose requests this emulator answers (named in restriction messages).
        self.app_id = "7100000000000000000"
        self.request_log: list[dict[str, Any]] = []
        self.answer_rewrites: list[AnswerRewrite] = []
        # Knobs (see refuse_account, unattributed_spend, settle_day).
        self.account_refusals: dict[str, AccountRefusal] = {}
        # Spend in an account's totals that no ad row holds, per (advertiser_id, day), in hundredths:
        # GMV Max and other shop campaigns are reported apart from auction ads (singer-io/tap-tiktok-ads
        # issue 32: the ad_insights streams return no data for them; TikTok has a GMV Max report of
        # its own). That the account-level totals count them is the stricter guess: no public source
        # says either way.
        self.unattributed_spend: dict[tuple[str, date], int] = {}
        self.settling_days: dict[tuple[str, date], SettlingDay] = {}
        self._recent_requests: deque[float] = deque()
        self._request_numbers = itertools.count(1)
        self._routes: dict[str, Callable[[dict[str, str], set[str] | None], dict[str, Any]]] = {
            REPORT_PATH: self._report,
            AD_PATH: lambda query, allowed: self._entities(query, allowed, _AD_KIND),
            ADGROUP_PATH: lambda query, allowed: self._entities(query, allowed, _ADGROUP_KIND),
            CAMPAIGN_PATH: lambda query, allowed: self._entities(query, allowed, _CAMPAIGN_KIND),
            ADVERTISER_INFO_PATH: self._advertiser_info,
            SMART_PLUS_AD_PATH: self._smart_plus_ads,
        }

    def refuse_account(
        self,
        advertiser_id: str,
        code: int = CODE_NO_PERMISSION,
        endpoints: Sequence[str] = tuple(REFUSAL_ENDPOINTS),
        message: str | None = None,
    ) -> None:
        """From now on, refuse ``advertiser_id`` with ``code`` (40001 or 40002) on ``endpoints``;
        ``readable_again`` ends it."""
        unknown = set(endpoints) - REFUSAL_ENDPOINTS.keys()
        if unknown:
            raise ValueError(f"unknown endpoints {sorted(unknown)}; known: {sorted(REFUSAL_ENDPOINTS)}")
        with self.lock:
            self.account_refusals[advertiser_id] = AccountRefusal(code, frozenset(endpoints), message)

    def readable_again(self, advertiser_id: str) -> None:
        with self.lock:
            self.account_refusals.pop(advertiser_id, None)

    def add_unattributed_spend(self, advertiser_id: str, day: date, amount: str) -> None:
        """Spend in the account's totals of ``day`` that no ad row holds (``unattributed_spend``)."""
        with self.lock:
            key = (advertiser_id, day)
            self.unattributed_spend[key] = self.unattributed_spend.get(key, 0) + int(Decimal(amount) * 100)

    def settle_day(self, advertiser_id: str, day: date, *, step: str = "1.00", reads: int = 3) -> None:
        """Make ``day`` of ``advertiser_id`` a day still settling (:class:`SettlingDay`)."""
        with self.lock:
            self.settling_days[(advertiser_id, day)] = SettlingDay(int(Decimal(step) * 100), reads)

    # ----- accounting

    def calls(self, path_suffix: str | None = None) -> int:
        """How many API requests reached the emulator, optionally only those whose path ends so."""
        with self.lock:
            if path_suffix is None:
                return len(self.request_log)
            return sum(1 for entry in self.request_log if entry["path"].endswith(path_suffix))

    def _record(self, request: Request, code: int, rows: int) -> None:
        params = {name: value for name, value in request.query.items() if not _is_secret(name)}
        with self.lock:
            self.request_log.append(
                {
                    "path": request.path,
                    "advertiser_id": request.query.get("advertiser_id"),
                    "params": params,
                    "code": code,
                    "rows": rows,
                }
            )

    # ----- dispatch

    def handle(self, request: Request, fault: Fault | None) -> Response:
        """Route one request; API-level failures become an envelope with a code in an HTTP 200."""
        if request.path == HEALTH_PATH:
            return Response.json(200, {"ok": True})
        route = self._routes.get(request.path)
        if route is None:
            self._record(request, 404, 0)
            return Response.json(404, self._envelope(404, f"Not Found: {request.path}", {}))
        if request.method != "GET":
            self._record(request, 405, 0)
            return Response.json(405, self._envelope(405, f"Method {request.method} not allowed", {}))
        try:
            _raise_fault(fault, self.app_id)
            self._throttle()
            allowed = self._authenticate(request)
            self._refuse_accounts(request)
            data = route(request.query, allowed)
        except ApiError as error:
            self._record(request, error.code, 0)
            return Response.json(200, self._envelope(error.code, error.message, {}))
        self._record(request, CODE_OK, len(data.get("list", ())))
        return self._answer(request, self._envelope(CODE_OK, "OK", data))

    def rewrite_answers(
        self,
        path: str,
        rewrite: AnswerRewriter,
        *,
        advertiser_id: str | None = None,
        times: int | None = None,
    ) -> AnswerRewrite:
        """From now on, send ``rewrite(query, envelope)`` instead of the successful answers to ``path``
        (only those for ``advertiser_id`` when given; only the next ``times`` when given).

        The first matching rewrite applies; ``applied`` on the returned entry counts its uses, so a
        test can tell that the malformed answer was actually served. API errors are not rewritten.
        """
        entry = AnswerRewrite(path, rewrite, advertiser_id, times)
        with self.lock:
            self.answer_rewrites.append(entry)
        return entry

    def _answer(self, request: Request, envelope: dict[str, Any]) -> Response:
        with self.lock:
            rewrite = next((entry for entry in self.answer_rewrites if entry.matches(request)), None)
            if rewrite is not None:
                rewrite.applied += 1
        if rewrite is None:
            return Response.json(200, envelope)
        changed = rewrite.rewrite(request.query, envelope)
        return changed if isinstance(changed, Response) else Response.json(200, changed)

    def _envelope(self, code: int, message: str, data: dict[str, Any]) -> dict[str, Any]:
        request_id = f"{datetime.now(UTC):%Y%m%d%H%M%S}{next(self._request_numbers):010d}"
        return {"code": code, "message": message, "request_id": request_id, "data": data}

    def _throttle(self) -> None:
        """Answer 40100 beyond qps_limit requests within the last second (rejected ones do not count)."""
        if self.qps_limit is None:
            return
        now = time.monotonic()
        with self.lock:
            while self._recent_requests and now - self._recent_requests[0] >= 1.0:
                self._recent_requests.popleft()
            if len(self._recent_requests) >= self.qps_limit:
                raise ApiError(CODE_TOO_FREQUENT, "Too many requests. Please retry in some time.")
            self._recent_requests.append(now)

    def _authenticate(self, request: Request) -> set[str] | None:
        """The advertiser ids the header's token may read; a token anywhere else does not count."""
        token = request.headers.get(TOKEN_HEADER, "").strip()
        if not token:
            raise ApiError(CODE_EMPTY_TOKEN, "Access token is null, please check your access token.")
        if token not in self.access_tokens:
            raise ApiError(CODE_INVALID_TOKEN, "Access token is incorrect or has been revoked.")
        return self.access_tokens[token]

    def _refuse_accounts(self, request: Request) -> None:
        """The refusal of an advertiser the request names, if one is set (``refuse_account``)."""
        if not self.account_refusals:
            return
        if request.path == ADVERTISER_INFO_PATH:
            try:
                named = json.loads(request.query.get("advertiser_ids", "[]"))
            except json.JSONDecodeError:
                return  # the route answers the malformed parameter
            named = named if isinstance(named, list) else []
        else:
            named = [request.query.get("advertiser_id")]
        with self.lock:
            for advertiser_id in named:
                refusal = self.account_refusals.get(str(advertiser_id))
                if refusal is not None and any(
                    REFUSAL_ENDPOINTS[endpoint] == request.path for endpoint in refusal.endpoints
                ):
                    raise ApiError(refusal.code, refusal.message_for(str(advertiser_id), request.path))

    def _advertiser(self, advertiser_id: str, allowed: set[str] | None) -> Advertiser:
        """The advertiser if the token may read it; unknown ids are a permission error, as on TikTok."""
        if not _ID_PATTERN.fullmatch(advertiser_id):
            raise _parameter_error(f"advertiser_id: {advertiser_id!r} is not a numeric id")
        advertiser = self.catalogue.advertisers.get(advertiser_id)
        if advertiser is None or (allowed is not None and advertiser_id not in allowed):
            raise ApiError(CODE_NO_PERMISSION, f"No permission to operate advertiser {advertiser_id}.")
        return advertiser

    # ----- report/integrated/get/

    def _report(self, query: dict[str, str], allowed: set[str] | None) -> dict[str, Any]:
        report = self._parse_report(query, allowed)
        if (
            report.ad_level
            and self.query_too_large_days is not None
            and (report.end - report.start).days + 1 > self.query_too_large_days
        ):
            raise ApiError(CODE_QUERY_TOO_LARGE, "The query is too large, please narrow the date range.")
        days = [
            report.start + timedelta(days=offset) for offset in range((report.end - report.start).days + 1)
        ]
        if report.page == 1:
            self._settle(report.advertiser.advertiser_id, days)
        deliveries = [self.catalogue.day_delivery(report.advertiser.advertiser_id, day) for day in days]
        if report.ad_level:
            total, rows = self._ad_rows(report, deliveries)
        else:
            total, rows = self._advertiser_rows(report, deliveries, self._unattributed(report))
        return {"list": rows, "page_info": _page_info(report.page, report.page_size, total)}

    def _parse_report(self, query: dict[str, str], allowed: set[str] | None) -> _ReportQuery:
        """Validate the report parameters in the order the failures are most useful to read."""
        advertiser = self._advertiser(_required(query, "advertiser_id"), allowed)
        report_type = _required(query, "report_type")
        if report_type != REPORT_TYPE_BASIC:
            raise _parameter_error(f"report_type: only {REPORT_TYPE_BASIC} is supported, got {report_type!r}")
        service_type = _required(query, "service_type")
        if service_type != SERVICE_TYPE_AUCTION:
            raise _parameter_error(
                f"service_type: only {SERVICE_TYPE_AUCTION} is supported, got {service_type!r}"
            )
        if query.get("query_lifetime", "false") != "false":
            raise _parameter_error("query_lifetime: only false is supported by the emulator")
        data_level = _required(query, "data_level")
        dimensions = _string_list(query, "dimensions", required=True)
        unknown_dimensions = [name for name in dimensions if name not in KNOWN_DIMENSIONS]
        if unknown_dimensions:
            raise _invalid_values_error("dimension fields", unknown_dimensions)
        ad_level = self._check_level(data_level, dimensions)
        metrics = _string_list(query, "metrics", required=False) or list(DEFAULT_REPORT_METRICS)
        unknown_metrics = [name for name in metrics if name not in KNOWN_METRICS]
        if unknown_metrics:
            raise _invalid_values_error("metric fields", unknown_metrics)
        if not ad_level and AD_ATTRIBUTE_METRICS.intersection(metrics):
            raise _parameter_error(
                f"metrics: {sorted(AD_ATTRIBUTE_METRICS.intersection(metrics))} are not available at {data_level}"
            )
        start = _date(query, "start_date")
        end = _date(query, "end_date")
        if start > end:
            raise _parameter_error("start_date: must not be after end_date")
        if (end - start).days > MAX_SPAN_DAYS:
            raise _parameter_error(
                f"end_date: the time span between start_date and end_date must not exceed "
                f"{MAX_SPAN_DAYS} days when stat_time_day is a dimension"
            )
        page, page_size = _paging(query)
        live, deleted, id_filters = self._filters(query, ad_level, data_level)
        return _ReportQuery(
            advertiser, ad_level, dimensions, metrics, start, end, page, page_size, live, deleted, id_filters
        )

    @staticmethod
    def _check_level(data_level: str, dimensions: list[str]) -> bool:
        """Whether the report is at ad level; rejects levels and dimension sets the emulator lacks."""
        if data_level == LEVEL_AD:
            if frozenset(dimensions) != AD_DIMENSIONS or len(dimensions) != len(AD_DIMENSIONS):
                raise _parameter_error(f"dimensions: {LEVEL_AD} supports {sorted(AD_DIMENSIONS)}")
            return True
        if data_level == LEVEL_ADVERTISER:
            if frozenset(dimensions) not in ADVERTISER_DIMENSIONS or len(set(dimensions)) != len(dimensions):
                raise _parameter_error(
                    f'dimensions: {LEVEL_ADVERTISER} supports ["stat_time_day"] or ["advertiser_id", "stat_time_day"]'
                )
            return False
        if data_level in OTHER_DATA_LEVELS:
            raise _parameter_error(f"data_level: {data_level} is not supported by the emulator")
        raise _parameter_error(f"data_level: invalid value {data_level!r}")

    @staticmethod
    def _filters(
        query: dict[str, str], ad_level: bool, data_level: str
    ) -> tuple[bool, bool, tuple[tuple[str, frozenset[str]], ...]]:
        """(live rows, deleted rows, id filters) asked for by ``filtering``; deleted ads are out by default."""
        filters = _json(query, "filtering", list, required=False) or []
        live, deleted = True, False
        id_filters: list[tuple[str, frozenset[str]]] = []
        for entry in filters:
            if (
                not isinstance(entry, dict)
                or not {"field_name", "filter_type", "filter_value"} <= entry.keys()
            ):
                raise _parameter_error(
                    "filtering: each filter needs field_name, filter_type and filter_value"
                )
            field_name = entry["field_name"]
            if not ad_level or field_name in OTHER_LEVEL_STATUS_FIELDS:
                raise _parameter_error(
                    f"filtering: field_name {field_name!r} does not fit data_level {data_level}"
                )
            if field_name != AD_STATUS_FIELD and field_name not in ID_FILTER_FIELDS:
                raise _parameter_error(
                    f"filtering: field_name {field_name!r} is not supported by the emulator"
                )
            if entry["filter_type"] != FILTER_IN:
                raise _parameter_error(f"filtering: filter_type of {field_name} must be {FILTER_IN}")
            raw_value = entry["filter_value"]
            if not isinstance(raw_value, str):
                raise _parameter_error("filtering: filter_value must be a JSON-encoded string")
            try:
                values = json.loads(raw_value)
            except json.JSONDecodeError as error:
                raise _parameter_error(f"filtering: filter_value {raw_value[:100]!r} is not JSON") from error
            if not isinstance(values, list) or not values:
                raise _parameter_error(
                    f"filtering: filter_value of {field_name} must be a non-empty JSON list"
                )
            if field_name in ID_FILTER_FIELDS:
                ids = _id_list(
                    [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in values],
                    f"filtering: {field_name}",
                )
                id_filters.append((ID_FILTER_FIELDS[field_name], frozenset(ids)))
                continue
            unknown = [status for status in values if status not in _AD_STATUS_FILTER_VALUES]
            if unknown:
                raise _parameter_error(f"filtering: unsupported ad_status value(s) {unknown}")
            live = any(_AD_STATUS_FILTER_VALUES[status][0] for status in values)
            deleted = any(_AD_STATUS_FILTER_VALUES[status][1] for status in values)
        return live, deleted, tuple(id_filters)

    def _selections(self, report: _ReportQuery, deliveries: list[DayDelivery]) -> list[np.ndarray]:
        """Per day, the rows the query answers for: status and id filters, then the ad cap.

        The cap counts advertisements, not rows: "can currently return the reporting data of up to
        10,000 advertisements. If your number of advertisements exceeds 10,000, please use
        campaign_ids / adgroup_ids / ad_ids as a filter" (SDK java_sdk/README.md). So when more ads
        than the cap are in the query's scope (the account's ads its status and id filters select,
        delivering in the window or not), the answer holds the data of ``max_ads_per_query`` of them
        only: which ones TikTok keeps is not documented, so the emulator keeps them in an order
        unrelated to their ids (the stricter reading), and those of them without delivery add no
        rows: a cut answer may hold far fewer ads than the cap, and nothing says it was cut.
        """
        advertiser_id = report.advertiser.advertiser_id
        selections = [delivery.select(live=report.live, deleted=report.deleted) for delivery in deliveries]
        capped = self.catalogue.ad_count(advertiser_id) > self.max_ads_per_query
        if not report.id_filters and not capped:
            return selections  # every selected row, and too few ads for any answer to be cut
        scope = [
            ad.ad_id
            for ad in self.catalogue.ads_of(advertiser_id)
            if (report.deleted if ad.status == DELETE else report.live)
            and all(getattr(ad, field) in ids for field, ids in report.id_filters)
        ]
        if len(scope) > self.max_ads_per_query:
            scope = sorted(scope, key=_cap_order)[: self.max_ads_per_query]
        kept = set(scope)
        return [
            selection[[delivery.ad_ids[row] in kept for row in selection.tolist()]]
            if len(selection)
            else selection
            for delivery, selection in zip(deliveries, selections, strict=True)
        ]

    def _ad_rows(
        self, report: _ReportQuery, deliveries: list[DayDelivery]
    ) -> tuple[int, list[dict[str, Any]]]:
        """Rows of one page in (stat_time_day, ad_id) order; only the page's rows are formatted."""
        selections = self._selections(report, deliveries)
        total = sum(len(selection) for selection in selections)
        page_size, dimensions, metrics = report.page_size, report.dimensions, report.metrics
        decimals = report.advertiser.spend_decimals
        skip = (report.page - 1) * page_size
        rows: list[dict[str, Any]] = []
        attributes: dict[str, dict[str, str]] = {}
        for delivery, selection in zip(deliveries, selections, strict=True):
            if len(rows) == page_size:
                break
            if skip >= len(selection):
                skip -= len(selection)
                continue
            chosen = selection[skip : skip + page_size - len(rows)]
            skip = 0
            stat_time_day = _stat_time_day(delivery.day)
            for ad_id, performance in delivery.performance(chosen):
                if ad_id not in attributes:
                    attributes[ad_id] = self._ad_attributes(self.catalogue.ads[ad_id])
                values = attributes[ad_id]
                rows.append(
                    {
                        "dimensions": {
                            name: (ad_id if name == "ad_id" else stat_time_day) for name in dimensions
                        },
                        "metrics": {
                            name: values[name] if name in values else _metric(name, performance, decimals)
                            for name in metrics
                        },
                    }
                )
        return total, rows

    def _ad_attributes(self, ad: Ad) -> dict[str, str]:
        """Attribute metrics from the ad's current state; blanked out once the ad is deleted."""
        if ad.status == DELETE:
            return dict.fromkeys(AD_ATTRIBUTE_METRICS, self.deleted_attribute_value)
        return {
            "ad_name": ad.name,
            "adgroup_id": ad.adgroup_id,
            "adgroup_name": self.catalogue.adgroups[ad.adgroup_id].name,
            "campaign_id": ad.campaign_id,
            "campaign_name": self.catalogue.campaigns[ad.campaign_id].name,
        }

    def _settle(self, advertiser_id: str, days: list[date]) -> None:
        """One more read of each settling day among ``days``: its biggest ad spent a little more."""
        with self.lock:
            settling = [
                (day, state)
                for day in days
                if (state := self.settling_days.get((advertiser_id, day))) is not None
                and state.done < state.reads
            ]
            for _, state in settling:
                state.done += 1
        for day, state in settling:
            delivery = self.catalogue.day_delivery(advertiser_id, day)
            if not len(delivery):
                continue
            row = int(np.argmax(delivery.spend_hundredths))
            spend = int(delivery.spend_hundredths[row]) + state.step_hundredths
            self.catalogue.restate(delivery.ad_ids[row], day, {SPEND: format_spend(spend)})

    def _unattributed(self, report: _ReportQuery) -> dict[date, int]:
        advertiser_id = report.advertiser.advertiser_id
        with self.lock:
            return {
                day: amount
                for (account, day), amount in self.unattributed_spend.items()
                if account == advertiser_id
            }

    @staticmethod
    def _advertiser_rows(
        report: _ReportQuery, deliveries: list[DayDelivery], unattributed: dict[date, int]
    ) -> tuple[int, list[dict[str, Any]]]:
        """One row per day with delivery: the account total over every ad, deleted ones included, and
        the spend no ad row holds (``unattributed_spend``)."""
        advertiser, dimensions, metrics = report.advertiser, report.dimensions, report.metrics
        page, page_size = report.page, report.page_size
        delivered = [delivery for delivery in deliveries if len(delivery) or unattributed.get(delivery.day)]
        rows = []
        for delivery in delivered[(page - 1) * page_size : page * page_size]:
            total = delivery.total()
            extra = unattributed.get(delivery.day, 0)
            if extra:
                total = total._replace(spend_hundredths=total.spend_hundredths + extra)
            rows.append(
                {
                    "dimensions": {
                        name: (
                            advertiser.advertiser_id
                            if name == "advertiser_id"
                            else _stat_time_day(delivery.day)
                        )
                        for name in dimensions
                    },
                    "metrics": {name: _metric(name, total, advertiser.spend_decimals) for name in metrics},
                }
            )
        return len(delivered), rows

    # ----- ad/get/, adgroup/get/, campaign/get/

    def _entities(self, query: dict[str, str], allowed: set[str] | None, kind: _EntityKind) -> dict[str, Any]:
        advertiser = self._advertiser(_required(query, "advertiser_id"), allowed)
        fields = _fields(query, kind.fields)
        filtering = _json(query, "filtering", dict, required=False) or {}
        known_filters = {*kind.id_filters, "primary_status"}
        unknown = sorted(set(filtering) - known_filters)
        if unknown:
            raise _parameter_error(
                f"filtering: unsupported key(s) {unknown}; supported: {sorted(known_filters)}"
            )
        primary_status = filtering.get("primary_status", DEFAULT_PRIMARY_STATUS)
        if primary_status not in _PRIMARY_STATUSES:
            raise _parameter_error(f"filtering: invalid primary_status {primary_status!r}")
        statuses = _PRIMARY_STATUSES[primary_status]
        id_filters = {
            name: _id_list(filtering[name], f"filtering.{name}")
            for name in kind.id_filters
            if name in filtering
        }
        page, page_size = _paging(query)
        records = [
            record
            for record in self._entity_records(advertiser.advertiser_id, kind)
            if record["status"] in statuses
            and all(record[name.removesuffix("s")] in ids for name, ids in id_filters.items())
        ]
        chosen = records[(page - 1) * page_size : page * page_size]
        return {
            # A field a record lacks is left out, as TikTok drops null values from its answers (the
            # SDK's specs: "pop_resp_nullvalue: true").
            "list": [{name: record[name] for name in fields if name in record} for record in chosen],
            "page_info": _page_info(page, page_size, len(records)),
        }

    def _entity_records(self, advertiser_id: str, kind: _EntityKind) -> list[dict[str, Any]]:
        """Every entity of the kind with all its fields plus its raw status, in id order."""
        catalogue = self.catalogue
        if kind is _AD_KIND:
            return [_ad_record(ad, catalogue, kind) for ad in catalogue.ads_of(advertiser_id)]
        if kind is _ADGROUP_KIND:
            return [
                {
                    "adgroup_id": group.adgroup_id,
                    "adgroup_name": group.name,
                    "campaign_id": group.campaign_id,
                    "campaign_name": catalogue.campaigns[group.campaign_id].name,
                    "advertiser_id": advertiser_id,
                    **_status_fields(group.status, kind),
                }
                for group in catalogue.adgroups_of(advertiser_id)
            ]
        return [
            {
                "campaign_id": campaign.campaign_id,
                "campaign_name": campaign.name,
                "advertiser_id": advertiser_id,
                **_status_fields(campaign.status, kind),
            }
            for campaign in catalogue.campaigns_of(advertiser_id)
        ]

    # ----- smart_plus/ad/get/

    def _smart_plus_ads(self, query: dict[str, str], allowed: set[str] | None) -> dict[str, Any]:
        """Smart+ ads as SDK yml_files/smart_plus_ad_get.yml shapes them: filtering by
        ``smart_plus_ad_ids`` (and ad group / campaign ids, ``primary_status``), page_size at most
        100; each item names the ad and its parents and carries ``landing_page_url_list`` (a list of
        ``{landing_page_url}``) and ``ad_configuration.utm_params``."""
        advertiser = self._advertiser(_required(query, "advertiser_id"), allowed)
        filtering = _json(query, "filtering", dict, required=False) or {}
        id_filters = {
            "smart_plus_ad_ids": "smart_plus_ad_id",
            "adgroup_ids": "adgroup_id",
            "campaign_ids": "campaign_id",
        }
        unknown = sorted(set(filtering) - {*id_filters, "primary_status"})
        if unknown:
            raise _parameter_error(f"filtering: unsupported key(s) {unknown}")
        primary_status = filtering.get("primary_status", DEFAULT_PRIMARY_STATUS)
        if primary_status not in _PRIMARY_STATUSES:
            raise _parameter_error(f"filtering: invalid primary_status {primary_status!r}")
        wanted = {
            field: _id_list(filtering[name], f"filtering.{name}")
            for name, field in id_filters.items()
            if name in filtering
        }
        page = _integer(query, "page", 1, 1, None)
        page_size = _integer(query, "page_size", PAGE_SIZE_DEFAULT, 1, SMART_PLUS_PAGE_SIZE_MAX)
        catalogue = self.catalogue
        records = [
            {
                "smart_plus_ad_id": ad.smart_plus_ad_id,
                **_ad_names(ad, catalogue),
                "landing_page_url_list": [
                    {"landing_page_url": url} for url in ad.landing_page_urls or (ad.landing_page_url,) if url
                ],
                "ad_configuration": {
                    "utm_params": [{"key": key, "value": value} for key, value in ad.utm_params]
                },
                **_status_fields(ad.status, _AD_KIND),
            }
            for ad in catalogue.ads_of(advertiser.advertiser_id)
            if ad.smart_plus_ad_id is not None
            and ad.status in _PRIMARY_STATUSES[primary_status]
            and all(getattr(ad, field) in ids for field, ids in wanted.items())
        ]
        chosen = records[(page - 1) * page_size : page * page_size]
        return {
            "list": [
                {name: value for name, value in record.items() if name != "status"} for record in chosen
            ],
            "page_info": _page_info(page, page_size, len(records)),
        }

    # ----- advertiser/info/

    def _advertiser_info(self, query: dict[str, str], allowed: set[str] | None) -> dict[str, Any]:
        advertiser_ids = _json(query, "advertiser_ids", list, required=True)
        if not advertiser_ids:
            raise _parameter_error("advertiser_ids: must not be empty")
        _id_list(advertiser_ids, "advertiser_ids")  # at most 100 (Docs), as every id filter
        fields = _fields(query, ADVERTISER_FIELDS)
        advertisers = [self._advertiser(advertiser_id, allowed) for advertiser_id in advertiser_ids]
        records = [
            {
                "advertiser_id": advertiser.advertiser_id,
                "name": advertiser.name,
                "currency": advertiser.currency,
                "timezone": advertiser.timezone,
                "display_timezone": advertiser.display_timezone,
                "status": advertiser.status,
            }
            for advertiser in advertisers
        ]
        return {"list": [{name: record[name] for name in fields} for record in records]}


def _raise_fault(fault: Fault | None, app_id: str) -> None:
    """A drawn fault as TikTok's wire shows it: an error code in an HTTP 200."""
    if fault is None:
        return
    if fault is Fault.APP_RESTRICTED:
        # TikTok's words, as airbytehq/airbyte issue 70992 quotes them (the code is 40100: Airbyte's
        # manifest reports the message under its `code == 40100` rate-limit rule).
        raise ApiError(
            CODE_TOO_FREQUENT,
            f"Due to too many requests, requests from App {app_id} are temporarily restricted.",
        )
    if fault is Fault.MAINTENANCE:
        # The code is the SDK's; no public source quotes the message: the emulator's own words.
        raise ApiError(CODE_MAINTENANCE, "The system is under maintenance. Please try again later.")
    if fault is Fault.TOO_MANY_REQUESTS_BLOCKED:
        # The code is the SDK's; the message is the emulator's own words (none quoted publicly).
        raise ApiError(CODE_TOO_MANY_REQUESTS_BLOCKED, "Too many requests. Please try again later.")
    if fault is Fault.RATE_LIMIT:
        raise ApiError(CODE_TOO_FREQUENT, "Too many requests. Please retry in some time.")
    if fault is Fault.FREQUENCY_LIMITED:
        raise ApiError(CODE_FREQUENCY_LIMITED, "Request frequency limited. Please retry later.")
    if fault is Fault.QUERY_TOO_LARGE:
        raise ApiError(CODE_QUERY_TOO_LARGE, "The query is too large, please narrow the date range.")
    # SERVER_ERROR, and Amplitude-only faults have no other meaning here
    raise ApiError(CODE_SYSTEM_ERROR, "Internal service error. Please retry later.")


# ----- parameter parsing (every failure is a 40002 naming the parameter)


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return "token" in lowered or "secret" in lowered


def _required(query: dict[str, str], name: str) -> str:
    value = query.get(name, "")
    if not value:
        raise _parameter_error(f"{name}: required")
    return value


def _json(
    query: dict[str, str], name: str, expected: type[list[Any]] | type[dict[str, Any]], *, required: bool
) -> Any:
    """A JSON-encoded list or object parameter; None when absent and not required."""
    raw = query.get(name, "")
    if not raw:
        if required:
            raise _parameter_error(f"{name}: required")
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise _parameter_error(
            f"{name}: must be a JSON-encoded {expected.__name__}, got {raw[:100]!r}"
        ) from error
    if not isinstance(value, expected):
        raise _parameter_error(f"{name}: must be a JSON-encoded {expected.__name__}, got {raw[:100]!r}")
    return value


def _string_list(query: dict[str, str], name: str, *, required: bool) -> list[str]:
    values: list[str] | None = _json(query, name, list, required=required)
    if values is None:
        return []
    if not all(isinstance(value, str) for value in values):
        raise _parameter_error(f"{name}: must be a list of strings")
    if required and not values:
        raise _parameter_error(f"{name}: must not be empty")
    return values


def _id_list(values: Any, name: str) -> set[str]:
    """A list of at most MAX_FILTER_IDS numeric id strings."""
    if not isinstance(values, list) or not all(
        isinstance(v, str) and _ID_PATTERN.fullmatch(v) for v in values
    ):
        raise _parameter_error(f"{name}: must be a list of numeric id strings")
    if len(values) > MAX_FILTER_IDS:
        raise _parameter_error(f"{name}: at most {MAX_FILTER_IDS} ids, got {len(values)}")
    return set(values)


def _fields(query: dict[str, str], known: Sequence[str]) -> list[str]:
    fields = _string_list(query, "fields", required=False) or list(known)
    unknown = [name for name in fields if name not in known]
    if unknown:
        raise _invalid_values_error("fields", unknown)
    return fields


def _date(query: dict[str, str], name: str) -> date:
    raw = _required(query, name)
    if not _DATE_PATTERN.fullmatch(raw):
        raise _parameter_error(f"{name}: must be YYYY-MM-DD, got {raw!r}")
    try:
        return date.fromisoformat(raw)
    except ValueError as error:
        raise _parameter_error(f"{name}: {raw!r} is not a valid date") from error


def _integer(query: dict[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not _INTEGER_PATTERN.fullmatch(raw):
        raise _parameter_error(f"{name}: must be an integer, got {raw!r}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _parameter_error(f"{name}: must be {bounds}, got {value}")
    return value


def _paging(query: dict[str, str]) -> tuple[int, int]:
    return _integer(query, "page", 1, 1, None), _integer(
        query, "page_size", PAGE_SIZE_DEFAULT, 1, PAGE_SIZE_MAX
    )


def _page_info(page: int, page_size: int, total: int) -> dict[str, int]:
    return {"page": page, "page_size": page_size, "total_number": total, "total_page": -(-total // page_size)}


def _stat_time_day(day: date) -> str:
    return datetime(day.year, day.month, day.day).strftime(STAT_TIME_DAY_FORMAT)


def _cap_order(ad_id: str) -> int:
    """Which ads a capped answer keeps first: an order unrelated to the ids' own (a hash of them)."""
    return (int(ad_id) * 0x9E3779B97F4A7C15) % (1 << 64)


def _ad_names(ad: Ad, catalogue: Catalogue) -> dict[str, str]:
    """The ad's name, its parents' ids and names and its account, as ad/get/ and smart_plus/ad/get/ write them."""
    return {
        "ad_name": ad.name,
        "adgroup_id": ad.adgroup_id,
        "adgroup_name": catalogue.adgroups[ad.adgroup_id].name,
        "campaign_id": ad.campaign_id,
        "campaign_name": catalogue.campaigns[ad.campaign_id].name,
        "advertiser_id": ad.advertiser_id,
    }


def _ad_record(ad: Ad, catalogue: Catalogue, kind: _EntityKind) -> dict[str, Any]:
    """One ad as ad/get/ writes it, every field plus its raw status."""
    record: dict[str, Any] = {
        "ad_id": ad.ad_id,
        **_ad_names(ad, catalogue),
        **_status_fields(ad.status, kind),
    }
    if ad.smart_plus_ad_id is not None:
        # A Smart+ ad's creative: ad/get names its Smart+ ad (airbytehq/airbyte PR 81448) and carries
        # no landing page (Fivetran's dbt_tiktok_ads takes Smart+ ads' URLs from /smart_plus/ad/get/
        # only: "creative_history carries none").
        record["smart_plus_ad_id"] = ad.smart_plus_ad_id
        return record
    # Ads with several landing pages carry them in landing_page_urls and none in the single field
    # (both nullable in Airbyte's schemas/ads.json).
    record["landing_page_url"] = None if ad.landing_page_urls else ad.landing_page_url
    record["landing_page_urls"] = list(ad.landing_page_urls) or None
    if ad.utm_params:
        record["utm_params"] = [{"key": key, "value": value} for key, value in ad.utm_params]
    return record


def _status_fields(status: AdStatus, kind: _EntityKind) -> dict[str, str]:
    """operation_status / secondary_status as TikTok writes them, plus the raw status for filtering."""
    secondary = {ENABLE: "DELIVERY_OK", DISABLE: "DISABLE", DELETE: "DELETE"}[status]
    return {
        "operation_status": ENABLE if status == ENABLE else DISABLE,
        "secondary_status": f"{kind.status_prefix}_STATUS_{secondary}",
        "status": status,
    }
