"""Compact JSON for what the project writes itself: events, ledger payloads, metrics rows, results.

orjson encodes and decodes several times faster than the standard library (bench/RESULTS.md), and
a year's backfill encodes over a million events and rows. Where orjson cannot be exact, the
standard library takes over:

- a string with a lone surrogate (TikTok may send half an emoji) or an int beyond 64 bits cannot
  be encoded by orjson: the standard library writes it with ``\\u`` escapes in pure ASCII, exactly;
- text orjson refuses to decode (such a ``\\u`` escape, ``NaN``) is decoded by the standard library.

orjson would decode an int beyond 64 bits as a float, so :func:`load_json` is for JSON this project
wrote: its counts are capped at 2**63 - 1 and its money is written as text. TikTok's raw answers
are read with the standard library (``storage.files.read_json``), exactly as received.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dump_json(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON (no spaces); pure ASCII with escapes if orjson cannot."""
    try:
        # orjson hands back its whole output buffer, several times the size of a small event; an
        # exact-size copy costs next to nothing and keeps a request's encoded events to their own
        # size (bench/RESULTS.md, "Figures behind the code's choices").
        return memoryview(orjson.dumps(value)).tobytes()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False).encode("ascii")


def load_json(data: bytes | str) -> Any:
    """JSON written by :func:`dump_json` (or any JSON whose ints fit in 64 bits)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
