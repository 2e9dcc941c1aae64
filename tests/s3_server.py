"""A real S3 API on 127.0.0.1 for the tests: moto's server mode, in a thread of the test process.

The project reaches it as it reaches AWS: through s3fs, configured by the standard AWS variables
(``AWS_ENDPOINT_URL`` pointing at this server), so nothing in the product knows it is a test.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    @property
    def env(self) -> dict[str, str]:
        """The AWS variables a process needs to use this server (moto takes any credentials)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self):  # -> botocore S3 client
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return sorted(
            item["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        )


@contextmanager
def started_s3_server(host: str = "127.0.0.1") -> Iterator[S3Server]:
    """The server on ``host`` (loopback; tests/deploy/ gives the address containers reach the host at)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
