"""Client of Amplitude's ingestion API (HTTP V2 ``/2/httpapi`` and Batch ``/batch``).

``AmplitudeClient.send`` packs events into requests as large as the endpoint allows (2,000 events,
and the byte limit, whichever comes first) and yields one :class:`Delivery` each time Amplitude
settles some events (200: acknowledged; 400/413: rejected with a reason; a daily quota: parked), so
the caller can record that durably before the next request goes out. Every resend keeps the events' ``insert_id``, which is what makes
an ambiguous failure (a 500 after ingesting, a timeout, a 429 that ingested the unthrottled events)
safe to retry: Amplitude drops a repeated ``insert_id`` within 7 days.

How each answer is handled (``shared/specs/amplitude_http_api.md``):

- 429 throttling: the throttled devices/users are paused (at least ``throttle_pause_seconds``) and
  their events set aside, while the other events are resent at once and later requests go on.
- 429 naming ids in ``exceeded_daily_quota_*`` (Batch: 500,000 events per id per rolling day): those
  ids are parked for the rest of the client's life (waiting would take up to a day) and their events
  reported as parked; every other device goes on. Parked events stay pending for the next run.
- 413: the request is halved and each half resent; a lone event that is still too large is rejected.
- 400 naming events by index: those events are rejected with Amplitude's reason, the rest resent.
- 5xx, timeouts, dropped connections: retried with exponential back-off.

Bodies go gzip-compressed (``Content-Encoding: gzip``, optional): these events repeat their keys,
so several times fewer bytes travel. Size limits are applied to the JSON before compression, which is
what Amplitude counts.

``events_per_second`` paces the whole client (Amplitude's Starter plan asks HTTP V2 uploads to stay
at or under 1,000 events/s per project); requests then carry at most one second's worth of events.

The API key travels in the request body only; it never reaches a log line, a request record or an
exception text (Amplitude echoes an invalid key in its error message: that is redacted).
"""

from __future__ import annotations

import gzip
import itertools
import json
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from pydantic import BaseModel, ValidationError

from tiktok_amp_assets.clients.http import RequestPacer, RetryPolicy, certificate_hint, is_certificate_error
from tiktok_amp_assets.core import amplitude_contract as amp
from tiktok_amp_assets.core.json_codec import dump_json

log = logging.getLogger(__name__)

_REDACTED = "<redacted>"
# gzip level of request bodies: see _post for why.
GZIP_LEVEL = 1
_ID_FIELDS = (("device", "device_id"), ("user", "user_id"))
# The request may or may not have reached Amplitude: retried like a 5xx.
_NO_ANSWER = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


