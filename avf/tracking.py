"""Every MLflow call of the project: stage runs, metrics, artifacts, dataset references, models, registry.

Usage (the driver of a stage; Ray rank 0 resumes the same run with ``run_id=``)::

    with tracking.stage_run(params, stage="pretrain", sections=("model", "masking", "pretrain", "ray")) as run:
        run.log_metrics({"train/loss": 0.5}, step=10)
        uri = run.log_model(MyPyfunc(), artifacts={"weights": "model.safetensors"})
    tracking.write_run_file("reports/pretrain/mlflow_run.json", run)

Design:

* Experiments are ``<prefix>/<stage>`` (``<prefix>/finetune-<dataset>`` for fine-tuning), run names
  ``<stage>-<dvc exp name | git short sha>``, tags link DVC, git, Prefect and the ablation.
* The run ends FINISHED on success, FAILED on an exception and KILLED on Ctrl-C or SIGTERM (a
  SIGTERM handler is installed inside the ``with`` block and restored afterwards).
* Metrics, params, tags, artifacts and dataset references pass through an on-disk write-ahead
  buffer (:mod:`avf.tracking_buffer`): when the tracking server is unreachable the run keeps
  going, and the buffer is replayed in order on a later call, at the end of the run, or by
  ``avf registry flush-buffer``. Only opening a new run and ``log_model`` need the server.
* No autolog. System metrics (``params.tracking.log_system_metrics``) are sampled by MLflow's own
  monitor and are not buffered.
* mlflow is imported lazily so that importing this module (and ``avf --help``) stays fast.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from avf.tracking_buffer import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    Entry,
    WriteAheadLog,
    batches,
    leftover_logs,
    now_ms,
    split_mapping,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from avf.config import Params

log = logging.getLogger(__name__)

__all__ = [
    "BufferReport",
    "Decision",
    "NullRun",
    "StageRun",
    "StageTerminated",
    "TrackingUnavailableError",
    "attach",
    "configure",
    "current_uri",
    "download_model",
    "experiment_name",
    "flatten_params",
    "flush_buffers",
    "get_alias_version",
    "is_mlflow_error",
    "list_versions",
    "log_video_model",
    "null_run",
    "promote",
    "reachable",
    "read_run_file",
    "register",
    "set_alias",
    "stage_run",
    "version_metric",
    "write_run_file",
]

DEFAULT_SECTIONS = ("model", "masking", "pretrain", "ray")
DEFAULT_BUFFER_DIR = "runs/mlflow-buffer"
BUFFER_DIR_ENV = "AVF_MLFLOW_BUFFER_DIR"  # where the write-ahead buffer lives
RETRY_ENV = "AVF_MLFLOW_RETRY_S"  # while offline, how often a log call probes the server again
PROBE_TIMEOUT_ENV = "AVF_MLFLOW_PROBE_TIMEOUT_S"  # the /health probe's timeout
PARENT_RUN_ENV = "AVF_PARENT_RUN_ID"  # set by Prefect flows: stage runs become its children
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
_MAX_PARAM_LEN = 6000
_MAX_TAG_LEN = 8000


class TrackingUnavailableError(RuntimeError):
    """The tracking store cannot be reached for an operation that cannot be buffered."""


class StageTerminated(SystemExit):
    """Raised by the SIGTERM handler inside :func:`stage_run`; exits with 128 + signal number."""

    def __init__(self, signum: int):
        super().__init__(128 + signum)
        self.signum = signum


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
def _absolute_sqlite(uri: str) -> str:
    """``sqlite:///rel.db`` -> ``sqlite:////abs/rel.db`` (Ray workers and children may chdir)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        rest = uri[len(prefix) :]
        path, sep, query = rest.partition("?")
        if path and path != ":memory:":
            return prefix + str(Path(path).resolve()) + sep + query
    return uri


def _is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def resolve_uri(params: Params | None = None) -> str:
    """The tracking URI: ``MLFLOW_TRACKING_URI`` wins over ``params.tracking.uri``."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or (params.tracking.uri if params else "sqlite:///mlruns.db")
    return _absolute_sqlite(uri)


_configured_uri: str | None = None


def _set_global_uri(uri: str) -> None:
    global _configured_uri
    import mlflow

    _configured_uri = uri

    if _is_http(uri):
        for key, value in HTTP_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)
    if mlflow.get_tracking_uri() != uri:
        mlflow.set_tracking_uri(uri)


def configure(params: Params | None = None) -> str:
    """Point MLflow at the project's tracking store and return its URI."""
    uri = resolve_uri(params)
    _set_global_uri(uri)
    return uri


def current_uri() -> str:
    """The URI in effect (set by :func:`configure`, else env / default), e.g. to hand to Ray workers."""
    return _configured_uri or resolve_uri(None)


def _client(tracking_uri: str | None = None) -> MlflowClient:
    from mlflow import MlflowClient

    uri = _current_uri(tracking_uri)
    _set_global_uri(uri)
    return MlflowClient(tracking_uri=uri)


