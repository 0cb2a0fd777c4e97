"""Building blocks shared by the AVF-MAE++ encoders, fusion module and decoders.

Attention follows BEiT / VideoMAE: a bias on q and v but none on k. Every attention runs through
``torch.nn.functional.scaled_dot_product_attention``. Layer norms use eps 1e-6 (spec section 1.1).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import Tensor, nn

__all__ = [
    "LN_EPS",
    "Attention",
    "AudioPatchEmbed",
    "Block",
    "CrossAttention",
    "DropPath",
    "LayerNorm",
    "Mlp",
    "TubeletEmbed",
    "default_device",
    "drop_path_or_identity",
    "gather_audio_patches",
    "gather_video_patches",
    "make_mlp",
    "sinusoid_table",
]

LN_EPS = 1e-6
LayerNorm = partial(nn.LayerNorm, eps=LN_EPS)


def make_mlp(dim: int, mlp_ratio: float = 4.0) -> Mlp:
    """timm ``Mlp`` (fc1 -> GELU -> fc2) with hidden width ``dim * mlp_ratio``."""
    return Mlp(dim, int(dim * mlp_ratio))


def drop_path_or_identity(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0.0 else nn.Identity()


def sinusoid_table(n_position: int, dim: int) -> Tensor:
    """Fixed 1-D sinusoid table ``[n_position, dim]`` (sin on even, cos on odd channels), float32.

    Computed in float64 on the CPU, then moved to the current default device.
    """
    pos = torch.arange(n_position, dtype=torch.float64, device="cpu")[:, None]
    channel = torch.arange(dim, device="cpu")
    angle = pos * torch.pow(10000.0, -2.0 * (channel // 2).double() / dim)
    table = torch.where(channel % 2 == 0, torch.sin(angle), torch.cos(angle))
    return table.float().to(default_device())


def default_device() -> torch.device:
    """Device that factory functions use right now (honours ``with torch.device(...)`` contexts)."""
    return torch.empty(0).device


def _split_heads(x: Tensor, num_heads: int) -> Tensor:
    """``[N, L, H*d] -> [N, H, L, d]``."""
    n, length, _ = x.shape
    return x.view(n, length, num_heads, -1).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    """``[N, H, L, d] -> [N, L, H*d]``."""
    n, _, length, _ = x.shape
    return x.transpose(1, 2).reshape(n, length, -1)


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection, q/v bias and no k bias.

    Parameters: ``qkv.weight [3C, C]``, ``q_bias [C]``, ``v_bias [C]``, ``proj`` (4C^2 + 3C in all).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """``x [N, L, C] -> [N, L, C]``."""
        n, length, _ = x.shape
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias).view(n, length, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from ``x``, keys/values from ``context``.

    Parameters: ``q.weight [C, C]``, ``kv.weight [2C, C]``, ``q_bias``, ``v_bias``, ``proj`` (4C^2 + 3C).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, dim * 2, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("k_bias", torch.zeros(dim), persistent=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """``x [N, Lq, C]``, ``context [N, Lk, C]`` -> ``[N, Lq, C]``."""
        n, lk, _ = context.shape
        q = _split_heads(F.linear(x, self.q.weight, self.q_bias), self.num_heads)
        kv = F.linear(context, self.kv.weight, torch.cat((self.k_bias, self.v_bias)))
        k, v = kv.view(n, lk, 2, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        return self.proj(_merge_heads(F.scaled_dot_product_attention(q, k, v)))


class Block(nn.Module):
    """Pre-LN Transformer block: ``x + SA(LN(x))`` then ``x + MLP(LN(x))`` (12C^2 + 12C parameters)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = make_mlp(dim, mlp_ratio)
        self.drop_path = drop_path_or_identity(drop_path)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def gather_video_patches(video: Tensor, index: Tensor, grid: tuple[int, int, int]) -> Tensor:
    """Cut tubelets at flat token positions ``index`` without patchifying the rest of the clip.

    Args:
        video: ``[B, 3, T, H, W]``.
        index: ``[B, n]`` flat (t, h, w) token positions on ``grid``.
        grid: token grid ``(t, h, w)``.

    Returns:
        ``[B, n, 3, pt, ph, pw]`` (the Conv3d weight layout).
    """
    b, c, t, h, w = video.shape
    gt, gh, gw = grid
    pt, ph, pw = t // gt, h // gh, w // gw
    view = video.view(b, c, gt, pt, gh, ph, gw, pw).permute(0, 2, 4, 6, 1, 3, 5, 7)
    it = torch.div(index, gh * gw, rounding_mode="floor")
    ih = torch.div(index, gw, rounding_mode="floor") % gh
    iw = index % gw
    rows = torch.arange(b, device=video.device)[:, None]
    return view[rows, it, ih, iw]


def gather_audio_patches(audio: Tensor, index: Tensor, grid: tuple[int, int]) -> Tensor:
    """Cut fbank patches at flat (time, freq) token positions ``index``.

    Args:
        audio: ``[B, 1, T, F]``.
        index: ``[B, n]`` flat token positions on ``grid``.
        grid: token grid ``(time, freq)``.

    Returns:
        ``[B, n, 1, pt, pf]`` (the Conv2d weight layout).
    """
    b, c, t, f = audio.shape
    gt, gf = grid
    pt, pf = t // gt, f // gf
    view = audio.view(b, c, gt, pt, gf, pf).permute(0, 2, 4, 1, 3, 5)
    rows = torch.arange(b, device=audio.device)[:, None]
    return view[rows, torch.div(index, gf, rounding_mode="floor"), index % gf]


class TubeletEmbed(nn.Module):
    """Conv3d tubelet embedding (kernel = stride = (2, 16, 16)) applied to selected tokens only.

    The convolution is evaluated as a linear map on gathered tubelets, so hidden patches are never
    embedded. Parameters are those of ``nn.Conv3d(3, C, (2, 16, 16))``.
    """

    def __init__(
        self,
        dim: int,
        in_chans: int = 3,
        num_frames: int = 16,
        img_size: int = 160,
        patch_size: int = 16,
        tubelet: int = 2,
    ) -> None:
        super().__init__()
        self.grid = (num_frames // tubelet, img_size // patch_size, img_size // patch_size)
        self.num_patches = math.prod(self.grid)
        self.proj = nn.Conv3d(in_chans, dim, (tubelet, patch_size, patch_size), (tubelet, patch_size, patch_size))

    def forward(self, video: Tensor, index: Tensor) -> Tensor:
        """``video [B, 3, T, H, W]``, ``index [B, n]`` -> tokens ``[B, n, C]``."""
        patches = gather_video_patches(video, index, self.grid).flatten(2)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)


class AudioPatchEmbed(nn.Module):
    """Conv2d 16x16 / stride 16 fbank patch embedding, applied to selected tokens only."""

    def __init__(self, dim: int, in_chans: int = 1, input_size: tuple[int, int] = (256, 128), patch: int = 16):
        super().__init__()
        self.grid = (input_size[0] // patch, input_size[1] // patch)
        self.num_patches = math.prod(self.grid)
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)

    def forward(self, audio: Tensor, index: Tensor) -> Tensor:
        """``audio [B, 1, T, F]``, ``index [B, n]`` -> tokens ``[B, n, C]``."""
        patches = gather_audio_patches(audio, index, self.grid).flatten(2)
        return F.linear(patches, self.proj.weight.flatten(1), self.proj.bias)
