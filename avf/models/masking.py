"""Dual masking for AVF-MAE++ (spec section 3): encoder and decoder masks for video and audio.

Token grids (fixed by the input geometry): video 8x10x10 tubelets (t, h, w), audio 16x8 patches
(time, freq). LG regions: video (2, 5, 10) -> 8 regions of 100 tokens; audio (4, 4) -> 8 of 16.
Mask convention (as in MAE): 1 = hidden/removed, 0 = kept.

Which ratios can work with the LG grouping is checked when ``params.yaml`` is read
(``avf.config.model.check_masking``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from avf.geometry import AUDIO_GRID, AUDIO_REGION, NUM_REGIONS, VIDEO_GRID, VIDEO_REGION, hidden_tokens

if TYPE_CHECKING:
    from avf.config.model import MaskingConfig

__all__ = ["Masks", "kept_index", "region_ids", "running_cell_patterns", "sample_masks", "visible_index"]


# --------------------------------------------------------------------------------------------------
# Mask sampling
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Masks:
    """Encoder and decoder masks of a batch; ``True`` = hidden (encoder) / not reconstructed (decoder).

    Attributes:
        video_enc: ``[B, 800]`` bool, tube mask over the (t, h, w) token grid.
        audio_enc: ``[B, 128]`` bool, over the (time, freq) token grid.
        video_dec: ``[B, 800]`` bool, running-cell decoder mask (all ``False`` without decoder masking).
        audio_dec: ``[B, 128]`` bool, random decoder mask.
    """

    video_enc: Tensor
    audio_enc: Tensor
    video_dec: Tensor
    audio_dec: Tensor

    @property
    def batch_size(self) -> int:
        return int(self.video_enc.shape[0])

    def to(self, device: torch.device | str) -> Masks:
        return Masks(*(getattr(self, f.name).to(device) for f in fields(self)))

    @staticmethod
    def cat(items: Sequence[Masks]) -> Masks:
        """Concatenate per-sample (or per-shard) masks along the batch dimension."""

        return Masks(*(torch.cat([getattr(m, f.name) for m in items]) for f in fields(Masks)))


def region_ids(grid: Sequence[int], region: Sequence[int]) -> Tensor:
    """LG region index of every flat token position: ``[prod(grid)]`` long (CPU), regions row-major."""

    axes = [torch.arange(g, device="cpu") // r for g, r in zip(grid, region, strict=True)]
    counts = [g // r for g, r in zip(grid, region, strict=True)]
    ids = torch.zeros(grid, dtype=torch.long, device="cpu")
    stride = 1
    for dim in reversed(range(len(grid))):
        shape = [1] * len(grid)
        shape[dim] = grid[dim]
        ids = ids + axes[dim].view(shape) * stride
        stride *= counts[dim]
    return ids.flatten()


def _random_subset(shape: tuple[int, ...], k: int, generator: torch.Generator) -> Tensor:
    """Bool ``shape`` with exactly ``k`` ``True`` per row of the last dim, uniformly at random."""

    noise = torch.rand(shape, generator=generator, device=generator.device)
    return noise.argsort(dim=-1) < k


def _region_positions(grid: Sequence[int], region: Sequence[int]) -> Tensor:
    """``[K, region_size]``: flat positions of each region's tokens, in raster order."""

    ids = region_ids(grid, region)
    return torch.stack([torch.nonzero(ids == k).flatten() for k in range(int(ids.max()) + 1)])


def _balanced_subset(
    batch: int, grid: Sequence[int], region: Sequence[int], per_region: int, generator: torch.Generator
) -> Tensor:
    """Bool ``[B, prod(grid)]`` with exactly ``per_region`` ``True`` in every region."""

    positions = _region_positions(grid, region).to(generator.device)
    chosen = _random_subset((batch, *positions.shape), per_region, generator)
    out = torch.zeros(batch, math.prod(grid), dtype=torch.bool, device=generator.device)
    out[:, positions.flatten()] = chosen.flatten(1)
    return out


