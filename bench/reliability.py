"""Reliability: a backfill under injected faults and SIGKILLs must end with Amplitude equal to TikTok.

    .venv/bin/python bench/reliability.py                  # 60 days, 2 accounts, 20% faults, 6 kills
    .venv/bin/python bench/reliability.py --days 10 --ads 20 --kills 3 --restriction-seconds 5
    .venv/bin/python bench/reliability.py --state cluster  # data folder in S3, ledger in PostgreSQL

Both emulators run in this process and fail a share of requests (rate limits, 5xx, dropped
connections, truncated bodies; 413/429 and "ingested, then 500" on Amplitude); TikTok also restricts
the whole app for minutes as the first run starts ("requests from App ... are temporarily
restricted", code 40100) and is under maintenance (60001) for half as long as the last run starts,
outages the runs wait out within their retry budget. Accounts misbehave too: a third account the
token cannot read (40001 on every endpoint), and spend in one account's totals that no ad row holds
on every seventh day (as GMV Max campaigns). Every run then ends failed at the upload's check
``every_account_day_imported`` naming the unreadable account, after delivering the others: that is
the expected end of a run here; any other failure stops the script. The backfill runs as
users run it (`dagster asset materialize --partition-range`, one run for the range) in a child
process; this script SIGKILLs that process at chosen points (mid TikTok pagination, mid Amplitude
upload, mid write of a partition's files), runs it again, and at the end compares, for every ad-day,
what Amplitude counted with what TikTok reports, to the cent, for every ad-day the readable accounts
can deliver (and nothing of the unreadable one). Prints one table; exits 1 on any discrepancy.

``--state cluster`` keeps the state as a cluster does: the data folder in S3 (moto's S3 server on
127.0.0.1) and the ledger in PostgreSQL (Debian's server, started as the tests start it), so every
kill also tests that state.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from cluster_state import cluster_state as started_cluster_state
from tiktok_amp_emulators.amplitude_server import AmplitudeEmulator
from tiktok_amp_emulators.catalogue import DEFAULT_ADVERTISERS, AdvertiserSpec, Catalogue, generate_catalogue
from tiktok_amp_emulators.demo import demo_environment, prepare_home
from tiktok_amp_emulators.faults import Fault, FaultInjector
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from tiktok_amp_assets.connection import DEFAULT_CONNECTION
from tiktok_amp_assets.core import tiktok_contract as tiktok_api

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "reliability-token"
API_KEY = "reliability-api-key"
FIRST_DAY = date(2025, 2, 1)
METRICS = ("cost", "impressions", "clicks", "conversions")
# The account TikTok refuses throughout, and the spend no ad row holds on every seventh day of the
# first account.
UNREADABLE = AdvertiserSpec("7000000000000000003", "Closed Client", "USD", "UTC")
UNATTRIBUTED_SPEND = "12.34"
UNATTRIBUTED_EVERY_DAYS = 7

# A "slow" fault answers after the clients' timeout: a timeout, retried.
SLOW_SECONDS = 1.5
# How long TikTok restricts the app as the first run starts (maintenance: half as long, last run).
RESTRICTION_SECONDS = 150
# Fast back-off: the faults are many and the emulators answer at once.
RUN_CONFIG = """
resources:
  tiktok_ads_tiktok:
    config:
      access_token: {env: TIKTOK_ACCESS_TOKEN}
      advertiser_ids: {env: TIKTOK_ADVERTISER_IDS}
      api_url: {env: TIKTOK_API_URL}
      requests_per_second: 200
      retry_budget_minutes: RETRY_BUDGET_MINUTES
      backoff_base_seconds: 0.02
      backoff_max_seconds: 2
      timeout_seconds: 1
  tiktok_ads_amplitude:
    config:
      api_key: {env: AMPLITUDE_API_KEY}
      api_url: {env: AMPLITUDE_API_URL}
      max_attempts: 12
      backoff_base_seconds: 0.02
      backoff_max_seconds: 0.2
      throttle_pause_seconds: 0.05
      timeout_seconds: 1
      max_events_per_request: 50
