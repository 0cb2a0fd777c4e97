"""Where a stage's training loop runs: in this process (``ray.num_workers: 0``) or on Ray Train workers.

:func:`run` trains (or resumes) the run ``storage / name`` and returns its newest checkpoint. With
``num_workers: 0`` the loop runs here (no cluster, no DDP); otherwise :func:`avf.train.worker.train_func`
runs on ``num_workers`` Ray Train workers (:func:`avf.runtime.ray_train.fit`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from avf.config import RayConfig
from avf.runtime.ray_train import RAY_TMP_ENV, RunResult
from avf.utils.device import resolve_device
from avf.utils.progress import Progress

__all__ = ["FORWARDED_ENV", "RunResult", "run"]

# Driver environment forwarded to the workers (tracking links, fault injection in tests).
FORWARDED_ENV = (
    "AVF_FAULT_KILL",
    "AVF_MLFLOW_BUFFER_DIR",
    "MLFLOW_TRACKING_URI",
    "DVC_EXP_NAME",
    "AVF_PARENT_RUN_ID",
    "PREFECT__FLOW_RUN_ID",
    "OMP_NUM_THREADS",
)


def run(config: dict[str, Any], cfg: RayConfig, name: str, storage: Path, decode_tasks: int = 0) -> RunResult:
    """Run the training worker function (in-process or under Ray Train) and return its newest checkpoint; its
    progress (steps, epoch, loss) is shown here, in the driver. ``decode_tasks``: Ray tasks decode the training
    batches (``data.ingest: ray``)."""
    storage = storage.resolve()
    config = {
        **config,
        "env": {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ},
        "run_dir": str(storage / name),
    }
    storage.mkdir(parents=True, exist_ok=True)
    with Progress(config["stage"], unit="steps") as bar:

        def show(step: int, total: int, fields: dict[str, str]) -> None:
            bar.update(step, total, **fields)

        if cfg.num_workers == 0:  # in-process, resumable from storage/name; a Ray cluster only for decode tasks
            from avf.train.worker import run_local

            if decode_tasks:
                from avf.runtime.cluster import ensure_cluster

                tmp = os.environ.get(RAY_TMP_ENV)
                ensure_cluster(cfg, Path(tmp) if tmp else None, decode_tasks)

            # ray.use_gpu means the same in-process as on Ray workers: train on this machine's first GPU
            device = resolve_device("cuda" if cfg.use_gpu else "cpu")
            _, session = run_local(config, storage / name, device=device, progress=show)
            if session.latest is None:
                raise RuntimeError("training finished without reporting a checkpoint")
            return RunResult(checkpoint=session.latest, metrics=session.reports[-1] if session.reports else {})
        from avf.runtime.ray_train import fit
        from avf.train.worker import train_func

        return fit(train_func, config, cfg, name, storage, progress=show, decode_tasks=decode_tasks)