class AmplitudeApiError(RuntimeError):
    """Amplitude refused a request, or kept failing after every retry. Never holds the API key."""


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request to Amplitude, for ``amplitude_upload_results``."""

    endpoint: str
    status: int | None  # None: no answer (timeout, reset)
    events: int
    bytes: int  # as sent on the wire (gzip-compressed when enabled)
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class UndeliveredEvent:
    """An event Amplitude did not count, and why: rejected (400, or too large on its own), or parked
    (its device or user is over Amplitude's daily quota: not sent again by this client)."""

    event: dict[str, Any]
    reason: str

    @property
    def insert_id(self) -> str:
        return str(self.event.get("insert_id", ""))


@dataclass
class Delivery:
    """Events Amplitude settled: acknowledged by one request, or rejected, or parked (over a daily
    quota), with the requests it took."""

    accepted: list[dict[str, Any]]
    rejected: list[UndeliveredEvent] = field(default_factory=list)
    parked: list[UndeliveredEvent] = field(default_factory=list)
    requests: list[RequestRecord] = field(default_factory=list)


class _Answer(BaseModel):
    code: int | None = None
    error: str | None = None
    missing_field: str | None = None
    invalid_field: str | None = None
    events_with_invalid_fields: dict[str, list[int]] = {}
    events_with_missing_fields: dict[str, list[int]] = {}
    events_with_invalid_id_lengths: dict[str, list[int]] = {}  # Amplitude-Python http_client.py
    silenced_events: list[int] = []
    throttled_events: list[int] = []
    throttled_devices: dict[str, int] = {}
    throttled_users: dict[str, int] = {}
    exceeded_daily_quota_devices: dict[str, int] = {}
    exceeded_daily_quota_users: dict[str, int] = {}


@dataclass(frozen=True)
class _Encoded:
    """An event with its JSON bytes, serialized once: sizes are exact and bodies are joined, not
    re-dumped; and the ids Amplitude throttles it under (``device:…``, ``user:…``)."""

    event: dict[str, Any]
    body: bytes
    ids: tuple[str, ...]


@dataclass
class _Batch:
    """Events that go out in one request, with their retry state."""

    events: list[_Encoded]
    failures: int = 0  # 5xx, timeouts and throttles so far: bounded by the retry policy
    ready_at: float = 0.0  # clock time before which it must not go out (throttled ids)
    records: list[RequestRecord] = field(default_factory=list)  # attempts not yet reported


class AmplitudeClient:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        path: str = amp.HTTP_V2_PATH,
        max_events: int | None = None,
        events_per_second: float | None = None,
        retry: RetryPolicy | None = None,
        throttle_pause_seconds: float = amp.THROTTLE_PAUSE_SECONDS,
        gzip_requests: bool = True,
        timeout_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        logger: logging.Logger | Any = None,
    ) -> None:
        """``max_events`` lowers the events per request below Amplitude's 2,000 (never above);
        ``events_per_second`` caps the client's average pace (None: no cap); ``clock`` and ``sleep``
        drive throttling pauses, pacing and back-off."""
        if path not in (amp.HTTP_V2_PATH, amp.BATCH_PATH):
            raise ValueError(f"unknown Amplitude endpoint {path!r}")
        if max_events is not None and max_events < 1:
            raise ValueError(f"max_events must be at least 1, got {max_events}")
        if events_per_second is not None and events_per_second < 1:
            raise ValueError(f"events_per_second must be at least 1, got {events_per_second}")
        is_batch = path == amp.BATCH_PATH
        self._url = base_url.rstrip("/") + path
        self.path = path
        self._api_key = api_key
        self._max_events = min(max_events or amp.MAX_EVENTS_PER_REQUEST, amp.MAX_EVENTS_PER_REQUEST)
        self._pacer: RequestPacer | None = None
        if events_per_second is not None:
            # A request lands at once: more events in it than one second allows would break the
            # per-second limit however long the pause after it.
            self._max_events = min(self._max_events, int(events_per_second))
            self._pacer = RequestPacer(events_per_second, burst=self._max_events, clock=clock, sleep=sleep)
        self._max_bytes = amp.BATCH_MAX_BYTES if is_batch else amp.HTTP_V2_MAX_BYTES
        # More events per id in one request than the id may send per second would be throttled
        # every time, however long the pause: such events wait for a later request.
        self._max_per_id = amp.BATCH_EPS_PER_DEVICE if is_batch else amp.HTTP_V2_EPS_PER_DEVICE
        self._retry = retry or RetryPolicy()
        self._throttle_pause = throttle_pause_seconds
        self._gzip = gzip_requests
        self._timeout = timeout_seconds
        self._clock = clock
        self._sleep = sleep
        self._log = logger or log
        self._rng = random.Random()
        self._session = requests.Session()
        # The body is these two byte strings around the events joined by commas; the key lives
        # only here, in memory.
        self._head = b'{"api_key":' + json.dumps(api_key).encode("utf-8") + b',"events":['
        self._tail = b'],"options":{"min_id_length":' + str(amp.MIN_ID_LENGTH).encode("ascii") + b"}}"
        self._paused_until: dict[str, float] = {}  # throttled id -> clock time it may send again
        self._over_daily_quota: set[str] = set()  # ids Amplitude said are over their daily quota
        self.retries = 0

    @property
    def max_events(self) -> int:
        """Events per request at most: callers streaming many days send in whole multiples of it."""
        return self._max_events

    def close(self) -> None:
        self._session.close()

    def send(self, events: Sequence[dict[str, Any]]) -> Iterator[Delivery]:
        """Deliver ``events``, yielding whenever some are acknowledged, rejected or parked.

        Batches wait in a queue. Events of throttled ids wait until their pause ends while the
        queue goes on; the client sleeps for them only when nothing else is left. A server
        error or a lost answer pauses everything instead: the service is struggling for all ids.
        """
        queue = deque(_Batch(events) for events in self._batches(self._encode(event) for event in events))
        waiting: list[_Batch] = []
        while queue or waiting:
            now = self._clock()
            if not queue:
                wake = min(batch.ready_at for batch in waiting)
                self._sleep(max(0.0, wake - now))
                now = max(now, wake)
            ready = [batch for batch in waiting if batch.ready_at <= now]
            if ready:
                waiting = [batch for batch in waiting if batch.ready_at > now]
                queue.extend(self._rebatched(ready))
            batch = queue.popleft()
            over_quota = self._take_over_quota(batch)
            if over_quota is not None:
                yield over_quota
            held = self._hold_paused(batch, now)
            if held is not None:
                waiting.append(held)
            if not batch.events:
                continue
            if self._pacer is not None:
                self._pacer.wait(len(batch.events))
            status, answer, record = self._post(batch.events)
            batch.records.append(record)
            if status == 200:
                yield Delivery(accepted=[e.event for e in batch.events], requests=batch.records)
            elif status == 413:
                rejected = self._split_too_large(batch, queue)
                if rejected is not None:
                    yield rejected
            elif status == 400:
                yield self._drop_invalid(batch, answer, queue)
            elif status == 429:
                over_quota, throttled = self._park_throttled(batch, answer, record, queue)
                if over_quota is not None:
                    yield over_quota
                if throttled is not None:
                    waiting.append(throttled)
            elif status is None or status >= 500:
                self._back_off(batch, record)
                queue.appendleft(batch)
            else:
                redirect = " (a redirect, not followed)" if 300 <= status < 400 else ""
                raise AmplitudeApiError(
                    f"Amplitude answered HTTP {status}{redirect} at {self.path}{_detail(answer)}. What to do: check "
                    "AMPLITUDE_API_URL (https://api2.amplitude.com, or https://api.eu.amplitude.com for EU "
                    "projects)"
                )

    # -- batching -------------------------------------------------------------------------------

    def _encode(self, event: dict[str, Any]) -> _Encoded:
        ids = tuple(f"{kind}:{event[name]}" for kind, name in _ID_FIELDS if event.get(name))
        return _Encoded(event, dump_json(event), ids)

    def _batches(self, events: Iterable[_Encoded]) -> Iterator[list[_Encoded]]:
        """Requests as full as the endpoint allows: at most ``max_events`` events, under the byte
        limit, and no more events of one device/user than it may send per second (the excess
        goes in later requests)."""
        remaining = list(events)
        while remaining:
            deferred: list[_Encoded] = []
            batch: list[_Encoded] = []
            size = len(self._head) + len(self._tail)
            per_id: Counter[str] = Counter()
            for event in remaining:
                if any(per_id[key] >= self._max_per_id for key in event.ids):
                    deferred.append(event)
                    continue
                event_size = len(event.body) + 1  # the comma
                if batch and (len(batch) >= self._max_events or size + event_size >= self._max_bytes):
                    yield batch
                    batch, size, per_id = [], len(self._head) + len(self._tail), Counter()
                batch.append(event)
                size += event_size
                per_id.update(event.ids)
            if batch:
                yield batch
            remaining = deferred

    def _rebatched(self, ready: list[_Batch]) -> Iterator[_Batch]:
        """Waiting events whose pause is over, packed into full requests again."""
        failures = max(batch.failures for batch in ready)
        records = [record for batch in ready for record in batch.records]
        events = (event for batch in ready for event in batch.events)
        for index, packed in enumerate(self._batches(events)):
            yield _Batch(packed, failures, records=records if index == 0 else [])

    def _hold_paused(self, batch: _Batch, now: float) -> _Batch | None:
        """Take the events of still-paused ids out of ``batch``; return them to wait, if any."""
        resume_at = {key: until for key, until in self._paused_until.items() if until > now}
        self._paused_until = resume_at
        if not resume_at:
            return None
        held = [event for event in batch.events if any(key in resume_at for key in event.ids)]
        if not held:
            return None
        batch.events = [event for event in batch.events if all(key not in resume_at for key in event.ids)]
        ready_at = max(resume_at[key] for event in held for key in event.ids if key in resume_at)
        return _Batch(held, batch.failures, ready_at)

    # -- answers other than 200 -----------------------------------------------------------------

    def _split_too_large(self, batch: _Batch, queue: deque[_Batch]) -> Delivery | None:
        """Halve a 413'd request and queue both halves; a lone event is rejected (no split helps)."""
        if len(batch.events) == 1:
            event = batch.events[0]
            reason = f"event of {len(event.body)} bytes is larger than Amplitude accepts at {self.path}"
            rejected = [UndeliveredEvent(event.event, reason)]
            return Delivery(accepted=[], rejected=rejected, requests=batch.records)
        middle = len(batch.events) // 2
        self._log.warning("Amplitude %s: payload too large; halving %d events", self.path, len(batch.events))
        queue.appendleft(_Batch(batch.events[middle:], batch.failures))
        queue.appendleft(_Batch(batch.events[:middle], batch.failures, records=batch.records))
        return None

    def _drop_invalid(self, batch: _Batch, answer: _Answer, queue: deque[_Batch]) -> Delivery:
        invalid = _invalid_event_reasons(answer, len(batch.events))
        if not invalid:
            raise AmplitudeApiError(
                f"Amplitude rejected the request at {self.path}{_detail(answer)}. What to do: check "
                "AMPLITUDE_API_KEY (the project's API key, not the secret key) and AMPLITUDE_API_URL "
                "(EU projects use https://api.eu.amplitude.com)"
            )
        rest = [event for index, event in enumerate(batch.events) if index not in invalid]
        self._log.warning(
            "Amplitude %s rejected %d events; resending the other %d", self.path, len(invalid), len(rest)
        )
        if rest:
            queue.appendleft(_Batch(rest, batch.failures))
        rejected = [UndeliveredEvent(batch.events[i].event, reason) for i, reason in sorted(invalid.items())]
        return Delivery(accepted=[], rejected=rejected, requests=batch.records)

    def _take_over_quota(self, batch: _Batch) -> Delivery | None:
        """Take the events of ids over their daily quota out of ``batch``, reported as parked.

        The report carries the batch's attempts so far; what stays in the batch starts afresh."""
        if not self._over_daily_quota:
            return None
        over = {
            index
            for index, event in enumerate(batch.events)
            if any(key in self._over_daily_quota for key in event.ids)
        }
        if not over:
            return None
        parked = []
        for index in sorted(over):
            event = batch.events[index]
            ids = ", ".join(key for key in event.ids if key in self._over_daily_quota)
            reason = (
                f"{ids} over Amplitude's daily quota of events per device/user at {self.path}; left pending, "
                "the next run sends it"
            )
            parked.append(UndeliveredEvent(event.event, reason))
        batch.events = [event for index, event in enumerate(batch.events) if index not in over]
        records, batch.records = batch.records, []
        return Delivery(accepted=[], parked=parked, requests=records)

    def _park_throttled(
        self, batch: _Batch, answer: _Answer, record: RequestRecord, queue: deque[_Batch]
    ) -> tuple[Delivery | None, _Batch | None]:
        """Answer a 429: events of ids over their daily quota come back parked for good; the
        throttled ids are paused and their events returned, to wait; the others are resent at once.

        The others may have been ingested already (the spec leaves it open): their resend carries
        the same insert_ids, so Amplitude drops them if so.
        """
        over_quota_ids = {f"device:{id_}" for id_ in answer.exceeded_daily_quota_devices}
        over_quota_ids |= {f"user:{id_}" for id_ in answer.exceeded_daily_quota_users}
        if over_quota_ids - self._over_daily_quota:
            self._log.warning(
                "Amplitude %s: %d devices/users are over their daily quota; their events wait for the next run, "
                "the others go on",
                self.path,
                len(over_quota_ids - self._over_daily_quota),
            )
        self._over_daily_quota |= over_quota_ids
        throttled_ids = {f"device:{id_}" for id_ in answer.throttled_devices}
        throttled_ids |= {f"user:{id_}" for id_ in answer.throttled_users}
        listed = set(answer.throttled_events)
        # Indexes refer to the request as sent: decide every event before any leaves the batch.
        is_over_quota = [any(key in over_quota_ids for key in event.ids) for event in batch.events]
        is_throttled = [
            not over and (index in listed or any(key in throttled_ids for key in event.ids))
            for index, (event, over) in enumerate(zip(batch.events, is_over_quota, strict=True))
        ]
        if not any(is_throttled) and not any(is_over_quota):  # a 429 that names nothing: all of it waits
            is_throttled = [True] * len(batch.events)
        throttled = [event for event, flag in zip(batch.events, is_throttled, strict=True) if flag]
        rest = [
            event
            for event, over, flag in zip(batch.events, is_over_quota, is_throttled, strict=True)
            if not over and not flag
        ]
        over_quota = self._take_over_quota(batch)
        if not throttled:
            if rest:
                queue.appendleft(_Batch(rest, batch.failures, records=batch.records))
            return over_quota, None
        delay = self._next_delay(batch, record)
        pause = max(self._throttle_pause, delay)
        resume_at = self._clock() + pause
        for event in throttled:
            for key in event.ids:
                self._paused_until[key] = resume_at
        self.retries += 1
        self._log.warning(
            "Amplitude %s throttled %d events; pausing their devices for %.2fs, resending the other %d now",
            self.path,
            len(throttled),
            pause,
            len(rest),
        )
        if rest:
            queue.appendleft(_Batch(rest, batch.failures, records=batch.records))
            batch.records = []
        return over_quota, _Batch(throttled, batch.failures + 1, resume_at, batch.records)

    def _back_off(self, batch: _Batch, record: RequestRecord) -> None:
        """Wait before resending ``batch`` after a server error or no answer."""
        delay = self._next_delay(batch, record)
        batch.failures += 1
        self.retries += 1
        self._log.warning(
            "Amplitude %s: %s; retrying %d events in %.2fs", self.path, record.error, len(batch.events), delay
        )
        self._sleep(delay)

    def _next_delay(self, batch: _Batch, record: RequestRecord) -> float:
        delay = next(itertools.islice(self._retry.delays(self._rng), batch.failures, None), None)
        if delay is None:
            raise AmplitudeApiError(
                f"Amplitude {self.path} still failing after {self._retry.max_attempts} attempts "
                f"(last: {record.error}). What to do: run the partition again later; acknowledged events "
                "are recorded and will not be sent twice"
            )
        return delay

    # -- the wire ---------------------------------------------------------------------------------

    def _post(self, events: list[_Encoded]) -> tuple[int | None, _Answer, RequestRecord]:
        body = self._head + b",".join(event.body for event in events) + self._tail
        headers = {"Content-Type": "application/json"}
        if self._gzip:
            # Event JSON repeats its keys: gzip cuts the bytes on the wire several times over. The
            # compression sits on the path of every request, and higher levels save few bytes for
            # much more time (bench/RESULTS.md, "Figures behind the code's choices"): the fastest wins.
            body = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        started = time.monotonic()
        status: int | None = None
        answer = _Answer()
        error: str | None = None
        try:
            # Redirects are not followed: a 307/308 would resend the body, API key included, to
            # whatever host the Location names, even over plain http://.
            response = self._session.post(
                self._url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            )
            status = response.status_code
            try:
                answer = _Answer.model_validate(response.json())
            except (ValueError, ValidationError):
                answer = _Answer()
            if answer.error:
                answer.error = answer.error.replace(self._api_key, _REDACTED)
            if status != 200:
                error = f"HTTP {status}" + (f": {answer.error}" if answer.error else "")
        except _NO_ANSWER as failure:
            if is_certificate_error(failure):
                raise AmplitudeApiError(
                    f"Amplitude {self.path}: the server's TLS certificate could not be verified. What to do: "
                    + certificate_hint("AMPLITUDE_API_URL")
                ) from None
            # The type only: terse, and nothing of the request in it.
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


def _detail(answer: _Answer) -> str:
    """Amplitude's own words about a refused request (key already redacted)."""
    parts = [answer.error or ""]
    if answer.missing_field:
        parts.append(f"missing field {answer.missing_field}")
    if answer.invalid_field:
        parts.append(f"invalid field {answer.invalid_field}")
    text = "; ".join(part for part in parts if part)
    return f": {text}" if text else ""


def _invalid_event_reasons(answer: _Answer, event_count: int) -> dict[int, str]:
    """Index into the request's events -> why Amplitude refused that event."""
    reasons: dict[int, str] = {}
    named = (
        ("invalid field", answer.events_with_invalid_fields),
        ("missing field", answer.events_with_missing_fields),
        ("id too short:", answer.events_with_invalid_id_lengths),
    )
    for kind, fields in named:
        for field_name, indexes in fields.items():
            for index in indexes:
                if 0 <= index < event_count:
                    reasons.setdefault(index, f"{kind} {field_name}")
    for index in answer.silenced_events:
        if 0 <= index < event_count:
            reasons.setdefault(index, "device silenced by Amplitude")
    return reasons