"""


@dataclass
class Report:
    faults_tiktok: int = 0
    faults_amplitude: int = 0
    retries: int = 0
    runs: int = 0
    kills: list[str] = field(default_factory=list)
    ad_days_checked: int = 0
    discrepancies: list[str] = field(default_factory=list)
    duplicates: int = 0
    outage_seconds: float = 0.0
    unreadable_accounts_named: int = 0  # runs whose check named the unreadable account
    unreadable_ad_days_counted: int = 0  # must stay 0: nothing of an account TikTok refused
    unattributed_account_days: int = 0  # account-days delivered with spend no ad row holds

    def table(self) -> str:
        rows = [
            ("faults injected (TikTok)", self.faults_tiktok),
            ("TikTok outages waited out (restriction, then maintenance)", f"{self.outage_seconds:g} s"),
            ("faults injected (Amplitude)", self.faults_amplitude),
            ("retries made", self.retries),
            ("runs started", self.runs),
            ("kills survived", len(self.kills)),
            ("kill points", ", ".join(self.kills) or "-"),
            ("unreadable account: runs naming it", self.unreadable_accounts_named),
            ("unreadable account: ad-days counted", self.unreadable_ad_days_counted),
            ("account-days with unattributed spend (delivered)", self.unattributed_account_days),
            ("ad-days checked (deliverable)", self.ad_days_checked),
            ("duplicate events counted", self.duplicates),
            ("discrepancies", len(self.discrepancies)),
        ]
        return "\n".join(
            ["| figure | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]
        )


@dataclass
class State:
    """Where the runs keep the data folder and the ledger: their environment, and how many upload
    results files were written since a moment (a kill point's condition)."""

    env: dict[str, str]
    results_written_since: Callable[[float], int]


def local_state(data_dir: Path) -> State:
    def written_since(start: float) -> int:
        count = 0
        folder = data_dir / DEFAULT_CONNECTION / "uploads"  # the connection's own folder
        for path in folder.glob("*.json") if folder.exists() else ():
            try:
                count += path.stat().st_mtime >= start
            except FileNotFoundError:  # a temporary file renamed into place meanwhile
                continue
        return count

    return State({"TIKTOK_AMP_DATA_DIR": str(data_dir)}, written_since)


@contextmanager
def cluster_state() -> Iterator[State]:
    """An S3 server and a PostgreSQL server for the length of the benchmark (bench/cluster_state.py)."""
    with started_cluster_state("reliability") as cluster:
        client = cluster.s3.client()

        def written_since(start: float) -> int:
            listed = client.list_objects_v2(
                Bucket=cluster.bucket, Prefix=f"state/{DEFAULT_CONNECTION}/uploads/"
            ).get("Contents", [])
            # S3 keeps whole seconds: count from the second the run started.
            return sum(1 for item in listed if item["LastModified"].timestamp() >= int(start))

        yield State(cluster.env, written_since)


def kill_points(
    tiktok: TikTokEmulator, amplitude: AmplitudeEmulator, state: State
) -> dict[str, Callable[[], bool]]:
    """Moments to SIGKILL the run at, each a condition polled while the run goes on. Counts are
    taken relative to the moment the run starts, so each point falls inside that run."""

    def after_report_pages(pages: int) -> Callable[[], bool]:
        start = tiktok.calls(tiktok_api.REPORT_PATH)
        return lambda: tiktok.calls(tiktok_api.REPORT_PATH) >= start + pages

    def after_uploads(requests: int) -> Callable[[], bool]:
        start = amplitude.requests_count()
        return lambda: amplitude.requests_count() >= start + requests

    def after_results_files(files: int) -> Callable[[], bool]:
        # Written by this run: every run rewrites each day's results, so count by time, not by name.
        start = time.time()
        return lambda: state.results_written_since(start) >= files

    # In this order every point falls inside its run: each run pages through TikTok again, sends
    # what the runs before it left unacknowledged, and rewrites every day's results.
    return {
        "mid TikTok pagination": after_report_pages(2),
        "mid TikTok pagination (later)": after_report_pages(5),
        "mid Amplitude upload": after_uploads(2),
        "mid Amplitude upload (later)": after_uploads(4),
        "mid results writes": after_results_files(2),
        "mid results writes (later)": after_results_files(5),
    }


# Log lines of the clients' retries: back-off after a fault (TikTok's "waiting 2 s, ...", Amplitude's
# "retrying in"), a throttle pause, a 413 split.
RETRY_LINE = re.compile(
    r": waiting [0-9.]+ s|retrying .*in \d|pausing their devices|payload too large; halving"
)


# How a run ends when all it could not import is the unreadable account's days (dagster's log).
ACCOUNTS_CHECK_FAILED = "blocking asset check failed with ERROR severity:\ntiktok_ads/amplitude_upload_results: every_account_day_imported"
STEP_FAILURE = re.compile(r" - (\w+) - STEP_FAILURE - ")


def run_backfill(
    env: dict[str, str],
    config: Path,
    first: date,
    last: date,
    kill_when: Callable[[], bool] | None,
    log: Path,
) -> bool:
    """One run of the range, its output in ``log``; True if it was killed, False if it finished,
    delivering every readable account (raises on any other failure)."""
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "tiktok_amp_assets.definitions",
        "--select", "group:tiktok_ads", "--partition-range", f"{first.isoformat()}...{last.isoformat()}", "--config", str(config),
    ]  # fmt: skip
    # To a file, not a pipe: a full pipe would stall the run while this loop polls.
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while process.poll() is None:
            if kill_when is not None and kill_when():
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(0.005)
    if process.returncode != 0:
        text = log.read_text(errors="replace")
        if ACCOUNTS_CHECK_FAILED not in text or set(STEP_FAILURE.findall(text)) != {
            "tiktok_ads__amplitude_upload_results"
        }:
            raise RuntimeError(f"the backfill failed (exit {process.returncode}), see {log}:\n{text[-4000:]}")
    return False


