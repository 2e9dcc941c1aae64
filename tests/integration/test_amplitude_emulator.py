"""The Amplitude emulator, exercised over real HTTP with plain ``requests``.

These tests pin the behaviour the uploader relies on (status codes, body shapes, de-duplication,
throttling, faults) so a client that passes against the emulator is built for the real API.
One server serves the whole module (stopping one costs the base's 0.5 s poll interval); each test
starts from a reset emulator, a fresh fault injector and a rewound clock.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from tiktok_amp_emulators.amplitude_server import (
    BATCH_PATH,
    DAILY_QUOTA_PER_ID,
    DEFAULT_API_KEY,
    HTTP_V2_PATH,
    AmplitudeEmulator,
)
from tiktok_amp_emulators.faults import Fault, FaultInjector
from tiktok_amp_emulators.http_server import Request

EVENT_TYPE = "Daily Ad Metrics"
PROJECT_B_KEY = "project-b-key"
SECRET_KEY = "sEcReT-ampl1tude-key-4711"
WRONG_KEY = "wr0ng-sEcReT-key-0815"
DAY = 86_400.0
START = 1_750_000_000.0


class FakeClock:
    """A clock tests move by hand, so 8 days pass instantly."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ad_event(index: int, *, device_id: str | None = None, cost: float = 1.25, **extra: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_type": EVENT_TYPE,
        "device_id": device_id or f"tiktok-ad-{index:06d}",
        "time": 1_749_945_600_000,
        "insert_id": f"tiktok-ad-{index:06d}-2025-06-15",
        "event_properties": {
            "ad_id": f"{index:06d}",
            "ad_account_id": "adv-1" if index % 2 == 0 else "adv-2",
            "ad_metrics": {"cost": cost, "impressions": 100, "clicks": 3},
        },
        "user_properties": {"utm_source": "tiktok"},
    }
    event.update(extra)
    return event


def post(
    emulator: AmplitudeEmulator, path: str, events: list[Any], *, api_key: str = DEFAULT_API_KEY, **body: Any
) -> requests.Response:
    payload = {"api_key": api_key, "events": events, **body}
    return requests.post(f"{emulator.url}{path}", json=payload, timeout=10)


@pytest.fixture(scope="module")
def shared_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(scope="module")
def shared_emulator(shared_clock: FakeClock) -> Iterator[AmplitudeEmulator]:
    server = AmplitudeEmulator(api_keys={DEFAULT_API_KEY, PROJECT_B_KEY, SECRET_KEY}, clock=shared_clock)
    with server:
        yield server


@pytest.fixture
def clock(shared_clock: FakeClock) -> FakeClock:
    shared_clock.now = START
    return shared_clock


@pytest.fixture
def emulator(shared_emulator: AmplitudeEmulator, clock: FakeClock) -> AmplitudeEmulator:
    shared_emulator.reset()
    shared_emulator.faults = FaultInjector()
    shared_emulator.ingest_unthrottled_on_429 = True
    shared_emulator.daily_quota_per_id = DAILY_QUOTA_PER_ID
    return shared_emulator


