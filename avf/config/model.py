"""``model`` and ``masking`` sections of ``params.yaml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from avf.config.base import Section
from avf.geometry import AUDIO_GRID, NUM_REGIONS, RUNNING_CELL_RATIOS, VIDEO_GRID, VIDEO_REGION, hidden_tokens


class ModelConfig(Section):
    """Which AVF-MAE++ size to build and the architecture switches the paper ablates."""

    size: Literal["tiny", "base", "large", "huge"] = "tiny"
    lg_fourth_attn: bool = True  # step 4 of the LG block: region tokens read every local token
    iavcl: bool = True  # the iterative audio-visual correlation learning module (off: plain mean fusion)
    drop_path: float = Field(0.1, ge=0.0, lt=1.0)  # fine-tuning stochastic depth (pretraining uses 0)
    grad_checkpointing: bool = False  # activation checkpointing in the encoders (for the huge size)
    compile: bool = False  # torch.compile the model (falls back to eager when compilation fails)


class MaskingConfig(Section):
    """Dual masking (encoder + decoder masks for both modalities), spec section 3."""

    video_ratio: float = Field(0.9, gt=0.0, lt=1.0)  # tube mask: share of patches hidden from the encoder
    audio_ratio: float = Field(0.8125, gt=0.0, lt=1.0)  # random mask over the 16x8 fbank patch grid
    # Decoder masking (the "dual" in dual masking); off means every position is reconstructed.
    decoder_masking: bool = True
    decoder_video_ratio: float = Field(0.5, ge=0.0, lt=1.0)  # running-cell mask
    decoder_audio_ratio: float = Field(0.5, ge=0.0, lt=1.0)  # random mask
    # Equal visible tokens per LG region, so pretraining regions are real spatial regions
    # (off reproduces the official raster-order grouping).
    region_balanced: bool = True

    @model_validator(mode="after")
    def _fits_the_lg_grouping(self) -> MaskingConfig:
        """Ratios must hide whole tokens and leave every LG region the same number of visible tokens."""
        _, h, w = VIDEO_GRID
        per_frame = h * w
        hidden_v = hidden_tokens(self.video_ratio, per_frame, "video_ratio")
        visible_v = per_frame - hidden_v
        spatial_regions = (h // VIDEO_REGION[1]) * (w // VIDEO_REGION[2])
        if visible_v % spatial_regions:
            raise ValueError(
                f"masking.video_ratio={self.video_ratio} keeps {visible_v} patches per frame, which cannot be "
                f"split evenly over the {spatial_regions} spatial LG regions of a frame (need a multiple of "
                f"{spatial_regions})"
            )
        n_audio = AUDIO_GRID[0] * AUDIO_GRID[1]
        hidden_a = hidden_tokens(self.audio_ratio, n_audio, "audio_ratio")
        visible_a = n_audio - hidden_a
        if visible_a % NUM_REGIONS:
            raise ValueError(
                f"masking.audio_ratio={self.audio_ratio} keeps {visible_a} of {n_audio} audio patches, which "
                f"cannot be split evenly over the {NUM_REGIONS} LG regions (need a multiple of {NUM_REGIONS}, "
                f"e.g. 0.8125 keeps 24)"
            )
        if self.decoder_masking:
            if not any(abs(self.decoder_video_ratio - r) < 1e-9 for r in RUNNING_CELL_RATIOS):
                raise ValueError(
                    f"masking.decoder_video_ratio={self.decoder_video_ratio}: the running-cell mask works on 2x2 "
                    f"cells, so the ratio must be one of {list(RUNNING_CELL_RATIOS)}"
                )
            hidden_da = hidden_tokens(self.decoder_audio_ratio, n_audio, "decoder_audio_ratio")
            if hidden_da >= n_audio:
                raise ValueError("masking.decoder_audio_ratio leaves no audio position to reconstruct")
        return self
