"""Benchmark: a real Dagster backfill against the emulators, with the figures that matter.

    .venv/bin/python bench/backfill_bench.py daily            # 2 accounts x 2,000 ads, yesterday
    .venv/bin/python bench/backfill_bench.py daily --lookback 29   # the daily tick's real window
    .venv/bin/python bench/backfill_bench.py year             # 1 account x 2,000 ads x 365 days
    .venv/bin/python bench/backfill_bench.py scale --ads 4000 --days 60
    .venv/bin/python bench/backfill_bench.py year --profile   # cProfile of the run, top functions
    .venv/bin/python bench/backfill_bench.py year --state cluster   # data in S3, ledger in PostgreSQL

The emulators run in this process; the backfill runs as Dagster runs it from the CLI
(`dagster asset materialize --partition-range`, one run for the range, a single-run backfill) in a
child process on a fresh instance, so its wall time includes Dagster's own run start and its peak
RSS (the largest high-water mark of the run's process and its worker processes) is theirs alone.
Prints one table; `--write` appends it to bench/RESULTS.md.

``--lookback N`` measures what the schedule's tick costs: yesterday plus the N days before it, after
an unmeasured run has imported those N days and TikTok has since revised some of them (late
conversions, see ``restate_late_conversions``). Only the measured run's calls, requests, events and
seconds are reported; only changes go out to Amplitude.

``--state cluster`` keeps the state as a cluster does (bench/cluster_state.py): the data folder in
S3 (moto's server, in this process beside the emulators) and the ledger in PostgreSQL, both on this
machine: it measures what the object store and the database cost in requests and CPU, not a
network's latency.

Amplitude's limits (2,000 events and 1 MB / 20 MB per request) are the emulator's reading of the
docs, not the client's constants.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

from cluster_state import cluster_state
from tiktok_amp_emulators.amplitude_server import (
    BATCH_MAX_BODY_BYTES,
    BATCH_PATH,
    HTTP_V2_MAX_BODY_BYTES,
    HTTP_V2_PATH,
    MAX_EVENTS_PER_REQUEST,
    AmplitudeEmulator,
)
from tiktok_amp_emulators.catalogue import DEFAULT_ADVERTISERS, Catalogue, generate_catalogue
from tiktok_amp_emulators.demo import demo_environment, prepare_home
from tiktok_amp_emulators.processes import process_tree
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from tiktok_amp_assets.core import tiktok_contract as tiktok_api
from tiktok_amp_assets.core.report_windows import report_windows

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
API_KEY = "bench-api-key"
STEP_NAMES = {
    "tiktok_ads__tiktok_raw_reports": "raw",
    "tiktok_ads__tiktok_ad_metrics": "metrics",
    "tiktok_ads__amplitude_upload_results": "upload",
}
# The last day of every workload: fixed, so runs compare.
LAST_DAY = date(2026, 11, 24)


@dataclass(frozen=True)
class Workload:
    name: str
    accounts: int
    ads: int
    days: int
    lookback: int = 0  # days before the range that a previous run imported and TikTok revised since


WORKLOADS = {
    "daily": Workload("daily", accounts=2, ads=2000, days=1),
    "year": Workload("year", accounts=1, ads=2000, days=365),
}


def minimum_tiktok_calls(catalogue: Catalogue, advertiser_ids: list[str], first: date, last: date) -> int:
    """The fewest calls that can fetch the range: per account and 30-day window, ceil(rows / 1,000)
    report pages (at least one) plus one account-totals call; ad metadata in chunks of 100 ads, and
    the Smart+ ads among them once more from /smart_plus/ad/get/ in chunks of 100 (their landing
    pages live there: clients/tiktok_extraction.py, point 8); one advertiser/info call for up to 100
    accounts."""
    calls = math.ceil(len(advertiser_ids) / tiktok_api.MAX_FILTER_IDS)
    for advertiser_id in advertiser_ids:
        ads_seen: set[str] = set()
        for window_start, window_end in report_windows(first, last):
            rows = 0
            day = window_start
            while day <= window_end:
                delivery = catalogue.day_delivery(advertiser_id, day)
                rows += len(delivery.ad_ids)
                ads_seen.update(delivery.ad_ids)
                day += timedelta(days=1)
            calls += max(1, math.ceil(rows / tiktok_api.MAX_PAGE_SIZE)) + 1
        calls += math.ceil(len(ads_seen) / tiktok_api.MAX_FILTER_IDS)
        smart_plus = sum(1 for ad_id in ads_seen if catalogue.ads[ad_id].smart_plus_ad_id)
        calls += math.ceil(smart_plus / tiktok_api.MAX_FILTER_IDS)
    return calls


def minimum_amplitude_requests(events: int, payload_bytes: int, batch: bool) -> int:
    """ceil(events / 2,000), unless the bytes need more requests (1 MB on HTTP V2, 20 MB on Batch)."""
    max_bytes = BATCH_MAX_BODY_BYTES if batch else HTTP_V2_MAX_BODY_BYTES
    return max(
        math.ceil(events / MAX_EVENTS_PER_REQUEST), math.ceil(payload_bytes / max_bytes), 1 if events else 0
    )


# Share of an ad-day's rows TikTok revises between two daily ticks, by the day's age: late
# conversions of the default 7-day click window in the first week, of 14- and 28-day windows after.
# A model, not a measurement: real shares depend on the account's ad groups.
REVISED_SHARE_FIRST_WEEK = 0.10
REVISED_SHARE_LATER = 0.02
LONGEST_CLICK_WINDOW_DAYS = 28


def restate_late_conversions(
    catalogue: Catalogue, advertiser_ids: list[str], last: date, lookback: int
) -> int:
    """Add a late conversion to a share of the ad-days of the ``lookback`` days before ``last``;
    return how many ad-days changed."""
    rng = random.Random(20261130)
    changed = 0
    for age in range(1, min(lookback, LONGEST_CLICK_WINDOW_DAYS) + 1):
        day = last - timedelta(days=age)
        share = REVISED_SHARE_FIRST_WEEK if age <= 7 else REVISED_SHARE_LATER
        for advertiser_id in advertiser_ids:
            for ad_id in catalogue.day_delivery(advertiser_id, day).ad_ids:
                if rng.random() < share:
                    metrics = catalogue.daily_metrics(ad_id, day) or {}
                    conversions = int(metrics.get(tiktok_api.CONVERSIONS, "0")) + 1
                    catalogue.restate(ad_id, day, {tiktok_api.CONVERSIONS: str(conversions)})
                    changed += 1
    return changed


def step_spans(dagster_home: Path) -> dict[str, tuple[float, float]]:
    """(start, end) wall-clock times of each step of the (only) run in this instance."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (run_record,) = instance.get_run_records(limit=1)
        events = instance.all_logs(
            run_record.dagster_run.run_id,
            of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS},
        )
    started: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for event in events:
        if event.dagster_event_type == dg.DagsterEventType.STEP_START:
            started[event.step_key] = event.timestamp
        elif event.step_key in started:
            spans[event.step_key] = (started[event.step_key], event.timestamp)
    return spans


