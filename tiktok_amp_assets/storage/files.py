"""Whole-file writes: a reader (or a run killed mid-write) never sees a torn file.

Paths are universal-pathlib paths: a local folder's are ``pathlib.Path`` objects too, an object
store's reach it through fsspec. Local files are written to a temporary file in the same folder,
fsynced, then renamed over the target. An object store has no rename, and needs none: its object
appears only once the upload is complete (S3's single PUT or a completed multipart upload, GCS and
Azure likewise), so a reader sees the old object or the new one, and a failed upload leaves no
temporary object behind.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from upath import UPath

from tiktok_amp_assets.core.json_codec import dump_json

TEMP_SUFFIX = ".tmp"


def is_local(path: UPath | Path) -> bool:
    return isinstance(path, Path)


def atomic_write_bytes(path: UPath | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees either the old content or all of ``data``."""
    if not is_local(path):
        # One call, one object: pipe_file never exposes a partly written object (a multipart upload
        # that fails is aborted), unlike writing through an open file, whose close would commit it.
        path.fs.pipe_file(path.path, data)
        return
    local = Path(path)
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=local.parent, prefix=f".{local.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, local)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def remove_abandoned_temp_files(folder: UPath | Path, older_than_seconds: float) -> list[Path]:
    """Delete the temporary files that writes killed mid-way left under a local ``folder``.

    Only files older than ``older_than_seconds``: a younger one may belong to a write in progress
    in another run (another partition), which would fail if its file vanished before the rename.
    An object store has no temporary files (see the module's docstring): nothing to do there.
    """
    removed: list[Path] = []
    if not is_local(folder) or not Path(folder).is_dir():
        return removed
    deadline = time.time() - older_than_seconds
    for temp in Path(folder).rglob(f".*{TEMP_SUFFIX}"):
        try:
            if temp.is_file() and temp.stat().st_mtime < deadline:
                temp.unlink()
                removed.append(temp)
        except FileNotFoundError:  # renamed or removed meanwhile by its own writer
            continue
    return removed


def atomic_write_json(path: UPath | Path, payload: Any) -> None:
    # Compact on purpose: a year's raw reports and results are hundreds of megabytes.
    atomic_write_bytes(path, dump_json(payload))


def read_bytes_whole(path: UPath | Path) -> bytes:
    """The whole file, as one version of it even while another run overwrites it: an object in
    one request (opening it as a file would ask for its size, then for its bytes on condition that
    it did not change meanwhile, and fail if another run replaced it in between)."""
    if is_local(path):
        return Path(path).read_bytes()
    return path.fs.cat_file(path.path)


def read_json(path: UPath | Path) -> Any:
    """Any stored JSON, TikTok's answers included, read exactly (an int beyond 64 bits stays an int)."""
    return json.loads(read_bytes_whole(path))
