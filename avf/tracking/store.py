"""The tracking store: its URI, a client for it, whether it answers, which errors are transient, and
which mean the server refused the credentials.

``MLFLOW_TRACKING_URI`` wins over ``params.tracking.uri``; relative SQLite paths are made absolute
(Ray workers and child processes may change directory). mlflow is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from avf.config import Params

PROBE_TIMEOUT_ENV = "AVF_MLFLOW_PROBE_TIMEOUT_S"  # the /health probe's timeout
# Short HTTP settings for a remote tracking server (set only where the user has not): a dead
# server costs seconds, not MLflow's default minutes of retries.
HTTP_ENV_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "15",
}
# MLflow error codes that resending cannot fix (a caller error, e.g. changing a param's value).
_PERMANENT_CODES = frozenset(
    {
        "INVALID_PARAMETER_VALUE",
        "RESOURCE_DOES_NOT_EXIST",
        "RESOURCE_ALREADY_EXISTS",
        "INVALID_STATE",
        "BAD_REQUEST",
        "MALFORMED_REQUEST",
    }
)
# HTTP 401 / 403 from a server with authentication: neither an outage (waiting cannot fix them) nor a
# rejected entry (dropping it would lose data that the right credentials or a grant would accept).
_AUTH_CODES = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})


class TrackingUnavailableError(RuntimeError):
    """The tracking store cannot be reached for an operation that cannot be buffered."""


class TrackingAuthError(TrackingUnavailableError):
    """The tracking server refused the credentials (HTTP 401) or the permission (HTTP 403)."""


EXP_WORKSPACE = (".dvc", "tmp", "exps")  # where DVC runs queued and --temp experiments, deleted afterwards


def project_dir(cwd: Path | None = None) -> Path:
    """What relative store paths (SQLite file, artifact root, buffer) are relative to: the working directory,
    or, inside a DVC experiment workspace (``<project>/.dvc/tmp/exps/...``), the project that owns it, so
    that a queued experiment's runs land in the project's store rather than in a copy DVC deletes."""
    parts = (cwd or Path.cwd()).resolve().parts
    for i in range(len(parts) - len(EXP_WORKSPACE) + 1):
        if parts[i : i + len(EXP_WORKSPACE)] == EXP_WORKSPACE:
            return Path(*parts[:i])
    return Path(*parts)


def absolute_sqlite(uri: str) -> str:
    """``sqlite:///rel.db`` -> ``sqlite:////abs/rel.db`` under :func:`project_dir` (Ray workers and children
    may chdir)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        rest = uri[len(prefix) :]
        path, sep, query = rest.partition("?")
        if path and path != ":memory:":
            return prefix + str((project_dir() / path).resolve()) + sep + query
    return uri


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def resolve_uri(params: Params | None = None) -> str:
    """The tracking URI: ``MLFLOW_TRACKING_URI`` wins over ``params.tracking.uri``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (params.tracking.uri if params else "sqlite:///mlruns.db")
    return absolute_sqlite(uri)


_configured_uri: str | None = None


def set_global_uri(uri: str) -> None:
    """Make ``uri`` MLflow's process-wide tracking URI (with short HTTP retries for a server)."""
    global _configured_uri
    import mlflow

    _configured_uri = uri

    if is_http(uri):
        for key, value in HTTP_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)


def configure(params: Params | None = None) -> str:
    """Point MLflow at the project's tracking store and return its URI."""
    uri = resolve_uri(params)
    set_global_uri(uri)
    return uri


def current_uri() -> str:
    """The URI in effect (set by :func:`configure`, else env / default), e.g. to hand to Ray workers."""
    return _configured_uri or resolve_uri(None)


def store_uri(tracking_uri: str | None) -> str:
    """``tracking_uri`` (SQLite paths made absolute) when given, else :func:`current_uri`."""
    return absolute_sqlite(tracking_uri) if tracking_uri else current_uri()


def mlflow_client(tracking_uri: str | None = None) -> MlflowClient:
    """A client for :func:`store_uri` ``(tracking_uri)``, which also becomes the global URI."""
    from mlflow import MlflowClient

    uri = store_uri(tracking_uri)
    set_global_uri(uri)
    with _sqlite_creation_lock(uri):
        return MlflowClient(tracking_uri=uri)


@contextlib.contextmanager
def _sqlite_creation_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a SQLite store's file while the client opens it.

    Opening a store runs MLflow's table migrations; two stages opening a new store at once (experiments
    run in parallel by ``dvc queue start -j 2``) both migrate and one fails. SQLite's own locks are
    ``fcntl`` locks, which ``flock`` does not touch, and an empty file is an empty database to SQLite.
    """
    prefix = "sqlite:///"
    path = uri[len(prefix) :].partition("?")[0] if uri.startswith(prefix + "/") else ""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def float_env(name: str, default: float) -> float:
    """The environment variable ``name`` as a float; ``default`` when unset or malformed."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def reachable(uri: str, timeout: float | None = None) -> bool:
    """Whether the tracking store answers; for a server, any HTTP reply to ``/health`` counts."""
    if not is_http(uri):
        return True
    t = timeout if timeout is not None else float_env(PROBE_TIMEOUT_ENV, 2.0)
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=t):
            return True
    except urllib.error.HTTPError:
        return True  # it answered (auth or a proxy path): the real call will tell
    except (OSError, ValueError):
        return False


def require_reachable(uri: str, what: str) -> None:
    """Raise :class:`TrackingUnavailableError` (saying it cannot ``what``) unless ``uri`` answers."""
    if not reachable(uri):
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} is unreachable, cannot {what}. Start it "
            "(infra/mlflow/serve.sh) or unset MLFLOW_TRACKING_URI to use the embedded SQLite store."
        )


def is_mlflow_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from MLflow (for callers that must not import mlflow)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException)


def _auth_error(exc: BaseException, uri: str) -> TrackingAuthError | None:
    """``exc`` as a :class:`TrackingAuthError` naming the client's settings when it is the server's
    401 / 403 reply; None for any other error."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException) or exc.error_code not in _AUTH_CODES:
        return None
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if exc.error_code == "PERMISSION_DENIED":
        what = f"denied MLFLOW_TRACKING_USERNAME={user} access (HTTP 403): an admin of the server must grant it"
    elif user:
        what = f"rejected the login of MLFLOW_TRACKING_USERNAME={user} (HTTP 401): check MLFLOW_TRACKING_PASSWORD"
    else:
        what = "requires a login (HTTP 401): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
    return TrackingAuthError(f"MLflow tracking server {uri} {what}")


@contextlib.contextmanager
def auth_errors(uri: str) -> Iterator[None]:
    """Re-raise the server's 401 / 403 replies inside the block as :class:`TrackingAuthError`."""
    try:
        yield
    except Exception as exc:
        if (err := _auth_error(exc, uri)) is not None:
            raise err from exc
        raise


def is_transient(exc: BaseException) -> bool:
    """Connectivity-type failures (keep the data buffered) versus caller errors (reject it).

    Authentication failures are neither: :func:`auth_errors` turns them into errors of their own.
    """
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT_CODES | _AUTH_CODES
    try:
        import requests

        if isinstance(exc, requests.RequestException):
            return True
    except ImportError:  # pragma: no cover - requests ships with mlflow
        pass
    try:
        from sqlalchemy.exc import OperationalError

        if isinstance(exc, OperationalError):  # e.g. "database is locked"
            return True
    except ImportError:  # pragma: no cover
        pass
    return isinstance(exc, OSError | ConnectionError | TimeoutError)
