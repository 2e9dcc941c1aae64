"""Dagster on a real PostgreSQL server: the daily job and a backfill, deploy/dagster.production.yaml
with docs/deployment.md's pool commands, and its `dagster-webserver` + `dagster-daemon run` running
the schedule and a backfill.

The PostgreSQL server is this module's own, started by ``tests/postgres_server.py``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from tiktok_amp_assets.storage.import_store import ImportStore

from ..conftest import API_KEY, Project
from ..postgres_server import PostgresServer
from ..processes import dagster_graphql, process_tree, start_process_group, stop_process_tree, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_YAML = PROJECT_ROOT / "deploy" / "dagster.production.yaml"
DEPLOYMENT_PAGE = PROJECT_ROOT / "docs" / "deployment.md"
# The default connection's assets, as the UI names them (keys prefixed with the connection).
ASSETS = (
    "tiktok_ads/tiktok_raw_reports",
    "tiktok_ads/tiktok_ad_metrics",
    "tiktok_ads/amplitude_upload_results",
)


def _materializations_in_postgres(server: PostgresServer, db_name: str) -> dict[tuple[str, str], int]:
    """(asset, partition) -> number of materialization events, read from Dagster's event_logs table."""
    connection = server.connect(db_name)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT asset_key, partition, count(*) FROM event_logs "
                "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key, partition"
            )
            rows = cursor.fetchall()
    finally:
        connection.close()
    return {
        (dg.AssetKey.from_db_string(key).to_user_string(), partition): count for key, partition, count in rows
    }


def _run_statuses_in_postgres(server: PostgresServer, db_name: str) -> list[str]:
    connection = server.connect(db_name)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status FROM runs")
            return sorted(status for (status,) in cursor.fetchall())
    finally:
        connection.close()


def test_the_daily_job_and_a_backfill_store_their_materializations_in_postgres(
    project: Project, postgres: PostgresServer, tmp_path: Path
) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    db_name = postgres.create_database("dagster_daily")
    home = tmp_path / "postgres_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(postgres.instance_yaml(db_name)))
    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        project.instance = instance

        day = date(2025, 3, 1)
        assert project.materialize(day).success  # the schedule's run for one day
        first, last = day + timedelta(days=1), day + timedelta(days=3)
        assert project.materialize(first, last).success  # a 3-day backfill: one run over the range

        days = {(day + timedelta(days=offset)).isoformat() for offset in range(4)}
        for asset in ASSETS:
            assert instance.get_materialized_partitions(dg.AssetKey.from_user_string(asset)) == days
        # The same facts, read from PostgreSQL itself: one materialization per asset and day.
        assert _materializations_in_postgres(postgres, db_name) == {
            (asset, d): 1 for asset in ASSETS for d in days
        }
        assert _run_statuses_in_postgres(postgres, db_name) == ["SUCCESS", "SUCCESS"]
        for offset in range(4):
            assert project.amplitude_sums(day + timedelta(days=offset)) == project.tiktok_truth(
                day + timedelta(days=offset)
            )
    finally:
        instance.dispose()


