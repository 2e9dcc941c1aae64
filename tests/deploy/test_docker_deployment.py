"""The Docker deployment run for real: deploy/build-images.sh's images, deploy/docker/
docker-compose.yaml brought up by Debian's docker-compose on this machine's dockerd (PostgreSQL, the
code location, the webserver, the daemon), backfills launched through the webserver's GraphQL API
and run by the DockerRunLauncher, each in a container of its own.

Outside Docker, in this process, on the address containers reach the host at: the TikTok and
Amplitude emulators over HTTPS (a CA made for this test, trusted by the test's image only: the
product refuses plain http:// to any host but loopback) and moto's S3 server (the data folder).
Only variables the compose file declares are set: image names, endpoints, credentials, settings.

Three backfills of 5 days each, on days of their own: one as it should go; one whose run container
is killed (`docker kill`) while a request to Amplitude is in flight, which run monitoring marks
failed and run retries relaunch; one during which the PostgreSQL server is stopped and started
again while a request is in flight, its answer arriving while the server is down. That server
holds both Dagster's storage and the ledger (as the compose file ships it), so the run can record
neither the answer nor its own events: its process ends, run monitoring marks it failed, and its
retry runs every step again (the backfills carry dagster/retry_strategy: ALL_STEPS). Every time,
the Amplitude emulator ends with each ad-day counted exactly once, equal to TikTok, and no
finished run keeps its container. How each interrupted run failed is printed with the timings.
"""

from __future__ import annotations

import secrets
import shutil
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import trustme
from tiktok_amp_emulators.amplitude_server import AmplitudeEmulator
from tiktok_amp_emulators.catalogue import Catalogue, generate_catalogue
from tiktok_amp_emulators.demo import LAUNCH_MUTATION
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from ..conftest import API_KEY, START_DATE, TOKEN, amplitude_sums, tiktok_truth
from ..e2e.test_upload_exactly_once import amplitude_config
from ..processes import code_location_loaded, dagster_graphql, free_ports, wait_for
from ..s3_server import S3Server, started_s3_server
from .docker_deployment import (
    RUN_ID_LABEL,
    Compose,
    build_images,
    docker,
    host_address_for_containers,
    image_trusting,
    note,
    phase,
    run_containers,
    skip_or_fail_without_docker,
    unique_name,
)

# Building the images on a fresh machine is most of the first test's time.
pytestmark = pytest.mark.timeout(900)

# The default connection's assets (keys prefixed with the connection: tiktok_ads/...).
CONNECTION = "tiktok_ads"
ASSETS = ("tiktok_raw_reports", "tiktok_ad_metrics", "amplitude_upload_results")
TIMEZONE = "America/Los_Angeles"
FIRST = date(2025, 3, 1)
DAYS_PER_BACKFILL = 5
# Events per Amplitude request: a backfill's ~150 events go in several requests, so one can be held.
BATCH = 20
# Requests that pass before the next one is held in the emulator (then the run is interrupted).
PASS_BEFORE_HOLD = 2
RETRY_STRATEGY_TAG = "dagster/retry_strategy"
PARENT_RUN_TAG = "dagster/parent_run_id"
REQUIRED_DAEMONS = {"SCHEDULER", "QUEUED_RUN_COORDINATOR", "BACKFILL", "MONITORING", "EVENT_LOG_CONSUMER"}
DAEMONS_QUERY = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
LOGS_QUERY = """
query ($runId: ID!) {
  logsForRun(runId: $runId, limit: 1000) {
    ... on EventConnection { events { __typename ... on MessageEvent { message } } }
  }
}"""
RUN_STATUS_QUERY = "query ($runId: ID!) { runOrError(runId: $runId) { ... on Run { status } } }"
RUNS_QUERY = """
query ($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    ... on Runs { results { runId status tags { key value } stepStats { stepKey status } } }
  }
}"""


