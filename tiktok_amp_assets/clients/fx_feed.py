"""Reading a feed of euro reference rates: the ECB's ``eurofxref-hist.xml``, a copy of it, or a file.

``fx_rates_url`` names one of:

- an ``https://`` URL: the ECB's (:data:`~tiktok_amp_assets.core.fx_rates.ECB_HIST_URL`, the
  default) or a mirror; plain ``http://`` only for a loopback host (the emulator), as for the other
  clients (``clients/http.py``: a proxy could alter rates as easily as read a token);
- a ``file://`` URL or a local path: a file of daily rates in the same format, such as a finance
  team's own (the ECB publishes none for VND, TWD or AED, for example).

One read per run is enough, and the caller should read once: the hist file holds every day since
1999 in a few MB and a run looks up all its account-days in the one :class:`FxRates` returned.

Over HTTP, 5xx and 429 answers, timeouts, dropped connections and bodies cut short are tried again
with :class:`RetryPolicy`'s back-off; other statuses fail at once (a redirect is not followed: the
error names where it points, to put in ``fx_rates_url``). Every error names the feed and what to
do: :class:`FxFeedUnreachableError` (no answer, HTTP errors, no such file) and, from the parser,
:class:`FxFeedFormatError` (not the format) and :class:`FxFeedEmptyError` (no rates).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import requests

from tiktok_amp_assets.clients.http import (
    RetryPolicy,
    certificate_hint,
    checked_base_url,
    duration_text,
    is_certificate_error,
)
from tiktok_amp_assets.core.fx_rates import (
    ECB_HIST_URL,
    FxFeedError,
    FxFeedFormatError,
    FxRates,
    parse_eurofxref,
)

log = logging.getLogger(__name__)

SETTING = "fx_rates_url"
DEFAULT_TIMEOUT_SECONDS = 60.0
# The real eurofxref-hist.xml is a few MB; a body past this is no such file (a wrong URL streaming
# something else), refused rather than held in memory.
MAX_FEED_BYTES = 64 * 1024 * 1024
_TRANSPORT_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,  # a body cut short (urllib3 checks Content-Length)
    requests.exceptions.ContentDecodingError,
)
_HINT = (
    f"check {SETTING}: it must name the ECB's eurofxref-hist.xml ({ECB_HIST_URL}), a copy of it, or a "
    "file of your own daily rates in that format"
)


class FxFeedUnreachableError(FxFeedError):
    """The feed could not be read: no answer, an HTTP error, no such file."""


class _Transient(Exception):
    """A failure worth another try: the same request may well go through."""


def checked_feed_location(location: str) -> str:
    """``location`` as read: an http(s) URL (checked as the other clients check theirs), a
    ``file://`` URL or a local path; ValueError for anything else. For validating configuration."""
    text = location.strip()
    scheme = urlsplit(text).scheme.lower()
    if scheme in ("http", "https"):
        return checked_base_url(text, variable=SETTING)
    if scheme == "file":
        return text
    if scheme and len(scheme) > 1:  # "c:" would be a drive letter
        raise ValueError(
            f"{SETTING} must be an https:// URL, a file:// URL or a file path, got {location!r} ({_HINT})"
        )
    if not text:
        raise ValueError(f"{SETTING} is empty ({_HINT})")
    return text


def read_fx_feed(
    location: str,
    *,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    session: requests.Session | None = None,
    logger: logging.Logger | Any = None,
    max_bytes: int = MAX_FEED_BYTES,
) -> FxRates:
    """The rates of the feed at ``location`` (see :func:`checked_feed_location`), read once."""
    checked = checked_feed_location(location)
    scheme = urlsplit(checked).scheme.lower()
    if scheme in ("http", "https"):
        own_session = session is None
        http = session or requests.Session()
        try:
            body = _download(
                checked,
                http,
                timeout_seconds=timeout_seconds,
                retry=retry or RetryPolicy(),
                sleep=sleep,
                logger=logger or log,
                max_bytes=max_bytes,
            )
        finally:
            if own_session:
                http.close()
        return parse_eurofxref(body, feed=checked)
    path = Path(url2pathname(urlsplit(checked).path)) if scheme == "file" else Path(checked)
    try:
        with path.open("rb") as file:
            return parse_eurofxref(file, feed=checked)
    except FileNotFoundError:
        raise FxFeedUnreachableError(
            f"the FX feed {checked}: there is no file {path}. What to do: {_HINT}"
        ) from None
    except OSError as error:
        raise FxFeedUnreachableError(
            f"the FX feed {checked}: {path} could not be read ({error.strerror or type(error).__name__}). "
            f"What to do: {_HINT}, readable by the user runs execute as"
        ) from None


def _download(
    url: str,
    session: requests.Session,
    *,
    timeout_seconds: float,
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    logger: logging.Logger | Any,
    max_bytes: int,
) -> bytes:
    def waiting(failure: Exception, failures: int, delay: float) -> None:
        logger.warning(
            "FX feed %s: %s; trying again in %s (retry %d)", url, failure, duration_text(delay), failures
        )

    try:
        return retry.call(
            lambda: _get(url, session, timeout_seconds, max_bytes),
            retry_on=(_Transient,),
            sleep=sleep,
            on_retry=waiting,
        )
    except _Transient as failure:
        raise FxFeedUnreachableError(
            f"the FX feed {url} could not be read in {retry.max_attempts} attempts (last: {failure}). "
            f"What to do: check that {SETTING} is reachable from where runs execute; the account-days "
            "that need rates wait for a later run"
        ) from None


def _get(url: str, session: requests.Session, timeout_seconds: float, max_bytes: int) -> bytes:
    try:
        # stream: the size limit applies while reading, not after the whole body is in memory.
        with session.get(url, timeout=timeout_seconds, allow_redirects=False, stream=True) as response:
            status = response.status_code
            if status == 429 or status >= 500:
                raise _Transient(f"HTTP {status}")
            if response.is_redirect:
                location = response.headers.get("Location", "")
                raise FxFeedUnreachableError(
                    f"the FX feed {url} answered HTTP {status}, a redirect to {location!r} (not followed). "
                    f"What to do: set {SETTING} to the address it redirects to, if you trust it"
                )
            if status != 200:
                raise FxFeedUnreachableError(f"the FX feed {url} answered HTTP {status}. What to do: {_HINT}")
            body = bytearray()
            for chunk in response.iter_content(chunk_size=1 << 16):
                body += chunk
                if len(body) > max_bytes:
                    raise FxFeedFormatError(
                        f"the FX feed {url} is larger than {max_bytes:,} bytes: no feed of "
                        f"daily rates is (the ECB's whole history is a few MB). What to do: {_HINT}"
                    )
            return bytes(body)
    except _TRANSPORT_ERRORS as error:
        if is_certificate_error(error):
            raise FxFeedUnreachableError(
                f"the FX feed {url}: the server's TLS certificate could not be verified. What to do: "
                + certificate_hint(SETTING)
            ) from None
        # The type only: the text of a requests error repeats the URL and can run long.
        raise _Transient(type(error).__name__) from None
