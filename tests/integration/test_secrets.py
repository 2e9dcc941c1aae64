"""Secrets stay secret, TLS stays verified, plain HTTP stays local, stored files are never torn.

- The access token and the API key reach only the request that needs them: after runs that succeed,
  retry and fail, neither is in Dagster's event logs, run configs or storage, the data folder, any
  log record, stdout/stderr, an exception text, or the emulators' request logs.
- TLS certificates are verified (a self-signed server is refused, and accepted once its CA is
  trusted), redirects are never followed, and plain http:// goes to loopback hosts only.
- The store's files are written atomically: a process killed mid-write leaves the old file or the
  new one, never a torn one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import urllib3
from tiktok_amp_emulators.amplitude_server import AmplitudeEmulator
from tiktok_amp_emulators.faults import Fault
from tiktok_amp_emulators.http_server import Request, Response

from tiktok_amp_assets.clients.amplitude import AmplitudeApiError, AmplitudeClient
from tiktok_amp_assets.clients.http import InsecureUrlError, RetryPolicy, checked_base_url
from tiktok_amp_assets.clients.tiktok import TikTokApiError, TikTokClient
from tiktok_amp_assets.code_location import connection_definitions, connection_resources
from tiktok_amp_assets.component import DEFAULT_DEFS_YAML, load_connection
from tiktok_amp_assets.core.amplitude_contract import EVENT_TYPE, HTTP_V2_PATH
from tiktok_amp_assets.core.tiktok_contract import ACCESS_TOKEN_HEADER, ADVERTISER_INFO_PATH
from tiktok_amp_assets.resources import AmplitudeResource, TikTokResource
from tiktok_amp_assets.settings import ConfigurationError
from tiktok_amp_assets.storage.import_store import ImportStore

from ..conftest import API_KEY, TOKEN, Project

ACME = "7000000000000000001"
DAY = date(2025, 3, 1)
WRONG_KEY = "wrong-api-key-7d1f9b3e5a2c4e6f8091a2b3"
FAST_RETRY = RetryPolicy(max_attempts=3, base_seconds=0.01, max_seconds=0.02)


# ----- no secret anywhere after a run


def _run(project: Project, first: date, last: date | None = None) -> dg.ExecuteInProcessResult:
    """The job with fast back-off, its secrets passed as users pass them: by environment variable."""
    fast = {"backoff_base_seconds": 0.01, "backoff_max_seconds": 0.02}
    return project.materialize(
        first,
        last,
        raise_on_error=False,
        tiktok_config={**fast, "retry_budget_minutes": 0.005},
        amplitude_config={**fast, "max_attempts": 4, "throttle_pause_seconds": 0.01},
    )


def _fragments(secret: str) -> list[str]:
    """The secret and its two halves: a message cut short must not leak a usable part either."""
    half = len(secret) // 2
    return [secret, secret[:half], secret[half:]]


def test_no_secret_reaches_storage_logs_errors_or_the_emulators(
    project: Project,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: Dagster's, the project's, urllib3's, the emulators'
    # A day with retries on both sides, a range on the Batch endpoint, then two failures that tempt
    # a leak: Amplitude quoting back a wrong key, and TikTok refusing a revoked token.
    project.tiktok.faults.inject(Fault.RATE_LIMIT)
    project.tiktok.faults.inject(Fault.TRUNCATED_BODY)
    project.amplitude.faults.inject(Fault.ACCEPTED_THEN_ERROR)
    project.amplitude.faults.inject(Fault.RATE_LIMIT)
    results = [_run(project, DAY), _run(project, DAY + timedelta(days=1), DAY + timedelta(days=2))]
    assert all(result.success for result in results)
    project.amplitude.echo_invalid_api_key = True
    monkeypatch.setenv("AMPLITUDE_API_KEY", WRONG_KEY)
    results.append(_run(project, DAY + timedelta(days=3)))
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    project.tiktok.access_tokens.clear()
    results.append(_run(project, DAY + timedelta(days=4)))
    assert [result.success for result in results] == [True, True, False, False]
    assert project.tiktok.faults.total_injected == 2 and project.amplitude.faults.total_injected == 2

    instance = project.instance
    runs = instance.get_runs()
    errors = [
        event.event_specific_data.error
        for result in results
        for event in result.all_events
        if getattr(event.event_specific_data, "error", None) is not None
    ]
    files = [
        path
        for folder in (project.data_dir, Path(instance.root_directory))
        for path in folder.rglob("*")
        if path.is_file()
    ]
    captured = capfd.readouterr()
    places: dict[str, str] = {
        "event logs": "\n".join(
            dg.serialize_value(entry) for run in runs for entry in instance.all_logs(run.run_id)
        ),
        "runs and their configs": "\n".join(
            dg.serialize_value(run) + json.dumps(run.run_config) + json.dumps(run.tags) for run in runs
        ),
        "files": "\n".join(path.read_bytes().decode("utf-8", "replace") for path in files),
        "python log records": "\n".join(
            f"{record.getMessage()} {record.args!r} {record.exc_text or ''} {record.__dict__!r}"
            for record in caplog.records
        ),
        "stdout and stderr": captured.out + captured.err,
        "exception texts": "\n".join(error.to_string() for error in errors),
        "TikTok emulator's request log": json.dumps(project.tiktok.request_log),
        "Amplitude emulator's request log": json.dumps(project.amplitude.request_log),
        "Amplitude emulator's events": json.dumps(project.amplitude.counted_events()),
    }
    # Each place holds what it should, so an empty or unread place cannot pass for a clean one.
    controls = {
        "event logs": "Invalid API key: <redacted>",
        "runs and their configs": "AMPLITUDE_API_KEY",  # the variable's name: its value is never stored
        "files": ACME,
        "python log records": ADVERTISER_INFO_PATH,  # the emulator's request lines, urllib3's too
        "stdout and stderr": "40105",  # Dagster's console log, failure messages included
        "exception texts": "TIKTOK_ACCESS_TOKEN",
        "TikTok emulator's request log": ACME,
        "Amplitude emulator's request log": HTTP_V2_PATH,
        "Amplitude emulator's events": ACME,
    }
    assert {name for name, text in places.items() if controls[name] not in text} == set()
    assert any(path.name.startswith("amplitude_ledger.sqlite") for path in files)
    assert any(path.suffix == ".db" for path in files), "Dagster's own storage should be among the files"
    assert any(record.name.startswith("urllib3") for record in caplog.records)
    leaks = [
        (name, fragment[:6] + "...")
        for name, text in places.items()
        for secret in (TOKEN, API_KEY, WRONG_KEY)
        for fragment in _fragments(secret)
        if fragment in text
    ]
    assert leaks == []


def test_resources_never_show_their_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    tiktok = TikTokResource(access_token=TOKEN, advertiser_ids=ACME)
    amplitude = AmplitudeResource(api_key=API_KEY)
    assert TOKEN not in repr(tiktok) and TOKEN not in str(tiktok)
    assert API_KEY not in repr(amplitude) and API_KEY not in str(amplitude)
    # The definitions read them through EnvVar: the UI shows the variable's name, not its value.
    monkeypatch.setenv("TIKTOK_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("AMPLITUDE_API_KEY", API_KEY)
    monkeypatch.setenv("TIKTOK_AMP_DATA_DIR", "/nonexistent")
    connection = load_connection(DEFAULT_DEFS_YAML)
    resources = connection_resources(connection)
    # The connection's assets carry these (bound to them, not to the whole code location).
    bound = set().union(*(assets.resource_defs for assets in connection_definitions(connection).assets or []))
    assert set(resources) <= bound
    assert isinstance(resources["tiktok_ads_tiktok"].access_token, dg.EnvVar)
    assert isinstance(resources["tiktok_ads_amplitude"].api_key, dg.EnvVar)


# ----- plain HTTP and redirects


@pytest.mark.parametrize(
    ("url", "connects_to"),
    [
        # urlsplit reads 127.0.0.1 (loopback: plain http allowed); urllib3, which connects, reads the other.
        ("http://tiktok.example\\@127.0.0.1:8080", "tiktok.example"),
        ("http://user:secret-password@127.0.0.1:8080", "127.0.0.1"),
        ("http://127.0.0.1:8080/ \\@tiktok.example", "127.0.0.1"),
    ],
)
def test_urls_whose_host_is_ambiguous_or_carries_credentials_are_refused(url: str, connects_to: str) -> None:
    assert urllib3.util.parse_url(url).host == connects_to
    with pytest.raises(InsecureUrlError, match="TIKTOK_API_URL must be a plain base URL") as raised:
        checked_base_url(url, variable="TIKTOK_API_URL")
    assert "secret-password" not in str(raised.value)


def test_plain_http_is_allowed_for_loopback_only_unless_asked() -> None:
    for url in ("http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1"):
        assert checked_base_url(url, variable="AMPLITUDE_API_URL") == url
    for url in ("http://0.0.0.0:1", "http://10.1.2.3", "http://localhost.example", "http://[::ffff:8.8.8.8]"):
        with pytest.raises(InsecureUrlError, match="plain http://"):
            checked_base_url(url, variable="AMPLITUDE_API_URL")
    allowed = AmplitudeResource(
        api_key=API_KEY, api_url="http://amplitude-proxy.internal", allow_insecure_http=True
    )
    assert allowed.client(days=1).path == HTTP_V2_PATH
    with pytest.raises(ConfigurationError, match="plain http://"):
        AmplitudeResource(api_key=API_KEY, api_url="http://amplitude-proxy.internal").client(days=1)


class _RedirectingAmplitude(AmplitudeEmulator):
    """Amplitude behind a proxy that answers every ingestion request with a redirect."""

    def __init__(self, location: str, status: int) -> None:
        super().__init__(api_keys={API_KEY})
        self.location = location
        self.status = status

    def handle(self, request: Request, fault: Fault | None) -> Response:
        if request.path == HTTP_V2_PATH:
            return Response(self.status, b"", content_type="text/plain", headers={"Location": self.location})
        return super().handle(request, fault)


@pytest.mark.parametrize("status", [307, 308, 302])
def test_amplitude_redirects_are_not_followed_so_the_key_stays_home(status: int) -> None:
    with AmplitudeEmulator(api_keys={API_KEY}) as elsewhere:
        with _RedirectingAmplitude(elsewhere.url + HTTP_V2_PATH, status) as proxy:
            client = AmplitudeClient(proxy.url, API_KEY, retry=FAST_RETRY)
            event = {"event_type": EVENT_TYPE, "device_id": "tiktok-ad-1", "insert_id": "tiktok-x", "time": 1}
            with pytest.raises(
                AmplitudeApiError, match=f"HTTP {status} \\(a redirect, not followed\\)"
            ) as raised:
                list(client.send([event]))
            client.close()
        assert "AMPLITUDE_API_URL" in str(raised.value) and API_KEY not in str(raised.value)
        assert elsewhere.request_log == [] and elsewhere.counted_events() == []


# ----- TLS verification


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate for the TLS tests")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class _TlsServer(ThreadingHTTPServer):
    """A minimal TikTok + Amplitude over HTTPS, recording what reaches it past the TLS handshake."""

    daemon_threads = True

    def __init__(self, cert: Path, key: Path) -> None:
        super().__init__(("127.0.0.1", 0), _TlsHandler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.socket = context.wrap_socket(self.socket, server_side=True)
        self.requests: list[tuple[str, dict[str, str]]] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that refused the certificate hangs up: expected here


class _TlsHandler(BaseHTTPRequestHandler):
    server: _TlsServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers)))
        self._answer({"code": 0, "message": "OK", "data": {"list": [{"advertiser_id": ACME}]}})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests.append((self.path, dict(self.headers)))
        self._answer({"code": 200, "events_ingested": 1, "payload_size_bytes": 1, "server_upload_time": 1})

    def _answer(self, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[_TlsServer]:
    server = _TlsServer(*certificate)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_an_unverifiable_certificate_is_refused_at_once_and_trusted_once_its_ca_is(
    tls_server: _TlsServer, certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    event = {"event_type": EVENT_TYPE, "device_id": "tiktok-ad-1", "insert_id": "tiktok-x", "time": 1}
    tiktok = TikTokClient(tls_server.url, TOKEN, retry=FAST_RETRY)
    amplitude = AmplitudeClient(tls_server.url, API_KEY, retry=FAST_RETRY)
    with pytest.raises(TikTokApiError, match="TLS certificate could not be verified") as tiktok_error:
        tiktok.advertiser_info([ACME])
    with pytest.raises(AmplitudeApiError, match="TLS certificate could not be verified") as amplitude_error:
        list(amplitude.send([event]))
    # No retry (no cure in waiting), a message saying what to do, and nothing past the handshake.
    assert tiktok.retries == 0 and amplitude.retries == 0
    assert "TIKTOK_API_URL" in str(tiktok_error.value) and "REQUESTS_CA_BUNDLE" in str(tiktok_error.value)
    assert "AMPLITUDE_API_URL" in str(amplitude_error.value)
    assert tls_server.requests == []

    # The same server, its CA trusted as a company proxy's would be: both clients go through.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))
    assert tiktok.advertiser_info([ACME]) == [{"advertiser_id": ACME}]
    assert [len(delivery.accepted) for delivery in amplitude.send([event])] == [1]
    tiktok.close()
    amplitude.close()
    (info_path, headers), (amplitude_path, _) = tls_server.requests
    assert info_path.startswith(ADVERTISER_INFO_PATH) and headers[ACCESS_TOKEN_HEADER] == TOKEN
    assert amplitude_path == HTTP_V2_PATH


# ----- atomic files under SIGKILL

# Writes two versions of a raw report, 20 MB each, in turn and forever: large strings, so that most
# of each cycle is spent writing the file rather than encoding it, and a kill often lands mid-write.
_WRITER = """
import sys
from datetime import date
from pathlib import Path
from tiktok_amp_assets.storage.import_store import ImportStore

