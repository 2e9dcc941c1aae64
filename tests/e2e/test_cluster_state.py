"""State that survives a cluster: the data folder in S3 and the ledger in PostgreSQL, shared by runs
on several machines (here: processes with a DAGSTER_HOME each), against real servers on 127.0.0.1
(moto's S3 server, tests/s3_server.py; PostgreSQL, tests/postgres_server.py)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from tiktok_amp_assets import ledger_command, upload
from tiktok_amp_assets.clients.amplitude import AmplitudeClient
from tiktok_amp_assets.code_location import connection_resources
from tiktok_amp_assets.core.ad_metrics import table_rows
from tiktok_amp_assets.core.upload_plan import plan_events
from tiktok_amp_assets.pipeline import stage
from tiktok_amp_assets.settings import ConfigurationError, DeploymentSettings
from tiktok_amp_assets.storage.import_store import ImportStore
from tiktok_amp_assets.storage.ledger import ACKNOWLEDGED, ConcurrentPlanError
from tiktok_amp_assets.storage.locations import StorageConfigurationError
from tiktok_amp_assets.upload import DayUploader

from ..conftest import API_KEY, Project
from ..integration.test_restatements import restate_three_ads
from ..postgres_server import PostgresServer
from ..s3_server import S3Server, started_s3_server
from .test_upload_exactly_once import amplitude_config, crash_between_two_batches_then_rerun, wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIRST = date(2025, 3, 1)
BATCH = 10


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with started_s3_server() as server:
        yield server


@dataclass
class Cluster:
    project: Project
    s3: S3Server
    bucket: str
    data_dir: str
    ledger_url: str

    def store(self) -> ImportStore:
        return ImportStore(self.data_dir, ledger_url=self.ledger_url)


@pytest.fixture
def cluster(
    project: Project, s3: S3Server, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> Cluster:
    """The project with its data folder in a new bucket and its ledger in a new database."""
    name = secrets.token_hex(6)
    bucket = s3.create_bucket(f"tiktok-amp-{name}")
    ledger_url = postgres.url(postgres.create_database(f"ledger_{name}"))
    env = {**s3.env, "TIKTOK_AMP_DATA_DIR": f"s3://{bucket}/state", "TIKTOK_AMP_LEDGER_URL": ledger_url}
    for variable, value in env.items():
        monkeypatch.setenv(variable, value)
    project.env.update(env)
    project.rebuild()
    return Cluster(project, s3, bucket, f"s3://{bucket}/state", ledger_url)


def materialize_command(first: date, last: date, **amplitude_fields: Any) -> list[str]:
    return [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "tiktok_amp_assets.definitions",
        "--select", "group:tiktok_ads", "--partition-range", f"{first.isoformat()}...{last.isoformat()}",
        "--config-json", json.dumps(amplitude_config(**amplitude_fields)),
    ]  # fmt: skip


def delivered(sums: dict[tuple[str, str], dict[str, Decimal]]) -> dict[tuple[str, str], dict[str, Decimal]]:
    """Ad-days with figures: an ad-day TikTok stopped reporting is corrected to zero in Amplitude."""
    return {key: figures for key, figures in sums.items() if any(figures.values())}


def test_two_runs_on_two_machines_at_once_count_each_ad_day_once_after_a_restatement(
    cluster: Cluster, tmp_path: Path
) -> None:
    project = cluster.project
    counted_first = [FIRST + timedelta(days=offset) for offset in range(4)]
    assert project.materialize(counted_first[0], counted_first[-1]).success
    for day in counted_first[1:3]:
        restate_three_ads(project, day)

    # A schedule tick's lookback and a backfill, on two machines, over overlapping ranges. Each
    # holds its first request in Amplitude until the other has planned and sent too.
    ranges = [(FIRST, FIRST + timedelta(days=3)), (FIRST + timedelta(days=1), FIRST + timedelta(days=5))]
    project.amplitude.hold_requests(after=0)
    runs: list[subprocess.Popen[bytes]] = []
    logs = [tmp_path / f"run-{index}.log" for index in range(len(ranges))]
    try:
        for index, (first, last) in enumerate(ranges):
            home = tmp_path / f"dagster_home_{index}"
            home.mkdir()
            env = {**os.environ, **project.env, "DAGSTER_HOME": str(home)}
            with logs[index].open("wb") as output:
                runs.append(
                    subprocess.Popen(
                        materialize_command(first, last, max_events_per_request=BATCH),
                        cwd=PROJECT_ROOT,
                        env=env,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )  # fmt: skip
                )
        wait_until(
            lambda: project.amplitude.held_requests >= 2 or any(run.poll() is not None for run in runs), 150
        )
    finally:
        project.amplitude.release()
    for run, log in zip(runs, logs, strict=True):
        assert run.wait(150) == 0, log.read_text(errors="replace")[-4000:]

    days = [FIRST + timedelta(days=offset) for offset in range(6)]
    for day in days:
        assert delivered(project.amplitude_sums(day)) == delivered(project.tiktok_truth(day)), day
    counted_ids = [event["insert_id"] for event in project.amplitude.counted_events(API_KEY)]
    assert len(counted_ids) == len(set(counted_ids))
    # The ledger agrees: everything acknowledged, each ad-day's revisions one after the other.
    rows = cluster.store().ledger().rows()
    assert {row["status"] for row in rows} == {ACKNOWLEDGED}
    assert {row["insert_id"] for row in rows} == set(counted_ids)
    revisions: dict[tuple[str, str, str], list[int]] = {}
    for row in rows:
        revisions.setdefault((row["advertiser_id"], row["ad_id"], row["stat_date"]), []).append(
            row["revision"]
        )
    assert all(sorted(numbers) == list(range(len(numbers))) for numbers in revisions.values())


def test_a_run_killed_mid_upload_resends_exactly_the_unacknowledged_events_from_postgres(
    cluster: Cluster, tmp_path: Path
) -> None:
    crash_between_two_batches_then_rerun(cluster.project, cluster.store(), tmp_path)


def test_nothing_is_written_to_local_disk_when_the_data_folder_is_an_object_store(
    cluster: Cluster, tmp_path: Path
) -> None:
    workdir, home, temp, dagster_home = (tmp_path / name for name in ("work", "home", "tmp", "run_home"))
    for folder in (workdir, home, temp, dagster_home):
        folder.mkdir()
    env = {
        **os.environ, **cluster.project.env,
        "DAGSTER_HOME": str(dagster_home), "HOME": str(home), "TMPDIR": str(temp),
    }  # fmt: skip
    done = subprocess.run(
        materialize_command(FIRST, FIRST), cwd=workdir, env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-4000:]

    keys = cluster.s3.keys(cluster.bucket)
    day = FIRST.isoformat()
    assert (
        f"state/tiktok_ads/metrics/{day}.parquet" in keys and f"state/tiktok_ads/uploads/{day}.json" in keys
    )
    assert any(key.startswith(f"state/tiktok_ads/raw/{day}/") for key in keys)
    assert cluster.project.amplitude_sums(FIRST) == cluster.project.tiktok_truth(FIRST)
    assert cluster.store().ledger().counted([FIRST])
    # Outside Dagster's own files (its home, its telemetry id in ~/.dagster), the run left nothing:
    # no data folder, no ledger, no temporary file.
    written = [path for folder in (workdir, home, temp) for path in folder.rglob("*")]
    assert [path for path in written if not path.is_relative_to(home / ".dagster")] == []
    assert not (PROJECT_ROOT / "s3:").exists()
    stray = [
        path
        for path in dagster_home.rglob("*")
        if path.suffix in (".json", ".parquet", ".sqlite") or path.name == "tiktok_amp_data"
    ]
    assert stray == []


def test_the_ledger_copy_command_moves_a_sqlite_ledger_into_postgres_and_refuses_to_overwrite(
    project: Project, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    day = FIRST
    assert project.materialize(day).success  # the local default: amplitude_ledger.sqlite
    local_rows = ImportStore(project.data_dir).ledger().rows()
    assert local_rows
    ledger_url = postgres.url(postgres.create_database(f"ledger_{secrets.token_hex(6)}"))
    command = [
        str(Path(sys.executable).parent / "tiktok-amp-ledger"),
        "copy",
        "--from",
        str(project.data_dir),
    ]
    env = {**os.environ, "TIKTOK_AMP_LEDGER_URL": ledger_url}

    copied = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert copied.returncode == 0, copied.stderr
    assert f"copied {len(local_rows)} events" in copied.stdout
    assert ImportStore(project.data_dir, ledger_url=ledger_url).ledger().rows() == local_rows

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1
    assert f"already holds {len(local_rows)} events" in again.stderr
    assert postgres.password not in copied.stdout + copied.stderr + again.stdout + again.stderr

    # The memory moved with it: the same day run against the PostgreSQL ledger sends nothing.
    sent_before = len(project.amplitude.request_log)
    monkeypatch.setenv("TIKTOK_AMP_LEDGER_URL", ledger_url)
    project.rebuild()
    assert project.materialize(day).success
    assert len(project.amplitude.request_log) == sent_before
    assert ImportStore(project.data_dir).read_upload_results(day)["events_planned"] == 0


def test_a_wrong_ledger_password_fails_the_run_without_showing_the_password(
    project: Project, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    url = f"postgresql://{postgres.user}:{wrong}@{postgres.host}:{postgres.port}/postgres"
    monkeypatch.setenv("TIKTOK_AMP_LEDGER_URL", url)
    project.rebuild()
    resource = connection_resources(project.connection)["tiktok_ads_import_store"]
    assert wrong not in repr(resource)
    result = project.materialize(FIRST, raise_on_error=False)
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    message = failure.step_failure_data.error.to_string()
    assert "password authentication failed" in message
    assert wrong not in message
    run_logs = [record.user_message for record in project.instance.all_logs(result.run_id)]
    assert wrong not in json.dumps(run_logs)
    assert wrong not in json.dumps(project.instance.get_run_by_id(result.run_id).run_config, default=str)


def test_a_ledger_database_not_encoded_in_utf8_is_refused_with_how_to_create_one(
    project: Project, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database created SQL_ASCII (initdb in the C locale without --encoding=UTF8 makes them so)
    would fail the ledger's first non-ASCII name mid-upload: it is refused where the ledger first
    connects, before anything is sent, and the CREATE DATABASE the message gives works."""
    name = f"ledger_ascii_{secrets.token_hex(6)}"
    admin = postgres.connect()
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' TEMPLATE template0")
        url = postgres.url(name)
        with pytest.raises(StorageConfigurationError) as refused:
            ImportStore(project.data_dir, ledger_url=url).ledger()
        message = str(refused.value)
        assert f"{name!r}" in message and "encoded SQL_ASCII" in message and "needs UTF8" in message
        assert postgres.password not in message

        # A run stops at the upload step, with the same message, before any request to Amplitude.
        monkeypatch.setenv("TIKTOK_AMP_LEDGER_URL", url)
        project.rebuild()
        result = project.materialize(FIRST, raise_on_error=False)
        assert not result.success
        failure = next(event for event in result.all_events if event.is_step_failure)
        assert "encoded SQL_ASCII" in failure.step_failure_data.error.to_string()
        assert project.amplitude.request_log == []

        # What the message says to run makes a database the ledger takes.
        create = re.search(r"CREATE DATABASE [^;]+;", message)
        assert create is not None, message
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE {name}")
            cursor.execute(create.group(0))
        assert ImportStore(project.data_dir, ledger_url=url).ledger().rows() == []
        assert project.materialize(FIRST).success
        assert project.amplitude_sums(FIRST) == project.tiktok_truth(FIRST)
    finally:
        admin.close()


