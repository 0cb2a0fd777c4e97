"""Local-global (LG) encoder block with K learnable region tokens (spec section 4.2).

A sample is held as ``x [B, K, 1 + n, C]``: K regions, each its region token followed by its n local
tokens. The five steps (pre-LN, residual, each with its own LayerNorm):

1. intra-region self-attention over ``[s_k; X_k]`` (B*K sequences of length 1 + n);
2. inter-region self-attention over the K region tokens S;
3. local -> global cross-attention: every local token of the sample reads S (after step 2);
4. global <- local cross-attention: S (after step 2) reads every local token (after step 3); this is the
   AVF-MAE++ "holistic" step and can be switched off with ``fourth_attn=False`` (then, when only the region
   tokens are wanted, step 3 has no reader and is skipped);
5. MLP on every token.

Stochastic depth follows the official code: steps 1 and 5 drop per region sequence, steps 2-4 per sample.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from avf.models.layers import (
    Attention,
    CrossAttention,
    DropPath,
    LayerNorm,
    drop_path_or_identity,
    ln_mlp,
    ln_mlp_rows,
    make_mlp,
)

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

        Regrouping saves no copies for backward: region and local tokens are strided views of the step-1
        output, and every LayerNorm is fused into the projection it feeds. Step 5 is one MLP call over the
        rows of both (``ln_mlp_rows``: it concatenates them for its matmuls and saves the inputs themselves,
        not the concatenation; one shared drop-path draw per region sequence). Where the local tokens far
        outnumber the K region tokens (``FOLD_MIN_RATIO``: every block of base fine-tuning), steps 3 and 4 do
        not project the local tokens: the region tokens' projections are folded into the attention
        (``CrossAttention.forward_few_keys`` / ``forward_few_queries``). Per block that saves
        ``3 C (C - (H - 1) K)`` multiply-adds per local token, less ``3 K C^2`` per sample, and 3 C-wide saved
        tensors per local token.
        """
        b, k, s, c = x.shape
        n = s - 1
        seq = x.view(b * k, s, c)
        seq = seq + self.drop_path(self.intra_attn(seq, self.intra_norm))
        x = seq.view(b, k, s, c)
        regions, local = x[:, :, 0], x[:, :, 1:]
        regions = regions + self.drop_path(self.inter_attn(regions, self.inter_norm))
        if output == "regions" and not self.fourth_attn:
            return self._mlp(regions.reshape(b * k, 1, c)).view(b, k, c)
        update = self.local_attn.forward_few_keys(local, regions, self.local_norm, self.local_ctx_norm)
        local = local + self.drop_path(update).view(b, k, n, c)  # new contiguous tensor, no copy of x
        if self.fourth_attn:
            ctx = local.view(b, k * n, c)
            regions = regions + self.drop_path(
                self.region_attn.forward_few_queries(regions, ctx, self.region_norm, self.region_ctx_norm)
            )
        if output == "regions":
            return self._mlp(regions.reshape(b * k, 1, c)).view(b, k, c)
        keep = self._keep_mask(b * k, x)
        up_regions, up_local = ln_mlp_rows((regions, local), self.mlp_norm, self.mlp)
        if keep is not None:
            up_regions, up_local = up_regions * keep.view(b, k, 1), up_local * keep.view(b, k, 1, 1)
        return torch.cat(((regions + up_regions).unsqueeze(2), local + up_local), dim=2)

    def local_update_parameters(self) -> nn.ModuleList:
        """The modules of step 3 (local tokens read the regions)."""
        return nn.ModuleList([self.local_norm, self.local_ctx_norm, self.local_attn])

    def _keep_mask(self, rows: int, like: Tensor) -> Tensor | None:
        """Drop-path multiplier per region sequence, drawn exactly as ``DropPath`` on ``[B*K, S, C]``."""
        dp = self.drop_path
        if not isinstance(dp, DropPath) or not self.training or dp.drop_prob == 0.0:
            return None
        keep = 1 - dp.drop_prob
        mask = like.new_empty((rows, 1, 1)).bernoulli_(keep)
        return mask.div_(keep) if keep > 0.0 and dp.scale_by_keep else mask

    def _mlp(self, x: Tensor) -> Tensor:
        """Step 5 on ``[B*K, L, C]``; drop path per region sequence."""
        return x + self.drop_path(ln_mlp(x, self.mlp_norm, self.mlp))
