"""Real local servers for tests, bound to 127.0.0.1 on a free port, stopped by PID (reusable fixtures).

    from tests.support.services import mlflow_server

    def test_x(tmp_path):
        with mlflow_server(tmp_path) as srv:      # waits for /health
            ...srv.url...
            srv.stop(); srv.start()               # restart: same port, backend and artifacts

Or use the ``running_mlflow`` fixture: ``from tests.support.services import running_mlflow  # noqa: F401``.
With ``auth_config`` (see :func:`avf.services.write_auth_config`) and ``secret_key`` it runs MLflow's
basic-auth app.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from avf.services import MlflowServer, free_port


@contextlib.contextmanager
def mlflow_server(
    workdir: Path,
    *,
    port: int | None = None,
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
    timeout: float = 120.0,
    auth_config: Path | None = None,
    secret_key: str | None = None,
) -> Iterator[MlflowServer]:
    """Start ``mlflow server`` on 127.0.0.1 (SQLite backend and artifacts under ``workdir``); always stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(
        backend_store_uri=backend_store_uri or f"sqlite:///{(workdir / 'server.db').resolve()}",
        artifacts_destination=artifacts_destination or str((workdir / "server-artifacts").resolve()),
        port=port or free_port(),
        host="127.0.0.1",
        log_path=workdir / "mlflow-server.log",
        basic_auth=auth_config is not None,
        auth_config=auth_config,
        secret_key=secret_key,
    )
    try:
        server.start(wait=True, timeout=timeout)
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowServer]:
    """A fresh MLflow server for one test; ``MLFLOW_TRACKING_URI`` points at it."""
    with mlflow_server(tmp_path / "mlflow-server") as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        yield server
