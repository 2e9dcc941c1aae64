"""``tiktok-amp-demo``: the whole project on this machine, with no credentials and no internet.

Starts the TikTok and Amplitude emulators on loopback, points the project at them, and runs the
Dagster UI (``dagster dev``) with a persistent instance under ``.demo/``. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

from tiktok_amp_emulators.amplitude_server import AmplitudeEmulator
from tiktok_amp_emulators.catalogue import generate_catalogue
from tiktok_amp_emulators.tiktok_server import TikTokEmulator

# The demo's instance and workspace files travel with the package, so the demo runs from a wheel too.
INSTANCE_FILES = files("tiktok_amp_emulators") / "instance"
DEMO_TOKEN = "emulator-token"
DEMO_API_KEY = "emulator-api-key"
# Fixed, like a real deployment's: partitions never shift between demo sessions.
DEMO_START_DATE = "2026-09-01"
# The demo catalogue's westernmost account is in Los Angeles: its days close last.
DEMO_TIMEZONE = "America/Los_Angeles"


def prepare_home(home: Path) -> None:
    """A folder for a Dagster instance on the embedded default (``home/dagster_home``, SQLite) and
    the workspace file that loads the installed code location (``home/workspace.yaml``)."""
    (home / "dagster_home").mkdir(parents=True, exist_ok=True)
    (home / "dagster_home" / "dagster.yaml").write_bytes((INSTANCE_FILES / "dagster.yaml").read_bytes())
    (home / "workspace.yaml").write_bytes((INSTANCE_FILES / "workspace.yaml").read_bytes())


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
    benchmark scripts' with their own credentials, start and zone)."""
    return {
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


def _run_dagster_dev(home: Path, port: int, env: dict[str, str]) -> int:
    command = [
        sys.executable, "-m", "dagster", "dev",
        "-w", str(home / "workspace.yaml"),
        "-h", "127.0.0.1", "-p", str(port),
    ]  # fmt: skip
    # From the demo's own folder: no dagster.yaml there but the instance's, so Dagster sees one instance.
    process = subprocess.Popen(with_sigint_restored(command), cwd=home, env=env, start_new_session=True)
    try:
        return process.wait()
    except KeyboardInterrupt:
        os.killpg(process.pid, signal.SIGINT)
        try:
            return process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            return process.wait()


def _wait_for_interrupt() -> int:
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
