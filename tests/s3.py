"""A real S3 API on 127.0.0.1 for the storage tests: moto's standalone server (``moto[server]``).

The sweep reaches it the way it reaches any S3: ``storage: s3://bucket/prefix`` in the experiment,
the endpoint in ``AWS_ENDPOINT_URL`` and the credentials in ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY``. The server keeps its objects in this process, so stopping it and
starting it again on the same port (``outage``) makes the storage unreachable for a while and
then brings it back with everything it held.
"""
from __future__ import annotations

import secrets
import socket
import time

BUCKET = "sweeps"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class S3Server:
    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # A secret no file may ever hold: the tests grep for it.
        self.secret = "secret-" + secrets.token_hex(12)
        self.server = None

    def env(self) -> dict[str, str]:
        """What a driver and every Ray node need in their environment."""
        return {"AWS_ACCESS_KEY_ID": "crack-sweep-test", "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true"}

    def start(self) -> S3Server:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port)
        self.server.start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.stop()
            self.server = None

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="crack-sweep-test",
                            aws_secret_access_key=self.secret)

    def make_bucket(self, name: str = BUCKET) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str = BUCKET, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def read(self, key: str, bucket: str = BUCKET) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def outage(self, seconds: float) -> None:
        """The storage unreachable for ``seconds``, then back with the same objects."""
        self.stop()
        try:
            time.sleep(seconds)
        finally:
            self.start()
