"""The code location as users run it: the `dagster` CLI in its own process, over real HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pytest

from tiktok_amp_assets.storage.import_store import ImportStore

from ..conftest import API_KEY, Project
from ..processes import code_location_loaded, free_ports, stop_process_tree

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def dagster_cli(project: Project, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **project.env, "DAGSTER_HOME": project.instance.root_directory}
    return subprocess.run(
        [sys.executable, "-m", "dagster", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_materialize_one_partition_and_a_range_from_the_cli(project: Project) -> None:
    day = date(2025, 3, 1)
    single = dagster_cli(
        project,
        "asset",
        "materialize",
        "-m",
        "tiktok_amp_assets.definitions",
        "--select",
        "group:tiktok_ads",
        "--partition",
        day.isoformat(),
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert project.amplitude_sums(day) == project.tiktok_truth(day)

    first, last = day + timedelta(days=1), day + timedelta(days=3)
    ranged = dagster_cli(
        project,
        "asset", "materialize", "-m", "tiktok_amp_assets.definitions", "--select", "group:tiktok_ads",
        "--partition-range", f"{first.isoformat()}...{last.isoformat()}",
    )  # fmt: skip
    assert ranged.returncode == 0, ranged.stderr[-3000:]
    instance = dg.DagsterInstance.from_config(project.instance.root_directory)
    expected = {(day + timedelta(days=offset)).isoformat() for offset in range(4)}
    for asset in ("tiktok_raw_reports", "tiktok_ad_metrics", "amplitude_upload_results"):
        assert instance.get_materialized_partitions(dg.AssetKey(["tiktok_ads", asset])) == expected
    for offset in range(1, 4):
        assert project.amplitude_sums(day + timedelta(days=offset)) == project.tiktok_truth(
            day + timedelta(days=offset)
        )
    # One run for the whole range, as a single-run backfill launches it.
    assert len(instance.get_runs()) == 2
    assert all(
        event["event_properties"]["ad_platform"] == "tiktok"
        for event in project.amplitude.counted_events(API_KEY)
    )


def test_the_workspace_loads_the_code_location(project: Project) -> None:
    listed = dagster_cli(project, "definitions", "validate", "-w", "workspace.yaml")
    assert listed.returncode == 0, listed.stderr[-3000:]


def readme_commands(page: Path = PROJECT_ROOT / "README.md") -> list[str]:
    """Every line of a page's ``bash`` blocks (the README's unless told), continuation lines joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.DOTALL):
        lines.extend(line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip())
    return lines


@pytest.mark.parametrize(
    "page", [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))], ids=lambda p: p.name
)
def test_every_documented_command_runs_from_the_virtualenv_it_sets_up(page: Path) -> None:
    # After the README's set-up only .venv/bin has Dagster's commands: a bare `dagster` is not on PATH.
    bare = [
        line
        for line in readme_commands(page)
        if re.match(r"(dagster|dagster-webserver|dagster-daemon|python|pytest)\b", line)
    ]
    assert bare == []


def project_folder_copy(tmp_path: Path) -> Path:
    """The project folder as a user has it (its files linked, not copied), where a command may leave
    files such as dry-run.yaml without touching the repository."""
    folder = tmp_path / "tiktok-amp-assets"
    folder.mkdir()
    for entry in PROJECT_ROOT.iterdir():
        if entry.name != ".git":
            (folder / entry.name).symlink_to(entry)
    return folder


def test_the_readme_cli_commands_work_as_written(project: Project, tmp_path: Path) -> None:
    """The README's backfill and dry-run commands, pasted into a fresh shell in the project folder with
    the environment pointing at the emulators, and its dagster dev command starting without warnings
    about the instance."""
    folder = project_folder_copy(tmp_path)
    if not (folder / ".venv" / "bin" / "dagster").exists():
        pytest.fail(
            "the README's commands run from .venv in the project folder: set it up as the README says"
        )
    readme = (PROJECT_ROOT / "README.md").read_text()
    config = readme.split("```yaml\nresources:\n  tiktok_ads_amplitude:", 1)[1].split("```", 1)[0]
    (folder / "dry-run.yaml").write_text(
        "resources:\n  tiktok_ads_amplitude:" + config
    )  # "save it as dry-run.yaml"
    env = {**os.environ, **project.env, "DAGSTER_HOME": project.instance.root_directory}
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # a fresh shell: no virtualenv activated

    commands = [line for line in readme_commands() if line.startswith(".venv/bin/dagster asset materialize")]
    assert len(commands) == 3, commands
    for command in commands:
        result = subprocess.run(
            ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"

    instance = dg.DagsterInstance.from_config(project.instance.root_directory)
    try:
        uploaded = instance.get_materialized_partitions(
            dg.AssetKey(["tiktok_ads", "amplitude_upload_results"])
        )
    finally:
        instance.dispose()
    # The one day, then the week; the dry run's day stays missing, and nothing of it was sent.
    week = {(date(2026, 11, 2) + timedelta(days=offset)).isoformat() for offset in range(7)}
    assert uploaded == {"2026-11-01", *week}
    for day in sorted(uploaded):
        assert project.amplitude_sums(date.fromisoformat(day)) == project.tiktok_truth(
            date.fromisoformat(day)
        )
    dry_day = date(2026, 11, 25)
    assert project.amplitude_sums(dry_day) == {}
    results = ImportStore(project.data_dir).read_upload_results(dry_day, dry_run=True)
    assert results["dry_run"] is True and results["events_planned"] == len(project.tiktok_truth(dry_day))

    # dagster dev from the project folder, as "Configure it for real accounts" runs it.
    # With the instance as the README sets it: DAGSTER_HOME is the project folder, whose dagster.yaml
    # then configures it (no warning about a dagster.yaml that is not the instance's).
    (dev,) = [line for line in readme_commands() if line.startswith(".venv/bin/dagster dev")]
    (home,) = [line for line in readme_commands() if line.startswith("export DAGSTER_HOME=$PWD")]
    port = free_ports(1)[0]
    log = tmp_path / "dagster-dev.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            ["bash", "-c", f"{home}\nexec {dev} -h 127.0.0.1 -p {port}"],
            cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        loaded = False
        while not loaded and time.monotonic() < deadline and process.poll() is None:
            loaded = code_location_loaded(f"http://127.0.0.1:{port}")
            time.sleep(0 if loaded else 1)
        assert loaded, log.read_text(errors="replace")[-3000:]
    finally:
        stop_process_tree(process, grace_seconds=30)
    output_text = log.read_text(errors="replace")
    assert "dagster.yaml" not in output_text, output_text[-3000:]
    assert "BetaWarning" not in output_text and "FutureWarning" not in output_text, output_text[-3000:]


def test_a_run_without_credentials_fails_in_one_line_naming_them(project: Project) -> None:
    env = {
        name: value
        for name, value in project.env.items()
        if name not in ("TIKTOK_ACCESS_TOKEN", "AMPLITUDE_API_KEY")
    }
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "tiktok_amp_assets.definitions",
         "--select", "group:tiktok_ads", "--partition", "2025-03-01"],
        cwd=PROJECT_ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in project.env}, **env,
             "DAGSTER_HOME": project.instance.root_directory},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "TIKTOK_ACCESS_TOKEN, AMPLITUDE_API_KEY are not set (connection tiktok_ads, " in output
    assert "defs/tiktok_ads/defs.yaml): set them in the environment" in output
    assert "PostProcessingError" not in output and "You have attempted to fetch" not in output
    assert project.tiktok.request_log == []
