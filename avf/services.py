"""Local services for the pipeline: the MLflow tracking server, bound to 127.0.0.1 unless told otherwise.

    python -m avf.services mlflow run      # foreground (what infra/mlflow/serve.sh does)
    python -m avf.services mlflow start    # background; waits for /health; PID in runs/services/
    python -m avf.services mlflow stop     # stops the background server by its PID
    python -m avf.services mlflow status

Listening on another interface needs ``--expose`` (and then authentication: ``--basic-auth`` runs
MLflow's basic-auth app; a TLS reverse proxy with auth is the alternative; see
infra/mlflow/README.md). The basic-auth app needs ``MLFLOW_FLASK_SERVER_SECRET_KEY`` and, on its first
start, ``MLFLOW_AUTH_ADMIN_PASSWORD``; its users live in ``<state-dir>/mlflow_auth.db`` unless
``--auth-config`` names another MLflow auth config. :class:`MlflowServer` is also what the tests use
(tests/support/services.py).
"""

from __future__ import annotations

import argparse
import configparser
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_PORT = 5000
DEFAULT_STATE_DIR = Path("runs/services")
SERVER_ENV = {
    # Without this the server starts a job runner and 7 huey consumers (~1.7 GB instead of ~0.5 GB).
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}
# MLflow's basic-auth app reads these (mlflow/server/auth/config.py and create_app).
AUTH_CONFIG_ENV = "MLFLOW_AUTH_CONFIG_PATH"
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
AUTH_CONFIG_NAME = "mlflow_auth.ini"


class ServiceError(RuntimeError):
    """A service did not start, or a request to start it was refused."""


