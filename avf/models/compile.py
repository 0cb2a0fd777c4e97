"""``torch.compile`` for the AVF-MAE++ models with an eager fallback (the ``model.compile`` switch).

:func:`compile_model` compiles *regionally*: every transformer block (LG, ViT, decoder skip, DiER and
HAFE branches) is compiled in place with ``nn.Module.compile``, so the ten identical blocks of an
encoder share one compiled graph per token shape (minutes of compilation instead of tens on a CPU),
the module tree and its state-dict keys do not change, and the glue between blocks (masking, gathers,
losses) stays eager. Dynamo's ``suppress_errors`` is switched on: a block that fails to compile (no C++
compiler for the CPU backend, an unsupported op) is logged and runs eagerly instead of stopping training.
When ``torch.compile`` is unavailable the model is returned unchanged.
"""

from __future__ import annotations

import logging

from torch import nn

log = logging.getLogger(__name__)

__all__ = ["compile_model"]


def _regions() -> tuple[type[nn.Module], ...]:
    from avf.models.decoders import SkipBlock
    from avf.models.iavcl import DiERBranch, HAFEBranch
    from avf.models.layers import Block
    from avf.models.lg_block import LGBlock

    return (LGBlock, Block, SkipBlock, DiERBranch, HAFEBranch)


def compile_model(model: nn.Module, mode: str | None = None) -> nn.Module:
    """Compile ``model``'s blocks in place (``dynamic=False``: token counts are fixed per step); returns
    ``model``. Models without such blocks are compiled whole. See the module doc for the fallback."""
    try:
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        blocks = [m for m in model.modules() if isinstance(m, _regions())]
        if not blocks:
            return torch.compile(model, mode=mode, dynamic=False)
        for m in blocks:
            m.compile(mode=mode, dynamic=False)
        return model
    except Exception as exc:  # torch.compile missing or refusing this platform: stay eager
        log.warning("torch.compile unavailable (%s); running eagerly", exc)
        return model
