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
from typing import TypeVar
from urllib.parse import urlsplit

import requests

T = TypeVar("T")


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
    """Exponential back-off with jitter: how long to wait after each failure.

    The ``n``-th wait is drawn between half and all of ``base * 2**(n - 1)``, capped at
    ``max_seconds``: never much shorter than the back-off TikTok and Amplitude ask for, yet spread
    out. Amplitude's client bounds its tries by ``max_attempts``; TikTok's bounds its waiting in
    time instead (:class:`OutageBudget`).
    """

    max_attempts: int = 6
    base_seconds: float = 1.0
    max_seconds: float = 60.0

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait after ``failures`` failures in a row (1 for the first)."""
        ceiling = min(self.max_seconds, self.base_seconds * (2 ** min(failures - 1, 62)))
        # Jitter spreads out clients that were throttled together.
        return rng.uniform(ceiling / 2, ceiling)

    def delays(self, rng: random.Random | None = None) -> Iterator[float]:
        """The waits between attempts: ``max_attempts - 1`` of them."""
        rng = rng or random.Random()
        for failures in range(1, self.max_attempts):
            yield self.delay(failures, rng)

    def call(
        self,
        attempt: Callable[[], T],
        *,
        retry_on: tuple[type[Exception], ...],
        sleep: Callable[[float], None] = time.sleep,
        on_retry: Callable[[Exception, int, float], None] | None = None,
        rng: random.Random | None = None,
    ) -> T:
        """``attempt()``'s result, trying it up to ``max_attempts`` times while it raises one of
        ``retry_on``, with :meth:`delays` in between; the last such failure propagates.

        For a request that is simply made again (the FX feed). ``on_retry(failure, failures, delay)``
        is told of each wait, to log it. The TikTok and Amplitude clients keep loops of their own: a
        retry budget in time shared by a run, and throttled events set aside while others go on.
        """
        waits = self.delays(rng)
        failures = 0
        while True:
            try:
                return attempt()
            except retry_on as failure:
                delay = next(waits, None)
                if delay is None:
                    raise
                failures += 1
                if on_retry is not None:
                    on_retry(failure, failures, delay)
                sleep(delay)


class OutageBudget:
    """How long one run waits out an outage of an API, shared by every request of the run.

    An outage starts with a failure after a success (or with the run's first request failing) and
    ends with the next success. The wall-clock time since it started counts against ``seconds``:
    every request waiting on the same outage draws on the same budget, so 30 accounts that meet a
    15-minute maintenance one after the other cost 15 minutes, not 30 x 15: once the budget is spent,
    each further request is tried once more (the outage may have ended) and fails at once. A success
    ends the outage and refills the budget, since what follows is a new outage; and a run that keeps
    making progress between short failures is never stopped by them.

    ``failures`` counts the failures of the current outage, so that back-off keeps growing across
    the requests that meet it rather than starting again at one second for each.
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds < 0:
            raise ValueError(f"a retry budget cannot be negative, got {seconds}")
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._started: float | None = None  # clock time the current outage began
        self._failures = 0
        self.outages = 0  # outages met in the run, for its metadata
        self.waited_seconds = 0.0  # time slept waiting them out

    def failed(self) -> tuple[int, float]:
        """Record a failure: (failures of the current outage so far, seconds since it began)."""
        with self._lock:
            now = self._clock()
            if self._started is None:
                self._started = now
                self._failures = 0
                self.outages += 1
            self._failures += 1
            return self._failures, now - self._started

    def succeeded(self) -> None:
        """A request went through: the outage, if any, is over."""
        with self._lock:
            self._started = None
            self._failures = 0

    def remaining(self) -> float:
        """Seconds of the budget left for the current outage (all of it when there is none)."""
        with self._lock:
            if self._started is None:
                return self.seconds
            return max(0.0, self.seconds - (self._clock() - self._started))

    def waited(self, seconds: float) -> None:
        with self._lock:
            self.waited_seconds += seconds


def _amount(value: float) -> str:
    """0.3, 1.5, 12, 40: a tenth below ten, whole numbers above (waits are drawn with jitter anyway)."""
    return f"{round(value, 1):g}" if value < 10 else f"{value:.0f}"


def duration_text(seconds: float) -> str:
    """A wait or a budget as people say it: seconds below two minutes ("40 s"), else minutes."""
    return f"{_amount(seconds)} s" if seconds < 120 else f"{_amount(seconds / 60)} min"


def budget_progress_text(spent: float, budget: float) -> str:
    """How much of a budget is spent, in the budget's unit: "2 of up to 15 min", "12 of up to 40 s"."""
    if budget < 120:
        return f"{_amount(spent)} of up to {_amount(budget)} s"
    return f"{spent / 60:.0f} of up to {_amount(budget / 60)} min"


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
