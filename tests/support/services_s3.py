"""A real S3 HTTP endpoint for tests: moto's server on 127.0.0.1, a free port, stopped by PID.

    from tests.support.services_s3 import s3_server

    with s3_server(tmp_path) as s3:          # waits until it answers S3 requests
        s3.make_bucket("dvc")
        subprocess.run([...], env=s3.client_env())   # AWS_* for DVC (s3fs) and boto3, MLFLOW_S3_ENDPOINT_URL

The variables are the ones ``infra/compose.yaml`` gives its MinIO clients, so what passes here is the
team stack's configuration with another S3 implementation behind it. moto keeps objects in memory:
they are gone when the server stops.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from avf.services import ServiceError, free_port, http_ok, stop_pid

ACCESS_KEY = "avf-test-access"
SECRET_KEY = "avf-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    """``moto_server`` (S3 API) on ``127.0.0.1:port``."""

    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) plus the credentials and endpoint of this server."""
        env = dict(os.environ if base is None else base)
        env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION=REGION,
            AWS_ENDPOINT_URL=self.url,  # botocore (DVC's s3fs, boto3) reads it
            MLFLOW_S3_ENDPOINT_URL=self.url,  # MLflow's S3 artifact repository reads this one
        )
        return env

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def start(self, timeout: float = 60.0) -> S3Server:
        exe = Path(sys.executable).with_name("moto_server")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(exe), "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"moto_server exited with {self.proc.returncode}: {self.log_path.read_text()}")
            if http_ok(self.url + "/moto-api/"):
                return self
            time.sleep(0.2)
        self.stop()
        raise ServiceError(f"moto_server not answering after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is not None:
            stop_pid(self.proc.pid, 10, self.proc)
            self.proc = None


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[S3Server]:
    """Start an S3 endpoint on 127.0.0.1; always stop it."""
    server = S3Server(port=free_port(), log_path=workdir / "s3-server.log")
    try:
        yield server.start()
    finally:
        server.stop()
