"""Iterative Audio-Visual Correlation Learning (IAVCL), spec section 5.

``IAVCL(V, A, F)`` runs ``depth`` DiER units (dense intra/inter-modal interaction with sigmoid gates),
refines the global token(s) ``F`` after each unit with one shared ER layer, then fuses the per-unit
outputs with the HAFE layer. Inputs and outputs keep their shapes: ``V [B, Nv, C]``, ``A [B, Na, C]``;
``F [B, M, 2C]`` (M = 1 in pretraining, K = 8 region pairs in fine-tuning).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from avf.models.layers import (
    Attention,
    CrossAttention,
    LayerNorm,
    attention,
    drop_path_or_identity,
    ln_mlp,
    make_mlp,
)


class DiERBranch(nn.Module):
    """One modality's half of a DiER unit (28C^2 + 30C parameters).

    ``x_sa = x + SA(LN x)`` then ``+ MLP``; ``x_ca = x + CA(LN x, LN ctx)`` then ``+ MLP``;
    ``out = LN(sigmoid(W1 [x_sa; x_ca]) * x_sa + sigmoid(W2 [x_sa; x_ca]) * x_ca)``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.sa_norm = LayerNorm(dim)
        self.sa = Attention(dim, num_heads)
        self.sa_mlp_norm = LayerNorm(dim)
        self.sa_mlp = make_mlp(dim, mlp_ratio)
        self.ca_norm = LayerNorm(dim)
        self.ca_ctx_norm = LayerNorm(dim)
        self.ca = CrossAttention(dim, num_heads)
        self.ca_mlp_norm = LayerNorm(dim)
        self.ca_mlp = make_mlp(dim, mlp_ratio)
        self.gate1 = nn.Linear(2 * dim, dim)
        self.gate2 = nn.Linear(2 * dim, dim)
        self.out_norm = LayerNorm(dim)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """``x [B, N, C]``, ``context [B, M, C]`` (the other modality) -> ``[B, N, C]``."""
        dp = self.drop_path
        x_sa = x + dp(self.sa(x, self.sa_norm))
        x_sa = x_sa + dp(ln_mlp(x_sa, self.sa_mlp_norm, self.sa_mlp))
        x_ca = x + dp(self.ca(x, context, self.ca_norm, self.ca_ctx_norm))
        x_ca = x_ca + dp(ln_mlp(x_ca, self.ca_mlp_norm, self.ca_mlp))
        both = torch.cat((x_sa, x_ca), dim=-1)
        return self.out_norm(torch.sigmoid(self.gate1(both)) * x_sa + torch.sigmoid(self.gate2(both)) * x_ca)