# ------------------------------------------------------------------ settings, checked at load


def settings_error(env: dict[str, str]) -> str:
    with pytest.raises(ConfigurationError) as caught:
        DeploymentSettings.from_env(env)
    return str(caught.value)


def test_an_object_store_without_a_ledger_url_is_refused_at_load() -> None:
    message = settings_error({"TIKTOK_AMP_DATA_DIR": "s3://bucket/prefix"})
    assert "TIKTOK_AMP_LEDGER_URL must be set" in message and "s3://bucket/prefix" in message


@pytest.mark.parametrize(
    ("url", "extra", "package"),
    [("gs://bucket/x", "gcs", "gcsfs"), ("az://container/x", "azure", "adlfs")],
)
def test_a_url_whose_filesystem_package_is_missing_names_the_extra(
    url: str, extra: str, package: str
) -> None:
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    message = settings_error({"TIKTOK_AMP_DATA_DIR": url, "TIKTOK_AMP_LEDGER_URL": "postgresql://u:p@h/db"})
    assert f"tiktok-amp-assets[{extra}]" in message and package in message


@pytest.mark.parametrize("value", ["s3:bucket", "s3://", "ftp://host/folder", "file:///tmp/data"])
def test_a_value_with_a_scheme_is_never_a_local_folder(value: str, tmp_path: Path) -> None:
    message = settings_error({"TIKTOK_AMP_DATA_DIR": value, "DAGSTER_HOME": str(tmp_path)})
    assert "TIKTOK_AMP_DATA_DIR" in message
    assert not (Path.cwd() / value.split(":")[0]).exists()


