"""Stage 2's model: one shared fine-tuning backbone and one head per labelled dataset.

Label spaces are never merged: CREMA-D's 6 classes, MAFW's 11 and Werewolf-XL's regression targets each
get their own ``LayerNorm + Linear`` head over the pooled ``[B, 2C]`` features. The backbone is the
fine-tuning model built without head and ``fc_norm`` (``avf.models.factory.multihead_model``), so stage 3
takes it over key for key (:func:`split_multihead`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["MultiHeadModel", "split_multihead"]


class MultiHeadModel(nn.Module):
    """Stage 2: one shared backbone (``forward_features -> [B,2C]``) and one head per dataset."""

    def __init__(self, backbone: nn.Module, heads: dict[str, int]) -> None:
        super().__init__()
        self.backbone = backbone
        dim = backbone.num_features
        self.heads = nn.ModuleDict({n: nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, k)) for n, k in heads.items()})

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(video, audio)

    def no_weight_decay(self) -> set[str]:
        return {f"backbone.{n}" for n in getattr(self.backbone, "no_weight_decay", lambda: set())()}

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        inner = self.backbone.group_matcher(coarse)

        def prefix(rule: Any) -> Any:
            if isinstance(rule, str):
                return rule.replace("^", "^backbone\\.", 1) if rule.startswith("^") else "backbone\\." + rule
            if isinstance(rule, (list, tuple)):
                return type(rule)(
                    prefix(r) if i == 0 or isinstance(r, (list, tuple)) else r for i, r in enumerate(rule)
                )
            return rule

        return {k: prefix(v) for k, v in inner.items()}


def split_multihead(weights: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A :class:`MultiHeadModel` state dict as (backbone in the fine-tuning layout, the per-dataset heads)."""
    backbone = {k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")}
    heads = {k: v for k, v in weights.items() if k.startswith("heads.")}
    other = set(weights) - {f"backbone.{k}" for k in backbone} - set(heads)
    if other:
        raise ValueError(f"not a multi-head state dict: unexpected keys {sorted(other)[:3]}")
    return backbone, heads
