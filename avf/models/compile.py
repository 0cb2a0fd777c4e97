"""``torch.compile`` for the AVF-MAE++ models with an eager fallback (the ``model.compile`` switch).

:func:`compile_model` returns ``torch.compile(model)`` (an ``OptimizedModule``: attribute access, DDP's
``no_sync`` and ``avf.train.checkpoint.unwrap`` keep working) with dynamo's ``suppress_errors`` on, so a
frame that fails to compile (no C++ compiler for the CPU backend, an unsupported op) is logged and runs
eagerly instead of stopping training. When ``torch.compile`` itself is unavailable the model is returned
unchanged.
"""

from __future__ import annotations

import logging

from torch import nn

log = logging.getLogger(__name__)

__all__ = ["compile_model"]


def compile_model(model: nn.Module, mode: str | None = None) -> nn.Module:
    """``torch.compile(model, mode=mode, dynamic=False)`` whose failing frames fall back to eager.

    Shapes are static in training (fixed token counts per step), and both encoders run the same block
    code at different token counts: ``dynamic=False`` specialises per shape instead of switching to
    symbolic shapes on the second encoder (which the CPU backend failed to lower in torch 2.11).
    """
    try:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        return torch.compile(model, mode=mode, dynamic=False)
    except Exception as exc:  # torch.compile missing or refusing this platform: stay eager
        log.warning("torch.compile unavailable (%s); running eagerly", exc)
        return model
