"""What both API clients share: base-URL safety, request pacing and retry with back-off.

TikTok signals rate limits inside HTTP 200 answers and Amplitude with HTTP statuses, so the retry
decision stays with each client; this module only owns *how* to wait and how often to try.
"""

from __future__ import annotations

import ipaddress
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests


class InsecureUrlError(ValueError):
    """A base URL that would send a secret in clear text over the network."""


def is_certificate_error(error: BaseException) -> bool:
    """Whether ``error`` is a server TLS certificate that failed verification (untrusted issuer, wrong
    host name, expired): unlike a dropped connection, no retry can cure it."""
    return isinstance(error, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(error)


def certificate_hint(variable: str) -> str:
    return (
        f"check {variable}; if a proxy of your network re-signs TLS traffic, set REQUESTS_CA_BUNDLE to a file "
        "holding its CA certificate (verification itself is never turned off)"
    )


def checked_base_url(url: str, *, variable: str, allow_insecure_http: bool = False) -> str:
    """Return ``url`` without a trailing slash, or raise if it is not a usable API base URL.

    Plain ``http://`` is accepted only for loopback hosts (the bundled emulators), because the
    access token and API key travel with every request.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InsecureUrlError(f"{variable} must be an http(s) URL such as https://host, got {url!r}")
    if parts.query or parts.fragment:
        raise InsecureUrlError(f"{variable} must be a base URL without query or fragment, got {url!r}")
    if "@" in parts.netloc or not _PLAIN_URL.fullmatch(url.strip()):
        # Python and urllib3 disagree on which host "http://a.example\\@127.0.0.1" names (127.0.0.1
        # and a.example): the check below would pass a URL that requests sends elsewhere. Not quoted:
        # it may hold a password.
        raise InsecureUrlError(
            f"{variable} must be a plain base URL such as https://host:port, without user:password@, "
            "backslashes, spaces or control characters"
        )
    if parts.scheme == "http" and not allow_insecure_http and not _is_loopback(parts.hostname):
        raise InsecureUrlError(
            f"{variable} uses plain http:// for the non-local host {parts.hostname!r}: the secret would "
            "travel unencrypted. Use https://, or allow_insecure_http on the resource if you really mean it."
        )
    return url.strip().rstrip("/")


# Printable ASCII without spaces or backslashes.
_PLAIN_URL = re.compile(r"[!-\[\]-~]+")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential back-off with jitter, bounded in attempts.

    Each wait is drawn between half and all of ``base * 2**attempt`` (capped at ``max_seconds``):
    never much shorter than the back-off TikTok and Amplitude ask for, yet spread out.
    """

    max_attempts: int = 6
    base_seconds: float = 1.0
    max_seconds: float = 60.0

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits between attempts: ``max_attempts - 1`` of them."""
        rng = rng or random.Random()
        for attempt in range(self.max_attempts - 1):
            ceiling = min(self.max_seconds, self.base_seconds * (2**attempt))
            # Jitter spreads out clients that were throttled together.
            yield rng.uniform(ceiling / 2, ceiling)


@dataclass
class RequestPacer:
    """A token bucket shared by every request of a client: at most ``rate_per_second`` on average.

    A request costs one token, or its ``units`` when the budget counts something else (Amplitude's
    events per second). Dagster pools cap concurrent steps, not requests, so the client paces itself
    too.
    """

    rate_per_second: float
    burst: float = 1.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _tokens: float = field(init=False)
    _updated: float = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.rate_per_second <= 0:
            raise ValueError(f"request rate must be positive, got {self.rate_per_second}")
        self._tokens = self.burst
        self._updated = self.clock()

    def wait(self, units: float = 1.0) -> None:
        """Sleep until ``units`` more fit the average rate (the bucket may go into debt: the next
        caller waits for it)."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate_per_second)
            self._updated = now
            self._tokens -= units
            shortfall = -self._tokens
        if shortfall > 0:
            self.sleep(shortfall / self.rate_per_second)
