"""Local-global (LG) encoder block with K learnable region tokens (spec section 4.2).

A sample is held as ``x [B, K, 1 + n, C]``: K regions, each its region token followed by its n local
tokens. The five steps (pre-LN, residual, each with its own LayerNorm):

1. intra-region self-attention over ``[s_k; X_k]`` (B*K sequences of length 1 + n);
2. inter-region self-attention over the K region tokens S;
3. local -> global cross-attention: every local token of the sample reads S (after step 2);
4. global <- local cross-attention: S (after step 2) reads every local token (after step 3); this is the
   AVF-MAE++ "holistic" step and can be switched off with ``fourth_attn=False``;
5. MLP on every token.

Stochastic depth follows the official code: steps 1 and 5 drop per region sequence, steps 2-4 per sample.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from avf.models.layers import Attention, CrossAttention, LayerNorm, drop_path_or_identity, make_mlp

Output = Literal["all", "regions"]


class LGBlock(nn.Module):
    """One LG block: 24C^2 + 31C parameters with the fourth step, 20C^2 + 24C without it."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        fourth_attn: bool = True,
    ) -> None:
        super().__init__()
        self.fourth_attn = fourth_attn
        self.intra_norm = LayerNorm(dim)
        self.intra_attn = Attention(dim, num_heads)
        self.inter_norm = LayerNorm(dim)
        self.inter_attn = Attention(dim, num_heads)
        self.local_norm = LayerNorm(dim)
        self.local_ctx_norm = LayerNorm(dim)
        self.local_attn = CrossAttention(dim, num_heads)
        if fourth_attn:
            self.region_norm = LayerNorm(dim)
            self.region_ctx_norm = LayerNorm(dim)
            self.region_attn = CrossAttention(dim, num_heads)
        self.mlp_norm = LayerNorm(dim)
        self.mlp = make_mlp(dim, mlp_ratio)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor, output: Output = "all") -> Tensor:
        """Run the five steps.

        Args:
            x: ``[B, K, 1 + n, C]``.
            output: ``"all"`` returns ``[B, K, 1 + n, C]``; ``"regions"`` returns only the region tokens
                ``[B, K, C]`` and skips the local-token MLP (the last fine-tuning block: nothing reads
                its local tokens). Pretraining always runs the full block so that every parameter
                takes part in the graph (DDP without ``find_unused_parameters``).
        """
        b, k, s, c = x.shape
        seq = x.view(b * k, s, c)
        seq = seq + self.drop_path(self.intra_attn(self.intra_norm(seq)))
        x = seq.view(b, k, s, c)
        regions, local = x[:, :, 0], x[:, :, 1:]
        regions = regions + self.drop_path(self.inter_attn(self.inter_norm(regions)))
        n = s - 1
        update = self.local_attn(self.local_norm(local).view(b, k * n, c), self.local_ctx_norm(regions))
        local = local + self.drop_path(update).view(b, k, n, c)  # new contiguous tensor, no copy of x
        if self.fourth_attn:
            ctx = self.region_ctx_norm(local).view(b, k * n, c)
            regions = regions + self.drop_path(self.region_attn(self.region_norm(regions), ctx))
        if output == "regions":
            return self._mlp(regions.reshape(b * k, 1, c)).view(b, k, c)
        x = torch.cat((regions.unsqueeze(2), local), dim=2)
        return self._mlp(x.view(b * k, s, c)).view(b, k, s, c)

    def _mlp(self, x: Tensor) -> Tensor:
        """Step 5 on ``[B*K, L, C]``; drop path per region sequence."""
        return x + self.drop_path(self.mlp(self.mlp_norm(x)))
