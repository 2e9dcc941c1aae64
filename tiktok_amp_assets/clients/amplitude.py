"""Client of Amplitude's ingestion API (HTTP V2 ``/2/httpapi`` and Batch ``/batch``).

``AmplitudeClient.send`` batches events as large as the endpoint allows and yields one
:class:`Delivery` per acknowledged request, so the caller can record each acknowledgement durably
before the next request goes out. Every resend keeps the events' ``insert_id``.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from pydantic import BaseModel, ValidationError

from tiktok_amp_assets.clients.http import RetryPolicy
from tiktok_amp_assets.core import amplitude_contract as amp

log = logging.getLogger(__name__)


class AmplitudeApiError(RuntimeError):
    """Amplitude refused a request, or kept failing after every retry. Never holds the API key."""


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request to Amplitude, for ``amplitude_upload_results``."""

    endpoint: str
    status: int | None  # None: no answer (timeout, reset)
    events: int
    bytes: int
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class RejectedEvent:
    event: dict[str, Any]
    reason: str

    @property
    def insert_id(self) -> str:
        return str(self.event.get("insert_id", ""))


@dataclass
class Delivery:
    """Events Amplitude acknowledged in one request, and any it rejected on the way."""

    accepted: list[dict[str, Any]]
    rejected: list[RejectedEvent] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)


class _Answer(BaseModel):
    code: int | None = None
    error: str | None = None
    missing_field: str | None = None
    events_with_invalid_fields: dict[str, list[int]] = {}
    events_with_missing_fields: dict[str, list[int]] = {}
    throttled_events: list[int] = []
    eps_threshold: int | None = None
    exceeded_daily_quota_devices: dict[str, int] = {}
    exceeded_daily_quota_users: dict[str, int] = {}


class AmplitudeClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        path: str = amp.HTTP_V2_PATH,
        max_events: int | None = None,
        max_bytes: int | None = None,
        retry: RetryPolicy | None = None,
        throttle_pause_seconds: float = amp.THROTTLE_PAUSE_SECONDS,
        timeout_seconds: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | Any = None,
    ) -> None:
        if path not in (amp.HTTP_V2_PATH, amp.BATCH_PATH):
            raise ValueError(f"unknown Amplitude endpoint {path!r}")
        is_batch = path == amp.BATCH_PATH
        self._url = base_url.rstrip("/") + path
        self.path = path
        self._api_key = api_key
        self._max_events = max_events or (amp.BATCH_MAX_EVENTS if is_batch else amp.HTTP_V2_MAX_EVENTS)
        self._max_bytes = max_bytes or (amp.BATCH_MAX_BYTES if is_batch else amp.HTTP_V2_MAX_BYTES)
        self._retry = retry or RetryPolicy()
        self._throttle_pause = throttle_pause_seconds
        self._timeout = timeout_seconds
        self._sleep = sleep
        self._log = logger or log
        self._rng = random.Random()
        self._session = requests.Session()
        # The key travels inside the JSON body: the envelope around the events, measured once.
        self._envelope_bytes = len(self._body_bytes([])) + 2
        self.retries = 0

    def close(self) -> None:
        self._session.close()

    def send(self, events: Sequence[dict[str, Any]]) -> Iterator[Delivery]:
        """Deliver ``events``; yields after each acknowledged request."""
        for batch in self._batches(events):
            yield from self._deliver(batch)

    # -- batching -------------------------------------------------------------------------------

    def _batches(self, events: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        batch: list[dict[str, Any]] = []
        size = self._envelope_bytes
        for event in events:
            event_size = len(json.dumps(event, separators=(",", ":")).encode("utf-8")) + 1
            if batch and (len(batch) >= self._max_events or size + event_size >= self._max_bytes):
                yield batch
                batch, size = [], self._envelope_bytes
            batch.append(event)
            size += event_size
        if batch:
            yield batch

    def _body_bytes(self, events: list[dict[str, Any]]) -> bytes:
        body = {"api_key": self._api_key, "events": events, "options": {"min_id_length": amp.MIN_ID_LENGTH}}
        return json.dumps(body, separators=(",", ":")).encode("utf-8")

    # -- delivery of one batch ------------------------------------------------------------------

    def _deliver(self, batch: list[dict[str, Any]]) -> Iterator[Delivery]:
        """Send one batch until it is acknowledged, splitting, dropping or pausing as Amplitude asks."""
        pending = batch
        rejected: list[RejectedEvent] = []
        records: list[RequestRecord] = []
        delays = self._retry.delays(self._rng)
        while pending:
            status, answer, record = self._post(pending)
            records.append(record)
            if status == 200:
                yield Delivery(accepted=pending, rejected=rejected, requests=records)
                return
            if status == 413 and len(pending) > 1:
                # Too large: halve and deliver each half on its own.
                middle = len(pending) // 2
                yield Delivery(accepted=[], rejected=rejected, requests=records)
                yield from self._deliver(pending[:middle])
                yield from self._deliver(pending[middle:])
                return
            if status == 413:
                rejected.append(RejectedEvent(pending[0], "event larger than Amplitude's request limit"))
                yield Delivery(accepted=[], rejected=rejected, requests=records)
                return
            if status == 400:
                invalid = _invalid_event_reasons(answer, len(pending))
                if not invalid:
                    raise AmplitudeApiError(
                        f"Amplitude rejected the request at {self.path}: {answer.error or 'HTTP 400'}"
                        + (f" (missing {answer.missing_field})" if answer.missing_field else "")
                        + ". What to do: check AMPLITUDE_API_KEY (the project's API key, not the secret key) "
                        "and AMPLITUDE_API_URL (EU projects use https://api.eu.amplitude.com)"
                    )
                rejected.extend(RejectedEvent(pending[i], reason) for i, reason in invalid.items())
                pending = [event for i, event in enumerate(pending) if i not in invalid]
                self._log.warning("Amplitude rejected %d events as invalid; resending the other %d", len(invalid), len(pending))
                continue
            if status == 429 and (answer.exceeded_daily_quota_devices or answer.exceeded_daily_quota_users):
                raise AmplitudeApiError(
                    f"Amplitude's daily quota per device was exceeded at {self.path}. What to do: run the "
                    "rest of the backfill tomorrow; what was acknowledged is recorded and will not be sent again"
                )
            delay = next(delays, None)
            if delay is None:
                raise AmplitudeApiError(
                    f"Amplitude {self.path} still failing after {self._retry.max_attempts} attempts "
                    f"(last: {record.error or record.status}). What to do: run the partition again later; "
                    "acknowledged events are recorded and will not be sent twice"
                )
            if status == 429:
                # Throttled devices must pause; the same insert_ids make the resend safe.
                delay = max(delay, self._throttle_pause)
            self.retries += 1
            self._log.warning("Amplitude %s: %s; retrying %d events in %.1fs", self.path, record.error or status, len(pending), delay)
            self._sleep(delay)
        yield Delivery(accepted=[], rejected=rejected, requests=records)

    def _post(self, events: list[dict[str, Any]]) -> tuple[int | None, _Answer, RequestRecord]:
        body = self._body_bytes(events)
        started = time.monotonic()
        status: int | None = None
        answer = _Answer()
        error: str | None = None
        try:
            response = self._session.post(
                self._url, data=body, headers={"Content-Type": "application/json"}, timeout=self._timeout
            )
            status = response.status_code
            try:
                answer = _Answer.model_validate(response.json())
            except (ValueError, ValidationError):
                answer = _Answer()
            if status != 200:
                error = f"HTTP {status}" + (f": {answer.error}" if answer.error else "")
        except (requests.ConnectionError, requests.Timeout) as failure:
            error = type(failure).__name__
        record = RequestRecord(
            endpoint=self.path,
            status=status,
            events=len(events),
            bytes=len(body),
            seconds=round(time.monotonic() - started, 4),
            error=error,
        )
        return status, answer, record


def _invalid_event_reasons(answer: _Answer, event_count: int) -> dict[int, str]:
    """Index into the request's events -> why Amplitude refused that event."""
    reasons: dict[int, str] = {}
    for kind, fields in (("invalid", answer.events_with_invalid_fields), ("missing", answer.events_with_missing_fields)):
        for field_name, indexes in fields.items():
            for index in indexes:
                if 0 <= index < event_count:
                    reasons.setdefault(index, f"{kind} field {field_name}")
    return reasons
