"""A process and everything it started, found and stopped as a whole.

``dagster dev`` starts its webserver, daemon and code servers in sessions of their own, and the
code servers start the runs: killing its process group is not enough, and children orphaned by a
dead parent are no longer found by parent id. So the tree is recorded before anything is signalled,
and each process is recognized by its pid and start time (a reused pid is never mistaken for one).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


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
    """The root and all its descendants: pid -> start time."""
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


def alive(tree: dict[int, int]) -> dict[int, int]:
    """The processes of ``tree`` still running (zombies count as gone: they hold no port)."""
    table = process_table()
    running = {}
    for pid, started in tree.items():
        if table.get(pid, (None, None))[1] != started:
            continue
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z":
            running[pid] = started
    return running


def stop_process_tree(process: subprocess.Popen[bytes], *, grace_seconds: float) -> int:
    """Stop ``process`` (the leader of its own process group) and all it started: SIGINT to its group,
    as Ctrl-C would, ``grace_seconds`` for a clean shutdown, then SIGTERM and at last SIGKILL to
    whatever of the recorded tree is left. Returns the process's exit status."""
    tree = process_tree(process.pid)
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=grace_seconds)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    for stop_signal, wait_seconds in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        left = alive(tree)
        if not left:
            break
        for pid in left:
            try:
                os.kill(pid, stop_signal)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_seconds
        while alive(tree) and time.monotonic() < deadline:
            time.sleep(0.1)
    if process.poll() is None:
        process.wait(timeout=10)
    return process.returncode
