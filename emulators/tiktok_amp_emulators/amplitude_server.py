"""A local emulator of Amplitude's event ingestion API (HTTP V2 and Batch Event Upload).

It reproduces what an uploader must survive: 400 bodies that name the bad events by index, 413 size
limits, 429 per-device/per-user throttling and daily quotas, insert_id de-duplication over 7 days,
and injected faults including the ambiguous "ingested, then answered 500".

It is a second reading of Amplitude's public documentation, independent of the product: it imports
nothing from ``tiktok_amp_assets``, and each fact it enforces is stated below in its own words with
its source. Where a source leaves Amplitude's behaviour open, the emulator takes the reading that is
hardest on the client (a 429 still ingests the events it did not throttle; byte limits count the
decompressed JSON; the daily quota counts a rolling 24 hours), so a client that passes here is safe
against the real service.

The api key travels in request bodies: it is checked and then forgotten. It never reaches the
request log, the counted events or a log line, nor a response unless ``echo_invalid_api_key`` asks
for Amplitude's habit of quoting an unknown key in its 400 (to test that clients redact it).

For tests of what a client does around a failure, ``silenced_devices`` makes Amplitude refuse the
events of some devices (a 400 naming them in ``silenced_events``), and ``hold_requests`` keeps
ingestion requests waiting inside the server until ``release`` (a process can be killed while its
request is in flight).
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple

import orjson

from tiktok_amp_emulators.faults import CONTROL_PATH_PREFIX, Fault, FaultInjector
from tiktok_amp_emulators.http_server import EmulatorServer, Request, Response

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------- what Amplitude documents
# HTTP V2: https://amplitude.com/docs/apis/analytics/http-v2 ("HTTP V2 page")
# Batch Event Upload: https://amplitude.com/docs/apis/analytics/batch-event-upload ("Batch page")
# Which API should I use?: https://amplitude.com/docs/faq/api-choice ("API FAQ")

HTTP_V2_PATH = "/2/httpapi"
BATCH_PATH = "/batch"
# A request holds at most 2,000 events, on either endpoint; one more is a 413. HTTP V2 page, "Upload
# limit"; Batch page, response table, 413: "The limit per batch is 2000 events". The count is taken
# after a gzip body is decompressed (HTTP V2 page).
MAX_EVENTS_PER_REQUEST = 2000
# Body size: HTTP V2 requests must stay under 1 MB (HTTP V2 page, 413 row); Batch: "The JSON
# serialized payload must not exceed 20MB" (Batch page). Stricter reading: counted on the
# decompressed JSON, HTTP V2's 1 MB as 1,000,000 bytes and exclusive.
HTTP_V2_MAX_BODY_BYTES = 1_000_000
BATCH_MAX_BODY_BYTES = 20_000_000
# Per device and per user: HTTP V2 throttles above 30 events per second "measured as an average over
# a recent time window" (API FAQ); Batch allows "up to 1000 events per second for any individual
# device ID or user ID" (Batch page). Past it: 429 naming the ids in throttled_devices/_users. The
# window is 1 s unless set (``throttle_window_seconds``): stricter than an average over 30 s, which
# would allow a burst after a quiet spell.
HTTP_V2_EVENTS_PER_SECOND_PER_ID = 30
BATCH_EVENTS_PER_SECOND_PER_ID = 1000
# Batch: 500,000 events per device (or user) in a rolling 24 hours, then a 429 naming the ids in
# exceeded_daily_quota_devices/_users (Batch page, 429 section). Rolling, not per calendar day: the
# stricter reading.
DAILY_QUOTA_PER_ID = 500_000
DAILY_QUOTA_WINDOW_SECONDS = 86_400
# "Device IDs and user IDs must be strings of 5 characters or more"; a shorter one is dropped from
# the event, and an event left with no id gets the request a 400; options.min_id_length changes the
# bar (Batch page). The emulator applies it on both endpoints.
MIN_ID_LENGTH = 5
# An event repeating an insert_id seen for the same device in the past 7 days is ignored (HTTP V2
# page, insert_id); after 7 days it counts again. Kept here per project, across devices: an
# insert_id reused for another ad's event is then lost, which the tests would see.
DEDUP_WINDOW_SECONDS = 7 * 86_400

DEFAULT_API_KEY = "emulator-api-key"
INGESTION_PATHS = (HTTP_V2_PATH, BATCH_PATH)
# Key added to each counted event so tests can tell which endpoint delivered it.
ENDPOINT_FIELD = "endpoint"
AD_METRICS_PREFIX = "ad_metrics."

_THROTTLED_ERROR = "Too many requests for some devices and users"
_SERVER_ERROR_BODY = {"code": 500, "error": "Internal server error"}
_DEVICE = "device"
_USER = "user"


@dataclass
class _Project:
    """One Amplitude project (one api key): its insert_id memory, oldest first."""

    number: int
    insert_ids_seen_at: dict[str, float] = field(default_factory=dict)


@dataclass
class _Outcome:
    """What one ingestion request produced, for the response and the request log."""

    status: int
    payload: dict[str, Any]
    events: int = 0
    ingested: int = 0


class _Rejection(Exception):
    """Ends request processing early with a finished outcome (400 or 413)."""

    def __init__(self, outcome: _Outcome) -> None:
        super().__init__(outcome.status)
        self.outcome = outcome


class _EventIds(NamedTuple):
    """The usable ids of one event (too-short ids already discarded)."""

    device_id: str | None
    user_id: str | None


# ("device" | "user", id): the unit Amplitude throttles and meters.
_IdKey = tuple[str, str]


class _SlidingWindowCounter:
    """Events per id over the last ``window_seconds``, as Amplitude's per-id throttling counts them.

    One bucket per accepted request (its time and per-id counts) rather than one deque per id: a
    /batch of 2,000 ads then costs one append, and expiry walks only the requests that age out.
    """

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._requests: deque[tuple[float, Counter[_IdKey]]] = deque()
        self._totals: Counter[_IdKey] = Counter()

    def totals(self, now: float) -> Counter[_IdKey]:
        """Per-id counts inside the window ending at ``now`` (a live view: do not modify)."""
        horizon = now - self.window_seconds
        totals = self._totals
        while self._requests and self._requests[0][0] <= horizon:
            for key, count in self._requests.popleft()[1].items():
                left = totals[key] - count
                if left:
                    totals[key] = left
                else:
                    del totals[key]
        return totals

    def add(self, now: float, usage: Counter[_IdKey]) -> None:
        if usage:
            self._requests.append((now, usage))
            self._totals.update(usage)


@dataclass
class _Throttling:
    """The 429 verdict for one request: which ids are over and which event indexes that hits."""

    throttled_devices: dict[str, int] = field(default_factory=dict)
    throttled_users: dict[str, int] = field(default_factory=dict)
    exceeded_daily_quota_devices: dict[str, int] = field(default_factory=dict)
    exceeded_daily_quota_users: dict[str, int] = field(default_factory=dict)
    throttled_events: list[int] = field(default_factory=list)
    # Events per id in the request, reused as the usage to record when nothing is throttled.
    requested: Counter[_IdKey] = field(default_factory=Counter)

    def body(self, eps_threshold: int) -> dict[str, Any]:
        return {
            "code": 429,
            "error": _THROTTLED_ERROR,
            "eps_threshold": eps_threshold,
            "throttled_devices": self.throttled_devices,
            "throttled_users": self.throttled_users,
            "throttled_events": self.throttled_events,
            "exceeded_daily_quota_devices": self.exceeded_daily_quota_devices,
            "exceeded_daily_quota_users": self.exceeded_daily_quota_users,
        }


class AmplitudeEmulator(EmulatorServer):
    """Amplitude's ``/2/httpapi`` and ``/batch`` on loopback, plus read-back under ``/emulator/``.

    ``clock`` (seconds since epoch) drives throttling windows, daily quotas, the 7-day insert_id
    memory, ``server_upload_time`` and each request's arrival time in ``request_log`` (``at``), so
    tests can jump days ahead without sleeping and measure a client's pace from the server's side.
    ``daily_quota_per_id`` lowers Batch's 500,000 events per id per rolling day for tests.
    ``ingest_unthrottled_on_429`` picks the adversarial reading of the spec ("events not listed may
    be accepted or not"): a 429 still ingests the events it does not list.
    """

    def __init__(
        self,
        *,
        api_keys: set[str] | None = None,
        faults: FaultInjector | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        throttle_window_seconds: float = 1.0,
        ingest_unthrottled_on_429: bool = True,
        clock: Callable[[], float] = time.time,
        daily_quota_per_id: int = DAILY_QUOTA_PER_ID,
        echo_invalid_api_key: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults, tls=tls)
        if throttle_window_seconds <= 0:
            raise ValueError(f"throttle_window_seconds must be positive, got {throttle_window_seconds}")
        if daily_quota_per_id <= 0:
            raise ValueError(f"daily_quota_per_id must be positive, got {daily_quota_per_id}")
        keys = {DEFAULT_API_KEY} if api_keys is None else set(api_keys)
        if not keys:
            raise ValueError("the emulator needs at least one api key")
        self.ingest_unthrottled_on_429 = ingest_unthrottled_on_429
        self.echo_invalid_api_key = echo_invalid_api_key
        self.silenced_devices: set[str] = set()
        self.daily_quota_per_id = daily_quota_per_id
        self._clock = clock
        # Projects are numbered so the counted events can be filtered per key without storing it.
        self._projects = {key: _Project(number) for number, key in enumerate(sorted(keys))}
        self._window = _SlidingWindowCounter(throttle_window_seconds)
        self._daily_counts = _SlidingWindowCounter(DAILY_QUOTA_WINDOW_SECONDS)
        self._counted: list[tuple[int, dict[str, Any]]] = []
        self._request_log: list[dict[str, Any]] = []
        # hold_requests: how many more ingestion requests pass before the others wait (None: no hold).
        self._passes_left: int | None = None
        self._held = 0
        self._released = threading.Event()

    # ------------------------------------------------------------------ read-back

    def counted_events(self, api_key: str | None = None) -> list[dict[str, Any]]:
        """Events Amplitude counted (duplicates excluded), in arrival order, each with its endpoint.

        With ``api_key``, only that project's events; an unknown key has none.
        """
        with self.lock:
            if api_key is None:
                return [dict(event) for _, event in self._counted]
            project = self._projects.get(api_key)
            if project is None:
                return []
            return [dict(event) for number, event in self._counted if number == project.number]

    @property
    def request_log(self) -> list[dict[str, Any]]:
        """One entry per API request: path, status, events (received), bytes (decompressed), ingested
        (newly counted), at (arrival time on the emulator's clock)."""
        with self.lock:
            return [dict(entry) for entry in self._request_log]

    def requests_count(self, path: str | None = None) -> int:
        with self.lock:
            if path is None:
                return len(self._request_log)
            return sum(1 for entry in self._request_log if entry["path"] == path)

    def hold_requests(self, after: int = 0) -> None:
        """Let ``after`` more ingestion requests through, then keep each later one waiting in the
        server (not yet answered, not yet ingested) until :meth:`release`."""
        with self.lock:
            self._passes_left = after
            self._held = 0
            self._released.clear()

    def release(self) -> None:
        """Let held requests go on, ingested and answered as usual (even if their client is gone)."""
        with self.lock:
            self._passes_left = None
        self._released.set()

    @property
    def held_requests(self) -> int:
        """Ingestion requests that reached the hold since :meth:`hold_requests`."""
        with self.lock:
            return self._held

    def reset(self) -> None:
        """Forget counted events, insert_ids, throttling state and the request log (keys and faults stay)."""
        with self.lock:
            self._counted.clear()
            self._request_log.clear()
            for project in self._projects.values():
                project.insert_ids_seen_at.clear()
            self._window = _SlidingWindowCounter(self._window.window_seconds)
            self._daily_counts = _SlidingWindowCounter(DAILY_QUOTA_WINDOW_SECONDS)

    def summary(self) -> dict[str, Any]:
        """Counts per event_type and exact ``ad_metrics.*`` sums per ad_account_id, as the demo shows them."""
        with self.lock:
            events = [event for _, event in self._counted]
        return summarize_events(events)

    # ------------------------------------------------------------------ HTTP

    def handle(self, request: Request, fault: Fault | None) -> Response:
        if request.path.startswith(CONTROL_PATH_PREFIX):
            return self._handle_control(request)
        arrived_at = self._clock()
        if request.path not in INGESTION_PATHS:
            outcome = _Outcome(404, {"code": 404, "error": "Not found"})
        elif request.method != "POST":
            outcome = _Outcome(405, {"code": 405, "error": "Method not allowed"})
        else:
            self._wait_if_held()
            outcome = self._ingest_request(request, fault)
        with self.lock:
            self._request_log.append(
                {
                    "path": request.path,
                    "status": outcome.status,
                    "events": outcome.events,
                    "bytes": len(request.body),
                    "ingested": outcome.ingested,
                    "at": arrived_at,
                }
            )
        log.debug(
            "%s %s -> %d (%d events, %d ingested)",
            request.method,
            request.path,
            outcome.status,
            outcome.events,
            outcome.ingested,
        )
        return Response.json(outcome.status, outcome.payload)

    def _wait_if_held(self) -> None:
        with self.lock:
            if self._passes_left is None:
                return
            if self._passes_left > 0:
                self._passes_left -= 1
                return
            self._held += 1
        self._released.wait()

    def _handle_control(self, request: Request) -> Response:
        if request.method != "GET":
            return Response.json(405, {"error": "read-back endpoints are GET only"})
        if request.path == f"{CONTROL_PATH_PREFIX}health":
            return Response.json(200, {"status": "ok"})
        if request.path == f"{CONTROL_PATH_PREFIX}events":
            events = self.counted_events()
            event_type = request.query.get("event_type")
            if event_type is not None:
                events = [event for event in events if event.get("event_type") == event_type]
            return Response.json(200, events)
        if request.path == f"{CONTROL_PATH_PREFIX}summary":
            return Response.json(200, self.summary())
        return Response.json(404, {"error": f"unknown read-back endpoint {request.path}"})

    # ------------------------------------------------------------------ ingestion

    def _ingest_request(self, request: Request, fault: Fault | None) -> _Outcome:
        if fault is Fault.SERVER_ERROR:
            return _Outcome(500, _SERVER_ERROR_BODY)
        if fault is Fault.PAYLOAD_TOO_LARGE:
            return _payload_too_large()
        endpoint = request.path
        try:
            project, events, min_id_length = self._parse(endpoint, request.body)
            event_ids = _validate_events(events, min_id_length)
        except _Rejection as rejection:
            return rejection.outcome
        silenced = [index for index, ids in enumerate(event_ids) if ids.device_id in self.silenced_devices]
        if silenced:
            return _Outcome(400, _silenced_body(silenced, event_ids), events=len(events))
        if fault is Fault.RATE_LIMIT:
            return _Outcome(429, _injected_throttling(events, event_ids, endpoint), events=len(events))
        outcome = self._throttle_and_ingest(project, endpoint, events, event_ids, len(request.body))
        if fault is Fault.ACCEPTED_THEN_ERROR:
            # The events are in (or not, as the normal path decided); the client only sees a 500.
            return _Outcome(500, _SERVER_ERROR_BODY, events=outcome.events, ingested=outcome.ingested)
        return outcome

    def _parse(self, endpoint: str, body: bytes) -> tuple[_Project, list[Any], int]:
        """Check size, JSON shape, api key, event count and options, cheapest first."""
        # HTTP V2 wants strictly under 1 MB; /batch allows up to and including 20 MB.
        if endpoint == HTTP_V2_PATH:
            too_large = len(body) >= HTTP_V2_MAX_BODY_BYTES
        else:
            too_large = len(body) > BATCH_MAX_BODY_BYTES
        if too_large:
            raise _Rejection(_payload_too_large())
        try:
            document = _parse_json(body)
        except ValueError:
            raise _Rejection(_bad_request("Invalid JSON request body")) from None
        if not isinstance(document, dict):
            raise _Rejection(_bad_request("Invalid JSON request body"))
        api_key = document.get("api_key")
        if api_key is None or api_key == "":
            raise _Rejection(_bad_request("Request missing required field", missing_field="api_key"))
        project = self._projects.get(api_key) if isinstance(api_key, str) else None
        if project is None:
            # Amplitude echoes the key here; the emulator does so only when asked, and never logs it.
            shown = api_key if self.echo_invalid_api_key and isinstance(api_key, str) else "<redacted>"
            raise _Rejection(_bad_request(f"Invalid API key: {shown}"))
        events = document.get("events")
        if events is None or events == []:
            raise _Rejection(_bad_request("Request missing required field", missing_field="events"))
        if not isinstance(events, list):
            raise _Rejection(_bad_request("Invalid field value", invalid_field="events"))
        if len(events) > MAX_EVENTS_PER_REQUEST:
            raise _Rejection(_Outcome(413, _payload_too_large().payload, events=len(events)))
        min_id_length = MIN_ID_LENGTH
        options = document.get("options")
        if options is not None:
            requested = options.get("min_id_length") if isinstance(options, dict) else None
            if not isinstance(options, dict) or (
                requested is not None and (type(requested) is not int or requested < 1)
            ):
                rejection = _bad_request("Invalid field value", invalid_field="options", events=len(events))
                raise _Rejection(rejection)
            if requested is not None:
                min_id_length = requested
        return project, events, min_id_length

    def _throttle_and_ingest(
        self,
        project: _Project,
        endpoint: str,
        events: list[dict[str, Any]],
        event_ids: list[_EventIds],
        payload_size_bytes: int,
    ) -> _Outcome:
        eps_threshold = _events_per_second_per_id(endpoint)
        with self.lock:
            now = self._clock()
            throttling = self._throttling(endpoint, event_ids, eps_threshold, now)
            if throttling.throttled_events:
                throttled = set(throttling.throttled_events)
                accepted = [i for i in range(len(events)) if i not in throttled]
                if not self.ingest_unthrottled_on_429:
                    accepted = []
                usage = _usage_per_id(event_ids[i] for i in accepted)
            else:
                accepted = list(range(len(events)))
                usage = throttling.requested
            # Throttled events do not count towards the window or the daily quota.
            self._window.add(now, usage)
            self._daily_counts.add(now, usage)
            ingested = self._count_events(project, endpoint, events, accepted, now)
        if throttling.throttled_events:
            return _Outcome(429, throttling.body(eps_threshold), events=len(events), ingested=ingested)
        payload = {
            "code": 200,
            "events_ingested": len(events),
            "payload_size_bytes": payload_size_bytes,
            "server_upload_time": int(now * 1000),
        }
        return _Outcome(200, payload, events=len(events), ingested=ingested)

    def _throttling(
        self, endpoint: str, event_ids: list[_EventIds], eps_threshold: int, now: float
    ) -> _Throttling:
        """Which ids this request pushes over the window rate (and, on /batch, the daily quota)."""
        requested = _usage_per_id(event_ids)
        in_window_before = self._window.totals(now)
        window_limit = eps_threshold * self._window.window_seconds
        check_quota = endpoint == BATCH_PATH
        in_day_before = self._daily_counts.totals(now)
        verdict = _Throttling(requested=requested)
        over: set[_IdKey] = set()
        for key, count in requested.items():
            kind, identifier = key
            in_window = in_window_before.get(key, 0) + count
            if in_window > window_limit:
                over.add(key)
                throttled = verdict.throttled_devices if kind == _DEVICE else verdict.throttled_users
                throttled[identifier] = in_window
            if check_quota:
                today = in_day_before.get(key, 0) + count
                if today > self.daily_quota_per_id:
                    over.add(key)
                    exceeded = (
                        verdict.exceeded_daily_quota_devices
                        if kind == _DEVICE
                        else verdict.exceeded_daily_quota_users
                    )
                    exceeded[identifier] = today
        if over:
            # A throttled id loses all of its events in the request, not only those past the limit.
            verdict.throttled_events = [
                index
                for index, ids in enumerate(event_ids)
                if (_DEVICE, ids.device_id) in over or (_USER, ids.user_id) in over
            ]
        return verdict

    def _count_events(
        self, project: _Project, endpoint: str, events: list[dict[str, Any]], accepted: list[int], now: float
    ) -> int:
        """Store accepted events, skipping insert_ids the project saw in the past 7 days."""
        seen_at = project.insert_ids_seen_at
        horizon = now - DEDUP_WINDOW_SECONDS
        _forget_expired(seen_at, horizon)
        counted = 0
        for index in accepted:
            event = events[index]
            insert_id = event.get("insert_id")
            if insert_id is not None:
                previous = seen_at.get(insert_id)
                if previous is not None and previous > horizon:
                    continue
                # Re-insert so the dict stays oldest-first for _forget_expired.
                seen_at.pop(insert_id, None)
                seen_at[insert_id] = now
            event[ENDPOINT_FIELD] = endpoint
            self._counted.append((project.number, event))
            counted += 1
        return counted


# ---------------------------------------------------------------------- pure helpers


def _events_per_second_per_id(endpoint: str) -> int:
    return HTTP_V2_EVENTS_PER_SECOND_PER_ID if endpoint == HTTP_V2_PATH else BATCH_EVENTS_PER_SECOND_PER_ID


def _parse_json(body: bytes) -> Any:
    """The request's JSON; the standard library takes what orjson refuses (a lone surrogate escape)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(body)


def _usage_per_id(event_ids: Iterable[_EventIds]) -> Counter[_IdKey]:
    """Events per device id and per user id, the units Amplitude throttles."""
    usage: Counter[_IdKey] = Counter()
    for device_id, user_id in event_ids:
        if device_id is not None:
            usage[(_DEVICE, device_id)] += 1
        if user_id is not None:
            usage[(_USER, user_id)] += 1
    return usage


def _forget_expired(seen_at: dict[str, float], horizon: float) -> None:
    """Drop insert_ids older than the dedup window; the dict is ordered oldest first."""
    while seen_at:
        oldest = next(iter(seen_at))
        if seen_at[oldest] > horizon:
            return
        del seen_at[oldest]


def _bad_request(error: str, *, events: int = 0, **fields: Any) -> _Outcome:
    return _Outcome(400, {"code": 400, "error": error, **fields}, events=events)


def _payload_too_large() -> _Outcome:
    return _Outcome(413, {"code": 413, "error": "Payload too large"})


def _usable_id(event: dict[str, Any], name: str, min_id_length: int) -> tuple[str | None, str]:
    """Classify one id field as ``absent``, ``invalid`` (not a string), ``short`` or ``valid``."""
    value = event.get(name)
    if value is None or value == "":
        return None, "absent"
    if not isinstance(value, str):
        return None, "invalid"
    if len(value) < min_id_length:
        return None, "short"
    return value, "valid"


def _validate_events(events: list[Any], min_id_length: int) -> list[_EventIds]:
    """Validate every event; reject the whole request with indexes if any is bad.

    An id shorter than ``min_id_length`` is dropped from the event when the other id is usable
    (Amplitude does this on /batch; the emulator does it on both endpoints); an event left with
    no usable id because one is too short is named in ``events_with_invalid_id_lengths``.
    """
    missing: defaultdict[str, list[int]] = defaultdict(list)
    invalid: defaultdict[str, list[int]] = defaultdict(list)
    invalid_lengths: defaultdict[str, list[int]] = defaultdict(list)
    event_ids: list[_EventIds] = []
    for index, event in enumerate(events):
        if type(event) is not dict:
            invalid["event"].append(index)
            continue
        event_type = event.get("event_type")
        if event_type is None or event_type == "":
            missing["event_type"].append(index)
        elif not isinstance(event_type, str):
            invalid["event_type"].append(index)
        device_id, device_state = _usable_id(event, "device_id", min_id_length)
        user_id, user_state = _usable_id(event, "user_id", min_id_length)
        if device_state == "invalid" or user_state == "invalid":
            for name, state in (("device_id", device_state), ("user_id", user_state)):
                if state == "invalid":
                    invalid[name].append(index)
        elif device_id is None and user_id is None:
            if device_state == "absent" and user_state == "absent":
                missing["device_id"].append(index)
            for name, state in (("device_id", device_state), ("user_id", user_state)):
                if state == "short":
                    invalid_lengths[name].append(index)
        else:
            for name, state in (("device_id", device_state), ("user_id", user_state)):
                if state == "short":
                    del event[name]
        event_time = event.get("time")
        if event_time is not None and type(event_time) is not int:
            invalid["time"].append(index)
        insert_id = event.get("insert_id")
        if insert_id is not None and not isinstance(insert_id, str):
            invalid["insert_id"].append(index)
        for name in ("event_properties", "user_properties"):
            value = event.get(name)
            if value is not None and type(value) is not dict:
                invalid[name].append(index)
        event_ids.append(_EventIds(device_id, user_id))
    if missing or invalid or invalid_lengths:
        if missing:
            error = "Request missing required field"
        elif invalid:
            error = "Invalid field values on some events"
        else:
            # As Amplitude answered a request whose only id was too short (rudderlabs/rudder-transformer
            # src/v0/destinations/am/transform.js quotes the answer; Amplitude-Python http_client.py
            # reads events_with_invalid_id_lengths as the other lists of a 400).
            error = "Invalid id length for user_id or device_id"
        payload: dict[str, Any] = {"code": 400, "error": error}
        # The HTTP V2 page notes these lists may name only the first failing event per field: the
        # stricter reading, so a client must drop and resend until no 400 is left.
        if invalid:
            payload["events_with_invalid_fields"] = {name: indexes[:1] for name, indexes in invalid.items()}
        if missing:
            payload["events_with_missing_fields"] = {name: indexes[:1] for name, indexes in missing.items()}
        if invalid_lengths:
            payload["events_with_invalid_id_lengths"] = {
                name: indexes[:1] for name, indexes in invalid_lengths.items()
            }
        raise _Rejection(_Outcome(400, payload, events=len(events)))
    return event_ids


def _silenced_body(silenced: list[int], event_ids: list[_EventIds]) -> dict[str, Any]:
    """A 400 for events of silenced devices: nothing in the request is ingested."""
    devices = sorted({str(event_ids[index].device_id) for index in silenced})
    return {
        "code": 400,
        "error": "Events from silenced devices",
        "silenced_events": silenced,
        "silenced_devices": devices,
    }


def _injected_throttling(events: list[Any], event_ids: list[_EventIds], endpoint: str) -> dict[str, Any]:
    """A RATE_LIMIT fault: every event of the request throttled, named by its ids."""
    devices = Counter(ids.device_id for ids in event_ids if ids.device_id is not None)
    users = Counter(ids.user_id for ids in event_ids if ids.user_id is not None)
    verdict = _Throttling(
        throttled_devices=dict(devices),
        throttled_users=dict(users),
        throttled_events=list(range(len(events))),
    )
    return verdict.body(_events_per_second_per_id(endpoint))


def _flatten(properties: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Amplitude's view of nested properties: ``{"a": {"b": 1}}`` is charted as ``a.b``."""
    for name, value in properties.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", value


def _exact_number(value: Any) -> Decimal | None:
    """The value as an exact Decimal if Amplitude would chart it as a number, else None.

    Floats go through their shortest repr, which is the literal the client sent for any decimal of
    up to 15 significant digits, so sums like 0.1 + 0.2 come out as 0.3.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    else:
        return None
    return number if number.is_finite() else None


def summarize_events(events: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Counts per event_type, and per ad_account_id the event count and exact ``ad_metrics.*`` sums.

    Sums are rendered as plain decimal strings so JSON does not round them back into floats.
    """
    total = 0
    per_type: Counter[str] = Counter()
    per_account: dict[str, dict[str, Any]] = {}
    for event in events:
        total += 1
        per_type[str(event.get("event_type"))] += 1
        properties = event.get("event_properties")
        if not isinstance(properties, dict):
            continue
        flat = dict(_flatten(properties))
        account_id = flat.get("ad_account_id")
        if account_id is None:
            continue
        account = per_account.setdefault(str(account_id), {"events": 0, "sums": defaultdict(Decimal)})
        account["events"] += 1
        for name, value in flat.items():
            if name.startswith(AD_METRICS_PREFIX):
                number = _exact_number(value)
                if number is not None:
                    account["sums"][name] += number
    return {
        "events": total,
        "event_types": dict(per_type),
        "ad_accounts": {
            account_id: {
                "events": account["events"],
                **{name: format(total_value, "f") for name, total_value in sorted(account["sums"].items())},
            }
            for account_id, account in sorted(per_account.items())
        },
    }
