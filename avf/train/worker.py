"""The function every Ray Train worker runs: rebuild the config, build the stage's task, run the loop.

Only world rank 0 talks to MLflow (it attaches to the run the driver opened); every rank reports its
metrics and rank 0 its checkpoint to Ray each epoch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from avf.config import Params, parse_params
from avf.train.loop import fit
from avf.train.session import LocalSession, Session

log = logging.getLogger(__name__)


def build_task(config: dict[str, Any], params: Params, session: Session) -> Any:
    """The stage's :class:`~avf.train.loop.Task` from the driver's serialisable ``config``."""
    from avf.artifacts.weights import load_weights
    from avf.data.splits import DatasetSplits
    from avf.train.tasks import PretrainTask, SupervisedTask

    stage = config["stage"]
    if config.get("task_factory"):  # "module:function" building a custom Task (tests, extensions)
        import importlib

        module, func = config["task_factory"].split(":")
        return getattr(importlib.import_module(module), func)(config, params, session)
    if stage == "pretrain":
        return PretrainTask(params, [Path(p) for p in config["shard_dirs"]], config["num_samples"], session)
    datasets = [DatasetSplits(**{**d, "shard_dir": Path(d["shard_dir"])}) for d in config["datasets"]]
    init = load_weights(config["init_weights"]) if config.get("init_weights") else None
    cfg = params.intermediate if stage == "intermediate" else params.finetune
    return SupervisedTask(params, cfg, datasets, session, init, multi_head=stage == "intermediate")


def run_worker(config: dict[str, Any], session: Session) -> dict[str, Any]:
    """Run one stage's training on ``session`` (used by Ray workers and in-process tests)."""
    params = parse_params(config["params"], "<params from driver>")
    torch.manual_seed(params.seed)
    if config.get("threads_per_worker"):
        torch.set_num_threads(max(1, int(config["threads_per_worker"])))
    task = build_task(config, params, session)
    run = None
    if session.rank == 0 and config.get("mlflow_run_id"):
        from avf import tracking

        run = tracking.attach(config["mlflow_run_id"], config.get("tracking_uri"))

    def log_fn(metrics: dict[str, float], step: int) -> None:
        if run is not None:
            run.log_metrics(metrics, step=step)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.endswith("epoch"))
        log.info("[%s] step %d: %s", config["stage"], step, shown)

    return fit(task, session, log_fn)


def train_func(config: dict[str, Any]) -> None:
    """Ray Train entry point (``TorchTrainer(train_func, train_loop_config=config)``)."""
    from avf.artifacts.checkpoints import newest_complete_checkpoint
    from avf.env import apply_defaults
    from avf.runtime.ray_train import RaySession

    os.environ.update(config.get("env", {}))
    apply_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(config, RaySession(config.get("run_dir"), newest_complete_checkpoint))


def run_local(
    config: dict[str, Any], checkpoint_root: Path | None = None, device: str | torch.device = "cpu"
) -> tuple[dict[str, Any], LocalSession]:
    """Run a stage in this process without Ray, on ``device``."""
    session = LocalSession(checkpoint_root, device=device)
    return run_worker(config, session), session
