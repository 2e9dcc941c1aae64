"""Connections as users add them: the README's copy-a-folder procedure on a temporary copy of the
project, two connections against two pairs of emulators, run with the `dagster` CLI and checked with
the `dg` tools, all in their own processes over real sockets."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from tiktok_amp_emulators.amplitude_server import AmplitudeEmulator
from tiktok_amp_emulators.catalogue import AdvertiserSpec, Catalogue, generate_catalogue
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from ..conftest import API_KEY, START_DATE, TOKEN, amplitude_sums, tiktok_truth

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ACME_TOKEN = "acme-token-9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a"
ACME_API_KEY = "acme-api-key-1f2e3d4c5b6a7980a1b2c3d4e5f6a7b8"
DAYS = (date(2025, 3, 1), date(2025, 3, 2))
ACME_ADVERTISERS = [AdvertiserSpec("7100000000000000001", "Acme Brand DE", "EUR", "Europe/Berlin")]

pytestmark = pytest.mark.timeout(600)


@dataclass
class Side:
    """One connection's TikTok and Amplitude emulators."""

    catalogue: Catalogue
    tiktok: TikTokEmulator
    amplitude: AmplitudeEmulator
    api_key: str

    def sums(self, day: date) -> dict[tuple[str, str], dict[str, Decimal]]:
        return amplitude_sums(self.amplitude, day, self.api_key)


@dataclass
class TwoConnections:
    root: Path  # the temporary copy of the project
    env: dict[str, str]
    default: Side
    acme: Side

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagster", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def materialize(self, group: str, first: date, last: date) -> subprocess.CompletedProcess[str]:
        return self.cli(
            "asset", "materialize", "-m", "tiktok_amp_assets.definitions", "--select", f"group:{group}",
            "--partition-range", f"{first.isoformat()}...{last.isoformat()}",
        )  # fmt: skip

    def dg(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "dg"), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )


def copy_of_the_project(destination: Path) -> Path:
    """What a user's checkout holds that the code location needs: the package and its project files."""
    for name in ("pyproject.toml", "workspace.yaml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, destination / name)
    shutil.copytree(
        PROJECT_ROOT / "tiktok_amp_assets",
        destination / "tiktok_amp_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return destination


def add_connection(root: Path, name: str, prefix: str) -> Path:
    """The README's procedure, exactly: copy the default connection's folder under the new name, set
    ``name`` to it, and give every variable the file names another name (the same with a prefix)."""
    defs = root / "tiktok_amp_assets" / "defs"
    shutil.copytree(defs / "tiktok_ads", defs / name)
    path = defs / name / "defs.yaml"
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^  name: tiktok_ads$", f"  name: {name}", text)
    text = text.replace("{env: ", "{env: " + prefix)
    path.write_text(text, encoding="utf-8")
    return path


@contextmanager
def _two_connections(tmp_path: Path, acme_catalogue: Catalogue | None) -> Iterator[TwoConnections]:
    """The project copied, ``acme`` added as the README says, each connection with its own TikTok
    (``acme_catalogue``; None: the default connection's accounts) and Amplitude emulators."""
    (tmp_path / "project").mkdir()
    root = copy_of_the_project(tmp_path / "project")
    add_connection(root, "acme", "ACME_")
    default_catalogue = generate_catalogue(seed=11, ads_per_advertiser=12, start=START_DATE)
    acme_catalogue = acme_catalogue or default_catalogue
    (tmp_path / "dagster_home").mkdir()
    with (
        TikTokEmulator(default_catalogue, access_tokens={TOKEN: None}) as tiktok,
        AmplitudeEmulator(api_keys={API_KEY}) as amplitude,
        TikTokEmulator(acme_catalogue, access_tokens={ACME_TOKEN: None}) as acme_tiktok,
        AmplitudeEmulator(api_keys={ACME_API_KEY}) as acme_amplitude,
    ):
        variables = {
            "TIKTOK_ACCESS_TOKEN": TOKEN,
            "TIKTOK_ADVERTISER_IDS": ",".join(sorted(default_catalogue.advertisers)),
            "TIKTOK_API_URL": tiktok.url,
            "AMPLITUDE_API_KEY": API_KEY,
            "AMPLITUDE_API_URL": amplitude.url,
            "TIKTOK_AMP_START_DATE": START_DATE.isoformat(),
            "TIKTOK_AMP_TIMEZONE": "America/Los_Angeles",
            "ACME_TIKTOK_ACCESS_TOKEN": ACME_TOKEN,
            "ACME_TIKTOK_ADVERTISER_IDS": ",".join(sorted(acme_catalogue.advertisers)),
            "ACME_TIKTOK_API_URL": acme_tiktok.url,
            "ACME_AMPLITUDE_API_KEY": ACME_API_KEY,
            "ACME_AMPLITUDE_API_URL": acme_amplitude.url,
            "ACME_TIKTOK_AMP_START_DATE": START_DATE.isoformat(),
            "ACME_TIKTOK_AMP_TIMEZONE": "America/Los_Angeles",
        }
        inherited = {
            name: value for name, value in os.environ.items() if not name.startswith(("TIKTOK", "AMPLITUDE"))
        }
        env = {
            **inherited,
            **variables,
            "TIKTOK_AMP_DATA_DIR": str(tmp_path / "data"),
            "DAGSTER_HOME": str(tmp_path / "dagster_home"),
            # dg runs the project's Python: this one.
            "VIRTUAL_ENV": str(Path(sys.executable).parent.parent),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        yield TwoConnections(
            root=root,
            env=env,
            default=Side(default_catalogue, tiktok, amplitude, API_KEY),
            acme=Side(acme_catalogue, acme_tiktok, acme_amplitude, ACME_API_KEY),
        )


@pytest.fixture
def two_connections(tmp_path: Path) -> Iterator[TwoConnections]:
    acme = generate_catalogue(seed=12, advertisers=ACME_ADVERTISERS, ads_per_advertiser=12, start=START_DATE)
    with _two_connections(tmp_path, acme) as setup:
        yield setup


@pytest.fixture
def one_advertiser_two_projects(tmp_path: Path) -> Iterator[TwoConnections]:
    """acme reads the default connection's accounts (another token of the same Business Center)
    into its own Amplitude project."""
    with _two_connections(tmp_path, None) as setup:
        yield setup


def _delivered_exactly(side: Side) -> None:
    for day in DAYS:
        assert side.sums(day) == tiktok_truth(side.catalogue, day), day
    assert side.sums(DAYS[0])  # not vacuous: the day has ad-days


def test_a_copied_connection_imports_its_own_accounts_into_its_own_project_and_reruns_send_nothing(
    two_connections: TwoConnections,
) -> None:
    setup = two_connections
    for group in ("tiktok_ads", "acme"):
        done = setup.materialize(group, DAYS[0], DAYS[-1])
        assert done.returncode == 0, done.stderr[-3000:]
    _delivered_exactly(setup.default)
    _delivered_exactly(setup.acme)
    # Each Amplitude received its own connection's accounts only.
    assert {
        e["event_properties"]["ad_account_id"] for e in setup.acme.amplitude.counted_events(ACME_API_KEY)
    } == set(setup.acme.catalogue.advertisers)
    assert setup.default.amplitude.counted_events(ACME_API_KEY) == []
    assert setup.acme.amplitude.counted_events(API_KEY) == []
    # Each connection's files in its own folder of the one data folder.
    data = Path(setup.env["TIKTOK_AMP_DATA_DIR"])
    for name, side in (("tiktok_ads", setup.default), ("acme", setup.acme)):
        stored = {path.stem for path in (data / name / "raw" / DAYS[0].isoformat()).glob("*.json")}
        assert stored == set(side.catalogue.advertisers)
    instance = dg.DagsterInstance.from_config(setup.env["DAGSTER_HOME"])
    for name in ("tiktok_ads", "acme"):
        assert instance.get_materialized_partitions(dg.AssetKey([name, "amplitude_upload_results"])) == {
            day.isoformat() for day in DAYS
        }

    # A second run of both sends nothing new.
    requests = (setup.default.amplitude.requests_count(), setup.acme.amplitude.requests_count())
    for group in ("tiktok_ads", "acme"):
        again = setup.materialize(group, DAYS[0], DAYS[-1])
        assert again.returncode == 0, again.stderr[-3000:]
    assert (setup.default.amplitude.requests_count(), setup.acme.amplitude.requests_count()) == requests
    _delivered_exactly(setup.default)
    _delivered_exactly(setup.acme)


def test_the_same_advertiser_in_two_projects_and_a_revoked_token_fails_only_its_connection(
    one_advertiser_two_projects: TwoConnections,
) -> None:
    setup = one_advertiser_two_projects
    for group in ("tiktok_ads", "acme"):
        done = setup.materialize(group, DAYS[0], DAYS[-1])
        assert done.returncode == 0, done.stderr[-3000:]
    _delivered_exactly(setup.default)
    _delivered_exactly(setup.acme)

    # acme's token revoked: its run fails, naming its variable; the default connection's succeeds.
    setup.acme.tiktok.access_tokens.clear()
    day = DAYS[-1] + timedelta(days=1)
    failed = setup.materialize("acme", day, day)
    assert failed.returncode != 0
    assert "ACME_TIKTOK_ACCESS_TOKEN" in failed.stdout + failed.stderr
    assert ACME_TOKEN not in failed.stdout + failed.stderr
    succeeded = setup.materialize("tiktok_ads", day, day)
    assert succeeded.returncode == 0, succeeded.stderr[-3000:]
    assert setup.default.sums(day) == tiktok_truth(setup.default.catalogue, day)
    assert setup.acme.sums(day) == {}


def test_dg_lists_both_connections_and_check_yaml_names_the_file_and_the_field(
    two_connections: TwoConnections,
) -> None:
    setup = two_connections
    listed = setup.dg("list", "defs", "--json")
    assert listed.returncode == 0, listed.stderr[-3000:]
    for name in ("tiktok_ads", "acme"):
        for asset in ("tiktok_raw_reports", "tiktok_ad_metrics", "amplitude_upload_results"):
            assert f"{name}/{asset}" in listed.stdout
        assert f"{name}_daily" in listed.stdout and f"{name}_job" in listed.stdout
    assert ACME_TOKEN not in listed.stdout and TOKEN not in listed.stdout

    acme_folder = Path("tiktok_amp_assets") / "defs" / "acme"
    checked = setup.dg("check", "yaml", str(acme_folder))
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]

    path = setup.root / acme_folder / "defs.yaml"
    good = path.read_text(encoding="utf-8")
    for wrong, field in (
        ("  advertiser_ids: {env: ACME_TIKTOK_ADVERTISER_IDS}", "advertiser_ids"),
        (
            "  advertiser_ids: {env: ACME_TIKTOK_ADVERTISER_IDS}\n  advertiser_id: ['7000000000000000001']",
            "advertiser_id",
        ),
    ):
        bad = good
        if field == "advertiser_ids":  # a malformed id among the ids written in the file
            bad = good.replace(wrong, '  advertiser_ids: ["7000000000000000001", "7000-0001"]')
        else:  # a field the component does not have
            bad = good.replace("  advertiser_ids: {env: ACME_TIKTOK_ADVERTISER_IDS}", wrong)
        path.write_text(bad, encoding="utf-8")
        refused = setup.dg("check", "yaml", str(acme_folder))
        output = refused.stdout + refused.stderr
        assert refused.returncode != 0, output[-3000:]
        assert f"{path}:" in output and f"attributes.{field}" in output, output[-3000:]
    path.write_text(good, encoding="utf-8")