def _current_uri(tracking_uri: str | None) -> str:
    return _absolute_sqlite(tracking_uri) if tracking_uri else current_uri()


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def reachable(uri: str, timeout: float | None = None) -> bool:
    """Whether the tracking store answers; for a server, any HTTP reply to ``/health`` counts."""
    if not _is_http(uri):
        return True
    t = timeout if timeout is not None else _float_env(PROBE_TIMEOUT_ENV, 2.0)
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=t):
            return True
    except urllib.error.HTTPError:
        return True  # it answered (auth or a proxy path): the real call will tell
    except (OSError, ValueError):
        return False


def is_mlflow_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from MLflow (for callers that must not import mlflow)."""
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException)


def _require_reachable(uri: str, what: str) -> None:
    if not reachable(uri):
        raise TrackingUnavailableError(
            f"MLflow tracking server {uri} is unreachable, cannot {what}. Start it "
            "(infra/mlflow/serve.sh) or unset MLFLOW_TRACKING_URI to use the embedded SQLite store."
        )


def _is_transient(exc: BaseException) -> bool:
    """Connectivity-type failures (keep the data buffered) versus caller errors (reject it)."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT_CODES
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


# ---------------------------------------------------------------------------------------------
# naming, tags and params
# ---------------------------------------------------------------------------------------------
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def experiment_name(params: Params, stage: str, dataset: str | None = None) -> str:
    """``<prefix>/<stage>``, or ``<prefix>/finetune-<dataset>`` for fine-tuning on one dataset."""
    prefix = params.tracking.experiment_prefix
    if dataset and stage == "finetune":
        return f"{prefix}/finetune-{dataset}"
    return f"{prefix}/{stage}"


def _variant(params: Params) -> str:
    return f"avf_mae_pp_{params.model.size}"


def _param_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s if len(s) <= _MAX_PARAM_LEN else s[: _MAX_PARAM_LEN - 3] + "..."


def flatten_params(params: Params, sections: Sequence[str]) -> dict[str, str]:
    """The resolved values of ``sections`` as dotted keys (``pretrain.optim.lr``), plus ``seed``."""
    out: dict[str, str] = {"seed": str(params.seed)}

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict) and obj:
            for k, v in obj.items():
                walk(f"{prefix}.{k}", v)
        else:
            out[prefix] = _param_value(obj)

    for s in sections:
        walk(s, params.section(s).model_dump(mode="json"))
    return out


def run_tags(params: Params, stage: str, sections: Sequence[str], dataset: str | None = None) -> dict[str, str]:
    """The tags every new stage run gets."""
    from avf.config import section_hash

    commit = _git("rev-parse", "HEAD")
    tags: dict[str, str] = {
        "avf.stage": stage,
        "avf.ablation": params.ablation.name,
        "avf.variant": _variant(params),
        "avf.params_hash": section_hash(params, *sections),
        "avf.sections": ",".join(sections),
        "mlflow.source.type": "LOCAL",
        "mlflow.user": _actor(),
    }
    if dataset:
        tags["avf.dataset"] = dataset
    if "ray" in sections:
        tags["ray.num_workers"] = str(params.ray.num_workers)
    if exp := os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = exp
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["avf.git_commit"] = commit
        tags["avf.git_dirty"] = str(bool(_git("status", "--porcelain", "--untracked-files=no")))
    if flow_run := os.environ.get("PREFECT__FLOW_RUN_ID") or os.environ.get("PREFECT_FLOW_RUN_ID"):
        tags["prefect.flow_run_id"] = flow_run
    if parent := os.environ.get(PARENT_RUN_ENV):
        tags["mlflow.parentRunId"] = parent
    return tags


def _run_name(stage: str, tags: Mapping[str, str]) -> str:
    suffix = tags.get("dvc.exp_name") or (tags.get("avf.git_commit") or "")[:7] or "local"
    return f"{stage}-{suffix}"


def _actor() -> str:
    if who := os.environ.get("AVF_ACTOR"):
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _artifact_location(params: Params, uri: str, name: str) -> str | None:
    """Client-side artifact location for embedded stores; a server decides its own."""
    if _is_http(uri) or uri.startswith("databricks"):
        return None
    root = params.tracking.artifact_root
    if "://" in root:
        return f"{root.rstrip('/')}/{name}"
    return (Path(root).resolve() / name).as_uri()


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


# ---------------------------------------------------------------------------------------------
# sending buffered entries
# ---------------------------------------------------------------------------------------------
def _send(client: MlflowClient, run_id: str, group: list[Entry], files_dir: Path) -> None:
    """Send one group from :func:`avf.tracking_buffer.batches` to the store."""
    from mlflow.entities import Metric, Param, RunTag

    kind = group[0]["kind"]
    if kind in ("metrics", "params", "tags"):
        metrics, params, tags = [], [], []
        for e in group:
            if e["kind"] == "metrics":
                metrics += [Metric(k, float(v), e["ts"], e["step"]) for k, v in e["data"].items()]
            elif e["kind"] == "params":
                params += [Param(k, v) for k, v in e["data"].items()]
            else:
                tags += [RunTag(k, v) for k, v in e["data"].items()]
        client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    elif kind == "artifact":
        e = group[0]
        local = files_dir / e["file"]
        if local.is_dir():
            client.log_artifacts(run_id, str(local), e.get("artifact_path"))
        else:
            client.log_artifact(run_id, str(local), e.get("artifact_path"))
    elif kind == "dataset":
        e = group[0]
        client.log_inputs(run_id, datasets=[_dataset_input(e)])
    elif kind == "end":
        e = group[0]
        client.set_terminated(run_id, e["status"], end_time=e["ts"])
    else:  # pragma: no cover - written only by this module
        raise ValueError(f"unknown buffer entry kind {kind!r}")


