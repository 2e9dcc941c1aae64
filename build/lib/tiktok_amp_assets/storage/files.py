"""Atomic file writes: a reader (or a run killed mid-write) never sees a torn file."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tiktok_amp_assets.core.json_codec import dump_json, load_json

TEMP_SUFFIX = ".tmp"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def remove_abandoned_temp_files(folder: Path, older_than_seconds: float) -> list[Path]:
    """Delete the temporary files that writes killed mid-way left under ``folder``.

    Only files older than ``older_than_seconds``: a younger one may belong to a write in progress
    in another run (another partition), which would fail if its file vanished before the rename.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    deadline = time.time() - older_than_seconds
    for temp in folder.rglob(f".*{TEMP_SUFFIX}"):
        try:
            if temp.is_file() and temp.stat().st_mtime < deadline:
                temp.unlink()
                removed.append(temp)
        except FileNotFoundError:  # renamed or removed meanwhile by its own writer
            continue
    return removed


def atomic_write_json(path: Path, payload: Any) -> None:
    # Compact on purpose: a year's raw reports and results are hundreds of megabytes.
    atomic_write_bytes(path, dump_json(payload))


def atomic_write_json_lines(path: Path, records: list[dict[str, Any]]) -> None:
    atomic_write_bytes(path, b"".join(dump_json(record) + b"\n" for record in records))


def read_json(path: Path) -> Any:
    """Any stored JSON, TikTok's answers included, read exactly (an int beyond 64 bits stays an int)."""
    return json.loads(path.read_bytes())


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Rows this project wrote with :func:`atomic_write_json_lines`."""
    with path.open("rb") as handle:
        return [load_json(line) for line in handle if line.strip()]
