"""Stopping the demo: SIGTERM (a process manager, ``kill``, a container stop) and SIGINT (Ctrl-C) stop
everything it started, even when a non-interactive shell started it with SIGINT ignored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiktok_amp_emulators.processes import alive, process_tree

from ..processes import PROJECT_ROOT, code_location_loaded, free_ports, port_is_free


def _start_demo_from_a_background_shell(home: Path, ports: list[int], *extra: str) -> subprocess.Popen[bytes]:
    """The demo as ``tiktok-amp-demo &`` in a script starts it: SIGINT ignored, same session."""
    port, tiktok_port, amplitude_port = ports
    command = [
        sys.executable, "-m", "tiktok_amp_emulators.demo", "--home", str(home), "--port", str(port),
        "--tiktok-port", str(tiktok_port), "--amplitude-port", str(amplitude_port), *extra,
    ]  # fmt: skip
    env = {name: value for name, value in os.environ.items() if name != "DAGSTER_HOME"}
    with (home.parent / f"{home.name}.log").open("wb") as log:
        return subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509 (no threads yet)
        )


def _log(home: Path) -> str:
    path = home.parent / f"{home.name}.log"
    return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def _wait_for(
    condition: object, what: str, home: Path, process: subprocess.Popen[bytes], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the demo exited with {process.returncode} before {what}:\n{_log(home)}")
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.5)
    pytest.fail(f"{what} did not happen within {timeout:.0f} s:\n{_log(home)}")


def _stopped_cleanly(
    process: subprocess.Popen[bytes], sent: signal.Signals, ports: list[int], home: Path
) -> None:
    tree = process_tree(process.pid)
    process.send_signal(sent)  # to the demo alone, as kill or a process manager sends it
    try:
        returncode = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the demo did not stop within 60 s of {sent.name}:\n{_log(home)}")
    deadline = time.monotonic() + 10
    while alive(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = alive(tree)
    for pid in left:  # never leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} processes left behind after {sent.name}:\n{_log(home)}"
    assert returncode == 0, _log(home)
    assert [port for port in ports if not port_is_free(port)] == []


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_emulators_alone_stop_on_sigint_and_sigterm(tmp_path: Path, sent: signal.Signals) -> None:
    ports = free_ports(3)
    home = tmp_path / "demo"
    process = _start_demo_from_a_background_shell(home, ports, "--emulators-only")
    _wait_for(lambda: "export AMPLITUDE_API_URL" in _log(home), "the emulators' start", home, process, 60)
    _stopped_cleanly(process, sent, ports[1:], home)


@pytest.mark.timeout(240)
def test_the_whole_demo_stops_on_sigterm_leaving_no_process(tmp_path: Path) -> None:
    ports = free_ports(3)
    home = tmp_path / "demo"
    process = _start_demo_from_a_background_shell(home, ports)

    _wait_for(
        lambda: code_location_loaded(f"http://127.0.0.1:{ports[0]}"),
        "the UI loading the code location",
        home,
        process,
        180,
    )
    # dagster dev, its webserver and daemon, and the code servers they started.
    assert len(process_tree(process.pid)) >= 4, process_tree(process.pid)
    _stopped_cleanly(process, signal.SIGTERM, ports, home)