def _dataset_input(e: Entry) -> Any:
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    source_uri = e["source"]
    if source_uri.startswith(("http://", "https://")):
        from mlflow.data.http_dataset_source import HTTPDatasetSource

        source: Any = HTTPDatasetSource(url=source_uri)
    else:
        from mlflow.data.sources import LocalArtifactDatasetSource

        source = LocalArtifactDatasetSource(source_uri)
    ds = MetaDataset(source=source, name=e["name"], digest=e["digest"])
    return DatasetInput(dataset=ds._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", e["context"])])


def _replay(client: MlflowClient, wal: WriteAheadLog) -> list[tuple[Entry, Exception]]:
    """Send every pending entry in order. Raises the first transient error (the rest stays queued);
    returns the entries the store rejected (they are dropped, and logged as errors)."""
    rejected: list[tuple[Entry, Exception]] = []
    while wal.pending:
        group = next(batches(iter(wal.pending)))  # lazily: only the first group is read
        try:
            _send(client, wal.run_id, group, wal.files_dir)
        except Exception as exc:
            if _is_transient(exc):
                raise
            if len(group) > 1:  # find the culprit: resend entry by entry
                for e in group:
                    try:
                        _send(client, wal.run_id, [e], wal.files_dir)
                    except Exception as exc1:
                        if _is_transient(exc1):
                            raise
                        rejected.append((e, exc1))
                        log.error("MLflow rejected %s entry %d of run %s: %s", e["kind"], e["seq"], wal.run_id, exc1)
                    wal.mark_sent(e["seq"])
                continue
            rejected.append((group[0], exc))
            log.error("MLflow rejected %s entry %d of run %s: %s", group[0]["kind"], group[0]["seq"], wal.run_id, exc)
        wal.mark_sent(group[-1]["seq"])
    return rejected


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------
class StageRun:
    """A live MLflow run (rank 0 / the driver). Create it with :func:`stage_run`."""

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        experiment_id: str,
        tracking_uri: str,
        wal: WriteAheadLog,
        *,
        stage: str,
        experiment_name: str = "",
        run_name: str = "",
        owner: bool = True,
    ):
        self._client = client
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.tracking_uri = tracking_uri
        self.stage = stage
        self.experiment_name = experiment_name
        self.run_name = run_name
        self.owner = owner
        self.model_uri: str | None = None
        self._wal = wal
        self._online = True
        self._next_try = 0.0
        self._retry_s = _float_env(RETRY_ENV, 10.0)
        self._closed = False
        self._lock = threading.RLock()  # log calls may come from several threads

    # -- state -------------------------------------------------------------------------------
    @property
    def buffer_path(self) -> Path:
        return self._wal.path

    @property
    def buffer_dir(self) -> Path:
        return self._wal.path.parent

    @property
    def pending(self) -> int:
        """Entries written to the buffer but not yet acknowledged by the store."""
        return len(self._wal.pending)

    @property
    def online(self) -> bool:
        return self._online

    def handle(self) -> dict[str, str]:
        """Keyword arguments for ``stage_run(params, stage, **run.handle())`` in a Ray worker."""
        return {"run_id": self.run_id, "tracking_uri": self.tracking_uri, "buffer_dir": str(self.buffer_dir)}

    # -- flushing ----------------------------------------------------------------------------
    def flush(self, force: bool = False) -> bool:
        """Send buffered entries; True when nothing is left. While offline, the server is probed
        again only every ``AVF_MLFLOW_RETRY_S`` seconds unless ``force``."""
        return self._flush(force=force, raise_rejected=False)

    def _flush(self, force: bool, raise_rejected: bool) -> bool:
        with self._lock:
            return self._flush_locked(force, raise_rejected)

    def _flush_locked(self, force: bool, raise_rejected: bool) -> bool:
        if not self._wal.pending:
            return True
        if not self._online and not force and time.monotonic() < self._next_try:
            return False
        if not self._online and not reachable(self.tracking_uri):
            self._go_offline("the server does not answer")
            return False
        try:
            rejected = _replay(self._client, self._wal)
        except Exception as exc:
            if not _is_transient(exc):
                raise
            self._go_offline(str(exc).splitlines()[0][:200])
            return False
        if not self._online:
            log.warning("MLflow tracking store is back; buffered entries of run %s were sent", self.run_id)
        self._online = True
        if rejected and raise_rejected:
            raise rejected[0][1]
        return True

    def _go_offline(self, why: str) -> None:
        if self._online:
            log.warning(
                "MLflow tracking store %s unreachable (%s); buffering to %s and retrying every %.0f s",
                self.tracking_uri,
                why,
                self._wal.path,
                self._retry_s,
            )
        self._online = False
        self._next_try = time.monotonic() + self._retry_s

    def _append(self, kind: str, **fields: Any) -> None:
        with self._lock:
            self._wal.append(kind, **fields)

    # -- logging -----------------------------------------------------------------------------
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log step metrics (keys like ``train/loss``; values float-convertible, e.g. 0-d tensors)."""
        from mlflow.utils.validation import _validate_metric_name

        data: dict[str, float] = {}
        for k, v in metrics.items():
            _validate_metric_name(k)
            data[k] = float(v)
        if not data:
            return
        ts = now_ms()
        for part in split_mapping(data, MAX_METRICS_PER_BATCH):
            self._append("metrics", ts=ts, step=int(step or 0), data=part)
        self._flush(force=False, raise_rejected=True)

    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        self.log_metrics({key: value}, step=step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (non-strings are JSON-encoded, so booleans read ``true`` as in params.yaml)."""
        from mlflow.utils.validation import _validate_param_name

        data = {}
        for k, v in params.items():
            _validate_param_name(k)
            data[k] = _param_value(v)
        for part in split_mapping(data, MAX_PARAMS_TAGS_PER_BATCH):
            self._append("params", data=part)
        self._flush(force=False, raise_rejected=True)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.utils.validation import _validate_tag_name

        data = {}
        for k, v in tags.items():
            _validate_tag_name(k)
            data[k] = str(v)[:_MAX_TAG_LEN]
        for part in split_mapping(data, MAX_PARAMS_TAGS_PER_BATCH):
            self._append("tags", data=part)
        self._flush(force=False, raise_rejected=True)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def _stage_file(self, name: str) -> tuple[Path, str]:
        """A fresh slot in the buffer's artifact folder: (folder, relative name)."""
        slot = f"a{time.time_ns():x}"
        folder = self._wal.files_dir / slot
        folder.mkdir(parents=True, exist_ok=True)
        return folder, f"{slot}/{name}"

    def _queue_artifact(self, rel: str, artifact_path: str | None) -> None:
        self._append("artifact", file=rel, artifact_path=artifact_path)
        self._flush(force=False, raise_rejected=True)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a directory (under ``artifact_path``). With the server unreachable a
        copy waits in the buffer."""
        src = Path(path)
        if not src.exists():
            raise FileNotFoundError(src)
        if self._online and not self._wal.pending:
            try:
                if src.is_dir():
                    self._client.log_artifacts(self.run_id, str(src), artifact_path)
                else:
                    self._client.log_artifact(self.run_id, str(src), artifact_path)
                return
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                self._go_offline(str(exc).splitlines()[0][:200])
        folder, rel = self._stage_file(src.name)
        if src.is_dir():
            shutil.copytree(src, folder / src.name)
        else:
            shutil.copy2(src, folder / src.name)
        self._queue_artifact(rel, artifact_path)

    def _log_generated(self, artifact_file: str, write: Any) -> None:
        target = Path(artifact_file)
        folder, rel = self._stage_file(target.name)
        write(folder / target.name)
        parent = target.parent.as_posix()
        self._queue_artifact(rel, None if parent in ("", ".") else parent)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """Store ``obj`` as JSON (or YAML for ``.yaml``/``.yml``) at ``artifact_file``."""

        def write(p: Path) -> None:
            if p.suffix in (".yaml", ".yml"):
                import yaml

                p.write_text(yaml.safe_dump(obj, sort_keys=False))
            else:
                p.write_text(json.dumps(obj, indent=2, default=str) + "\n")

        self._log_generated(artifact_file, write)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._log_generated(artifact_file, lambda p: p.write_text(text))

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Store a matplotlib figure (or an existing image file) at ``artifact_file``."""

        def write(p: Path) -> None:
            if isinstance(figure, str | Path):
                shutil.copy2(figure, p)
            else:
                figure.savefig(p, bbox_inches="tight")

        self._log_generated(artifact_file, write)

    def log_dataset(self, name: str, path: str | Path, digest: str, context: str = "training") -> None:
        """Reference a dataset (e.g. a manifest with its DVC md5) without uploading it."""
        src = str(path)
        if "://" not in src:
            src = str(Path(src).resolve())
        self._append("dataset", name=name, source=src, digest=str(digest)[:36], context=context)
        self._flush(force=False, raise_rejected=True)

    def log_model(
        self,
        python_model: Any,
        artifacts: Mapping[str, str | Path] | None = None,
        name: str = "model",
        input_example: Any = None,
        signature: Any = None,
        **kwargs: Any,
    ) -> str:
        """Log a pyfunc model (MLflow 3 LoggedModel) linked to this run; returns its ``models:/`` URI.

        Needs the tracking store (raises :class:`TrackingUnavailableError` while it is unreachable).
        Extra keyword arguments go to MLflow (e.g. ``pip_requirements``, ``code_paths``).
        """
        import mlflow
        from mlflow.models import Model

        if not reachable(self.tracking_uri) or not self._flush(force=True, raise_rejected=False):
            self._go_offline("log_model")
            raise TrackingUnavailableError(
                f"MLflow tracking store {self.tracking_uri} is unreachable, cannot log the model "
                f"(metrics stay buffered in {self._wal.path})"
            )
        _set_global_uri(self.tracking_uri)
        # MLflow 3 files a LoggedModel under the *active* experiment (else "Default", whose artifacts land
        # in ./mlruns of the working directory): make it this run's experiment.
        mlflow.set_experiment(experiment_id=self.experiment_id)
        try:
            from mlflow.pyfunc import _get_pyfunc_model_flavor_name

            kwargs.setdefault("flavor_name", _get_pyfunc_model_flavor_name(python_model))
        except ImportError:  # pragma: no cover - internal helper moved
            pass
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=self.run_id,
            python_model=python_model,
            artifacts={k: str(v) for k, v in (artifacts or {}).items()} or None,
            input_example=input_example,
            signature=signature,
            **kwargs,
        )
        self.model_uri = str(info.model_uri)
        self.set_tags({"avf.model_uri": self.model_uri})
        return self.model_uri

    # -- end ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Send what can be sent and release the buffer (an attached run; the status is untouched)."""
        self._finish(None)

    def __enter__(self) -> StageRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _finish(self, status: str | None, error: str | None = None) -> None:
        """Queue the end status (owners), send everything that can be sent, drop the buffer if empty."""
        if self._closed:
            return
        self._closed = True
        if status is not None:
            _flush_worker_logs(self._client, self._wal, self.tracking_uri)
        if error:
            self._append("tags", data={"avf.error": error[:_MAX_TAG_LEN]})
        if status is not None:
            self._append("end", status=status, ts=now_ms())
        ok = self._flush(force=True, raise_rejected=False)
        self._wal.close(remove=ok)
        if not ok:
            log.warning(
                "MLflow tracking store %s unreachable at the end of run %s: %d entries kept in %s; "
                "replay them with `avf registry flush-buffer` once it is back",
                self.tracking_uri,
                self.run_id,
                len(self._wal.pending),
                self._wal.path,
            )


