"""Client of the TikTok API for Business v1.3: one request at a time, and all pages of one listing.

Each method asks for one thing TikTok can answer in one listing: one report window (at most 30
days), the ads of given ids, every ad of an account, the facts of some accounts. Cutting a range
into windows, narrowing a window TikTok finds too large and re-asking a cut answer in parts is the
extraction's job (``clients/tiktok_extraction.py``). Answers are returned as TikTok sent them
(plain dicts, metric values still the strings TikTok wrote), so the raw asset keeps them as
received and parsing stays in ``core``. This is the one place that validates an answer's envelope
and paging fields (with pydantic).

Failure rules (``core/tiktok_contract.py`` decides each code and names its source): restrictions
and rate limits (40100, 40132, 61000), maintenance (60001), server errors (5xxxx, HTTP 5xx and
429), timeouts, dropped connections, truncated or non-JSON bodies are waited out with capped
exponential back-off and jitter, within the run's retry budget in time (:class:`OutageBudget`,
shared by every request of the client: an outage costs the run its budget once, however many
accounts meet it), each wait logged; 40067 ("the query is too large") raises
:class:`QueryTooLargeError` for the extraction to narrow the window; auth, permission, parameter
and unknown codes, and HTTP statuses other than 429 and 5xx, fail at once, since retrying cannot
help. Every error names the account(s), the endpoint, the code, TikTok's message and what to do,
never the token; a parameter error also names the parameter TikTok named.

Answers are read tolerantly: fields the client does not use are ignored, and an answer without
``code`` but with ``data`` is a success (the SDK's OpenAPI files say ``code`` "will be shown only if
it is an error request").
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import Any

import requests
from pydantic import BaseModel, ValidationError

from tiktok_amp_assets.clients.http import (
    OutageBudget,
    RequestPacer,
    RetryPolicy,
    budget_progress_text,
    certificate_hint,
    duration_text,
    is_certificate_error,
)
from tiktok_amp_assets.core import tiktok_contract as api

log = logging.getLogger(__name__)


class TikTokApiError(RuntimeError):
    """TikTok refused a request, or kept failing after every retry.

    The message names the account(s), the endpoint, the code and what to do; it never contains the
    access token (the token only ever travels in a request header).
    """

    def __init__(
        self, *, accounts: Sequence[str], endpoint: str, code: int | None, detail: str, hint: str
    ) -> None:
        self.accounts = tuple(accounts)
        self.endpoint = endpoint
        self.code = code
        self.detail = detail
        self.hint = hint
        code_text = f" (code {code})" if code is not None else ""
        super().__init__(
            f"{_accounts_label(self.accounts)}: {endpoint} failed{code_text}: {detail}. What to do: {hint}"
        )


class QueryTooLargeError(TikTokApiError):
    """TikTok answered 40067: the query is too large, ask for fewer days."""


class _TransientError(Exception):
    """A failure worth waiting out: restriction, maintenance, server error, timeout, reset, garbled
    answer. ``what`` says what is happening, ``detail`` TikTok's own words when it sent any."""

    def __init__(
        self, what: str, detail: str = "", *, code: int | None = None, kind: api.ErrorKind | None = None
    ) -> None:
        super().__init__(f"{what}{f' ({detail})' if detail else ''}")
        self.what = what
        self.detail = detail
        self.code = code  # TikTok's code when the answer had one, for the final error
        self.kind = kind or api.ErrorKind.SERVER_ERROR

    def said(self) -> str:
        """TikTok's code and words (or the transport's failure), for the log."""
        if self.code is None:
            return self.detail
        return f"code {self.code}: {self.detail}" if self.detail else f"code {self.code}"


# What to do once the retry budget is spent, by what kept failing.
_OUTAGE_HINTS = {
    api.ErrorKind.THROTTLED: (
        "TikTok restricts requests per app and access token: make sure no other job uses the same app or "
        "token at the same time, lower requests_per_second or raise retry_budget_minutes of the TikTok "
        "resource, and run the partition again (days already imported are not sent twice)"
    ),
    api.ErrorKind.MAINTENANCE: (
        "wait for TikTok's maintenance to end and run the partition again (days already imported are not "
        "sent twice), or raise retry_budget_minutes of the TikTok resource"
    ),
    api.ErrorKind.SERVER_ERROR: (
        "TikTok or the network to it is failing: run the partition again later (days already imported are "
        "not sent twice), or raise retry_budget_minutes of the TikTok resource; if it persists, check "
        "TIKTOK_API_URL and the network, and report the request ids to TikTok"
    ),
}


