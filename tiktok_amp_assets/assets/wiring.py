"""What every asset step does first: check the configuration, in one line that names the variable;
and the connection's resources, which are keyed by its name (connection.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import dagster as dg

from tiktok_amp_assets.connection import Connection
from tiktok_amp_assets.settings import ConfigurationError, missing_variables

T = TypeVar("T")


def configured(build: Callable[[], T]) -> T:
    """``build()``, with a configuration problem turned into a Dagster failure naming the variable."""
    try:
        return build()
    except ConfigurationError as error:
        raise dg.Failure(description=str(error)) from None


def require_variables(connection: Connection) -> None:
    """Fail the step in one line naming every variable the connection requires that is not set.

    The definitions read an unset required variable as an empty value (not ``EnvVar``): Dagster
    would otherwise fail the run while resolving its config, with a traceback per variable.
    """
    missing = missing_variables(connection.required_variables())
    if missing:
        one = len(missing) == 1
        raise dg.Failure(
            description=(
                f"{', '.join(missing)} {'is' if one else 'are'} not set (connection {connection.name}, "
                f"{connection.source}): set {'it' if one else 'them'} in the environment of the code "
                "location and its runs (for dagster dev, a .env file in the project folder; in production, "
                "your secret store or deployment environment), as the README's 'Configure it for real "
                "accounts' lists, then run again"
            )
        )


def resource(context: dg.AssetExecutionContext, connection: Connection, name: str) -> Any:
    """The connection's resource ``name`` (tiktok, amplitude, import_store)."""
    return getattr(context.resources, connection.resource_key(name))


def resource_keys(connection: Connection, *names: str) -> set[str]:
    return {connection.resource_key(name) for name in names}