def test_accepted_events_are_counted_and_readable_back(emulator: AmplitudeEmulator, clock: FakeClock) -> None:
    events = [ad_event(0, cost=0.1), ad_event(2, cost=0.2), ad_event(1, cost=5)]
    response = post(emulator, HTTP_V2_PATH, events)

    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 200
    assert body["events_ingested"] == 3
    assert body["server_upload_time"] == int(clock.now * 1000)
    assert body["payload_size_bytes"] == emulator.request_log[0]["bytes"]

    counted = emulator.counted_events()
    assert [event["insert_id"] for event in counted] == [event["insert_id"] for event in events]
    assert all(event["endpoint"] == HTTP_V2_PATH for event in counted)
    assert emulator.counted_events(DEFAULT_API_KEY) == counted
    assert emulator.counted_events("not-a-configured-key") == []
    assert emulator.request_log == [
        {
            "path": HTTP_V2_PATH,
            "status": 200,
            "events": 3,
            "bytes": body["payload_size_bytes"],
            "ingested": 3,
            "at": START,
        }
    ]
    assert emulator.requests_count(HTTP_V2_PATH) == 1
    assert emulator.requests_count(BATCH_PATH) == 0

    over_http = requests.get(f"{emulator.url}/emulator/events", params={"event_type": EVENT_TYPE}, timeout=5)
    assert over_http.json() == counted
    other = requests.get(f"{emulator.url}/emulator/events", params={"event_type": "Other"}, timeout=5)
    assert other.json() == []
    summary = requests.get(f"{emulator.url}/emulator/summary", timeout=5).json()
    assert summary["event_types"] == {EVENT_TYPE: 3}
    # Decimal-exact: 0.1 + 0.2 is 0.3, not 0.30000000000000004.
    assert summary["ad_accounts"]["adv-1"]["ad_metrics.cost"] == "0.3"
    assert summary["ad_accounts"]["adv-1"]["ad_metrics.impressions"] == "200"
    assert summary["ad_accounts"]["adv-2"] == {
        "events": 1,
        "ad_metrics.clicks": "3",
        "ad_metrics.cost": "5",
        "ad_metrics.impressions": "100",
    }
    assert requests.get(f"{emulator.url}/emulator/health", timeout=5).json() == {"status": "ok"}

    emulator.reset()
    assert emulator.counted_events() == [] and emulator.request_log == []


def test_flat_ad_metrics_keys_are_summed_like_nested_ones(emulator: AmplitudeEmulator) -> None:
    flat = ad_event(0)
    flat["event_properties"] = {"ad_account_id": "adv-1", "ad_metrics.cost": "2.50", "ad_metrics.clicks": 1}
    assert post(emulator, BATCH_PATH, [flat, ad_event(2, cost=0.5)]).status_code == 200

    summary = emulator.summary()
    assert summary["ad_accounts"]["adv-1"]["ad_metrics.cost"] == "3.00"
    assert summary["ad_accounts"]["adv-1"]["ad_metrics.clicks"] == "4"


