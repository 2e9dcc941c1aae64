"""``tiktok-amp-demo``: the whole project on this machine, with no credentials and no internet.

Starts the TikTok and Amplitude emulators on loopback, points the project at them, and runs the
Dagster UI (``dagster dev``) with a persistent instance under ``.demo/``. On a fresh instance it
back-fills the last two weeks once the UI answers. Ctrl-C or SIGTERM stops everything.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import requests

from tiktok_amp_emulators.amplitude_server import AmplitudeEmulator
from tiktok_amp_emulators.catalogue import generate_catalogue
from tiktok_amp_emulators.processes import stop_process_tree
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

# The demo's instance and workspace files travel with the package, so the demo runs from a wheel too.
INSTANCE_FILES = files("tiktok_amp_emulators") / "instance"
DEMO_TOKEN = "emulator-token"
DEMO_API_KEY = "emulator-api-key"
# Fixed, like a real deployment's: partitions never shift between demo sessions.
DEMO_START_DATE = "2026-09-01"
# The demo catalogue's westernmost account is a Californian one, which TikTok keeps on UTC-8 all year
# (Etc/GMT+8): its days close last, so the partitions close with them.
DEMO_TIMEZONE = "Etc/GMT+8"
# A fresh demo opens with these last days filled in, through one backfill.
FIRST_BACKFILL_DAYS = 14


def prepare_home(home: Path) -> None:
    """A folder for a Dagster instance on the embedded default (``home/dagster_home``, SQLite) and
    the workspace file that loads the installed code location (``home/workspace.yaml``)."""
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    (home / "dagster_home" / "dagster.yaml").write_bytes((INSTANCE_FILES / "dagster.yaml").read_bytes())
    (home / "workspace.yaml").write_bytes((INSTANCE_FILES / "workspace.yaml").read_bytes())


# Settings of the run's process, read when it starts (the project's docs/performance.md says why):
# Arrow allocates from the system allocator, whose freed memory the rest of the process reuses, and
# glibc keeps one malloc arena for all threads. What the user's own environment sets wins.
PROCESS_SETTINGS = {"ARROW_DEFAULT_MEMORY_POOL": "system", "MALLOC_ARENA_MAX": "1"}


def demo_environment(
    home: Path,
    tiktok_url: str,
    amplitude_url: str,
    advertiser_ids: list[str],
    *,
    token: str = DEMO_TOKEN,
    api_key: str = DEMO_API_KEY,
    start_date: str = DEMO_START_DATE,
    timezone: str = DEMO_TIMEZONE,
) -> dict[str, str]:
    """The environment variables that point the project at the emulators (the demo's, and the
    benchmark scripts' with their own credentials, start and zone), with the process settings
    (:data:`PROCESS_SETTINGS`) that the caller's environment does not set."""
    return {
        **{name: value for name, value in PROCESS_SETTINGS.items() if name not in os.environ},
        "DAGSTER_HOME": str(home / "dagster_home"),
        "TIKTOK_ACCESS_TOKEN": token,
        "TIKTOK_ADVERTISER_IDS": ",".join(advertiser_ids),
        "TIKTOK_API_URL": tiktok_url,
        "AMPLITUDE_API_KEY": api_key,
        "AMPLITUDE_API_URL": amplitude_url,
        "TIKTOK_AMP_START_DATE": start_date,
        "TIKTOK_AMP_TIMEZONE": timezone,
        "TIKTOK_AMP_DATA_DIR": str(home / "data"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", type=Path, default=Path(".demo"), help="folder for the demo's instance and data"
    )
    parser.add_argument("--port", type=int, default=3000, help="port of the Dagster UI")
    parser.add_argument("--tiktok-port", type=int, default=8701)
    parser.add_argument("--amplitude-port", type=int, default=8702)
    parser.add_argument("--emulators-only", action="store_true", help="run the emulators, not the Dagster UI")
    args = parser.parse_args(argv)
    _stop_on_sigint_and_sigterm()
    # Line by line even into a file or a pipe, so the demo's lines and dagster dev's stay in order.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        return _run(args)
    except KeyboardInterrupt:  # stopped before dagster dev started: the emulators closed on the way out
        return 0


def _run(args: argparse.Namespace) -> int:
    home = args.home.resolve()
    prepare_home(home)

    catalogue = generate_catalogue()
    advertiser_ids = sorted(catalogue.advertisers)
    with (
        TikTokEmulator(catalogue, port=args.tiktok_port) as tiktok,
        AmplitudeEmulator(port=args.amplitude_port) as amplitude,
    ):
        env = demo_environment(home, tiktok.url, amplitude.url, advertiser_ids)
        print(
            "TikTok emulator:    ",
            tiktok.url,
            f"({len(advertiser_ids)} ad accounts, {len(catalogue.ads)} ads)",
        )
        print("Amplitude emulator: ", amplitude.url, f"(what it counted: {amplitude.url}/emulator/summary)")
        if args.emulators_only:
            print("Environment for the project:")
            for name, value in env.items():
                print(f"  export {name}={value}")
            return _wait_for_interrupt()
        print(f"Dagster UI:          http://127.0.0.1:{args.port}  (Ctrl-C stops everything)")
        return _run_dagster_dev(home, args.port, {**os.environ, **env})


# A process started from a background shell inherits SIGINT ignored, and dagster dev then ignores
# Ctrl-C and SIGTERM too: restore SIGINT, then exec the command (same pid). Unlike preexec_fn, this
# is safe while the emulators' threads run in this process.
_RESTORE_SIGINT = "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])"


def with_sigint_restored(command: list[str]) -> list[str]:
    """``command`` (an executable's path first) run so that it takes Ctrl-C whatever its parent ignored."""
    return [sys.executable, "-c", _RESTORE_SIGINT, *command]


def _stop_on_sigint_and_sigterm() -> None:
    """Ctrl-C, ``kill`` and a process manager's or container's stop all end the demo the same way:
    as a KeyboardInterrupt in the main thread, which stops dagster dev's whole tree and the
    emulators. SIGINT is taken even when a non-interactive shell started the demo with it ignored."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def _ignore_further_interrupts() -> None:
    # While stopping: a second Ctrl-C must not abandon the children half-stopped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _run_dagster_dev(home: Path, port: int, env: dict[str, str]) -> int:
    command = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(home / "workspace.yaml"),
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    # From the demo's own folder: no dagster.yaml there but the instance's, so Dagster sees one instance.
    process = subprocess.Popen(with_sigint_restored(command), cwd=home, env=env, start_new_session=True)
    threading.Thread(
        target=fill_recent_days,
        args=(f"http://127.0.0.1:{port}", process),
        name="first-backfill",
        daemon=True,
    ).start()
    try:
        return process.wait()
    except KeyboardInterrupt:
        _ignore_further_interrupts()
        print("Stopping dagster dev (webserver, daemon, code servers, runs)...")
        stop_process_tree(process, grace_seconds=30)
        return 0


def _wait_for_interrupt() -> int:
    try:
        while True:
            signal.pause()
    except KeyboardInterrupt:
        _ignore_further_interrupts()
    return 0


# ------------------------------------------------------------------------------ the first backfill

LOADED_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"
STATE_QUERY = """{
  assetNodes { assetKey { path } partitionKeys partitionStats { numMaterialized } }
  partitionBackfillsOrError(limit: 1) { ... on PartitionBackfills { results { id } } }
}"""
LAUNCH_MUTATION = """mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""
BACKFILL_QUERY = """query ($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } ... on Error { message } }
}"""
BACKFILL_DONE = ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED")


class DagsterGraphQLError(Exception):
    """The webserver answered a GraphQL request with errors, or the demo's first backfill failed."""


def dagster_graphql(ui_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """``query`` against a running Dagster webserver's GraphQL API: its ``data``."""
    response = requests.post(
        f"{ui_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise DagsterGraphQLError(f"the webserver's GraphQL API answered: {body['errors']}")
    return body["data"]


def code_location_loaded(ui_url: str) -> bool:
    """Whether the webserver answers with every code location loaded (False while it starts)."""
    try:
        entries = dagster_graphql(ui_url, LOADED_QUERY)["workspaceOrError"]["locationEntries"]
    except (requests.RequestException, ValueError, KeyError, TypeError, DagsterGraphQLError):
        return False
    return bool(entries) and all(entry["loadStatus"] == "LOADED" for entry in entries)


def _wait_until_loaded(ui_url: str, process: subprocess.Popen[bytes], timeout: float = 600) -> bool:
    """True once the code location is loaded; False if dagster dev exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if code_location_loaded(ui_url):
            return True
        time.sleep(1)
    raise DagsterGraphQLError(f"the Dagster UI did not load the code location within {timeout:.0f} s")


def fill_recent_days(ui_url: str, process: subprocess.Popen[bytes], days: int = FIRST_BACKFILL_DAYS) -> None:
    """On an instance that has never materialized anything, back-fill the last ``days`` days of
    every asset, launched through the webserver and run by the daemon as a backfill from the UI is:
    the demo then opens with lineage, partitions, plots and checks filled in."""
    backfill_id = None
    try:
        if not _wait_until_loaded(ui_url, process):
            return
        state = dagster_graphql(ui_url, STATE_QUERY)
        nodes = state["assetNodes"]
        backfills = state["partitionBackfillsOrError"].get("results", [])
        if backfills or any((node["partitionStats"] or {}).get("numMaterialized") for node in nodes):
            return  # not a fresh instance: leave what the user has done alone
        partition_keys = min((node["partitionKeys"] for node in nodes), key=len)[-days:]
        params = {
            "partitionNames": partition_keys,
            "assetSelection": [node["assetKey"] for node in nodes],
            "title": f"Demo: the last {days} days",
        }
        launched = dagster_graphql(ui_url, LAUNCH_MUTATION, {"params": params})["launchPartitionBackfill"]
        if "backfillId" not in launched:
            raise DagsterGraphQLError(f"{launched['__typename']}: {launched.get('message')}")
        backfill_id = launched["backfillId"]
        print(
            f"Filling the last {days} days ({partition_keys[0]} to {partition_keys[-1]}) with backfill "
            f"{backfill_id}: {ui_url}/runs/b/{backfill_id}"
        )
        status = ""
        while status not in BACKFILL_DONE and process.poll() is None:
            time.sleep(2)
            backfill = dagster_graphql(ui_url, BACKFILL_QUERY, {"id": backfill_id})[
                "partitionBackfillOrError"
            ]
            status = backfill.get("status", "")
        if status in ("COMPLETED", "COMPLETED_SUCCESS"):
            print(f"The last {days} days are in: {ui_url}/assets")
        elif status:
            print(f"The first backfill ended {status}: see {ui_url}/runs/b/{backfill_id}")
    except (requests.RequestException, ValueError, KeyError, TypeError, DagsterGraphQLError) as error:
        if process.poll() is not None:
            return  # stopping: the webserver went first
        if backfill_id is None:
            print(
                f"The demo could not launch its first backfill ({error}). Launch one from the UI: Assets, "
                "Materialize all, pick the days.",
                file=sys.stderr,
            )
        else:
            print(
                f"Lost track of the first backfill ({error}): see {ui_url}/runs/b/{backfill_id}",
                file=sys.stderr,
            )


if __name__ == "__main__":
    sys.exit(main())