def _flush_worker_logs(client: MlflowClient, own: WriteAheadLog, uri: str) -> None:
    """Before the owner ends a run, replay buffers that exited writers (Ray workers) left for it."""
    for path in leftover_logs(own.path.parent):
        if path == own.path or not path.name.startswith(own.run_id + "."):
            continue
        try:
            wal = WriteAheadLog.open_existing(path)
        except (OSError, ValueError):
            continue
        if wal is None or wal.owner:
            if wal is not None:
                wal.close(remove=False)
            continue
        try:
            _replay(client, wal)
        except Exception as exc:
            wal.close(remove=False)
            if not _is_transient(exc):
                raise
            return
        wal.close(remove=True)


class NullRun:
    """The :class:`StageRun` interface doing nothing (Ray ranks other than 0)."""

    run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    experiment_name = ""
    run_name = ""
    model_uri: str | None = None
    pending = 0
    online = True

    def __enter__(self) -> NullRun:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        return None

    def handle(self) -> dict[str, str]:
        return {}

    def flush(self, force: bool = False) -> bool:
        return True

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        return None

    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        return None

    def log_params(self, params: Mapping[str, Any]) -> None:
        return None

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        return None

    def set_tag(self, key: str, value: Any) -> None:
        return None

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        return None

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        return None

    def log_text(self, text: str, artifact_file: str) -> None:
        return None

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        return None

    def log_dataset(self, name: str, path: str | Path, digest: str, context: str = "training") -> None:
        return None

    def log_model(self, python_model: Any, artifacts: Any = None, name: str = "model", **kwargs: Any) -> None:
        return None