def check_bind(host: str, expose: bool) -> None:
    """Refuse a non-loopback bind address unless ``expose`` was asked for explicitly."""
    if host not in LOCAL_HOSTS and not expose:
        raise ServiceError(
            f"refusing to bind {host}: servers listen on 127.0.0.1 only. Pass --expose to listen on "
            "other interfaces, and protect the server (--basic-auth or an authenticating reverse proxy)."
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return 200 <= r.status < 300
    except (OSError, ValueError):
        return False


def _mlflow_exe() -> list[str]:
    exe = Path(sys.executable).with_name("mlflow")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "mlflow"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_pid(pid: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM ``pid`` (a server started in its own session), then SIGKILL what is left of that session.

    Pass ``proc`` when ``pid`` is our child, so that it is reaped (a zombie still answers kill 0).
    """

    def alive() -> bool:
        return proc.poll() is None if proc is not None else _alive(pid)

    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        time.sleep(0.1)
    if alive():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _group_alive(pid):  # its workers, if any, exit with it
        time.sleep(0.1)
    if _group_alive(pid):  # left behind: the session we created is ours to end
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def _sqlite_uri(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


def write_auth_config(
    path: Path,
    *,
    admin_user: str = "admin",
    default_permission: str = "READ",
    admin_password: str | None = None,
) -> Path:
    """Write an MLflow basic-auth config (what ``MLFLOW_AUTH_CONFIG_PATH`` names), owner-readable only.

    Its user database is ``path`` with the suffix ``.db`` (MLflow's default is ``basic_auth.db`` in the
    server's working directory). ``admin_password`` creates the admin on the first start; without it
    MLflow takes ``MLFLOW_AUTH_ADMIN_PASSWORD``. ``default_permission`` is what users get on resources
    they have no grant for (``NO_PERMISSIONS`` makes every resource private to its creator and admins).
    """
    settings = {
        "default_permission": default_permission,
        "database_uri": _sqlite_uri(path.with_suffix(".db")),
        "admin_username": admin_user,
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
        "grant_default_workspace_access": "false",
    }
    if admin_password:
        settings["admin_password"] = admin_password
    # MLflow reads the file with configparser, for which a bare % starts an interpolation
    lines = ["[mlflow]"] + [f"{k} = {v.replace('%', '%%')}" for k, v in settings.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when the file was there before
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def _first_start_without_admin_password(env: Mapping[str, str]) -> bool:
    """Whether the auth app would find neither an admin user nor a password to create one (MLflow then
    refuses to start). Known only for an auth config with a SQLite user database."""
    if env.get(ADMIN_PASSWORD_ENV):
        return False
    config = configparser.ConfigParser()
    if not config.read(env.get(AUTH_CONFIG_ENV, "")) or not config.has_section("mlflow"):
        return False
    section = config["mlflow"]
    database = section.get("database_uri", "")
    first_start = database.startswith("sqlite:///") and not Path(database.removeprefix("sqlite:///")).exists()
    return first_start and not section.get("admin_password")


@dataclass
class MlflowServer:
    """``mlflow server`` on ``host:port`` with a SQL backend and proxied artifacts.

    Use as a context manager (start, wait for ``/health``, stop on exit); ``stop()`` then
    ``start()`` restarts it on the same port and backend.
    """

    backend_store_uri: str
    artifacts_destination: str
    port: int = DEFAULT_PORT
    host: str = "127.0.0.1"
    workers: int = 1
    basic_auth: bool = False
    expose: bool = False
    log_path: Path | None = None
    extra_args: Sequence[str] = ()
    auth_config: Path | None = None  # MLflow's basic-auth config (see write_auth_config); else the environment's
    secret_key: str | None = field(default=None, repr=False)  # else the environment's MLFLOW_FLASK_SERVER_SECRET_KEY
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _auth_missing(self) -> list[str]:
        """What MLflow's basic-auth app would still need to start (checked before it is started)."""
        env = self.env()
        missing = []
        if importlib.util.find_spec("flask_wtf") is None:
            missing.append("Flask-WTF (mlflow[auth], pinned in requirements.lock: run `make setup`)")
        if not env.get(SECRET_KEY_ENV):
            missing.append(f"{SECRET_KEY_ENV} (a static key for CSRF protection)")
        if _first_start_without_admin_password(env):
            missing.append(f"{ADMIN_PASSWORD_ENV} (first start: the admin user's password)")
        return missing

    def command(self) -> list[str]:
        """The ``mlflow server`` command line; :class:`ServiceError` when the bind address or the basic
        auth settings would not do."""
        check_bind(self.host, self.expose)
        if self.basic_auth and (missing := self._auth_missing()):
            raise ServiceError(f"MLflow basic auth needs {', '.join(missing)}")
        cmd = [
            *_mlflow_exe(),
            "server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--backend-store-uri",
            self.backend_store_uri,
            "--artifacts-destination",
            self.artifacts_destination,
        ]
        if self.basic_auth:
            cmd += ["--app-name", "basic-auth"]
        return cmd + list(self.extra_args)

    def env(self) -> dict[str, str]:
        env = {**os.environ, **SERVER_ENV}
        if self.auth_config is not None:
            env[AUTH_CONFIG_ENV] = str(self.auth_config.resolve())
        if self.secret_key:
            env[SECRET_KEY_ENV] = self.secret_key
        return env

    def start(self, wait: bool = True, timeout: float = 120.0) -> MlflowServer:
        """Start in a new session (so its workers can be stopped together); wait for /health."""
        if self.proc is not None and self.proc.poll() is None:
            raise ServiceError(f"MLflow server already running (pid {self.proc.pid})")
        cmd = self.command()
        out = subprocess.DEVNULL
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            out = self.log_path.open("ab")  # type: ignore[assignment]
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        if wait:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise ServiceError(f"mlflow server exited with {self.proc.returncode}{self._log_tail()}")
            if http_ok(self.url + "/health"):
                return
            time.sleep(0.25)
        self.stop()
        raise ServiceError(f"mlflow server not healthy after {timeout:.0f} s{self._log_tail()}")

    def _log_tail(self) -> str:
        if self.log_path and self.log_path.exists():
            return ":\n" + "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        return ""

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None:
            return
        stop_pid(self.proc.pid, timeout, self.proc)
        self.proc = None

    def __enter__(self) -> MlflowServer:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------
def _server_from_args(a: argparse.Namespace) -> MlflowServer:
    host = a.host or ("0.0.0.0" if a.expose else "127.0.0.1")
    backend = a.backend_store_uri or _sqlite_uri(Path("mlruns.db"))
    artifacts = a.artifacts_destination or str(Path("mlartifacts").resolve())
    auth_config = a.auth_config
    if a.basic_auth and auth_config is None and not os.environ.get(AUTH_CONFIG_ENV):
        auth_config = a.state_dir / AUTH_CONFIG_NAME
        if not auth_config.exists():  # an existing one is used as it is: it may have been edited
            write_auth_config(auth_config)
    return MlflowServer(
        backend_store_uri=backend,
        artifacts_destination=artifacts,
        port=a.port,
        host=host,
        workers=a.workers,
        basic_auth=a.basic_auth,
        expose=a.expose,
        log_path=a.state_dir / "mlflow.log",
        extra_args=a.extra,
        auth_config=auth_config,
    )


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "mlflow.json"


def _looks_like_mlflow(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)  # no /proc (macOS): trust the PID file
    return any(b"mlflow" in part for part in cmdline)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m avf.services", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="service", required=True)
    m = sub.add_parser("mlflow", help="the MLflow tracking server")
    m.add_argument("action", choices=("run", "start", "stop", "status"), nargs="?", default="run")
    m.add_argument("--host", default=None, help="bind address (default 127.0.0.1; others need --expose)")
    m.add_argument("--port", type=int, default=int(os.environ.get("AVF_MLFLOW_PORT", DEFAULT_PORT)))
    m.add_argument("--workers", type=int, default=1)
    m.add_argument("--backend-store-uri", default=None, help="default sqlite:///<cwd>/mlruns.db; or postgresql://")
    m.add_argument("--artifacts-destination", default=None, help="default <cwd>/mlartifacts; or s3://bucket/path")
    m.add_argument("--expose", action="store_true", help="allow binding a non-loopback address (0.0.0.0 default)")
    m.add_argument("--basic-auth", action="store_true", help="run MLflow's basic-auth app (--app-name basic-auth)")
    m.add_argument(
        "--auth-config",
        type=Path,
        default=None,
        help=f"MLflow auth config for --basic-auth (default ${AUTH_CONFIG_ENV}, else <state-dir>/{AUTH_CONFIG_NAME})",
    )
    m.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="PID and log files")
    args = list(sys.argv[1:] if argv is None else argv)
    extra = args[args.index("--") + 1 :] if "--" in args else []  # after --: more `mlflow server` options
    a = p.parse_args(args[: len(args) - len(extra) - (1 if "--" in args else 0)])
    a.extra = extra

    pid_file = _pid_file(a.state_dir)
    if a.action == "stop":
        if not pid_file.exists():
            print("mlflow server: not started by avf.services (no PID file)")
            return 0
        info = json.loads(pid_file.read_text())
        if _alive(info["pid"]) and _looks_like_mlflow(info["pid"]):
            stop_pid(info["pid"])
            print(f"mlflow server (pid {info['pid']}) stopped")
        pid_file.unlink(missing_ok=True)
        return 0
    try:
        server = _server_from_args(a)
        cmd = server.command()
    except ServiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.action == "status":
        up = http_ok(server.url + "/health")
        print(f"mlflow server {server.url}: {'healthy' if up else 'not answering'}")
        return 0 if up else 1
    if server.host not in LOCAL_HOSTS:
        print(
            f"warning: MLflow will listen on {server.host}:{server.port}"
            + ("" if server.basic_auth else " WITHOUT authentication; add --basic-auth or a reverse proxy"),
            file=sys.stderr,
        )
    if a.action == "run":
        print(" ".join(cmd), file=sys.stderr)
        os.execvpe(cmd[0], cmd, server.env())
    if pid_file.exists():
        info = json.loads(pid_file.read_text())
        if _alive(info["pid"]) and _looks_like_mlflow(info["pid"]):
            print(f"mlflow server already running (pid {info['pid']}, {info['url']})")
            return 0
    a.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        server.start(wait=True)
    except ServiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    assert server.proc is not None
    pid_file.write_text(json.dumps({"pid": server.proc.pid, "url": server.url, "cmd": cmd}) + "\n")
    print(f"mlflow server (pid {server.proc.pid}) at {server.url}; log {server.log_path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
