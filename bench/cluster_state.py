"""A cluster's state for the benchmark scripts: the data folder in S3 (moto's S3 server on
127.0.0.1, in a thread of the script) and the ledger in PostgreSQL (Debian's server), started as the
tests start them. The runs reach both through their environment only, as on a cluster."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ClusterState:
    env: dict[str, str]  # what a run needs: AWS variables, TIKTOK_AMP_DATA_DIR, TIKTOK_AMP_LEDGER_URL
    s3: Any  # tests.s3_server.S3Server
    bucket: str


@contextmanager
def cluster_state(name: str) -> Iterator[ClusterState]:
    """An S3 bucket and a PostgreSQL database named after ``name``, for the length of the block."""
    sys.path.insert(0, str(PROJECT_ROOT))
    from tests.postgres_server import started_postgres_server
    from tests.s3_server import started_s3_server

    # moto's server logs every request: thousands of lines for a long range.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with started_s3_server() as s3, started_postgres_server() as postgres:
        bucket = s3.create_bucket(f"tiktok-amp-{name}")
        yield ClusterState(
            {
                **s3.env,
                "TIKTOK_AMP_DATA_DIR": f"s3://{bucket}/state",
                "TIKTOK_AMP_LEDGER_URL": postgres.url(postgres.create_database(f"{name}_ledger")),
            },
            s3,
            bucket,
        )