# Transport failures that a later try can cure. ChunkedEncodingError is what requests raises for
# a body cut short (fewer bytes than Content-Length); ContentDecodingError for a garbled gzip body.
_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)
# What an HTTP header value may hold, checked up front: requests would otherwise raise an error
# that quotes the header value, the token, in its message.
_HEADER_SAFE_TOKEN = re.compile(r"[\x21-\x7e]+")


class _PageInfo(BaseModel):
    page: int
    page_size: int
    total_number: int
    total_page: int


class _Envelope(BaseModel):
    # Absent on success per the SDK's OpenAPI files ("will be shown only if it is an error request").
    code: int | None = None
    message: str | None = ""
    request_id: str | None = None
    data: dict[str, Any] | None = None


class _ListData(BaseModel):
    list: list[dict[str, Any]]
    page_info: _PageInfo | None = None  # on paged endpoints; advertiser/info/ has none


# A page count that changes while paging means rows moved under us: start the window again.
MAX_PAGINATION_RESTARTS = 3
# How long a run waits out one outage of TikTok by default: long enough for the restrictions and
# maintenance windows connectors report (airbytehq/airbyte issue 70992), short enough that a run
# stuck behind a longer one fails within the hour and is retried.
DEFAULT_RETRY_BUDGET_SECONDS = 15 * 60


