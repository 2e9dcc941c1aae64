"""Starting a server the tests need (dagster dev, the demo, the daemon) as an operator would, asking
its GraphQL API, and stopping it with every process it spawned."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tiktok_amp_emulators.demo import code_location_loaded, dagster_graphql, with_sigint_restored
from tiktok_amp_emulators.processes import process_tree, stop_process_tree

__all__ = [
    "code_location_loaded",
    "dagster_graphql",
    "free_ports",
    "port_is_free",
    "process_tree",
    "start_process_group",
    "stop_process_tree",
    "wait_for",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]

_Result = TypeVar("_Result")


def start_process_group(
    command: list[str], env: dict[str, str], log: Path, *, cwd: Path = PROJECT_ROOT
) -> subprocess.Popen[bytes]:
    """``command`` in a process group of its own (for Ctrl-C), its output in ``log``."""
    with log.open("wb") as output:
        return subprocess.Popen(
            with_sigint_restored(command),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports free right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_for(
    what: str, check: Callable[[], _Result | None], timeout: float, diagnostics: Callable[[], str]
) -> _Result:
    """``check()``'s first truthy answer, polled every second. Errors while a server starts count as
    "not yet" (requests' errors are OSErrors); after ``timeout`` seconds the test fails, naming
    ``what`` and the last answer, with ``diagnostics()`` (the servers' logs)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, KeyError, TypeError, ValueError) as error:
            last = error
        time.sleep(1)
    pytest.fail(f"{what} not reached within {timeout:.0f} s (last: {last!r})\n{diagnostics()}", pytrace=False)