def test_the_local_default_is_unchanged(tmp_path: Path) -> None:
    settings = DeploymentSettings.from_env({"DAGSTER_HOME": str(tmp_path)})
    assert settings.data_dir == str(tmp_path.resolve() / "tiktok_amp_data")
    relative = DeploymentSettings.from_env({"TIKTOK_AMP_DATA_DIR": "some/folder"})
    assert relative.data_dir == str(Path("some/folder").resolve())


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://ledger:{secret}@db:3306/ledger", "starts with mysql"),
        ("postgresql://ledger:{secret}@db:5432", "database is missing"),
        ("postgresql://ledger:{secret}@/ledger", "host is missing"),
    ],
)
def test_a_malformed_ledger_url_is_refused_without_quoting_it(url: str, says: str) -> None:
    secret = secrets.token_hex(8)
    message = settings_error(
        {"TIKTOK_AMP_DATA_DIR": "s3://bucket/x", "TIKTOK_AMP_LEDGER_URL": url.format(secret=secret)}
    )
    assert says in message and secret not in message


def test_the_ledger_url_reaches_the_runs_as_an_environment_variable(cluster: Cluster) -> None:
    resource = connection_resources(cluster.project.connection)["tiktok_ads_import_store"]
    # The UI and the run's config show the variable's name, not the URL with its password.
    assert isinstance(resource.ledger_url, dg.EnvVar)
    assert cluster.ledger_url not in repr(resource)