def null_run() -> NullRun:
    """A run that logs nothing (usable directly or as a context manager)."""
    return NullRun()


def _end_status(exc: BaseException) -> str:
    """KILLED for Ctrl-C / SIGTERM, FINISHED for a clean ``sys.exit(0)`` / ``typer.Exit(0)``."""
    if isinstance(exc, KeyboardInterrupt | StageTerminated):
        return "KILLED"
    if isinstance(exc, SystemExit):
        return "FINISHED" if exc.code in (0, None) else "FAILED"
    if getattr(exc, "exit_code", None) == 0:  # click/typer Exit
        return "FINISHED"
    return "FAILED"


_received_signal: int | None = None


def received_signal() -> int | None:
    """The signal a stage's SIGTERM handler got, if any: code that swallows the :class:`StageTerminated` it
    raised (Ray's blocking ``ray.get`` turns it into ``SystemExit(1)``) re-raises it with this."""
    return _received_signal


@contextlib.contextmanager
def _sigterm_raises(enabled: bool) -> Iterator[None]:
    """Inside the block SIGTERM raises :class:`StageTerminated`; the previous handler is restored."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        global _received_signal
        _received_signal = signum
        raise StageTerminated(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _sigterm_deferred(enabled: bool) -> Iterator[list[int]]:
    """Hold SIGTERM during the (bounded) end-of-run bookkeeping; yields the signals received."""
    got: list[int] = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield got
        return
    previous = signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    try:
        yield got
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _start_system_metrics(run_id: str, uri: str, node_id: str | None = None) -> Any:
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(run_id, tracking_uri=uri, node_id=node_id)
        monitor.start()
        return monitor
    except Exception as exc:  # psutil/pynvml trouble must not stop training
        log.warning("system metrics disabled: %s", exc)
        return None


def _buffer_dir(buffer_dir: str | Path | None) -> Path:
    return Path(buffer_dir or os.environ.get(BUFFER_DIR_ENV) or DEFAULT_BUFFER_DIR).resolve()


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
    import atexit

    uri = _current_uri(tracking_uri)
    client = _client(uri)
    exp_id, exp_name, name = "", "", ""
    if reachable(uri):
        info = client.get_run(run_id).info  # fails loudly for a wrong id
        exp_id, name = str(info.experiment_id), info.run_name or ""
        exp_name = getattr(client.get_experiment(exp_id), "name", "")
    wal = WriteAheadLog.create(_buffer_dir(buffer_dir), run_id, uri, owner=False)
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
    client = _client(uri)
    _require_reachable(uri, f"open the {stage} run")
    exp_name = experiment or experiment_name(params, stage, dataset)
    exp_id = _experiment_id(client, params, uri, exp_name)
    all_tags = {**run_tags(params, stage, sections, dataset), **{k: str(v) for k, v in (tags or {}).items()}}
    name = run_name or _run_name(stage, all_tags)
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
    (:class:`TrackingUnavailableError` otherwise); later outages are buffered.
    """
    uri = _absolute_sqlite(tracking_uri) if tracking_uri else configure(params)
    bdir = _buffer_dir(buffer_dir)
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
        with _sigterm_raises(owner):
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
        with _sigterm_deferred(owner) as deferred:
            if monitor is not None:
                with contextlib.suppress(Exception):
                    monitor.finish()
            srun._finish(status if owner else None, error if owner else None)
        if deferred and status == "FINISHED":
            raise StageTerminated(deferred[0])


