"""Fixtures that run the project against the emulators over real sockets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
from tiktok_amp_emulators.amplitude_server import AmplitudeEmulator
from tiktok_amp_emulators.catalogue import (
    CLICKS,
    CONVERSIONS,
    IMPRESSIONS,
    SPEND,
    Catalogue,
    generate_catalogue,
)
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from tiktok_amp_assets.code_location import load_definitions
from tiktok_amp_assets.component import DEFAULT_DEFS_YAML, load_connection
from tiktok_amp_assets.connection import Connection
from tiktok_amp_assets.schedules import RANGE_END_TAG, RANGE_START_TAG

from .deploy.docker_deployment import TIER_LOG

# A PostgreSQL server per test module that asks for it (tests/postgres_server.py).
from .postgres_server import postgres  # noqa: F401

TOKEN = "test-token-3f9a1c7e5b2d4a6c8e0f1a3b5c7d9e1f"
API_KEY = "test-api-key-0a2b4c6d8e1f3a5b7c9d1e3f5a7b9c1d"
START_DATE = date(2025, 1, 1)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The Docker tier's phase timings and how its interrupted runs failed, after the session's
    results (whatever pytest captured), so CI's log shows where the tier's minutes went. Here, not in
    tests/deploy/: under pytest-xdist the printing process collects no test and loads no conftest but
    this one, and the tier's lines come from whichever worker ran it, through a file."""
    if hasattr(terminalreporter.config, "workerinput") or not TIER_LOG.exists():
        return
    terminalreporter.section("Docker deployment tier: phase timings")
    for line in TIER_LOG.read_text(encoding="utf-8").splitlines():
        terminalreporter.write_line(line)
    TIER_LOG.unlink()