def test_insert_id_deduplicated_within_seven_days_and_counted_again_after(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    events = [ad_event(0), ad_event(1), {**ad_event(2), "insert_id": None}]
    assert post(emulator, HTTP_V2_PATH, events).status_code == 200

    clock.advance(7 * DAY - 60)
    resent = post(emulator, BATCH_PATH, events)
    assert resent.status_code == 200
    # Acknowledged in full, but only the event without insert_id counts again.
    assert resent.json()["events_ingested"] == 3
    assert emulator.request_log[-1]["ingested"] == 1
    assert len(emulator.counted_events()) == 4

    clock.advance(DAY)
    assert post(emulator, HTTP_V2_PATH, events).status_code == 200
    assert emulator.request_log[-1]["ingested"] == 3
    assert len(emulator.counted_events()) == 7


def test_dedup_is_per_api_key(emulator: AmplitudeEmulator) -> None:
    for key in (DEFAULT_API_KEY, PROJECT_B_KEY, DEFAULT_API_KEY):
        assert post(emulator, HTTP_V2_PATH, [ad_event(0)], api_key=key).status_code == 200
    assert len(emulator.counted_events(DEFAULT_API_KEY)) == 1
    assert len(emulator.counted_events(PROJECT_B_KEY)) == 1
    # Within one request too, a repeated insert_id counts once.
    assert post(emulator, HTTP_V2_PATH, [ad_event(5), ad_event(5)]).status_code == 200
    assert len(emulator.counted_events(DEFAULT_API_KEY)) == 2


def test_bad_events_are_named_by_index_and_nothing_is_ingested(emulator: AmplitudeEmulator) -> None:
    events = [ad_event(i) for i in range(5)]
    events[1]["time"] = "2025-06-15"
    del events[3]["event_type"]
    response = post(emulator, HTTP_V2_PATH, events)

    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 400
    assert body["events_with_invalid_fields"] == {"time": [1]}
    assert body["events_with_missing_fields"] == {"event_type": [3]}
    assert emulator.counted_events() == []
    assert emulator.request_log[-1]["ingested"] == 0

    # The client's reaction: drop the named events, resend the rest.
    retry = post(emulator, HTTP_V2_PATH, [e for i, e in enumerate(events) if i not in (1, 3)])
    assert retry.status_code == 200
    assert len(emulator.counted_events()) == 3

    # Only the first failing event per field is named (HTTP V2 docs: it may be so).
    two_bad = [ad_event(10), {**ad_event(11), "time": "noon"}, {**ad_event(12), "time": "noon"}]
    assert post(emulator, BATCH_PATH, two_bad).json()["events_with_invalid_fields"] == {"time": [1]}


@pytest.mark.parametrize(
    ("change", "field_kind", "field_name"),
    [
        ({"device_id": None}, "events_with_missing_fields", "device_id"),
        # A 400 of Amplitude's own (rudder-transformer's am/transform.js quotes it; Amplitude-Python's
        # http_client.py reads the list): an event whose only id is too short.
        ({"device_id": "abc"}, "events_with_invalid_id_lengths", "device_id"),
        ({"insert_id": 42}, "events_with_invalid_fields", "insert_id"),
        ({"event_properties": ["cost", 1]}, "events_with_invalid_fields", "event_properties"),
        ({"user_properties": "tiktok"}, "events_with_invalid_fields", "user_properties"),
        ({"time": 1.5e12}, "events_with_invalid_fields", "time"),
        ({"event_type": ""}, "events_with_missing_fields", "event_type"),
    ],
)
def test_each_invalid_field_is_reported(
    emulator: AmplitudeEmulator, change: dict[str, Any], field_kind: str, field_name: str
) -> None:
    events = [ad_event(0), {**ad_event(1), **change}]
    response = post(emulator, BATCH_PATH, events)
    assert response.status_code == 400
    assert response.json()[field_kind] == {field_name: [1]}
    assert emulator.counted_events() == []


def test_short_id_is_dropped_when_the_other_id_is_usable_and_min_id_length_lowers_the_bar(
    emulator: AmplitudeEmulator,
) -> None:
    short_device = {**ad_event(0), "device_id": "abc", "user_id": "user-12345"}
    assert post(emulator, BATCH_PATH, [short_device]).status_code == 200
    assert "device_id" not in emulator.counted_events()[0]

    short_only = {**ad_event(1), "device_id": "abc"}
    lowered = post(emulator, HTTP_V2_PATH, [short_only], options={"min_id_length": 3})
    assert lowered.status_code == 200
    assert emulator.counted_events()[-1]["device_id"] == "abc"


def test_request_level_400s(emulator: AmplitudeEmulator) -> None:
    url = f"{emulator.url}{HTTP_V2_PATH}"
    not_json = requests.post(url, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=5)
    assert not_json.status_code == 400

    missing_key = requests.post(url, json={"events": [ad_event(0)]}, timeout=5)
    assert missing_key.status_code == 400
    assert missing_key.json()["missing_field"] == "api_key"

    for events in (None, [], {"event_type": EVENT_TYPE}):
        response = requests.post(url, json={"api_key": DEFAULT_API_KEY, "events": events}, timeout=5)
        assert response.status_code == 400, events
    assert emulator.counted_events() == []
    assert [entry["status"] for entry in emulator.request_log] == [400] * 5


def test_both_endpoints_take_at_most_2000_events_and_http_v2_under_1_mb(
    emulator: AmplitudeEmulator,
) -> None:
    # Batch Event Upload docs, 413 row: "The limit per batch is 2000 events"; HTTP V2: 2,000 too.
    too_many = [ad_event(i) for i in range(2001)]
    for path in (HTTP_V2_PATH, BATCH_PATH):
        emulator.reset()
        refused = post(emulator, path, too_many)
        assert refused.status_code == 413, path
        assert emulator.counted_events() == []
        assert post(emulator, path, too_many[:2000]).status_code == 200
        assert len(emulator.counted_events()) == 2000

    emulator.reset()
    padding = "x" * 1000
    too_big = [ad_event(i, ad_name=padding) for i in range(1_100)]
    assert len(json.dumps({"api_key": DEFAULT_API_KEY, "events": too_big})) > 1_000_000
    response = post(emulator, HTTP_V2_PATH, too_big)
    assert response.status_code == 413
    assert response.json()["code"] == 413
    assert emulator.counted_events() == []

    assert post(emulator, BATCH_PATH, too_big).status_code == 200
    assert len(emulator.counted_events()) == 1_100


def test_one_device_over_30_per_second_is_throttled_on_http_v2_but_not_on_batch(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    hot = [ad_event(i, device_id="synthetic-device-hot") for i in range(31)]
    others = [ad_event(100 + i) for i in range(5)]
    response = post(emulator, HTTP_V2_PATH, others[:2] + hot + others[2:])

    assert response.status_code == 429
    body = response.json()
    assert body["eps_threshold"] == 30
    assert body["throttled_devices"] == {"synthetic-device-hot": 31}
    assert body["throttled_users"] == {}
    assert body["throttled_events"] == list(range(2, 33))
    # The adversarial reading: the events not listed were ingested anyway.
    assert {e["insert_id"] for e in emulator.counted_events()} == {e["insert_id"] for e in others}

    # The window slides: a second later the device may send 30 again, not 31.
    clock.advance(1.0)
    assert post(emulator, HTTP_V2_PATH, hot[:30]).status_code == 200
    assert post(emulator, HTTP_V2_PATH, hot[30:]).status_code == 429

    emulator.reset()
    assert post(emulator, BATCH_PATH, others[:2] + hot + others[2:]).status_code == 200
    assert len(emulator.counted_events()) == 36


def test_throttling_per_user_and_strict_mode_ingesting_nothing(emulator: AmplitudeEmulator) -> None:
    emulator.ingest_unthrottled_on_429 = False
    events = [ad_event(i, user_id="marketing-user") for i in range(31)] + [ad_event(99)]
    response = post(emulator, HTTP_V2_PATH, events)
    assert response.status_code == 429
    assert response.json()["throttled_users"] == {"marketing-user": 31}
    assert response.json()["throttled_devices"] == {}
    assert emulator.counted_events() == []


def test_batch_daily_quota_per_device_over_a_rolling_day(
    emulator: AmplitudeEmulator, clock: FakeClock
) -> None:
    assert DAILY_QUOTA_PER_ID == 500_000  # Batch Event Upload docs, 429: per device (or user) per day
    emulator.daily_quota_per_id = 10
    busy = [ad_event(i, device_id="synthetic-device-1") for i in range(11)]
    other = ad_event(99)
    response = post(emulator, BATCH_PATH, [other, *busy])
    assert response.status_code == 429
    assert response.json()["exceeded_daily_quota_devices"] == {"synthetic-device-1": 11}
    assert response.json()["throttled_devices"] == {}
    assert response.json()["throttled_events"] == list(range(1, 12))
    assert [e["insert_id"] for e in emulator.counted_events()] == [other["insert_id"]]

    # Rolling, not per calendar day: 6 now and 5 twelve hours later are 11 within 24 hours.
    assert post(emulator, BATCH_PATH, busy[:6]).status_code == 200
    clock.advance(DAY / 2)
    assert post(emulator, BATCH_PATH, busy[6:]).status_code == 429
    # Once the first 6 are a day old, the device has room again.
    clock.advance(DAY / 2)
    assert post(emulator, BATCH_PATH, busy[6:]).status_code == 200
    # HTTP V2 documents no daily quota.
    emulator.reset()
    assert post(emulator, HTTP_V2_PATH, busy).status_code == 200


def test_gzip_body_is_accepted(emulator: AmplitudeEmulator) -> None:
    body = json.dumps({"api_key": DEFAULT_API_KEY, "events": [ad_event(0), ad_event(1)]}).encode()
    response = requests.post(
        f"{emulator.url}{HTTP_V2_PATH}",
        data=gzip.compress(body),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=5,
    )
    assert response.status_code == 200
    assert response.json()["payload_size_bytes"] == len(body)
    assert len(emulator.counted_events()) == 2


def _statuses_under_faults(emulator: AmplitudeEmulator, seed: int) -> list[int]:
    emulator.reset()
    emulator.faults = FaultInjector(
        0.5, seed=seed, kinds=(Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.PAYLOAD_TOO_LARGE)
    )
    return [post(emulator, HTTP_V2_PATH, [ad_event(i)]).status_code for i in range(30)]


def test_faults_are_deterministic_under_a_seed(emulator: AmplitudeEmulator) -> None:
    first = _statuses_under_faults(emulator, seed=7)
    assert first == _statuses_under_faults(emulator, seed=7)
    assert {200, 429, 500, 413} <= set(first)


def test_each_fault_renders_as_amplitude_would(emulator: AmplitudeEmulator) -> None:
    events = [ad_event(0), ad_event(1)]
    emulator.faults.inject(Fault.RATE_LIMIT)
    throttled = post(emulator, HTTP_V2_PATH, events)
    assert throttled.status_code == 429
    assert throttled.json()["throttled_devices"] == {"tiktok-ad-000000": 1, "tiktok-ad-000001": 1}
    assert throttled.json()["throttled_events"] == [0, 1]

    emulator.faults.inject(Fault.SERVER_ERROR)
    assert post(emulator, HTTP_V2_PATH, events).status_code == 500
    emulator.faults.inject(Fault.PAYLOAD_TOO_LARGE)
    assert post(emulator, BATCH_PATH, events).status_code == 413
    assert emulator.counted_events() == []

    # Read-back is never faulted.
    emulator.faults.inject(Fault.SERVER_ERROR)
    assert requests.get(f"{emulator.url}/emulator/health", timeout=5).status_code == 200


def test_accepted_then_error_ingests_and_a_resend_is_deduplicated(emulator: AmplitudeEmulator) -> None:
    events = [ad_event(0), ad_event(1)]
    emulator.faults.inject(Fault.ACCEPTED_THEN_ERROR)
    response = post(emulator, HTTP_V2_PATH, events)
    assert response.status_code == 500
    assert len(emulator.counted_events()) == 2

    # The client cannot tell, so it resends with the same insert_ids: counted once.
    assert post(emulator, HTTP_V2_PATH, events).status_code == 200
    assert len(emulator.counted_events()) == 2


def test_api_key_never_leaks(emulator: AmplitudeEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    faults = emulator.faults
    hot_batch = [ad_event(i, device_id="hot-dev") for i in range(1001)]
    responses = [
        post(emulator, HTTP_V2_PATH, [ad_event(0)], api_key=SECRET_KEY),
        post(emulator, HTTP_V2_PATH, [ad_event(1)], api_key=WRONG_KEY),
        post(emulator, HTTP_V2_PATH, [{**ad_event(2), "time": "bad"}], api_key=SECRET_KEY),
        post(emulator, BATCH_PATH, hot_batch, api_key=SECRET_KEY),
    ]
    faults.inject(Fault.RATE_LIMIT)
    responses.append(post(emulator, HTTP_V2_PATH, [ad_event(3)], api_key=SECRET_KEY))
    faults.inject(Fault.ACCEPTED_THEN_ERROR)
    responses.append(post(emulator, HTTP_V2_PATH, [ad_event(4)], api_key=SECRET_KEY))

    assert [r.status_code for r in responses] == [200, 400, 400, 429, 429, 500]
    assert "Invalid API key" in responses[1].json()["error"]
    read_back = [
        requests.get(f"{emulator.url}/emulator/{name}", timeout=5).text for name in ("events", "summary")
    ]
    exposed = "\n".join(
        [r.text for r in responses]
        + [repr(dict(r.headers)) for r in responses]
        + read_back
        + [repr(emulator.request_log), repr(emulator.counted_events()), repr(emulator.summary())]
        + [caplog.text]
    )
    assert caplog.records, "the emulator should log each request (without the key)"
    for key in (SECRET_KEY, WRONG_KEY):
        assert key not in exposed
        assert key.lower() not in exposed.lower()


def test_a_full_batch_of_2000_events_is_handled_well_under_a_second() -> None:
    emulator = AmplitudeEmulator(clock=FakeClock())
    body = json.dumps({"api_key": DEFAULT_API_KEY, "events": [ad_event(i) for i in range(2000)]}).encode()
    request = Request(method="POST", path=BATCH_PATH, query={}, headers={}, body=body)

    started = time.perf_counter()
    response = emulator.handle(request, None)
    elapsed = time.perf_counter() - started

    assert response.status == 200
    assert len(emulator.counted_events()) == 2000
    # Observed ~0.02 s; the bound leaves room for a loaded CI machine.
    assert elapsed < 0.8, f"handling took {elapsed:.3f} s"