@dataclass
class Deployment:
    compose: Compose
    ui_url: str
    image: str
    catalogue: Catalogue
    amplitude: AmplitudeEmulator
    s3: S3Server
    bucket: str

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return dagster_graphql(self.ui_url, query, variables)

    def diagnostics(self) -> str:
        return f"--- docker-compose logs\n{self.compose.logs()}"

    def launch_backfill(self, days: list[date], title: str) -> str:
        """A backfill as the UI launches one, with the run config and tags a user can give it: small
        Amplitude requests, and retries that re-run every step (the real-account setting)."""
        params = {
            "partitionNames": [day.isoformat() for day in days],
            "assetSelection": [{"path": [CONNECTION, asset]} for asset in ASSETS],
            "title": title,
            "tags": [{"key": RETRY_STRATEGY_TAG, "value": "ALL_STEPS"}],
            "runConfigData": amplitude_config(max_events_per_request=BATCH),
        }
        launched = self.graphql(LAUNCH_MUTATION, {"params": params})["launchPartitionBackfill"]
        assert "backfillId" in launched, launched
        return launched["backfillId"]

    def runs(self, backfill_id: str) -> list[dict[str, Any]]:
        """The backfill's runs (retries included: they carry its tag), newest first, tags as a dict."""
        results = self.graphql(
            RUNS_QUERY, {"filter": {"tags": [{"key": "dagster/backfill", "value": backfill_id}]}}
        )["runsOrError"]["results"]
        for run in results:
            run["tags"] = {tag["key"]: tag["value"] for tag in run["tags"]}
        return results

    def started_run(self, backfill_id: str) -> dict[str, Any] | None:
        return next((run for run in self.runs(backfill_id) if run["status"] == "STARTED"), None)

    def retry_of(self, backfill_id: str, run_id: str) -> dict[str, Any] | None:
        """The run's retry once it has finished (None before)."""
        for run in self.runs(backfill_id):
            if run["tags"].get(PARENT_RUN_TAG) == run_id and run["status"] in (
                "SUCCESS",
                "FAILURE",
                "CANCELED",
            ):
                return run
        return None

    def run_status(self, backfill_id: str, run_id: str) -> str:
        return next(run["status"] for run in self.runs(backfill_id) if run["runId"] == run_id)

    def how_it_failed(self, run_id: str) -> list[str]:
        """The run's step failures and what marked the run failed, first line of each."""
        events = self.graphql(LOGS_QUERY, {"runId": run_id})["logsForRun"]["events"]
        return [
            f"{event['__typename']}: {event['message'].splitlines()[0][:200]}"
            for event in events
            if event["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent")
            or (event["__typename"] == "EngineEvent" and "Marking run" in event.get("message", ""))
        ]


def _schedule_hour_away_from_now() -> str:
    """The schedule's hour, 12 hours from now: its tick never comes during the test."""
    return str((datetime.now(ZoneInfo(TIMEZONE)).hour + 12) % 24)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    skip_or_fail_without_docker()
    work = Path(tempfile.mkdtemp(prefix="tiktok-amp-deploy-"))
    images = build_images(work)
    host = host_address_for_containers()
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(tls)
    catalogue = generate_catalogue(seed=11, ads_per_advertiser=20, start=START_DATE)
    project = unique_name("tiktok-amp-test")
    image = f"tiktok-amp-assets-test:{secrets.token_hex(4)}"
    (ui_port,) = free_ports(1)
    try:
        with phase("test image (trusts the test CA)"):
            image_trusting(images.product, ca.cert_pem.bytes(), image)
        with (
            TikTokEmulator(catalogue, access_tokens={TOKEN: None}, host=host, tls=tls) as tiktok,
            AmplitudeEmulator(api_keys={API_KEY}, host=host, tls=tls) as amplitude,
            started_s3_server(host) as s3,
        ):
            bucket = s3.create_bucket(project)
            compose = Compose(
                project,
                {
                    # Images and endpoints.
                    "TIKTOK_AMP_IMAGE": image,
                    "POSTGRES_IMAGE": images.postgres,
                    "TIKTOK_AMP_NETWORK": f"{project}_network",
                    "TIKTOK_AMP_UI_PORT": str(ui_port),
                    "TIKTOK_API_URL": tiktok.url,
                    "AMPLITUDE_API_URL": amplitude.url,
                    "AWS_ENDPOINT_URL": s3.endpoint,
                    # Credentials and settings, as an operator writes them in deploy/docker/.env.
                    "DAGSTER_PG_PASSWORD": secrets.token_urlsafe(16),
                    "TIKTOK_ACCESS_TOKEN": TOKEN,
                    "TIKTOK_ADVERTISER_IDS": ",".join(sorted(catalogue.advertisers)),
                    "AMPLITUDE_API_KEY": API_KEY,
                    "TIKTOK_AMP_START_DATE": START_DATE.isoformat(),
                    "TIKTOK_AMP_TIMEZONE": TIMEZONE,
                    "TIKTOK_AMP_SCHEDULE_HOUR": _schedule_hour_away_from_now(),
                    "TIKTOK_AMP_DATA_DIR": f"s3://{bucket}/state",
                    "AWS_ACCESS_KEY_ID": s3.env["AWS_ACCESS_KEY_ID"],
                    "AWS_SECRET_ACCESS_KEY": s3.env["AWS_SECRET_ACCESS_KEY"],
                    "AWS_REGION": s3.env["AWS_DEFAULT_REGION"],
                },
                work,
            )
            deployed = Deployment(
                compose, f"http://127.0.0.1:{ui_port}", image, catalogue, amplitude, s3, bucket
            )
            try:
                with phase("compose up (postgres and code location healthy, webserver, daemon)"):
                    compose.run("up", "-d", timeout=600)
                with phase("code location loaded in the webserver, daemons running"):
                    wait_for("the code location loaded", lambda: code_location_loaded(deployed.ui_url), 300, deployed.diagnostics)  # fmt: skip
                    wait_for(
                        "the daemons running", lambda: _daemons_healthy(deployed), 180, deployed.diagnostics
                    )
                yield deployed
            finally:
                with phase("compose down"):
                    _tear_down(compose)
    finally:
        docker("rmi", image, check=False)
        shutil.rmtree(work, ignore_errors=True)


