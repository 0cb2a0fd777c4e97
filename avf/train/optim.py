"""Optimizer and schedule: timm's AdamW factory (weight-decay exclusions, layer-wise lr decay) and cosine."""

from __future__ import annotations

import math

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from avf.config import OptimConfig


def scaled_lr(base_lr: float, effective_batch: int) -> float:
    """The linear scaling rule of the official recipes: ``lr = base_lr * batch / 256``."""
    return base_lr * effective_batch / 256


def build_optimizer(
    model: torch.nn.Module, cfg: OptimConfig, effective_batch: int, layer_decay: float | None = None
) -> torch.optim.Optimizer:
    """AdamW with no decay on 1-D params, biases and ``model.no_weight_decay()``; fused kernels.

    ``layer_decay`` (fine-tuning) scales each group's lr by ``decay ** (max_id - layer_id)`` using the
    model's ``group_matcher()`` (timm reads it), so the scheduler and layer decay compose.
    """
    return create_optimizer_v2(
        model,
        opt="adamw",
        lr=scaled_lr(cfg.base_lr, effective_batch),
        weight_decay=cfg.weight_decay,
        layer_decay=layer_decay if layer_decay is not None and layer_decay < 1.0 else None,
        betas=cfg.betas,
        eps=1e-8,
        # fused AdamW (one kernel per step, CPU and CUDA) is 4-9x faster than foreach on CPU
        # and has no step-sized temporaries; foreach where a parameter lives elsewhere.
        **({"fused": True} if _fused_ok(model) else {"foreach": True}),
    )


def _fused_ok(model: torch.nn.Module) -> bool:
    return all(p.device.type in ("cpu", "cuda") for p in model.parameters())


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: OptimConfig, effective_batch: int, steps_per_epoch: int
) -> CosineLRScheduler:
    """Per-step cosine from the scaled lr to the scaled ``min_lr`` after a linear warmup from 0."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = min(total - 1, math.ceil(cfg.warmup_epochs * steps_per_epoch)) if cfg.warmup_epochs else 0
    return CosineLRScheduler(
        optimizer,
        t_initial=max(1, total - warmup),
        lr_min=scaled_lr(cfg.min_lr, effective_batch),
        warmup_t=warmup,
        warmup_lr_init=0.0,
        warmup_prefix=True,
        t_in_epochs=False,
    )


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest group lr (the top layer's under layer decay)."""
    return max(g["lr"] for g in optimizer.param_groups)
