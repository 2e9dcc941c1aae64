"""Starting a server the tests need (dagster dev, the demo, the daemon) as an operator would, asking
its GraphQL API, and stopping it with every process it spawned."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

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
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]


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
