"""Tests that need a program this machine may lack (PostgreSQL, Chromium, Docker) skip without it
and say why; under CI=true they fail instead, so CI cannot pass by skipping them (.ci/run installs
what they need)."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(what: str, reason: str) -> NoReturn:
    """Skip the test for ``reason``; under CI, fail saying that CI must run ``what``."""
    if on_ci():
        pytest.fail(f"CI must run {what}, but {reason}", pytrace=False)
    pytest.skip(reason)
