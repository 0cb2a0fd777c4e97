"""Ray Train wrapper around the plain loop: the only module that imports ``ray.train``.

``run(config, ray_cfg, name, storage)`` runs :func:`avf.train.worker.train_func` on ``num_workers``
Ray workers (gloo on CPU, nccl on GPU), restores from the newest checkpoint after a worker failure
(``FailureConfig``), and resumes an interrupted run with the same ``name`` under ``storage``. It joins
the cluster at ``RAY_ADDRESS`` / ``ray.address`` or starts a local one bound to 127.0.0.1.
``num_workers: 0`` runs the loop in this process (Ray Train local mode: no cluster, no DDP).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avf.config import RayConfig

log = logging.getLogger(__name__)


class RaySession:
    """:class:`~avf.train.session.Session` backed by the Ray Train worker context."""

    def __init__(self, run_dir: str | Path | None = None) -> None:
        import ray.train
        import ray.train.torch

        self.run_dir = Path(run_dir) if run_dir else None

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        if isinstance(self.device, list):
            self.device = self.device[0]

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        if self.world_size == 1:
            return model.to(self.device)
        return ray.train.torch.prepare_model(model, move_to_device=True)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    @contextlib.contextmanager
    def _restored(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            # Ray restores a run only from its checkpoint-manager snapshot, which a driver killed right
            # after a report may not have written: then resume from the newest whole checkpoint folder.
            from avf.artifacts.checkpoints import newest_complete_checkpoint

            yield newest_complete_checkpoint(self.run_dir) if self.run_dir and self.run_dir.is_dir() else None
            return
        with checkpoint.as_directory() as d:
            yield Path(d)

    def restored_checkpoint(self) -> contextlib.AbstractContextManager[Path | None]:
        return self._restored()

    def all_gather_object(self, obj: Any) -> list[Any]:
        if self.world_size == 1 or not torch.distributed.is_initialized():
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out


@dataclass
class RunResult:
    checkpoint: Path  # the newest reported checkpoint (holds model, best weights and loop state)
    metrics: dict[str, Any]


def ensure_cluster(cfg: RayConfig, temp_dir: Path | None = None) -> None:
    """Connect to ``RAY_ADDRESS`` / ``cfg.address`` or start a private local cluster on 127.0.0.1."""
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or cfg.address
    if address:
        log.info("joining Ray cluster at %s", address)
        with keep_python_signal_handlers():
            ray.init(address=address, log_to_driver=True)
        return
    cpus = max(int(cfg.num_workers * cfg.cpus_per_worker + 0.999), os.cpu_count() or 1)
    log.info("starting a local Ray cluster (%d CPUs, 127.0.0.1)", cpus)
    kwargs: dict[str, Any] = {}
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        kwargs["_temp_dir"] = str(temp_dir)
    with loopback_only(), keep_python_signal_handlers():
        ray.init(
            num_cpus=cpus,
            num_gpus=torch.cuda.device_count() if cfg.use_gpu else 0,
            object_store_memory=cfg.object_store_mb * 2**20,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            configure_logging=True,
            logging_level=logging.WARNING,
            runtime_env={"worker_process_setup_hook": "avf.train.ray_entry.quiet_private_cluster_logs"},
            **kwargs,
        )


STATE_API_NOISE = "State API may be temporarily unavailable"


def quiet_private_cluster_logs() -> None:
    """Ray worker setup hook for the private cluster, which runs without the dashboard (so without the state API).

    Ray Train's placement-group cleaner asks the state API once a second whether the controller is alive and
    warns each time it cannot: about 270 identical lines in a demo run's log. The cluster is stopped with the
    stage, which removes its placement groups anyway, so those warnings are dropped (nothing else is).
    """
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").addFilter(
        lambda record: STATE_API_NOISE not in record.getMessage()
    )


LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def keep_python_signal_handlers() -> Iterator[None]:
    """Put the process's Python SIGTERM / SIGINT handlers back after ``ray.init``.

    ``ray.init`` installs its own SIGTERM handling in the driver (measured with Ray 2.60: a stack dump, then
    the process aborted with exit -6), so the stage's handler (:func:`avf.tracking.stage_run`: end the MLflow
    run KILLED, remove temp outputs, exit 143) never ran and nothing was cleaned up.
    """
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in saved.items():
                if callable(handler):
                    signal.signal(sig, handler)


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """While a private cluster starts, keep Ray on 127.0.0.1 (its GCS, raylet, agents and workers).

    ``_node_ip_address="127.0.0.1"`` alone does not do it: Ray swaps a loopback address for the
    machine's routable IP unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (``ray._private.services.
    resolve_ip_for_localhost``), and its servers then listen on every interface (measured with Ray
    2.60: GCS, raylet and workers on ``::``, agents on ``0.0.0.0`` and the host IP). The variable is
    read by the processes ``ray.init`` starts; this process read it when ``ray`` was imported, hence
    the constant. Both are restored afterwards (a later ``ray.init(address=...)`` in this process
    must announce a reachable IP). Set the variable yourself to override this.
    """
    from ray._private import ray_constants

    previous_env, previous = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    if previous_env is None:
        os.environ[LOOPBACK_ENV] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = previous
        if previous_env is None:
            os.environ.pop(LOOPBACK_ENV, None)


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


def run(config: dict[str, Any], cfg: RayConfig, name: str, storage: Path) -> RunResult:
    """Run the training worker function under Ray Train and return its newest checkpoint."""
    storage = storage.resolve()
    config = {
        **config,
        "env": {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ},
        "run_dir": str(storage / name),
    }
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from avf.train.worker import train_func

    storage.mkdir(parents=True, exist_ok=True)
    if cfg.num_workers == 0:  # in-process, resumable from storage/name, no Ray cluster at all
        from avf.train.worker import run_local

        _, session = run_local(config, storage / name)
        if session.latest is None:
            raise RuntimeError("training finished without reporting a checkpoint")
        return RunResult(checkpoint=session.latest, metrics=session.reports[-1] if session.reports else {})
    else:
        tmp = os.environ.get("AVF_RAY_TMP")
        ensure_cluster(cfg, Path(tmp) if tmp else None)
        resources = {"CPU": cfg.cpus_per_worker}
        if cfg.use_gpu:
            resources["GPU"] = cfg.gpus_per_worker or 1.0
        scaling = ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources)
    trainer = TorchTrainer(
        train_func,
        train_loop_config=config,
        scaling_config=scaling,
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    try:
        result = trainer.fit()
    except SystemExit as exc:  # SIGTERM while blocked in ray.get arrives as SystemExit(1): restore it
        from avf import tracking

        signum = tracking.received_signal()
        if signum is not None and not isinstance(exc, tracking.StageTerminated):
            raise tracking.StageTerminated(signum) from exc
        raise
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError("training finished without reporting a checkpoint")
    return RunResult(checkpoint=Path(result.checkpoint.path), metrics=dict(result.metrics or {}))


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