def retries_logged(logs: Path) -> int:
    return sum(
        1
        for log in logs.glob("*.log")
        for line in log.read_text(errors="replace").splitlines()
        if RETRY_LINE.search(line)
    )


def check(
    report: Report,
    catalogue: Catalogue,
    amplitude: AmplitudeEmulator,
    advertiser_ids: list[str],
    days: list[date],
) -> None:
    counted: dict[tuple[str, str, str], dict[str, Decimal]] = {}
    insert_ids: set[str] = set()
    for event in amplitude.counted_events(API_KEY):
        if event["insert_id"] in insert_ids:
            report.duplicates += 1
        insert_ids.add(event["insert_id"])
        properties = event["event_properties"]
        key = (properties["ad_account_id"], properties["ad_id"], properties["stat_date"])
        sums = counted.setdefault(key, dict.fromkeys(METRICS, Decimal(0)))
        for name in METRICS:
            sums[name] += Decimal(str(properties.get(f"ad_metrics.{name}", 0)))
    truth: dict[tuple[str, str, str], dict[str, Decimal]] = {}
    for advertiser_id in advertiser_ids:
        for ad in catalogue.ads_of(advertiser_id):
            for day in days:
                metrics = catalogue.daily_metrics(ad.ad_id, day)
                if metrics is not None:
                    truth[(advertiser_id, ad.ad_id, day.isoformat())] = {
                        "cost": Decimal(metrics[tiktok_api.SPEND]),
                        "impressions": Decimal(metrics[tiktok_api.IMPRESSIONS]),
                        "clicks": Decimal(metrics[tiktok_api.CLICKS]),
                        "conversions": Decimal(metrics[tiktok_api.CONVERSIONS]),
                    }
    for key in [key for key in counted if key[0] == UNREADABLE.advertiser_id]:
        report.unreadable_ad_days_counted += 1
        del counted[key]
    for key in sorted(truth.keys() | counted.keys()):
        report.ad_days_checked += 1
        if truth.get(key, dict.fromkeys(METRICS, Decimal(0))) != counted.get(
            key, dict.fromkeys(METRICS, Decimal(0))
        ):
            report.discrepancies.append(f"{key}: TikTok {truth.get(key)} Amplitude {counted.get(key)}")


