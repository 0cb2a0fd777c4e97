"""Dual masking for AVF-MAE++ (spec section 3): encoder and decoder masks for video and audio.

Token grids (fixed by the input geometry): video 8x10x10 tubelets (t, h, w), audio 16x8 patches
(time, freq). LG regions: video (2, 5, 10) -> 8 regions of 100 tokens; audio (4, 4) -> 8 of 16.
Mask convention (as in MAE): 1 = hidden/removed, 0 = kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from avf.config.model import MaskingConfig

VIDEO_GRID = (8, 10, 10)
AUDIO_GRID = (16, 8)
VIDEO_REGION = (2, 5, 10)
AUDIO_REGION = (4, 4)
NUM_REGIONS = 8
RUNNING_CELL_RATIOS = (0.0, 0.25, 0.5, 0.75)


def _exact_count(ratio: float, n: int, what: str) -> int:
    """Number of hidden tokens for ``ratio`` of ``n``; a fractional count is an error, not a floor."""
    hidden = round(ratio * n)
    if abs(ratio * n - hidden) > 1e-6:
        raise ValueError(
            f"masking.{what}={ratio} hides {ratio * n:.4f} of {n} tokens; choose a ratio that gives a whole "
            f"number (multiples of {1 / n:g})"
        )
    return hidden


def validate_masking(cfg: MaskingConfig) -> None:
    """Raise ``ValueError`` with a clear message when the ratios cannot work with the LG grouping."""
    t, h, w = VIDEO_GRID
    per_frame = h * w
    hidden_v = _exact_count(cfg.video_ratio, per_frame, "video_ratio")
    visible_v = per_frame - hidden_v
    spatial_regions = (h // VIDEO_REGION[1]) * (w // VIDEO_REGION[2])
    if visible_v % spatial_regions:
        raise ValueError(
            f"masking.video_ratio={cfg.video_ratio} keeps {visible_v} patches per frame, which cannot be split "
            f"evenly over the {spatial_regions} spatial LG regions of a frame (need a multiple of "
            f"{spatial_regions})"
        )
    n_audio = AUDIO_GRID[0] * AUDIO_GRID[1]
    hidden_a = _exact_count(cfg.audio_ratio, n_audio, "audio_ratio")
    visible_a = n_audio - hidden_a
    if visible_a % NUM_REGIONS:
        raise ValueError(
            f"masking.audio_ratio={cfg.audio_ratio} keeps {visible_a} of {n_audio} audio patches, which cannot "
            f"be split evenly over the {NUM_REGIONS} LG regions (need a multiple of {NUM_REGIONS}, e.g. 0.8125 "
            f"keeps 24)"
        )
    if cfg.decoder_masking:
        if not any(abs(cfg.decoder_video_ratio - r) < 1e-9 for r in RUNNING_CELL_RATIOS):
            raise ValueError(
                f"masking.decoder_video_ratio={cfg.decoder_video_ratio}: the running-cell mask works on 2x2 "
                f"cells, so the ratio must be one of {list(RUNNING_CELL_RATIOS)}"
            )
        hidden_da = _exact_count(cfg.decoder_audio_ratio, n_audio, "decoder_audio_ratio")
        if hidden_da >= n_audio:
            raise ValueError("masking.decoder_audio_ratio leaves no audio position to reconstruct")
