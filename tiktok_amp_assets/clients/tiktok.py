"""Client of the TikTok API for Business v1.3: reports, ad metadata and account facts.

Answers are returned as TikTok sent them (plain dicts), so the raw asset can keep them as received;
only the envelope and paging fields are validated here, with pydantic.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any

import requests
from pydantic import BaseModel, ValidationError

from tiktok_amp_assets.clients.http import RequestPacer, RetryPolicy
from tiktok_amp_assets.core import tiktok_contract as api
from tiktok_amp_assets.core.report_windows import report_windows

log = logging.getLogger(__name__)


class TikTokApiError(RuntimeError):
    """TikTok refused a request, or kept failing after every retry.

    The message names the account, the endpoint, the code and what to do; it never contains the
    access token (the token only ever travels in a request header).
    """

    def __init__(self, *, advertiser_id: str | None, endpoint: str, code: int | None, detail: str, hint: str) -> None:
        self.advertiser_id = advertiser_id
        self.endpoint = endpoint
        self.code = code
        self.detail = detail
        self.hint = hint
        account = f"ad account {advertiser_id}" if advertiser_id else "TikTok"
        code_text = f" (code {code})" if code is not None else ""
        super().__init__(f"{account}: {endpoint} failed{code_text}: {detail}. What to do: {hint}")


class _TransientError(Exception):
    """A failure worth retrying: rate limit, server error, timeout, reset, garbled answer."""


class _PageInfo(BaseModel):
    page: int
    page_size: int
    total_number: int
    total_page: int


class _Envelope(BaseModel):
    code: int
    message: str = ""
    request_id: str | None = None
    data: dict[str, Any] | None = None


class _ListData(BaseModel):
    list: list[dict[str, Any]]
    page_info: _PageInfo | None = None


# A page count that changes while paging means rows moved under us: start the window again.
MAX_PAGINATION_RESTARTS = 3


class TikTokClient:
    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        retry: RetryPolicy | None = None,
        pacer: RequestPacer | None = None,
        timeout_seconds: float = 60.0,
        page_size: int = api.MAX_PAGE_SIZE,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | Any = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers[api.ACCESS_TOKEN_HEADER] = access_token
        self._retry = retry or RetryPolicy()
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
                advertiser_id=chunk[0] if len(chunk) == 1 else None,
            )
            items.extend(_ListData.model_validate(data).list)
        found = {str(item.get("advertiser_id")) for item in items}
        missing = [advertiser_id for advertiser_id in ids if advertiser_id not in found]
        if missing:
            raise TikTokApiError(
                advertiser_id=missing[0],
                endpoint=api.ADVERTISER_INFO_PATH,
                code=None,
                detail=f"TikTok returned no account facts for {', '.join(missing)}",
                hint="check the ids in TIKTOK_ADVERTISER_IDS and that the token can access them",
            )
        return items

    def ad_day_report(self, advertiser_id: str, start: date, end: date) -> Iterator[dict[str, Any]]:
        """Every ad-level daily row from ``start`` to ``end`` (inclusive), deleted ads included.

        The range is cut into the fewest windows TikTok allows; rows are yielded window by window,
        so a caller can keep memory bounded by one window.
        """
        for window_start, window_end in report_windows(start, end):
            yield from self._all_pages(
                api.REPORT_PATH,
                advertiser_id,
                {
                    "advertiser_id": advertiser_id,
                    "report_type": api.REPORT_TYPE,
                    "data_level": api.AD_DATA_LEVEL,
                    "dimensions": list(api.AD_DAY_DIMENSIONS),
                    "metrics": list(api.AD_REPORT_METRICS),
                    "start_date": window_start.isoformat(),
                    "end_date": window_end.isoformat(),
                    # Without this TikTok silently drops the rows of deleted ads, and their spend.
                    "filtering": api.AD_STATUS_ALL_FILTER,
                },
            )

    def ads(self, advertiser_id: str, ad_ids: Iterable[str]) -> list[dict[str, Any]]:
        """``ad/get/`` items for exactly these ads, deleted ones included."""
        ids = sorted(set(ad_ids))
        items: list[dict[str, Any]] = []
        for start in range(0, len(ids), api.MAX_FILTER_IDS):
            chunk = ids[start : start + api.MAX_FILTER_IDS]
            items.extend(
                self._all_pages(
                    api.AD_PATH,
                    advertiser_id,
                    {
                        "advertiser_id": advertiser_id,
                        "fields": list(api.AD_FIELDS),
                        "filtering": {"ad_ids": chunk, "primary_status": api.PRIMARY_STATUS_ALL},
                    },
                )
            )
        return items

    # -- paging ---------------------------------------------------------------------------------

    def _all_pages(self, path: str, advertiser_id: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        """All pages of one listing, restarted if TikTok's page count moves while paging."""
        for _restart in range(MAX_PAGINATION_RESTARTS + 1):
            rows: list[dict[str, Any]] = []
            first: _PageInfo | None = None
            page = 1
            while True:
                data = _ListData.model_validate(
                    self._get(path, {**params, "page": page, "page_size": self._page_size}, advertiser_id=advertiser_id)
                )
                rows.extend(data.list)
                info = data.page_info
                if info is None:
                    return rows
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
                    break
                if page >= info.total_page:
                    if len(rows) != info.total_number:
                        raise TikTokApiError(
                            advertiser_id=advertiser_id,
                            endpoint=path,
                            code=None,
                            detail=f"TikTok announced {info.total_number} rows but sent {len(rows)}",
                            hint="run the partition again; if it persists, report it to TikTok",
                        )
                    return rows
                page += 1
        raise TikTokApiError(
            advertiser_id=advertiser_id,
            endpoint=path,
            code=None,
            detail=f"the row count kept changing while paging ({MAX_PAGINATION_RESTARTS + 1} tries)",
            hint="TikTok is still updating this data: run the partition again later",
        )

    # -- one request ----------------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any], *, advertiser_id: str | None) -> dict[str, Any]:
        query = {key: _encode_param(value) for key, value in params.items()}
        delays = self._retry.delays(self._rng)
        while True:
            try:
                return self._attempt(path, query, advertiser_id)
            except _TransientError as transient:
                delay = next(delays, None)
                if delay is None:
                    raise TikTokApiError(
                        advertiser_id=advertiser_id,
                        endpoint=path,
                        code=None,
                        detail=f"still failing after {self._retry.max_attempts} attempts, last: {transient}",
                        hint="TikTok is throttling or unavailable: run the partition again later, "
                        "or lower the request rate (qps) of the TikTok resource",
                    ) from None
                self.retries += 1
                self._log.warning(
                    "TikTok %s for %s: %s; retrying in %.1fs",
                    path,
                    f"ad account {advertiser_id}" if advertiser_id else "accounts",
                    transient,
                    delay,
                )
                self._sleep(delay)

    def _attempt(self, path: str, query: dict[str, str], advertiser_id: str | None) -> dict[str, Any]:
        if self._pacer is not None:
            self._pacer.wait()
        try:
            response = self._session.get(self._base_url + path, params=query, timeout=self._timeout)
        except (requests.ConnectionError, requests.Timeout) as error:
            raise _TransientError(f"{type(error).__name__}") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise _TransientError(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise TikTokApiError(
                advertiser_id=advertiser_id,
                endpoint=path,
                code=None,
                detail=f"HTTP {response.status_code}",
                hint="check TIKTOK_API_URL: it must be the API's base URL, such as https://business-api.tiktok.com",
            )
        try:
            envelope = _Envelope.model_validate(response.json())
        except (ValueError, ValidationError):
            # Truncated or HTML bodies come from proxies in trouble: worth another try.
            raise _TransientError("the answer was not TikTok's JSON envelope") from None
        if envelope.code != api.OK:
            kind, hint = api.error_kind(envelope.code)
            detail = f"{envelope.message or 'no message'} (request_id {envelope.request_id})"
            if kind is api.ErrorKind.RETRY:
                raise _TransientError(f"code {envelope.code}: {envelope.message}")
            raise TikTokApiError(
                advertiser_id=advertiser_id, endpoint=path, code=envelope.code, detail=detail, hint=hint
            )
        self.calls[path] += 1
        return envelope.data or {}


def _encode_param(value: Any) -> str:
    """TikTok wants lists and objects as JSON strings inside the query string."""
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
