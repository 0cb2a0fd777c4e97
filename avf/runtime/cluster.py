"""The Ray cluster a stage uses: join ``RAY_ADDRESS`` / ``ray.address``, or start a private one on 127.0.0.1.

A private cluster has no authentication, so everything it starts (GCS, raylet, agents, workers) listens on
loopback only (:func:`loopback_only`); it ends with the stage process, or at :func:`shutdown`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from avf.config import RayConfig
from avf.runtime.lifecycle import keep_python_signal_handlers

__all__ = [
    "LOOPBACK_ENV",
    "STATE_API_NOISE",
    "check_decode_cpus",
    "ensure_cluster",
    "loopback_only",
    "quiet_private_cluster_logs",
    "shutdown",
]

log = logging.getLogger(__name__)

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
STATE_API_NOISE = "State API may be temporarily unavailable"


def ensure_cluster(cfg: RayConfig, temp_dir: Path | None = None, decode_tasks: int = 0) -> None:
    """Connect to ``RAY_ADDRESS`` / ``cfg.address`` or start a private local cluster on 127.0.0.1.

    ``decode_tasks``: how many Ray tasks each trainer keeps decoding its batches (``data.ingest: ray``). A
    private cluster declares that many more CPUs than the trainers take, at most one per core of this machine:
    on one machine the decoding shares the cores with the training, as DataLoader workers would.
    """
    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS") or cfg.address
    if address:
        log.info("joining Ray cluster at %s", address)
        with keep_python_signal_handlers():
            ray.init(address=address, log_to_driver=True)
        return
    cores = os.cpu_count() or 1
    cpus = max(int(cfg.num_workers * cfg.cpus_per_worker + 0.999) + min(decode_tasks, cores), cores)
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
            runtime_env={"worker_process_setup_hook": f"{__name__}.quiet_private_cluster_logs"},
            **kwargs,
        )


def check_decode_cpus(cfg: RayConfig) -> bool:
    """Say so when the cluster has no CPU left for a decode task once the trainers hold theirs: the training
    then waits for CPU nodes to join (an autoscaling cluster adds them; a fixed one never will)."""
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    trainers = cfg.num_workers * cfg.cpus_per_worker
    if total >= trainers + 1:
        return True
    log.warning(
        "data.ingest: ray needs at least one CPU for decoding beside the %d trainer(s)' %g, but the Ray cluster "
        "has %g now: training waits until CPU nodes join. On a fixed-size cluster add CPU nodes, lower "
        "ray.cpus_per_worker or use data.ingest: loader.",
        cfg.num_workers, trainers, total,
    )  # fmt: skip
    return False


def quiet_private_cluster_logs() -> None:
    """Ray worker setup hook for the private cluster, which runs without the dashboard (so without the state API).

    Ray Train's placement-group cleaner asks the state API once a second whether the controller is alive and
    warns each time it cannot: about 270 identical lines in a demo run's log. The cluster is stopped with the
    stage, which removes its placement groups anyway, so those warnings are dropped (nothing else is).
    """
    logging.getLogger("ray.train.v2._internal.execution.controller.placement_group_cleaner").addFilter(
        lambda record: STATE_API_NOISE not in record.getMessage()
    )


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


def shutdown() -> None:
    """Disconnect from the cluster; a private one stops with it."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
