"""A real Prefect server for tests: 127.0.0.1, a free port, a throwaway PREFECT_HOME, stopped by PID.

from tests.support.services_prefect import prefect_server, use_prefect_api

with prefect_server(tmp_path) as srv:          # waits for /api/health (~20-30 s on a new DB)
    with use_prefect_api(srv.api_url):         # in-process flows and clients talk to it
        my_flow()
    subprocess.run([...], env=srv.client_env())  # CLI / subprocess clients
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from avf.services import free_port
from pipelines.server import PrefectServer


class TestPrefectServer(PrefectServer):
    """:class:`PrefectServer` plus the environment a client subprocess needs."""

    __test__ = False  # not a test class

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(base if base is not None else os.environ)
        env.update(
            PREFECT_API_URL=self.api_url,
            PREFECT_HOME=str((self.home / "client").resolve()),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )
        return env


@contextlib.contextmanager
def prefect_server(workdir: Path, *, port: int | None = None, timeout: float = 180.0) -> Iterator[TestPrefectServer]:
    """Start ``prefect server`` (no UI, SQLite under ``workdir/home``); always stop it."""
    server = TestPrefectServer(
        home=workdir / "home", port=port or free_port(), ui=False, log_path=workdir / "server.log"
    )
    try:
        server.start(wait=True, timeout=timeout)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def use_prefect_api(api_url: str) -> Iterator[None]:
    """Point this process's Prefect settings (read once at import) at ``api_url`` for the block."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    old = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield
    finally:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # send buffered run logs while the server is still up
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old