class DiERUnit(nn.Module):
    """Dense interaction unit: both branches read the unit's inputs (parallel update)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.video = DiERBranch(dim, num_heads, mlp_ratio, drop_path)
        self.audio = DiERBranch(dim, num_heads, mlp_ratio, drop_path)

    def forward(self, v: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
        return self.video(v, a), self.audio(a, v)


class ERLayer(nn.Module):
    """Refines the global token(s) from both modalities (4C^2 + 9C + 2 parameters).

    ``F = Linear_{2C->C}(F)`` when F is 2C wide (first iteration); ``R_m = PReLU(BN(Conv1x1(softmax(F M^T /
    sqrt C) M)))`` for m in (audio, video); ``F = LN(F + R_a + R_v)``. Single-head attention without
    projections; BatchNorm1d over batch x tokens; the LN keeps PyTorch's default eps 1e-5 (official quirk).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(2 * dim, dim)
        self.audio_refine = self._refine(dim)
        self.video_refine = self._refine(dim)
        self.norm = nn.LayerNorm(dim)

    @staticmethod
    def _refine(dim: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv1d(dim, dim, 1), nn.BatchNorm1d(dim), nn.PReLU())

    def forward(self, global_tokens: Tensor, v: Tensor, a: Tensor) -> Tensor:
        """``global_tokens [B, M, 2C or C]``, ``v [B, Nv, C]``, ``a [B, Na, C]`` -> ``[B, M, C]``."""
        if self.training and global_tokens.shape[0] * global_tokens.shape[1] < 2:
            raise ValueError(
                "the ER layer's BatchNorm needs at least 2 global tokens per batch in training mode: "
                "pretrain with at least 2 clips per device (or call model.eval())"
            )
        f = self.proj(global_tokens) if global_tokens.shape[-1] == 2 * self.dim else global_tokens
        q = f.unsqueeze(1)
        r_a = attention(q, a.unsqueeze(1), a.unsqueeze(1)).squeeze(1)
        r_v = attention(q, v.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        r_a = self.audio_refine(r_a.transpose(1, 2)).transpose(1, 2)
        r_v = self.video_refine(r_v.transpose(1, 2)).transpose(1, 2)
        return self.norm(f + r_a + r_v)


class HAFEBranch(nn.Module):
    """Per-modality part of HAFE: attention across depth stages, sigmoid stage weights, query LN, MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.stage_norm = LayerNorm(dim)
        self.stage_attn = Attention(dim, num_heads)
        self.stage_mlp_norm = LayerNorm(dim)
        self.stage_mlp = make_mlp(dim, mlp_ratio)
        self.select = nn.Linear(dim, 1)
        self.q_norm = LayerNorm(dim)
        self.mlp_norm = LayerNorm(dim)
        self.mlp = make_mlp(dim, mlp_ratio)

    def fuse_stages(self, stages: Tensor, drop_path: nn.Module) -> Tensor:
        """``stages [B, N, S, C]`` (S DiER outputs) -> ``[B, N, C]`` (sigmoid-weighted, unnormalized sum)."""
        b, n, s, c = stages.shape
        h = stages.reshape(b * n, s, c)
        h = h + drop_path(self.stage_attn(h, self.stage_norm))
        h = h + drop_path(ln_mlp(h, self.stage_mlp_norm, self.stage_mlp))
        weights = torch.sigmoid(self.select(h))
        return (h * weights).sum(dim=1).view(b, n, c)


class HAFE(nn.Module):
    """Hierarchical fusion of the DiER stages (44C^2 + 49C + 2 parameters).

    The global-context cross-attention and its context LN are shared by both modalities (official design).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.video = HAFEBranch(dim, num_heads, mlp_ratio)
        self.audio = HAFEBranch(dim, num_heads, mlp_ratio)
        self.ctx_norm = LayerNorm(dim)
        self.ctx_attn = CrossAttention(dim, num_heads)
        self.drop_path = drop_path_or_identity(drop_path)

    def _branch(self, branch: HAFEBranch, stages: Tensor, ctx: Tensor) -> Tensor:
        x = branch.fuse_stages(stages, self.drop_path)
        x = x + self.drop_path(self.ctx_attn(x, ctx, branch.q_norm))
        return x + self.drop_path(ln_mlp(x, branch.mlp_norm, branch.mlp))

    def forward(self, v_stages: Tensor, a_stages: Tensor, global_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``v_stages [B, Nv, S, C]``, ``a_stages [B, Na, S, C]``, ``global_tokens [B, M, C]``."""
        ctx = self.ctx_norm(global_tokens)
        return self._branch(self.video, v_stages, ctx), self._branch(self.audio, a_stages, ctx)


class IAVCL(nn.Module):
    """The full correlation module: ``depth`` DiER units + shared ER layer + HAFE (160C^2+178C+4 at depth 2).

    DiER unit i uses drop path ``linspace(0, drop_path, depth)[i]``; HAFE uses ``0.5 * drop_path``.
    """

    def __init__(
        self, dim: int, num_heads: int, depth: int = 2, mlp_ratio: float = 4.0, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()
        self.units = nn.ModuleList(DiERUnit(dim, num_heads, mlp_ratio, r) for r in rates)
        self.er = ERLayer(dim)
        self.hafe = HAFE(dim, num_heads, mlp_ratio, 0.5 * drop_path)

    def forward(self, v: Tensor, a: Tensor, global_tokens: Tensor) -> tuple[Tensor, Tensor]:
        """``v [B, Nv, C]``, ``a [B, Na, C]``, ``global_tokens [B, M, 2C]``; returns the same v/a shapes."""
        v_stages, a_stages = [], []
        f = global_tokens
        for unit in self.units:
            v, a = unit(v, a)
            f = self.er(f, v, a)
            v_stages.append(v)
            a_stages.append(a)
        return self.hafe(torch.stack(v_stages, dim=2), torch.stack(a_stages, dim=2), f)
