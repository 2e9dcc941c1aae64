"""The emulators over HTTPS (``tls=``), as tests/deploy/ serves them to run containers: the project's
own clients reach them when the CA is trusted the way an operator trusts a company CA
(REQUESTS_CA_BUNDLE), and a client that does not trust it is refused without the server minding."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
import requests
import trustme
from tiktok_amp_emulators.amplitude_server import BATCH_PATH, AmplitudeEmulator
from tiktok_amp_emulators.catalogue import generate_catalogue
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from ..conftest import API_KEY, TOKEN, Project


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    yield path


def test_an_emulator_with_tls_answers_https_to_clients_trusting_its_ca_only(
    ca: trustme.CA, ca_file: Path
) -> None:
    with AmplitudeEmulator(api_keys={API_KEY}, tls=server_context(ca)) as amplitude:
        assert amplitude.url.startswith("https://127.0.0.1:")
        health = f"{amplitude.url}/emulator/health"
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(health, timeout=10)  # the system's CAs only
        # The refused handshake cost the server nothing: it still answers.
        assert requests.get(health, verify=str(ca_file), timeout=10).status_code == 200
        event = {"event_type": "x", "device_id": "device-1", "insert_id": "id-1"}
        answer = requests.post(
            f"{amplitude.url}{BATCH_PATH}",
            json={"api_key": API_KEY, "events": [event]},
            verify=str(ca_file),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert [counted["insert_id"] for counted in amplitude.counted_events(API_KEY)] == ["id-1"]


def test_the_project_imports_and_uploads_over_https_with_the_ca_in_requests_ca_bundle(
    project: Project, ca: trustme.CA, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tls = server_context(ca)
    catalogue = generate_catalogue(seed=11, ads_per_advertiser=5, start=date(2025, 1, 1))
    with (
        TikTokEmulator(catalogue, access_tokens={TOKEN: None}, tls=tls) as tiktok,
        AmplitudeEmulator(api_keys={API_KEY}, tls=tls) as amplitude,
    ):
        monkeypatch.setenv("TIKTOK_API_URL", tiktok.url)
        monkeypatch.setenv("AMPLITUDE_API_URL", amplitude.url)
        monkeypatch.setenv("TIKTOK_ADVERTISER_IDS", ",".join(sorted(catalogue.advertisers)))
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
        project.catalogue, project.amplitude = catalogue, amplitude
        project.rebuild()
        day = date(2025, 3, 1)
        assert project.materialize(day).success
        assert project.amplitude_sums(day) == project.tiktok_truth(day)
        assert tiktok.request_log and amplitude.request_log
