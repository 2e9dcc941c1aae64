"""The Amplitude client against the Amplitude emulator, over real HTTP.

Each test sends events through :class:`AmplitudeClient` and reads back what the emulator counted:
every event exactly once, whatever the emulator answered on the way (429, 413, 400, 5xx, dropped
connections, timeouts, "ingested then 500"). Time is a fake clock shared by the emulator and the
client, whose ``sleep`` advances it: throttling windows and back-off pauses cost no wall time, and
each sleep is logged so the tests can tell what happened before the client waited. Amplitude's
limits come from the emulator, its own reading of the docs, never from the client's constants.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from tiktok_amp_emulators.amplitude_server import (
    BATCH_PATH,
    HTTP_V2_MAX_BODY_BYTES,
    HTTP_V2_PATH,
    MAX_EVENTS_PER_REQUEST,
    AmplitudeEmulator,
)
from tiktok_amp_emulators.faults import Fault, FaultInjector

from tiktok_amp_assets.clients.amplitude import AmplitudeApiError, AmplitudeClient, Delivery
from tiktok_amp_assets.clients.http import RetryPolicy
from tiktok_amp_assets.core.amplitude_contract import EVENT_TYPE

API_KEY = "client-test-key-7c1e9a3b5d"
UNKNOWN_KEY = "unknown-key-2f4e6a8c0b"
THROTTLE_PAUSE = 1.0  # fake seconds: as long as the emulator's throttling window, so one pause clears it
RETRY = RetryPolicy(max_attempts=8, base_seconds=0.01, max_seconds=0.05)


class FakeClock:
    """Seconds since the epoch that only move when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1_750_000_000.0
        self.sleeps: list[tuple[float, int]] = []  # (seconds, deliveries seen before the sleep)
        self.deliveries_seen = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append((seconds, self.deliveries_seen))
        self.now += seconds


@pytest.fixture(scope="module")
def shared_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def shared_emulator(shared_clock: FakeClock) -> Iterator[AmplitudeEmulator]:
    with AmplitudeEmulator(api_keys={API_KEY}, clock=shared_clock) as server:
        yield server


@pytest.fixture
def clock(shared_clock: FakeClock) -> FakeClock:
    # Far from the last test's requests, so no throttling window carries over.
    shared_clock.now += 3600
    shared_clock.sleeps.clear()
    shared_clock.deliveries_seen = 0
    return shared_clock


@pytest.fixture
def emulator(shared_emulator: AmplitudeEmulator, clock: FakeClock) -> AmplitudeEmulator:
    shared_emulator.reset()
    shared_emulator.faults = FaultInjector()
    shared_emulator.silenced_devices.clear()
    shared_emulator.echo_invalid_api_key = False
    shared_emulator.daily_quota_per_id = 500_000
    return shared_emulator


def make_client(emulator: AmplitudeEmulator, clock: FakeClock, **options: Any) -> AmplitudeClient:
    settings: dict[str, Any] = {
        "retry": RETRY,
        "throttle_pause_seconds": THROTTLE_PAUSE,
        "timeout_seconds": 5.0,
        "clock": clock,
        "sleep": clock.sleep,
        **options,
    }
    return AmplitudeClient(emulator.url, settings.pop("api_key", API_KEY), **settings)


def ad_event(index: int, *, device_id: str | None = None, padding: int = 0) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": EVENT_TYPE,
        "device_id": device_id or f"tiktok-ad-{index:06d}",
        "insert_id": f"tiktok-test-{index:06d}",
        "time": 1_749_988_800_000,
        "event_properties": {"ad_id": f"{index:06d}", "ad_metrics.cost": 1.25, "ad_metrics.clicks": 3},
        "user_properties": {"utm_source": "tiktok"},
    }
    if padding:
        event["event_properties"]["ad_name"] = "n" * padding
    return event


