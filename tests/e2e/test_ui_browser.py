"""The Dagster UI in a real browser: the fresh demo full and green (its first backfill of the last two
weeks, every asset's checks passing), lineage, partitions, a 3-day backfill launched by clicking, the
schedule.

Starts the demo (``tiktok-amp-demo``: both emulators and ``dagster dev``) on free ports with a
temporary home, and drives the UI with Playwright in Debian's Chromium (/usr/bin/chromium; the
Playwright wheel brings its driver, no browser download). What the page shows is checked against
GraphQL and the Dagster instance. Screenshots go to ``test-artifacts/``. Without Chromium the test
skips (``.ci/run`` installs it; under CI=true a missing browser fails instead).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
from tiktok_amp_emulators.demo import DEMO_START_DATE, FIRST_BACKFILL_DAYS

from ..prerequisites import skip_or_fail
from ..processes import (
    code_location_loaded,
    dagster_graphql,
    free_ports,
    start_process_group,
    stop_process_tree,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "ui_browser"
CHROMIUM = Path("/usr/bin/chromium")
# Flags for this machine's closed network (no background connections, no first-run, no sandbox as root).
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
LOCATION = "tiktok_amp_assets"
# The demo's one connection, tiktok_ads: its asset keys are prefixed with its name.
CONNECTION = "tiktok_ads"
ASSETS = ("tiktok_raw_reports", "tiktok_ad_metrics", "amplitude_upload_results")
SCHEDULE = "tiktok_ads_daily"
# Days back-filled by clicking: the three before the last FIRST_BACKFILL_DAYS days (which the demo
# fills by itself when it starts). Not the demo's first days: its start date is fixed, and on
# 2026-12-03, with 93 partitions, the launch dialog no longer knew its oldest ones (Dagster 1.13's UI
# answered "Could not find partitions for provided range: 2026-09-01...2026-09-03").
UI_BACKFILL_DAY_COUNT = 3

pytestmark = pytest.mark.timeout(480)


def _skip_or_fail_without_prerequisites() -> None:
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} not found: install Debian's chromium package (`apt-get install -y chromium`, as .ci/run does)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "the playwright Python package is not installed: pip install -e '.[test]'"
    if reason is not None:
        skip_or_fail("the browser test", reason)


# ---------------------------------------------------------------------------------------- the demo


@dataclass
class Demo:
    process: subprocess.Popen[bytes]
    home: Path
    log: Path
    port: int
    amplitude_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return dagster_graphql(self.url, query, variables)

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def wait_until_loaded(self, timeout: float = 150) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the demo exited with {self.process.returncode}:\n{self.log_tail()}")
            if code_location_loaded(self.url):
                return
            time.sleep(1)
        pytest.fail(f"the code location did not load within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """Ctrl-C as a user would (the demo passes it on to dagster dev); then kill whatever is left."""
        stop_process_tree(self.process, grace_seconds=45)


@pytest.fixture(scope="module")
def demo() -> Iterator[Demo]:
    _skip_or_fail_without_prerequisites()
    home = Path(tempfile.mkdtemp(prefix="tiktok-amp-ui-"))
    port, tiktok_port, amplitude_port = free_ports(3)
    log = home / "demo.log"
    command = [
        sys.executable, "-m", "tiktok_amp_emulators.demo", "--home", str(home),
        "--port", str(port), "--tiktok-port", str(tiktok_port), "--amplitude-port", str(amplitude_port),
    ]  # fmt: skip
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"}
    process = start_process_group(command, env, log)
    running = Demo(process, home, log, port, amplitude_port)
    try:
        running.wait_until_loaded()
        yield running
    finally:
        running.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        if log.exists():
            shutil.copyfile(log, ARTIFACTS / "demo.log")
        shutil.rmtree(home, ignore_errors=True)


# ----------------------------------------------------------------------------------------- the test


LINEAGE_QUERY = "{ assetNodes { assetKey { path } dependencyKeys { path } groupName } }"
PARTITIONS_QUERY = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { partitionKeys partitionStats { numMaterialized numPartitions } }
  }
}"""
BACKFILL_QUERY = """
query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status isAssetBackfill numPartitions runs(limit: 20) { runId status tags { key value } } }
  }
}"""
STATE_QUERY = """{
  partitionBackfillsOrError { ... on PartitionBackfills { results { id status numPartitions title } } }
  assetNodes {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } }
  }
}"""
METADATA_QUERY = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { assetMaterializations(limit: 1) { partition metadataEntries { label ... on MarkdownMetadataEntry { mdStr } } } }
  }
}"""
SCHEDULE_QUERY = """
query ($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) { ... on Schedule { name scheduleState { status } } }
}"""


def _wait_for_backfill(demo: Demo, backfill_id: str, timeout: float = 150) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    backfill: dict[str, Any] = {}
    while time.monotonic() < deadline:
        backfill = demo.graphql(BACKFILL_QUERY, {"id": backfill_id})["partitionBackfillOrError"]
        if backfill.get("status") in ("COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
            return backfill
        time.sleep(2)
    pytest.fail(f"backfill {backfill_id} did not finish within {timeout:.0f}s: {backfill}\n{demo.log_tail()}")


def _wait_until_full_and_green(demo: Demo, timeout: float = 180) -> dict[str, dict[str, str]]:
    """The demo's own first backfill done, and every check's latest execution passed (the freshness
    check is evaluated by its sensor once the upload is materialized). Check statuses per asset."""
    deadline = time.monotonic() + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = demo.graphql(STATE_QUERY)
        backfills = state["partitionBackfillsOrError"]["results"]
        checks = {
            node["assetKey"]["path"][-1]: {
                check["name"]: (check["executionForLatestMaterialization"] or {}).get("status")
                for check in node["assetChecksOrError"]["checks"]
            }
            for node in state["assetNodes"]
        }
        if backfills and backfills[0]["status"] in ("COMPLETED_FAILED", "FAILED", "CANCELED"):
            pytest.fail(f"the demo's first backfill failed: {backfills}\n{demo.log_tail()}")
        done = backfills and backfills[0]["status"] in ("COMPLETED", "COMPLETED_SUCCESS")
        if done and all(
            status == "SUCCEEDED" for statuses in checks.values() for status in statuses.values()
        ):
            assert len(backfills) == 1 and backfills[0]["numPartitions"] == FIRST_BACKFILL_DAYS, backfills
            return checks
        time.sleep(2)
    pytest.fail(f"the demo was not full and green within {timeout:.0f}s: {state}\n{demo.log_tail()}")


def test_the_demo_opens_full_and_green_and_a_backfill_launched_from_the_ui(demo: Demo) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
    from playwright.sync_api import expect, sync_playwright

    # A 2-core CI machine running the rest of the suite alongside renders slowly: 5 s is too short.
    expect.set_options(timeout=30_000)

    shutil.rmtree(ARTIFACTS, ignore_errors=True)  # this test's screenshots only, never stale ones
    ARTIFACTS.mkdir(parents=True)

    # Lineage as Dagster reports it: raw reports -> ad metrics -> upload results, one group.
    nodes = {tuple(node["assetKey"]["path"]): node for node in demo.graphql(LINEAGE_QUERY)["assetNodes"]}
    assert set(nodes) == {(CONNECTION, asset) for asset in ASSETS}
    edges = {(dep["path"][-1], key[-1]) for key, node in nodes.items() for dep in node["dependencyKeys"]}
    assert edges == {
        ("tiktok_raw_reports", "tiktok_ad_metrics"),
        ("tiktok_ad_metrics", "amplitude_upload_results"),
    }
    assert {node["groupName"] for node in nodes.values()} == {"tiktok_ads"}
    partition_keys = demo.graphql(PARTITIONS_QUERY, {"path": [CONNECTION, "tiktok_raw_reports"]})[
        "assetNodeOrError"
    ]["partitionKeys"]
    assert partition_keys[0] == DEMO_START_DATE
    backfill_days = partition_keys[-FIRST_BACKFILL_DAYS - UI_BACKFILL_DAY_COUNT : -FIRST_BACKFILL_DAYS]
    assert len(backfill_days) == UI_BACKFILL_DAY_COUNT, partition_keys

    # The demo filled the last two weeks by itself, and every check passes.
    checks = _wait_until_full_and_green(demo)
    assert checks == {
        "tiktok_raw_reports": {"account_timezone_matches_partitions": "SUCCEEDED"},
        "tiktok_ad_metrics": {"rows_add_up_to_account_totals": "SUCCEEDED"},
        "amplitude_upload_results": {
            "amplitude_counts_equal_tiktok": "SUCCEEDED",
            "every_account_day_imported": "SUCCEEDED",
            "freshness_check": "SUCCEEDED",
        },
    }
    recent_days = partition_keys[-FIRST_BACKFILL_DAYS:]
    # The top campaigns, one table per currency (the demo has a USD and a JPY account).
    latest = demo.graphql(METADATA_QUERY, {"path": [CONNECTION, "tiktok_ad_metrics"]})["assetNodeOrError"][
        "assetMaterializations"
    ][0]
    top = next(entry["mdStr"] for entry in latest["metadataEntries"] if entry["label"] == "top_campaigns")
    assert "**Cost in JPY**" in top and "**Cost in USD**" in top
    filled = len(recent_days)

    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            profile,  # a new, empty --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1600, "height": 1000},
        )
        page = browser.pages[0] if browser.pages else browser.new_page()
        page.set_default_timeout(30_000)
        # Dagster OSS greets a new instance with a "Join the Dagster community" dialog: dismiss it
        # whenever it shows up, whatever step the test is at.
        page.add_locator_handler(
            page.get_by_text("Join the Dagster community"),
            lambda: page.get_by_role("button", name="Skip").click(),
        )

        def shot(name: str) -> None:
            page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

        try:
            # 1. The global asset lineage shows the three assets.
            page.goto(f"{demo.url}/asset-groups")
            expect(page.get_by_text("Global asset lineage")).to_be_visible()
            for asset in ASSETS:
                expect(page.get_by_text(asset, exact=True).first).to_be_visible()
            # Each node's footer counts its partitions once the node has loaded.
            expect(page.get_by_text(f"{len(partition_keys)} partitions", exact=True)).to_have_count(
                len(ASSETS)
            )
            shot("01-asset-lineage")

            # ... and their edges, on the middle asset's page: one upstream, one downstream.
            page.goto(f"{demo.url}/assets/{CONNECTION}/tiktok_ad_metrics")
            # (expect retries until the lists have loaded: the headings come first.)
            expect(page.locator("body")).to_contain_text(
                re.compile(
                    r"Upstream assets\s+(tiktok_ads / )?tiktok_raw_reports\s.*?Downstream assets\s+(tiktok_ads / )?amplitude_upload_results\s",
                    re.DOTALL,
                ),
                use_inner_text=True,
            )
            shot("02-asset-lineage-of-tiktok_ad_metrics")

            # 2. The partitions view: the last two weeks materialized, the rest missing; each asset's
            # checks passed.
            page.goto(f"{demo.url}/assets/{CONNECTION}/tiktok_raw_reports?view=partitions")
            expect(page.get_by_text(f"{len(partition_keys)} Partitions Selected")).to_be_visible()
            expect(page.get_by_text(f"Materialized ({filled})")).to_be_visible()
            expect(page.get_by_text(f"Missing ({len(partition_keys) - filled})")).to_be_visible()
            expect(page.get_by_text(partition_keys[-1], exact=True).first).to_be_visible()
            shot("03-partitions-as-the-demo-opens")
            for asset, statuses in checks.items():
                page.goto(f"{demo.url}/assets/{CONNECTION}/{asset}?view=checks")
                # The list of checks: each name, each with its latest execution "Succeeded".
                expect(page.get_by_text(f"Checks ({len(statuses)})", exact=True)).to_be_visible()
                for name in statuses:  # (the list also renders each name hidden, to measure it)
                    expect(page.get_by_text(name, exact=True)).not_to_have_count(0)
                expect(page.get_by_text("Succeeded", exact=True)).to_have_count(len(statuses))
                shot(f"03-checks-of-{asset}")

            # 3. Materialize → the three days → Launch backfill, by clicking.
            page.goto(f"{demo.url}/asset-groups")
            dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize 3 assets")
            # A click that lands while the page is still rendering (or on the community greeting,
            # dismissed by the handler) opens nothing: click again.
            for _ in range(3):
                page.get_by_role("button", name=re.compile(r"Materialize all")).click()
                try:
                    dialog.wait_for(state="visible", timeout=15_000)
                    break
                except PlaywrightTimeoutError:
                    continue
            expect(dialog).to_be_visible()
            selection = dialog.get_by_placeholder("No matching partitions")
            selection.fill(f"[{backfill_days[0]}...{backfill_days[-1]}]")
            selection.press("Enter")
            expect(dialog.get_by_text("3 partitions", exact=True)).to_be_visible()
            shot("04-launch-backfill-dialog")
            dialog.get_by_role("button", name="Launch backfill").click()
            toast = page.get_by_text(re.compile(r"Created backfill \w+"))
            expect(toast).to_be_visible()
            match = re.search(r"Created backfill (\w+)", toast.inner_text())
            assert match, toast.inner_text()
            backfill_id = match.group(1)
            shot("05-backfill-created")

            backfill = _wait_for_backfill(demo, backfill_id)
            assert backfill["status"] == "COMPLETED_SUCCESS", f"{backfill}\n{demo.log_tail()}"
            assert backfill["isAssetBackfill"] and backfill["numPartitions"] == 3
            # A range runs as one run (BackfillPolicy.single_run), launched from the UI.
            assert len(backfill["runs"]) == 1, backfill["runs"]
            run_tags = {tag["key"]: tag["value"] for tag in backfill["runs"][0]["tags"]}
            assert run_tags["dagster/from_ui"] == "true"
            assert (
                run_tags["dagster/asset_partition_range_start"],
                run_tags["dagster/asset_partition_range_end"],
            ) == (
                backfill_days[0],
                backfill_days[-1],
            )

            # 4. The UI shows it done: the backfill page, and three materialized days per asset.
            page.goto(f"{demo.url}/runs/b/{backfill_id}")
            expect(page.get_by_text(f"{backfill_days[0]}...{backfill_days[-1]}")).to_be_visible()
            expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible()
            expect(page.get_by_text("100% completed")).to_have_count(len(ASSETS))
            shot("06-backfill-succeeded")
            for asset in ASSETS:
                page.goto(f"{demo.url}/assets/{CONNECTION}/{asset}?view=partitions")
                expect(page.get_by_text(f"Materialized ({filled + 3})")).to_be_visible()
                expect(page.get_by_text(f"Missing ({len(partition_keys) - filled - 3})")).to_be_visible()
            shot("07-partitions-after")

            # 5. The schedule is listed and running.
            page.goto(f"{demo.url}/automation")
            expect(page.get_by_text(SCHEDULE, exact=True)).to_be_visible()
            shot("08-automation")
            page.goto(f"{demo.url}/locations/{LOCATION}/schedules/{SCHEDULE}")
            running_row = page.locator("tr").filter(has=page.get_by_text("Running", exact=True))
            expect(running_row.locator("input[type=checkbox]")).to_be_checked()
            shot("09-schedule")
        except Exception:
            shot("failure")
            raise
        finally:
            browser.close()

    # The same facts from GraphQL and from the instance itself.
    for asset in ASSETS:
        stats = demo.graphql(PARTITIONS_QUERY, {"path": [CONNECTION, asset]})["assetNodeOrError"][
            "partitionStats"
        ]
        assert stats["numMaterialized"] == filled + 3, (asset, stats)
    instance = dg.DagsterInstance.from_config(str(demo.home / "dagster_home"))
    try:
        for asset in ASSETS:
            assert instance.get_materialized_partitions(dg.AssetKey([CONNECTION, asset])) == {
                *backfill_days,
                *recent_days,
            }
    finally:
        instance.dispose()
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": "__repository__",
        "scheduleName": SCHEDULE,
    }
    schedule = demo.graphql(SCHEDULE_QUERY, {"selector": selector})["scheduleOrError"]
    assert schedule["scheduleState"]["status"] == "RUNNING", schedule
    # And the events reached Amplitude (the demo's emulator), for exactly those days.
    events = requests.get(f"http://127.0.0.1:{demo.amplitude_port}/emulator/events", timeout=10).json()
    assert events and {event["event_properties"]["stat_date"] for event in events} == {
        *backfill_days,
        *recent_days,
    }