class TikTokClient:
    """One run's connection to TikTok: a session holding the token, a back-off policy, the run's
    retry budget in time (``budget``, shared by all its requests) and a pacer.

    ``calls`` counts successful answers per path and ``retries`` the retried attempts, for the
    run's metadata. ``page_size`` is TikTok's maximum by default (fewest calls); tests lower it.
    """

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        retry: RetryPolicy | None = None,
        budget: OutageBudget | None = None,
        pacer: RequestPacer | None = None,
        timeout_seconds: float = 60.0,
        page_size: int = api.MAX_PAGE_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | Any = None,
    ) -> None:
        if not _HEADER_SAFE_TOKEN.fullmatch(access_token):
            raise ValueError(
                "the access token is empty or holds spaces, line breaks or non-ASCII characters, which an "
                "HTTP header cannot carry: set TIKTOK_ACCESS_TOKEN to the token exactly as TikTok issued it"
            )
        if not 1 <= page_size <= api.MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {api.MAX_PAGE_SIZE}, got {page_size}")
        self._base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers[api.ACCESS_TOKEN_HEADER] = access_token
        self._retry = retry or RetryPolicy()
        self.budget = budget or OutageBudget(DEFAULT_RETRY_BUDGET_SECONDS)
        self._pacer = pacer
        self._timeout = timeout_seconds
        self._page_size = page_size
        self._sleep = sleep
        self._log = logger or log
        self._rng = random.Random()
        self.calls: Counter[str] = Counter()  # successful answers per endpoint path
        self.retries = 0

    def close(self) -> None:
        self._session.close()

    # -- endpoints ------------------------------------------------------------------------------

    def advertiser_info(self, advertiser_ids: Iterable[str]) -> list[dict[str, Any]]:
        """``advertiser/info/`` items (time zone, currency, name) for the given accounts."""
        ids = list(advertiser_ids)
        items: list[dict[str, Any]] = []
        for start in range(0, len(ids), api.MAX_FILTER_IDS):
            chunk = ids[start : start + api.MAX_FILTER_IDS]
            data = self._get(
                api.ADVERTISER_INFO_PATH,
                {"advertiser_ids": chunk, "fields": list(api.ADVERTISER_FIELDS)},
                accounts=chunk,
            )
            items.extend(data.list)
        found = {str(item.get("advertiser_id")) for item in items}
        missing = [advertiser_id for advertiser_id in ids if advertiser_id not in found]
        if missing:
            raise TikTokApiError(
                accounts=missing,
                endpoint=api.ADVERTISER_INFO_PATH,
                code=None,
                detail=f"TikTok returned no account facts for {', '.join(missing)}",
                hint="check the ids in TIKTOK_ADVERTISER_IDS and that the token can access them",
            )
        return items

    def ad_day_report(
        self, advertiser_id: str, start: date, end: date, *, ids: tuple[str, Sequence[str]] | None = None
    ) -> list[dict[str, Any]]:
        """Every ad-level daily row of one report window (``start`` to ``end``, at most 30 days),
        deleted ads included; with ``ids`` (a filter field such as ``campaign_ids`` and at most 100
        ids) only the rows of those ads.

        TikTok may cut the answer of a large account without saying so: the extraction checks it.
        """
        filtering = [api.AD_STATUS_ALL_FILTER]  # without it TikTok drops deleted ads' rows, and their spend
        if ids is not None:
            field, values = ids
            if not 1 <= len(values) <= api.MAX_FILTER_IDS:
                raise ValueError(f"a report filter takes 1 to {api.MAX_FILTER_IDS} ids, got {len(values)}")
            filtering.append(
                {"field_name": field, "filter_type": api.FILTER_IN, "filter_value": _json_text(list(values))}
            )
        return self._all_pages(
            api.REPORT_PATH,
            advertiser_id,
            {
                **_report_params(advertiser_id, start, end),
                "data_level": api.AD_DATA_LEVEL,
                "dimensions": list(api.AD_DAY_DIMENSIONS),
                "metrics": list(api.AD_REPORT_METRICS),
                "filtering": filtering,
            },
        )

    def account_day_totals(self, advertiser_id: str, start: date, end: date) -> list[dict[str, Any]]:
        """Account-level daily rows (``AUCTION_ADVERTISER``) of one report window: TikTok's own
        totals, against which the ad-level rows are checked and reconciled."""
        return self._all_pages(
            api.REPORT_PATH,
            advertiser_id,
            {
                **_report_params(advertiser_id, start, end),
                "data_level": api.ADVERTISER_DATA_LEVEL,
                "dimensions": list(api.ADVERTISER_DAY_DIMENSIONS),
                "metrics": list(api.PERFORMANCE_METRICS),
            },
        )

    def ads(self, advertiser_id: str, ad_ids: Iterable[str]) -> list[dict[str, Any]]:
        """``ad/get/`` items for exactly these ads, deleted ones included.

        Only the ids asked for are fetched (a report names few of an account's ads), in chunks of
        the 100 ids TikTok's filter takes. Without ``primary_status`` = ``STATUS_ALL`` TikTok leaves
        deleted ads out, and their spend would arrive without names or UTMs.
        """
        return self._by_id_chunks(
            api.AD_PATH,
            advertiser_id,
            ad_ids,
            lambda chunk: {
                "advertiser_id": advertiser_id,
                "fields": list(api.AD_FIELDS),
                "filtering": {"ad_ids": chunk, "primary_status": api.PRIMARY_STATUS_ALL},
            },
        )

    def all_ads(self, advertiser_id: str) -> list[dict[str, Any]]:
        """``ad/get/`` items of every ad of the account, deleted ones included (to plan the parts of a
        report TikTok cut)."""
        return self._all_pages(
            api.AD_PATH,
            advertiser_id,
            {
                "advertiser_id": advertiser_id,
                "fields": list(api.AD_FIELDS),
                "filtering": {"primary_status": api.PRIMARY_STATUS_ALL},
            },
        )

    def ad_count(self, advertiser_id: str) -> int:
        """How many ads the account has, deleted ones included: ``page_info`` of a one-item page."""
        data = self._get(
            api.AD_PATH,
            {
                "advertiser_id": advertiser_id,
                "fields": ["ad_id"],
                "filtering": {"primary_status": api.PRIMARY_STATUS_ALL},
                "page": 1,
                "page_size": 1,
            },
            accounts=[advertiser_id],
        )
        return data.page_info.total_number if data.page_info is not None else len(data.list)

    def smart_plus_ads(self, advertiser_id: str, smart_plus_ad_ids: Iterable[str]) -> list[dict[str, Any]]:
        """``smart_plus/ad/get/`` items of these Smart+ ads, deleted ones included: their names, parents,
        landing pages (``landing_page_url_list``) and URL parameters (``ad_configuration.utm_params``).

        In chunks of 100 ids, pages of 100 (the endpoint's maximum page size); no ``fields``, so that
        TikTok answers with every field it has (the SDK lists none to choose from)."""
        return self._by_id_chunks(
            api.SMART_PLUS_AD_PATH,
            advertiser_id,
            smart_plus_ad_ids,
            lambda chunk: {
                "advertiser_id": advertiser_id,
                "filtering": {"smart_plus_ad_ids": chunk, "primary_status": api.PRIMARY_STATUS_ALL},
            },
            page_size=min(self._page_size, api.SMART_PLUS_MAX_PAGE_SIZE),
        )

    def _by_id_chunks(
        self,
        path: str,
        advertiser_id: str,
        ids: Iterable[str],
        params: Callable[[list[str]], dict[str, Any]],
        *,
        page_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """Every item of a listing filtered by ``ids``, asked in chunks of the 100 ids a filter takes."""
        unique = sorted(set(ids))
        items: list[dict[str, Any]] = []
        for start in range(0, len(unique), api.MAX_FILTER_IDS):
            chunk = unique[start : start + api.MAX_FILTER_IDS]
            items.extend(self._all_pages(path, advertiser_id, params(chunk), page_size=page_size))
        return items

    # -- paging ---------------------------------------------------------------------------------

    def _all_pages(
        self, path: str, advertiser_id: str, params: dict[str, Any], *, page_size: int | None = None
    ) -> list[dict[str, Any]]:
        """All pages of one listing, read again from page 1 if TikTok's page count moves while paging."""
        for _read in range(MAX_PAGINATION_RESTARTS + 1):
            rows = self._read_pages(path, advertiser_id, params, page_size or self._page_size)
            if rows is not None:
                return rows
        raise TikTokApiError(
            accounts=[advertiser_id],
            endpoint=path,
            code=None,
            detail=f"the row count kept changing while paging ({MAX_PAGINATION_RESTARTS + 1} tries)",
            hint="TikTok is still updating this data: run the partition again later",
        )

    def _read_pages(
        self, path: str, advertiser_id: str, params: dict[str, Any], page_size: int
    ) -> list[dict[str, Any]] | None:
        """Every page of one listing, or None when the total changed between two pages.

        Rows added or removed while paging shift the others across page boundaries, so the pages
        already read may repeat or miss rows: they are thrown away rather than mixed.
        """
        rows: list[dict[str, Any]] = []
        first: _PageInfo | None = None
        page = 1
        # A report window's rows repeat the same ad ids, names, parent ids and days thousands of times
        # (and many small counts): decoded into one object each, they take less than half the memory.
        strings: dict[str, str] = {}
        while True:
            data = self._get(
                path,
                {**params, "page": page, "page_size": page_size},
                accounts=[advertiser_id],
                strings=strings,
            )
            rows.extend(data.list)
            info = data.page_info
            if info is None:
                # Without page_info only a first page that is not full is known to be complete.
                if page == 1 and len(data.list) < page_size:
                    return rows
                raise TikTokApiError(
                    accounts=[advertiser_id],
                    endpoint=path,
                    code=None,
                    detail=f"page {page} came without page_info and {len(data.list)} rows, so whether more "
                    "rows follow cannot be told",
                    hint="run the partition again; if it persists, TikTok changed its answers: report it to "
                    "the maintainers of tiktok-amp-assets",
                )
            if first is None:
                first = info
            elif (info.total_number, info.total_page) != (first.total_number, first.total_page):
                self._log.warning(
                    "TikTok %s for ad account %s changed from %s rows to %s rows while paging: "
                    "reading the window again",
                    path,
                    advertiser_id,
                    first.total_number,
                    info.total_number,
                )
                return None
            if page >= info.total_page:
                if len(rows) != info.total_number:
                    raise TikTokApiError(
                        accounts=[advertiser_id],
                        endpoint=path,
                        code=None,
                        detail=f"TikTok announced {info.total_number} rows but sent {len(rows)}",
                        hint="run the partition again; if it persists, report it to TikTok",
                    )
                return rows
            page += 1

    # -- one request ----------------------------------------------------------------------------

    def _get(
        self,
        path: str,
        params: dict[str, Any],
        *,
        accounts: Sequence[str],
        strings: dict[str, str] | None = None,
    ) -> _ListData:
        """One API call, its transient failures waited out within the run's retry budget; ``data`` of
        a successful answer. With ``strings``, equal string values of the answer are decoded into one
        object, shared with the earlier answers that used the same ``strings``."""
        query = {key: _encode_param(value) for key, value in params.items()}
        budget = self.budget
        # This request's own bound, should another request's success end the outage meanwhile.
        first_failure: float | None = None
        while True:
            try:
                data = self._attempt(path, query, accounts, params, strings)
            except _TransientError as transient:
                failures, outage_seconds = budget.failed()
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                left = min(budget.remaining(), budget.seconds - (now - first_failure))
                if left <= 0:
                    raise self._outage_error(path, accounts, transient, outage_seconds) from None
                delay = min(self._retry.delay(failures, self._rng), left)
                self.retries += 1
                self._log.warning(
                    "%s: waiting %s, %s (%s, %s%s)",
                    transient.what,
                    duration_text(delay),
                    budget_progress_text(outage_seconds, budget.seconds),
                    _accounts_label(accounts),
                    path,
                    f"; {transient.said()}" if transient.said() else "",
                )
                self._sleep(delay)
                budget.waited(delay)
            else:
                budget.succeeded()
                return data

    def _outage_error(
        self, path: str, accounts: Sequence[str], transient: _TransientError, outage_seconds: float
    ) -> TikTokApiError:
        """The error once the run's retry budget is spent on the outage ``transient`` is part of."""
        said = f": {transient.detail}" if transient.detail else ""
        return TikTokApiError(
            accounts=accounts,
            endpoint=path,
            code=transient.code,
            detail=f"{transient.what}{said}; still so after waiting {duration_text(outage_seconds)}, the "
            f"run's retry budget of {duration_text(self.budget.seconds)} (shared by its accounts) is spent",
            hint=_OUTAGE_HINTS[transient.kind],
        )

    def _attempt(
        self,
        path: str,
        query: dict[str, str],
        accounts: Sequence[str],
        params: dict[str, Any],
        strings: dict[str, str] | None,
    ) -> _ListData:
        if self._pacer is not None:
            self._pacer.wait()
        try:
            # Redirects are not followed: requests would resend the Access-Token header to
            # whatever host the Location names.
            response = self._session.get(
                self._base_url + path, params=query, timeout=self._timeout, allow_redirects=False
            )
        except _TRANSPORT_ERRORS as error:
            if is_certificate_error(error):
                raise TikTokApiError(
                    accounts=accounts,
                    endpoint=path,
                    code=None,
                    detail="the server's TLS certificate could not be verified",
                    hint=certificate_hint("TIKTOK_API_URL"),
                ) from None
            # The type only: the text of a requests error quotes the URL and can grow long.
            raise _TransientError("TikTok could not be reached", type(error).__name__) from None
        if response.status_code == 429:
            raise _TransientError(
                "TikTok (or a proxy) restricted requests", "HTTP 429", kind=api.ErrorKind.THROTTLED
            )
        if response.status_code >= 500:
            raise _TransientError("TikTok had a server error", f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise TikTokApiError(
                accounts=accounts,
                endpoint=path,
                code=None,
                detail=f"HTTP {response.status_code}"
                + (" (a redirect, not followed)" if response.is_redirect else ""),
                hint="check TIKTOK_API_URL: it must be the API's base URL itself, such as "
                "https://business-api.tiktok.com, with no proxy that refuses or redirects the request",
            )
        try:
            decoded = json.loads(
                response.content,
                parse_constant=_not_json,
                object_pairs_hook=None if strings is None else _object_sharing_strings(strings),
            )
            envelope = _Envelope.model_validate(decoded)
        except (ValueError, ValidationError):
            # Truncated or HTML bodies come from proxies in trouble: worth another try.
            raise _TransientError("TikTok's answer was garbled", "not TikTok's JSON envelope") from None
        if envelope.code is None and envelope.data is None:
            raise _TransientError("TikTok's answer was garbled", "neither code nor data") from None
        if envelope.code not in (None, api.OK):
            kind, hint = api.error_kind(envelope.code)
            if kind.waits:
                raise _TransientError(
                    hint,
                    f"{envelope.message or 'no message'} (request_id {envelope.request_id})",
                    code=envelope.code,
                    kind=kind,
                )
            detail = f"{envelope.message or 'no message'} (request_id {envelope.request_id})"
            if envelope.code == api.PARAMETER_ERROR:
                named = named_parameter(envelope.message or "", params)
                detail = (
                    f"TikTok refused the parameter {named}: {detail}"
                    if named
                    else f"TikTok refused a parameter without naming one we sent: {detail}"
                )
            error_type = QueryTooLargeError if kind is api.ErrorKind.NARROW else TikTokApiError
            raise error_type(accounts=accounts, endpoint=path, code=envelope.code, detail=detail, hint=hint)
        try:
            data = _ListData.model_validate(envelope.data or {})
        except ValidationError:
            raise _TransientError("TikTok's answer was garbled", "a success without data.list") from None
        self.calls[path] += 1
        return data


def _accounts_label(accounts: Sequence[str]) -> str:
    return ("ad account " if len(accounts) == 1 else "ad accounts ") + ", ".join(accounts)


def _not_json(constant: str) -> Any:
    # NaN and Infinity are not JSON: an answer carrying them is garbled, and refusing them here
    # lets the raw reports be stored back exactly as compact JSON.
    raise ValueError(f"{constant} is not a JSON value")


def _object_sharing_strings(strings: dict[str, str]) -> Callable[[list[tuple[str, Any]]], dict[str, Any]]:
    """A JSON ``object_pairs_hook`` building each object as the default decoder does (same keys,
    order and values, a repeated key's last value), except that a string value equal to one in
    ``strings`` is that object: the answer stays exactly as received, in less memory."""

    def build(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        return {
            key: strings.setdefault(value, value) if isinstance(value, str) else value for key, value in pairs
        }

    return build


def _encode_param(value: Any) -> str:
    """TikTok wants lists and objects as JSON strings inside the query string."""
    if isinstance(value, (list, dict, tuple)):
        return _json_text(value)
    return str(value)


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _report_params(advertiser_id: str, start: date, end: date) -> dict[str, Any]:
    """What every report request of the client carries (SDK yml report_integrated_get.yml)."""
    if end < start or (end - start).days > api.MAX_REPORT_SPAN_DAYS:
        # A programming error: the extraction cuts ranges into windows TikTok accepts.
        raise ValueError(f"not a report window TikTok accepts: {start} to {end}")
    return {
        "advertiser_id": advertiser_id,
        "report_type": api.REPORT_TYPE,
        "service_type": api.SERVICE_TYPE,  # required by the SDK's spec; Airbyte and Singer send it too
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
    }


_WORD = re.compile(r"[A-Za-z0-9_]+")


def named_parameter(message: str, params: dict[str, Any]) -> str | None:
    """Which of the request's parameters a 40002 ``message`` names: ``metrics ('currency')`` when it
    quotes a value of a list parameter, ``fields`` when only the parameter's name; None when neither.

    A 40002 message is expected to name the offending parameter or value (e.g. "metrics: unknown
    metric(s) ['currency']"); the client looks for the names and values it sent, so the user learns
    which of them TikTok refused without reading its request.
    """
    words = set(_WORD.findall(message or ""))
    best: tuple[int, str] | None = None
    for name, value in params.items():
        items: list[Any] = []
        if isinstance(value, (list, tuple)):
            items = [item.get("field_name") if isinstance(item, dict) else item for item in value]
        elif isinstance(value, dict):
            items = list(value)
        quoted = [str(item) for item in items if isinstance(item, str) and item in words]
        # Both the parameter and its value named beats a value alone, which beats the name alone.
        score = 2 * bool(quoted) + (name in words)
        if score and (best is None or score > best[0]):
            best = (score, f"{name} ({', '.join(repr(item) for item in quoted)})" if quoted else name)
    return best[1] if best else None