def run(
    *,
    days: int,
    ads: int,
    kills: int,
    fault_rate: float,
    seed: int,
    state: str = "local",
    restriction_seconds: float = RESTRICTION_SECONDS,
) -> Report:
    catalogue = generate_catalogue(
        seed=seed,
        advertisers=[*DEFAULT_ADVERTISERS, UNREADABLE],
        ads_per_advertiser=ads,
        start=date(2025, 1, 1),
    )
    advertiser_ids = sorted(catalogue.advertisers)
    readable = [
        advertiser_id for advertiser_id in advertiser_ids if advertiser_id != UNREADABLE.advertiser_id
    ]
    day_list = [FIRST_DAY + timedelta(days=offset) for offset in range(days)]
    home = Path(tempfile.mkdtemp(prefix="reliability-"))
    prepare_home(home)
    logs = home / "logs"
    logs.mkdir()
    config = home / "run_config.yaml"
    # The runs wait out both outages (and the random faults around them) within their budget.
    config.write_text(
        RUN_CONFIG.replace("RETRY_BUDGET_MINUTES", f"{max(5.0, 2 * restriction_seconds / 60):g}")
    )
    tiktok_faults = FaultInjector(
        fault_rate,
        seed=seed,
        kinds=(
            Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.HTTP_503, Fault.DROP_CONNECTION, Fault.TRUNCATED_BODY,
            Fault.SLOW,
        ),
        slow_seconds=SLOW_SECONDS,
    )  # fmt: skip
    amplitude_faults = FaultInjector(
        fault_rate,
        seed=seed + 1,
        kinds=(
            Fault.RATE_LIMIT, Fault.SERVER_ERROR, Fault.HTTP_503, Fault.DROP_CONNECTION,
            Fault.PAYLOAD_TOO_LARGE, Fault.ACCEPTED_THEN_ERROR, Fault.SLOW,
        ),
        slow_seconds=SLOW_SECONDS,
    )  # fmt: skip
    report = Report()
    try:
        with (
            ExitStack() as servers,
            TikTokEmulator(catalogue, access_tokens={TOKEN: None}, faults=tiktok_faults) as tiktok,
            AmplitudeEmulator(api_keys={API_KEY}, faults=amplitude_faults) as amplitude,
        ):
            where = (
                servers.enter_context(cluster_state()) if state == "cluster" else local_state(home / "data")
            )
            tiktok.refuse_account(UNREADABLE.advertiser_id, code=40001)
            for day in day_list[::UNATTRIBUTED_EVERY_DAYS]:
                tiktok.add_unattributed_spend(readable[0], day, UNATTRIBUTED_SPEND)
                report.unattributed_account_days += 1
            env = {
                **os.environ,
                **demo_environment(
                    home,
                    tiktok.url,
                    amplitude.url,
                    advertiser_ids,
                    token=TOKEN,
                    api_key=API_KEY,
                    start_date="2025-01-01",
                    timezone="UTC",
                ),
                **where.env,
            }
            if restriction_seconds:
                # From the first request of the first run on, the whole app is restricted for minutes.
                tiktok_faults.inject_for(Fault.APP_RESTRICTED, seconds=restriction_seconds)
            for name in list(kill_points(tiktok, amplitude, where))[:kills]:
                # Made anew before each run, so its counts start from this run.
                condition = kill_points(tiktok, amplitude, where)[name]
                report.runs += 1
                if run_backfill(
                    env, config, day_list[0], day_list[-1], condition, logs / f"run-{report.runs}.log"
                ):
                    report.kills.append(name)
            report.runs += 1
            if restriction_seconds:
                tiktok_faults.inject_for(Fault.MAINTENANCE, seconds=restriction_seconds / 2)
            run_backfill(env, config, day_list[0], day_list[-1], None, logs / f"run-{report.runs}.log")
            report.outage_seconds = restriction_seconds * 1.5
            report.unreadable_accounts_named = sum(
                f"ad account {UNREADABLE.advertiser_id}: {day_list[0]} to {day_list[-1]}"
                in log.read_text(errors="replace")
                for log in logs.glob("*.log")
            )
            report.retries = retries_logged(logs)
            report.faults_tiktok = tiktok_faults.total_injected
            report.faults_amplitude = amplitude_faults.total_injected
            check(report, catalogue, amplitude, readable, day_list)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--ads", type=int, default=40, help="ads per account (3 accounts, one unreadable)")
    parser.add_argument("--kills", type=int, default=6, help="kill points, at most 6")
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--restriction-seconds",
        type=float,
        default=RESTRICTION_SECONDS,
        help="how long TikTok restricts the app as the first run starts (maintenance: half as long, last run)",
    )
    parser.add_argument(
        "--state",
        choices=("local", "cluster"),
        default="local",
        help="local: data folder and SQLite ledger on disk; cluster: data folder in S3, ledger in PostgreSQL",
    )
    args = parser.parse_args()
    report = run(
        days=args.days,
        ads=args.ads,
        kills=args.kills,
        fault_rate=args.fault_rate,
        seed=args.seed,
        state=args.state,
        restriction_seconds=args.restriction_seconds,
    )
    print(report.table())
    for line in report.discrepancies[:20]:
        print(line)
    sys.exit(1 if report.discrepancies or report.duplicates or report.unreadable_ad_days_counted else 0)


if __name__ == "__main__":
    main()