@dataclass
class Project:
    """The project wired to both emulators, with a temporary Dagster instance."""

    catalogue: Catalogue
    tiktok: TikTokEmulator
    amplitude: AmplitudeEmulator
    connection: Connection  # the default one, tiktok_ads (tiktok_amp_assets/defs/tiktok_ads/defs.yaml)
    defs: dg.Definitions
    instance: dg.DagsterInstance
    env: dict[str, str]
    data_dir: Path

    @property
    def advertiser_ids(self) -> list[str]:
        return sorted(self.catalogue.advertisers)

    def rebuild(self) -> None:
        """Reload the definitions after the environment changed (as a code location reload does)."""
        self.connection = load_connection(DEFAULT_DEFS_YAML)
        self.defs = load_definitions()

    def materialize(
        self,
        first: date,
        last: date | None = None,
        *,
        raise_on_error: bool = True,
        tiktok_config: dict[str, object] | None = None,
        amplitude_config: dict[str, object] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Run the job for one day or a range, as a user runs it. ``tiktok_config`` and
        ``amplitude_config`` add fields to those resources (secrets stay environment variables)."""
        job = self.defs.resolve_job_def(self.connection.job_name)
        resources: dict[str, object] = {}
        if tiktok_config:
            tiktok_env = {"access_token": "TIKTOK_ACCESS_TOKEN", "advertiser_ids": "TIKTOK_ADVERTISER_IDS",
                          "api_url": "TIKTOK_API_URL"}  # fmt: skip
            config = {field: {"env": variable} for field, variable in tiktok_env.items()}
            resources[self.connection.resource_key("tiktok")] = {"config": {**config, **tiktok_config}}
        if amplitude_config:
            config = {"api_key": {"env": "AMPLITUDE_API_KEY"}, "api_url": {"env": "AMPLITUDE_API_URL"}}
            resources[self.connection.resource_key("amplitude")] = {"config": {**config, **amplitude_config}}
        run_config = {"resources": resources} if resources else None
        if last is None or last == first:
            return job.execute_in_process(
                partition_key=first.isoformat(),
                instance=self.instance,
                raise_on_error=raise_on_error,
                run_config=run_config,
            )
        return job.execute_in_process(
            tags={
                RANGE_START_TAG: first.isoformat(),
                RANGE_END_TAG: last.isoformat(),
            },
            instance=self.instance,
            raise_on_error=raise_on_error,
            run_config=run_config,
        )

    def tiktok_truth(self, day: date) -> dict[tuple[str, str], dict[str, Decimal]]:
        return tiktok_truth(self.catalogue, day)

    def amplitude_sums(self, day: date) -> dict[tuple[str, str], dict[str, Decimal]]:
        return amplitude_sums(self.amplitude, day)


def tiktok_truth(catalogue: Catalogue, day: date) -> dict[tuple[str, str], dict[str, Decimal]]:
    """Every ad-day TikTok reports for ``day`` (deleted ads included): (account, ad) -> figures,
    read from the emulator's catalogue in the emulator's own terms (not the client's)."""
    truth: dict[tuple[str, str], dict[str, Decimal]] = {}
    for advertiser_id in sorted(catalogue.advertisers):
        for ad in catalogue.ads_of(advertiser_id):
            metrics = catalogue.daily_metrics(ad.ad_id, day)
            if metrics is not None:
                truth[(advertiser_id, ad.ad_id)] = {
                    "cost": Decimal(metrics[SPEND]),
                    "impressions": Decimal(metrics[IMPRESSIONS]),
                    "clicks": Decimal(metrics[CLICKS]),
                    "conversions": Decimal(metrics[CONVERSIONS]),
                }
    return truth


def amplitude_sums(
    amplitude: AmplitudeEmulator, day: date, api_key: str = API_KEY
) -> dict[tuple[str, str], dict[str, Decimal]]:
    """What Amplitude counted for ``day`` in the project of ``api_key``, summed per (account, ad) as
    its charts would."""
    sums: dict[tuple[str, str], dict[str, Decimal]] = {}
    for event in amplitude.counted_events(api_key):
        properties = event["event_properties"]
        if properties["stat_date"] != day.isoformat():
            continue
        key = (properties["ad_account_id"], properties["ad_id"])
        totals = sums.setdefault(
            key, dict.fromkeys(("cost", "impressions", "clicks", "conversions"), Decimal(0))
        )
        for name in totals:
            # str() of the JSON float gives the decimal the sender meant (12.3 for "12.30").
            totals[name] += Decimal(str(properties.get(f"ad_metrics.{name}", 0)))
    return sums


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    catalogue = generate_catalogue(seed=11, ads_per_advertiser=30, start=START_DATE)
    (tmp_path / "dagster_home").mkdir()
    with (
        TikTokEmulator(catalogue, access_tokens={TOKEN: None}) as tiktok,
        AmplitudeEmulator(api_keys={API_KEY}) as amplitude,
        dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance,
    ):
        env = {
            "TIKTOK_ACCESS_TOKEN": TOKEN,
            "TIKTOK_ADVERTISER_IDS": ",".join(sorted(catalogue.advertisers)),
            "TIKTOK_API_URL": tiktok.url,
            "AMPLITUDE_API_KEY": API_KEY,
            "AMPLITUDE_API_URL": amplitude.url,
            "TIKTOK_AMP_START_DATE": START_DATE.isoformat(),
            "TIKTOK_AMP_TIMEZONE": "America/Los_Angeles",
            "TIKTOK_AMP_DATA_DIR": str(tmp_path / "data"),
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield Project(
            catalogue=catalogue,
            tiktok=tiktok,
            amplitude=amplitude,
            connection=load_connection(DEFAULT_DEFS_YAML),
            defs=load_definitions(),
            instance=instance,
            env=env,
            data_dir=tmp_path / "data",
        )


def accounts_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    """The run's ``every_account_day_imported`` check, which lists the account-days not imported."""
    return next(
        evaluation
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name == "every_account_day_imported"
    )


def ended_failed_after_delivering(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    """Assert the run ended failed only at the upload's blocking check, once the healthy accounts
    were delivered; the check's evaluation."""
    assert not result.success
    failed_steps = [str(event.step_key) for event in result.all_events if event.is_step_failure]
    assert failed_steps == ["tiktok_ads__amplitude_upload_results"], failed_steps
    check = accounts_check(result)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    return check
