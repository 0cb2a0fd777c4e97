"""Ray Train glue: run a per-worker training function on a ``TorchTrainer`` and give back its newest checkpoint.

The caller hands in the function each worker runs (it builds a :class:`RaySession` and runs the loop), so
this module knows nothing of the training code. :func:`fit` runs ``num_workers`` workers (gloo on CPU, nccl
on GPU), restores them from the newest checkpoint after a worker failure (``FailureConfig``) and resumes an
interrupted run with the same ``name`` under ``storage``. The workers' own output reaches the driver only as
Ray's forwarded log lines; their progress (:meth:`RaySession.progress`) travels on a Ray queue to a driver
thread that hands it to ``fit``'s ``progress`` callback.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from avf.config import RayConfig
from avf.runtime.cluster import check_decode_cpus, ensure_cluster
from avf.runtime.lifecycle import StageTerminated, keep_python_signal_handlers, received_signal

__all__ = ["PROGRESS_KEY", "RAY_TMP_ENV", "ProgressFn", "RaySession", "RunResult", "fit"]

RAY_TMP_ENV = "AVF_RAY_TMP"  # folder for the private cluster's sockets, logs and spilled objects
PROGRESS_KEY = "progress_queue"  # the train loop config entry holding the progress queue
# (step, total steps, shown fields) of a training run, from the rank-0 worker to the driver
ProgressFn = Callable[[int, int, dict[str, str]], None]


class RaySession:
    """The training loop's session (rank, device, DDP wrapping, reporting, restore) on a Ray Train worker.

    ``newest_checkpoint(run_dir)`` finds the newest whole checkpoint folder of a run: Ray restores a run
    only from its checkpoint-manager snapshot, which a driver killed right after a report may not have
    written, and then the run resumes from that folder instead.
    """

    def __init__(
        self,
        run_dir: str | Path | None = None,
        newest_checkpoint: Callable[[Path], Path | None] | None = None,
        progress_queue: Any = None,
    ) -> None:
        import ray.train
        import ray.train.torch

        self.run_dir = Path(run_dir) if run_dir else None
        self._newest_checkpoint = newest_checkpoint
        self._progress_queue = progress_queue

        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.local_world_size = ctx.get_local_world_size()
        self.device = ray.train.torch.get_device()
        if isinstance(self.device, list):
            self.device = self.device[0]

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        if self.world_size == 1:
            return model.to(self.device)
        return ray.train.torch.prepare_model(model, move_to_device=True)

    def progress(self, step: int, total: int, fields: dict[str, str]) -> None:
        """Show the run's progress on the driver (a no-op without its queue)."""
        if self._progress_queue is None:
            return
        from ray.exceptions import RayError

        try:
            self._progress_queue.put_nowait((step, total, fields))
        except RayError:  # the driver went away: its progress display with it, never the training
            self._progress_queue = None

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        import ray.train

        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        ray.train.report(metrics, checkpoint=checkpoint)

    @contextlib.contextmanager
    def _restored(self) -> Iterator[Path | None]:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            run_dir, newest = self.run_dir, self._newest_checkpoint
            yield newest(run_dir) if newest is not None and run_dir is not None and run_dir.is_dir() else None
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
    checkpoint: Path  # the newest reported checkpoint (holds model, selected weights and loop state)
    metrics: dict[str, Any]


@contextlib.contextmanager
def _progress_queue(progress: ProgressFn | None) -> Iterator[Any]:
    """A Ray queue for :meth:`RaySession.progress` and a driver thread that passes its items to ``progress``
    (None without a callback). The thread drains what is left after the block."""
    if progress is None:
        yield None
        return
    from ray.util.queue import Empty, Queue

    queue = Queue(actor_options={"num_cpus": 0})  # never takes a CPU a training worker waits for
    done = threading.Event()

    def pump() -> None:
        while True:
            try:
                step, total, fields = queue.get(timeout=0.5)
            except Empty:
                if done.is_set():
                    return
                continue
            progress(step, total, fields)

    thread = threading.Thread(target=pump, name="avf-train-progress", daemon=True)
    thread.start()
    try:
        yield queue
    finally:
        done.set()
        thread.join(timeout=10)
        queue.shutdown()


def fit(
    train_func: Callable[[dict[str, Any]], None],
    config: dict[str, Any],
    cfg: RayConfig,
    name: str,
    storage: Path,
    progress: ProgressFn | None = None,
    decode_tasks: int = 0,
) -> RunResult:
    """Run ``train_func(config)`` on ``cfg.num_workers`` Ray Train workers; the run lives in ``storage / name``.

    ``train_func`` must be a module-level function (Ray pickles it by reference). Joins ``RAY_ADDRESS`` /
    ``cfg.address`` or starts a private cluster on 127.0.0.1 (its temp folder: ``$AVF_RAY_TMP`` if set).
    With ``progress``, ``config[PROGRESS_KEY]`` is the queue that :class:`RaySession` puts progress on.
    ``decode_tasks``: the workers decode their batches in Ray tasks (``data.ingest: ray``), which need CPUs too.
    """
    tmp = os.environ.get(RAY_TMP_ENV)
    ensure_cluster(cfg, Path(tmp) if tmp else None, decode_tasks)
    if decode_tasks:
        check_decode_cpus(cfg)
    resources = {"CPU": cfg.cpus_per_worker}
    if cfg.use_gpu:
        resources["GPU"] = cfg.gpus_per_worker or 1.0
    with _progress_queue(progress) as queue:
        return _fit(train_func, {**config, PROGRESS_KEY: queue}, cfg, name, storage, resources)


def _fit(
    train_func: Callable[[dict[str, Any]], None],
    config: dict[str, Any],
    cfg: RayConfig,
    name: str,
    storage: Path,
    resources: dict[str, float],
) -> RunResult:
    """:func:`fit` once its cluster and progress queue are there."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    trainer = TorchTrainer(
        train_func,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name,
            storage_path=str(storage),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    try:
        with keep_python_signal_handlers():  # Ray Train's SIGINT handler aborts this run; it must not outlive it
            result = trainer.fit()
    except SystemExit as exc:  # SIGTERM while blocked in ray.get arrives as SystemExit(1): restore it
        signum = received_signal()
        if signum is not None and not isinstance(exc, StageTerminated):
            raise StageTerminated(signum) from exc
        raise
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError("training finished without reporting a checkpoint")
    return RunResult(checkpoint=Path(result.checkpoint.path), metrics=dict(result.metrics or {}))
