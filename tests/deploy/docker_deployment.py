"""The Docker deployment of ``deploy/`` brought up for real: the images built by
``deploy/build-images.sh`` (Debian's archive, wheels from this host), ``deploy/docker/
docker-compose.yaml`` run by ``docker-compose`` against the machine's dockerd, and the Dagster
webserver it serves asked over GraphQL.

What the deployment reaches outside Docker runs in the test process, on the address containers see
the host at (the gateway of Docker's default bridge): the TikTok and Amplitude emulators behind TLS
with a CA made for the test, which only the test's image trusts, and moto's S3 server.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..prerequisites import skip_or_fail
from ..processes import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "deploy" / "docker" / "docker-compose.yaml"
BUILD_SCRIPT = PROJECT_ROOT / "deploy" / "build-images.sh"
# Linux's ioctl for an interface's IPv4 address (<linux/sockios.h>).
SIOCGIFADDR = 0x8915
# The label the DockerRunLauncher puts on each run's container.
RUN_ID_LABEL = "dagster/run_id"

# ------------------------------------------------------------------------------ phase timings

# The phases in the order they ended, and what the tier saw happen (how an interrupted run failed),
# one line each; tests/conftest.py prints them after the test session. A file, not a list:
# under pytest-xdist the tier runs in a worker process, and the session's summary in the controller.
TIER_LOG = PROJECT_ROOT / "test-artifacts" / "docker-tier.txt"


def note(line: str) -> None:
    """A line for the summary of the tier printed after the test session."""
    TIER_LOG.parent.mkdir(parents=True, exist_ok=True)
    with TIER_LOG.open("a", encoding="utf-8") as log:
        log.write(line + "\n")


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Times the block as one phase of the tier (printed at the end, and here with -s)."""
    start = time.monotonic()
    try:
        yield
    finally:
        seconds = time.monotonic() - start
        note(f"{seconds:7.1f} s  {name}")
        print(f"phase {name}: {seconds:.1f} s", flush=True)


# ------------------------------------------------------------------------------ prerequisites


def _missing_prerequisite() -> str | None:
    if os.geteuid() != 0:
        return "the Docker tier builds base images with debootstrap and chroot, as root"
    for program, package in (("docker", "docker.io"), ("docker-compose", "docker-compose"), ("debootstrap", "debootstrap")):  # fmt: skip
        if shutil.which(program) is None:
            return f"{program} is not installed: apt-get install -y {package} (as .ci/run does)"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    if info.returncode != 0:
        return f"the Docker engine does not answer (start dockerd, as .ci/run does): {info.stderr.strip()[-300:]}"
    return None


def skip_or_fail_without_docker() -> None:
    reason = _missing_prerequisite()
    if reason is not None:
        skip_or_fail("the Docker deployment tier", reason)


# ------------------------------------------------------------------------------ docker


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def host_address_for_containers() -> str:
    """The address containers reach this host at: this host's address on Docker's default bridge
    (docker0, the bridge's gateway). Any container reaches it, on whatever network, and nothing
    outside the machine does."""
    interface = docker(
        "network", "inspect", "bridge", "-f", '{{index .Options "com.docker.network.bridge.name"}}'
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("256s", interface.stdout.strip().encode()[:15])
        answer = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)
    return socket.inet_ntoa(answer[20:24])


def run_containers(run_id: str) -> list[str]:
    """Ids of the containers, running or not, of one Dagster run."""
    return docker("ps", "-aq", "--filter", f"label={RUN_ID_LABEL}={run_id}").stdout.split()


@dataclass(frozen=True)
class Images:
    product: str  # the code location's image, as deploy/build-images.sh tags it
    postgres: str


def build_images(work: Path) -> Images:
    """deploy/build-images.sh, its steps timed as phases. The wheels are pinned to this venv's
    versions (pip freeze as PIP_CONSTRAINT): the image runs what the rest of the suite tested."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    constraints = work / "constraints.txt"
    constraints.write_text(frozen)
    env = {**os.environ, "PYTHON": sys.executable, "PIP_CONSTRAINT": str(constraints)}
    with phase("images (deploy/build-images.sh)"):
        done = subprocess.run(
            ["bash", str(BUILD_SCRIPT)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
            timeout=900, check=False,
        )  # fmt: skip
    for line in done.stderr.splitlines():
        if match := re.fullmatch(r"build-images: phase (\S+): (\d+) s", line):
            note(f"{float(match.group(2)):7.1f} s    build-images {match.group(1)}")
    if done.returncode != 0:
        pytest.fail(f"deploy/build-images.sh failed:\n{done.stderr[-4000:]}", pytrace=False)
    printed = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    return Images(product=printed["TIKTOK_AMP_IMAGE"], postgres=printed["POSTGRES_IMAGE"])


def image_trusting(base: str, ca_pem: bytes, tag: str) -> str:
    """``base`` with ``ca_pem`` added to the system's CA certificates, which requests then uses
    (REQUESTS_CA_BUNDLE), as an operator adds a company CA that re-signs TLS."""
    with tempfile.TemporaryDirectory(prefix="tiktok-amp-ca-image-") as folder:
        (Path(folder) / "test-ca.crt").write_bytes(ca_pem)
        (Path(folder) / "Dockerfile").write_text(
            f"FROM {base}\n"
            "USER root\n"
            "COPY test-ca.crt /usr/local/share/ca-certificates/tiktok-amp-test-ca.crt\n"
            "RUN update-ca-certificates\n"
            "ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt\n"
            "USER dagster\n"
        )
        docker("build", "-q", "-t", tag, folder, timeout=300)
    return tag


# ------------------------------------------------------------------------------ compose


def compose_file_variables() -> set[str]:
    """The variables the compose file declares (``${NAME...}``): only these configure it."""
    return set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))


@dataclass
class Compose:
    """``docker-compose -p <project> -f deploy/docker/docker-compose.yaml`` with ``variables`` (only
    ones the file declares) and nothing else from the environment: neither a developer's exported
    variables nor deploy/docker/.env reach it."""

    project: str
    variables: dict[str, str]
    work: Path
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        unknown = set(self.variables) - compose_file_variables()
        assert not unknown, f"not variables of {COMPOSE_FILE.name}: {sorted(unknown)}"
        declared = compose_file_variables()
        base = {name: value for name, value in os.environ.items() if name not in declared}
        self.env = {**base, **self.variables}
        self._env_file = self.work / "empty.env"
        self._env_file.write_text("")

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker-compose", "-p", self.project, "-f", str(COMPOSE_FILE), "--env-file", str(self._env_file), *args]  # fmt: skip
        done = subprocess.run(
            command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[3:])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
        return done

    def container(self, service: str) -> str:
        ids = self.run("ps", "-q", service).stdout.split()
        assert len(ids) == 1, f"{service}: containers {ids}"
        return ids[0]

    def logs(self, tail: int = 60) -> str:
        done = self.run("logs", "--no-color", "--tail", str(tail), timeout=60, check=False)
        return done.stdout[-12000:] + done.stderr[-2000:]


def unique_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"
