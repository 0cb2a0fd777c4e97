"""Video and audio encoders: patch embedding + fixed sinusoid positions + K region tokens + LG blocks.

Tokens are always processed grouped by LG region: ``index [B, K*m]`` lists the flat token positions of
region 0, then region 1, ... (``avf.models.masking.visible_index`` builds it for the visible tokens in
pretraining; fine-tuning uses every token in region order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from avf.geometry import AUDIO_GRID, AUDIO_REGION, VIDEO_GRID, VIDEO_REGION
from avf.models.layers import AudioPatchEmbed, LayerNorm, TubeletEmbed, default_device, sinusoid_table
from avf.models.lg_block import LGBlock, Output
from avf.models.masking import region_ids


class LGEncoder(nn.Module):
    """One modality's encoder (patch embed, K region tokens, ``depth`` LG blocks, final LN).

    Parameters: patch embed + ``K*C`` + ``depth`` x LG block + ``2C``. The sinusoid table ``pos_embed
    [N, C]`` and the region order ``region_order [N]`` are non-persistent buffers.
    """

    def __init__(
        self,
        patch_embed: TubeletEmbed | AudioPatchEmbed,
        grid: Sequence[int],
        region: Sequence[int],
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        drop_path: float = 0.0,
        fourth_attn: bool = True,
    ) -> None:
        super().__init__()
        self.patch_embed = patch_embed
        ids = region_ids(grid, region)
        self.num_regions = int(ids.max()) + 1
        self.num_patches = ids.numel()
        self.dim = dim
        self.region_tokens = nn.Parameter(torch.zeros(self.num_regions, dim))
        rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(LGBlock(dim, num_heads, mlp_ratio, r, fourth_attn) for r in rates)
        self.norm = LayerNorm(dim)
        self.register_buffer("pos_embed", sinusoid_table(self.num_patches, dim), persistent=False)
        order = (ids * self.num_patches + torch.arange(self.num_patches, device="cpu")).argsort()
        self.register_buffer("region_order", order.to(default_device()), persistent=False)
        self.grad_checkpointing = False

    def _embed(self, x: Tensor, index: Tensor) -> Tensor:
        """Embed the tokens at ``index [B, K*m]`` and prepend region tokens: ``[B, K, 1 + m, C]``."""
        tokens = self.patch_embed(x, index)
        tokens = tokens + self.pos_embed[index].to(tokens.dtype)
        b = tokens.shape[0]
        tokens = tokens.view(b, self.num_regions, -1, self.dim)
        regions = self.region_tokens.to(tokens.dtype).expand(b, -1, -1).unsqueeze(2)
        return torch.cat((regions, tokens), dim=2)

    def _block(self, blk: nn.Module, x: Tensor, output: Output) -> Tensor:
        if self.grad_checkpointing and torch.is_grad_enabled():
            return checkpoint(blk, x, output, use_reentrant=False)
        return blk(x, output)

    def forward_visible(self, x: Tensor, index: Tensor, layers: Sequence[int]) -> tuple[Tensor, list[Tensor]]:
        """Pretraining pass over the visible tokens only.

        Args:
            x: the input clip (video ``[B, 3, 16, 160, 160]`` or fbank ``[B, 1, 256, 128]``).
            index: ``[B, K*m]`` visible positions grouped by region.
            layers: block indices whose normalized local tokens are also returned.

        Returns:
            ``LN(local tokens) [B, K*m, C]`` after the last block and the list of ``LN(local tokens)
            [B, K*m, C]`` after each block in ``layers`` (region tokens dropped everywhere).
        """
        h = self._embed(x, index)
        b = h.shape[0]
        last = len(self.blocks) - 1
        feats: dict[int, Tensor] = {}
        for i, blk in enumerate(self.blocks):
            h = self._block(blk, h, "all")
            if i in layers or i == last:
                feats[i] = self.norm(h[:, :, 1:].reshape(b, -1, self.dim))
        return feats[last], [feats[i] for i in layers]

    def forward_regions(self, x: Tensor) -> Tensor:
        """Fine-tuning pass over every token: ``LN(region tokens)`` after each block, ``[B, K, L, C]``."""
        index = self.region_order.expand(x.shape[0], -1)
        h = self._embed(x, index)
        last = len(self.blocks) - 1
        regions = []
        for i, blk in enumerate(self.blocks):
            if i == last:
                regions.append(self._block(blk, h, "regions"))
            else:
                h = self._block(blk, h, "all")
                regions.append(h[:, :, 0])
        return self.norm(torch.stack(regions, dim=2))


def video_encoder(dim: int, depth: int, num_heads: int, drop_path: float = 0.0, fourth_attn: bool = True) -> LGEncoder:
    """Video encoder over 16x160x160 clips: 800 tubelet tokens, regions (2, 5, 10) -> K = 8."""
    return LGEncoder(TubeletEmbed(dim), VIDEO_GRID, VIDEO_REGION, dim, depth, num_heads, 4.0, drop_path, fourth_attn)


def audio_encoder(dim: int, depth: int, num_heads: int, drop_path: float = 0.0, fourth_attn: bool = True) -> LGEncoder:
    """Audio encoder over 256x128 fbanks: 128 patch tokens (16 time x 8 freq), regions (4, 4) -> K = 8."""
    return LGEncoder(AudioPatchEmbed(dim), AUDIO_GRID, AUDIO_REGION, dim, depth, num_heads, 4.0, drop_path, fourth_attn)
