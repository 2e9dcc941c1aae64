"""The product and the emulators as wheels, installed as a user would outside this checkout.

The product's wheel carries no emulator, no HTTP server and no numpy; the emulators' wheel carries
``tiktok-amp-demo`` and its instance files, and the demo started from the two wheels, in a folder
that is not this checkout, loads the code location in Dagster.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from tiktok_amp_emulators.demo import code_location_loaded

from ..processes import PROJECT_ROOT, free_ports, start_process_group, stop_process_tree

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def wheels() -> Iterator[dict[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="tiktok-amp-wheels-") as folder:
        out = Path(folder) / "dist"
        for source in (PROJECT_ROOT, PROJECT_ROOT / "emulators"):
            built = subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                capture_output=True,
                text=True,
                timeout=240,
            )
            assert built.returncode == 0, built.stderr[-3000:]
        found = {wheel.name.split("-")[0]: wheel for wheel in out.glob("*.whl")}
        assert set(found) == {"tiktok_amp_assets", "tiktok_amp_emulators"}, found
        yield found


def _wheel_files(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def _requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    # Requirements of the base install only: extras (test, postgres, ...) are asked for by name.
    return [
        line.split(":", 1)[1].strip()
        for line in lines
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]


def test_the_product_wheel_ships_no_emulator_and_needs_no_numpy(wheels: dict[str, Path]) -> None:
    product = _wheel_files(wheels["tiktok_amp_assets"])
    assert any(name.startswith("tiktok_amp_assets/assets") for name in product)
    # The default connection, found by the installed package without a checkout (code_location.py).
    assert "tiktok_amp_assets/defs/tiktok_ads/defs.yaml" in product
    assert not [name for name in product if "emulator" in name or name.endswith("demo.py")]
    requirements = [requirement.lower() for requirement in _requirements(wheels["tiktok_amp_assets"])]
    assert requirements and not [r for r in requirements if r.startswith("numpy")], requirements

    emulators = _wheel_files(wheels["tiktok_amp_emulators"])
    assert "tiktok_amp_emulators/instance/dagster.yaml" in emulators
    assert "tiktok_amp_emulators/instance/workspace.yaml" in emulators


def test_the_demo_runs_from_the_installed_wheels(wheels: dict[str, Path], tmp_path: Path) -> None:
    # The wheels' own files, ahead of this checkout's editable install; their dependencies (Dagster,
    # requests, numpy...) from the test environment, which has them all.
    target = tmp_path / "site"
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "-q",
            "--target",
            str(target),
            *map(str, wheels.values()),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"}
    env["PYTHONPATH"] = str(target)
    elsewhere = tmp_path / "elsewhere"  # not the checkout: no workspace.yaml or dagster.yaml to lean on
    elsewhere.mkdir()
    where = subprocess.run(
        [
            sys.executable,
            "-c",
            "import tiktok_amp_assets, tiktok_amp_emulators as e; print(tiktok_amp_assets.__file__); print(e.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout

    port, tiktok_port, amplitude_port = free_ports(3)
    log = tmp_path / "demo.log"
    command = [
        sys.executable, "-m", "tiktok_amp_emulators.demo", "--home", str(tmp_path / "home"),
        "--port", str(port), "--tiktok-port", str(tiktok_port), "--amplitude-port", str(amplitude_port),
    ]  # fmt: skip
    process = start_process_group(command, env, log, cwd=elsewhere)
    try:
        loaded = False
        deadline = time.monotonic() + 150
        while not loaded and process.poll() is None and time.monotonic() < deadline:
            loaded = code_location_loaded(f"http://127.0.0.1:{port}")
            time.sleep(0 if loaded else 1)  # not up yet
        assert loaded, log.read_text(errors="replace")[-4000:]
        assert (tmp_path / "home" / "workspace.yaml").exists()
    finally:
        stop_process_tree(process, grace_seconds=45)
