"""Pretraining decoders with hierarchical skip connections (spec section 6.1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from avf.models.layers import (
    Attention,
    Block,
    CrossAttention,
    LayerNorm,
    drop_path_or_identity,
    ln_linear,
    ln_mlp,
    make_mlp,
    sinusoid_table,
)


class SkipBlock(nn.Module):
    """Cross-skip block: ``x + CA(LN x, LN skip)``, ``x + SA(LN x)``, ``x + MLP(LN x)`` (16D^2 + 19D)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.cross_norm = LayerNorm(dim)
        self.cross_ctx_norm = LayerNorm(dim)
        self.cross_attn = CrossAttention(dim, num_heads)
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = make_mlp(dim, mlp_ratio)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """``x [B, N, D]``, ``skip [B, n, D]`` -> ``[B, N, D]``."""
        x = x + self.drop_path(self.cross_attn(x, skip, self.cross_norm, self.cross_ctx_norm))
        x = x + self.drop_path(self.attn(x, self.norm1))
        return x + self.drop_path(ln_mlp(x, self.norm2, self.mlp))


class Decoder(nn.Module):
    """One modality's decoder: ``embed`` (bias-free C -> D, shared with the skips), mask token, one plain
    block, ``depth - 1`` skip blocks reading encoder layers deepest-first, LN and a linear head.

    ``out_dim`` is the reconstruction size per token (1536 for 2x16x16x3 tubelets, 256 for 16x16 fbank).
    """

    def __init__(
        self,
        enc_dim: int,
        dim: int,
        depth: int,
        num_heads: int,
        num_patches: int,
        out_dim: int,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError("decoder depth must be at least 1")
        self.embed = nn.Linear(enc_dim, dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList([Block(dim, num_heads, mlp_ratio)])
        self.blocks.extend(SkipBlock(dim, num_heads, mlp_ratio) for _ in range(depth - 1))
        self.norm = LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)
        self.register_buffer("pos_embed", sinusoid_table(num_patches, dim), persistent=False)
        self.grad_checkpointing = False

    @property
    def num_skips(self) -> int:
        return len(self.blocks) - 1

    def forward(self, tokens: Tensor, skips: Sequence[Tensor], vis_index: Tensor, dec_index: Tensor) -> Tensor:
        """Reconstruct the decoder-kept positions.

        Args:
            tokens: fused visible tokens ``[B, n, C]`` in the order of ``vis_index``.
            skips: ``num_skips`` intermediate encoder features ``[B, n, C]``, shallow to deep.
            vis_index: ``[B, n]`` flat positions of the visible tokens.
            dec_index: ``[B, m]`` flat positions to reconstruct (decoder mask 0), ascending.

        Returns:
            ``[B, m, out_dim]`` predictions in the order of ``dec_index``.
        """
        if len(skips) != self.num_skips:
            raise ValueError(f"decoder expects {self.num_skips} skip features, got {len(skips)}")
        x = self.embed(tokens)
        pos_vis = self.pos_embed[vis_index].to(x.dtype)
        mask_tokens = self.mask_token.to(x.dtype) + self.pos_embed[dec_index].to(x.dtype)
        x = torch.cat((x + pos_vis, mask_tokens), dim=1)
        ckpt = self.grad_checkpointing and torch.is_grad_enabled()
        x = checkpoint(self.blocks[0], x, use_reentrant=False) if ckpt else self.blocks[0](x)
        for i, blk in enumerate(self.blocks[1:], start=1):
            skip = self.embed(skips[-i]) + pos_vis
            x = checkpoint(blk, x, skip, use_reentrant=False) if ckpt else blk(x, skip)
        return ln_linear(x[:, -dec_index.shape[1] :], self.norm, self.head.weight, self.head.bias)