def running_cell_patterns(ratio: float) -> Tensor:
    """The 4 phase patterns of the running-cell decoder mask: ``[4, 800]`` bool (True = not decoded).

    A 2x2 cell holds ``round(4 * ratio)`` masked positions; it is tiled over each 10x10 slice and its
    pattern advances by one step per temporal slice.
    """
    t, h, w = VIDEO_GRID
    masked = round(4 * ratio)
    queue = torch.tensor([True] * masked + [False] * (4 - masked))
    patterns = []
    for phase in range(4):
        cells = [queue[(torch.arange(4) + phase + i + 1) % 4].view(2, 2) for i in range(t)]
        patterns.append(torch.stack([c.repeat(h // 2, w // 2) for c in cells]).flatten())
    return torch.stack(patterns)


def sample_masks(batch_size: int, cfg: MaskingConfig, generator: torch.Generator) -> Masks:
    """Draw the four masks for a batch from ``generator`` only (deterministic per generator state).

    Video: tube mask (one spatial pattern tiled over the 8 slices) hiding ``video_ratio`` of each slice;
    audio: random mask hiding ``audio_ratio``. With ``cfg.region_balanced`` every LG region keeps the same
    number of visible tokens (per spatial half of a slice for video, per 4x4 block for audio), so the
    visible tokens grouped per region are real spatial regions. Decoder masks: video running cell,
    audio random; all ``False`` when ``cfg.decoder_masking`` is off. Tensors live on ``generator.device``.
    """
    t, h, w = VIDEO_GRID
    per_frame = h * w
    n_audio = AUDIO_GRID[0] * AUDIO_GRID[1]
    vis_frame = per_frame - hidden_tokens(cfg.video_ratio, per_frame, "video_ratio")
    vis_audio = n_audio - hidden_tokens(cfg.audio_ratio, n_audio, "audio_ratio")
    if cfg.region_balanced:
        spatial_regions = (h // VIDEO_REGION[1]) * (w // VIDEO_REGION[2])
        frame_vis = _balanced_subset(batch_size, (h, w), VIDEO_REGION[1:], vis_frame // spatial_regions, generator)
        audio_vis = _balanced_subset(batch_size, AUDIO_GRID, AUDIO_REGION, vis_audio // NUM_REGIONS, generator)
    else:
        frame_vis = _random_subset((batch_size, per_frame), vis_frame, generator)
        audio_vis = _random_subset((batch_size, n_audio), vis_audio, generator)
    video_enc = (~frame_vis).repeat(1, t)
    audio_enc = ~audio_vis
    if cfg.decoder_masking:
        phase = torch.randint(0, 4, (batch_size,), generator=generator, device=generator.device)
        video_dec = running_cell_patterns(cfg.decoder_video_ratio).to(generator.device)[phase]
        hidden_da = hidden_tokens(cfg.decoder_audio_ratio, n_audio, "decoder_audio_ratio")
        audio_dec = _random_subset((batch_size, n_audio), hidden_da, generator)
    else:
        video_dec = torch.zeros_like(video_enc)
        audio_dec = torch.zeros_like(audio_enc)
    return Masks(video_enc=video_enc, audio_enc=audio_enc, video_dec=video_dec, audio_dec=audio_dec)


# --------------------------------------------------------------------------------------------------
# Token order for the encoders and decoders
# --------------------------------------------------------------------------------------------------


def _equal_count(mask: Tensor, what: str) -> int:
    counts = (~mask).sum(dim=1)
    n = int(counts[0])
    if not bool((counts == n).all()):
        raise ValueError(f"{what}: every sample of a batch must keep the same number of tokens, got {counts.tolist()}")
    return n


def kept_index(mask: Tensor) -> Tensor:
    """Positions where ``mask`` is ``False``, ascending: ``[B, N] bool -> [B, n] long``."""

    n = _equal_count(mask, "decoder mask")
    order = torch.arange(mask.shape[1], device=mask.device)
    return (mask.long() * mask.shape[1] + order).argsort(dim=1)[:, :n]


def visible_index(mask: Tensor, modality: str, region_balanced: bool) -> Tensor:
    """Visible token positions grouped into the K = 8 LG regions, region-major: ``[B, N] -> [B, K*m]``.

    ``region_balanced=True``: region k's m tokens are the visible tokens inside spatial region k (the mask
    must keep m tokens in every region, as ``sample_masks`` does with ``region_balanced``).
    ``region_balanced=False``: the official raster grouping, i.e. consecutive runs of the raster-ordered
    visible sequence (video: 2 runs per slice, slices paired in time; audio: runs of m tokens).
    """

    if modality not in ("video", "audio"):
        raise ValueError(f"modality must be 'video' or 'audio', got {modality!r}")
    video = modality == "video"
    grid, region = (VIDEO_GRID, VIDEO_REGION) if video else (AUDIO_GRID, AUDIO_REGION)
    n_total = math.prod(grid)
    if mask.shape[1] != n_total:
        raise ValueError(f"{modality} mask has {mask.shape[1]} positions, expected {n_total}")
    n = _equal_count(mask, f"{modality} encoder mask")
    if n == 0 or n % NUM_REGIONS:
        raise ValueError(f"{modality} mask keeps {n} tokens, not a positive multiple of {NUM_REGIONS} LG regions")
    order = torch.arange(n_total, device=mask.device)
    if region_balanced:
        ids = region_ids(grid, region).to(mask.device)
        counts = torch.zeros(mask.shape[0], NUM_REGIONS, dtype=torch.long, device=mask.device)
        counts.scatter_add_(1, ids.expand_as(mask), (~mask).long())
        if not bool((counts == n // NUM_REGIONS).all()):
            raise ValueError(
                f"{modality} mask is not region-balanced (visible tokens per LG region of the first "
                f"sample: {counts[0].tolist()}); sample it with masking.region_balanced=true or build the "
                "model with region_balanced=False"
            )
        key = torch.where(mask, NUM_REGIONS * n_total + order, ids * n_total + order)
        return key.argsort(dim=1)[:, :n]
    index = (mask.long() * n_total + order).argsort(dim=1)[:, :n]
    if video:
        nt, t = grid[0] // region[0], region[0]
        nhw = (grid[1] // region[1]) * (grid[2] // region[2])
        if n % (nt * t * nhw):
            raise ValueError(f"video mask keeps {n} tokens; the raster grouping needs a multiple of {nt * t * nhw}")
        index = index.view(-1, nt, t, nhw, n // (nt * t * nhw)).transpose(2, 3).reshape(-1, n)
    return index
