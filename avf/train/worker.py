"""The function every Ray Train worker runs: rebuild the config, build the stage's task, run the loop.

Only world rank 0 talks to MLflow (it attaches to the run the driver opened); every rank reports its
metrics and rank 0 its checkpoint to Ray each epoch, and its progress (step, epoch, loss) to the driver.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from avf.config import Params, parse_params
from avf.train.loop import fit
from avf.train.session import LocalSession, Session

if TYPE_CHECKING:
    from avf.runtime.ray_train import ProgressFn

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


def _progress_fields(
    metrics: dict[str, float], step: int, steps_per_epoch: int, epochs: int, select: str | None
) -> dict[str, str]:
    """What the progress display shows of a log call's ``metrics``: epoch, training loss, selection metric."""
    fields = {"epoch": f"{min(epochs, -(-step // max(1, steps_per_epoch)))}/{epochs}"}
    if "train/loss" in metrics:
        fields["loss"] = f"{metrics['train/loss']:.4g}"
    if select and f"epoch/{select}" in metrics:
        fields[select] = f"{metrics[f'epoch/{select}']:.4g}"
    return fields


def run_worker(config: dict[str, Any], session: Session, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run one stage's training on ``session`` (used by Ray workers and in-process tests); rank 0 reports its
    progress to ``progress``."""
    params = parse_params(config["params"], "<params from driver>")
    torch.manual_seed(params.seed)
    if config.get("threads_per_worker"):
        torch.set_num_threads(max(1, int(config["threads_per_worker"])))
    task = build_task(config, params, session)
    run = None
    if session.rank == 0 and config.get("mlflow_run_id"):
        from avf import tracking

        run = tracking.attach(config["mlflow_run_id"], config.get("tracking_uri"))

    steps_per_epoch, epochs = task.steps_per_epoch(), task.cfg.epochs

    def log_fn(metrics: dict[str, float], step: int) -> None:
        if run is not None:
            run.log_metrics(metrics, step=step)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.endswith("epoch"))
        log.info("[%s] step %d: %s", config["stage"], step, shown)
        if progress is not None:
            fields = _progress_fields(metrics, step, steps_per_epoch, epochs, task.select_metric)
            progress(step, steps_per_epoch * epochs, fields)

    return fit(task, session, log_fn)


def train_func(config: dict[str, Any]) -> None:
    """Ray Train entry point (``TorchTrainer(train_func, train_loop_config=config)``)."""
    from avf.artifacts.checkpoints import newest_complete_checkpoint
    from avf.env import apply_defaults
    from avf.runtime.ray_train import PROGRESS_KEY, RaySession

    os.environ.update(config.get("env", {}))
    apply_defaults()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    session = RaySession(config.get("run_dir"), newest_complete_checkpoint, config.get(PROGRESS_KEY))
    run_worker(config, session, session.progress)


def run_local(
    config: dict[str, Any],
    checkpoint_root: Path | None = None,
    device: str | torch.device = "cpu",
    progress: ProgressFn | None = None,
) -> tuple[dict[str, Any], LocalSession]:
    """Run a stage in this process without Ray, on ``device``."""
    session = LocalSession(checkpoint_root, device=device)
    return run_worker(config, session, progress), session
