"""Every MLflow call of the project: stage runs, metrics, artifacts, dataset references, models, registry.

Usage (the driver of a stage; Ray rank 0 resumes the same run with ``run_id=``)::

    with tracking.stage_run(params, stage="pretrain", sections=("model", "masking", "pretrain", "ray")) as run:
        run.log_metrics({"train/loss": 0.5}, step=10)
    tracking.write_run_file("reports/pretrain/mlflow_run.json", run)

One module per job:

* :mod:`~avf.tracking.store`: the tracking URI, the client, reachability, transient versus caller errors,
  refused credentials.
* :mod:`~avf.tracking.tags`: experiment and run names, run tags, flattened params.
* :mod:`~avf.tracking.buffer`: the on-disk write-ahead log every logged value passes through, and its replay.
* :mod:`~avf.tracking.runs`: the :class:`Run` protocol, :class:`StageRun` and :class:`NullRun`.
* :mod:`~avf.tracking.stage`: :func:`stage_run` / :func:`attach` (a run that always ends in a terminal
  state) and the run file linking a DVC output to its run.
* :mod:`~avf.tracking.registry`: registration, aliases and promotion.
* :mod:`~avf.tracking.downloads`: downloading a logged model.
* :mod:`~avf.tracking.pyfunc`: the logged video model (imports :mod:`avf.predict`, so it is not imported
  here: the fine-tuning stage imports it).

Outside :mod:`~avf.tracking.pyfunc`, mlflow is imported inside functions only, so that importing this
package (and ``avf --help``) stays fast.
"""

from avf.tracking.buffer import BUFFER_DIR_ENV, BufferReport, flush_buffers
from avf.tracking.downloads import MODEL_CACHE_ENV, download_model
from avf.tracking.registry import (
    Decision,
    get_alias_version,
    list_versions,
    promote,
    register,
    set_alias,
    version_metric,
)
from avf.tracking.runs import RETRY_ENV, NullRun, Run, StageRun, null_run
from avf.tracking.stage import attach, read_run_file, stage_run, write_run_file
from avf.tracking.store import (
    TrackingAuthError,
    TrackingUnavailableError,
    configure,
    current_uri,
    is_mlflow_error,
    reachable,
)
from avf.tracking.tags import PARENT_RUN_ENV, experiment_name, flatten_params

__all__ = [
    "BUFFER_DIR_ENV",
    "MODEL_CACHE_ENV",
    "PARENT_RUN_ENV",
    "RETRY_ENV",
    "BufferReport",
    "Decision",
    "NullRun",
    "Run",
    "StageRun",
    "TrackingAuthError",
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
