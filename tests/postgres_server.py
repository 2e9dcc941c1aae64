"""A PostgreSQL server for the tests, on 127.0.0.1: Debian's server binaries (``initdb`` + ``pg_ctl``
from ``/usr/lib/postgresql/<version>/bin``) in a temporary folder, on a free port, with a password,
stopped afterwards. The server refuses to run as root: as root it runs as the ``postgres`` user.
Without the binaries the tests skip (``.ci/run`` installs them; under CI=true a missing binary fails
instead, so CI cannot pass by skipping).

A test module uses it by importing the ``postgres`` fixture (one server per module).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from .prerequisites import skip_or_fail

SERVER_USER = "postgres"


def _server_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server's bin folder (holding initdb and pg_ctl), if any."""

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").exists() and (path / "pg_ctl").exists()
    ]
    return max(candidates, key=version) if candidates else None


def _missing_prerequisite() -> str | None:
    if _server_bin_dir() is None:
        return (
            "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb, pg_ctl): "
            "install Debian's postgresql package (`apt-get install -y postgresql`, as .ci/run does)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root, and PostgreSQL refuses root: no {SERVER_USER!r} user to run it as"
        if shutil.which("runuser") is None:
            return f"running as root, and PostgreSQL refuses root: runuser is missing to run it as {SERVER_USER!r}"
    try:
        import dagster_postgres  # noqa: F401
        import psycopg2  # noqa: F401
    except ImportError as error:
        return f"{error.name} is not installed: pip install -e '.[test]'"
    return None


def skip_or_fail_without_postgres() -> None:
    reason = _missing_prerequisite()
    if reason is not None:
        skip_or_fail("the PostgreSQL tests", reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A PostgreSQL server of this test module, on 127.0.0.1, with a password-protected superuser."""

    bin_dir: Path
    root: Path
    port: int
    user: str
    password: str
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def connect(self, db_name: str = "postgres"):  # -> psycopg2 connection
        import psycopg2

        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=db_name,
            connect_timeout=10,
        )

    def create_database(self, name: str) -> str:
        connection = self.connect()
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return name

    def url(self, db_name: str) -> str:
        """The database's URL as TIKTOK_AMP_LEDGER_URL takes it (password included)."""
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{db_name}"

    def env(self, db_name: str) -> dict[str, str]:
        """The variables deploy/dagster.production.yaml reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": db_name,
        }

    def instance_yaml(self, db_name: str) -> dict:
        return {
            "storage": {
                "postgres": {
                    "postgres_db": {
                        "hostname": self.host,
                        "port": self.port,
                        "username": self.user,
                        "password": self.password,
                        "db_name": db_name,
                        "scheme": "postgresql+psycopg2",
                    }
                }
            },
            "telemetry": {"enabled": False},
        }

    # ------------------------------------------------------------------ lifecycle

    def _run(self, *command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / command[0]), *command[1:]]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", SERVER_USER, "--", *argv]
        return subprocess.run(
            argv, check=False, cwd=self.root, capture_output=True, text=True, timeout=timeout
        )

    def initdb(self) -> None:
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        self._chown(password_file)
        done = self._run(
            "initdb", "-D", str(self.data_dir), "-U", self.user, f"--pwfile={password_file}",
            "--auth=scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        password_file.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = (
            f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories={self.root} "
            # A throwaway server: durability buys nothing here and costs seconds.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        done = self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if done.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(
                f"pg_ctl start failed on port {self.port}:\n{done.stdout}\n{done.stderr}\n{log[-3000:]}"
            )

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "30", "stop")

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(path, user.pw_uid, user.pw_gid)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    skip_or_fail_without_postgres()
    with started_postgres_server() as server:
        yield server


@contextmanager
def started_postgres_server() -> Iterator[PostgresServer]:
    """A server for as long as the block runs (the fixture's, and bench/reliability.py's)."""
    reason = _missing_prerequisite()
    if reason is not None:
        raise RuntimeError(reason)
    bin_dir = _server_bin_dir()
    assert bin_dir is not None
    # Not under pytest's tmp_path: that is private to root, and the server runs as `postgres`.
    root = Path(tempfile.mkdtemp(prefix="tiktok-amp-pg-"))
    server = PostgresServer(bin_dir, root, port=0, user="dagster", password=secrets.token_urlsafe(16))
    try:
        server._chown(root)
        server.initdb()
        for attempt in range(3):  # a free port can be taken between the check and the start
            server.port = _free_port()
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        yield server
    finally:
        if server.port:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
