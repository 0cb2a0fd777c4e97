"""A local ``prefect server`` process: bound to 127.0.0.1 unless exposed with an auth string, stopped by PID.

Used by ``infra/stack.py`` and by the tests (``tests/support/services_prefect.py``). It runs the CLI in a
subprocess, so importing this module does not import Prefect.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from avf.services import ServiceError, check_bind, stop_pid
from pipelines.proc import executable

DEFAULT_PORT = 4200
AUTH_ENV = "PREFECT_SERVER_API_AUTH_STRING"  # "user:password"; clients send it as PREFECT_API_AUTH_STRING
SERVER_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # A fresh database takes longer than the 20 s default to create (see docs/env-stack.md §3).
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}


def health(api_url: str, auth_string: str | None = None, timeout: float = 2.0) -> bool:
    """``GET <api>/health`` answers 2xx (with basic auth when the server has an auth string)."""
    request = urllib.request.Request(api_url.rstrip("/") + "/health")
    if auth_string:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth_string.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (OSError, ValueError):
        return False


@dataclass
class PrefectServer:
    """``prefect server start`` with its SQLite database (or ``database_url``) under ``home``."""

    home: Path
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    expose: bool = False
    ui: bool = True
    database_url: str | None = None
    log_path: Path | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}/api"

    @property
    def auth_string(self) -> str | None:
        return self.extra_env.get(AUTH_ENV) or os.environ.get(AUTH_ENV) or None

    def command(self) -> list[str]:
        check_bind(self.host, self.expose)
        if self.expose and not self.auth_string:
            raise ServiceError(f"refusing to expose the Prefect server without {AUTH_ENV}=user:password")
        cmd = [executable("prefect"), "server", "start", "--host", self.host, "--port", str(self.port)]
        return [*cmd, "--ui" if self.ui else "--no-ui"]

    def env(self) -> dict[str, str]:
        env = {**os.environ, **SERVER_ENV, "PREFECT_HOME": str(self.home.resolve())}
        env.pop("PREFECT_API_URL", None)  # the server must not talk to another server
        if self.database_url:
            env["PREFECT_API_DATABASE_CONNECTION_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def start(self, wait: bool = True, timeout: float = 180.0) -> PrefectServer:
        """Start it in its own session (so the whole group can be stopped); wait for ``/api/health``."""
        if self.proc is not None and self.proc.poll() is None:
            raise ServiceError(f"Prefect server already running (pid {self.proc.pid})")
        cmd = self.command()
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path or self.home / "server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                start_new_session=True,
            )
        self.log_path = log
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(f"prefect server exited with {self.proc.returncode}{self.log_tail()}")
            if health(self.api_url, self.auth_string):
                return
            time.sleep(0.25)
        self.stop()
        raise ServiceError(f"prefect server not healthy after {timeout:.0f} s{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path and self.log_path.exists():
            return ":\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        stop_pid(self.proc.pid, timeout, self.proc)
        self.proc = None

    def __enter__(self) -> PrefectServer:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