def _daemons_healthy(deployed: Deployment) -> bool:
    statuses = deployed.graphql(DAEMONS_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return REQUIRED_DAEMONS <= {status["daemonType"] for status in statuses if status["healthy"]}


def _tear_down(compose: Compose) -> None:
    """Everything the test started in Docker: run containers first (they are not compose's, and
    hold its network), then the services, the network and PostgreSQL's volume."""
    network = compose.variables["TIKTOK_AMP_NETWORK"]
    leftovers = docker(
        "ps", "-aq", "--filter", f"network={network}", "--filter", f"label={RUN_ID_LABEL}", check=False
    ).stdout.split()
    if leftovers:
        docker("rm", "-f", *leftovers, check=False)
    compose.run("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)


def _days(offset: int) -> list[date]:
    return [FIRST + timedelta(days=offset + index) for index in range(DAYS_PER_BACKFILL)]


def assert_each_ad_day_counted_once(deployed: Deployment, days: list[date]) -> None:
    """Amplitude counted one event per ad-day TikTok reports for ``days``, equal to TikTok's figures."""
    stat_dates = {day.isoformat() for day in days}
    counted = [
        event
        for event in deployed.amplitude.counted_events(API_KEY)
        if event["event_properties"]["stat_date"] in stat_dates
    ]
    truth = {day: tiktok_truth(deployed.catalogue, day) for day in days}
    assert len(counted) == sum(len(ad_days) for ad_days in truth.values())
    assert len({event["insert_id"] for event in counted}) == len(counted)
    for day in days:
        assert amplitude_sums(deployed.amplitude, day) == truth[day], day


def assert_every_step_succeeded(run: dict[str, Any]) -> None:
    """The three assets' steps ran in this run and succeeded, and so did every other (the checks')."""
    steps = {step["stepKey"]: step["status"] for step in run["stepStats"]}
    assert {f"{CONNECTION}__{asset}" for asset in ASSETS} <= set(steps) and set(steps.values()) == {
        "SUCCESS"
    }, steps


def assert_containers_removed(deployed: Deployment, run_ids: list[str]) -> None:
    wait_for(
        "the finished runs' containers removed",
        lambda: all(not run_containers(run_id) for run_id in run_ids),
        60,
        deployed.diagnostics,
    )


def test_a_backfill_launched_through_the_webserver_runs_in_a_container_and_counts_each_ad_day_once(
    deployment: Deployment,
) -> None:
    days = _days(0)
    with phase("backfill of 5 days"):
        backfill_id = deployment.launch_backfill(days, "5 days")

        def succeeded() -> dict[str, Any] | None:
            runs = deployment.runs(backfill_id)
            assert all(run["status"] not in ("FAILURE", "CANCELED") for run in runs), runs
            return next((run for run in runs if run["status"] == "SUCCESS"), None)

        run = wait_for("the backfill's run succeeded", succeeded, 300, deployment.diagnostics)
    assert len(deployment.runs(backfill_id)) == 1  # one run for the range (BackfillPolicy.single_run)
    # Launched by the DockerRunLauncher, in a container of the image the code location reports.
    assert run["tags"]["dagster/image"] == deployment.image
    assert "docker/container_id" in run["tags"]
    assert_every_step_succeeded(run)
    assert_each_ad_day_counted_once(deployment, days)
    # The state went to the S3 store through AWS_ENDPOINT_URL, passed into the run's container.
    keys = deployment.s3.keys(deployment.bucket, "state/tiktok_ads/uploads/")
    assert {f"state/tiktok_ads/uploads/{day.isoformat()}.json" for day in days} <= set(keys), keys
    assert_containers_removed(deployment, [run["runId"]])


def _interrupted_then_retried(
    deployment: Deployment, days: list[date], title: str, interrupt, phase_name: str
) -> tuple[dict[str, Any], dict[str, Any], int]:
    """A backfill whose run is interrupted by ``interrupt(run)`` while its third request waits in
    Amplitude (released by ``interrupt``); returns the first run, its finished retry, and the number
    of events Amplitude received for it (duplicates included)."""
    amplitude = deployment.amplitude
    requests_before = len(amplitude.request_log)
    amplitude.hold_requests(after=PASS_BEFORE_HOLD)
    try:
        with phase(f"{phase_name}: launched, until a request of the run is held"):
            backfill_id = deployment.launch_backfill(days, title)
            wait_for(
                "a request held in Amplitude",
                lambda: amplitude.held_requests >= 1,
                300,
                deployment.diagnostics,
            )
            run = wait_for(
                "the run started", lambda: deployment.started_run(backfill_id), 30, deployment.diagnostics
            )
        with phase(f"{phase_name}: interrupted, then marked failed"):
            interrupt(run)
            wait_for(
                "the interrupted run marked failed",
                lambda: deployment.run_status(backfill_id, run["runId"]) == "FAILURE",
                240,
                deployment.diagnostics,
            )
    finally:
        amplitude.release()
    with phase(f"{phase_name}: retried"):
        retry = wait_for(
            "the run's retry finished",
            lambda: deployment.retry_of(backfill_id, run["runId"]),
            300,
            deployment.diagnostics,
        )
    note(
        f"{phase_name}: the run {run['runId'][:8]} failed: "
        + " | ".join(deployment.how_it_failed(run["runId"]))
    )
    received = sum(entry["events"] for entry in amplitude.request_log[requests_before:])
    return run, retry, received


def test_a_run_container_killed_mid_upload_is_marked_failed_retried_and_counts_each_ad_day_once(
    deployment: Deployment,
) -> None:
    days = _days(DAYS_PER_BACKFILL)

    def kill(run: dict[str, Any]) -> None:
        (container,) = run_containers(run["runId"])
        docker("kill", container)
        # The held request goes on: Amplitude ingests it, and answers a client that is gone.
        deployment.amplitude.release()

    run, retry, received = _interrupted_then_retried(
        deployment, days, "5 days, container killed", kill, "kill"
    )
    assert retry["status"] == "SUCCESS", retry
    assert retry["tags"][RETRY_STRATEGY_TAG] == "ALL_STEPS"
    assert_every_step_succeeded(retry)  # every step ran again, not only the upload
    assert_each_ad_day_counted_once(deployment, days)
    # The events of the request in flight at the kill arrived twice (the retry resent them under
    # the same insert_id, the ledger having no acknowledgement of them) and were counted once.
    counted = sum(len(tiktok_truth(deployment.catalogue, day)) for day in days)
    assert received >= counted + BATCH, (received, counted)
    assert_containers_removed(deployment, [run["runId"], retry["runId"]])


def test_postgresql_restarted_mid_upload_the_retry_counts_each_ad_day_once(deployment: Deployment) -> None:
    days = _days(2 * DAYS_PER_BACKFILL)
    postgres = deployment.compose.container("postgres")

    def restart_postgres(run: dict[str, Any]) -> None:
        amplitude = deployment.amplitude
        docker("stop", "--time", "30", postgres)
        # The held request is answered while the server is down: the run cannot record it.
        answered = len(amplitude.request_log) + 1
        amplitude.release()
        wait_for(
            "the held request answered",
            lambda: len(amplitude.request_log) >= answered,
            60,
            deployment.diagnostics,
        )
        wait_for(
            "the run's upload step failed, or its container gone",
            lambda: _step_failed_or_gone(run["runId"]),
            120,
            deployment.diagnostics,
        )
        docker("start", postgres)
        wait_for("PostgreSQL healthy again", lambda: _healthy(postgres), 120, deployment.diagnostics)

    run, retry, _ = _interrupted_then_retried(
        deployment, days, "5 days, PostgreSQL restarted", restart_postgres, "postgres restart"
    )
    assert retry["status"] == "SUCCESS", retry
    assert_every_step_succeeded(retry)
    assert_each_ad_day_counted_once(deployment, days)
    assert_containers_removed(deployment, [run["runId"], retry["runId"]])


def _step_failed_or_gone(run_id: str) -> bool:
    containers = run_containers(run_id)
    if not containers:
        return True
    logs = docker("logs", containers[0], check=False)
    return "STEP_FAILURE" in logs.stdout + logs.stderr


def _healthy(container: str) -> bool:
    return docker("inspect", "-f", "{{.State.Health.Status}}", container).stdout.strip() == "healthy"


def test_no_finished_run_keeps_its_container(deployment: Deployment) -> None:
    """After the three backfills, the only run containers left (the freshness sensor's runs may be
    under way) are those of runs still in progress: launched ones are removed when they finish,
    killed ones at once."""
    network = deployment.compose.variables["TIKTOK_AMP_NETWORK"]
    labels = docker(
        "ps", "-a", "--filter", f"network={network}", "--format", f'{{{{.Label "{RUN_ID_LABEL}"}}}}'
    )
    for run_id in {label for label in labels.stdout.split() if label}:
        status = deployment.graphql(RUN_STATUS_QUERY, {"runId": run_id})["runOrError"]["status"]
        assert status in ("QUEUED", "STARTING", "STARTED", "CANCELING"), (run_id, status)
