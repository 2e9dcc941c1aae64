"""The environment, read in one place: the deployment-wide settings and the variables connections name.

The data folder and the ledger are shared by every connection of a deployment, so they stay
process-wide variables (``TIKTOK_AMP_DATA_DIR``, ``TIKTOK_AMP_LEDGER_URL``), read when the code
location loads. Everything about one connection (its token, accounts, Amplitude project, time zone)
is in its ``defs.yaml`` (``tiktok_amp_assets/component.py``), which names the variables that hold
values; this module reads them: :func:`environment_value` at load, :func:`missing_variables` at a
run's first step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from tiktok_amp_assets.storage.locations import (
    DATA_DIR_VAR,
    LEDGER_URL_VAR,
    StorageConfigurationError,
    data_folder_setting,
    ledger_database_url,
    open_data_folder,
)


class ConfigurationError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it expects."""


# A local folder's absolute path or an object-store URL such as s3://bucket/prefix (a path given as a
# pathlib.Path is taken as its text).
DataFolder = Annotated[
    str, BeforeValidator(lambda value: os.fspath(value) if isinstance(value, os.PathLike) else value)
]


class DeploymentSettings(BaseModel):
    """What every connection of a deployment shares: where the state lives."""

    model_config = ConfigDict(frozen=True)

    data_dir: DataFolder

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeploymentSettings:
        return cls(data_dir=_data_dir_setting(os.environ if env is None else env))


def environment_value(name: str) -> str | None:
    """A variable of this process's environment, stripped; None when unset or blank. The one place
    the project reads its environment (here and in :meth:`DeploymentSettings.from_env`)."""
    return _value(os.environ, name)


def missing_variables(names: Iterable[str]) -> list[str]:
    """The variables of ``names`` this process's environment does not set, in order."""
    return [name for name in dict.fromkeys(names) if environment_value(name) is None]


def _value(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _data_dir_setting(env: Mapping[str, str]) -> str:
    """The data folder, and a check that the ledger has a home that suits it (TIKTOK_AMP_LEDGER_URL
    itself is a secret: it reaches the runs through ``dg.EnvVar``, and is only checked here)."""
    value = _value(env, DATA_DIR_VAR)
    if value is None:
        dagster_home = _value(env, "DAGSTER_HOME")
        value = os.path.join(dagster_home or os.getcwd(), "tiktok_amp_data")
    try:
        data_dir = data_folder_setting(value)
        ledger_database_url(open_data_folder(data_dir), _value(env, LEDGER_URL_VAR))
    except StorageConfigurationError as error:
        raise ConfigurationError(str(error)) from None
    return data_dir
