"""A tiny deterministic Task (linear regression) that exercises the loop, DDP, Ray and resume.

Used through the worker's ``task_factory`` hook so Ray workers build it from the config alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from avf.config import OptimConfig, Params
from avf.train.loop import StepLogs
from avf.train.sampling import GlobalBatchSampler, shard_indices
from avf.train.session import Session


class ToyTask:
    layer_decay = None
    select_metric = "val/loss"
    select_mode = "min"

    def __init__(self, config: dict[str, Any], params: Params, session: Session) -> None:
        toy = config["toy"]
        self.cfg = OptimConfig(**toy["optim"])
        self.select_rule, self.select_epochs = toy["select_rule"], toy["select_epochs"]
        self.session = session
        rng = np.random.default_rng(0)
        self.x = torch.tensor(rng.normal(size=(toy["n"], 16)), dtype=torch.float32)
        w = torch.tensor(rng.normal(size=(16, 4)), dtype=torch.float32)
        self.y = self.x @ w + 0.01 * torch.tensor(rng.normal(size=(toy["n"], 4)), dtype=torch.float32)
        self.sampler = GlobalBatchSampler(
            toy["n"], self.cfg.batch_size // self.cfg.accum_steps, session.rank, session.world_size, seed=7
        )

    def build_model(self) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 4))

    def steps_per_epoch(self) -> int:
        return len(self.x) // self.cfg.batch_size

    def effective_batch(self) -> int:
        return self.cfg.batch_size

    def train_batches(self, epoch: int, start_micro_step: int) -> Iterable[Any]:
        self.sampler.set_epoch(epoch, start_micro_step)
        for idx in self.sampler:
            yield self.x[idx], self.y[idx]

    def train_step(self, model: nn.Module, batch: Any, step: int) -> tuple[torch.Tensor, StepLogs]:
        x, y = batch
        loss = nn.functional.mse_loss(model(x), y)
        return loss, {"loss": float(loss.detach())}

    def evaluate(self, model: nn.Module, epoch: int) -> dict[str, float]:
        idx = shard_indices(len(self.x), self.session.rank, self.session.world_size)
        err = ((model(self.x[idx]) - self.y[idx]) ** 2).sum().item()
        total = sum(self.session.all_gather_object(err))
        return {"val/loss": total / (len(self.x) * 4)}


def build(config: dict[str, Any], params: Params, session: Session) -> ToyTask:
    return ToyTask(config, params, session)


def toy_config(
    epochs: int = 3,
    batch_size: int = 8,
    n: int = 64,
    lr: float = 3.0,
    accum: int = 1,
    select_rule: str = "best",
    select_epochs: int = 2,
    **optim: Any,
) -> dict[str, Any]:
    """The toy task's worker config; ``optim`` adds optimiser-section keys (``ema_decay``, ``amp``...)."""
    return {
        "stage": "toy",
        "task_factory": "tests.support.toy_task:build",
        "params": Params().model_dump(mode="json"),
        "toy": {
            "n": n,
            "select_rule": select_rule,
            "select_epochs": select_epochs,
            "optim": {
                "epochs": epochs,
                "batch_size": batch_size,
                "base_lr": lr,
                "min_lr": 0.0,
                "weight_decay": 0.0,
                "accum_steps": accum,
                "log_every": 1,
                "amp": "off",  # the same fp32 arithmetic on every CPU: the tests compare runs exactly
                **optim,
            },
        },
    }
