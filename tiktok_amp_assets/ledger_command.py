"""``tiktok-amp-ledger copy``: move a ledger from its SQLite file into PostgreSQL.

A user who started on one machine (the default: ``amplitude_ledger.sqlite`` in the data folder)
keeps the memory of what Amplitude counted when moving to ``TIKTOK_AMP_LEDGER_URL``::

    TIKTOK_AMP_LEDGER_URL=postgresql://user:password@host:5432/tiktok_amp_ledger \\
        tiktok-amp-ledger copy --from /srv/tiktok-amp/data/amplitude_ledger.sqlite

The destination is read from ``TIKTOK_AMP_LEDGER_URL`` unless ``--to`` is given (a URL on the
command line is visible to other users of the machine in its process list). The command refuses to
copy into a ledger that holds events, and prints the destination with its password masked.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError

from tiktok_amp_assets.settings import environment_value
from tiktok_amp_assets.storage.ledger import AmplitudeLedger, LedgerNotEmptyError
from tiktok_amp_assets.storage.locations import (
    LEDGER_FILE_NAME,
    LEDGER_URL_VAR,
    StorageConfigurationError,
    postgres_ledger_url,
    safe_ledger_url,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tiktok-amp-ledger", description="Manage the ledger of what Amplitude counted."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser(
        "copy",
        help="copy a SQLite ledger into an empty PostgreSQL ledger",
        description="Copy a SQLite ledger into an empty PostgreSQL ledger; refuses a destination that holds events.",
    )
    copy.add_argument(
        "--from",
        dest="source",
        required=True,
        type=Path,
        help=f"the SQLite ledger: {LEDGER_FILE_NAME} in the old data folder (or the folder itself)",
    )
    copy.add_argument(
        "--to",
        dest="destination",
        default=None,
        help=f"postgresql://user:password@host:port/database (default: ${LEDGER_URL_VAR})",
    )
    arguments = parser.parse_args(argv)
    try:
        copied, destination = copy_ledger(
            arguments.source, arguments.destination or environment_value(LEDGER_URL_VAR)
        )
    except (StorageConfigurationError, LedgerNotEmptyError, FileNotFoundError) as error:
        print(f"tiktok-amp-ledger: {error}", file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        # The driver's message names host, port and user, never the password.
        print(
            f"tiktok-amp-ledger: the copy failed, the destination is unchanged: {getattr(error, 'orig', None) or error}",
            file=sys.stderr,
        )
        return 1
    print(f"copied {copied} events from {arguments.source} into {safe_ledger_url(destination)}")
    return 0


def copy_ledger(source: Path, destination: str | None) -> tuple[int, URL]:
    """Copy the SQLite ledger at ``source`` (a file, or the data folder holding it) into the
    PostgreSQL ledger at ``destination``; the number of events copied and the destination's URL."""
    if not destination:
        raise StorageConfigurationError(f"no destination: set {LEDGER_URL_VAR} (or pass --to)")
    source_file = source / LEDGER_FILE_NAME if source.is_dir() else source
    if not source_file.is_file():
        raise FileNotFoundError(
            f"no SQLite ledger at {source_file}: pass --from the old data folder's {LEDGER_FILE_NAME}"
        )
    destination_url = postgres_ledger_url(destination)
    copied = AmplitudeLedger(URL.create("sqlite", database=str(source_file)), create=False).copy_into(
        AmplitudeLedger(destination_url)
    )
    return copied, destination_url


if __name__ == "__main__":
    sys.exit(main())