def deliver(client: AmplitudeClient, clock: FakeClock, events: list[dict[str, Any]]) -> list[Delivery]:
    deliveries = []
    for delivery in client.send(events):
        deliveries.append(delivery)
        clock.deliveries_seen = len(deliveries)
    return deliveries


def counted_once(emulator: AmplitudeEmulator, events: list[dict[str, Any]]) -> bool:
    counted = Counter(event["insert_id"] for event in emulator.counted_events(API_KEY))
    return counted == Counter(event["insert_id"] for event in events)


def statuses(emulator: AmplitudeEmulator) -> list[int]:
    return [entry["status"] for entry in emulator.request_log]


def test_requests_are_as_full_as_the_event_count_allows(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    events = [ad_event(i) for i in range(4500)]
    deliveries = deliver(make_client(emulator, clock), clock, events)

    assert [len(d.accepted) for d in deliveries] == [MAX_EVENTS_PER_REQUEST, MAX_EVENTS_PER_REQUEST, 500]
    assert counted_once(emulator, events)

    # A lower cap is honoured; a higher one never exceeds Amplitude's 2,000.
    emulator.reset()
    capped = deliver(make_client(emulator, clock, max_events=7), clock, events[:20])
    assert [len(d.accepted) for d in capped] == [7, 7, 6]
    emulator.reset()
    over = deliver(make_client(emulator, clock, max_events=5000), clock, events)
    assert max(len(d.accepted) for d in over) == MAX_EVENTS_PER_REQUEST


def test_requests_stay_under_the_byte_limit_yet_nearly_full(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    events = [ad_event(i, padding=3000) for i in range(1000)]  # ~3.2 MB in all
    deliveries = deliver(make_client(emulator, clock), clock, events)

    sizes = [entry["bytes"] for entry in emulator.request_log]  # as the emulator read them, decompressed
    assert statuses(emulator) == [200] * len(sizes)
    assert all(size < HTTP_V2_MAX_BODY_BYTES for size in sizes)
    assert all(size > 0.99 * HTTP_V2_MAX_BODY_BYTES for size in sizes[:-1])
    assert len(sizes) == 4
    assert counted_once(emulator, events)
    # gzip: the bytes on the wire are a fraction of the JSON Amplitude reads.
    wire = [record.bytes for delivery in deliveries for record in delivery.requests]
    assert sum(wire) * 5 < sum(sizes)


def test_batch_requests_are_full_at_2000_events(emulator: AmplitudeEmulator, clock: FakeClock) -> None:
    # Batch Event Upload docs, 413 row: "The limit per batch is 2000 events" (not 20,000).
    events = [ad_event(i) for i in range(2 * MAX_EVENTS_PER_REQUEST + 10)]
    deliveries = deliver(make_client(emulator, clock, path=BATCH_PATH, max_events=20_000), clock, events)
    assert [len(d.accepted) for d in deliveries] == [MAX_EVENTS_PER_REQUEST, MAX_EVENTS_PER_REQUEST, 10]
    assert [(e["path"], e["status"]) for e in emulator.request_log] == [(BATCH_PATH, 200)] * 3
    assert counted_once(emulator, events)


def test_one_device_never_gets_more_events_in_a_request_than_it_may_send_per_second(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    # 31 days of one ad on HTTP V2: 31 events of one device, which one request could never carry.
    events = [ad_event(i, device_id="tiktok-ad-single") for i in range(31)]
    deliveries = deliver(make_client(emulator, clock), clock, events)
    assert [len(d.accepted) for d in deliveries] == [30, 1]
    # The 31st event landed in the same one-second window: throttled once, paused, then counted.
    assert statuses(emulator) == [200, 429, 200]
    assert [seconds for seconds, _ in clock.sleeps] == [THROTTLE_PAUSE]
    assert counted_once(emulator, events)


def test_throttled_devices_pause_while_other_devices_go_on(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    # The first request is throttled as a whole (every device named); the next two go out at once.
    events = [ad_event(i) for i in range(30)]
    emulator.faults.inject(Fault.RATE_LIMIT)
    deliveries = deliver(make_client(emulator, clock, max_events=10), clock, events)

    assert statuses(emulator) == [429, 200, 200, 200]
    assert [d.accepted[0]["insert_id"] for d in deliveries] == [events[i]["insert_id"] for i in (10, 20, 0)]
    # One pause, of at least throttle_pause_seconds, taken only after the other devices were delivered.
    assert clock.sleeps == [(pytest.approx(THROTTLE_PAUSE), 2)]
    assert counted_once(emulator, events)


def test_a_429_that_ingested_the_unthrottled_events_does_not_double_count(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    # A hot device in every request beside distinct ones: the 4th request takes it past 30 events/s.
    events = [
        event for i in range(45) for event in (ad_event(i, device_id="tiktok-ad-hot"), ad_event(1000 + i))
    ]
    assert emulator.ingest_unthrottled_on_429  # the adversarial default
    deliveries = deliver(make_client(emulator, clock, max_events=20), clock, events)

    log = emulator.request_log
    throttled = [entry for entry in log if entry["status"] == 429]
    assert len(throttled) == 1
    assert throttled[0]["ingested"] == 10, "the 429 ingested the other devices' events"
    # Those 10 were resent at once (same insert_ids, nothing new counted), and so was the next request
    # minus the paused device's events; only then did the client wait.
    after = log[log.index(throttled[0]) + 1 :]
    assert [(e["status"], e["events"], e["ingested"]) for e in after[:2]] == [(200, 10, 0), (200, 5, 5)]
    assert clock.sleeps == [(pytest.approx(THROTTLE_PAUSE), 5)]
    assert counted_once(emulator, events)
    assert sum(len(d.accepted) for d in deliveries) == len(events)


def test_devices_over_the_daily_quota_are_parked_while_the_others_go_on(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    emulator.daily_quota_per_id = 3
    busy = [ad_event(100 + i, device_id="tiktok-ad-busy") for i in range(6)]
    calm = [ad_event(i) for i in range(6)]
    events = [event for pair in zip(busy, calm, strict=True) for event in pair]
    deliveries = deliver(make_client(emulator, clock, path=BATCH_PATH, max_events=4), clock, events)

    # 2 busy events, then 2 more take the device past 3 a day: a 429 naming it. Its events from then
    # on are parked (the last request's without being sent); the calm devices' all go through.
    assert statuses(emulator) == [200, 429, 200, 200]
    assert [e["events"] for e in emulator.request_log] == [4, 4, 2, 2]
    parked = [p for d in deliveries for p in d.parked]
    assert [p.insert_id for p in parked] == [e["insert_id"] for e in busy[2:]]
    assert all("device:tiktok-ad-busy" in p.reason and "daily quota" in p.reason for p in parked)
    assert counted_once(emulator, calm + busy[:2])
    assert clock.sleeps == [], "nobody waits a day: the rest goes on at once"


def test_the_project_wide_pace_holds_over_the_run_as_amplitude_sees_it(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    # 100 events/s: requests carry one second's events at most, and arrive a second apart on the
    # emulator's clock (which the client's sleeps move).
    events = [ad_event(i) for i in range(1000)]
    deliver(make_client(emulator, clock, events_per_second=100), clock, events)
    arrivals = emulator.request_log
    assert [e["events"] for e in arrivals] == [100] * 10
    span = arrivals[-1]["at"] - arrivals[0]["at"]
    # Events after the first request, over the time they took: the sustained rate.
    assert sum(e["events"] for e in arrivals[1:]) / span == pytest.approx(100, rel=0.01)
    assert counted_once(emulator, events)


def test_the_pace_holds_in_real_time_at_the_starter_plans_1000_events_per_second() -> None:
    # Real clocks on both sides: the client sleeps for real and the emulator stamps arrivals with
    # time.time(). Load can only slow the run down, so only the upper bound is asserted.
    events = [ad_event(i) for i in range(3000)]
    with AmplitudeEmulator(api_keys={API_KEY}) as server:
        client = AmplitudeClient(server.url, API_KEY, events_per_second=1000, retry=RETRY)
        accepted = sum(len(delivery.accepted) for delivery in client.send(events))
        arrivals = server.request_log
    assert accepted == 3000
    assert [e["events"] for e in arrivals] == [1000] * 3
    rate = sum(e["events"] for e in arrivals[1:]) / (arrivals[-1]["at"] - arrivals[0]["at"])
    assert rate <= 1000 * 1.02, f"{rate:.0f} events/s"


def test_a_request_too_large_is_split_and_resent(emulator: AmplitudeEmulator, clock: FakeClock) -> None:
    events = [ad_event(i) for i in range(10)]
    emulator.faults.inject(Fault.PAYLOAD_TOO_LARGE, 2)
    deliveries = deliver(make_client(emulator, clock), clock, events)

    assert statuses(emulator) == [413, 413, 200, 200, 200]
    assert [len(d.accepted) for d in deliveries] == [2, 3, 5]
    assert [record.status for record in deliveries[0].requests] == [413, 413, 200]
    assert counted_once(emulator, events)


def test_an_event_too_large_on_its_own_is_rejected_with_the_reason(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    events = [ad_event(0), ad_event(1, padding=HTTP_V2_MAX_BODY_BYTES), ad_event(2)]
    deliveries = deliver(make_client(emulator, clock), clock, events)

    rejected = [r for d in deliveries for r in d.rejected]
    assert [r.insert_id for r in rejected] == [events[1]["insert_id"]]
    assert "larger than Amplitude accepts" in rejected[0].reason
    assert counted_once(emulator, [events[0], events[2]])


def test_invalid_events_are_dropped_with_reasons_and_the_rest_resent(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    events = [ad_event(i) for i in range(10)]
    events[3]["time"] = "noon"
    events[8]["time"] = "noon"
    del events[7]["event_type"]
    emulator.silenced_devices.add(events[5]["device_id"])
    deliveries = deliver(make_client(emulator, clock), clock, events)

    reasons = {r.insert_id: r.reason for d in deliveries for r in d.rejected}
    assert reasons == {
        events[3]["insert_id"]: "invalid field time",
        events[8]["insert_id"]: "invalid field time",
        events[7]["insert_id"]: "missing field event_type",
        events[5]["insert_id"]: "device silenced by Amplitude",
    }
    # Amplitude may name only the first bad event per field: each 400 drops what it names, until
    # the invalid fields are gone; then the silenced device.
    assert statuses(emulator) == [400, 400, 400, 200]
    assert counted_once(emulator, [e for i, e in enumerate(events) if i not in (3, 5, 7, 8)])


def test_events_whose_id_is_too_short_are_dropped_with_the_reason(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    events = [ad_event(i) for i in range(5)]
    events[1]["device_id"] = "ab"
    events[4]["device_id"] = "cd"
    deliveries = deliver(make_client(emulator, clock), clock, events)

    reasons = {r.insert_id: r.reason for d in deliveries for r in d.rejected}
    assert reasons == {
        events[1]["insert_id"]: "id too short: device_id",
        events[4]["insert_id"]: "id too short: device_id",
    }
    assert [request["status"] for request in emulator.request_log] == [400, 400, 200]
    assert counted_once(emulator, [e for i, e in enumerate(events) if i not in (1, 4)])


def test_a_request_refused_as_a_whole_is_an_error_without_the_key(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    emulator.echo_invalid_api_key = True
    body = {"api_key": UNKNOWN_KEY, "events": [ad_event(0)]}
    echoed = requests.post(f"{emulator.url}{HTTP_V2_PATH}", json=body, timeout=5)
    assert UNKNOWN_KEY in echoed.text, "the emulator quotes the key, as Amplitude does"

    client = make_client(emulator, clock, api_key=UNKNOWN_KEY)
    with pytest.raises(AmplitudeApiError, match="Invalid API key") as raised:
        deliver(client, clock, [ad_event(0)])
    assert UNKNOWN_KEY not in str(raised.value)
    assert "AMPLITUDE_API_KEY" in str(raised.value)


def test_server_errors_and_broken_connections_are_retried_with_the_same_insert_ids(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    events = [ad_event(i) for i in range(30)]
    for fault in (
        Fault.SERVER_ERROR,
        Fault.ACCEPTED_THEN_ERROR,
        Fault.HTTP_503,
        Fault.DROP_CONNECTION,
        Fault.TRUNCATED_BODY,
    ):
        emulator.faults.inject(fault)
    deliveries = deliver(make_client(emulator, clock, max_events=10), clock, events)

    # The first batch took six attempts. The 500 after ingesting counted it; the resends, with the
    # same insert_ids, added nothing (the proxy's 503 and the dropped connection never reached it).
    assert [record.status for record in deliveries[0].requests] == [500, 500, 503, None, None, 200]
    reached = [(e["status"], e["ingested"]) for e in emulator.request_log]
    assert reached[:4] == [(500, 0), (500, 10), (200, 0), (200, 0)]
    assert len(clock.sleeps) == 5
    assert counted_once(emulator, events)


def test_a_timeout_is_retried_and_the_late_ingestion_is_not_double_counted(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    emulator.faults = FaultInjector(slow_seconds=0.6)
    emulator.faults.inject(Fault.SLOW)
    events = [ad_event(i) for i in range(5)]
    deliveries = deliver(make_client(emulator, clock, timeout_seconds=0.2), clock, events)
    assert [record.error for record in deliveries[0].requests] == ["ReadTimeout", None]

    deadline = time.monotonic() + 5
    while len(emulator.request_log) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)  # the slow request is still being answered to nobody
    assert sorted(entry["ingested"] for entry in emulator.request_log) == [0, 5]
    assert counted_once(emulator, events)


def test_retries_are_bounded_and_the_error_says_what_to_do(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    emulator.faults.inject(Fault.SERVER_ERROR, 3)
    client = make_client(emulator, clock, retry=RetryPolicy(max_attempts=3, base_seconds=0.01))
    with pytest.raises(AmplitudeApiError, match="still failing after 3 attempts") as raised:
        deliver(client, clock, [ad_event(0)])
    assert "run the partition again later" in str(raised.value)
    assert len(clock.sleeps) == 2
    assert emulator.counted_events() == []


def test_the_api_key_never_reaches_logs_records_or_errors(
    emulator: AmplitudeEmulator, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger: urllib3's connection lines included
    events = [ad_event(i) for i in range(12)]
    events[4]["time"] = "noon"
    faults = (Fault.RATE_LIMIT, Fault.ACCEPTED_THEN_ERROR, Fault.PAYLOAD_TOO_LARGE, Fault.DROP_CONNECTION)
    for fault in faults:
        emulator.faults.inject(fault)
    deliveries = deliver(make_client(emulator, clock, max_events=4), clock, events)
    assert counted_once(emulator, [e for i, e in enumerate(events) if i != 4])

    emulator.echo_invalid_api_key = True
    errors = []
    for client in (
        make_client(emulator, clock, api_key=UNKNOWN_KEY),
        make_client(emulator, clock, retry=RetryPolicy(max_attempts=1)),
    ):
        emulator.faults.inject(Fault.SERVER_ERROR)
        with pytest.raises(AmplitudeApiError) as raised:
            deliver(client, clock, [ad_event(99)])
        errors.append(raised.value)

    assert any("urllib3" in record.name for record in caplog.records), "urllib3's debug lines were captured"
    exposed = "\n".join(
        [caplog.text, repr(deliveries), repr(emulator.request_log), *(f"{e!s} {e!r}" for e in errors)]
    )
    for key in (API_KEY, UNKNOWN_KEY):
        assert key not in exposed
