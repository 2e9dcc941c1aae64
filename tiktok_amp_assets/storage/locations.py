"""Where the state lives: the data folder (a local folder or an object store) and the ledger's database.

A data folder is either a local path or an object-store URL (``s3://``, ``gs://``, ``az://``,
``abfs://``), reached through fsspec's filesystem package for its scheme, installed as this project's
extra of the same purpose. A value with a scheme is never taken for a local folder: ``s3://b`` must
not silently become a folder named ``s3:`` in each run's working directory.

The ledger is a SQLite file in a local data folder by default, or a PostgreSQL database named by a
``postgresql://user:password@host:port/database`` URL. That URL holds a password: no message here
quotes it (:func:`safe_ledger_url` shows it with the password masked).
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from upath import UPath

DATA_DIR_VAR = "TIKTOK_AMP_DATA_DIR"
LEDGER_URL_VAR = "TIKTOK_AMP_LEDGER_URL"
LEDGER_FILE_NAME = "amplitude_ledger.sqlite"


@dataclass(frozen=True)
class ObjectStore:
    package: str  # the fsspec filesystem package that serves the scheme
    extra: str  # this project's extra that installs it
    # The filesystem's options for whole-object reads (files.py reads each object in one request).
    options: Mapping[str, Any] = field(default_factory=dict)


OBJECT_STORES: dict[str, ObjectStore] = {
    # s3fs reads an object over 50 MB as ranges in parallel; ranges could straddle another run's
    # overwrite of the object, one GET cannot.
    "s3": ObjectStore("s3fs", "s3", {"max_concurrency": 1}),
    "gs": ObjectStore("gcsfs", "gcs"),
    "gcs": ObjectStore("gcsfs", "gcs"),
    "az": ObjectStore("adlfs", "azure"),
    "abfs": ObjectStore("adlfs", "azure"),
    "abfss": ObjectStore("adlfs", "azure"),
}
# Two letters or more before the colon: a scheme, as in s3://, gs:, file://.
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):")
# SQLAlchemy maps a bare postgresql:// to psycopg 3; the driver installed here (and by
# dagster-postgres) is psycopg2.
LEDGER_DRIVER = "postgresql+psycopg2"
_POSTGRES_SCHEMES = ("postgresql", "postgres", LEDGER_DRIVER)


class StorageConfigurationError(ValueError):
    """The data folder or the ledger URL cannot be used; the message says what to change."""


def scheme_of(value: str) -> str | None:
    match = _SCHEME.match(value.strip())
    return match.group("scheme").lower() if match else None


def object_store_of(url: str) -> ObjectStore:
    """The object store serving ``url``, its package installed; otherwise an error naming the extra."""
    scheme = scheme_of(url)
    store = OBJECT_STORES.get(scheme or "")
    if store is None:
        supported = ", ".join(f"{name}://" for name in OBJECT_STORES)
        raise StorageConfigurationError(
            f"{DATA_DIR_VAR} must be a local folder or an object-store URL ({supported}); got the "
            f"unsupported scheme {scheme}:// (write a local folder as a plain path, without file://)"
        )
    if importlib.util.find_spec(store.package) is None:
        raise StorageConfigurationError(
            f"{DATA_DIR_VAR} is a {scheme}:// URL, served by the {store.package} package, which is not "
            f"installed: pip install 'tiktok-amp-assets[{store.extra}]' (in the image runs execute in, too)"
        )
    return store


def data_folder_setting(value: str) -> str:
    """The data folder as stored in the settings: an object-store URL as given (without a trailing
    slash), or a local folder as an absolute path."""
    value = value.strip()
    if scheme_of(value) is None:
        return str(UPath(os.path.expanduser(value)).resolve())
    object_store_of(value)
    bucket_and_prefix = value.split("://", 1)[1].strip("/") if "://" in value else ""
    if not bucket_and_prefix:
        raise StorageConfigurationError(
            f"{DATA_DIR_VAR} must name a bucket (and optionally a prefix), such as "
            f"{scheme_of(value)}://my-bucket/tiktok-amp; got {value!r}"
        )
    return f"{scheme_of(value)}://{bucket_and_prefix}"


def is_object_store(data_folder: str | os.PathLike[str]) -> bool:
    return scheme_of(os.fspath(data_folder)) is not None


def open_data_folder(data_folder: str | os.PathLike[str]) -> UPath:
    """The data folder as a path: a local one is a ``pathlib.Path`` too, an object store's is fsspec's."""
    text = os.fspath(data_folder)
    if not is_object_store(text):
        return UPath(text)
    return UPath(data_folder_setting(text), **object_store_of(text).options)


def ledger_database_url(data_folder: UPath, configured: str | None) -> URL:
    """The ledger's database: ``configured`` (PostgreSQL), else the SQLite file in a local data folder."""
    if configured and configured.strip():
        return postgres_ledger_url(configured)
    if is_object_store(str(data_folder)):
        raise StorageConfigurationError(
            f"{LEDGER_URL_VAR} must be set when {DATA_DIR_VAR} is an object store ({data_folder}): the "
            "ledger of what Amplitude counted needs a database every run reaches, such as "
            "postgresql://user:password@host:5432/tiktok_amp_ledger"
        )
    return URL.create("sqlite", database=str(data_folder / LEDGER_FILE_NAME))


def postgres_ledger_url(value: str) -> URL:
    """``postgresql://user:password@host:port/database`` mapped to the installed driver. Errors never
    quote the value: it holds a password."""
    expected = f"{LEDGER_URL_VAR} must be written postgresql://user:password@host:port/database"
    scheme = scheme_of(value)
    if scheme not in _POSTGRES_SCHEMES:
        raise StorageConfigurationError(f"{expected}; it starts with {scheme or 'no scheme'}")
    try:
        url = make_url(value.strip())
    except (ArgumentError, ValueError):
        raise StorageConfigurationError(f"{expected}; it could not be read as such a URL") from None
    missing = [part for part in ("host", "database") if not getattr(url, part)]
    if missing:
        raise StorageConfigurationError(f"{expected}; its {' and '.join(missing)} is missing")
    if importlib.util.find_spec("psycopg2") is None:
        raise StorageConfigurationError(
            f"{LEDGER_URL_VAR} is a PostgreSQL URL, which needs the psycopg2 driver: "
            "pip install 'tiktok-amp-assets[postgres]'"
        )
    return url.set(drivername=LEDGER_DRIVER)


def safe_ledger_url(url: URL) -> str:
    """The ledger's URL for messages and logs: the password masked."""
    return url.render_as_string(hide_password=True)