# ---------------------------------------------------------------------------------------------
# run files (the DVC <-> MLflow link)
# ---------------------------------------------------------------------------------------------
def write_run_file(path: str | Path, run: StageRun | NullRun, **extra: Any) -> None:
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
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "run_id" not in data:
        raise ValueError(f"{path}: not an MLflow run file (no run_id)")
    return data


# ---------------------------------------------------------------------------------------------
# leftover buffers
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BufferReport:
    """What ``flush_buffers`` did with one buffer file."""

    path: Path
    run_id: str
    state: str  # flushed | live | unreachable | error
    sent: int = 0
    left: int = 0
    end_status: str | None = None
    message: str = ""


def flush_buffers(buffer_dir: str | Path | None = None, tracking_uri: str | None = None) -> list[BufferReport]:
    """Replay leftover write-ahead buffers (a run whose server was down at its end, or whose
    process died) and finish their runs. Logs held by a live process are skipped.

    A log whose owner died without an end record ends KILLED (if its run is still RUNNING).
    ``tracking_uri`` overrides the URI recorded in each log.
    """
    bdir = Path(buffer_dir or os.environ.get(BUFFER_DIR_ENV) or DEFAULT_BUFFER_DIR)
    reports: list[BufferReport] = []
    for path in leftover_logs(bdir):
        try:
            wal = WriteAheadLog.open_existing(path)
        except (OSError, ValueError) as exc:
            reports.append(BufferReport(path, "?", "error", message=str(exc)))
            continue
        if wal is None:
            reports.append(BufferReport(path, path.name.split(".")[0], "live", message="held by a running process"))
            continue
        uri = tracking_uri or str(wal.meta["tracking_uri"])
        before = len(wal.pending)
        end = next((e["status"] for e in wal.pending if e["kind"] == "end"), None)
        try:
            if not reachable(uri):
                raise TrackingUnavailableError(f"{uri} is unreachable")
            client = _client(uri)
            rejected = _replay(client, wal)
            if end is None and wal.owner:
                run = client.get_run(wal.run_id)
                if run.info.status == "RUNNING":
                    client.set_tag(wal.run_id, "avf.end_reason", "writer died; finished from its buffer")
                    client.set_terminated(wal.run_id, "KILLED")
                    end = "KILLED"
        except Exception as exc:
            if not (_is_transient(exc) or isinstance(exc, TrackingUnavailableError)):
                wal.close(remove=False)
                raise
            reports.append(
                BufferReport(
                    path, wal.run_id, "unreachable", before - len(wal.pending), len(wal.pending), None, str(exc)
                )
            )
            wal.close(remove=False)
            continue
        wal.close(remove=True)
        msg = f"{len(rejected)} entries rejected" if rejected else ""
        reports.append(BufferReport(path, wal.run_id, "flushed", before, 0, end, msg))
    return reports


