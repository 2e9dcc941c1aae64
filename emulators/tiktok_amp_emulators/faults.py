"""Fault injection shared by the emulators: random at a rate (deterministic under a seed) or scripted.

Each emulator decides what a fault looks like on its wire (TikTok answers HTTP 200 with code 40100
for a rate limit, Amplitude answers HTTP 429); the transport faults (slow, dropped connection,
truncated body) are done by the HTTP server base itself.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
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


class FaultInjector:
    """Draws a fault (or none) for each request.

    ``rate`` is the share of requests that get a random fault from ``kinds``; the sequence is
    deterministic for a given ``seed`` and request order. ``inject`` queues scripted faults that
    are served first, one per request, whatever the rate.
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
    ) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate must be between 0 and 1, got {rate}")
        self.rate = rate
        self.kinds = kinds
        self.slow_seconds = slow_seconds
        self._random = random.Random(seed)
        self._scripted: deque[Fault] = deque()
        self._lock = threading.Lock()
        self.injected: Counter[Fault] = Counter()

    def inject(self, fault: Fault, count: int = 1) -> None:
        """Answer the next ``count`` requests with ``fault``."""
        with self._lock:
            self._scripted.extend([fault] * count)

    def draw(self, request: Request) -> Fault | None:
        if request.path.startswith(CONTROL_PATH_PREFIX):
            return None
        with self._lock:
            fault: Fault | None = None
            if self._scripted:
                fault = self._scripted.popleft()
            elif self.rate and self._random.random() < self.rate:
                fault = self._random.choice(self.kinds)
            if fault is not None:
                self.injected[fault] += 1
            return fault

    @property
    def total_injected(self) -> int:
        return sum(self.injected.values())