@dataclass
class MemorySamples:
    """What sample_memory saw of a run's processes."""

    # (time, RSS of the run's process, RSS of it and every process it started), in MB.
    rss: list[tuple[float, float, float]] = field(default_factory=list)
    # Per process: the highest peak RSS it reported (VmHWM, the kernel's own high-water mark).
    peaks: dict[int, float] = field(default_factory=dict)


def sample_memory(pid: int, samples: MemorySamples, stop: threading.Event) -> None:
    """Every 50 ms until ``stop``: RSS of process ``pid`` and of all of it and the processes it
    started (peak memory per step, and what the machine needs while worker processes run; shared
    pages count once per process: an upper bound), and each process's high-water mark, which
    catches a peak between two samples.

    Not ``getrusage(RUSAGE_CHILDREN)``: Python starts a child with vfork, and Linux then records
    the parent's own high-water mark as the child's (a benchmark holding moto's objects reported
    that as the run's peak)."""
    while not stop.wait(0.05):
        status = {child: _status_mb(child, ("VmRSS:", "VmHWM:")) for child in process_tree(pid)}
        if not status.get(pid, {}).get("VmRSS:"):
            return
        samples.rss.append(
            (time.time(), status[pid]["VmRSS:"], sum(s.get("VmRSS:", 0.0) for s in status.values()))
        )
        for child, values in status.items():
            samples.peaks[child] = max(samples.peaks.get(child, 0.0), values.get("VmHWM:", 0.0))


