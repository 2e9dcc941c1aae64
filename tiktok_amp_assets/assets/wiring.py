"""What every asset step does first: check the configuration, in one line that names the variable."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import dagster as dg

from tiktok_amp_assets.resources import check_required_variables
from tiktok_amp_assets.settings import ConfigurationError

T = TypeVar("T")


def configured(build: Callable[[], T]) -> T:
    """``build()``, with a configuration problem turned into a Dagster failure naming the variable."""
    try:
        return build()
    except ConfigurationError as error:
        raise dg.Failure(description=str(error)) from None


def require_variables() -> None:
    """Fail the step in one line naming every required variable that is not set."""
    configured(check_required_variables)