# ---------------------------------------------------------------------------------------------
# model registry
# ---------------------------------------------------------------------------------------------
def _missing(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    return isinstance(exc, MlflowException) and exc.error_code in (
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
        "NOT_FOUND",
    )


def register(
    model_uri: str,
    name: str,
    tags: Mapping[str, Any] | None = None,
    *,
    alias: str | None = None,
    tracking_uri: str | None = None,
) -> int:
    """Register ``model_uri`` as a new version of ``name`` (created if needed); returns the version.

    The version is tagged with ``dvc.exp_name`` and ``avf.git_commit`` (when known) plus ``tags``.
    """
    import mlflow

    uri = _current_uri(tracking_uri)
    _require_reachable(uri, "register a model")
    _set_global_uri(uri)
    lineage = {"dvc.exp_name": os.environ.get("DVC_EXP_NAME"), "avf.git_commit": _git("rev-parse", "HEAD")}
    all_tags = {k: v for k, v in lineage.items() if v} | {k: str(v) for k, v in (tags or {}).items()}
    mv = mlflow.register_model(model_uri, name, tags=all_tags)
    version = int(mv.version)
    if alias:
        set_alias(name, alias, version, tracking_uri=uri)
    return version


def set_alias(name: str, alias: str, version: int, *, tracking_uri: str | None = None) -> None:
    _client(tracking_uri).set_registered_model_alias(name, alias, str(version))


def get_alias_version(name: str, alias: str, *, tracking_uri: str | None = None) -> int | None:
    """The version ``name@alias`` points to, or None (no such alias or model)."""
    try:
        return int(_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except Exception as exc:
        if _missing(exc):
            return None
        raise


def version_metric(name: str, version: int, metric: str, *, tracking_uri: str | None = None) -> float | None:
    """A version's ``metric``: from its source run's metrics, else from its version tags."""
    client = _client(tracking_uri)
    mv = client.get_model_version(name, str(version))
    value: Any = None
    if mv.run_id:
        try:
            value = client.get_run(mv.run_id).data.metrics.get(metric)
        except Exception as exc:
            if not _missing(exc):
                raise
    if value is None:
        value = (mv.tags or {}).get(metric)
    try:
        f = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    return None if f is None or math.isnan(f) else f


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`promote`."""

    promoted: bool
    reason: str
    candidate_version: int | None
    champion_version: int | None  # the champion before the decision
    candidate_value: float | None
    champion_value: float | None
    metric: str = ""


def promote(
    name: str,
    metric: str = "test/uar",
    mode: str = "max",
    candidate_alias: str = "candidate",
    champion_alias: str = "champion",
    *,
    actor: str | None = None,
    note: str | None = None,
    tracking_uri: str | None = None,
) -> Decision:
    """Move ``@champion`` to the ``@candidate`` version if its ``metric`` beats the champion's.

    Strictly better wins (``mode`` max or min); with no champion, or a champion without the
    metric, the candidate wins. The decision (who, when, why) is recorded in the candidate's
    version tags either way; a replaced champion gets ``avf.replaced_by``.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    uri = _current_uri(tracking_uri)
    _require_reachable(uri, "promote a model")
    client = _client(uri)
    cand = get_alias_version(name, candidate_alias, tracking_uri=uri)
    champ = get_alias_version(name, champion_alias, tracking_uri=uri)
    if cand is None:
        return Decision(False, f"{name} has no @{candidate_alias} version", None, champ, None, None, metric)
    cand_value = version_metric(name, cand, metric, tracking_uri=uri)
    champ_value = version_metric(name, champ, metric, tracking_uri=uri) if champ is not None else None

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.6g}"

    better = ">" if mode == "max" else "<"
    if cand_value is None:
        promoted, reason = False, f"candidate v{cand} has no {metric} (neither run metric nor version tag)"
    elif champ == cand:
        promoted, reason = False, f"v{cand} is already @{champion_alias}"
    elif champ is None:
        promoted, reason = True, f"no @{champion_alias} yet; candidate v{cand} {metric}={fmt(cand_value)}"
    elif champ_value is None:
        promoted, reason = True, f"champion v{champ} has no {metric}; candidate v{cand} {metric}={fmt(cand_value)}"
    elif (cand_value > champ_value) if mode == "max" else (cand_value < champ_value):
        promoted = True
        reason = f"candidate v{cand} {metric}={fmt(cand_value)} {better} champion v{champ} {fmt(champ_value)}"
    else:
        promoted = False
        reason = (
            f"candidate v{cand} {metric}={fmt(cand_value)} does not beat champion v{champ} "
            f"{fmt(champ_value)} (mode {mode})"
        )
    who = actor or _actor()
    at = datetime.now(UTC).isoformat(timespec="seconds")
    record = {
        "avf.promotion.decision": "promoted" if promoted else "rejected",
        "avf.promotion.reason": reason + (f" | note: {note}" if note else ""),
        "avf.promotion.by": who,
        "avf.promotion.at": at,
        "avf.promotion.metric": f"{metric} ({mode})",
    }
    if promoted:
        client.set_registered_model_alias(name, champion_alias, str(cand))
        if champ is not None:
            record["avf.promotion.previous_champion"] = str(champ)
            client.set_model_version_tag(name, str(champ), "avf.replaced_by", str(cand))
            client.set_model_version_tag(name, str(champ), "avf.replaced_at", at)
    for k, v in record.items():
        client.set_model_version_tag(name, str(cand), k, v)
    return Decision(promoted, reason, cand, champ, cand_value, champ_value, metric)


def list_versions(name: str | None = None, *, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Registered versions (all models, or ``name``), newest first per model."""
    client = _client(tracking_uri)
    names = [name] if name else sorted(m.name for m in client.search_registered_models())
    out: list[dict[str, Any]] = []
    for n in names:
        try:
            versions = client.search_model_versions(f"name = '{n}'")
            alias_map = dict(client.get_registered_model(n).aliases or {})  # search results carry none
        except Exception as exc:
            if _missing(exc):
                continue
            raise
        for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
            created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)
            out.append(
                {
                    "name": n,
                    "version": int(mv.version),
                    "aliases": sorted(a for a, v in alias_map.items() if int(v) == int(mv.version)),
                    "run_id": mv.run_id,
                    "source": mv.source,
                    "status": mv.status,
                    "created": created.isoformat(timespec="seconds"),
                    "tags": dict(mv.tags or {}),
                }
            )
    return out


# ---------------------------------------------------------------------------------------------
# the logged video model (MLflow pyfunc) and model downloads
# ---------------------------------------------------------------------------------------------
MODEL_CACHE_ENV = "AVF_MODEL_CACHE"  # where downloaded models go (default: the system temp dir)
# Distributions the video model needs at serving time (pinned to the installed versions); avf itself
# must be installed there too (``pip install`` of this repository).
VIDEO_MODEL_REQUIREMENTS = (
    "torch",
    "torchaudio",
    "timm",
    "safetensors",
    "numpy",
    "pandas",
    "av",
    "mediapipe",
    "opencv-contrib-python",
    "ai-edge-litert",
    "pydantic",
    "PyYAML",
    "mlflow",
)


def download_model(uri: str, dst: str | Path | None = None, *, tracking_uri: str | None = None) -> Path:
    """Download a logged model's files (``models:/NAME@alias``, ``models:/NAME/3``, ``models:/m-<id>``,
    ``runs:/<run>/model``) into ``dst`` (default: a new folder under ``$AVF_MODEL_CACHE`` or the temp dir)."""
    import tempfile

    import mlflow

    store = _current_uri(tracking_uri)
    _require_reachable(store, f"download {uri}")
    _set_global_uri(store)
    if dst is None:
        cache = os.environ.get(MODEL_CACHE_ENV)
        if cache:
            Path(cache).mkdir(parents=True, exist_ok=True)
        dst = tempfile.mkdtemp(prefix="avf-model-", dir=cache or None)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst), tracking_uri=store))


def _video_paths(model_input: Any) -> list[str]:
    """Paths from a DataFrame with a ``video`` column, a list / array of paths, or a single path."""
    if hasattr(model_input, "columns"):
        if "video" not in model_input.columns:
            raise ValueError(f"expected a 'video' column of file paths, got columns {list(model_input.columns)}")
        return [str(p) for p in model_input["video"]]
    if isinstance(model_input, str | Path):
        return [str(model_input)]
    if isinstance(model_input, Mapping) and "video" in model_input:
        model_input = model_input["video"]
        if isinstance(model_input, str | Path):
            return [str(model_input)]
    return [str(p) for p in model_input]


@functools.cache
def _video_pyfunc_class() -> type:
    """The ``VideoPyfunc`` class, built on first use so that importing this module never imports mlflow."""
    import mlflow.pyfunc

    class VideoPyfunc(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
        """MLflow pyfunc of a fine-tuned model: video paths in, whole-video predictions out.

        A thin wrapper over :class:`avf.predict.Predictor`: the artifact ``model_dir`` is the stage
        output (or an exported package); ``settings`` is the ``predict`` params section at logging
        time. ``predict`` returns the rows of ``avf predict``'s ``videos.csv`` as a DataFrame.
        """

        _skip_type_hint_validation = True  # paths in, DataFrame out: no MLflow type-hint validation or warning

        def __init__(self, settings: dict[str, Any] | None = None) -> None:
            self.settings = dict(settings or {})
            self._predictor: Any = None

        def load_context(self, context: Any) -> None:
            from avf.config.predict import PredictConfig
            from avf.predict import Predictor

            settings = PredictConfig.model_validate(self.settings)
            self._predictor = Predictor.from_uri(context.artifacts["model_dir"], settings)

        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            from avf.predict.outputs import video_frame

            preds = self._predictor.predict_paths(_video_paths(model_input), progress=False)
            return video_frame(preds, self._predictor.spec)

    VideoPyfunc.__module__ = __name__
    VideoPyfunc.__qualname__ = "VideoPyfunc"
    return VideoPyfunc


def __getattr__(name: str) -> Any:
    """``avf.tracking.VideoPyfunc`` resolves lazily (and pickles by reference to this module)."""
    if name == "VideoPyfunc":
        return _video_pyfunc_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _pinned(names: Sequence[str]) -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for n in names:
        try:
            out.append(f"{n}=={version(n)}")
        except PackageNotFoundError:
            out.append(n)
    return out


def log_video_model(
    run: StageRun | NullRun, model_dir: str | Path, settings: Mapping[str, Any] | None = None
) -> str | None:
    """Log ``model_dir`` (a fine-tuned stage output) as the video pyfunc of ``run``; returns its ``models:/`` URI.

    Returns None for a :class:`NullRun` or when the tracking store is unreachable (logged as a warning:
    the stage's outputs stay valid; the model can be logged later from the DVC output).
    """
    if isinstance(run, NullRun):
        return None
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    # Input signature: a table with a string column ``video`` (file paths readable where the model runs).
    # The output columns depend on the class names (``prob_<class>``), so only the input is declared.
    signature = ModelSignature(inputs=Schema([ColSpec("string", "video")]))
    try:
        return run.log_model(
            _video_pyfunc_class()(dict(settings or {})),
            artifacts={"model_dir": str(model_dir)},
            name="model",
            signature=signature,
            pip_requirements=_pinned(VIDEO_MODEL_REQUIREMENTS),
        )
    except TrackingUnavailableError as exc:
        log.warning("model not logged to MLflow: %s", exc)
        return None