# ------------------------------------------------------------------ recording a plan


def _planned_events(project: Project, day: date) -> list:
    rows = table_rows(ImportStore(project.data_dir).read_ad_metrics(day))
    return [event.ad_day_event for event in plan_events(rows, {}, [day], policy="correct")]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_runs_planning_the_same_day_at_once_record_it_once(
    project: Project, postgres: PostgresServer, database: str
) -> None:
    """Two runs plan the same day from the same state: the second to record is refused as a whole
    (nothing of its plan is written), and planning again it sees the first's events."""
    day = FIRST
    assert project.materialize(day, amplitude_config={"dry_run": True}).success
    ledger_url = postgres.url(postgres.create_database(f"ledger_{secrets.token_hex(6)}"))
    store = ImportStore(project.data_dir, ledger_url=ledger_url if database == "postgresql" else None)
    ledger, other_run = store.ledger(), store.ledger()
    events = _planned_events(project, day)
    half = len(events) // 2
    assert ledger.day_record(day).recorded == {} == other_run.day_record(day).recorded

    ledger.record_pending(events[:half])
    with pytest.raises(ConcurrentPlanError):
        other_run.record_pending(events)  # planned from the same empty state

    assert sorted(event.insert_id for event in ledger.pending()) == sorted(e.insert_id for e in events[:half])
    again = other_run.day_record(day)
    assert len(again.recorded) == half and len(again.pending) == half
    replanned = plan_events(table_rows(store.read_ad_metrics(day)), again.recorded, [day], policy="correct")
    assert {event.ad_day_event.insert_id for event in replanned} == {e.insert_id for e in events[half:]}
    other_run.record_pending(event.ad_day_event for event in replanned)
    assert len(ledger.pending()) == len(events)


def test_a_recording_waits_for_another_runs_uncommitted_one_then_is_refused(
    project: Project, postgres: PostgresServer
) -> None:
    """PostgreSQL: while one run's recording transaction is open, another run recording the same
    revisions waits for it, then is refused once it commits (never two rows, never a deadlock)."""
    day = FIRST
    assert project.materialize(day, amplitude_config={"dry_run": True}).success
    database = postgres.create_database(f"ledger_{secrets.token_hex(6)}")
    store = ImportStore(project.data_dir, ledger_url=postgres.url(database))
    ledger, other_run = store.ledger(), store.ledger()
    events = _planned_events(project, day)
    outcome: list[str] = []
    with postgres.connect(database) as holder:
        holder.autocommit = False
        with holder.cursor() as cursor:  # the first run's insert, not yet committed
            cursor.execute(
                "INSERT INTO amplitude_event_descriptions (digest, description) "
                "VALUES ('d', '{\"event_properties\": {}}')"
            )
            cursor.execute(
                "INSERT INTO ledger_events (amplitude_project, insert_id, advertiser_id, ad_id, stat_date, "
                "revision, cost, impressions, clicks, conversions, status, payload, recorded_at, description) "
                "VALUES ('tiktok_ads', %s, 'a', 'b', %s, 0, '0', 0, 0, 0, 'pending', "
                "'{\"event_properties\": {}}', 'now', 'd')",
                (events[0].insert_id, day.isoformat()),
            )

            def record() -> None:
                try:
                    other_run.record_pending(events)
                    outcome.append("recorded")
                except ConcurrentPlanError:
                    outcome.append("refused")

            thread = threading.Thread(target=record)
            thread.start()
            time.sleep(1.0)
            assert outcome == []  # waiting for the open transaction
        holder.commit()
        thread.join(30)
    assert outcome == ["refused"]
    assert [event.insert_id for event in ledger.pending()] == [events[0].insert_id]


