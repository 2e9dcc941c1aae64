"""Fault injection shared by the emulators: random at a rate (deterministic under a seed), scripted
per request, or lasting a number of seconds (an outage).

Each emulator decides what a fault looks like on its wire (TikTok answers HTTP 200 with code 40100
for a rate limit, Amplitude answers HTTP 429); the transport faults (slow, dropped connection,
truncated body) are done by the HTTP server base itself.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiktok_amp_emulators.http_server import Request

# Paths under this prefix are the emulators' own read-back endpoints: never faulted.
CONTROL_PATH_PREFIX = "/emulator/"


class Fault(str, Enum):
    RATE_LIMIT = "rate_limit"  # TikTok: code 40100; Amplitude: HTTP 429 throttling body
    SERVER_ERROR = "server_error"  # TikTok: code 50000 in an HTTP 200; Amplitude: HTTP 500
    HTTP_503 = "http_503"  # a bare 503 from a proxy, HTML body
    SLOW = "slow"  # answer correctly after slow_seconds
    DROP_CONNECTION = "drop_connection"  # close the socket without answering
    TRUNCATED_BODY = "truncated_body"  # send half of a correct answer, then close
    PAYLOAD_TOO_LARGE = "payload_too_large"  # Amplitude only: HTTP 413
    ACCEPTED_THEN_ERROR = "accepted_then_error"  # Amplitude only: ingest, then answer HTTP 500
    FREQUENCY_LIMITED = "frequency_limited"  # TikTok only: code 40132 (REQUEST_FREQUENCY_LIMITED)
    QUERY_TOO_LARGE = "query_too_large"  # TikTok only: code 40067 ("please narrow the date range")
    # TikTok only: the whole app restricted, code 40100 with TikTok's words "Due to too many requests,
    # requests from App ... are temporarily restricted" (airbytehq/airbyte issue 70992).
    APP_RESTRICTED = "app_restricted"
    MAINTENANCE = "maintenance"  # TikTok only: code 60001 (ERROR_CODE_MAINTENANCE)
    TOO_MANY_REQUESTS_BLOCKED = "too_many_requests_blocked"  # TikTok only: 61000 (..._TOO_MANY_REQUESTS_BL)


class FaultInjector:
    """Draws a fault (or none) for each request.

    ``rate`` is the share of requests that get a random fault from ``kinds``; the sequence is
    deterministic for a given ``seed`` and request order. ``inject`` queues scripted faults that
    are served first, one per request, whatever the rate. ``inject_for`` queues outages: a fault
    answered to every request for a number of seconds, counted from the first request it meets (so
    that a client starting slowly still meets all of it); queued outages follow one another.
    """

    def __init__(
        self,
        rate: float = 0.0,
        *,
        seed: int = 0,
        kinds: tuple[Fault, ...] = (
            Fault.RATE_LIMIT,
            Fault.SERVER_ERROR,
            Fault.HTTP_503,
            Fault.DROP_CONNECTION,
        ),
        slow_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {rate}")
        self.rate = rate
        self.kinds = kinds
        self.slow_seconds = slow_seconds
        self._random = random.Random(seed)
        self._scripted: deque[Fault] = deque()
        self._outages: deque[tuple[Fault, float]] = deque()  # (fault, seconds), not yet begun
        self._outage: tuple[Fault, float] | None = None  # (fault, clock time it ends), under way
        self._clock = clock
        self._lock = threading.Lock()
        self.injected: Counter[Fault] = Counter()

    def inject(self, fault: Fault, count: int = 1) -> None:
        """Answer the next ``count`` requests with ``fault``."""
        with self._lock:
            self._scripted.extend([fault] * count)

    def inject_for(self, fault: Fault, *, seconds: float) -> None:
        """Answer every request with ``fault`` for ``seconds``, from the first request it meets
        (after the outages queued before it)."""
        with self._lock:
            self._outages.append((fault, seconds))

    def clear(self) -> None:
        """End every scripted fault and outage at once."""
        with self._lock:
            self._scripted.clear()
            self._outages.clear()
            self._outage = None

    def _current_outage(self) -> Fault | None:
        now = self._clock()
        if self._outage is not None and now >= self._outage[1]:
            self._outage = None
        if self._outage is None and self._outages:
            fault, seconds = self._outages.popleft()
            self._outage = (fault, now + seconds)
        return self._outage[0] if self._outage is not None else None

    def draw(self, request: Request) -> Fault | None:
        if request.path.startswith(CONTROL_PATH_PREFIX):
            return None
        with self._lock:
            fault = self._current_outage()
            if fault is None and self._scripted:
                fault = self._scripted.popleft()
            elif fault is None and self.rate and self._random.random() < self.rate:
                fault = self._random.choice(self.kinds)
            if fault is not None:
                self.injected[fault] += 1
            return fault

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())
