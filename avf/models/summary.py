"""Parameter and FLOP summaries of the registered models (used by ``avf model summary``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import torch
from torch import nn

__all__ = ["count_flops", "forward_flops", "parameter_table"]


def parameter_table(model: nn.Module, depth: int = 1) -> list[tuple[str, int]]:
    """Parameters per module prefix of ``depth`` name components (e.g. ``video_encoder``), model order."""
    counts: Counter[str] = Counter()
    for name, p in model.named_parameters():
        counts[".".join(name.split(".")[:depth])] += p.numel()
    return list(counts.items())


def count_flops(run: Callable[[], object], executed: bool = False) -> int:
    """FLOPs (2 x MAC, matmul/conv/SDPA only) of ``run()`` without autograd: of the models as defined (the plain
    module graph, ``fused_ops(False)``), or with ``executed`` of the graph avf runs (``fused_ops(True)``: the
    folded cross-attention computes the same function with fewer multiplies). Call it outside
    :func:`avf.models.packed_linear.packed_linears`: the oneDNN products there have no FLOP formula."""
    from torch.utils.flop_counter import FlopCounterMode

    from avf.models.layers import fused_ops

    with FlopCounterMode(display=False) as counter, torch.no_grad(), fused_ops(executed):
        run()
    return int(counter.get_total_flops())


def forward_flops(model: nn.Module, batch_size: int = 1, executed: bool = False) -> int:
    """:func:`count_flops` of one forward pass in eval mode (works on the meta device).

    Pretraining models use the default dual masks (the same count in train mode); fine-tuning models see
    every token.
    """
    from avf.config.model import MaskingConfig
    from avf.models.avf_mae_pp import AVFMAEPretrain
    from avf.models.masking import sample_masks

    device = next(model.parameters()).device
    video = torch.zeros(batch_size, 3, 16, 160, 160, device=device)
    audio = torch.zeros(batch_size, 1, 256, 128, device=device)
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, AVFMAEPretrain):
            masks = sample_masks(batch_size, MaskingConfig(), torch.Generator().manual_seed(0))
            return count_flops(lambda: model(video, audio, masks), executed)
        return count_flops(lambda: model(video, audio), executed)
    finally:
        model.train(was_training)
