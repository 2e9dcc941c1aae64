"""How long the code location takes to load with many connections: ``dagster definitions validate``
(what a code server and each run do first: import the project, load every ``defs.yaml``, build and
check the definitions) on a copy of the project with 1, 20 and 100 connections of 10 ad accounts
each, made as the README makes one (a copy of ``defs/tiktok_ads`` with its own name and variables).

    .venv/bin/python bench/connections_load.py [--counts 1,20,100] [--repeat 3]

Prints, per count, the wall time of each run and the median, and the load of the process alone
(``load_definitions()`` in a fresh interpreter, without the CLI's start-up).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
ACCOUNTS = 10
_IN_PROCESS = (
    "import time; t = time.perf_counter(); "
    "from tiktok_amp_assets.code_location import load_definitions; "
    "d = load_definitions(); d.get_repository_def().get_all_jobs(); "
    "print(time.perf_counter() - t)"
)


def project_with_connections(folder: Path, count: int) -> Path:
    """A copy of the package whose defs/ holds ``count`` connections: tiktok_ads and count-1 copies."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", folder / "pyproject.toml")
    shutil.copytree(
        PROJECT_ROOT / "tiktok_amp_assets",
        folder / "tiktok_amp_assets",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    defs = folder / "tiktok_amp_assets" / "defs"
    template = (defs / "tiktok_ads" / "defs.yaml").read_text(encoding="utf-8")
    for index in range(1, count):
        name = f"client_{index:03d}"
        (defs / name).mkdir()
        text = template.replace("  name: tiktok_ads\n", f"  name: {name}\n")
        (defs / name / "defs.yaml").write_text(text.replace("{env: ", "{env: " + name.upper() + "_"))
    return folder


def environment(count: int, data_dir: Path) -> dict[str, str]:
    ids = ",".join(f"70000000000000{index:05d}" for index in range(ACCOUNTS))
    env = {name: value for name, value in os.environ.items() if not name.startswith(("TIKTOK", "AMPLITUDE"))}
    env["TIKTOK_AMP_DATA_DIR"] = str(data_dir)
    prefixes = [""] + [f"CLIENT_{index:03d}_" for index in range(1, count)]
    for prefix in prefixes:
        env[f"{prefix}TIKTOK_ACCESS_TOKEN"] = "bench-token"
        env[f"{prefix}TIKTOK_ADVERTISER_IDS"] = ids
        env[f"{prefix}AMPLITUDE_API_KEY"] = "bench-key"
    return env


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--counts", default="1,20,100")
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    print("connections | validate runs (s) | median (s) | load_definitions() in process (s)")
    for count in (int(part) for part in arguments.counts.split(",")):
        with tempfile.TemporaryDirectory() as temp:
            root = project_with_connections(Path(temp), count)
            env = environment(count, Path(temp) / "data")
            validate = [
                sys.executable,
                "-m",
                "dagster",
                "definitions",
                "validate",
                "-m",
                "tiktok_amp_assets.definitions",
            ]
            runs = [timed(validate, root, env) for _ in range(arguments.repeat)]
            loaded = subprocess.run(
                [sys.executable, "-c", _IN_PROCESS],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            in_process = float(loaded.stdout.strip().splitlines()[-1])
            print(
                f"{count:>11} | {', '.join(f'{run:.1f}' for run in runs):>17} | "
                f"{statistics.median(runs):>10.1f} | {in_process:.2f}"
            )


if __name__ == "__main__":
    main()