def test_the_production_instance_config_runs_the_job_with_its_pools(
    project: Project, postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/dagster.production.yaml as shipped, with docs/deployment.md's pool commands run against it."""
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

    db_name = postgres.create_database("dagster_production")
    home = tmp_path / "production_home"
    home.mkdir()
    shutil.copyfile(PRODUCTION_YAML, home / "dagster.yaml")
    for name, value in postgres.env(db_name).items():
        monkeypatch.setenv(name, value)

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.run_queue_config is not None
        assert concurrency.run_queue_config.max_concurrent_runs == 4

        # docs/deployment.md's commands, as an operator runs them (the CLI reads $DAGSTER_HOME/dagster.yaml).
        cli_env = {**os.environ, "DAGSTER_HOME": str(home)}
        page = DEPLOYMENT_PAGE.read_text(encoding="utf-8")
        for pool in ("tiktok_api", "amplitude_api_tiktok_ads"):
            command = f".venv/bin/dagster instance concurrency set {pool} 1"
            assert f"\n{command}\n" in page, f"docs/deployment.md no longer sets the pool: {command}"
            done = subprocess.run(
                [str(Path(sys.executable).parent / "dagster"), *command.split()[1:]],
                check=False, cwd=PROJECT_ROOT, env=cli_env, capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            info = instance.event_log_storage.get_concurrency_info(pool)
            assert (info.slot_count, info.using_default_limit) == (1, False), info

        project.instance = instance
        day = date(2025, 4, 1)
        assert project.materialize(day).success
        for asset in ASSETS:
            assert instance.get_materialized_partitions(dg.AssetKey.from_user_string(asset)) == {
                day.isoformat()
            }
        assert project.amplitude_sums(day) == project.tiktok_truth(day)
        # Every slot the run's steps claimed was given back.
        for pool in ("tiktok_api", "amplitude_api_tiktok_ads"):
            assert instance.event_log_storage.get_concurrency_info(pool).claimed_slots == []
    finally:
        instance.dispose()


# ------------------------------------------------------------- the production processes themselves


def _stop(process: subprocess.Popen[bytes]) -> None:
    stop_process_tree(process, grace_seconds=30)


def _graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    return dagster_graphql(f"http://127.0.0.1:{port}", query, variables)


def _wait_for(what: str, check, timeout: float, logs: list[Path]) -> Any:
    def tails() -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs if log.exists()
        )

    return wait_for(what, check, timeout, tails)


LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
DAEMONS_QUERY = "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy required } } } }"
SCHEDULE_QUERY = """
query ($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) { ... on Schedule { scheduleState { status } } }
}"""
LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_RUNS = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status runs(limit: 10) { status } } }
}"""


def test_the_documented_production_commands_run_the_schedule_and_a_backfill_on_postgres(
    project: Project, postgres: PostgresServer, tmp_path: Path
) -> None:
    """`dagster-webserver` + `dagster-daemon run` on deploy/dagster.production.yaml, as docs/deployment.md runs them."""
    page = DEPLOYMENT_PAGE.read_text(encoding="utf-8")
    assert "\n.venv/bin/dagster-webserver -h 0.0.0.0 -p 3000 -w workspace.yaml " in page
    assert "\n.venv/bin/dagster-daemon run -w workspace.yaml " in page
    db_name = postgres.create_database("dagster_served")
    home = tmp_path / "served_home"
    home.mkdir()
    shutil.copyfile(PRODUCTION_YAML, home / "dagster.yaml")
    env = {**os.environ, **project.env, **postgres.env(db_name), "DAGSTER_HOME": str(home)}
    bin_dir = Path(sys.executable).parent
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    logs = [tmp_path / "webserver.log", tmp_path / "daemon.log"]
    webserver = start_process_group(
        [str(bin_dir / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
        env,
        logs[0],
    )
    daemon = start_process_group(
        [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, logs[1]
    )
    try:
        _wait_for(
            "the code location loaded in the webserver",
            lambda: any(
                entry["loadStatus"] == "LOADED"
                for entry in _graphql(port, LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
            ),
            120,
            logs,
        )
        selector = {
            "repositoryLocationName": "tiktok_amp_assets",
            "repositoryName": "__repository__",
            "scheduleName": "tiktok_ads_daily",
        }
        schedule = _graphql(port, SCHEDULE_QUERY, {"selector": selector})["scheduleOrError"]
        assert schedule["scheduleState"]["status"] == "RUNNING", schedule

        def daemons_healthy() -> bool:
            statuses = _graphql(port, DAEMONS_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
            healthy = {status["daemonType"] for status in statuses if status["healthy"]}
            return {"SCHEDULER", "QUEUED_RUN_COORDINATOR", "BACKFILL"} <= healthy

        _wait_for("the scheduler, run queue and backfill daemons heartbeating", daemons_healthy, 90, logs)

        # A backfill as the UI launches it: queued, then launched by the daemon, in one run.
        days = ["2025-05-01", "2025-05-02"]
        launched = _graphql(
            port,
            LAUNCH_BACKFILL,
            {
                "params": {
                    "partitionNames": days,
                    "assetSelection": [{"path": asset.split("/")} for asset in ASSETS],
                    "title": "test",
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        def backfill_run_succeeded() -> bool:
            backfill = _graphql(port, BACKFILL_RUNS, {"id": backfill_id})["partitionBackfillOrError"]
            assert backfill["status"] not in ("COMPLETED_FAILED", "FAILED", "CANCELED"), backfill
            runs = backfill["runs"]
            assert all(run["status"] not in ("FAILURE", "CANCELED") for run in runs), runs
            # One run for the range (BackfillPolicy.single_run). The daemon marks the backfill
            # completed on its next pass, up to 30 s later: the run's success is what counts here.
            return len(runs) == 1 and runs[0]["status"] == "SUCCESS"

        _wait_for("the backfill's run succeeded", backfill_run_succeeded, 120, logs)
    finally:
        _stop(daemon)
        _stop(webserver)

    stored = _materializations_in_postgres(postgres, db_name)
    assert {key: count for key, count in stored.items() if key[1] in days} == {
        (a, d): 1 for a in ASSETS for d in days
    }
    for day in days:
        assert project.amplitude_sums(date.fromisoformat(day)) == project.tiktok_truth(
            date.fromisoformat(day)
        )


def _spawned_run_workers(root_pid: int) -> list[int]:
    """Run processes under ``root_pid``: DefaultRunLauncher's code server starts each run with
    multiprocessing's spawn (``spawn_main`` in its command line)."""
    workers = []
    for pid in process_tree(root_pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in command:
            workers.append(pid)
    return workers


def test_a_run_whose_process_is_killed_is_marked_failed_and_retried_sending_only_what_was_missing(
    project: Project, postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/dagster.production.yaml's run monitoring and retries under `dagster-daemon run`: the
    run's process is SIGKILLed mid-upload; monitoring marks the run failed (on this launcher, when it
    reaches its maximum runtime), run_retries starts a retry, and the retry resends exactly the
    events Amplitude never acknowledged."""
    db_name = postgres.create_database("dagster_monitored")
    home = tmp_path / "monitored_home"
    home.mkdir()
    config = yaml.safe_load(PRODUCTION_YAML.read_text())
    # As shipped, but polled every second and with slots freed at once: a test cannot wait minutes.
    config["run_monitoring"].update(poll_interval_seconds=1, free_slots_after_run_end_seconds=1)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    env = {**os.environ, **project.env, **postgres.env(db_name), "DAGSTER_HOME": str(home)}
    for name, value in postgres.env(db_name).items():
        monkeypatch.setenv(name, value)
    bin_dir = Path(sys.executable).parent
    logs = [tmp_path / "daemon.log"]
    day = date(2025, 3, 1)
    truth = project.tiktok_truth(day)
    batch = 10
    run_id = str(uuid.uuid4())
    daemon = start_process_group(
        [str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, logs[0]
    )
    instance = dg.DagsterInstance.from_config(str(home))
    project.amplitude.hold_requests(after=1)  # the second request waits: the run is killed meanwhile
    try:
        amplitude = {"api_key": {"env": "AMPLITUDE_API_KEY"}, "api_url": {"env": "AMPLITUDE_API_URL"}}
        launched = subprocess.run(
            [
                str(bin_dir / "dagster"), "job", "launch", "-w", "workspace.yaml", "-j", "tiktok_ads_job",
                "--run-id", run_id,
                "--tags", json.dumps({"dagster/partition": day.isoformat(), "dagster/max_runtime": "20"}),
                "--config-json", json.dumps(
                    {"resources": {"tiktok_ads_amplitude": {"config": {**amplitude, "max_events_per_request": batch}}}}
                ),
            ],
            check=False, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert launched.returncode == 0, launched.stderr[-3000:]
        _wait_for(
            "the run's second request in flight", lambda: project.amplitude.held_requests == 1, 120, logs
        )
        workers = _wait_for("the run's process", lambda: _spawned_run_workers(daemon.pid), 30, logs)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        project.amplitude.release()  # the held request is ingested, answered to nobody

        def retried() -> dg.DagsterRun | None:
            retries = instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))
            return retries[0] if retries and retries[0].is_finished else None

        retry = _wait_for("the run marked failed and its retry finished", retried, 150, logs)
    finally:
        project.amplitude.release()
        _stop(daemon)
    assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert retry.status == dg.DagsterRunStatus.SUCCESS
    instance.dispose()

    assert project.amplitude_sums(day) == truth
    counted = [event["insert_id"] for event in project.amplitude.counted_events(API_KEY)]
    assert len(counted) == len(set(counted)) == len(truth)
    results = ImportStore(project.data_dir).read_upload_results(day)
    assert results["events_resent_after_interruption"] == len(truth) - batch
    assert results["events_planned"] == 0