def test_a_file_read_while_another_run_overwrites_it_is_one_whole_version(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs write the same day's files (overlapping ranges): a reader gets the old object or the
    new one, never a failure or a mix."""
    for variable, value in s3.env.items():
        monkeypatch.setenv(variable, value)
    bucket = s3.create_bucket(f"tiktok-amp-{secrets.token_hex(6)}")
    store = ImportStore(f"s3://{bucket}/state")
    versions = [[{"n": n, "filler": "x" * 20_000}] for n in range(2)]
    store.write_upload_results(FIRST, {"dry_run": False, "events": versions[0]})
    stop = threading.Event()

    def overwrite() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            store.write_upload_results(FIRST, {"dry_run": False, "events": versions[n % 2]})

    writer = threading.Thread(target=overwrite)
    writer.start()
    try:
        seen = [store.read_upload_results(FIRST)["events"] for _ in range(60)]
    finally:
        stop.set()
        writer.join(30)
    assert all(events in versions for events in seen)


def test_the_ledger_copy_command_refuses_a_source_that_is_not_a_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_ledger = tmp_path / "other.sqlite"
    not_a_ledger.touch()
    secret = secrets.token_hex(8)
    arguments = ["copy", "--from", str(not_a_ledger), "--to", f"postgresql://u:{secret}@127.0.0.1:9/db"]
    assert ledger_command.main(arguments) == 1
    assert ledger_command.main(["copy", "--from", str(tmp_path / "missing.sqlite"), *arguments[3:]]) == 1
    errors = capsys.readouterr().err
    assert "holds no ledger" in errors and "no SQLite ledger at" in errors and secret not in errors


def test_a_long_upload_planned_by_two_processes_counts_once_and_leaves_no_connection_open(
    cluster: Cluster, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a PostgreSQL ledger a long range is planned by two processes (upload.py), days in order
    all the same. The ledger's connections are pooled while an upload runs (storage/ledger.py) and
    closed when it ends, in the run's process and in the planning processes, while the uploader is
    still alive."""
    days = [FIRST + timedelta(days=offset) for offset in range(5)]
    assert cluster.project.materialize(days[0], days[-1], amplitude_config={"dry_run": True}).success
    monkeypatch.setattr(upload, "PLANNING_PROCESS_FROM_DAYS", 2)
    stages: list[int] = []  # each stage's processes (0: a thread)

    def counted_stage(*args: Any, processes: int = 0, **kwargs: Any) -> Any:
        stages.append(processes)
        return stage(*args, processes=processes, **kwargs)

    monkeypatch.setattr(upload, "stage", counted_stage)
    client = AmplitudeClient(cluster.project.amplitude.url, API_KEY, max_events=BATCH)
    uploader = DayUploader(cluster.store(), client, policy="correct", logger=logging.getLogger(__name__))
    with closing(client):
        assert [day.report.day for day in uploader.upload(days)] == days
    assert stages == [2, 0]  # planning in two processes, sending in a thread
    for day in days:
        assert cluster.project.amplitude_sums(day) == cluster.project.tiktok_truth(day)
    counted_ids = [event["insert_id"] for event in cluster.project.amplitude.counted_events(API_KEY)]
    assert (
        len(counted_ids) == len(set(counted_ids)) == sum(len(cluster.project.tiktok_truth(d)) for d in days)
    )
    database = cluster.ledger_url.rsplit("/", 1)[1]

    def open_connections() -> int:
        connection = postgres.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,))
                return cursor.fetchone()[0]
        finally:
            connection.close()

    # A closed connection's server process ends a moment after the client leaves.
    wait_until(lambda: open_connections() == 0, 10)
    assert uploader is not None  # alive until here: its ledger was closed, not collected