store = ImportStore(Path(sys.argv[1]))
versions = [{"version": name, "report_rows": [name * 4_000_000] * 5} for name in "ab"]
print("ready", flush=True)
while True:
    for version in versions:
        store.write_raw_report(date(2025, 3, 1), "7000000000000000001", version)
"""


def test_a_process_killed_mid_write_leaves_the_old_file_or_the_new_one(tmp_path: Path) -> None:
    store = ImportStore(tmp_path)
    path = store.raw_report_path(DAY, ACME)
    kills = interrupted_writes = 0
    while kills < 20 and (interrupted_writes == 0 or kills < 4):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path)],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        assert writer.stdout is not None and writer.stdout.readline() == b"ready\n"
        time.sleep(0.05 + 0.013 * kills)  # a few writes in, at another moment of the cycle each time
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        kills += 1
        # A kill mid-write leaves a hidden temporary file next to the report, never a torn report.
        temporary = list(path.parent.glob(f".{path.name}.*.tmp"))
        interrupted_writes += bool(temporary)
        for leftover in temporary:
            leftover.unlink()
        if path.exists():
            report = store.read_raw_report(DAY, ACME)
            assert report["version"] in ("a", "b")
            assert report["report_rows"] == [report["version"] * 4_000_000] * 5
    assert interrupted_writes, f"none of {kills} kills landed mid-write: the test proved nothing"
