"""Starting a server the tests need (dagster dev, the demo, the daemon) as an operator would, asking
its GraphQL API, and stopping it with every process it spawned."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import requests
from tiktok_amp_emulators.demo import with_sigint_restored

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


def dagster_graphql(base_url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """``query`` against a running Dagster webserver's GraphQL API; its ``data``, or a failed test."""
    response = requests.post(
        f"{base_url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks), from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[19]))
    return table


def process_tree(root: int) -> dict[int, int]:
    """The root and all its descendants: pid -> start time (so a reused pid is never mistaken for one)."""
    table = process_table()
    tree = {root: table[root][1]} if root in table else {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, started) in table.items():
            if ppid == parent and pid not in tree:
                tree[pid] = started
                frontier.append(pid)
    return tree


def stop_process_tree(process: subprocess.Popen[bytes], *, grace_seconds: float) -> None:
    """Ctrl-C, as an operator stops it; then SIGKILL whatever of its process tree is left (dagster
    dev starts its children in sessions of their own, so the tree is recorded first)."""
    tree = process_tree(process.pid)
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=grace_seconds)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    table = process_table()
    for pid, started in tree.items():
        if table.get(pid, (None, None))[1] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if process.poll() is None:
        process.wait(timeout=10)
