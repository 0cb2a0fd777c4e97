"""The run a stage logs into: the :class:`Run` protocol, the live :class:`StageRun` and the no-op :class:`NullRun`.

A :class:`StageRun` passes metrics, params, tags, artifacts and dataset references through the
on-disk write-ahead buffer (:mod:`avf.tracking.buffer`): when the tracking server is unreachable the
run keeps going, and the buffer is replayed in order on a later call, at the end of the run, or by
``avf registry flush-buffer``. Only opening a new run and ``log_model`` need the server.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from avf.tracking.buffer import (
    MAX_METRICS_PER_BATCH,
    MAX_PARAMS_TAGS_PER_BATCH,
    WriteAheadLog,
    flush_worker_logs,
    now_ms,
    replay,
    split_mapping,
)
from avf.tracking.store import (
    TrackingAuthError,
    TrackingUnavailableError,
    auth_errors,
    float_env,
    is_transient,
    reachable,
    set_global_uri,
)
from avf.tracking.tags import MAX_TAG_LEN, param_value

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

RETRY_ENV = "AVF_MLFLOW_RETRY_S"  # while offline, how often a log call probes the server again


class Run(Protocol):
    """What a stage logs into; :class:`StageRun` and :class:`NullRun` both provide it."""

    @property
    def run_id(self) -> str | None: ...
    @property
    def experiment_id(self) -> str | None: ...
    @property
    def tracking_uri(self) -> str | None: ...
    @property
    def experiment_name(self) -> str: ...
    @property
    def run_name(self) -> str: ...
    @property
    def model_uri(self) -> str | None:
        """The ``models:/`` URI of the model logged by :meth:`log_model`, if any."""

    @property
    def pending(self) -> int:
        """Entries written to the buffer but not yet acknowledged by the store."""

    @property
    def online(self) -> bool: ...

    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...

    def close(self) -> None:
        """Send what can be sent and release the buffer (an attached run; the status is untouched)."""

    def handle(self) -> dict[str, str]:
        """Keyword arguments for ``stage_run(params, stage, **run.handle())`` in a Ray worker."""

    def flush(self, force: bool = False) -> bool:
        """Send buffered entries; True when nothing is left."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log step metrics (keys like ``train/loss``; values float-convertible, e.g. 0-d tensors)."""

    def log_metric(self, key: str, value: Any, step: int | None = None) -> None: ...

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (non-strings are JSON-encoded, so booleans read ``true`` as in params.yaml)."""

    def set_tags(self, tags: Mapping[str, Any]) -> None: ...
    def set_tag(self, key: str, value: Any) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload a file or a directory (under ``artifact_path``)."""

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """Store ``obj`` as JSON (or YAML for ``.yaml``/``.yml``) at ``artifact_file``."""

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Store a matplotlib figure (or an existing image file) at ``artifact_file``."""

    def log_dataset(self, name: str, path: str | Path, digest: str, context: str = "training") -> None:
        """Reference a dataset (e.g. a manifest with its DVC md5) without uploading it."""

    def log_model(
        self,
        python_model: Any,
        artifacts: Mapping[str, str | Path] | None = None,
        name: str = "model",
        input_example: Any = None,
        signature: Any = None,
        **kwargs: Any,
    ) -> str | None:
        """Log a pyfunc model linked to this run; returns its ``models:/`` URI."""


class StageRun:
    """A live MLflow run (rank 0 / the driver). Create it with :func:`avf.tracking.stage_run`."""

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
        self._retry_s = float_env(RETRY_ENV, 10.0)
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
        return len(self._wal.pending)

    @property
    def online(self) -> bool:
        return self._online

    def handle(self) -> dict[str, str]:
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
            rejected = replay(self._client, self._wal)
        except Exception as exc:
            if not is_transient(exc):
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
        from mlflow.utils.validation import _validate_param_name

        data = {}
        for k, v in params.items():
            _validate_param_name(k)
            data[k] = param_value(v)
        for part in split_mapping(data, MAX_PARAMS_TAGS_PER_BATCH):
            self._append("params", data=part)
        self._flush(force=False, raise_rejected=True)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.utils.validation import _validate_tag_name

        data = {}
        for k, v in tags.items():
            _validate_tag_name(k)
            data[k] = str(v)[:MAX_TAG_LEN]
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
                with auth_errors(self.tracking_uri):
                    if src.is_dir():
                        self._client.log_artifacts(self.run_id, str(src), artifact_path)
                    else:
                        self._client.log_artifact(self.run_id, str(src), artifact_path)
                return
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._go_offline(str(exc).splitlines()[0][:200])
        folder, rel = self._stage_file(src.name)
        if src.is_dir():
            shutil.copytree(src, folder / src.name)
        else:
            shutil.copy2(src, folder / src.name)
        self._queue_artifact(rel, artifact_path)

    def _log_generated(self, artifact_file: str, write: Callable[[Path], Any]) -> None:
        target = Path(artifact_file)
        folder, rel = self._stage_file(target.name)
        write(folder / target.name)
        parent = target.parent.as_posix()
        self._queue_artifact(rel, None if parent in ("", ".") else parent)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
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
        def write(p: Path) -> None:
            if isinstance(figure, str | Path):
                shutil.copy2(figure, p)
            else:
                figure.savefig(p, bbox_inches="tight")

        self._log_generated(artifact_file, write)

    def log_dataset(self, name: str, path: str | Path, digest: str, context: str = "training") -> None:
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

        Needs the tracking store (raises :class:`TrackingUnavailableError` while it is unreachable, and
        :class:`TrackingAuthError` when it refuses the credentials).
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
        set_global_uri(self.tracking_uri)
        # MLflow 3 files a LoggedModel under the *active* experiment (else "Default", whose artifacts land
        # in ./mlruns of the working directory): make it this run's experiment.
        mlflow.set_experiment(experiment_id=self.experiment_id)
        try:
            from mlflow.pyfunc import _get_pyfunc_model_flavor_name

            kwargs.setdefault("flavor_name", _get_pyfunc_model_flavor_name(python_model))
        except ImportError:  # pragma: no cover - internal helper moved
            pass
        with auth_errors(self.tracking_uri):
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
        self.finish(None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def finish(self, status: str | None, error: str | None = None) -> None:
        """End the buffer's life: an owner queues ``status`` (and ``error`` as the ``avf.error`` tag) after
        replaying its workers' leftover buffers; then everything that can be sent is, and the buffer is
        dropped if empty. Later calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if status is not None:
            flush_worker_logs(self._client, self._wal)
        if error:
            self._append("tags", data={"avf.error": error[:MAX_TAG_LEN]})
        if status is not None:
            self._append("end", status=status, ts=now_ms())
        try:
            ok = self._flush(force=True, raise_rejected=False)
        except TrackingAuthError:
            self._wal.close(remove=False)  # for `avf registry flush-buffer` with the right credentials
            raise
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


class NullRun:
    """A :class:`Run` that logs nothing (Ray ranks other than 0)."""

    run_id: str | None = None
    experiment_id: str | None = None
    tracking_uri: str | None = None
    experiment_name = ""
    run_name = ""
    model_uri: str | None = None
    pending = 0
    online = True

    def __enter__(self) -> Self:
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

    def log_model(
        self,
        python_model: Any,
        artifacts: Mapping[str, str | Path] | None = None,
        name: str = "model",
        input_example: Any = None,
        signature: Any = None,
        **kwargs: Any,
    ) -> None:
        return None


def null_run() -> NullRun:
    """A run that logs nothing (usable directly or as a context manager)."""
    return NullRun()
