"""The project's backfill against the same work done by a bare script: what the project's machinery costs.

    .venv/bin/python bench/bare_script.py                 # 2 accounts x 1,000 ads x 45 days, 3 rounds
    .venv/bin/python bench/bare_script.py --rounds 5 --days 30

The bare script (``bare_import`` below, run in a child process of its own) does the least that puts
the same events in Amplitude: it fetches TikTok's report pages (30-day windows, 1,000 rows a page),
the ads' landing pages and the accounts' currency and zone, paced at TikTok's 10 calls/s; builds one
event per ad-day; and POSTs them to Amplitude's /batch, 2,000 at a time. No Dagster, no files, no
ledger, no checks, no retries. Each round runs it, then the project's backfill of the same days as
users run it (``dagster asset materialize --partition-range`` on a fresh instance, as
backfill_bench.py does), against the same emulators in this process, and checks that both put the
same number of events in Amplitude. Prints each round and the median ratio (project / bare).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import requests
from backfill_bench import API_KEY, LAST_DAY, TOKEN, materialize
from tiktok_amp_emulators.amplitude_server import BATCH_PATH, AmplitudeEmulator
from tiktok_amp_emulators.catalogue import DEFAULT_ADVERTISERS, generate_catalogue
from tiktok_amp_emulators.demo import demo_environment, prepare_home
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

from tiktok_amp_assets.core import tiktok_contract as tiktok_api

CALLS_PER_SECOND = 10  # TikTok's commonly cited limit per app, as the project's client paces
WINDOW_DAYS = 30
EVENTS_PER_REQUEST = 2000


def bare_import(
    tiktok_url: str, amplitude_url: str, advertiser_ids: list[str], first: date, last: date
) -> int:
    """Fetch, build, send; returns the number of events sent."""
    tiktok = requests.Session()
    tiktok.headers[tiktok_api.ACCESS_TOKEN_HEADER] = TOKEN
    next_call = time.monotonic()

    def get(path: str, **params: Any) -> dict[str, Any]:
        nonlocal next_call
        time.sleep(max(0.0, next_call - time.monotonic()))
        next_call = max(time.monotonic(), next_call) + 1 / CALLS_PER_SECOND
        encoded = {
            name: value if isinstance(value, str) else json.dumps(value) for name, value in params.items()
        }
        answer = tiktok.get(tiktok_url + path, params=encoded, timeout=60).json()
        assert answer["code"] == 0, answer
        return answer["data"]

    def pages(path: str, **params: Any) -> Iterator[dict[str, Any]]:
        page = 1
        while True:
            data = get(path, page=page, page_size=tiktok_api.MAX_PAGE_SIZE, **params)
            yield from data["list"]
            if page >= data["page_info"]["total_page"]:
                return
            page += 1

    infos = get(
        tiktok_api.ADVERTISER_INFO_PATH,
        advertiser_ids=advertiser_ids,
        fields=list(tiktok_api.ADVERTISER_FIELDS),
    )["list"]
    amplitude = requests.Session()
    batch: list[dict[str, Any]] = []
    sent = 0
    for info in infos:
        advertiser_id = info["advertiser_id"]
        rows: list[dict[str, Any]] = []
        start = first
        while start <= last:
            end = min(last, start + timedelta(days=WINDOW_DAYS - 1))
            rows += pages(
                tiktok_api.REPORT_PATH, advertiser_id=advertiser_id, report_type=tiktok_api.REPORT_TYPE,
                service_type=tiktok_api.SERVICE_TYPE, data_level=tiktok_api.AD_DATA_LEVEL,
                dimensions=list(tiktok_api.AD_DAY_DIMENSIONS), metrics=list(tiktok_api.AD_REPORT_METRICS),
                start_date=start.isoformat(), end_date=end.isoformat(), filtering=[tiktok_api.AD_STATUS_ALL_FILTER],
            )  # fmt: skip
            start = end + timedelta(days=1)
        ad_ids = sorted({row["dimensions"]["ad_id"] for row in rows})
        ads: dict[str, dict[str, Any]] = {}
        for index in range(0, len(ad_ids), tiktok_api.MAX_FILTER_IDS):
            chunk = ad_ids[index : index + tiktok_api.MAX_FILTER_IDS]
            filtering = {"ad_ids": chunk, "primary_status": tiktok_api.PRIMARY_STATUS_ALL}
            for item in pages(
                tiktok_api.AD_PATH,
                advertiser_id=advertiser_id,
                fields=list(tiktok_api.AD_FIELDS),
                filtering=filtering,
            ):
                ads[item["ad_id"]] = item
        for row in rows:
            batch.append(_event(row, ads.get(row["dimensions"]["ad_id"], {}), info))
            if len(batch) == EVENTS_PER_REQUEST:
                sent += _post(amplitude, amplitude_url, batch)
                batch = []
    return sent + _post(amplitude, amplitude_url, batch)


def _event(row: dict[str, Any], ad: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    metrics, ad_id = row["metrics"], row["dimensions"]["ad_id"]
    day = row["dimensions"]["stat_time_day"][:10]
    names = {
        name: metrics.get(name) if metrics.get(name) not in (None, "", "-") else ad.get(name)
        for name in tiktok_api.ATTRIBUTE_METRICS
    }
    query = parse_qs(urlsplit(ad.get("landing_page_url") or "").query)
    defaults = {
        "utm_source": "tiktok",
        "utm_medium": "paid_social",
        "utm_campaign": names["campaign_name"],
        "utm_content": names["ad_name"],
    }
    noon = datetime.fromisoformat(day).replace(hour=12, tzinfo=ZoneInfo(info["timezone"]))
    key = f"{info['advertiser_id']}|{ad_id}|{day}|0".encode()
    return {
        "event_type": "Daily Ad Metrics",
        "device_id": f"tiktok-ad-{ad_id}",
        "insert_id": "tiktok-" + hashlib.sha256(key).hexdigest(),
        "time": int(noon.timestamp() * 1000),
        "event_properties": {
            "ad_account_id": info["advertiser_id"],
            "ad_group_id": names["adgroup_id"],
            "ad_group_name": names["adgroup_name"],
            "ad_id": ad_id,
            "ad_name": names["ad_name"],
            "ad_platform": "tiktok",
            "campaign_id": names["campaign_id"],
            "campaign_name": names["campaign_name"],
            "ad_metrics.cost": float(metrics[tiktok_api.SPEND]),
            "ad_metrics.impressions": int(metrics[tiktok_api.IMPRESSIONS]),
            "ad_metrics.clicks": int(metrics[tiktok_api.CLICKS]),
            "ad_metrics.conversions": int(metrics[tiktok_api.CONVERSIONS]),
            "currency": info["currency"],
            "advertiser_name": info["name"],
            "stat_date": day,
        },
        "user_properties": {key: (query.get(key) or [default])[0] for key, default in defaults.items()},
    }


def _post(session: requests.Session, amplitude_url: str, events: list[dict[str, Any]]) -> int:
    if not events:
        return 0
    answer = session.post(amplitude_url + BATCH_PATH, json={"api_key": API_KEY, "events": events}, timeout=60)
    assert answer.status_code == 200, answer.text
    return len(events)


def compare(accounts: int, ads: int, days: int, rounds: int) -> None:
    catalogue = generate_catalogue(
        advertisers=list(DEFAULT_ADVERTISERS[:accounts]), ads_per_advertiser=ads, start=date(2025, 1, 1)
    )
    advertiser_ids = sorted(catalogue.advertisers)
    first = LAST_DAY - timedelta(days=days - 1)
    ratios = []
    with (
        TikTokEmulator(catalogue, access_tokens={TOKEN: None}) as tiktok,
        AmplitudeEmulator(api_keys={API_KEY}) as amplitude,
    ):
        bare_command = [sys.executable, __file__, "bare", "--tiktok-url", tiktok.url, "--amplitude-url",
                        amplitude.url, "--ids", ",".join(advertiser_ids), "--first", first.isoformat(),
                        "--last", LAST_DAY.isoformat()]  # fmt: skip
        for round_number in range(1, rounds + 1):
            amplitude.reset()
            started = time.monotonic()
            subprocess.run(bare_command, check=True)
            bare = time.monotonic() - started
            bare_events = len(amplitude.counted_events(API_KEY))

            amplitude.reset()
            home = Path(tempfile.mkdtemp(prefix="bench-bare-"))
            prepare_home(home)
            env = {
                **os.environ,
                **demo_environment(home, tiktok.url, amplitude.url, advertiser_ids, token=TOKEN, api_key=API_KEY,
                                   start_date="2025-01-01", timezone="UTC"),
            }  # fmt: skip
            project, _ = materialize(first, LAST_DAY, env, home, profile=False)
            project_events = len(amplitude.counted_events(API_KEY))
            assert project_events == bare_events, (project_events, bare_events)
            ratios.append(project / bare)
            print(
                f"round {round_number}: {bare_events} ad-days, bare script {bare:.1f} s, "
                f"project {project:.1f} s, ratio {project / bare:.2f} (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    print(f"median ratio over {rounds} rounds: {statistics.median(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    bare = commands.add_parser("bare", help="the bare script alone (what each round runs)")
    bare.add_argument("--tiktok-url", required=True)
    bare.add_argument("--amplitude-url", required=True)
    bare.add_argument("--ids", required=True)
    bare.add_argument("--first", type=date.fromisoformat, required=True)
    bare.add_argument("--last", type=date.fromisoformat, required=True)
    parser.add_argument("--accounts", type=int, default=2)
    parser.add_argument("--ads", type=int, default=1000, help="ads per account")
    parser.add_argument("--days", type=int, default=45)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.command == "bare":
        bare_import(args.tiktok_url, args.amplitude_url, args.ids.split(","), args.first, args.last)
    else:
        compare(args.accounts, args.ads, args.days, args.rounds)


if __name__ == "__main__":
    main()