def _status_mb(pid: int, fields: tuple[str, ...]) -> dict[str, float]:
    """``fields`` of /proc/<pid>/status in MB (none for a process that ended meanwhile)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {
        line.split()[0]: int(line.split()[1]) / 1024 for line in text.splitlines() if line.startswith(fields)
    }


def materialize(
    first: date, last: date, env: dict[str, str], home: Path, *, profile: bool
) -> tuple[float, MemorySamples]:
    """Run the backfill of ``first..last`` as a user does from the CLI; its wall time and RSS samples."""
    partition_args = (
        ["--partition", first.isoformat()]
        if first == last
        else ["--partition-range", f"{first.isoformat()}...{last.isoformat()}"]
    )
    python = [sys.executable]
    if profile:
        python += ["-m", "cProfile", "-o", str(home / "run.prof")]
    command = [*python, "-m", "dagster", "asset", "materialize", "-m", "tiktok_amp_assets.definitions",
               "--select", "group:tiktok_ads", *partition_args]  # fmt: skip
    started = time.monotonic()
    samples = MemorySamples()
    stop_sampling = threading.Event()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=output, stderr=output)
        sampler = threading.Thread(
            target=sample_memory, args=(process.pid, samples, stop_sampling), daemon=True
        )
        sampler.start()
        returncode = process.wait()
        wall = time.monotonic() - started
        stop_sampling.set()
        sampler.join()
        output.seek(0)
        log_tail = output.read()[-5000:].decode(errors="replace")
    if returncode != 0:
        sys.stderr.write(log_tail)
        raise SystemExit(f"the backfill failed (exit {returncode}); data kept in {home}")
    return wall, samples


def run(workload: Workload, *, profile: bool, keep: bool, state: str = "local") -> dict[str, object]:
    specs = DEFAULT_ADVERTISERS[: workload.accounts]
    catalogue = generate_catalogue(
        advertisers=list(specs), ads_per_advertiser=workload.ads, start=date(2025, 1, 1)
    )
    advertiser_ids = sorted(catalogue.advertisers)
    new_first = LAST_DAY - timedelta(days=workload.days - 1)
    first = new_first - timedelta(days=workload.lookback)
    home = Path(tempfile.mkdtemp(prefix=f"bench-{workload.name}-"))
    prepare_home(home)
    with (
        TikTokEmulator(catalogue, access_tokens={TOKEN: None}) as tiktok,
        AmplitudeEmulator(api_keys={API_KEY}) as amplitude,
        ExitStack() as servers,
    ):
        cluster_env = servers.enter_context(cluster_state("bench")).env if state == "cluster" else {}
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
            **cluster_env,
        }
        revised = 0
        if workload.lookback:
            # What earlier ticks left behind: the lookback days imported, then revised by TikTok.
            materialize(first, new_first - timedelta(days=1), env, home, profile=False)
            revised = restate_late_conversions(catalogue, advertiser_ids, new_first, workload.lookback)
            amplitude.reset()
        tiktok_calls_before = len(tiktok.request_log)
        wall, samples = materialize(first, LAST_DAY, env, home, profile=profile)
        spans = step_spans(home / "dagster_home")

        tiktok_log = tiktok.request_log[tiktok_calls_before:]
        amplitude_log = amplitude.request_log
        counted = amplitude.counted_events(API_KEY)
        events = len(counted)
        corrections = sum(1 for event in counted if event["event_properties"].get("ad_metrics_correction"))
        payload_bytes = sum(entry["bytes"] for entry in amplitude_log)
        batch = any(entry["path"] == BATCH_PATH for entry in amplitude_log)
        rows = sum(entry["rows"] or 0 for entry in tiktok_log if entry["path"] == tiktok_api.REPORT_PATH
                   and "AUCTION_AD" == entry["params"].get("data_level"))  # fmt: skip
        result = {
            "workload": workload.name,
            "accounts": workload.accounts,
            "ads per account": workload.ads,
            "days": (LAST_DAY - first).days + 1,
            "lookback": workload.lookback,
            "ad-days revised": revised,
            "ad-day rows": rows,
            "wall s": round(wall, 1),
            # Where the wall time goes: each asset's step; the rest is Dagster's run start and end.
            **{f"{name} s": round(spans[step][1] - spans[step][0], 1) for step, name in STEP_NAMES.items()},
            "rows/s": round(rows / wall),
            "TikTok calls": len(tiktok_log),
            "TikTok min": minimum_tiktok_calls(catalogue, advertiser_ids, first, LAST_DAY),
            "Amplitude requests": len(amplitude_log),
            "Amplitude min": minimum_amplitude_requests(events, payload_bytes, batch),
            "endpoint": BATCH_PATH if batch else HTTP_V2_PATH,
            "events counted": events,
            "of which corrections": corrections,
            "MB sent": round(payload_bytes / 1e6, 1),
            # The largest process's (the run's, or a worker's); then all of them at once, sampled.
            "peak RSS MB": round(max(samples.peaks.values(), default=0)),
            "all processes MB": round(max((tree for _, _, tree in samples.rss), default=0)),
            # Sampled every 50 ms: which step holds the most memory (the run's process).
            **{
                f"{name} MB": round(
                    max(
                        (rss for at, rss, _ in samples.rss if spans[step][0] <= at <= spans[step][1]),
                        default=0,
                    )
                )
                for step, name in STEP_NAMES.items()
            },
        }
    if profile:
        import pstats

        stats = pstats.Stats(str(home / "run.prof"))
        stats.sort_stats("cumulative").print_stats(35)
    if not keep:
        shutil.rmtree(home, ignore_errors=True)
    return result


def table(results: list[dict[str, object]]) -> str:
    columns = list(results[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(result[column]) for column in columns) + " |" for result in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=[*WORKLOADS, "scale"])
    parser.add_argument("--ads", type=int, default=2000, help="ads per account (scale)")
    parser.add_argument("--days", type=int, default=90, help="days (scale)")
    parser.add_argument("--accounts", type=int, default=1, help="accounts (scale, at most 2)")
    parser.add_argument(
        "--lookback",
        type=int,
        default=0,
        help="days before the range imported by a previous run, then revised",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the run and print the top functions")
    parser.add_argument(
        "--state",
        choices=("local", "cluster"),
        default="local",
        help="local: data folder and SQLite ledger on disk; cluster: data folder in S3, ledger in PostgreSQL",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary instance and data")
    parser.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    args = parser.parse_args()
    workload = WORKLOADS.get(args.workload) or Workload(
        f"scale {args.ads}x{args.days}", args.accounts, args.ads, args.days
    )
    if args.lookback:
        workload = replace(workload, name=f"{workload.name} +{args.lookback}", lookback=args.lookback)
    if args.state == "cluster":
        workload = replace(workload, name=f"{workload.name} (S3 + PostgreSQL)")
    load_before = os.getloadavg()[0]
    result = run(workload, profile=args.profile, keep=args.keep, state=args.state)
    text = table([result])
    # Other processes on the machine slow the run down: the load average says how busy it was.
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    print(f"\n{os.cpu_count()} cores, {load}\n{text}")
    if args.write:
        with (PROJECT_ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as results:
            results.write(
                f"\n{date.today()} · {os.cpu_count()} cores, {load} · `{' '.join(sys.argv[1:])}`\n\n{text}\n"
            )


if __name__ == "__main__":
    main()
