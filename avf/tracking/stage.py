"""Opening and ending a stage's run, and the run file that links a DVC stage output to it.

Usage (the driver of a stage; Ray rank 0 resumes the same run with ``run_id=``)::

    with tracking.stage_run(params, stage="pretrain", sections=("model", "masking", "pretrain", "ray")) as run:
        run.log_metrics({"train/loss": 0.5}, step=10)
    tracking.write_run_file("reports/pretrain/mlflow_run.json", run)

The run ends FINISHED on success, FAILED on an exception and KILLED on Ctrl-C or SIGTERM (SIGTERM
raises inside the ``with`` block, see :mod:`avf.runtime.lifecycle`). No autolog. System metrics
(``params.tracking.log_system_metrics``) are sampled by MLflow's own monitor and are not buffered.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from avf.runtime.lifecycle import StageTerminated, sigterm_deferred, sigterm_raises
from avf.tracking.buffer import BUFFER_DIR_ENV, WriteAheadLog, resolve_buffer_dir
from avf.tracking.runs import Run, StageRun
from avf.tracking.store import (
    absolute_sqlite,
    auth_errors,
    configure,
    is_http,
    mlflow_client,
    project_dir,
    reachable,
    require_reachable,
    store_uri,
)
from avf.tracking.tags import default_run_name, experiment_name, flatten_params, run_tags

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from avf.config import Params

log = logging.getLogger(__name__)

DEFAULT_SECTIONS = ("model", "masking", "pretrain", "ray")


def _artifact_location(params: Params, uri: str, name: str) -> str | None:
    """Client-side artifact location for embedded stores; a server decides its own."""
    if is_http(uri) or uri.startswith("databricks"):
        return None
    root = params.tracking.artifact_root
    if "://" in root:
        return f"{root.rstrip('/')}/{name}"
    return ((project_dir() / root).resolve() / name).as_uri()


def _experiment_id(client: MlflowClient, params: Params, uri: str, name: str) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=_artifact_location(params, uri, name)))
    except MlflowException as e:  # created concurrently by another stage
        if e.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        exp = client.get_experiment_by_name(name)
        assert exp is not None
        return str(exp.experiment_id)


def _end_status(exc: BaseException) -> str:
    """KILLED for Ctrl-C / SIGTERM, FINISHED for a clean ``sys.exit(0)`` / ``typer.Exit(0)``."""
    if isinstance(exc, KeyboardInterrupt | StageTerminated):
        return "KILLED"
    if isinstance(exc, SystemExit):
        return "FINISHED" if exc.code in (0, None) else "FAILED"
    if getattr(exc, "exit_code", None) == 0:  # click/typer Exit
        return "FINISHED"
    return "FAILED"


def _start_system_metrics(run_id: str, uri: str, node_id: str | None = None) -> Any:
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, tracking_uri=uri, node_id=node_id)
        monitor.start()
        return monitor
    except Exception as exc:  # psutil/pynvml trouble must not stop training
        log.warning("system metrics disabled: %s", exc)
        return None


def attach(
    run_id: str,
    tracking_uri: str | None = None,
    *,
    buffer_dir: str | Path | None = None,
    stage: str = "",
) -> StageRun:
    """Log into an existing run (Ray rank 0 inside a worker) without owning its status.

    Call ``close()`` (or use it as a context manager) when done; it is also closed at exit. If the
    tracking store is unreachable, everything is buffered from the start.
    """
    uri = store_uri(tracking_uri)
    client = mlflow_client(uri)
    exp_id, exp_name, name = "", "", ""
    if reachable(uri):
        with auth_errors(uri):
            info = client.get_run(run_id).info  # fails loudly for a wrong id
            exp_id, name = str(info.experiment_id), info.run_name or ""
            exp_name = getattr(client.get_experiment(exp_id), "name", "")
    wal = WriteAheadLog.create(resolve_buffer_dir(buffer_dir), run_id, uri, owner=False)
    run = StageRun(client, run_id, exp_id, uri, wal, stage=stage, experiment_name=exp_name, run_name=name, owner=False)
    atexit.register(run.close)
    return run


def _open_run(
    params: Params,
    stage: str,
    sections: Sequence[str],
    dataset: str | None,
    uri: str,
    bdir: Path,
    tags: Mapping[str, Any] | None,
    experiment: str | None,
    run_name: str | None,
) -> StageRun:
    client = mlflow_client(uri)
    require_reachable(uri, f"open the {stage} run")
    exp_name = experiment or experiment_name(params, stage, dataset)
    all_tags = {**run_tags(params, stage, sections, dataset), **{k: str(v) for k, v in (tags or {}).items()}}
    name = run_name or default_run_name(stage, all_tags)
    with auth_errors(uri):
        exp_id = _experiment_id(client, params, uri, exp_name)
        rid = client.create_run(exp_id, run_name=name, tags=all_tags).info.run_id
    wal = WriteAheadLog.create(bdir, rid, uri, owner=True)
    log.info("MLflow run %s (%s) in %s at %s", name, rid, exp_name, uri)
    return StageRun(client, rid, exp_id, uri, wal, stage=stage, experiment_name=exp_name, run_name=name)


@contextlib.contextmanager
def stage_run(
    params: Params,
    stage: str = "pretrain",
    sections: Sequence[str] = DEFAULT_SECTIONS,
    dataset: str | None = None,
    run_id: str | None = None,
    *,
    tags: Mapping[str, Any] | None = None,
    experiment: str | None = None,
    run_name: str | None = None,
    tracking_uri: str | None = None,
    buffer_dir: str | Path | None = None,
    system_metrics: bool | None = None,
) -> Iterator[StageRun]:
    """Open a stage run (or resume ``run_id``) and always leave it in a terminal state.

    A new run gets its experiment, name, tags and the flattened params of ``sections``, and ends
    FINISHED / FAILED / KILLED. A resumed run (``run_id`` given, e.g. Ray rank 0 in a worker) only
    logs: its creator owns the status. Opening a new run needs the tracking store
    (:class:`TrackingUnavailableError` otherwise); later outages are buffered. Credentials or
    permissions the server refuses raise :class:`TrackingAuthError`, whenever that happens.
    """
    uri = absolute_sqlite(tracking_uri) if tracking_uri else configure(params)
    bdir = resolve_buffer_dir(buffer_dir)
    os.environ.setdefault(BUFFER_DIR_ENV, str(bdir))  # Ray workers started from here inherit it
    owner = run_id is None
    if owner:
        srun = _open_run(params, stage, sections, dataset, uri, bdir, tags, experiment, run_name)
    else:
        assert run_id is not None
        srun = attach(run_id, uri, buffer_dir=bdir, stage=stage)
    monitor = None
    want_sys = params.tracking.log_system_metrics if system_metrics is None else system_metrics
    status: str | None = None
    error: str | None = None
    try:
        with sigterm_raises(owner):
            if owner:
                srun.log_params(flatten_params(params, sections))
            if want_sys:
                # a resumed run (a Ray worker) reports under system/<node>/... next to the driver's
                node = None if owner else f"worker-{socket.gethostname()}"
                monitor = _start_system_metrics(srun.run_id, uri, node)
            yield srun
        status = "FINISHED"
    except BaseException as exc:
        status = _end_status(exc)
        if status != "FINISHED":
            error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        with sigterm_deferred(owner) as deferred:
            if monitor is not None:
                with contextlib.suppress(Exception):
                    monitor.finish()
            srun.finish(status if owner else None, error if owner else None)
        if deferred and status == "FINISHED":
            raise StageTerminated(deferred[0])


def write_run_file(path: str | Path, run: Run, **extra: Any) -> None:
    """Atomically write ``{"run_id", "experiment_id", "tracking_uri", "model_uri"?, ...}``."""
    from avf.utils.io import write_json

    data: dict[str, Any] = {
        "run_id": run.run_id,
        "experiment_id": run.experiment_id,
        "tracking_uri": run.tracking_uri,
        "experiment_name": run.experiment_name,
        "run_name": run.run_name,
    }
    if run.model_uri:
        data["model_uri"] = run.model_uri
    data.update(extra)
    write_json(path, data)


def read_run_file(path: str | Path) -> dict[str, Any]:
    """A run file written by :func:`write_run_file`; ``ValueError`` when it has no ``run_id``."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "run_id" not in data:
        raise ValueError(f"{path}: not an MLflow run file (no run_id)")
    return data
